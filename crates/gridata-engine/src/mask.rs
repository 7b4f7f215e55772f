//! Column masking for readers without the PII privilege.
//!
//! Invariants:
//! - Masking happens where tables are resolved ([`crate::catalog`]), so
//!   every query path (SQL, time travel, previews, diffs) sees the masked
//!   columns and no plan can reach the raw values around it.
//! - `hash` keeps equality (joins and counts of distinct values still work)
//!   but not the value: a salted MD5 as hex text. `redact` gives NULL of the
//!   column's type.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::error::Result as DFResult;
use datafusion::functions::crypto::expr_fn::md5;
use datafusion::functions::string::expr_fn::concat;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, lit};

/// How a column is hidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// A salted hash: equal values stay equal.
    Hash,
    /// NULL.
    Redact,
}

impl Mask {
    /// `hash` or `redact`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hash" => Some(Mask::Hash),
            "redact" => Some(Mask::Redact),
            _ => None,
        }
    }
}

/// Masked columns by table (`namespace.table`).
pub type Masks = BTreeMap<String, BTreeMap<String, Mask>>;

/// The table seen through its masks.
pub(crate) fn masked(
    name: &str,
    provider: Arc<dyn TableProvider>,
    columns: &BTreeMap<String, Mask>,
) -> DFResult<Arc<dyn TableProvider>> {
    let schema = provider.schema();
    let exprs: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|f| {
            let c = Expr::Column(Column::from_name(f.name()));
            match columns.get(f.name()) {
                Some(Mask::Hash) => md5(concat(vec![
                    lit("gridata:"),
                    cast(c, datafusion::arrow::datatypes::DataType::Utf8),
                ]))
                .alias(f.name()),
                Some(Mask::Redact) => {
                    cast(lit(ScalarValue::Null), f.data_type().clone()).alias(f.name())
                }
                None => c,
            }
        })
        .collect();
    let plan = LogicalPlanBuilder::scan(name, provider_as_source(provider), None)?
        .project(exprs)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}
