//! The one error type of `gridata-lake`.

/// Lake errors. Each names the table, file or snapshot it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The namespace does not exist.
    #[error("namespace '{namespace}' does not exist")]
    NoSuchNamespace { namespace: String },
    /// The namespace exists already.
    #[error("namespace '{namespace}' already exists")]
    NamespaceExists { namespace: String },
    /// The namespace still holds tables.
    #[error("namespace '{namespace}' is not empty: it holds {tables} table(s)")]
    NamespaceNotEmpty { namespace: String, tables: usize },
    /// The table does not exist.
    #[error("table '{table}' does not exist")]
    NoSuchTable { table: String },
    /// The table exists already.
    #[error("table '{table}' already exists")]
    TableExists { table: String },
    /// The snapshot is not in the table's metadata.
    #[error("table '{table}' has no snapshot {snapshot}")]
    NoSuchSnapshot { table: String, snapshot: String },
    /// Another writer kept winning the compare-and-swap.
    #[error(
        "commit to '{table}' conflicted {attempts} times with concurrent writers; nothing was committed"
    )]
    CommitConflict { table: String, attempts: u32 },
    /// A conflicting change that a retry cannot resolve.
    #[error(
        "commit to '{table}' conflicts with a concurrent change: {reason}; nothing was committed"
    )]
    ConcurrentChange { table: String, reason: String },
    /// A schema change that would break existing files or readers.
    #[error("schema change on '{table}' refused: {reason}")]
    SchemaChange { table: String, reason: String },
    /// A schema or partition spec that cannot be parsed.
    #[error("invalid {what} '{text}': {reason}")]
    Parse {
        what: &'static str,
        text: String,
        reason: String,
    },
    /// Data that does not fit the table.
    #[error("data for '{table}' does not fit its schema: {reason}")]
    DataMismatch { table: String, reason: String },
    /// A metadata file that cannot be read.
    #[error("table '{table}': metadata file {location} is corrupt or unreadable: {reason}")]
    CorruptMetadata {
        table: String,
        location: String,
        reason: String,
    },
    /// The catalog database failed.
    #[error("catalog database: {reason}")]
    Catalog { reason: String },
    /// Object storage failed.
    #[error(transparent)]
    Storage(#[from] gridata_storage::Error),
    /// iceberg-rust failed.
    #[error("{context}: {source}")]
    Iceberg {
        context: String,
        #[source]
        source: Box<iceberg::Error>,
    },
    /// Arrow or Parquet failed.
    #[error("{context}: {reason}")]
    Format { context: String, reason: String },
}

impl Error {
    pub(crate) fn iceberg(context: impl Into<String>) -> impl FnOnce(iceberg::Error) -> Self {
        let context = context.into();
        move |source| Error::Iceberg {
            context,
            source: Box::new(source),
        }
    }

    pub(crate) fn catalog(e: sqlx::Error) -> Self {
        Error::Catalog {
            reason: e.to_string(),
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
