//! Rust errors as Python exceptions, with the command line's messages.

use coaug_data::DataError;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyValueError};
use pyo3::PyErr;

pyo3::create_exception!(coaug, CoaugError, PyException, "An error of coaug's engine (the message is the command line's).");

/// The Python exception of an engine error: the message is anyhow's chain (`outer: inner: …`),
/// the class is chosen by the innermost error that says what went wrong.
pub fn to_py(err: anyhow::Error) -> PyErr {
    let message = format!("{err:#}");
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<DataError>() {
            match e {
                DataError::NoSuchDirectory { .. } | DataError::NotADataset { .. } | DataError::DatasetNotFound { .. } => {
                    return PyFileNotFoundError::new_err(message)
                }
                DataError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    return PyFileNotFoundError::new_err(message)
                }
                DataError::InvalidName { .. } | DataError::UnknownSplit { .. } => return PyValueError::new_err(message),
                _ => {}
            }
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            if e.kind() == std::io::ErrorKind::NotFound {
                return PyFileNotFoundError::new_err(message);
            }
        }
        if let Some(coaug_index::IndexError::DuplicateId { .. }) = cause.downcast_ref::<coaug_index::IndexError>() {
            return PyValueError::new_err(message);
        }
        // A training config or training data that cannot work.
        if let Some(coaug_rl::RlError::Config { .. } | coaug_rl::RlError::Setting { .. } | coaug_rl::RlError::Data(_)) =
            cause.downcast_ref::<coaug_rl::RlError>()
        {
            return PyValueError::new_err(message);
        }
    }
    CoaugError::new_err(message)
}

/// `?` on any engine result.
pub trait IntoPyResult<T> {
    fn py_err(self) -> pyo3::PyResult<T>;
}

impl<T, E: Into<anyhow::Error>> IntoPyResult<T> for Result<T, E> {
    fn py_err(self) -> pyo3::PyResult<T> {
        self.map_err(|e| to_py(e.into()))
    }
}

pub fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

pub fn not_found(message: impl Into<String>) -> PyErr {
    PyFileNotFoundError::new_err(message.into())
}
