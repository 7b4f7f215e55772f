//! The one error type of `gridata-storage`.

/// Storage errors; each names the URI it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage is misconfigured.
    #[error("storage configuration: {reason}")]
    Config { reason: String },
    /// A URI that no configured store serves.
    #[error("cannot use '{uri}': {reason}")]
    BadUri { uri: String, reason: String },
    /// The file does not exist.
    #[error("file not found: {uri}")]
    NotFound { uri: String },
    /// The file exists and was required not to.
    #[error("file already exists: {uri}")]
    AlreadyExists { uri: String },
    /// Any other I/O failure.
    #[error("I/O on {uri}: {reason}")]
    Io { uri: String, reason: String },
}

impl Error {
    pub(crate) fn from_store(uri: &str, e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound { uri: uri.into() },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => Error::AlreadyExists { uri: uri.into() },
            other => Error::Io {
                uri: uri.into(),
                reason: other.to_string(),
            },
        }
    }

    pub(crate) fn config(e: gridata_core::Error) -> Self {
        Error::Config {
            reason: e.to_string(),
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
