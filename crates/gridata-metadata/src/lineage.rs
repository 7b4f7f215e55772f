//! Column-level lineage of one SQL statement, read from its DataFusion
//! logical plan, in OpenLineage `columnLineage` terms.
//!
//! Invariants:
//! - Columns are followed by position in each node's input schema, never
//!   by name, so aliases, CTEs and self-joins resolve exactly.
//! - A plan node the walker does not understand fails the whole result;
//!   lineage is never guessed.
//! - DIRECT dependencies only strengthen going up (identity <
//!   transformation < aggregation); a column used by a filter, join, group
//!   by, sort, window or CASE condition is an INDIRECT dependency of every
//!   output column (`dataset`), and of the output column it conditions.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, JoinType, TableReference};
use datafusion::logical_expr::expr::WindowFunctionDefinition;
use datafusion::logical_expr::utils::grouping_set_to_exprlist;
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan};
use serde::Serialize;

/// Why lineage could not be derived.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plan node or expression the walker does not handle.
    #[error("column lineage: unsupported {0}")]
    Unsupported(String),
    /// A column that does not resolve in its input (a bug in the plan walk).
    #[error("column lineage: column '{0}' not found in its input")]
    Unresolved(String),
}

/// DIRECT or INDIRECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    /// The value flows into the output.
    Direct,
    /// The value decides which rows or which branch.
    Indirect,
}

/// How a column contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Subtype {
    /// Copied unchanged (casts included).
    Identity,
    /// Computed from.
    Transformation,
    /// Aggregated.
    Aggregation,
    /// A join key or join condition.
    Join,
    /// A grouping key.
    GroupBy,
    /// A WHERE or HAVING predicate.
    Filter,
    /// An ORDER BY key.
    Sort,
    /// A window's partition or order key.
    Window,
    /// A CASE condition.
    Conditional,
}

impl Subtype {
    fn kind(self) -> Kind {
        match self {
            Self::Identity | Self::Transformation | Self::Aggregation => Kind::Direct,
            _ => Kind::Indirect,
        }
    }

    /// Identity under an operation becomes a transformation.
    fn wrapped(self) -> Self {
        if self == Self::Identity {
            Self::Transformation
        } else {
            self
        }
    }
}

/// A source column.
pub type Source = (String, String);

/// Sources of one value, with how each contributes.
pub type Deps = BTreeMap<Source, BTreeSet<Subtype>>;

fn add(out: &mut Deps, from: &Deps, mode: Subtype) {
    for (src, subs) in from {
        let entry = out.entry(src.clone()).or_default();
        for s in subs {
            entry.insert(match (s.kind(), mode.kind()) {
                (Kind::Indirect, _) => *s,
                (Kind::Direct, Kind::Direct) => (*s).max(mode),
                (Kind::Direct, Kind::Indirect) => mode,
            });
        }
    }
}

/// The lineage of a plan's output.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ColumnLineage {
    /// Each output column (in order) with its sources.
    pub fields: Vec<(String, Deps)>,
    /// Columns that decide which rows exist at all (filters, join keys,
    /// grouping keys): indirect sources of every output column.
    pub dataset: Deps,
}

impl ColumnLineage {
    /// Lineage whose every field is copied unchanged from the same-named
    /// column of `dataset`.
    pub fn identity(dataset: &str, columns: &[String]) -> Self {
        Self {
            fields: columns
                .iter()
                .map(|c| {
                    (
                        c.clone(),
                        Deps::from([(
                            (dataset.to_string(), c.clone()),
                            BTreeSet::from([Subtype::Identity]),
                        )]),
                    )
                })
                .collect(),
            dataset: Deps::new(),
        }
    }

    /// The sources of one output column.
    pub fn field(&self, name: &str) -> Option<&Deps> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }

    /// Replace sources in datasets that `upstream` knows by their own
    /// sources, so lineage reaches through intermediate steps. Sources
    /// `upstream` does not know, or columns it lacks, stay as they are.
    pub fn compose(&self, upstream: &dyn Fn(&str) -> Option<ColumnLineage>) -> ColumnLineage {
        let mut cache: BTreeMap<String, Option<ColumnLineage>> = BTreeMap::new();
        let mut dataset = Deps::new();
        let mut resolve = |deps: &Deps, into: &mut Deps, dataset: &mut Deps| {
            for ((ds, col), subs) in deps {
                let up = cache.entry(ds.clone()).or_insert_with(|| upstream(ds));
                match up.as_ref().and_then(|u| u.field(col).map(|d| (u, d))) {
                    Some((u, d)) => {
                        for s in subs {
                            add(into, d, *s);
                        }
                        add(dataset, &u.dataset, Subtype::Filter);
                    }
                    None => {
                        into.entry((ds.clone(), col.clone()))
                            .or_default()
                            .extend(subs.iter().copied());
                    }
                }
            }
        };
        let fields = self
            .fields
            .iter()
            .map(|(n, d)| {
                let mut out = Deps::new();
                resolve(d, &mut out, &mut dataset);
                (n.clone(), out)
            })
            .collect();
        let mut own = Deps::new();
        resolve(&self.dataset, &mut own, &mut dataset);
        add(&mut dataset, &own, Subtype::Filter);
        ColumnLineage { fields, dataset }
    }

    /// One line per output column, `col <- dataset.field(SUBTYPE,…) …`,
    /// then the dataset-level sources: stable text for tests and the CLI.
    pub fn render(&self) -> String {
        let fmt = |d: &Deps| {
            d.iter()
                .map(|((ds, c), subs)| {
                    let s: Vec<String> = subs.iter().map(|x| format!("{x:?}")).collect();
                    format!("{ds}.{c}({})", s.join(","))
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut out: Vec<String> = self
            .fields
            .iter()
            .map(|(n, d)| format!("{n} <- {}", fmt(d)))
            .collect();
        out.push(format!("[rows] <- {}", fmt(&self.dataset)));
        out.join("\n")
    }

    /// As JSON: `{"fields": {col: [{dataset, field, transformations:
    /// [{type, subtype}]}]}, "dataset": [...]}` (OpenLineage's shape,
    /// without namespaces).
    pub fn to_json(&self) -> serde_json::Value {
        let list = |d: &Deps| {
            d.iter()
                .map(|((ds, c), subs)| {
                    serde_json::json!({
                        "dataset": ds,
                        "field": c,
                        "transformations": subs.iter().map(|s| serde_json::json!({
                            "type": s.kind(),
                            "subtype": s,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect::<Vec<_>>()
        };
        let fields: serde_json::Map<String, serde_json::Value> = self
            .fields
            .iter()
            .map(|(n, d)| (n.clone(), serde_json::Value::Array(list(d))))
            .collect();
        serde_json::json!({ "fields": fields, "dataset": list(&self.dataset) })
    }
}

struct Node {
    fields: Vec<Deps>,
    indirect: Deps,
}

/// Names a relation as a dataset. Scans of tables it does not name keep
/// their SQL name; an alias it names (an input registered as a view,
/// whose plan DataFusion inlines) becomes a dataset of its own instead of
/// being walked into.
pub type Namer<'a> = &'a dyn Fn(&TableReference) -> Option<String>;

/// The column lineage of a logical plan (best from the unoptimized plan,
/// `DataFrame::logical_plan()`).
pub fn column_lineage(plan: &LogicalPlan, name: Namer<'_>) -> Result<ColumnLineage, Error> {
    let node = walk(plan, name)?;
    Ok(ColumnLineage {
        fields: plan
            .schema()
            .fields()
            .iter()
            .zip(node.fields)
            .map(|(f, d)| (f.name().clone(), d))
            .collect(),
        dataset: node.indirect,
    })
}

/// Resolves a column of an expression to the deps of an input field.
struct Inputs<'a> {
    sides: Vec<(&'a DFSchema, &'a [Deps])>,
}

impl Inputs<'_> {
    fn resolve(&self, c: &Column) -> Result<&Deps, Error> {
        for (schema, fields) in &self.sides {
            if let Some(i) = schema.maybe_index_of_column(c) {
                return Ok(&fields[i]);
            }
        }
        Err(Error::Unresolved(c.flat_name()))
    }
}

/// What an expression depends on: `value` are the sources of its value
/// (with `mode` for the expression as a whole), `rows` the indirect ones
/// found in subqueries.
fn expr_deps(
    e: &Expr,
    mode: Subtype,
    inputs: &Inputs<'_>,
    name: Namer<'_>,
    value: &mut Deps,
) -> Result<(), Error> {
    match e {
        Expr::Alias(a) => expr_deps(&a.expr, mode, inputs, name, value),
        Expr::Column(c) => {
            add(value, inputs.resolve(c)?, mode);
            Ok(())
        }
        Expr::Cast(c) => expr_deps(&c.expr, mode, inputs, name, value),
        Expr::TryCast(c) => expr_deps(&c.expr, mode, inputs, name, value),
        Expr::AggregateFunction(af) => {
            let p = &af.params;
            let m = if mode.kind() == Kind::Direct {
                Subtype::Aggregation
            } else {
                mode
            };
            for a in &p.args {
                expr_deps(a, m, inputs, name, value)?;
            }
            if let Some(f) = &p.filter {
                expr_deps(f, Subtype::Filter, inputs, name, value)?;
            }
            for s in &p.order_by {
                expr_deps(&s.expr, Subtype::Sort, inputs, name, value)?;
            }
            Ok(())
        }
        Expr::WindowFunction(w) => {
            let p = &w.params;
            let m = match (&w.fun, mode.kind()) {
                (_, Kind::Indirect) => mode,
                (WindowFunctionDefinition::AggregateUDF(_), _) => Subtype::Aggregation,
                _ => mode.wrapped(),
            };
            for a in &p.args {
                expr_deps(a, m, inputs, name, value)?;
            }
            for x in &p.partition_by {
                expr_deps(x, Subtype::Window, inputs, name, value)?;
            }
            for s in &p.order_by {
                expr_deps(&s.expr, Subtype::Window, inputs, name, value)?;
            }
            if let Some(f) = &p.filter {
                expr_deps(f, Subtype::Filter, inputs, name, value)?;
            }
            Ok(())
        }
        Expr::Case(c) => {
            let cond = if mode.kind() == Kind::Direct {
                Subtype::Conditional
            } else {
                mode
            };
            if let Some(b) = &c.expr {
                expr_deps(b, cond, inputs, name, value)?;
            }
            for (w, t) in &c.when_then_expr {
                expr_deps(w, cond, inputs, name, value)?;
                expr_deps(t, mode.wrapped(), inputs, name, value)?;
            }
            if let Some(x) = &c.else_expr {
                expr_deps(x, mode.wrapped(), inputs, name, value)?;
            }
            Ok(())
        }
        Expr::ScalarSubquery(sq) => {
            let node = walk(&sq.subquery, name)?;
            for f in &node.fields {
                add(value, f, mode.wrapped());
            }
            add(value, &node.indirect, Subtype::Filter);
            Ok(())
        }
        Expr::Exists(ex) => {
            let node = walk(&ex.subquery.subquery, name)?;
            let m = indirect_or(mode, Subtype::Filter);
            for f in &node.fields {
                add(value, f, m);
            }
            add(value, &node.indirect, m);
            Ok(())
        }
        Expr::InSubquery(is) => {
            expr_deps(&is.expr, mode.wrapped(), inputs, name, value)?;
            let node = walk(&is.subquery.subquery, name)?;
            let m = indirect_or(mode, Subtype::Filter);
            for f in &node.fields {
                add(value, f, m);
            }
            add(value, &node.indirect, m);
            Ok(())
        }
        Expr::OuterReferenceColumn(..) => Ok(()),
        Expr::GroupingSet(_) | Expr::Unnest(_) | Expr::SetComparison(_) => {
            Err(Error::Unsupported(format!("expression {e}")))
        }
        _ => {
            let mut result = Ok(());
            e.apply_children(|ch| {
                result = expr_deps(ch, mode.wrapped(), inputs, name, value);
                Ok(if result.is_ok() {
                    TreeNodeRecursion::Continue
                } else {
                    TreeNodeRecursion::Stop
                })
            })
            .map_err(|err| Error::Unsupported(err.to_string()))?;
            result
        }
    }
}

fn indirect_or(mode: Subtype, default: Subtype) -> Subtype {
    if mode.kind() == Kind::Indirect {
        mode
    } else {
        default
    }
}

fn one(e: &Expr, mode: Subtype, inputs: &Inputs<'_>, name: Namer<'_>) -> Result<Deps, Error> {
    let mut d = Deps::new();
    expr_deps(e, mode, inputs, name, &mut d)?;
    Ok(d)
}

/// Every source of `d` as an indirect dependency of kind `mode`.
fn as_indirect(d: &Deps, mode: Subtype, into: &mut Deps) {
    add(into, d, mode);
}

fn walk(plan: &LogicalPlan, name: Namer<'_>) -> Result<Node, Error> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let dataset = name(&scan.table_name).unwrap_or_else(|| scan.table_name.to_string());
            let fields: Vec<Deps> = scan
                .projected_schema
                .fields()
                .iter()
                .map(|f| {
                    Deps::from([(
                        (dataset.clone(), f.name().clone()),
                        BTreeSet::from([Subtype::Identity]),
                    )])
                })
                .collect();
            let mut indirect = Deps::new();
            let own = Inputs {
                sides: vec![(scan.projected_schema.as_ref(), &fields)],
            };
            for f in &scan.filters {
                let d = one(f, Subtype::Filter, &own, name)?;
                as_indirect(&d, Subtype::Filter, &mut indirect);
            }
            Ok(Node { fields, indirect })
        }
        LogicalPlan::Projection(p) => {
            let child = walk(&p.input, name)?;
            let inputs = Inputs {
                sides: vec![(p.input.schema().as_ref(), &child.fields)],
            };
            let fields = p
                .expr
                .iter()
                .map(|e| one(e, Subtype::Identity, &inputs, name))
                .collect::<Result<_, _>>()?;
            Ok(Node {
                fields,
                indirect: child.indirect,
            })
        }
        LogicalPlan::Filter(f) => {
            let mut child = walk(&f.input, name)?;
            let inputs = Inputs {
                sides: vec![(f.input.schema().as_ref(), &child.fields)],
            };
            let d = one(&f.predicate, Subtype::Filter, &inputs, name)?;
            as_indirect(&d, Subtype::Filter, &mut child.indirect);
            Ok(child)
        }
        LogicalPlan::Aggregate(a) => {
            let mut child = walk(&a.input, name)?;
            let inputs = Inputs {
                sides: vec![(a.input.schema().as_ref(), &child.fields)],
            };
            let grouping_set = matches!(a.group_expr.first(), Some(Expr::GroupingSet(_)));
            let groups: Vec<&Expr> = grouping_set_to_exprlist(&a.group_expr)
                .map_err(|e| Error::Unsupported(e.to_string()))?;
            let mut fields = Vec::new();
            let mut keys = Deps::new();
            for g in groups {
                let d = one(g, Subtype::Identity, &inputs, name)?;
                as_indirect(&d, Subtype::GroupBy, &mut keys);
                fields.push(d);
            }
            if grouping_set {
                fields.push(Deps::new());
            }
            for e in &a.aggr_expr {
                fields.push(one(e, Subtype::Aggregation, &inputs, name)?);
            }
            add(&mut child.indirect, &keys, Subtype::GroupBy);
            Ok(Node {
                fields,
                indirect: child.indirect,
            })
        }
        LogicalPlan::Window(w) => {
            let child = walk(&w.input, name)?;
            let inputs = Inputs {
                sides: vec![(w.input.schema().as_ref(), &child.fields)],
            };
            let mut fields = child.fields.clone();
            for e in &w.window_expr {
                fields.push(one(e, Subtype::Identity, &inputs, name)?);
            }
            Ok(Node {
                fields,
                indirect: child.indirect,
            })
        }
        LogicalPlan::Join(j) => {
            let left = walk(&j.left, name)?;
            let right = walk(&j.right, name)?;
            let inputs = Inputs {
                sides: vec![
                    (j.left.schema().as_ref(), &left.fields),
                    (j.right.schema().as_ref(), &right.fields),
                ],
            };
            let mut keys = Deps::new();
            for (l, r) in &j.on {
                add(
                    &mut keys,
                    &one(l, Subtype::Join, &inputs, name)?,
                    Subtype::Join,
                );
                add(
                    &mut keys,
                    &one(r, Subtype::Join, &inputs, name)?,
                    Subtype::Join,
                );
            }
            if let Some(f) = &j.filter {
                add(
                    &mut keys,
                    &one(f, Subtype::Join, &inputs, name)?,
                    Subtype::Join,
                );
            }
            let fields = match j.join_type {
                JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => {
                    let mut v = left.fields.clone();
                    v.extend(right.fields.iter().cloned());
                    v
                }
                JoinType::LeftSemi | JoinType::LeftAnti => left.fields.clone(),
                JoinType::RightSemi | JoinType::RightAnti => right.fields.clone(),
                JoinType::LeftMark => {
                    let mut v = left.fields.clone();
                    v.push(keys.clone());
                    v
                }
                JoinType::RightMark => {
                    let mut v = right.fields.clone();
                    v.push(keys.clone());
                    v
                }
            };
            let mut indirect = left.indirect;
            add(&mut indirect, &right.indirect, Subtype::Filter);
            add(&mut indirect, &keys, Subtype::Join);
            Ok(Node { fields, indirect })
        }
        LogicalPlan::SubqueryAlias(a) => match name(&a.alias) {
            Some(dataset) => Ok(Node {
                fields: a
                    .schema
                    .fields()
                    .iter()
                    .map(|f| {
                        Deps::from([(
                            (dataset.clone(), f.name().clone()),
                            BTreeSet::from([Subtype::Identity]),
                        )])
                    })
                    .collect(),
                indirect: Deps::new(),
            }),
            None => walk(&a.input, name),
        },
        LogicalPlan::Sort(s) => {
            let mut child = walk(&s.input, name)?;
            let inputs = Inputs {
                sides: vec![(s.input.schema().as_ref(), &child.fields)],
            };
            let mut keys = Deps::new();
            for e in &s.expr {
                add(
                    &mut keys,
                    &one(&e.expr, Subtype::Sort, &inputs, name)?,
                    Subtype::Sort,
                );
            }
            add(&mut child.indirect, &keys, Subtype::Sort);
            Ok(child)
        }
        LogicalPlan::Limit(l) => walk(&l.input, name),
        LogicalPlan::Repartition(r) => walk(&r.input, name),
        LogicalPlan::Subquery(s) => walk(&s.subquery, name),
        LogicalPlan::Distinct(Distinct::All(input)) => {
            let mut child = walk(input, name)?;
            let keys: Vec<Deps> = child.fields.clone();
            for k in &keys {
                add(&mut child.indirect, k, Subtype::GroupBy);
            }
            Ok(child)
        }
        LogicalPlan::Distinct(Distinct::On(d)) => {
            let mut child = walk(&d.input, name)?;
            let inputs = Inputs {
                sides: vec![(d.input.schema().as_ref(), &child.fields)],
            };
            let fields = d
                .select_expr
                .iter()
                .map(|e| one(e, Subtype::Identity, &inputs, name))
                .collect::<Result<Vec<_>, _>>()?;
            let mut keys = Deps::new();
            for e in &d.on_expr {
                add(
                    &mut keys,
                    &one(e, Subtype::GroupBy, &inputs, name)?,
                    Subtype::GroupBy,
                );
            }
            for s in d.sort_expr.iter().flatten() {
                add(
                    &mut keys,
                    &one(&s.expr, Subtype::Sort, &inputs, name)?,
                    Subtype::Sort,
                );
            }
            add(&mut child.indirect, &keys, Subtype::GroupBy);
            Ok(Node {
                fields,
                indirect: child.indirect,
            })
        }
        LogicalPlan::Union(u) => {
            let mut fields = vec![Deps::new(); u.schema.fields().len()];
            let mut indirect = Deps::new();
            for input in &u.inputs {
                let n = walk(input, name)?;
                for (i, f) in n.fields.iter().enumerate() {
                    if let Some(out) = fields.get_mut(i) {
                        add(out, f, Subtype::Identity);
                    }
                }
                add(&mut indirect, &n.indirect, Subtype::Filter);
            }
            Ok(Node { fields, indirect })
        }
        LogicalPlan::Values(v) => Ok(Node {
            fields: vec![Deps::new(); v.schema.fields().len()],
            indirect: Deps::new(),
        }),
        LogicalPlan::EmptyRelation(e) => Ok(Node {
            fields: vec![Deps::new(); e.schema.fields().len()],
            indirect: Deps::new(),
        }),
        other => Err(Error::Unsupported(format!(
            "plan node {}",
            other.display().to_string().lines().next().unwrap_or("?")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn lineage(sql: &str) -> ColumnLineage {
        let ctx = SessionContext::new();
        let table = |cols: &[(&str, DataType)]| {
            let schema = Arc::new(Schema::new(
                cols.iter()
                    .map(|(n, t)| Field::new(*n, t.clone(), true))
                    .collect::<Vec<_>>(),
            ));
            Arc::new(MemTable::try_new(schema, vec![vec![]]).unwrap())
        };
        ctx.register_table(
            "orders",
            table(&[
                ("order_id", DataType::Utf8),
                ("customer_id", DataType::Utf8),
                ("status", DataType::Utf8),
                ("total", DataType::Float64),
                ("order_ts", DataType::Utf8),
            ]),
        )
        .unwrap();
        ctx.register_table(
            "customers",
            table(&[
                ("customer_id", DataType::Utf8),
                ("email", DataType::Utf8),
                ("country", DataType::Utf8),
            ]),
        )
        .unwrap();
        let df = ctx.sql(sql).await.unwrap();
        column_lineage(df.logical_plan(), &|_: &TableReference| None).unwrap()
    }

    fn render(l: &ColumnLineage) -> String {
        l.render()
    }

    #[tokio::test]
    async fn composition_reaches_through_steps() {
        let step =
            lineage("SELECT customer_id, total * 2 AS double FROM orders WHERE status = 'paid'")
                .await;
        let top = ColumnLineage {
            fields: vec![(
                "x".into(),
                Deps::from([(
                    ("orders_step".into(), "double".into()),
                    BTreeSet::from([Subtype::Aggregation]),
                )]),
            )],
            dataset: Deps::new(),
        };
        let composed = top.compose(&|ds| (ds == "orders_step").then(|| step.clone()));
        assert_eq!(
            composed.render(),
            "x <- orders.total(Aggregation)\n[rows] <- orders.status(Filter)"
        );
    }

    #[tokio::test]
    async fn projections_cases_and_casts() {
        let l = lineage(
            "SELECT order_id, CAST(total AS DOUBLE) AS total, upper(status) AS s,
                    CASE WHEN status = 'paid' THEN total ELSE 0 END AS paid
             FROM orders WHERE order_ts > '2026'",
        )
        .await;
        assert_eq!(
            render(&l),
            "order_id <- orders.order_id(Identity)
total <- orders.total(Identity)
s <- orders.status(Transformation)
paid <- orders.status(Conditional) orders.total(Transformation)
[rows] <- orders.order_ts(Filter)"
        );
    }

    #[tokio::test]
    async fn joins_groups_and_aggregates() {
        let l = lineage(
            "SELECT c.country, count(*) AS orders, sum(o.total) AS revenue,
                    max(o.order_ts) AS last_order
             FROM orders o JOIN customers c ON o.customer_id = c.customer_id
             WHERE o.status <> 'cancelled'
             GROUP BY c.country HAVING sum(o.total) > 10 ORDER BY revenue DESC",
        )
        .await;
        insta::assert_snapshot!(render(&l));
    }

    #[tokio::test]
    async fn windows_ctes_unions_and_subqueries() {
        let l = lineage(
            "WITH ranked AS (
               SELECT customer_id, total,
                      row_number() OVER (PARTITION BY customer_id ORDER BY order_ts) AS n
               FROM orders)
             SELECT customer_id, n, total FROM ranked
             WHERE customer_id IN (SELECT customer_id FROM customers WHERE country = 'FR')
             UNION ALL
             SELECT customer_id, 0 AS n, 0.0 AS total FROM customers",
        )
        .await;
        insta::assert_snapshot!(render(&l));
    }
}
