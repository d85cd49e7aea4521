//! Loading the real NFCorpus and SciFact shipped beside the repository; counts from
//! shared/data/README.md.

use std::collections::BTreeSet;

use coaug_data::{shared_beir_dir, Dataset};

fn open(name: &str) -> Dataset {
    Dataset::open(shared_beir_dir().join(name)).expect("shared dataset opens")
}

fn scores(qrels: &coaug_data::Qrels) -> BTreeSet<i32> {
    qrels.iter().flat_map(|(_, docs)| docs.values().copied()).collect()
}

#[test]
fn nfcorpus_counts_match_the_readme() {
    let nf = open("nfcorpus");
    assert_eq!(nf.name(), "nfcorpus");
    assert_eq!(nf.splits(), ["dev", "test", "train"]);
    let corpus = nf.load_corpus().unwrap();
    assert_eq!(corpus.len(), 3633);
    assert_eq!(corpus[0].id, "MED-10");
    assert!(corpus[0].full_text().starts_with("Statin Use and Breast Cancer Survival"));
    assert_eq!(nf.queries().unwrap().len(), 3237);

    let test = nf.qrels("test").unwrap();
    assert_eq!((test.num_judgements(), test.num_queries()), (12_334, 323));
    assert_eq!(scores(&test), BTreeSet::from([1, 2]), "test qrels are graded");
    let dev = nf.qrels("dev").unwrap();
    assert_eq!((dev.num_judgements(), dev.num_queries()), (11_385, 324));
    let train = nf.qrels("train").unwrap();
    assert_eq!((train.num_judgements(), train.num_queries()), (110_575, 2590));
    assert_eq!(scores(&train), BTreeSet::from([1]));
}

#[test]
fn nfcorpus_qrels_are_crlf_and_parse() {
    let nf = open("nfcorpus");
    let raw = std::fs::read_to_string(nf.qrels_path("test").unwrap()).unwrap();
    assert!(raw.starts_with("query-id\tcorpus-id\tscore\r\n"), "the shipped file is CRLF");
    let qrels = nf.qrels("test").unwrap();
    assert_eq!(qrels.relevance("PLAIN-2", "MED-2427"), 2);
    assert!(qrels.get("PLAIN-2").unwrap().keys().all(|d| !d.ends_with('\r')));
}

#[test]
fn nfcorpus_streams_the_same_documents_it_loads() {
    let nf = open("nfcorpus");
    let mut reader = nf.corpus().unwrap();
    let streamed: Vec<_> = reader.by_ref().map(|d| d.unwrap().id).collect();
    assert_eq!(reader.documents_read(), 3633);
    let loaded: Vec<_> = nf.load_corpus().unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(streamed, loaded);
}

#[test]
fn nfcorpus_test_split_is_consistent() {
    let split = open("nfcorpus").load_split("test").unwrap();
    assert!(split.report.is_clean(), "{}", split.report);
    assert_eq!(split.corpus.len(), 3633);
    assert_eq!(split.queries.len(), 323);
    assert_eq!(split.report.queries_total, 3237);
    assert_eq!(split.report.judgements, 12_334);
    assert!(split.queries.iter().all(|q| split.qrels.get(&q.id).is_some()));
}

#[test]
fn scifact_counts_match_the_readme() {
    let sf = open("scifact");
    assert_eq!(sf.splits(), ["test", "train"]);
    assert_eq!(sf.load_corpus().unwrap().len(), 5183);
    assert_eq!(sf.queries().unwrap().len(), 1109);
    let train = sf.qrels("train").unwrap();
    assert_eq!((train.num_judgements(), train.num_queries()), (919, 809));

    let split = sf.load_split("test").unwrap();
    assert!(split.report.is_clean(), "{}", split.report);
    assert_eq!((split.report.judgements, split.queries.len()), (339, 300));
}
