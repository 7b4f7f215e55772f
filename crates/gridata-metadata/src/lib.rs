//! Gridata's metadata layer: column-level lineage derived from DataFusion
//! logical plans ([`lineage`]) and the graph over it ([`graph`]), drawn as
//! SVG ([`svg`]); PII classification of columns ([`pii`]); search over the
//! dataset registry ([`search`]); OpenLineage events built and read
//! ([`openlineage`]) and delivered from the outbox ([`deliver`]).

pub mod deliver;
pub mod graph;
pub mod lineage;
pub mod openlineage;
pub mod pii;
pub mod search;
pub mod svg;

pub use graph::{Direction, Graph, Impact};
pub use lineage::{ColumnLineage, Deps, Kind, Subtype, column_lineage};
pub use pii::{Classification, PiiKind, classify};
