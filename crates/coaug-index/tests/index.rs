//! Building, reusing and searching small indexes.

use std::path::Path;

use coaug_index::{
    AugmentationPlacement, Bm25Index, Bm25Scorer, FieldSetup, FieldWeights, Hit, IndexConfig, IndexDoc, IndexError, SearchField, StopWords,
};

fn doc(id: &str, title: &str, text: &str) -> IndexDoc {
    IndexDoc { id: id.into(), title: title.into(), text: text.into(), augmentation: None }
}

fn corpus() -> Vec<IndexDoc> {
    vec![
        doc("d0", "Vitamin D", "Vitamin D deficiency and bone fractures in older adults."),
        doc("d1", "Statins", "Statins lower cholesterol; statins may cause muscle pain."),
        doc("d2", "", "Bone density, calcium and vitamin supplements."),
        doc("d3", "Coffee", "Coffee consumption and heart disease: a cohort study."),
        doc("d4", "Empty", ""),
    ]
}

fn build(dir: &Path, docs: &[IndexDoc], config: &IndexConfig) -> Bm25Index {
    Bm25Index::build(&dir.join("index"), docs, config).unwrap()
}

fn ids(index: &Bm25Index, hits: &[Hit]) -> Vec<String> {
    hits.iter().map(|h| index.doc_id(h.doc).to_owned()).collect()
}

#[test]
fn finds_matching_documents_best_first() {
    let dir = tempfile::tempdir().unwrap();
    let index = build(dir.path(), &corpus(), &IndexConfig::default());
    assert_eq!(index.num_docs(), 5);
    assert_eq!(index.doc_ids(), ["d0", "d1", "d2", "d3", "d4"]);

    // Title terms count ("statins" twice in text, once in title).
    let hits = index.search("statin", 10);
    assert_eq!(ids(&index, &hits), ["d1"]);

    let hits = index.search("bone vitamins", 10);
    let mut found = ids(&index, &hits);
    found.sort();
    assert_eq!(found, ["d0", "d2"]);
    assert!(hits[0].score > hits[1].score);

    assert_eq!(index.search("bone", 1).len(), 1);
    assert!(index.search("bone", 0).is_empty());
    assert!(index.search("melatonin", 10).is_empty());
}

#[test]
fn awkward_query_text_never_errors() {
    let dir = tempfile::tempdir().unwrap();
    let index = build(dir.path(), &corpus(), &IndexConfig::default());
    for query in ["", "   ", "\"", "::", "title:coffee", "(((", "*", "-bone", "AND OR NOT", "a the of", "\u{0}"] {
        let ours = index.search(query, 10);
        let theirs = index.search_with_tantivy(query, 10).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{query:?}");
    }
    // Syntax characters are separators, not operators: "title:coffee" is "title" OR "coffee".
    assert_eq!(ids(&index, &index.search("title:coffee", 10)), ["d3"]);
    assert_eq!(ids(&index, &index.search("-bone", 10)).len(), 2);
}

#[test]
fn engine_agrees_with_tantivy_on_a_small_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let index = build(dir.path(), &corpus(), &IndexConfig::default());
    for query in ["vitamin bone", "statins statins pain", "coffee heart bone vitamin d", "d"] {
        let ours = index.search(query, 10);
        let theirs = index.search_with_tantivy(query, 10).unwrap();
        assert_eq!(ids(&index, &ours), ids(&index, &theirs), "{query:?}");
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a.score - b.score).abs() < 1e-5, "{query:?}: {a:?} vs {b:?}");
        }
    }
}

#[test]
fn batch_search_is_the_same_on_any_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let index = build(dir.path(), &corpus(), &IndexConfig::default());
    let queries = ["vitamin bone", "statins", "", "coffee and heart", "bone"];
    let single: Vec<Vec<Hit>> = queries.iter().map(|q| index.search(q, 3)).collect();
    assert_eq!(index.search_batch(&queries, 3), single);
    for threads in [1, 2, 3] {
        assert_eq!(index.search_batch_with_threads(&queries, 3, threads).unwrap(), single);
    }
}

#[test]
fn reuses_a_matching_index_and_rebuilds_a_stale_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let docs = corpus();
    let config = IndexConfig::default();

    let first = Bm25Index::open_or_build(&path, &docs, &config).unwrap();
    assert!(first.was_built());
    drop(first);
    let again = Bm25Index::open_or_build(&path, &docs, &config).unwrap();
    assert!(!again.was_built());
    assert_eq!(again.search("coffee", 1)[0].doc, 3);
    drop(again);

    let mut changed = docs.clone();
    changed[3].text = "Tea consumption and heart disease.".into();
    let rebuilt = Bm25Index::open_or_build(&path, &changed, &config).unwrap();
    assert!(rebuilt.was_built());
    assert!(rebuilt.search("coffee", 10).iter().all(|h| h.doc == 3));
    assert_eq!(rebuilt.search("tea", 10).len(), 1);
    drop(rebuilt);

    let mut other = config.clone();
    other.analyzer.stop_words = StopWords::None;
    let rebuilt = Bm25Index::open_or_build(&path, &changed, &other).unwrap();
    assert!(rebuilt.was_built());
    assert_eq!(rebuilt.config(), &other);
    assert_eq!(rebuilt.search("and", 10).len(), 3);
}

#[test]
fn stored_documents_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut docs = corpus();
    docs[2].augmentation = Some("osteoporosis".into());
    let index = build(dir.path(), &docs, &IndexConfig::default());
    for (i, d) in docs.iter().enumerate() {
        assert_eq!(&index.document(i as u32).unwrap(), d);
    }
}

#[test]
fn augmentation_in_the_body_or_in_its_own_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut docs = corpus();
    docs[2].augmentation = Some("osteoporosis bone health".into());

    let in_body = build(&dir.path().join("body"), &docs, &IndexConfig::default());
    assert_eq!(ids(&in_body, &in_body.search("osteoporosis", 10)), ["d2"]);
    assert!(in_body.stats(SearchField::Augmentation).is_none());
    let body = docs[2].body(&FieldSetup::default());
    assert_eq!(body, "Bone density, calcium and vitamin supplements. osteoporosis bone health");
    assert_eq!(in_body.scorer().score("osteoporosis bone", &body), in_body.search("osteoporosis bone", 1)[0].score);

    let own = IndexConfig { fields: FieldSetup { augmentation: AugmentationPlacement::OwnField }, ..IndexConfig::default() };
    let separate = build(&dir.path().join("own"), &docs, &own);
    assert_eq!(ids(&separate, &separate.search("osteoporosis", 10)), ["d2"]);
    let aug_stats = separate.stats(SearchField::Augmentation).unwrap();
    assert_eq!(aug_stats.doc_freq("osteoporosi"), 1);
    assert_eq!(aug_stats.num_docs, 5);
    // "bone" matches d2 in both fields: its score is the sum of two BM25s, as in tantivy.
    let ours = separate.search("bone", 10);
    let theirs = separate.search_with_tantivy("bone", 10).unwrap();
    assert_eq!(ids(&separate, &ours), ids(&separate, &theirs));
    for (a, b) in ours.iter().zip(&theirs) {
        assert!((a.score - b.score).abs() < 1e-5);
    }
    assert_eq!(separate.document(2).unwrap(), docs[2]);
}

#[test]
fn weighted_queries_and_field_weights_scale_each_contribution() {
    let dir = tempfile::tempdir().unwrap();
    let mut docs = corpus();
    docs[2].augmentation = Some("osteoporosis bone health".into());
    docs[0].augmentation = Some("calciferol bone".into());
    let own = IndexConfig { fields: FieldSetup { augmentation: AugmentationPlacement::OwnField }, ..IndexConfig::default() };
    let index = build(dir.path(), &docs, &own);
    // Independent reference: one scorer per field, built from that field's statistics.
    let body = index.scorer();
    let aug = Bm25Scorer::new(index.analyzer().clone(), index.stats(SearchField::Augmentation).unwrap().clone());
    let mut query = index.query("vitamin bone");
    query.add_text(index.analyzer(), "osteoporosis", 0.25);
    assert_eq!(query.weight("bone"), 1.0);
    for w in [0.0f32, 0.3, 1.0, 2.5] {
        let hits = &index.search_weighted(std::slice::from_ref(&query), FieldWeights { augmentation: w }, 10)[0];
        assert!(!hits.is_empty());
        for hit in hits {
            let d = &docs[hit.doc as usize];
            let b = body.score("vitamin bone", &d.body(&own.fields)) + 0.25 * body.score("osteoporosis", &d.body(&own.fields));
            let a = d.augmentation.as_deref().map_or(0.0, |t| aug.score("vitamin bone", t) + 0.25 * aug.score("osteoporosis", t));
            assert!((hit.score - (b + w * a)).abs() < 1e-5, "w {w} doc {}: {} vs {}", d.id, hit.score, b + w * a);
        }
    }
    // Integer weights are repeated text; the default field weights are the plain search's.
    let mut doubled = index.query("bone");
    doubled.add_text(index.analyzer(), "bone", 1.0);
    let a = &index.search_weighted(&[doubled], FieldWeights::default(), 10)[0];
    assert_eq!(a, &index.search("bone bone", 10));
}

#[test]
fn refuses_duplicate_ids_and_foreign_directories() {
    let dir = tempfile::tempdir().unwrap();
    let mut docs = corpus();
    docs[4].id = "d1".into();
    let err = Bm25Index::build(&dir.path().join("index"), &docs, &IndexConfig::default()).err().unwrap();
    assert!(matches!(err, IndexError::DuplicateId { first: 1, second: 4, .. }), "{err}");

    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "keep me").unwrap();
    let err = Bm25Index::open_or_build(&foreign, &corpus(), &IndexConfig::default()).err().unwrap();
    assert!(matches!(err, IndexError::NotAnIndex { .. }), "{err}");
    assert!(err.to_string().contains("foreign"));
    assert_eq!(std::fs::read_to_string(foreign.join("notes.txt")).unwrap(), "keep me");

    let missing = Bm25Index::open(&dir.path().join("nowhere")).err().unwrap();
    assert!(missing.to_string().contains("coaug-manifest.json"), "{missing}");
}

#[test]
fn streamed_builds_equal_in_memory_ones_reuse_when_unchanged_and_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let config = IndexConfig::default();
    let docs = corpus();
    let in_memory = build(tmp.path(), &docs, &config);
    let dir = tmp.path().join("streamed");
    let calls = std::cell::Cell::new(0);
    let stream = || {
        calls.set(calls.get() + 1);
        docs.clone().into_iter().map(Ok)
    };
    let streamed = Bm25Index::open_or_build_streaming(&dir, stream, &config).unwrap();
    assert!(streamed.was_built());
    assert_eq!(calls.get(), 1, "no index yet: one pass, the build");
    assert_eq!(streamed.manifest().fingerprint, in_memory.manifest().fingerprint);
    let q = ["vitamin bone", "statins"];
    let (a, b) = (in_memory.search_batch(&q, 5), streamed.search_batch(&q, 5));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(ids(&in_memory, x), ids(&streamed, y));
    }

    // Unchanged corpus: hashed (one pass), reused.
    let again = Bm25Index::open_or_build_streaming(&dir, stream, &config).unwrap();
    assert!(!again.was_built());
    assert_eq!(calls.get(), 2);

    // A read error halfway: the error surfaces and the index already there stays usable.
    let mut changed = docs.clone();
    changed[1].text.push_str(" and more");
    let failing = || {
        changed
            .clone()
            .into_iter()
            .enumerate()
            .map(|(i, d)| if i == 3 { Err(IndexError::Corpus("corpus.jsonl:4: bad JSON".into())) } else { Ok(d) })
    };
    let err = Bm25Index::open_or_build_streaming(&dir, failing, &config).err().unwrap();
    assert!(err.to_string().contains("corpus.jsonl:4"), "{err}");
    let still = Bm25Index::open(&dir).unwrap();
    assert_eq!(still.manifest().fingerprint, in_memory.manifest().fingerprint);
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("building")),
        "staging removed"
    );

    // A repeated id is refused with both positions.
    let mut dup = docs.clone();
    dup[4].id = "d1".into();
    let err = Bm25Index::build_streaming(&tmp.path().join("dup"), dup.into_iter().map(Ok), &config).err().unwrap();
    assert!(matches!(err, IndexError::DuplicateId { first: 1, second: 4, .. }), "{err}");
}
