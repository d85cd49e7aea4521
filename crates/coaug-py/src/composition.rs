//! `coaug.Composition`: how an expansion and the original query are combined and where a
//! document's augmentation is searched, for `Augmenter`, `BM25Index.search` and `evaluate` alike.

use coaug_retrieval::Composition;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::errors::{value_error, IntoPyResult};

/// How an expansion and the original query are combined, and where a document's augmentation
/// is searched: coaug-retrieval's `Composition` (the command line's `--query-weight`,
/// `--doc-field`, `--sample-fusion`; the defaults are the project's).
#[pyclass(module = "coaug._native", name = "Composition", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PyComposition {
    pub inner: Composition,
}

#[pymethods]
impl PyComposition {
    /// `query_weight`: `W` (the original counts W times), `share:S` or `terms:C`;
    /// `doc_field`: `body` or `own:W`; `sample_fusion`: `concat` or `rrf`. None: the default.
    #[new]
    #[pyo3(signature = (query_weight = None, doc_field = None, sample_fusion = None))]
    fn new(query_weight: Option<&Bound<'_, PyAny>>, doc_field: Option<&str>, sample_fusion: Option<&str>) -> PyResult<Self> {
        let mut inner = Composition::default();
        if let Some(w) = query_weight {
            let text = if w.is_instance_of::<PyString>() { w.extract::<String>()? } else { w.str()?.to_string() };
            inner.query_weight = text.parse().map_err(|e: anyhow::Error| value_error(format!("{e:#}")))?;
        }
        if let Some(d) = doc_field {
            inner.doc_field = d.parse().map_err(|e: anyhow::Error| value_error(format!("{e:#}")))?;
        }
        if let Some(s) = sample_fusion {
            inner.sample_fusion = s.parse().map_err(|e: anyhow::Error| value_error(format!("{e:#}")))?;
        }
        Ok(Self { inner })
    }

    /// The project's default (what `coaug eval` uses without composition flags).
    #[staticmethod]
    fn default() -> Self {
        Self { inner: Composition::default() }
    }

    /// The method's unweighted `q ⊕ a`, `d ⊕ a_d`.
    #[staticmethod]
    fn plain_append() -> Self {
        Self { inner: Composition::plain_append() }
    }

    #[getter]
    fn query_weight(&self) -> String {
        self.inner.query_weight.to_string()
    }

    #[getter]
    fn doc_field(&self) -> String {
        self.inner.doc_field.to_string()
    }

    #[getter]
    fn sample_fusion(&self) -> String {
        self.inner.sample_fusion.to_string()
    }

    /// The searched query as one text (original, then the expansions, one per line), for engines
    /// that take text; coaug's BM25 weighs terms instead (`weighted_query`).
    fn query_text(&self, original: &str, expansions: Vec<String>) -> String {
        self.inner.query_text(original, &expansions)
    }

    /// The BM25 query coaug searches for `original` expanded by `expansions`: `[(term, weight)]`
    /// after analysis (stemming, `stop_words` dropped).
    #[pyo3(signature = (original, expansions, stop_words = "nltk"))]
    fn weighted_query(&self, original: &str, expansions: Vec<String>, stop_words: &str) -> PyResult<Vec<(String, f32)>> {
        let stop: coaug_retrieval::StopList = stop_words.parse().map_err(|e: anyhow::Error| value_error(e.to_string()))?;
        let analyzer = coaug_index::Analyzer::new(stop.analyzer()).py_err()?;
        Ok(self.inner.bm25_query(&analyzer, original, &expansions).terms().to_vec())
    }

    /// The original query repeated its weight (rounded) times, then the expansions: the
    /// composition as text for an engine without term weights (Lucene's plain query parser).
    #[pyo3(signature = (original, expansions, stop_words = "nltk"))]
    fn repeated_query_text(&self, original: &str, expansions: Vec<String>, stop_words: &str) -> PyResult<String> {
        let stop: coaug_retrieval::StopList = stop_words.parse().map_err(|e: anyhow::Error| value_error(e.to_string()))?;
        let analyzer = coaug_index::Analyzer::new(stop.analyzer()).py_err()?;
        Ok(self.inner.repeated_query_text(&analyzer, original, &expansions))
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "Composition(query_weight={:?}, doc_field={:?}, sample_fusion={:?})",
            self.inner.query_weight.to_string(),
            self.inner.doc_field.to_string(),
            self.inner.sample_fusion.to_string()
        )
    }
}

/// A `composition=` argument: a `Composition`, a dict of its fields, or None.
pub fn composition_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Composition>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else { return Ok(None) };
    if let Ok(c) = obj.cast::<PyComposition>() {
        return Ok(Some(c.get().inner));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let get = |k: &str| d.get_item(k);
        for (key, _) in d.iter() {
            let key: String = key.extract()?;
            if !["query_weight", "doc_field", "sample_fusion"].contains(&key.as_str()) {
                return Err(value_error(format!("composition: unknown key {key:?} (query_weight, doc_field, sample_fusion)")));
            }
        }
        let doc_field: Option<String> = get("doc_field")?.map(|v| v.extract()).transpose()?;
        let fusion: Option<String> = get("sample_fusion")?.map(|v| v.extract()).transpose()?;
        let c = PyComposition::new(get("query_weight")?.as_ref(), doc_field.as_deref(), fusion.as_deref())?;
        return Ok(Some(c.inner));
    }
    Err(value_error("composition must be a coaug.Composition or a dict of its fields"))
}
