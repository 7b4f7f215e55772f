//! The one error type of `gridata-core`.

use std::path::PathBuf;

/// Errors from configuration, names and secrets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration file has one or more problems; every one is listed.
    #[error("invalid configuration {path}:\n{}", .problems.join("\n"))]
    InvalidConfig {
        path: PathBuf,
        problems: Vec<String>,
    },
    /// A secret reference could not be resolved.
    #[error("secret {reference}: {reason}")]
    Secret { reference: String, reason: String },
    /// A table or namespace name is malformed.
    #[error("invalid name '{name}': {reason}")]
    InvalidName { name: String, reason: String },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
