//! A training step's LM-free pipeline end to end: composite batch -> rewards -> advantages.

use coaug_data::Qrels;
use coaug_eval::ScoreMatrix;
use coaug_rl::{CompositeConfig, CompositeSampler, RewardSampler, RewardSettings, StepAdvantages, TrainConfig};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn sampler() -> CompositeSampler {
    let mut qrels = Qrels::new();
    let mut corpus = Vec::new();
    for q in 0..4 {
        for p in 0..3 {
            qrels.insert(format!("q{q}"), format!("d{q}-{p}"), 1 + p % 2);
            corpus.push(format!("d{q}-{p}"));
        }
    }
    corpus.extend((0..20).map(|i| format!("neg{i}")));
    let config = CompositeConfig { groups_per_step: 3, positives: 2, hard_negatives: 0, random_negatives: 3, ..Default::default() };
    CompositeSampler::new(config, &qrels, &corpus, 1).unwrap()
}

#[test]
fn a_perfect_retriever_teaches_nothing_and_one_bad_rollout_teaches_its_prompt() {
    let batch = sampler().batch(0);
    let n = 4;
    let layout = batch.layout(n).unwrap();
    let gains = batch.gains();
    // Similarity = the gain (plus a tie-free offset): every ranking is ideal whatever the rollouts.
    let perfect = |row: usize, col: usize| {
        let (q, d) = (layout.query_slot_of_row(row), layout.doc_slot_of_column(col));
        gains.gain(q, d) * 10.0 + 0.001 * (d as f32)
    };
    let reward = RewardSampler::new(RewardSettings { joint_samples: 64, ..Default::default() }).unwrap();
    let scales = TrainConfig::paper().role_scales();
    let mut rng = ChaCha8Rng::seed_from_u64(0);

    let sim = ScoreMatrix::from_fn(layout.num_query_rollouts(), layout.num_doc_rollouts(), perfect).unwrap();
    let rewards = reward.sample(&sim, &layout, gains, &mut rng).unwrap();
    assert!(rewards.query.iter().all(|&r| (r - 1.0).abs() < 1e-12), "{:?}", rewards.query);
    let adv = StepAdvantages::compute(&rewards, &layout, &batch.document_roles(), &scales).unwrap();
    assert!(adv.all_zero(), "a step without any difference between rollouts is skipped");

    // Query rollout 1 of group 0 matches nothing: only group 0's query prompt learns.
    let bad_row = layout.query_rows(0).start + 1;
    let sim =
        ScoreMatrix::from_fn(layout.num_query_rollouts(), layout.num_doc_rollouts(), |r, c| if r == bad_row { 0.0 } else { perfect(r, c) })
            .unwrap();
    let rewards = reward.sample(&sim, &layout, gains, &mut rng).unwrap();
    let adv = StepAdvantages::compute(&rewards, &layout, &batch.document_roles(), &scales).unwrap();
    assert!(!adv.all_zero());
    for (row, &a) in adv.query.iter().enumerate() {
        match row {
            r if r == bad_row => assert!(a < 0.0),
            r if layout.query_slot_of_row(r) == 0 => assert!(a > 0.0),
            _ => assert_eq!(a, 0.0),
        }
    }
    assert!(adv.document.iter().all(|&a| a == 0.0), "documents ranked the same under every rollout");
}
