//! Bad input is answered with an error naming the file and line, or (for dangling qrels)
//! a warning counted in the report.

mod common;

use coaug_data::{read_qrels, CorpusReader, DataError, Dataset, Document};
use common::*;

fn open(dir: &tempfile::TempDir) -> Dataset {
    Dataset::open(dir.path()).expect("layout is valid")
}

/// Loading the whole split must fail; returns the error and its message.
fn split_error(dir: &tempfile::TempDir) -> (DataError, String) {
    let err = open(dir).load_split("test").expect_err("bad input must be rejected");
    let message = err.to_string();
    (err, message)
}

#[test]
fn valid_dataset_loads_with_a_clean_report() {
    let dir = valid_dataset();
    let split = open(&dir).load_split("test").unwrap();
    assert_eq!(split.corpus.len(), 3);
    assert_eq!(split.corpus[1], Document { id: "d2".into(), title: String::new(), text: "Statins and cancer.".into() });
    let judged: Vec<_> = split.queries.iter().map(|q| q.id.as_str()).collect();
    assert_eq!(judged, ["q1", "q2"], "only judged queries, in file order");
    assert_eq!(split.qrels.relevance("q1", "d1"), 2);
    assert_eq!(split.qrels.relevance("q1", "d3"), 1);
    assert!(split.report.is_clean(), "{}", split.report);
    assert_eq!((split.report.queries_total, split.report.judgements), (3, 3));
}

#[test]
fn crlf_and_lf_load_identically() {
    let lf = valid_dataset();
    let crlf_dir = dir_with(&[
        ("corpus.jsonl", crlf(CORPUS).as_bytes()),
        ("queries.jsonl", crlf(QUERIES).as_bytes()),
        ("qrels/test.tsv", crlf(QRELS).as_bytes()),
    ]);
    let a = open(&lf).load_split("test").unwrap();
    let b = open(&crlf_dir).load_split("test").unwrap();
    assert_eq!(a.corpus, b.corpus);
    assert_eq!(a.queries, b.queries);
    assert_eq!(a.qrels, b.qrels);
    assert_eq!(a.report, b.report);
}

#[test]
fn qrels_header_is_optional_and_scores_are_graded_integers() {
    let dir = dataset_with("qrels/test.tsv", b"q1\td1\t2\nq1\td2\t0\nq2\td3\t-1\n\n");
    let qrels = open(&dir).qrels("test").unwrap();
    assert_eq!(qrels.num_judgements(), 3);
    assert_eq!(qrels.get("q1").unwrap()["d2"], 0);
    assert_eq!(qrels.relevance("q2", "d3"), -1);
}

#[test]
fn numeric_ids_are_stringified() {
    let dir = dir_with(&[
        ("corpus.jsonl", br#"{"_id": 7, "text": "seven"}"#),
        ("queries.jsonl", br#"{"_id": 12345678901, "text": "q"}"#),
        ("qrels/test.tsv", b"12345678901\t7\t1\n"),
    ]);
    let split = open(&dir).load_split("test").unwrap();
    assert_eq!(split.corpus[0].id, "7");
    assert_eq!(split.queries[0].id, "12345678901");
    assert!(split.report.is_clean(), "{}", split.report);
}

#[test]
fn byte_order_mark_is_ignored() {
    let dir = dataset_with("corpus.jsonl", "\u{feff}{\"_id\": \"d1\", \"text\": \"x\"}\n".as_bytes());
    assert_eq!(open(&dir).load_corpus().unwrap()[0].id, "d1");
}

#[test]
fn malformed_json_names_file_and_line() {
    // Blank lines still count, so the editor's line number is the one reported.
    let corpus = "{\"_id\": \"d1\", \"text\": \"a\"}\n\n{\"_id\": \"d2\", \"text\": \"b\"\n";
    let dir = dataset_with("corpus.jsonl", corpus.as_bytes());
    let (err, message) = split_error(&dir);
    assert!(matches!(err, DataError::MalformedJson { line: 3, .. }), "{err:?}");
    let expected_prefix = format!("{}:3: malformed JSON", dir.path().join("corpus.jsonl").display());
    assert!(message.starts_with(&expected_prefix), "{message}");
    assert!(!message.contains("line 1 column"), "serde's own line is meaningless here: {message}");
}

#[test]
fn a_json_value_that_is_not_a_record_is_malformed() {
    for line in [r#"["d1", "text"]"#, r#"{"_id": "d1", "title": 5, "text": "x"}"#, "not json"] {
        let dir = dataset_with("corpus.jsonl", line.as_bytes());
        let (err, _) = split_error(&dir);
        assert!(matches!(err, DataError::MalformedJson { line: 1, .. }), "{line}: {err:?}");
    }
}

#[test]
fn streaming_yields_good_documents_then_the_error_then_stops() {
    let corpus = "{\"_id\": \"d1\", \"text\": \"a\"}\n{broken\n{\"_id\": \"d3\", \"text\": \"c\"}\n";
    let dir = dataset_with("corpus.jsonl", corpus.as_bytes());
    let mut reader = open(&dir).corpus().unwrap();
    assert_eq!(reader.next().unwrap().unwrap().id, "d1");
    assert!(matches!(reader.next(), Some(Err(DataError::MalformedJson { line: 2, .. }))));
    assert!(reader.next().is_none());
}

#[test]
fn missing_or_null_id_is_reported() {
    for corpus in [
        "{\"_id\": \"d1\", \"text\": \"a\"}\n{\"text\": \"b\"}\n",
        "{\"_id\": \"d1\", \"text\": \"a\"}\n{\"_id\": null, \"text\": \"b\"}\n",
    ] {
        let dir = dataset_with("corpus.jsonl", corpus.as_bytes());
        let (err, message) = split_error(&dir);
        assert!(matches!(err, DataError::MissingField { line: 2, field: "_id", .. }), "{err:?}");
        assert!(message.contains("corpus.jsonl:2: missing field `_id`"), "{message}");
    }
}

#[test]
fn unusable_ids_are_rejected() {
    for (id, why) in [("1.5", "not an integer"), ("\"  \"", "empty"), ("true", "a boolean"), ("{}", "an object")] {
        let dir = dataset_with("queries.jsonl", format!("{{\"_id\": {id}, \"text\": \"q\"}}\n").as_bytes());
        let err = open(&dir).queries().expect_err(id);
        assert!(matches!(err, DataError::InvalidId { line: 1, .. }), "{id}: {err:?}");
        assert!(err.to_string().contains(why), "{id}: {err}");
    }
}

#[test]
fn missing_text_is_reported() {
    let dir = dataset_with("queries.jsonl", b"{\"_id\": \"q1\", \"title\": \"only a title\"}\n");
    let err = open(&dir).queries().unwrap_err();
    assert!(matches!(err, DataError::MissingField { line: 1, field: "text", .. }), "{err:?}");
}

#[test]
fn duplicate_ids_are_errors() {
    let corpus = "{\"_id\": \"d1\", \"text\": \"a\"}\n{\"_id\": \"d2\", \"text\": \"b\"}\n{\"_id\": \"d1\", \"text\": \"c\"}\n";
    let dir = dataset_with("corpus.jsonl", corpus.as_bytes());
    let (err, message) = split_error(&dir);
    assert!(matches!(&err, DataError::DuplicateId { line: 3, first_line: 1, id, .. } if id == "d1"), "{err:?}");
    assert!(message.contains("corpus.jsonl:3: duplicate id `d1` (first seen on line 1)"), "{message}");

    // A numeric id and its string form are the same id once stringified.
    let queries = "{\"_id\": \"5\", \"text\": \"a\"}\n{\"_id\": 5, \"text\": \"b\"}\n";
    let dir = dataset_with("queries.jsonl", queries.as_bytes());
    assert!(matches!(open(&dir).queries(), Err(DataError::DuplicateId { line: 2, .. })));
}

#[test]
fn empty_files_are_errors() {
    for (file, contents) in [
        ("corpus.jsonl", &b""[..]),
        ("corpus.jsonl", b"\n  \r\n"),
        ("queries.jsonl", b""),
        ("qrels/test.tsv", b"query-id\tcorpus-id\tscore\r\n"),
    ] {
        let dir = dataset_with(file, contents);
        let (err, message) = split_error(&dir);
        assert!(matches!(err, DataError::EmptyFile { .. }), "{file}: {err:?}");
        assert!(message.contains(file) && message.contains("empty"), "{message}");
    }
}

#[test]
fn non_utf8_is_reported_with_file_and_line() {
    let corpus = b"{\"_id\": \"d1\", \"text\": \"a\"}\n{\"_id\": \"d2\", \"text\": \"caf\xe9\"}\n";
    let dir = dataset_with("corpus.jsonl", corpus);
    let (err, message) = split_error(&dir);
    assert!(matches!(err, DataError::InvalidUtf8 { line: 2, column: 27, .. }), "{err:?}");
    assert!(message.contains("corpus.jsonl:2: invalid UTF-8"), "{message}");

    let dir = dataset_with("qrels/test.tsv", b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq\xff\td2\t1\n");
    let err = open(&dir).qrels("test").unwrap_err();
    assert!(matches!(err, DataError::InvalidUtf8 { line: 3, .. }), "{err:?}");
}

#[test]
fn qrels_with_wrong_columns_or_scores_name_the_line() {
    for (line, expect) in [
        ("q1 d1 1", "found 1"),
        ("q1\t0\td1\t1", "found 4"),
        ("q1\td1", "found 2"),
        ("q1\td1\t1.5", "score `1.5` is not an integer"),
        ("q1\td1\thigh", "score `high` is not an integer"),
        ("\td1\t1", "empty query-id"),
    ] {
        let contents = format!("query-id\tcorpus-id\tscore\r\nq2\td2\t1\r\n{line}\r\n");
        let dir = dataset_with("qrels/test.tsv", contents.as_bytes());
        let err = read_qrels(dir.path().join("qrels/test.tsv")).unwrap_err();
        assert!(matches!(err, DataError::MalformedQrels { line: 3, .. }), "{line}: {err:?}");
        let message = err.to_string();
        assert!(message.contains("test.tsv:3: ") && message.contains(expect), "{message}");
    }
}

#[test]
fn dangling_qrels_are_counted_and_unknown_queries_dropped() {
    let qrels = "query-id\tcorpus-id\tscore\n\
                 q1\td1\t2\nq1\tgone\t1\nq1\td1\t1\n\
                 q9\td1\t1\nq9\td2\t1\n\
                 q2\tgone\t1\nq2\tlost\t1\n";
    let dir = dataset_with("qrels/test.tsv", qrels.as_bytes());
    let split = open(&dir).load_split("test").unwrap();
    let r = &split.report;
    assert!(!r.is_clean());
    assert_eq!(r.duplicate_judgements, 1);
    assert_eq!(split.qrels.relevance("q1", "d1"), 1, "the last score wins");
    assert_eq!((r.unknown_queries, r.dropped_judgements), (1, 2));
    assert_eq!((r.unknown_documents, r.judgements_to_unknown_documents), (2, 3));
    assert!(split.qrels.get("q9").is_none());
    assert_eq!(split.qrels.relevance("q2", "gone"), 1, "judgements of missing documents are kept");
    assert_eq!((r.queries_judged, r.judgements), (2, 4));
    assert_eq!(split.queries.len(), 2);
    let summary = r.to_string();
    assert!(summary.contains("1 unknown queries (2 judgements dropped)"), "{summary}");
    assert!(summary.contains("2 unknown documents (3 judgements)"), "{summary}");
}

#[test]
fn a_directory_that_is_not_a_dataset_lists_what_is_missing() {
    let empty = dir_with(&[]);
    let message = Dataset::open(empty.path()).unwrap_err().to_string();
    assert!(message.contains("corpus.jsonl, queries.jsonl, qrels/<split>.tsv"), "{message}");

    let partial = dir_with(&[("corpus.jsonl", CORPUS.as_bytes()), ("qrels/readme.txt", b"")]);
    match Dataset::open(partial.path()).unwrap_err() {
        DataError::NotADataset { missing, .. } => {
            assert_eq!(missing, ["queries.jsonl", "qrels/<split>.tsv"])
        }
        other => panic!("{other:?}"),
    }

    let missing = Dataset::open(empty.path().join("nope")).unwrap_err();
    assert!(matches!(missing, DataError::NoSuchDirectory { .. }), "{missing:?}");
}

#[test]
fn pointing_at_the_data_directory_suggests_the_datasets_in_it() {
    let data = dir_with(&[
        ("mini/corpus.jsonl", CORPUS.as_bytes()),
        ("mini/queries.jsonl", QUERIES.as_bytes()),
        ("mini/qrels/test.tsv", QRELS.as_bytes()),
    ]);
    let message = Dataset::open(data.path()).unwrap_err().to_string();
    assert!(message.contains("sub-directories: mini"), "{message}");
}

#[test]
fn unknown_split_lists_the_available_ones() {
    let dir = valid_dataset();
    let message = open(&dir).qrels("dev").unwrap_err().to_string();
    assert!(message.contains("no qrels split `dev` (available: test)"), "{message}");
}

#[test]
fn corpus_reader_works_on_any_buffered_source() {
    let reader = CorpusReader::from_reader(CORPUS.as_bytes(), "in-memory");
    let ids: Vec<_> = reader.map(|d| d.unwrap().id).collect();
    assert_eq!(ids, ["d1", "d2", "d3"]);
}
