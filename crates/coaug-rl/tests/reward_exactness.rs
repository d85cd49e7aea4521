//! The reward estimators against an independent oracle that enumerates every joint choice,
//! fully sorts every ranking and computes nDCG@10 by the textbook formula.

use coaug_eval::ScoreMatrix;
use coaug_rl::{Estimator, JointSamples, RewardSampler, RewardSettings, Rewards, RolloutLayout, SlotGains};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A tiny step: two groups; group 0 = query 0 with documents 0 (positive), 1, 2; group 1 =
/// query 1 with documents 3 (positive, grade 2), 4. Document 3 is also relevant to query 0
/// (grade 1), as NFCorpus documents often are.
struct Case {
    layout: RolloutLayout,
    gains: SlotGains,
    similarity: ScoreMatrix,
}

fn case(seed: u64) -> Case {
    let layout = RolloutLayout::new(&[2, 3], &[2, 3, 1, 2, 2]).unwrap();
    #[rustfmt::skip]
    let gains = SlotGains::new(vec![0, 1], vec![0, 0, 0, 1, 1], vec![
        1.0, 0.0, 0.0, 1.0, 0.0,
        0.0, 0.0, 0.0, 2.0, 0.0,
    ]).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Small integers: ties are frequent, so tie-breaking is exercised too.
    let similarity =
        ScoreMatrix::from_fn(layout.num_query_rollouts(), layout.num_doc_rollouts(), |_, _| rng.random_range(0..4) as f32).unwrap();
    Case { layout, gains, similarity }
}

fn sampler(estimator: Estimator, joint_samples: usize) -> RewardSampler {
    RewardSampler::new(RewardSettings { estimator, joint_samples, kappa: 10.0, ndcg_cutoff: 10 }).unwrap()
}

/// Every joint choice, by recursion (independent of `JointSamples::enumerate`).
fn all_choices(sizes: &[usize]) -> Vec<Vec<usize>> {
    match sizes.split_first() {
        None => vec![vec![]],
        Some((&n, rest)) => {
            let tails = all_choices(rest);
            (0..n).flat_map(|j| tails.iter().map(move |t| [vec![j], t.clone()].concat())).collect()
        }
    }
}

fn textbook_ndcg(mut ranked: Vec<(f32, f32, usize)>, k: usize) -> f64 {
    // Higher similarity first; ties: lower gain first, then lower slot.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    let dcg: f64 = ranked.iter().take(k).enumerate().map(|(i, r)| f64::from(r.1) / ((i + 2) as f64).log2()).sum();
    let mut ideal: Vec<f32> = ranked.iter().map(|r| r.1).collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, &g)| f64::from(g) / ((i + 2) as f64).log2()).sum();
    if idcg > 0.0 {
        dcg / idcg
    } else {
        0.0
    }
}

/// The exact expected rewards.
#[allow(clippy::needless_range_loop)] // `row` indexes the similarity matrix and the rewards
fn oracle(c: &Case, estimator: Estimator, kappa: f64) -> (Vec<f64>, Vec<f64>) {
    let l = &c.layout;
    let sizes: Vec<usize> = (0..l.num_doc_slots()).map(|d| l.doc_columns(d).len()).collect();
    let choices = all_choices(&sizes);
    let in_scope = |q: usize, d: usize| estimator == Estimator::Batch || c.gains.query_group(q) == c.gains.doc_group(d);
    let weight = |q: usize, d: usize| match estimator {
        Estimator::Batch => 1.0 + kappa * f64::from(c.gains.gain(q, d)),
        Estimator::Sampling => f64::from(u8::from(c.gains.query_group(q) == c.gains.doc_group(d))),
    };
    let mut query = vec![0.0; l.num_query_rollouts()];
    let mut doc_num = vec![0.0; l.num_doc_rollouts()];
    let mut doc_den = vec![0.0; l.num_doc_rollouts()];
    for sigma in &choices {
        for row in 0..l.num_query_rollouts() {
            let q = l.query_slot_of_row(row);
            let ranked = (0..l.num_doc_slots())
                .filter(|&d| in_scope(q, d))
                .map(|d| (c.similarity.row(row)[l.doc_columns(d).start + sigma[d]], c.gains.gain(q, d), d))
                .collect();
            let ndcg = textbook_ndcg(ranked, 10);
            query[row] += ndcg / choices.len() as f64;
            for (d, &j) in sigma.iter().enumerate() {
                let column = l.doc_columns(d).start + j;
                doc_num[column] += weight(q, d) * ndcg;
                doc_den[column] += weight(q, d);
            }
        }
    }
    (query, doc_num.iter().zip(&doc_den).map(|(n, d)| n / d).collect())
}

fn max_error(rewards: &Rewards, exact: &(Vec<f64>, Vec<f64>)) -> f64 {
    let q = rewards.query.iter().zip(&exact.0).map(|(a, b)| (a - b).abs());
    let d = rewards.document.iter().zip(&exact.1).map(|(a, b)| (a.expect("every rollout drawn") - b).abs());
    q.chain(d).fold(0.0, f64::max)
}

fn mean_error(rewards: &Rewards, exact: &(Vec<f64>, Vec<f64>)) -> f64 {
    let q = rewards.query.iter().zip(&exact.0).map(|(a, b)| (a - b).abs());
    let d = rewards.document.iter().zip(&exact.1).map(|(a, b)| (a.expect("every rollout drawn") - b).abs());
    let all: Vec<f64> = q.chain(d).collect();
    all.iter().sum::<f64>() / all.len() as f64
}

#[test]
fn enumerating_every_joint_choice_gives_the_exact_expectation() {
    for estimator in [Estimator::Batch, Estimator::Sampling] {
        for seed in 0..5 {
            let c = case(seed);
            let samples = JointSamples::enumerate(&c.layout, 10_000).unwrap();
            assert_eq!(samples.len(), 2 * 3 * 2 * 2);
            let rewards = sampler(estimator, 1).estimate(&c.similarity, &c.layout, &c.gains, &samples).unwrap();
            let exact = oracle(&c, estimator, 10.0);
            let err = max_error(&rewards, &exact);
            assert!(err < 1e-9, "{estimator:?} seed {seed}: max error {err}\n{rewards:?}\n{exact:?}");
        }
    }
}

#[test]
fn the_monte_carlo_estimate_converges_to_the_expectation() {
    for estimator in [Estimator::Batch, Estimator::Sampling] {
        let errors: Vec<f64> = [16, 256, 4096]
            .iter()
            .map(|&t| {
                (0..4u64)
                    .map(|seed| {
                        let c = case(seed);
                        let mut rng = ChaCha8Rng::seed_from_u64(100 + seed);
                        let rewards = sampler(estimator, t).sample(&c.similarity, &c.layout, &c.gains, &mut rng).unwrap();
                        mean_error(&rewards, &oracle(&c, estimator, 10.0))
                    })
                    .sum::<f64>()
                    / 4.0
            })
            .collect();
        eprintln!("{estimator:?}: mean |estimate - exact| at T = 16, 256, 4096: {errors:?}");
        // Error ~ 1/sqrt(T): each 16x more samples should cut it by ~4x.
        assert!(errors[1] < errors[0] / 2.0 && errors[2] < errors[1] / 2.0, "{estimator:?}: {errors:?}");
        assert!(errors[2] < 0.01, "{estimator:?}: {errors:?}");
    }
}

#[test]
fn a_hand_computed_step() {
    // One query rollout; slot 0 relevant with rollouts scoring 2 and 0; slot 1 irrelevant with
    // rollouts scoring 1 and 1. Rollout 0 of slot 0 puts it first (nDCG 1), rollout 1 second
    // (nDCG 1/log2 3).
    let layout = RolloutLayout::new(&[1], &[2, 2]).unwrap();
    let gains = SlotGains::new(vec![0], vec![0, 0], vec![1.0, 0.0]).unwrap();
    let similarity = ScoreMatrix::new(1, 4, vec![2.0, 0.0, 1.0, 1.0]).unwrap();
    let samples = JointSamples::enumerate(&layout, 100).unwrap();
    let r = sampler(Estimator::Batch, 1).estimate(&similarity, &layout, &gains, &samples).unwrap();
    let second = 1.0 / 3f64.log2();
    assert!((r.query[0] - (1.0 + second) / 2.0).abs() < 1e-12);
    assert!((r.document[0].unwrap() - 1.0).abs() < 1e-12);
    assert!((r.document[1].unwrap() - second).abs() < 1e-12);
    // The irrelevant slot's rollouts are interchangeable: both get the mean.
    assert!((r.document[2].unwrap() - r.document[3].unwrap()).abs() < 1e-12);
    assert_eq!(r.document_draws, vec![2, 2, 2, 2]);
}

#[test]
fn ties_never_favour_the_relevant_document() {
    // Nothing matches: every similarity 0. The relevant slot ranks behind the irrelevant one.
    let layout = RolloutLayout::new(&[1], &[1, 1]).unwrap();
    let gains = SlotGains::new(vec![0], vec![0, 0], vec![1.0, 0.0]).unwrap();
    let similarity = ScoreMatrix::new(1, 2, vec![0.0, 0.0]).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let r = sampler(Estimator::Batch, 4).sample(&similarity, &layout, &gains, &mut rng).unwrap();
    assert!((r.query[0] - 1.0 / 3f64.log2()).abs() < 1e-12, "{r:?}");
}

#[test]
fn kappa_makes_a_positive_document_answer_to_its_own_query() {
    // Query 0 ranks document slot 0 (its positive) first only with rollout 0; query 1 (another
    // group, slot 0 irrelevant to it) prefers slot 0 *low*, i.e. rollout 1. With κ = 10 rollout 0
    // must win; with κ = 0 the two queries weigh the same.
    let layout = RolloutLayout::new(&[1, 1], &[2, 1, 1]).unwrap();
    #[rustfmt::skip]
    let gains = SlotGains::new(vec![0, 1], vec![0, 0, 1], vec![
        1.0, 0.0, 0.0,
        0.0, 0.0, 1.0,
    ]).unwrap();
    #[rustfmt::skip]
    let similarity = ScoreMatrix::new(2, 4, vec![
        // slot0 r0, slot0 r1, slot1, slot2
        5.0, 0.5, 1.0, 0.0,
        9.0, 0.0, 0.0, 1.0,
    ]).unwrap();
    let samples = JointSamples::enumerate(&layout, 100).unwrap();
    let with_kappa = |kappa| {
        RewardSampler::new(RewardSettings { kappa, joint_samples: 1, ..RewardSettings::default() })
            .unwrap()
            .estimate(&similarity, &layout, &gains, &samples)
            .unwrap()
    };
    let weighted = with_kappa(10.0);
    assert!(weighted.document[0].unwrap() > weighted.document[1].unwrap(), "{weighted:?}");
    let flat = with_kappa(0.0);
    // Unweighted: rollout 0 gives (1 + 1/log2 3)/2 averaged over both queries, rollout 1 the mirror.
    assert!((flat.document[0].unwrap() - flat.document[1].unwrap()).abs() < 1e-12, "{flat:?}");
}

#[test]
fn a_single_joint_sample_leaves_unchosen_rollouts_without_reward() {
    let c = case(1);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let r = sampler(Estimator::Batch, 1).sample(&c.similarity, &c.layout, &c.gains, &mut rng).unwrap();
    for d in 0..c.layout.num_doc_slots() {
        let chosen = c.layout.doc_columns(d).filter(|&col| r.document[col].is_some()).count();
        assert_eq!(chosen, 1, "slot {d}");
    }
    assert_eq!(r.document_draws.iter().sum::<u32>() as usize, c.layout.num_doc_slots());
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let c = case(3);
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            sampler(Estimator::Batch, 300).sample(&c.similarity, &c.layout, &c.gains, &mut rng).unwrap()
        })
    };
    assert_eq!(run(1), run(4));
}

#[test]
fn mismatched_inputs_are_rejected() {
    let c = case(0);
    let other = RolloutLayout::new(&[2, 3], &[2, 3, 1, 2, 3]).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert!(sampler(Estimator::Batch, 4).sample(&c.similarity, &other, &c.gains, &mut rng).is_err());
    // Sampling with a document group that has no query cannot reward that document.
    let orphan = SlotGains::new(vec![0, 1], vec![0, 0, 0, 1, 2], vec![0.0; 10]).unwrap();
    assert!(sampler(Estimator::Sampling, 4).sample(&c.similarity, &c.layout, &orphan, &mut rng).is_err());
}
