//! Gridata's metadata layer. Today: column-level lineage derived from
//! DataFusion logical plans ([`lineage`]) and the graph over it
//! ([`graph`]); PII classification of columns ([`pii`]). Datasets, search
//! and OpenLineage events build on these.

pub mod graph;
pub mod lineage;
pub mod pii;
pub mod search;

pub use graph::{Direction, Graph, Impact};
pub use lineage::{ColumnLineage, Deps, Kind, Subtype, column_lineage};
pub use pii::{Classification, PiiKind, classify};
