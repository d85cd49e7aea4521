//! RL validation and `coaug eval` are one pipeline: the same policy, on the same queries and the
//! same augmented documents, gets the same nDCG@10 through `coaug eval --augment both` (the binary,
//! with the model exported to a folder) as through `coaug_rl::Validator` during training.

use std::collections::HashMap;
use std::process::Command;

use candle_core::Device;

use coaug_lm::{Architecture, CausalLm, ModelConfig};
use coaug_retrieval::{AugmentSettings, DocField, QueryWeight, StopList};
use coaug_rl::{Policy, TrainConfig, ValidationGeneration, ValidationIndex, ValidationSlice, Validator};

mod common;
use common::{tokenizer, words, write_dataset};

#[test]
fn eval_and_rl_validation_give_the_same_ndcg() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("beir");
    let (corpus, queries, qrels) = write_dataset(&data_dir.join("tiny"));

    let mut cfg = ModelConfig::tiny(Architecture::Llama, words().len());
    cfg.eos_token_id = Some(0);
    let model = CausalLm::random(&cfg, 11, &Device::Cpu).unwrap();
    let model_dir = tmp.path().join("model");
    coaug_lm::export_hf(&model, &tokenizer(), &model_dir).unwrap();

    let mut config = TrainConfig::cpu_small();
    config.retrieval.query_weight = QueryWeight::Share(0.6);
    config.retrieval.doc_field = DocField::Own(0.4);
    config.retrieval.stop_words = StopList::Nltk;
    let policy = Policy::new(model, tokenizer(), &config).unwrap();
    // Sampled query expansions: a greedy random model repeats one token, samples cover the vocabulary.
    let settings = AugmentSettings {
        max_new_tokens: 8,
        max_input_tokens: 16,
        query_samples: 2,
        query_temperature: 1.0,
        seed: 5,
        ..AugmentSettings::default()
    };
    let validator = Validator::new(
        corpus,
        &queries,
        &qrels,
        &ValidationSlice { queries: 0, pool_per_query: None, seed: 0 },
        ValidationIndex::Bm25 {
            dir: tmp.path().join("validation-index"),
            composition: config.retrieval.composition(),
            analyzer: config.retrieval.stop_words.analyzer(),
        },
        ValidationGeneration { settings: settings.clone(), kv_cache: coaug_lm::KvPrecision::Q8 },
        (true, true),
    )
    .unwrap();
    assert_eq!((validator.num_queries(), validator.augmented_documents().len()), (4, 12), "every query and document");
    // Prompts in the tiny vocabulary, so the random model continues them with corpus words.
    let prompts_file = tmp.path().join("prompts.toml");
    std::fs::write(&prompts_file, "context_note = \"w1\"\n[query]\nsparse = \"w2 w9 <answer>\"\n[document]\nsparse = \"w3 w8 <answer>\"\n")
        .unwrap();
    let prompts = coaug_augment::PromptSet::load(&prompts_file).unwrap();
    let validated = validator.run(&policy, &prompts, 0, coaug_rl::ValidationKind::Both).unwrap();

    let eval = |composition: [&str; 4], name: &str| -> f64 {
        let out = tmp.path().join(name);
        let status = Command::new(env!("CARGO_BIN_EXE_coaug"))
            .args(["eval", "--dataset", "tiny", "--split", "test", "--augment", "both", "--precision", "f32", "--kv-cache", "q8"])
            .args([
                "--max-new-tokens",
                "8",
                "--query-max-new-tokens",
                "8",
                "--max-input-tokens",
                "16",
                "--repetition-penalty",
                "1.2",
                "--parse",
                "lenient",
            ])
            .args(["--query-samples", "2", "--query-temperature", "1", "--seed", "5"])
            .args(composition)
            .args(["--stop-words", "nltk"])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--model")
            .arg(&model_dir)
            .arg("--prompts")
            .arg(&prompts_file)
            .arg("--store")
            .arg(tmp.path().join("store.sqlite"))
            .arg("--out")
            .arg(&out)
            .env("COAUG_CACHE", tmp.path().join("cache"))
            .output()
            .unwrap();
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        let metrics: HashMap<String, f64> = serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
        metrics["NDCG@10"]
    };
    let evaluated = eval(["--query-weight", "share:0.6", "--doc-field", "own:0.4"], "eval");
    assert!(evaluated > 0.0);
    assert!((validated.ndcg_at_10 - evaluated).abs() < 1e-9, "validation {} vs eval {evaluated}", validated.ndcg_at_10);
    // The augmentations and the composition matter here: another composition ranks otherwise.
    let plain_append = eval(["--query-weight", "1", "--doc-field", "body"], "eval-plain-append");
    assert!((plain_append - evaluated).abs() > 1e-6, "{plain_append} vs {evaluated}");
}
