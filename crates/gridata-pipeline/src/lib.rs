//! Gridata pipelines: declarative DAGs in YAML files, validated before
//! anything runs, executed in-process with retries, timeouts, quarantine
//! of bad rows and write-audit-publish on Iceberg tables.
//!
//! Invariants:
//! - Loading a pipeline reads its file and nothing else, and reports every
//!   problem at once with `file:line` and the field.
//! - Every input row is either written or quarantined with its reason,
//!   source file and line; per-file counts are stored for each run.
//! - A table written by a run becomes visible only after the run's `error`
//!   quality checks on it passed.

mod error;
pub mod landing;
pub mod load;
pub mod model;
pub mod run;
pub mod shipped;
pub mod tasks;
pub mod template;

pub use error::{Error, Problem, Result};
pub use load::{Loaded, load_dir, load_file, load_str};
pub use model::{Pipeline, TaskKind, json_schema};
pub use run::{
    Emitter, ExecOptions, Lease, RunEvent, RunOptions, RunSummary, Runner, StopReason, StopSignal,
    openlineage_naming,
};
