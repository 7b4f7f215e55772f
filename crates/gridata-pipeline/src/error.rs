//! The one error type of `gridata-pipeline`.

use std::fmt;
use std::path::PathBuf;

/// A problem in a pipeline file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// The field, as a path such as `tasks[2].sql.query`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.field,
            self.message
        )
    }
}

/// Pipeline errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file is invalid; every problem is listed.
    #[error("{} problem(s) in {}:\n{}", problems.len(), file.display(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// No pipeline with this id.
    #[error("no pipeline '{id}' in {dir} (files are <id>.yaml)")]
    NotFound { id: String, dir: PathBuf },
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A parameter given for a run is wrong.
    #[error("parameter '{name}': {reason}")]
    Param { name: String, reason: String },
    /// Publishing a staged write failed.
    #[error("publishing {table}: {reason}")]
    Publish { table: String, reason: String },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] gridata_state::Error),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
