//! Column lineage edges: the latest lineage recorded for each dataset.
//!
//! Invariants:
//! - Recording a dataset's lineage replaces all of its previous edges in
//!   one transaction: the graph always shows what the last successful
//!   write derived, never a mix of two writes.
//! - `target_field` is empty for dataset-level (row) dependencies.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Result, SqlStateStore, db};

/// One source column of one output column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineageEdge {
    /// The dataset written (`namespace.table`).
    pub target_dataset: String,
    /// Its column; empty for a dependency of every row.
    pub target_field: String,
    /// The source dataset: a table, `task:<id>` or `<zone>:<path pattern>`.
    pub source_dataset: String,
    /// The source column.
    pub source_field: String,
    /// OpenLineage subtypes, such as `IDENTITY` or `JOIN`.
    pub subtypes: Vec<String>,
    /// The pipeline whose write recorded it.
    pub pipeline: String,
    /// The write task.
    pub task_id: String,
    /// The run.
    pub run_id: String,
    /// When (ms).
    pub updated_ms: i64,
}

/// Where lineage is kept.
#[async_trait]
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    /// Replace the lineage of `dataset` with `edges`.
    async fn record_lineage(&self, dataset: &str, edges: &[LineageEdge]) -> Result<()>;
    /// Every edge.
    async fn lineage_edges(&self) -> Result<Vec<LineageEdge>>;
}

#[async_trait]
impl MetadataStore for SqlStateStore {
    async fn record_lineage(&self, dataset: &str, edges: &[LineageEdge]) -> Result<()> {
        let ctx = format!("record lineage of {dataset}");
        let mut tx = self.pool.begin().await.map_err(db(ctx.clone()))?;
        sqlx::query("DELETE FROM lineage_edges WHERE target_dataset = $1")
            .bind(dataset)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?;
        for e in edges {
            sqlx::query(
                "INSERT INTO lineage_edges (target_dataset, target_field, source_dataset,
                    source_field, subtypes, pipeline, task_id, run_id, updated_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (target_dataset, target_field, source_dataset, source_field)
                 DO UPDATE SET subtypes = $5",
            )
            .bind(dataset)
            .bind(&e.target_field)
            .bind(&e.source_dataset)
            .bind(&e.source_field)
            .bind(e.subtypes.join(","))
            .bind(&e.pipeline)
            .bind(&e.task_id)
            .bind(&e.run_id)
            .bind(e.updated_ms)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?;
        }
        tx.commit().await.map_err(db(ctx))
    }

    async fn lineage_edges(&self) -> Result<Vec<LineageEdge>> {
        let rows = sqlx::query(
            "SELECT target_dataset, target_field, source_dataset, source_field, subtypes,
                pipeline, task_id, run_id, updated_ms
             FROM lineage_edges
             ORDER BY target_dataset, target_field, source_dataset, source_field",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("read lineage"))?;
        rows.iter()
            .map(|r| {
                let e = || db("read lineage");
                let subtypes: String = r.try_get("subtypes").map_err(e())?;
                Ok(LineageEdge {
                    target_dataset: r.try_get("target_dataset").map_err(e())?,
                    target_field: r.try_get("target_field").map_err(e())?,
                    source_dataset: r.try_get("source_dataset").map_err(e())?,
                    source_field: r.try_get("source_field").map_err(e())?,
                    subtypes: subtypes
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                    pipeline: r.try_get("pipeline").map_err(e())?,
                    task_id: r.try_get("task_id").map_err(e())?,
                    run_id: r.try_get("run_id").map_err(e())?,
                    updated_ms: r.try_get("updated_ms").map_err(e())?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) async fn suite(store: &SqlStateStore, tag: &str) {
        let ds = format!("ns.t_{tag}");
        let edge = |f: &str, s: &str, run: &str| LineageEdge {
            target_dataset: ds.clone(),
            target_field: f.into(),
            source_dataset: "raw:x.csv".into(),
            source_field: s.into(),
            subtypes: vec!["IDENTITY".into()],
            pipeline: "p".into(),
            task_id: "w".into(),
            run_id: run.into(),
            updated_ms: 1,
        };
        store
            .record_lineage(&ds, &[edge("a", "a", "r1"), edge("b", "b", "r1")])
            .await
            .unwrap();
        store
            .record_lineage(&ds, &[edge("a", "a2", "r2")])
            .await
            .unwrap();
        let mine: Vec<_> = store
            .lineage_edges()
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.target_dataset == ds)
            .collect();
        assert_eq!(mine, vec![edge("a", "a2", "r2")], "replaced, not merged");
    }
}
