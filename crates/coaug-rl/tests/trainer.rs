//! The trainer on a tiny random model: the candle loss against the reference, the sign of the
//! gradient, exact resume, and learning on a synthetic corpus where one keyword links every
//! query to its documents.

use candle_core::{Device, Tensor, Var};
use coaug_augment::prompts::RolePrompts;
use coaug_augment::{ParsePolicy, PromptSet};
use coaug_data::{Document, Qrels, Query};
use coaug_lm::{score, Architecture, CausalLm, LmTokenizer, ModelConfig, Pass};
use coaug_rl::config::BlockSelection;
use coaug_rl::policy::adamw_config;
use coaug_rl::{
    policy_update, surrogate_loss, surrogate_tensor, Policy, StepMetrics, SurrogateSettings, TokenBatch, TrainConfig, TrainData, Trainer,
    UpdateItem, UpdateShape,
};

const FILLERS: usize = 24;

fn words() -> Vec<String> {
    let mut w: Vec<String> =
        ["<|im_end|>", "<|im_start|>", "[UNK]", "system", "user", "assistant", "alpha", "beta"].iter().map(|s| s.to_string()).collect();
    w.extend((0..FILLERS).map(|i| format!("w{i}")));
    w
}

/// A word-level tokenizer that knows ChatML's markers (`<|im_end|>` = 0 ends a reply).
fn tokenizer() -> LmTokenizer {
    LmTokenizer::word_level(&words()).unwrap()
}

fn tiny_model(seed: u64) -> CausalLm {
    let mut cfg = ModelConfig::tiny(Architecture::Llama, words().len());
    cfg.eos_token_id = Some(0);
    CausalLm::random(&cfg, seed, &Device::Cpu).unwrap()
}

fn prompts() -> PromptSet {
    let role = |text: &str| RolePrompts { sparse: text.into(), dense: text.into() };
    PromptSet { query: role("w0 w1"), document: role("w2 w3"), ..PromptSet::default() }
}

/// Queries read "beta", like every random negative; only their positives say "alpha". The
/// original query therefore ranks negatives first, and a reply that says "alpha" fixes that.
fn synthetic_data() -> TrainData {
    let mut corpus = Vec::new();
    let mut qrels = Qrels::new();
    let mut queries = Vec::new();
    for q in 0..6 {
        queries.push(Query { id: format!("q{q}"), text: "beta".into() });
        for p in 0..3 {
            let id = format!("d{q}-{p}");
            let filler: Vec<String> = (0..1 + (q + p) % 3).map(|k| format!("w{}", 4 + (q * 3 + p + k) % 20)).collect();
            corpus.push(Document { id: id.clone(), title: String::new(), text: format!("alpha {}", filler.join(" ")) });
            qrels.insert(format!("q{q}"), id, 1);
        }
    }
    for n in 0..30 {
        let filler: Vec<String> = (0..1 + n % 3).map(|k| format!("w{}", 4 + (n * 7 + k) % 20)).collect();
        corpus.push(Document { id: format!("n{n}"), title: String::new(), text: format!("beta {}", filler.join(" ")) });
    }
    TrainData { corpus, queries, train_qrels: qrels }
}

fn config(blocks: BlockSelection, kl: f64) -> TrainConfig {
    let mut c = TrainConfig::cpu_small();
    c.seed = 3;
    c.composite.groups_per_step = 2;
    c.composite.positives = 2;
    c.composite.random_negatives = 3;
    c.rollout.samples_per_prompt = 8;
    c.rollout.max_new_tokens = 6;
    c.rollout.query_max_new_tokens = None;
    c.rollout.max_document_tokens = 16;
    c.rollout.parse_policy = ParsePolicy::Lenient;
    c.reward.joint_samples = 64;
    c.loss.kl_coef = kl;
    c.loss.entropy_coef = kl;
    c.trainable.blocks = blocks;
    c.optimizer.learning_rate = 1e-2;
    c.optimizer.mini_batches = 2;
    c.optimizer.micro_batch_size = 16;
    c.schedule.epochs = 1000.0;
    c.schedule.max_steps = Some(1000);
    // The method's plain `q ⊕ a`, `d ⊕ a`: these tests are about learning, and on this corpus
    // one word of expansion must be able to move a one-word query.
    c.retrieval.query_weight = coaug_retrieval::QueryWeight::Fixed(1.0);
    c.retrieval.doc_field = coaug_retrieval::DocField::Body;
    c
}

fn trainer(seed: u64, config: TrainConfig) -> Trainer {
    let policy = Policy::new(tiny_model(seed), tokenizer(), &config).unwrap();
    Trainer::new(config, policy, prompts(), synthetic_data()).unwrap()
}

#[test]
fn candle_loss_matches_the_reference_in_value_and_gradient() {
    // Ratios inside, below and above the bounds, a clamped log-ratio, both advantage signs.
    let logp = [-1.0f32, -2.0, -0.5, -3.0, -1.2, -0.7, -15.0, -2.2];
    let old = [-1.1f32, -1.5, -0.9, -3.0, -1.0, -1.0, -1.0, -2.0];
    let adv = [0.5f32, -0.3, 1.0, 0.0, -1.0, 0.8, 0.4, -0.2];
    let refs = [-1.0f32, -2.5, -0.1, -2.0, -1.3, -0.7, -1.0, -9.0];
    let entropy = [0.9f32, 1.1, 0.3, 2.0, 1.5, 0.2, 0.8, 1.0];
    let settings = SurrogateSettings { kl_coef: 0.05, entropy_coef: 0.01, ..Default::default() };
    let mask = [1.0f32; 8];
    let (reference, gradient) = surrogate_loss(
        &TokenBatch { logp: &logp, old_logp: &old, ref_logp: Some(&refs), entropy: Some(&entropy), advantages: &adv, mask: &mask },
        &settings,
    )
    .unwrap();
    let var = Var::from_slice(&logp, 8, &Device::Cpu).unwrap();
    let ent = Tensor::from_slice(&entropy, 8, &Device::Cpu).unwrap();
    let (loss, sums) = surrogate_tensor(var.as_tensor(), &ent, &old, &adv, Some(&refs), &settings, 8).unwrap();
    let value = loss.to_scalar::<f32>().unwrap() as f64;
    assert!((value - reference.loss).abs() < 1e-5, "{value} vs {}", reference.loss);
    assert!((sums.clipped / 8.0 - reference.clip_fraction).abs() < 1e-9);
    assert!(reference.clip_fraction > 0.0, "the case must exercise clipping");
    let grads = loss.backward().unwrap();
    let g = grads.get(var.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    for (i, (&got, &want)) in g.iter().zip(&gradient).enumerate() {
        assert!((f64::from(got) - want).abs() < 1e-5, "token {i}: {got} vs {want}");
    }
}

#[test]
fn a_positive_advantage_raises_its_tokens_log_prob_and_a_negative_one_lowers_it() {
    for blocks in [BlockSelection::All, BlockSelection::Top(1)] {
        for sign in [1.0f32, -1.0] {
            let mut cfg = config(blocks, 0.0);
            cfg.optimizer.learning_rate = 1e-3;
            let policy = Policy::new(tiny_model(5), tokenizer(), &cfg).unwrap();
            let prompt = [1u32, 3, 8, 9, 0, 1, 4, 7, 0, 1, 5];
            let tokens = [6u32, 12, 6, 0];
            let logp = |p: &Policy| -> Vec<f32> {
                score(&p.model, &[&prompt], &[&tokens], 0, &coaug_lm::SamplingParams::at_temperature(1.2), Pass::Infer)
                    .unwrap()
                    .logprobs
                    .to_vec1()
                    .unwrap()
            };
            let before = logp(&policy);
            let mut opt = coaug_lm::AdamW::new(&policy.trainable, adamw_config(&cfg)).unwrap();
            let item = UpdateItem { prompt: &prompt, tokens: &tokens, old_logprobs: &before, advantage: sign, trunk: None };
            let shape = UpdateShape { mini_batches: 1, micro_batch_size: 4, processing: coaug_lm::SamplingParams::at_temperature(1.2) };
            let report = policy_update(&policy, &mut opt, &[item], &shape, &cfg.loss).unwrap();
            assert_eq!(report.optimizer_steps, 1);
            assert!(report.approx_kl_to_old.abs() < 1e-4, "the update recomputes the sampler's log-probs");
            let after = logp(&policy);
            let change: f32 = after.iter().sum::<f32>() - before.iter().sum::<f32>();
            assert!(change * sign > 1e-4, "{blocks:?} sign {sign}: log-prob change {change}");
        }
    }
}

fn without_timing(mut m: StepMetrics) -> StepMetrics {
    m.generation_s = 0.0;
    m.reward_s = 0.0;
    m.update_s = 0.0;
    m.step_s = 0.0;
    m
}

#[test]
fn a_resumed_run_follows_the_uninterrupted_trajectory() {
    let cfg = config(BlockSelection::Top(2), 0.01);
    let mut straight = trainer(7, cfg.clone());
    let expected: Vec<StepMetrics> = (0..3).map(|_| without_timing(straight.train_step().unwrap())).collect();

    let dir = tempfile::tempdir().unwrap();
    let mut first = trainer(7, cfg.clone());
    for m in &expected[..2] {
        assert_eq!(&without_timing(first.train_step().unwrap()), m, "same seed, same steps");
    }
    first.save_checkpoint(dir.path()).unwrap();
    drop(first);

    let mut resumed = trainer(7, cfg);
    assert_eq!(resumed.resume(dir.path()).unwrap(), 2);
    assert_eq!(without_timing(resumed.train_step().unwrap()), expected[2]);
    let weights = |t: &Trainer| -> Vec<Vec<f32>> {
        t.policy().trainable.vars.iter().map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()).collect()
    };
    assert_eq!(weights(&resumed), weights(&straight));
    assert!(expected.iter().any(|m| !m.skipped), "the trajectory must include updates");
}

#[test]
fn mean_reward_rises_when_one_keyword_links_queries_to_their_documents() {
    // Documents stay original (query-only RL), so the query reward measures the query side.
    let mut cfg = config(BlockSelection::All, 0.0);
    cfg.ablation.query_only = true;
    cfg.optimizer.learning_rate = 3e-2;
    let mut t = trainer(11, cfg);
    let rewards: Vec<f64> = (0..40).map(|_| t.train_step().unwrap().reward_query).collect();
    let start = rewards[..5].iter().sum::<f64>() / 5.0;
    let end = rewards[rewards.len() - 10..].iter().sum::<f64>() / 10.0;
    eprintln!("query reward by step: {rewards:.3?}");
    // Seed 11 goes from ~0.57 (first 5 steps) to ~0.72 (last 10).
    assert!(end > start + 0.1, "mean query reward went from {start:.3} to {end:.3}");
}

#[test]
fn trunks_kept_from_generation_score_like_a_fresh_trunk_pass() {
    let cfg = config(BlockSelection::Top(1), 0.01);
    let policy = Policy::new(tiny_model(8), tokenizer(), &cfg).unwrap();
    assert!(policy.first_trainable_layer > 0);
    let prefix = [1u32, 3, 8, 9, 0, 1, 4];
    let turns = vec![vec![7u32, 0, 1, 5], vec![10u32, 11, 12, 13, 14, 0, 1, 5]];
    let req = coaug_lm::PromptBatch { prefix: &prefix, prompts: &turns, stop_ids: &[0], pad_id: 0 };
    let params = coaug_lm::SamplingParams { temperature: 1.2, max_new_tokens: 7, n: 3, seed: 2, ..Default::default() };
    let (samples, trunks) = coaug_lm::generate_with_trunk(&policy.model, &req, &params, policy.first_trainable_layer).unwrap();
    let full: Vec<Vec<u32>> = samples.iter().map(|s| [&prefix[..], &turns[s.prompt_index][..]].concat()).collect();
    let items = |keep: bool| -> Vec<UpdateItem<'_>> {
        samples
            .iter()
            .zip(&full)
            .zip(&trunks)
            .map(|((s, p), t)| UpdateItem {
                prompt: p,
                tokens: &s.tokens,
                old_logprobs: &s.logprobs,
                advantage: 1.0,
                trunk: keep.then_some(t),
            })
            .collect()
    };
    let (kept, fresh) = (items(true), items(false));
    let kept_refs: Vec<&UpdateItem<'_>> = kept.iter().collect();
    let fresh_refs: Vec<&UpdateItem<'_>> = fresh.iter().collect();
    let (a, ref_a) =
        coaug_rl::update::micro_batch_scores(&policy, &kept_refs, &coaug_lm::SamplingParams::at_temperature(1.2), true).unwrap();
    let (b, ref_b) =
        coaug_rl::update::micro_batch_scores(&policy, &fresh_refs, &coaug_lm::SamplingParams::at_temperature(1.2), true).unwrap();
    let (a, b) = (a.logprobs.to_vec1::<f32>().unwrap(), b.logprobs.to_vec1::<f32>().unwrap());
    assert_eq!(a.len(), samples.iter().map(|s| s.tokens.len()).sum::<usize>());
    for (x, y) in a.iter().zip(&b).chain(ref_a.unwrap().iter().zip(&ref_b.unwrap())) {
        assert!((x - y).abs() < 1e-4, "kept {x} vs fresh {y}");
    }
    // And both equal the sampler's own log-probs.
    let old: Vec<f32> = samples.iter().flat_map(|s| s.logprobs.iter().copied()).collect();
    for (x, y) in a.iter().zip(&old) {
        assert!((x - y).abs() < 1e-4, "scored {x} vs sampled {y}");
    }
}

// The dense retriever: a tiny seeded BERT encoder in place of BM25.

mod dense {
    use std::sync::Arc;

    use coaug_augment::{Retriever, Role};
    use coaug_dense::testing::{write_tiny_bert, TinyBert};
    use coaug_dense::{cosine, document_text, exact_top_k, SentenceEncoder};
    use coaug_eval::{evaluate, EvalOptions, Run};
    use coaug_lm::SamplingParams;
    use coaug_rl::rollout::{sample_role, RoleSampling};
    use coaug_rl::{DenseReward, RewardSimilarity, ValidationIndex, ValidationSlice, Validator};

    use super::*;

    /// The tiny encoder, with a query instruction so that the query path is distinguishable.
    fn encoder(dir: &std::path::Path) -> Arc<SentenceEncoder> {
        write_tiny_bert(dir, &TinyBert::default()).unwrap();
        let mut encoder = SentenceEncoder::load(dir).unwrap();
        encoder.set_query_prefix(Some("query: ".into()));
        Arc::new(encoder)
    }

    fn dense_config() -> TrainConfig {
        let mut c = config(BlockSelection::Top(1), 0.0);
        c.retriever = Retriever::Dense;
        c
    }

    fn dense_trainer(seed: u64, encoder: Arc<SentenceEncoder>) -> Trainer {
        let cfg = dense_config();
        let policy = Policy::new(tiny_model(seed), tokenizer(), &cfg).unwrap();
        let similarity = RewardSimilarity::Dense(DenseReward::new(encoder));
        Trainer::with_similarity(cfg, policy, prompts(), synthetic_data(), similarity).unwrap()
    }

    #[test]
    fn a_dense_step_runs_with_rewards_in_the_unit_interval_that_differ_between_rollouts() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = dense_trainer(7, encoder(dir.path()));
        let batch = t.sampler().batch(0);
        let rollouts = t.rollouts(&batch).unwrap();
        let rewards = t.rewards(&batch, &rollouts).unwrap();
        let documents: Vec<f64> = rewards.document.iter().map(|r| r.expect("T = 64 draws every rollout")).collect();
        for &r in rewards.query.iter().chain(&documents) {
            assert!((0.0..=1.0).contains(&r), "reward {r}");
        }
        let spread = |rs: &[f64]| rs.iter().cloned().fold(f64::MIN, f64::max) - rs.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread(&rewards.query) > 1e-3, "query rewards {:?}", rewards.query);
        assert!(spread(&documents) > 1e-3, "document rewards {documents:?}");

        // The step itself: the same rollouts and joint samples, so the same rewards.
        let m = t.train_step().unwrap();
        assert_eq!(m.step, 0);
        assert!((m.reward_query - rewards.mean_query_reward()).abs() < 1e-12);
        assert!((0.0..=1.0).contains(&m.ndcg_query_rollouts));
        assert!(!m.skipped && m.loss.is_finite(), "{m:?}");
    }

    #[test]
    fn the_dense_similarity_is_the_cosine_of_separately_encoded_texts() {
        let dir = tempfile::tempdir().unwrap();
        let encoder = encoder(dir.path());
        let t = dense_trainer(7, encoder.clone());
        let batch = t.sampler().batch(0);
        let rollouts = t.rollouts(&batch).unwrap();
        // The dense composition: the expansion after the query, the abstract before the document.
        let c = coaug_retrieval::Composition::default();
        let queries: Vec<String> = rollouts.queries.iter().map(|r| c.query_text(&r.original, &[&r.augmentation])).collect();
        let documents: Vec<String> = rollouts.documents.iter().map(|r| c.dense_document_text(&r.original, Some(&r.augmentation))).collect();
        let sim = t.similarity().similarity(&rollouts.queries, &rollouts.documents).unwrap();
        assert_eq!((sim.num_queries(), sim.num_docs()), (queries.len(), documents.len()));
        let doc_vectors: Vec<Vec<f32>> = documents.iter().map(|d| encoder.encode_documents(&[d], false).unwrap().row(0).to_vec()).collect();
        for (i, q) in queries.iter().enumerate() {
            // The query path: the encoder's instruction in front of the text.
            let q_vector = encoder.encode_documents(&[&format!("query: {q}")], false).unwrap();
            for (j, d_vector) in doc_vectors.iter().enumerate() {
                let want = cosine(q_vector.row(0), d_vector);
                assert!((sim.row(i)[j] - want).abs() < 1e-5, "({i}, {j}): {} vs {want}", sim.row(i)[j]);
            }
        }
    }

    #[test]
    fn dense_rollouts_use_the_dense_prompts_and_prepend_document_abstracts() {
        let cfg = dense_config();
        let policy = Policy::new(tiny_model(5), tokenizer(), &cfg).unwrap();
        let role = |sparse: &str, dense: &str| RolePrompts { sparse: sparse.into(), dense: dense.into() };
        let prompts = PromptSet { query: role("w0 w1", "w4 w5"), document: role("w2 w3", "w6 w7"), ..PromptSet::default() };
        let originals = vec!["alpha w1".to_string(), "beta w2 w3".to_string()];
        let n = 4;
        for role in [Role::Query, Role::Document] {
            for retriever in [Retriever::Sparse, Retriever::Dense] {
                let sampling = RoleSampling {
                    retriever,
                    params: SamplingParams { temperature: 1.2, max_new_tokens: 6, n, seed: 1, ..Default::default() },
                    parse_policy: ParsePolicy::Lenient,
                    max_input_tokens: None,
                    keep_trunk_at: None,
                };
                let rollouts = sample_role(&policy, &prompts, role, &originals, Some(&sampling)).unwrap();
                let system = |r| tokenizer().chat_prompt(prompts.get(role, r)).unwrap().prefix;
                let other = if retriever == Retriever::Dense { Retriever::Sparse } else { Retriever::Dense };
                for (k, r) in rollouts.iter().enumerate() {
                    assert!(r.prompt.starts_with(&system(retriever)), "{role:?}/{retriever:?}: the retriever's system turn");
                    assert!(!r.prompt.starts_with(&system(other)));
                    // The reward composes (original, augmentation) itself (coaug_retrieval).
                    assert_eq!(r.original, originals[k / n], "{role:?}/{retriever:?}");
                }
                assert!(rollouts.iter().any(|r| !r.augmentation.trim().is_empty()), "some reply must augment");
            }
        }
    }

    #[test]
    fn a_dense_config_needs_a_dense_similarity() {
        let cfg = dense_config();
        let policy = || Policy::new(tiny_model(1), tokenizer(), &cfg).unwrap();
        let err = Trainer::new(cfg.clone(), policy(), prompts(), synthetic_data()).err().unwrap();
        assert!(err.to_string().contains("encoder"), "{err}");
        let bm25 =
            RewardSimilarity::Bm25(coaug_rl::Bm25Reward::new(&synthetic_data().corpus, &Default::default(), Default::default()).unwrap());
        assert!(Trainer::with_similarity(cfg.clone(), policy(), prompts(), synthetic_data(), bm25).is_err());
    }

    #[test]
    fn dense_validation_ranks_the_corpus_by_encoder_cosine() {
        let dir = tempfile::tempdir().unwrap();
        let encoder_dir = dir.path().join("encoder");
        std::fs::create_dir_all(&encoder_dir).unwrap();
        let encoder = encoder(&encoder_dir);
        let data = synthetic_data();
        let cfg = dense_config();
        let policy = Policy::new(tiny_model(5), tokenizer(), &cfg).unwrap();
        let validator = |augment: (bool, bool)| {
            Validator::new(
                data.corpus.clone(),
                &data.queries,
                &data.train_qrels,
                &ValidationSlice { queries: 100, pool_per_query: Some(2), seed: 1 },
                ValidationIndex::Dense { encoder: encoder.clone(), vectors_dir: dir.path().join("vectors") },
                coaug_rl::ValidationGeneration {
                    settings: coaug_retrieval::AugmentSettings {
                        max_new_tokens: 6,
                        max_input_tokens: 16,
                        parse_policy: ParsePolicy::Lenient,
                        ..Default::default()
                    },
                    kv_cache: coaug_lm::KvPrecision::F32,
                },
                augment,
            )
            .unwrap()
        };
        let augmented = validator((true, true)).run(&policy, &prompts(), 0, coaug_rl::ValidationKind::Both).unwrap();
        assert!((0.0..=1.0).contains(&augmented.ndcg_at_10));
        // Every query reads "beta": one BM25 top 2, the document pool.
        assert_eq!((augmented.queries, augmented.augmented_documents), (6, 2));
        assert_eq!(augmented.per_query.len(), 6);

        // Without augmentation: exactly the originals ranked by cosine, as `coaug eval` would.
        let plain = validator((false, false)).run(&policy, &prompts(), 0, coaug_rl::ValidationKind::Both).unwrap();
        let texts: Vec<String> = data.corpus.iter().map(document_text).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let docs = encoder.encode_documents(&refs, false).unwrap();
        let query_texts: Vec<&str> = data.queries.iter().map(|q| q.text.as_str()).collect();
        let hits = exact_top_k(&encoder.encode_queries(&query_texts, false).unwrap(), &docs, 100).unwrap();
        let mut run = Run::new();
        for (q, hits) in data.queries.iter().zip(&hits) {
            for h in hits {
                run.insert(q.id.clone(), data.corpus[h.doc as usize].id.clone(), f64::from(h.score));
            }
        }
        let want = evaluate(&data.train_qrels, &run, &[10], &EvalOptions::default()).mean["NDCG@10"];
        assert!((plain.ndcg_at_10 - want).abs() < 1e-9, "{} vs {want}", plain.ndcg_at_10);
    }
}

#[test]
fn a_run_directory_checkpoints_records_steps_and_resumes_where_it_stopped() {
    use coaug_rl::run::{latest_checkpoint, TrainRun, METRICS_FILE};
    let mut cfg = config(BlockSelection::Top(1), 0.0);
    cfg.schedule.max_steps = Some(3);
    cfg.schedule.checkpoint_every = 2;
    let dir = tempfile::tempdir().unwrap();
    let steps = |dir: &std::path::Path| -> Vec<u64> {
        coaug_rl::metrics::read_jsonl::<StepMetrics>(&dir.join(METRICS_FILE)).unwrap().iter().map(|m| m.step).collect()
    };
    let mut run = TrainRun::open(dir.path(), trainer(4, cfg.clone()), None, false).unwrap();
    assert_eq!(run.resumed_at(), None);
    run.begin(&mut |_| {}).unwrap();
    run.step(&mut |_| {}).unwrap();
    assert_eq!(latest_checkpoint(dir.path()).unwrap(), None, "checkpoint_every = 2");
    // Stopped between steps: a checkpoint of step 1 is written once.
    let saved = run.checkpoint_now().unwrap().unwrap();
    assert_eq!(run.checkpoint_now().unwrap(), Some(saved.clone()));
    assert_eq!(latest_checkpoint(dir.path()).unwrap(), Some((1, saved)));
    run.step(&mut |_| {}).unwrap();
    drop(run);
    assert_eq!(steps(dir.path()), [0, 1]);

    // The checkpoint after step 2 holds both steps; a stray later line is dropped on resume.
    coaug_rl::metrics::append_jsonl(&dir.path().join(METRICS_FILE), &serde_json::json!({"step": 2})).unwrap();
    let mut run = TrainRun::open(dir.path(), trainer(4, cfg.clone()), None, true).unwrap();
    assert_eq!(run.resumed_at(), Some(2));
    assert_eq!(steps(dir.path()), [0, 1]);
    while !run.is_done() {
        run.step(&mut |_| {}).unwrap();
    }
    run.finish(&mut |_| {}).unwrap();
    assert_eq!(steps(dir.path()), [0, 1, 2]);
    assert_eq!(latest_checkpoint(dir.path()).unwrap().unwrap().0, 3, "the last step is always saved");

    // A fresh run in the same directory starts over.
    let run = TrainRun::open(dir.path(), trainer(4, cfg), None, false).unwrap();
    assert_eq!(run.trainer().step_index(), 0);
    assert!(steps(dir.path()).is_empty());
}

#[test]
fn a_json_config_is_read_like_the_toml_file() {
    let json = serde_json::json!({"preset": "cpu-small", "seed": 7, "reward": {"estimator": "sampling"}, "schedule": {"max_steps": 5}});
    let c = TrainConfig::from_json(json, "dict").unwrap();
    let toml = "preset = \"cpu-small\"\nseed = 7\n[reward]\nestimator = \"sampling\"\n[schedule]\nmax_steps = 5\n";
    assert_eq!(c, TrainConfig::from_toml(toml, "file").unwrap());
    let err = TrainConfig::from_json(serde_json::json!({"nonsense": 1}), "dict").unwrap_err().to_string();
    assert!(err.contains("config dict") && err.contains("nonsense"), "{err}");
    assert!(TrainConfig::from_json(serde_json::json!([1]), "dict").is_err());
}
