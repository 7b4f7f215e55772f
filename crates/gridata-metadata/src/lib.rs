//! Gridata's metadata layer. Today: column-level lineage derived from
//! DataFusion logical plans ([`lineage`]); datasets, PII classification,
//! search and OpenLineage events build on it.

pub mod graph;
pub mod lineage;

pub use graph::{Direction, Graph, Impact};
pub use lineage::{ColumnLineage, Deps, Kind, Subtype, column_lineage};
