//! `coaug.BM25Index` and the ranked lists it returns (`coaug.Results`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use coaug_eval::{Run, ScorePrecision};
use coaug_index::{AnalyzerConfig, Bm25Index, Hit, WeightedQuery};
use coaug_retrieval::{Augmentations, AugmentedBm25, Composition, DocField, QueryToRank, SampleFusion, StopList};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::composition::{composition_arg, PyComposition};
use crate::convert::{corpus_from_py, doc_texts_from_py, expansions_from_py, py_strings, queries_from_py};
use crate::errors::{not_found, value_error, IntoPyResult};

/// A BM25 index (tantivy on disk, postings in memory): `coaug index`'s and `coaug eval`'s.
#[pyclass(module = "coaug._native", name = "BM25Index", frozen)]
pub struct PyBm25Index {
    inner: AugmentedBm25,
    stop_words: String,
    /// The folder of an index built without `path` (removed with the object).
    _temp: Option<tempfile::TempDir>,
    /// The document ids as Python strings, made on the first search.
    doc_ids: OnceLock<Vec<Py<PyString>>>,
}

/// `k` as a positive count.
pub fn positive_k(k: i64) -> PyResult<usize> {
    if k <= 0 {
        return Err(value_error(format!("k must be a positive number of documents, got {k}")));
    }
    usize::try_from(k).map_err(|_| value_error(format!("k = {k} is too large")))
}

fn stop_list(name: &str) -> PyResult<StopList> {
    name.parse::<StopList>().map_err(|e| value_error(e.to_string()))
}

/// The composition an index of this placement is searched with when none is given: the
/// project's default, with the document placement the index was built with.
fn default_for(index: &Bm25Index) -> Composition {
    let mut c = Composition::default();
    if index.config().fields != c.field_setup() {
        c.doc_field = DocField::Body;
    }
    c
}

impl PyBm25Index {
    pub fn index(&self) -> &Bm25Index {
        self.inner.index()
    }

    fn doc_ids_py(&self, py: Python<'_>) -> &[Py<PyString>] {
        self.doc_ids.get_or_init(|| py_strings(py, self.index().doc_ids()))
    }

    /// Ranks `queries` (with `expansions`, composed as `composition` says) exactly as the command
    /// line does: plain texts through `search_batch` (`coaug eval`), expanded ones through the
    /// composition's weighted queries (`coaug eval --augment query`).
    fn rank(
        &self,
        py: Python<'_>,
        queries: &Bound<'_, PyAny>,
        k: i64,
        expansions: Option<&Bound<'_, PyAny>>,
        composition: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Ranked> {
        let k = positive_k(k)?;
        let queries = queries_from_py(queries)?;
        let expansions = expansions.map(expansions_from_py).transpose()?;
        let composition = match composition_arg(composition)? {
            Some(c) => {
                if c.field_setup() != self.inner.composition().field_setup() {
                    return Err(value_error(format!(
                        "this index places document augmentations as {}, the composition asks for {}: build another index",
                        self.inner.composition().doc_field,
                        c.doc_field
                    )));
                }
                c
            }
            None => *self.inner.composition(),
        };
        let ids: Vec<String> = queries.iter().map(|q| q.id.clone()).collect();
        let ranked: anyhow::Result<Lists> = py.detach(|| match &expansions {
            None => {
                let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
                Ok(Lists::Hits(self.index().search_batch(&texts, k)))
            }
            Some(expansions) => {
                let empty: Vec<String> = Vec::new();
                let to_rank: Vec<QueryToRank<'_>> = queries
                    .iter()
                    .map(|q| QueryToRank { id: &q.id, text: &q.text, expansions: expansions.get(&q.id).unwrap_or(&empty) })
                    .collect();
                if composition.sample_fusion == SampleFusion::Rrf {
                    // Several runs per query fused: coaug-retrieval's own ranking.
                    let run = self.inner.with_composition(composition)?.rank(&to_rank, k);
                    Ok(Lists::Named(ids.iter().map(|id| run.ranking(id, ScorePrecision::F64)).map(scored).collect()))
                } else {
                    let analyzer = self.index().analyzer();
                    let weighted: Vec<WeightedQuery> =
                        to_rank.iter().map(|q| composition.bm25_query(analyzer, q.text, q.expansions)).collect();
                    Ok(Lists::Hits(self.index().search_weighted(&weighted, composition.field_weights(), k)))
                }
            }
        });
        let lists = ranked.py_err()?;
        Ok(Ranked { qids: ids, lists })
    }
}

fn scored(ranking: Vec<coaug_eval::ScoredDoc>) -> Vec<(String, f64)> {
    ranking.into_iter().map(|d| (d.doc_id, d.score)).collect()
}

#[pymethods]
impl PyBm25Index {
    /// Builds the index of a BEIR corpus dict in `path` (reused when it already holds exactly this
    /// corpus and these settings, as `coaug index` does), or in a temporary folder.
    #[staticmethod]
    #[pyo3(signature = (corpus, path = None, *, stop_words = "nltk", doc_augmentations = None, composition = None))]
    fn build(
        py: Python<'_>,
        corpus: &Bound<'_, PyAny>,
        path: Option<PathBuf>,
        stop_words: &str,
        doc_augmentations: Option<&Bound<'_, PyAny>>,
        composition: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let stop = stop_list(stop_words)?;
        let corpus = corpus_from_py(corpus)?;
        let mut augmentations = Augmentations::default();
        if let Some(docs) = doc_augmentations {
            for (id, text) in doc_texts_from_py(docs, "doc_augmentations")? {
                augmentations.set_document(&id, &text);
            }
        }
        let composition = composition_arg(composition)?.unwrap_or_default();
        let analyzer: AnalyzerConfig = stop.analyzer();
        let (dir, temp) = match path {
            Some(p) => (p, None),
            None => {
                let temp = tempfile::Builder::new().prefix("coaug-index-").tempdir().py_err()?;
                (temp.path().join("index"), Some(temp))
            }
        };
        let inner = py.detach(|| AugmentedBm25::open_or_build(&dir, &corpus, &augmentations, composition, &analyzer)).py_err()?;
        Ok(Self { inner, stop_words: stop.name().to_string(), _temp: temp, doc_ids: OnceLock::new() })
    }

    /// Opens an index built by `BM25Index.build` or by the command line (`coaug index`).
    #[staticmethod]
    #[pyo3(signature = (path, *, composition = None))]
    fn open(py: Python<'_>, path: PathBuf, composition: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        if !path.join(coaug_index::MANIFEST_FILE).is_file() {
            let why = if path.is_dir() { "holds no coaug index (no manifest.json)" } else { "no such directory" };
            return Err(not_found(format!("{}: {why}", path.display())));
        }
        let composition = composition_arg(composition)?;
        let index = py.detach(|| Bm25Index::open(&path)).py_err()?;
        let composition = composition.unwrap_or_else(|| default_for(&index));
        let stop = match index.config().analyzer.stop_words {
            coaug_index::StopWords::Nltk => "nltk",
            coaug_index::StopWords::Language => "lucene",
            _ => "none",
        };
        let inner = AugmentedBm25::from_index(index, composition).py_err()?;
        Ok(Self { inner, stop_words: stop.to_string(), _temp: None, doc_ids: OnceLock::new() })
    }

    /// `{query_id: {doc_id: score}}` (BEIR's `results`), the top `k` documents of every query; or,
    /// with `as_frame=True`, a pandas DataFrame with PyTerrier's columns `qid, docno, rank, score`.
    #[pyo3(signature = (queries, k = 1000, *, expansions = None, composition = None, as_frame = false))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        k: i64,
        expansions: Option<&Bound<'py, PyAny>>,
        composition: Option<&Bound<'py, PyAny>>,
        as_frame: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ranked = self.rank(py, queries, k, expansions, composition)?;
        if as_frame {
            ranked.to_frame(py, self)
        } else {
            Ok(ranked.to_dict(py, self)?.into_any())
        }
    }

    /// The same ranking as `search`, kept in Rust until asked for: a read-only mapping
    /// (`results[qid]` is a dict) with `to_dict()` and `to_frame()`, which `coaug.evaluate` reads
    /// without converting. For large runs where only the metrics are needed.
    #[pyo3(signature = (queries, k = 1000, *, expansions = None, composition = None))]
    fn search_results(
        slf: &Bound<'_, Self>,
        queries: &Bound<'_, PyAny>,
        k: i64,
        expansions: Option<&Bound<'_, PyAny>>,
        composition: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyResults> {
        let ranked = slf.get().rank(slf.py(), queries, k, expansions, composition)?;
        let by_id = ranked.qids.iter().enumerate().map(|(i, q)| (q.clone(), i)).collect();
        Ok(PyResults { ranked, by_id, index: slf.clone().unbind() })
    }

    /// Number of indexed documents.
    #[getter]
    fn num_docs(&self) -> usize {
        self.index().num_docs()
    }

    /// The folder the index lives in.
    #[getter]
    fn path(&self) -> PathBuf {
        self.index().dir().to_path_buf()
    }

    /// The stop list the index was built with (`nltk`, `lucene` or `none`).
    #[getter]
    fn stop_words(&self) -> &str {
        &self.stop_words
    }

    /// The composition searches use unless given another.
    #[getter]
    fn composition(&self) -> PyComposition {
        PyComposition { inner: *self.inner.composition() }
    }

    /// The document ids, in corpus order.
    #[getter]
    fn doc_ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.doc_ids_py(py).iter().map(|s| s.bind(py)))
    }

    fn __len__(&self) -> usize {
        self.index().num_docs()
    }

    fn __repr__(&self) -> String {
        format!(
            "BM25Index({} documents, {} stop words, {}, path={:?})",
            self.index().num_docs(),
            self.stop_words,
            self.inner.composition(),
            self.index().dir().display().to_string()
        )
    }
}

/// Ranked lists, one per query, best first.
pub enum Lists {
    /// Corpus positions and BM25 scores.
    Hits(Vec<Vec<Hit>>),
    /// Fused runs (RRF): document ids and scores.
    Named(Vec<Vec<(String, f64)>>),
}

pub struct Ranked {
    pub qids: Vec<String>,
    pub lists: Lists,
}

impl Ranked {
    fn len_of(&self, i: usize) -> usize {
        match &self.lists {
            Lists::Hits(h) => h[i].len(),
            Lists::Named(n) => n[i].len(),
        }
    }

    fn query_dict<'py>(&self, py: Python<'py>, index: &PyBm25Index, i: usize) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        match &self.lists {
            Lists::Hits(hits) => {
                let ids = index.doc_ids_py(py);
                for hit in &hits[i] {
                    d.set_item(ids[hit.doc as usize].bind(py), f64::from(hit.score))?;
                }
            }
            Lists::Named(lists) => {
                for (doc, score) in &lists[i] {
                    d.set_item(doc, score)?;
                }
            }
        }
        Ok(d)
    }

    fn to_dict<'py>(&self, py: Python<'py>, index: &PyBm25Index) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (i, qid) in self.qids.iter().enumerate() {
            out.set_item(qid, self.query_dict(py, index, i)?)?;
        }
        Ok(out)
    }

    /// Columns `qid, docno, rank (0-based, as PyTerrier), score` as a pandas DataFrame.
    fn to_frame<'py>(&self, py: Python<'py>, index: &PyBm25Index) -> PyResult<Bound<'py, PyAny>> {
        let pandas = py
            .import("pandas")
            .map_err(|_| pyo3::exceptions::PyImportError::new_err("as_frame=True / to_frame() need pandas: pip install pandas"))?;
        let total: usize = (0..self.qids.len()).map(|i| self.len_of(i)).sum();
        let mut qid_col: Vec<Bound<'py, PyAny>> = Vec::with_capacity(total);
        let mut doc_col: Vec<Bound<'py, PyAny>> = Vec::with_capacity(total);
        let mut rank_col: Vec<usize> = Vec::with_capacity(total);
        let mut score_col: Vec<f64> = Vec::with_capacity(total);
        for (i, qid) in self.qids.iter().enumerate() {
            let q = PyString::new(py, qid).into_any();
            match &self.lists {
                Lists::Hits(hits) => {
                    let ids = index.doc_ids_py(py);
                    for (rank, hit) in hits[i].iter().enumerate() {
                        qid_col.push(q.clone());
                        doc_col.push(ids[hit.doc as usize].bind(py).clone().into_any());
                        rank_col.push(rank);
                        score_col.push(f64::from(hit.score));
                    }
                }
                Lists::Named(lists) => {
                    for (rank, (doc, score)) in lists[i].iter().enumerate() {
                        qid_col.push(q.clone());
                        doc_col.push(PyString::new(py, doc).into_any());
                        rank_col.push(rank);
                        score_col.push(*score);
                    }
                }
            }
        }
        let columns = PyDict::new(py);
        columns.set_item("qid", PyList::new(py, qid_col)?)?;
        columns.set_item("docno", PyList::new(py, doc_col)?)?;
        columns.set_item("rank", rank_col)?;
        columns.set_item("score", score_col)?;
        pandas.getattr("DataFrame")?.call1((columns,))
    }

    /// The ranking as coaug-eval's run (what `coaug eval` evaluates).
    pub fn to_run(&self, index: &Bm25Index) -> Run {
        let mut run = Run::new();
        for (i, qid) in self.qids.iter().enumerate() {
            match &self.lists {
                Lists::Hits(hits) => {
                    if hits[i].is_empty() {
                        run.insert_ranking(qid.clone(), std::iter::empty());
                    }
                    for hit in &hits[i] {
                        run.insert(qid.clone(), index.doc_id(hit.doc).to_owned(), f64::from(hit.score));
                    }
                }
                Lists::Named(lists) => {
                    if lists[i].is_empty() {
                        run.insert_ranking(qid.clone(), std::iter::empty());
                    }
                    for (doc, score) in &lists[i] {
                        run.insert(qid.clone(), doc.clone(), *score);
                    }
                }
            }
        }
        run
    }
}

/// Search results held in Rust: a read-only mapping `{query_id: {doc_id: score}}`.
#[pyclass(module = "coaug._native", name = "Results", frozen, mapping)]
pub struct PyResults {
    pub ranked: Ranked,
    by_id: HashMap<String, usize>,
    index: Py<PyBm25Index>,
}

impl PyResults {
    pub fn run(&self) -> Run {
        self.ranked.to_run(self.index.get().index())
    }
}

#[pymethods]
impl PyResults {
    fn __len__(&self) -> usize {
        self.ranked.qids.len()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, qid: &str) -> PyResult<Bound<'py, PyDict>> {
        match self.by_id.get(qid) {
            Some(&i) => self.ranked.query_dict(py, self.index.get(), i),
            None => Err(pyo3::exceptions::PyKeyError::new_err(qid.to_string())),
        }
    }

    fn __contains__(&self, qid: &Bound<'_, PyAny>) -> bool {
        qid.extract::<String>().is_ok_and(|q| self.by_id.contains_key(&q))
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyList::new(py, &self.ranked.qids)?.into_any().try_iter()?.into_any())
    }

    /// The query ids, in the order they were given.
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, &self.ranked.qids)
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let index = self.index.get();
        PyList::new(py, (0..self.ranked.qids.len()).map(|i| self.ranked.query_dict(py, index, i)).collect::<PyResult<Vec<_>>>()?)
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let index = self.index.get();
        let items = self
            .ranked
            .qids
            .iter()
            .enumerate()
            .map(|(i, q)| Ok((q.clone(), self.ranked.query_dict(py, index, i)?)))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    #[pyo3(signature = (qid, default = None))]
    fn get<'py>(&self, py: Python<'py>, qid: &str, default: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        match self.by_id.get(qid) {
            Some(&i) => Ok(self.ranked.query_dict(py, self.index.get(), i)?.into_any()),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    /// `{query_id: {doc_id: score}}` as plain dicts (BEIR's `results`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.ranked.to_dict(py, self.index.get())
    }

    /// A pandas DataFrame with PyTerrier's columns `qid, docno, rank, score`.
    fn to_frame<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.ranked.to_frame(py, self.index.get())
    }

    /// Number of (query, document) pairs.
    #[getter]
    fn num_entries(&self) -> usize {
        (0..self.ranked.qids.len()).map(|i| self.ranked.len_of(i)).sum()
    }

    fn __repr__(&self) -> String {
        format!("Results({} queries, {} entries)", self.ranked.qids.len(), self.num_entries())
    }
}
