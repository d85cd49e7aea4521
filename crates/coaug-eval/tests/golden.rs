//! Agreement with pytrec_eval on a real run: bm25s over NFCorpus (test split), top-1000, scores
//! rounded to 1 decimal so that ties are everywhere. The run and pytrec_eval's values were made
//! by `tests/golden/make_golden.py` (see its header for the command); the run also leaves two
//! judged queries out and puts a document named like the query first in two others.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use coaug_data::Qrels;
use coaug_eval::{evaluate, EvalOptions, Measure, Metrics, Run, ScorePrecision};

const TOLERANCE: f64 = 1e-4;
const K_VALUES: [usize; 6] = [1, 3, 5, 10, 100, 1000];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// BEIR data: `$COAUG_DATA`, else `shared/data/beir` next to the repository.
fn data_dir() -> PathBuf {
    std::env::var_os("COAUG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/beir"))
}

/// Minimal reader for BEIR's `qrels/*.tsv` (header line, tab-separated, CRLF or LF).
fn read_qrels(path: &Path) -> Qrels {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e} (set COAUG_DATA to the BEIR data folder)", path.display()));
    let mut qrels = Qrels::new();
    for (index, line) in text.lines().enumerate().skip(1) {
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        let [query_id, doc_id, score] = fields[..] else {
            panic!("{}:{}: expected 3 tab-separated fields", path.display(), index + 1);
        };
        let score = score.parse().unwrap_or_else(|_| panic!("{}:{}: bad score `{score}`", path.display(), index + 1));
        qrels.insert(query_id, doc_id, score);
    }
    qrels
}

fn read_gzipped_run(path: &Path) -> Run {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = BufReader::new(flate2::read::GzDecoder::new(file));
    Run::read_trec_from(reader, path).unwrap()
}

#[derive(serde::Deserialize)]
struct Golden {
    num_queries: usize,
    k_values: Vec<usize>,
    mean: BTreeMap<String, f64>,
    per_query: BTreeMap<String, BTreeMap<String, f64>>,
}

fn load_golden() -> Golden {
    let path = golden_dir().join("nfcorpus_bm25s_r1.golden.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn evaluate_golden_run(opts: &EvalOptions) -> Metrics {
    let qrels = read_qrels(&data_dir().join("nfcorpus/qrels/test.tsv"));
    let run = read_gzipped_run(&golden_dir().join("nfcorpus_bm25s_r1.run.gz"));
    evaluate(&qrels, &run, &K_VALUES, opts)
}

/// Largest |ours - golden| over the per-query values, with where it happened.
fn worst_per_query_gap(ours: &Metrics, golden: &Golden) -> (f64, String) {
    let mut worst = (0.0, String::new());
    for (query_id, expected) in &golden.per_query {
        for (key, &value) in expected {
            let got = ours.per_query[query_id][key];
            if (got - value).abs() > worst.0 {
                worst = ((got - value).abs(), format!("{query_id} {key}: ours {got}, pytrec_eval {value}"));
            }
        }
    }
    worst
}

#[test]
fn matches_pytrec_eval_on_nfcorpus_bm25_run() {
    let golden = load_golden();
    assert_eq!(golden.k_values, K_VALUES);
    let ours = evaluate_golden_run(&EvalOptions::default());

    assert_eq!(ours.num_queries, golden.num_queries);
    assert_eq!(ours.mean.len(), 30);
    for measure in Measure::ALL {
        for k in K_VALUES {
            let key = measure.key(k);
            let (got, expected) = (ours.mean[&key], golden.mean[&key]);
            assert!((got - expected).abs() <= TOLERANCE, "{key}: ours {got}, pytrec_eval {expected}");
        }
    }
    assert_eq!(ours.per_query.keys().collect::<Vec<_>>(), golden.per_query.keys().collect::<Vec<_>>());
    let (gap, at) = worst_per_query_gap(&ours, &golden);
    assert!(gap <= TOLERANCE, "per-query disagreement {gap}: {at}");
}

/// The golden run is sensitive to the conventions it exercises: getting any of them wrong
/// moves the numbers beyond the tolerance, so the test above really checks them.
#[test]
fn golden_run_detects_wrong_conventions() {
    let golden = load_golden();
    let keeping_identical_ids = EvalOptions { ignore_identical_ids: false, ..EvalOptions::default() };
    let ours = evaluate_golden_run(&keeping_identical_ids);
    assert!(worst_per_query_gap(&ours, &golden).0 > TOLERANCE);

    // Rounded scores stay distinct in f32, so precision alone must not change anything...
    let f64_scores = EvalOptions { score_precision: ScorePrecision::F64, ..EvalOptions::default() };
    let ours = evaluate_golden_run(&f64_scores);
    assert!(worst_per_query_gap(&ours, &golden).0 <= TOLERANCE);

    // ...while the tie order matters: with every document id replaced by its complement (which
    // reverses the order of same-length ids), trec_eval's tie-breaking picks other documents.
    let qrels = read_qrels(&data_dir().join("nfcorpus/qrels/test.tsv"));
    let run = read_gzipped_run(&golden_dir().join("nfcorpus_bm25s_r1.run.gz"));
    let mut flipped_qrels = Qrels::new();
    for (query_id, judgements) in qrels.iter() {
        for (doc_id, &grade) in judgements {
            flipped_qrels.insert(query_id.clone(), complement(doc_id), grade);
        }
    }
    let mut flipped_run = Run::new();
    for (query_id, docs) in run.iter() {
        for (doc_id, &score) in docs.iter().filter(|(doc_id, _)| *doc_id != query_id) {
            flipped_run.insert(query_id.clone(), complement(doc_id), score);
        }
    }
    let ours = evaluate(&flipped_qrels, &flipped_run, &K_VALUES, &EvalOptions::default());
    assert_eq!(ours.num_queries, golden.num_queries);
    assert!(worst_per_query_gap(&ours, &golden).0 > TOLERANCE);
}

/// Maps each printable ASCII character onto its mirror image in that range.
fn complement(id: &str) -> String {
    let mirror = |c: char| {
        assert!((' '..='~').contains(&c), "non-ASCII id character {c:?}");
        char::from(b'~' - (c as u8 - b' '))
    };
    id.chars().map(mirror).collect()
}
