//! SQL over Gridata's lake, with DataFusion.
//!
//! Every table is `namespace.table`; time travel, metadata tables and the
//! table-writing operations that need a query engine (import, copy-on-write
//! delete, compaction) live here.
//!
//! Invariants:
//! - Reads go through Iceberg planning, then DataFusion's parallel Parquet
//!   reader with columns matched by field id.
//! - Writes go through `gridata-lake`: an operation either commits one
//!   snapshot or leaves the table as it was.

mod catalog;
mod decimal;
mod dialect;
mod error;
mod grace;
mod keys;
pub mod mask;
mod ops;
mod provider;
mod session;
pub mod skip;
mod spill;
pub mod timetravel;

pub use catalog::{LakeCatalog, files_batch, history_batch, snapshots_batch};
pub use datafusion;
pub use dialect::GridataDialect;
pub use error::{Error, Result};
pub use keys::{KEY_HASH_FN, KeySet};
pub use mask::{Mask, Masks};
pub use ops::{
    ImportFormat, ImportReport, InputFile, PARALLEL_WRITE_BYTES, PARALLEL_WRITE_ROWS, WriteMode,
    partition_streams, plan_metrics,
};
pub use provider::{FieldIdAdapterFactory, LakeTableProvider, to_predicate};
pub use session::{Engine, memory_limit, set_memory_limit};
