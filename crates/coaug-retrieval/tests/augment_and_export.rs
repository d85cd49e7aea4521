//! Augmenting through the store with the fake generator, then exporting the composed texts.

use coaug_augment::fake::KeywordEcho;
use coaug_augment::{AugmentStore, Retriever, WhitespaceTokens};
use coaug_data::{Document, Query};
use coaug_index::Analyzer;
use coaug_retrieval::{write_corpus_jsonl, write_queries_jsonl, AugmentSettings, Augmenter, Composition, QueryWeight};

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn export_writes_beir_jsonl_with_the_composed_text() {
    let dir = tempfile::tempdir().unwrap();
    let docs = vec![
        Document { id: "d1".into(), title: "Soy".into(), text: "Isoflavones in soy foods.".into() },
        Document { id: "d2".into(), title: "".into(), text: "".into() },
    ];
    let queries = vec![Query { id: "q1".into(), text: "does soy cause cancer".into() }];
    let mut store = AugmentStore::open_in_memory().unwrap();
    let mut generator = KeywordEcho::new();
    let budget = WhitespaceTokens::default();

    let dense = AugmentSettings { retriever: Retriever::Dense, ..AugmentSettings::default() };
    let mut augmenter = Augmenter { generator: &mut generator, budget: &budget, store: &mut store, settings: &dense };
    let (augs, reports) = augmenter.augment(None, Some(&docs), None).unwrap();
    assert_eq!(reports.documents.unwrap().generated, 1, "the empty document is skipped");
    let corpus = dir.path().join("out/corpus.jsonl");
    let counts = write_corpus_jsonl(&corpus, &docs, &augs, Retriever::Dense, &Composition::default()).unwrap();
    assert_eq!((counts.written, counts.augmented), (2, 1));
    let corpus = lines(&corpus);
    assert_eq!(corpus[0]["_id"], "d1");
    assert_eq!(corpus[0]["title"], "");
    // Dense: the abstract in front of "title. text".
    assert_eq!(corpus[0]["text"], "isoflavones, foods\nSoy. Isoflavones in soy foods.");
    assert_eq!(corpus[0]["metadata"]["title"], "Soy");
    assert_eq!(corpus[1]["text"], "");
    assert!(corpus[1]["metadata"]["augmentation"].is_null());

    let sparse = AugmentSettings::default();
    let mut augmenter = Augmenter { generator: &mut generator, budget: &budget, store: &mut store, settings: &sparse };
    let (augs, _) = augmenter.augment(Some(&queries), None, None).unwrap();
    assert_eq!(augs.expansions("q1"), ["does, cause, cancer"]);
    let path = dir.path().join("queries.jsonl");
    // Weight 2: the original twice, then the expansion, for engines without term weights.
    let twice = Composition { query_weight: QueryWeight::Fixed(2.0), ..Composition::default() };
    write_queries_jsonl(&path, &queries, &augs, Retriever::Sparse, &twice, &Analyzer::default()).unwrap();
    let line = &lines(&path)[0];
    assert_eq!(line["_id"], "q1");
    assert_eq!(line["text"], "does soy cause cancer\ndoes soy cause cancer\ndoes, cause, cancer");
    assert_eq!(line["metadata"]["expansions"][0], "does, cause, cancer");
    assert!(!dir.path().join("queries.jsonl.partial").exists());
}

#[test]
fn several_samples_are_distinct_and_resume_from_the_store() {
    let queries: Vec<Query> =
        (0..5).map(|i| Query { id: format!("q{i}"), text: format!("statins cholesterol muscle pain trial number{i}") }).collect();
    let mut store = AugmentStore::open_in_memory().unwrap();
    let budget = WhitespaceTokens::default();
    let settings = AugmentSettings { query_samples: 3, query_temperature: 0.8, ..AugmentSettings::default() };
    let mut generator = KeywordEcho::new();
    let mut augmenter = Augmenter { generator: &mut generator, budget: &budget, store: &mut store, settings: &settings };
    let (first, reports) = augmenter.augment(Some(&queries), None, None).unwrap();
    assert_eq!(reports.queries.len(), 3);
    assert_eq!(generator.requests_answered, 15);
    for q in &queries {
        let samples = first.expansions(&q.id);
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert!(samples[0] != samples[1] || samples[1] != samples[2], "sampled expansions differ: {samples:?}");
    }
    // Again: everything comes from the store.
    let mut again = KeywordEcho::new();
    let mut augmenter = Augmenter { generator: &mut again, budget: &budget, store: &mut store, settings: &settings };
    let (second, _) = augmenter.augment(Some(&queries), None, None).unwrap();
    assert_eq!(again.requests_answered, 0);
    assert_eq!(first, second);
    let greedy_many = AugmentSettings { query_samples: 2, ..AugmentSettings::default() };
    assert!(greedy_many.check().unwrap_err().to_string().contains("temperature"));
}
