//! BEIR's Python shapes (plain dicts) to and from coaug's types, with clear errors for malformed
//! input, and `load_beir`.

use std::path::{Path, PathBuf};

use coaug_data::{Dataset, Document, Qrels, Query};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::errors::{value_error, IntoPyResult};

/// `obj` as a dict: a dict itself, or any mapping (copied by `dict(obj)`).
pub fn as_dict<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyDict>> {
    if let Ok(d) = obj.cast::<PyDict>() {
        return Ok(d.clone());
    }
    if obj.hasattr("keys")? {
        let d = obj.py().import("builtins")?.getattr("dict")?.call1((obj,))?;
        return Ok(d.cast_into::<PyDict>()?);
    }
    Err(value_error(format!("{what} must be a dict (a mapping), got {}", type_name(obj))))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

fn key_str(key: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    if let Ok(s) = key.cast::<PyString>() {
        return Ok(s.to_cow()?.into_owned());
    }
    // BEIR ids are strings; integer ids (a common slip) are accepted as their decimal text.
    if key.is_instance_of::<pyo3::types::PyInt>() {
        return Ok(key.str()?.to_cow()?.into_owned());
    }
    Err(value_error(format!("{what}: ids must be str, got {} ({})", type_name(key), key.repr()?)))
}

fn text_field(entry: &Bound<'_, PyDict>, field: &str, id: &str, required: bool) -> PyResult<String> {
    match entry.get_item(field)? {
        None if required => Err(value_error(format!("corpus[{id:?}] has no {field:?} field (BEIR: {{\"title\": str, \"text\": str}})"))),
        None => Ok(String::new()),
        Some(v) if v.is_none() => Ok(String::new()),
        Some(v) => match v.cast::<PyString>() {
            Ok(s) => Ok(s.to_cow()?.into_owned()),
            Err(_) => Err(value_error(format!("corpus[{id:?}][{field:?}] must be str, got {}", type_name(&v)))),
        },
    }
}

/// A BEIR corpus dict `{doc_id: {"title": str, "text": str}}` (a plain string is the text).
pub fn corpus_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Document>> {
    let dict = as_dict(obj, "corpus")?;
    let mut docs = Vec::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let id = key_str(&key, "corpus")?;
        if id.is_empty() {
            return Err(value_error("corpus: a document id is empty"));
        }
        let doc = if let Ok(text) = value.cast::<PyString>() {
            Document { id, title: String::new(), text: text.to_cow()?.into_owned() }
        } else if let Ok(entry) = value.cast::<PyDict>() {
            let text = text_field(entry, "text", &id, true)?;
            let title = text_field(entry, "title", &id, false)?;
            Document { id, title, text }
        } else {
            return Err(value_error(format!(
                "corpus[{id:?}] must be a dict {{\"title\": str, \"text\": str}} (or the text), got {}",
                type_name(&value)
            )));
        };
        docs.push(doc);
    }
    Ok(docs)
}

/// BEIR queries `{query_id: text}`.
pub fn queries_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Query>> {
    let dict = as_dict(obj, "queries")?;
    let mut queries = Vec::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let id = key_str(&key, "queries")?;
        let text = value
            .cast::<PyString>()
            .map_err(|_| value_error(format!("queries[{id:?}] must be the query text (str), got {}", type_name(&value))))?;
        queries.push(Query { id, text: text.to_cow()?.into_owned() });
    }
    Ok(queries)
}

/// Query expansions `{query_id: [str, …]}` (a single string is one expansion).
pub fn expansions_from_py(obj: &Bound<'_, PyAny>) -> PyResult<std::collections::HashMap<String, Vec<String>>> {
    let dict = as_dict(obj, "expansions")?;
    let mut out = std::collections::HashMap::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let id = key_str(&key, "expansions")?;
        let texts: Vec<String> = if let Ok(s) = value.cast::<PyString>() {
            vec![s.to_cow()?.into_owned()]
        } else {
            value.extract().map_err(|_| value_error(format!("expansions[{id:?}] must be a str or a list of str")))?
        };
        let texts: Vec<String> = texts.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
        out.insert(id, texts);
    }
    Ok(out)
}

/// Document augmentations `{doc_id: str}`.
pub fn doc_texts_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<std::collections::HashMap<String, String>> {
    let dict = as_dict(obj, what)?;
    let mut out = std::collections::HashMap::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let id = key_str(&key, what)?;
        let text: String = value.extract().map_err(|_| value_error(format!("{what}[{id:?}] must be str")))?;
        out.insert(id, text);
    }
    Ok(out)
}

/// BEIR qrels `{query_id: {doc_id: grade}}`.
pub fn qrels_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Qrels> {
    let dict = as_dict(obj, "qrels")?;
    let mut qrels = Qrels::new();
    for (key, value) in dict.iter() {
        let qid = key_str(&key, "qrels")?;
        let judged = as_dict(&value, &format!("qrels[{qid:?}]"))?;
        for (doc, grade) in judged.iter() {
            let doc = key_str(&doc, &format!("qrels[{qid:?}]"))?;
            let grade: i64 = grade.extract().map_err(|_| value_error(format!("qrels[{qid:?}][{doc:?}] must be an int grade")))?;
            let grade = i32::try_from(grade).map_err(|_| value_error(format!("qrels[{qid:?}][{doc:?}] = {grade} is out of range")))?;
            qrels.insert(qid.clone(), doc, grade);
        }
    }
    Ok(qrels)
}

pub fn corpus_to_py<'py>(py: Python<'py>, corpus: &[Document]) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let title_key = PyString::intern(py, "title");
    let text_key = PyString::intern(py, "text");
    for doc in corpus {
        let entry = PyDict::new(py);
        entry.set_item(&title_key, &doc.title)?;
        entry.set_item(&text_key, &doc.text)?;
        out.set_item(&doc.id, entry)?;
    }
    Ok(out)
}

pub fn queries_to_py<'py>(py: Python<'py>, queries: &[Query]) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for q in queries {
        out.set_item(&q.id, &q.text)?;
    }
    Ok(out)
}

pub fn qrels_to_py<'py>(py: Python<'py>, qrels: &Qrels) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (qid, judged) in qrels.iter() {
        let d = PyDict::new(py);
        for (doc, grade) in judged {
            d.set_item(doc, grade)?;
        }
        out.set_item(qid, d)?;
    }
    Ok(out)
}

/// Whether `arg` names a folder rather than a dataset: it holds a path separator, starts with
/// `.` or `~`, or exists.
pub(crate) fn is_path(arg: &str) -> bool {
    arg.contains(std::path::MAIN_SEPARATOR) || arg.contains('/') || arg.starts_with('.') || arg.starts_with('~') || Path::new(arg).exists()
}

/// Loads a BEIR dataset: `(corpus, queries, qrels)` in BEIR's shapes, the queries being those
/// judged in `split` (as BEIR's `GenericDataLoader.load(split)` returns them).
///
/// `name_or_dir` is a folder holding `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv`, or a
/// dataset name looked up in `data_dir`, else `$COAUG_DATA`, else coaug's cache (downloading the
/// official BEIR zip on first use), exactly as `coaug eval --dataset NAME` does.
#[pyfunction]
#[pyo3(signature = (name_or_dir, split = "test", data_dir = None))]
pub fn load_beir<'py>(
    py: Python<'py>,
    name_or_dir: PathBuf,
    split: &str,
    data_dir: Option<PathBuf>,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    let arg = name_or_dir.to_string_lossy().into_owned();
    let loaded = py
        .detach(|| -> anyhow::Result<coaug_data::LoadedSplit> {
            let dataset = if is_path(&arg) {
                let dir = expand_home(&name_or_dir);
                Dataset::open(&dir)?
            } else {
                coaug_data::resolve(&arg, data_dir.as_deref())?
            };
            Ok(dataset.load_split(split)?)
        })
        .py_err()?;
    Ok((corpus_to_py(py, &loaded.corpus)?, queries_to_py(py, &loaded.queries)?, qrels_to_py(py, &loaded.qrels)?))
}

pub(crate) fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(rest)).unwrap_or_else(|| path.to_path_buf()),
        Err(_) => path.to_path_buf(),
    }
}

/// A list of Python strings, made once.
pub fn py_strings(py: Python<'_>, items: &[String]) -> Vec<Py<PyString>> {
    items.iter().map(|s| PyString::new(py, s).unbind()).collect()
}
