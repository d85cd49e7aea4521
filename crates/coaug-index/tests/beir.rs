//! BM25 on the shared BEIR test collections: retrieval quality, and score equality between
//! tantivy, the in-memory engine and the standalone scorer.

mod common;

use coaug_index::{Bm25Index, CollectionStats, FieldSetup, Hit, IndexConfig, IndexDoc};

const DEPTH: usize = 100;
const TOLERANCE: f32 = 1e-4;

struct Fixture {
    _dir: tempfile::TempDir,
    docs: Vec<IndexDoc>,
    index: Bm25Index,
    split: coaug_data::LoadedSplit,
}

fn fixture(name: &str) -> Fixture {
    let split = common::test_split(name);
    let docs = IndexDoc::from_documents(&split.corpus);
    let dir = tempfile::tempdir().unwrap();
    let index = Bm25Index::build(&dir.path().join(name), &docs, &IndexConfig::default()).unwrap();
    Fixture { _dir: dir, docs, index, split }
}

fn query_texts(split: &coaug_data::LoadedSplit) -> Vec<&str> {
    split.queries.iter().map(|q| q.text.as_str()).collect()
}

/// Same ranking up to ties: scores agree rank by rank, every shared document has the same
/// score, and a document only one list holds sits at the cut-off score.
fn assert_same_ranking(query: &str, ours: &[Hit], theirs: &[Hit]) {
    assert_eq!(ours.len(), theirs.len(), "{query:?}: result count");
    for (rank, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!((a.score - b.score).abs() < TOLERANCE, "{query:?} rank {rank}: {a:?} vs {b:?}");
    }
    let Some(cutoff) = ours.last().map(|h| h.score) else {
        return;
    };
    for a in ours {
        match theirs.iter().find(|b| b.doc == a.doc) {
            Some(b) => assert!((a.score - b.score).abs() < TOLERANCE, "{query:?}: {a:?} vs {b:?}"),
            None => assert!((a.score - cutoff).abs() < TOLERANCE, "{query:?}: {a:?} missing"),
        }
    }
}

fn check_dataset(name: &str, min_ndcg: f64) {
    let f = fixture(name);
    assert_eq!(f.index.num_docs(), f.docs.len());
    let queries = query_texts(&f.split);

    let hits = f.index.search_batch(&queries, DEPTH);
    let ndcg = common::ndcg_at_10(&f.index, &f.split, &hits);
    eprintln!("{name}: nDCG@10 = {ndcg:.4} over {} queries", queries.len());
    assert!(ndcg >= min_ndcg, "{name}: nDCG@10 {ndcg:.4} < {min_ndcg}");

    // Thread count never changes results.
    assert_eq!(f.index.search_batch_with_threads(&queries, DEPTH, 1).unwrap(), hits);

    // The in-memory engine is tantivy's BM25 (every query, top 100).
    for (query, ours) in queries.iter().zip(&hits) {
        let theirs = f.index.search_with_tantivy(query, DEPTH).unwrap();
        assert_same_ranking(query, ours, &theirs);
    }

    // The index reports the statistics of exactly the bodies it holds.
    let bodies: Vec<String> = f.docs.iter().map(|d| d.body(&FieldSetup::default())).collect();
    let scorer = f.index.scorer();
    assert_eq!(*scorer.stats(), CollectionStats::from_texts(f.index.analyzer(), &bodies));

    // The standalone scorer reproduces every hit's score: bit for bit against the in-memory
    // engine, to 1e-4 against tantivy.
    for query in queries.iter().take(25) {
        let theirs = f.index.search_with_tantivy(query, DEPTH).unwrap();
        let ours = f.index.search(query, DEPTH);
        for hit in &ours {
            assert_eq!(scorer.score(query, &bodies[hit.doc as usize]), hit.score, "{query:?}");
        }
        for hit in &theirs {
            let score = scorer.score(query, &bodies[hit.doc as usize]);
            assert!((score - hit.score).abs() < TOLERANCE, "{query:?}: {score} vs {hit:?}");
        }
    }
}

#[test]
fn nfcorpus_bm25_matches_lucene_quality_and_tantivy_scores() {
    // Lucene flat: 0.3218.
    check_dataset("nfcorpus", 0.320);
}

#[test]
fn scifact_bm25_matches_lucene_quality_and_tantivy_scores() {
    // Lucene flat: 0.6789; Elasticsearch: 0.665.
    check_dataset("scifact", 0.665);
}
