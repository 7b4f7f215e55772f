//! Iceberg tables for Gridata.
//!
//! iceberg-rust 0.10.1 can only append. This crate builds every other commit
//! (overwrite, partition overwrite, copy-on-write delete, file rewrite,
//! rollback, schema evolution, snapshot expiry, orphan removal) on iceberg's
//! public manifest and metadata builders, and commits each one by
//! compare-and-swap on the catalog.
//!
//! Invariants:
//! - A commit is one compare-and-swap of the table's metadata pointer. Files
//!   are written first; a commit that loses the race deletes what it wrote
//!   and retries on top of the winner, so a reader only ever sees whole
//!   snapshots.
//! - A retry never changes the meaning of the request: an append adds the
//!   same files; a rewrite whose input files vanished fails with
//!   [`Error::ConcurrentChange`] instead of resurrecting rows.
//! - Data files are ZSTD Parquet with Iceberg field ids and column stats.

pub mod catalog;
mod commit;
mod error;
pub mod io;
mod lake;
mod maintenance;
pub mod schema;
mod split;
mod write;

pub use catalog::{Catalog, MemoryCatalog, SqlCatalog};
pub use commit::{CommitRequest, Removal, RunWrites, StagedSnapshot};
pub use error::{Error, Result};
pub use iceberg;
pub use lake::{Lake, LakeTable, LiveFile};
pub use maintenance::{CompactionGroup, ExpireReport, OrphanReport, SchemaUpdate};
pub use write::{BatchStream, STAGED_DICT_SIZE, WriteOptions, conform_batch};
