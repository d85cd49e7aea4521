//! Invariants and determinism of the composite sampler, on a synthetic collection and on the
//! NFCorpus training qrels.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use coaug_data::Qrels;
use coaug_rl::{CompositeConfig, CompositeSampler, DocRole, GainScope, PositiveShortfall, PromptRole};

/// 6 queries; q0 has 1 positive, q1 2, the others 4; shared positive `shared` for q2 and q3;
/// every query has 2 judged-0 documents; 40 unjudged documents.
fn collection() -> (Qrels, Vec<String>) {
    let mut qrels = Qrels::new();
    let mut corpus = Vec::new();
    for q in 0..6 {
        let positives = match q {
            0 => 1,
            1 => 2,
            _ => 4,
        };
        for p in 0..positives {
            let doc = format!("pos-{q}-{p}");
            qrels.insert(format!("q{q}"), doc.clone(), 1 + p % 2);
            corpus.push(doc);
        }
        for h in 0..2 {
            let doc = format!("hard-{q}-{h}");
            qrels.insert(format!("q{q}"), doc.clone(), 0);
            corpus.push(doc);
        }
    }
    qrels.insert("q2", "shared", 1);
    qrels.insert("q3", "shared", 2);
    corpus.push("shared".into());
    // A judgement for a document the corpus lacks, and a query with no usable positive.
    qrels.insert("q1", "missing-doc", 1);
    qrels.insert("q9", "missing-doc", 1);
    corpus.extend((0..40).map(|i| format!("other-{i}")));
    (qrels, corpus)
}

fn config(b: usize, p: usize, h: usize, r: usize) -> CompositeConfig {
    CompositeConfig { groups_per_step: b, positives: p, hard_negatives: h, random_negatives: r, ..Default::default() }
}

#[test]
fn groups_have_the_configured_shape_and_roles() {
    let (qrels, corpus) = collection();
    let sampler = CompositeSampler::new(config(3, 3, 1, 4), &qrels, &corpus, 11).unwrap();
    let stats = sampler.stats();
    assert_eq!((stats.train_queries, stats.queries_without_positives, stats.judgements_outside_corpus), (6, 1, 2));
    // Never-positive: the 12 hard negatives and 40 others.
    assert_eq!(stats.never_positive_pool, 52);

    let ever_positive: BTreeSet<&str> =
        qrels.iter().flat_map(|(_, d)| d.iter().filter(|(_, &g)| g > 0).map(|(id, _)| id.as_str())).collect();
    for step in 0..20 {
        let batch = sampler.batch(step);
        assert_eq!(batch.num_groups(), 3);
        assert_eq!(batch.documents.len(), 3 * 8);
        for (g, query) in batch.queries.iter().enumerate() {
            let docs = &batch.documents[batch.group_documents(g)];
            let judged = qrels.get(&query.query_id).unwrap();
            let positives = judged.iter().filter(|(id, &s)| s > 0 && corpus.contains(id)).count().min(3);
            let roles: Vec<DocRole> = docs.iter().map(|d| d.role).collect();
            assert!(roles[..positives].iter().all(|&r| r == DocRole::Positive), "{roles:?}");
            assert_eq!(roles.iter().filter(|&&r| r == DocRole::Positive).count(), positives);
            assert_eq!(roles.iter().filter(|&&r| r == DocRole::HardNegative).count(), 1);
            for doc in docs {
                assert_eq!(doc.group, g);
                match doc.role {
                    DocRole::Positive => assert!(doc.grade > 0 && judged.contains_key(&doc.doc_id)),
                    DocRole::HardNegative => assert_eq!(judged.get(&doc.doc_id), Some(&0)),
                    DocRole::RandomNegative => assert!(!ever_positive.contains(doc.doc_id.as_str()), "{}", doc.doc_id),
                    DocRole::MinedNegative => panic!("no mined negatives were configured"),
                }
                assert!(corpus.contains(&doc.doc_id));
            }
            // Without replacement, shortfall filled by negatives: no document twice in a group.
            let distinct: BTreeSet<&str> = docs.iter().map(|d| d.doc_id.as_str()).collect();
            assert_eq!(distinct.len(), docs.len(), "{docs:?}");
        }
        let roles = batch.document_roles();
        assert!(batch.documents.iter().zip(&roles).all(|(d, r)| (d.role == DocRole::Positive) == (*r == PromptRole::PositiveDocument)));
    }
}

#[test]
fn the_paper_shortfall_repeats_positives() {
    let (qrels, corpus) = collection();
    let cfg = CompositeConfig { positive_shortfall: PositiveShortfall::RepeatPositives, ..config(6, 3, 0, 2) };
    let sampler = CompositeSampler::new(cfg, &qrels, &corpus, 1).unwrap();
    let batch = sampler.batch(0);
    let g = batch.queries.iter().position(|q| q.query_id == "q0").expect("one epoch of 6 covers q0");
    let docs = &batch.documents[batch.group_documents(g)];
    assert!(docs[..3].iter().all(|d| d.doc_id == "pos-0-0" && d.role == DocRole::Positive));
    assert!(docs[3..].iter().all(|d| d.role == DocRole::RandomNegative));
}

#[test]
fn each_epoch_visits_every_training_query_once() {
    let (qrels, corpus) = collection();
    let sampler = CompositeSampler::new(config(2, 1, 0, 1), &qrels, &corpus, 5).unwrap();
    assert_eq!(sampler.steps_per_epoch(), 3.0);
    for epoch in 0..3u64 {
        let seen: Vec<String> = (epoch * 3..epoch * 3 + 3).flat_map(|s| sampler.batch(s).queries).map(|q| q.query_id).collect();
        let distinct: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(distinct.len(), 6, "epoch {epoch}: {seen:?}");
    }
    // Epochs are shuffled differently.
    let order = |e: u64| -> Vec<String> { (e * 3..e * 3 + 3).flat_map(|s| sampler.batch(s).queries).map(|q| q.query_id).collect() };
    assert!(order(0) != order(1) || order(1) != order(2));
}

#[test]
fn a_step_depends_only_on_seed_and_step() {
    let (qrels, corpus) = collection();
    let a = CompositeSampler::new(config(4, 2, 1, 3), &qrels, &corpus, 42).unwrap();
    let b = CompositeSampler::new(config(4, 2, 1, 3), &qrels, &corpus, 42).unwrap();
    let later_first = b.batch(7);
    let in_order: Vec<_> = (0..8).map(|s| a.batch(s)).collect();
    assert_eq!(in_order[7], later_first, "resuming at step 7 must not need steps 0..7");
    let other_seed = CompositeSampler::new(config(4, 2, 1, 3), &qrels, &corpus, 43).unwrap();
    assert_ne!((0..8).map(|s| other_seed.batch(s)).collect::<Vec<_>>(), in_order);
    // Corpus order does not matter.
    let mut reversed = corpus.clone();
    reversed.reverse();
    let c = CompositeSampler::new(config(4, 2, 1, 3), &qrels, &reversed, 42).unwrap();
    assert_eq!(c.batch(3), in_order[3]);
}

#[test]
fn gains_follow_the_qrels_across_groups_or_stay_in_the_own_group() {
    let (qrels, corpus) = collection();
    // P = 5 takes every positive of q2 and q3, so `shared` is in both their groups; B = 6 puts
    // every query in each step.
    for scope in [GainScope::Qrels, GainScope::OwnGroup] {
        let cfg = CompositeConfig { gain_scope: scope, ..config(6, 5, 0, 2) };
        let sampler = CompositeSampler::new(cfg, &qrels, &corpus, 3).unwrap();
        let batch = sampler.batch(0);
        let q2 = batch.queries.iter().position(|q| q.query_id == "q2").unwrap();
        let q3 = batch.queries.iter().position(|q| q.query_id == "q3").unwrap();
        let slot = batch.group_documents(q3).find(|&d| batch.documents[d].doc_id == "shared").unwrap();
        assert_eq!(batch.gains().gain(q3, slot), 2.0);
        let cross = batch.gains().gain(q2, slot);
        match scope {
            GainScope::Qrels => assert_eq!(cross, 1.0, "q2 judges `shared` 1 wherever it sits"),
            GainScope::OwnGroup => assert_eq!(cross, 0.0),
        }
        for (q, query) in batch.queries.iter().enumerate() {
            for (d, doc) in batch.documents.iter().enumerate() {
                let g = batch.gains().gain(q, d);
                let grade = qrels.relevance(&query.query_id, &doc.doc_id).max(0) as f32;
                match scope {
                    GainScope::Qrels => assert_eq!(g, grade),
                    GainScope::OwnGroup => assert_eq!(g, if doc.group == q { grade } else { 0.0 }),
                }
            }
        }
    }
}

#[test]
fn too_small_a_negative_pool_is_an_error() {
    let (qrels, corpus) = collection();
    let err = CompositeSampler::new(config(1, 5, 0, 60), &qrels, &corpus, 0).unwrap_err();
    assert!(err.to_string().contains("never-positive pool"), "{err}");
    assert!(CompositeSampler::new(config(0, 5, 0, 1), &qrels, &corpus, 0).is_err());
}

fn beir_dir() -> PathBuf {
    std::env::var_os("COAUG_DATA")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/beir"))
}

#[test]
fn nfcorpus_train_batches() {
    let dir = beir_dir().join("nfcorpus");
    let qrels = coaug_data::read_qrels(dir.join("qrels/train.tsv")).expect("NFCorpus train qrels under ../shared/data/beir");
    let corpus: Vec<String> =
        coaug_data::read_corpus(dir.join("corpus.jsonl")).expect("NFCorpus corpus").into_iter().map(|d| d.id).collect();
    let sampler = CompositeSampler::new(CompositeConfig::default(), &qrels, &corpus, 0).unwrap();
    let stats = sampler.stats().clone();
    assert!(stats.train_queries > 2000, "{stats:?}");
    // NFCorpus judges most documents relevant to some training query: the pool is small.
    assert!(stats.never_positive_pool >= 15 && stats.never_positive_pool < 200, "{stats:?}");
    let batch = sampler.batch(0);
    assert_eq!((batch.queries.len(), batch.documents.len()), (32, 32 * 15));
    let mut positives_by_group: BTreeMap<usize, usize> = BTreeMap::new();
    for d in &batch.documents {
        if d.role == DocRole::Positive {
            *positives_by_group.entry(d.group).or_default() += 1;
        }
    }
    assert!(positives_by_group.values().all(|&n| n <= 5));
    assert!(positives_by_group.values().filter(|&&n| n == 5).count() > 16, "{positives_by_group:?}");
}

#[test]
fn mined_negatives_come_from_the_top_of_the_ranking_and_are_unjudged() {
    let (qrels, corpus) = collection();
    let c = CompositeConfig { mined_negatives: 2, mine_depth: 5, ..config(3, 2, 0, 3) };
    // Each query's "ranking": its own judged documents interleaved with unjudged ones. q0's
    // ranking holds a single unjudged document, so it falls short by one; the others hold three
    // within the depth and one (other-1) below it.
    let mut ranked = BTreeMap::new();
    for q in 0..6 {
        let docs: Vec<String> = if q == 0 {
            vec!["pos-0-0".into(), "hard-0-0".into(), "other-0".into(), "hard-0-1".into()]
        } else {
            let (a, b) = (format!("other-{}", 2 * q), format!("other-{}", 2 * q + 1));
            vec![format!("pos-{q}-0"), a, format!("hard-{q}-0"), b, "other-30".into(), "other-1".into()]
        };
        ranked.insert(format!("q{q}"), docs);
    }
    let sampler = CompositeSampler::new(c, &qrels, &corpus, 3).unwrap().with_mined_negatives(&ranked);
    assert_eq!(sampler.stats().queries_short_of_mined, 1);
    let mut mined_seen = BTreeSet::new();
    for step in 0..12 {
        let batch = sampler.batch(step);
        assert_eq!(batch.documents.len(), 3 * 7);
        for (g, query) in batch.queries.iter().enumerate() {
            let docs = &batch.documents[batch.group_documents(g)];
            let judged = qrels.get(&query.query_id).unwrap();
            let top: Vec<&str> = ranked[&query.query_id].iter().take(5).map(String::as_str).collect();
            let mined: Vec<&str> = docs.iter().filter(|d| d.role == DocRole::MinedNegative).map(|d| d.doc_id.as_str()).collect();
            let randoms = docs.iter().filter(|d| d.role == DocRole::RandomNegative).count();
            for d in &mined {
                assert!(top.contains(d) && !judged.contains_key(*d), "{} mined {d}", query.query_id);
                mined_seen.insert(d.to_string());
            }
            // Every group holds P + M + R documents; what q0 lacks (a positive and a mined
            // negative) is made up with random negatives.
            let positives = docs.iter().filter(|d| d.role == DocRole::Positive).count();
            assert_eq!(mined.len(), if query.query_id == "q0" { 1 } else { 2 }, "{docs:?}");
            assert_eq!(positives + mined.len() + randoms, 2 + 2 + 3, "{docs:?}");
            let ids: BTreeSet<&str> = docs.iter().map(|d| d.doc_id.as_str()).collect();
            assert_eq!(ids.len(), docs.len(), "duplicate documents in a group: {docs:?}");
            assert!(docs.iter().filter(|d| d.role == DocRole::MinedNegative).all(|d| d.role.prompt_role() == PromptRole::NegativeDocument));
        }
    }
    // The unjudged documents beyond the depth are never mined.
    assert!(!mined_seen.contains("other-1"), "{mined_seen:?}");
    assert!(mined_seen.contains("other-30"));
}
