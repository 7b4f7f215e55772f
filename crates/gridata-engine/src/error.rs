//! The one error type of `gridata-engine`.

/// Engine errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A lake operation failed.
    #[error(transparent)]
    Lake(#[from] gridata_lake::Error),
    /// SQL failed to parse, plan or run.
    #[error("{0}")]
    Sql(String),
    /// An input file failed to read or does not fit the table.
    #[error("{file}: {reason}")]
    Input { file: String, reason: String },
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        // Lake errors raised inside DataFusion keep their own message.
        Error::Sql(e.strip_backtrace().to_string())
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
