//! coaug's engine from Python: the native module `coaug._native` of the `coaug` package
//! (python/coaug). BEIR loading, BM25 indexes and search, evaluation with `coaug eval`'s
//! arithmetic, LM augmentation through the same SQLite store as the command line, and RL
//! training in `coaug train`'s run directories, each call going through the same library
//! functions as the corresponding command, so the numbers agree.
//!
//! Every long call releases the GIL. Rust errors become Python exceptions carrying the same
//! message ([`errors`]): `ValueError` for bad input, `FileNotFoundError` for missing datasets,
//! indexes and models, `coaug.CoaugError` otherwise.

mod augment;
mod composition;
mod convert;
mod errors;
mod eval;
mod index;
mod train;

use pyo3::prelude::*;

/// The native half of the `coaug` package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CoaugError", m.py().get_type::<errors::CoaugError>())?;
    m.add_function(wrap_pyfunction!(convert::load_beir, m)?)?;
    m.add_function(wrap_pyfunction!(eval::evaluate, m)?)?;
    m.add_class::<index::PyBm25Index>()?;
    m.add_class::<index::PyResults>()?;
    m.add_class::<composition::PyComposition>()?;
    m.add_class::<augment::PyAugmenter>()?;
    m.add_function(wrap_pyfunction!(train::train, m)?)?;
    m.add_function(wrap_pyfunction!(train::write_tiny_model, m)?)?;
    Ok(())
}
