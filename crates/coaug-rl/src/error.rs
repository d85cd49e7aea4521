//! Errors of the RL core: malformed inputs and settings, each saying what is wrong where.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RlError {
    /// A shape or index does not match what the layout promises.
    #[error("{what}: expected {expected}, got {got}")]
    Shape { what: &'static str, expected: usize, got: usize },

    /// A value that must be finite (a similarity, a gain, a reward) is not.
    #[error("{what} at {location} is {value}, which is not a finite number")]
    NotFinite { what: &'static str, location: String, value: f64 },

    /// Scores that do not form a query × document matrix (wrong shape, a NaN).
    #[error(transparent)]
    Matrix(#[from] coaug_eval::MatrixError),

    /// A setting outside its meaningful range.
    #[error("setting `{setting}` = {value}: {reason}")]
    Setting { setting: &'static str, value: String, reason: String },

    /// The training data cannot feed the composite sampler.
    #[error("training data: {0}")]
    Data(String),

    /// Enumerating every joint choice would exceed the allowed count.
    #[error("enumerating every joint choice needs {needed} samples, more than the limit {limit}")]
    TooManyJointChoices { needed: u128, limit: usize },

    /// A TOML configuration file that cannot be read or does not match `TrainConfig`.
    #[error("config {source_name}: {message}")]
    Config { source_name: String, message: String },
}

pub type Result<T> = std::result::Result<T, RlError>;

pub(crate) fn setting(setting: &'static str, value: impl ToString, reason: impl Into<String>) -> RlError {
    RlError::Setting { setting, value: value.to_string(), reason: reason.into() }
}
