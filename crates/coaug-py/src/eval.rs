//! `coaug.evaluate`: `coaug eval`'s metrics (trec_eval semantics, BEIR's key names).

use coaug_eval::{evaluate as evaluate_run, EvalOptions, Run};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{as_dict, qrels_from_py};
use crate::errors::value_error;
use crate::index::PyResults;

/// BEIR's cutoffs (`coaug eval` reports all of them).
const KS: [usize; 6] = [1, 3, 5, 10, 100, 1000];

/// A run from Python: `coaug.Results` as they are, or BEIR's `{qid: {doc_id: score}}`.
fn run_from_py(results: &Bound<'_, PyAny>) -> PyResult<Run> {
    if let Ok(r) = results.cast::<PyResults>() {
        return Ok(r.get().run());
    }
    let dict = as_dict(results, "results")?;
    let mut run = Run::new();
    for (qid, docs) in dict.iter() {
        let qid: String = qid.extract().map_err(|_| value_error("results: query ids must be str"))?;
        let docs = as_dict(&docs, &format!("results[{qid:?}]"))?;
        if docs.is_empty() {
            run.insert_ranking(qid.clone(), std::iter::empty());
        }
        for (doc, score) in docs.iter() {
            let doc: String = doc.extract().map_err(|_| value_error(format!("results[{qid:?}]: document ids must be str")))?;
            let score: f64 = score.extract().map_err(|_| value_error(format!("results[{qid:?}][{doc:?}] must be a number")))?;
            run.insert(qid.clone(), doc, score);
        }
    }
    Ok(run)
}

/// The mean metrics of `results` against `qrels`, keyed by BEIR's names (`"NDCG@10"`,
/// `"MAP@10"`, `"Recall@100"`, `"P@10"`, `"MRR@10"`): `coaug eval`'s `metrics.json`.
///
/// `k_values`: the cutoffs (default BEIR's 1, 3, 5, 10, 100, 1000). `metrics`: keep only these
/// keys. `ignore_identical_ids`: drop a document whose id is the query's (BEIR's default).
/// `per_query=True` returns `(mean, {qid: {key: value}})`.
#[pyfunction]
#[pyo3(signature = (qrels, results, *, k_values = None, metrics = None, ignore_identical_ids = true, per_query = false))]
pub fn evaluate<'py>(
    py: Python<'py>,
    qrels: &Bound<'py, PyAny>,
    results: &Bound<'py, PyAny>,
    k_values: Option<Vec<i64>>,
    metrics: Option<Vec<String>>,
    ignore_identical_ids: bool,
    per_query: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let ks: Vec<usize> = match k_values {
        None => KS.to_vec(),
        Some(ks) => {
            if ks.is_empty() {
                return Err(value_error("k_values is empty"));
            }
            ks.into_iter()
                .map(|k| if k <= 0 { Err(value_error(format!("k_values must be positive, got {k}"))) } else { Ok(k as usize) })
                .collect::<PyResult<_>>()?
        }
    };
    let qrels = qrels_from_py(qrels)?;
    let run = run_from_py(results)?;
    let opts = EvalOptions { ignore_identical_ids, ..EvalOptions::default() };
    let computed = py.detach(|| evaluate_run(&qrels, &run, &ks, &opts));
    if let Some(wanted) = &metrics {
        if let Some(unknown) = wanted.iter().find(|m| !computed.mean.contains_key(*m)) {
            let known: Vec<&String> = computed.mean.keys().collect();
            return Err(value_error(format!("unknown metric {unknown:?}; computed: {known:?}")));
        }
    }
    let keep = |key: &String| metrics.as_ref().is_none_or(|m| m.contains(key));
    let mean = PyDict::new(py);
    for (key, value) in computed.mean.iter().filter(|(k, _)| keep(k)) {
        mean.set_item(key, value)?;
    }
    if !per_query {
        return Ok(mean.into_any());
    }
    let each = PyDict::new(py);
    for (qid, values) in &computed.per_query {
        let d = PyDict::new(py);
        for (key, value) in values.iter().filter(|(k, _)| keep(k)) {
            d.set_item(key, value)?;
        }
        each.set_item(qid, d)?;
    }
    Ok((mean, each).into_pyobject(py)?.into_any())
}
