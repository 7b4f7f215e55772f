//! Metadata: column lineage edges and the dataset registry, as last
//! recorded for each dataset.
//!
//! Invariants:
//! - A dataset's registry entry is replaced whole by each successful write.
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

/// A column of a registered dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ColumnInfo {
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// PII kind found, such as `email`.
    #[serde(default)]
    pub pii: Option<String>,
    /// Confidence of the PII kind.
    #[serde(default)]
    pub pii_confidence: Option<f64>,
    /// `hash` or `redact`: hidden from readers without the PII privilege.
    #[serde(default)]
    pub masking: Option<String>,
}

/// A dataset in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatasetRecord {
    /// `namespace.table`.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Owners.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Business domain.
    #[serde(default)]
    pub domain: Option<String>,
    /// Glossary terms.
    #[serde(default)]
    pub glossary_terms: Vec<String>,
    /// Columns of the current schema.
    #[serde(default)]
    pub columns: Vec<ColumnInfo>,
    /// Rows in the current snapshot.
    #[serde(default)]
    pub row_count: Option<u64>,
    /// Current snapshot.
    #[serde(default)]
    pub snapshot_id: Option<i64>,
    /// Bytes of data files in the current snapshot.
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// `passed` or `failed`: the error-level checks of the last write.
    #[serde(default)]
    pub quality: Option<String>,
    /// The pipeline that last wrote it.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Last write (ms): freshness.
    pub updated_ms: i64,
}

/// Hand-made metadata of a dataset, kept apart from what writes register
/// and laid over it on every read, so the next write does not undo it.
/// Absent fields leave the registered value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DatasetAnnotation {
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Owners.
    #[serde(default)]
    pub owners: Option<Vec<String>>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Business domain.
    #[serde(default)]
    pub domain: Option<String>,
    /// Glossary terms.
    #[serde(default)]
    pub glossary_terms: Option<Vec<String>>,
    /// Per column.
    #[serde(default)]
    pub columns: std::collections::BTreeMap<String, ColumnAnnotation>,
}

/// Hand-made metadata of a column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ColumnAnnotation {
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// A PII kind (`email`, `phone`…) that overrides the classifier, or
    /// `none` to clear what it found.
    #[serde(default)]
    pub pii: Option<String>,
    /// `hash`, `redact`, or `none` to lift a policy.
    #[serde(default)]
    pub masking: Option<String>,
}

impl DatasetAnnotation {
    /// `other`'s fields replace this one's where given (a merge patch).
    pub fn merge(&mut self, other: DatasetAnnotation) {
        if other.description.is_some() {
            self.description = other.description;
        }
        if other.owners.is_some() {
            self.owners = other.owners;
        }
        if other.tags.is_some() {
            self.tags = other.tags;
        }
        if other.domain.is_some() {
            self.domain = other.domain;
        }
        if other.glossary_terms.is_some() {
            self.glossary_terms = other.glossary_terms;
        }
        for (name, c) in other.columns {
            let mine = self.columns.entry(name).or_default();
            if c.description.is_some() {
                mine.description = c.description;
            }
            if c.pii.is_some() {
                mine.pii = c.pii;
            }
            if c.masking.is_some() {
                mine.masking = c.masking;
            }
        }
    }

    /// Lay this over a registered dataset.
    pub fn apply(&self, d: &mut DatasetRecord) {
        if let Some(v) = &self.description {
            d.description = Some(v.clone());
        }
        if let Some(v) = &self.owners {
            d.owners = v.clone();
        }
        if let Some(v) = &self.tags {
            d.tags = v.clone();
        }
        if let Some(v) = &self.domain {
            d.domain = Some(v.clone());
        }
        if let Some(v) = &self.glossary_terms {
            d.glossary_terms = v.clone();
        }
        for col in &mut d.columns {
            let Some(a) = self.columns.get(&col.name) else {
                continue;
            };
            if let Some(v) = &a.description {
                col.description = Some(v.clone());
            }
            match a.pii.as_deref() {
                Some("none") => {
                    col.pii = None;
                    col.pii_confidence = None;
                }
                Some(kind) => {
                    col.pii = Some(kind.to_string());
                    col.pii_confidence = Some(1.0);
                }
                None => {}
            }
            match a.masking.as_deref() {
                Some("none") => col.masking = None,
                Some(m) => col.masking = Some(m.to_string()),
                None => {}
            }
        }
    }
}

/// Where lineage and the dataset registry are kept.
#[async_trait]
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    /// Replace the lineage of `dataset` with `edges`.
    async fn record_lineage(&self, dataset: &str, edges: &[LineageEdge]) -> Result<()>;
    /// Every edge.
    async fn lineage_edges(&self) -> Result<Vec<LineageEdge>>;
    /// Register (replace) a dataset.
    async fn upsert_dataset(&self, d: &DatasetRecord) -> Result<()>;
    /// Every registered dataset, by name.
    async fn datasets(&self) -> Result<Vec<DatasetRecord>>;
    /// How many datasets and the latest update: changes when the registry does.
    async fn datasets_version(&self) -> Result<(i64, i64)>;
    /// A dataset's hand-made metadata.
    async fn dataset_annotation(&self, name: &str) -> Result<DatasetAnnotation>;
    /// Merge hand-made metadata into a dataset's; returns the result.
    async fn annotate_dataset(
        &self,
        name: &str,
        patch: DatasetAnnotation,
        now_ms: i64,
    ) -> Result<DatasetAnnotation>;
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

    async fn upsert_dataset(&self, d: &DatasetRecord) -> Result<()> {
        let doc = serde_json::to_string(d).unwrap_or_default();
        sqlx::query(
            "INSERT INTO datasets (name, doc, updated_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET doc = $2, updated_ms = $3",
        )
        .bind(&d.name)
        .bind(doc)
        .bind(d.updated_ms)
        .execute(&self.pool)
        .await
        .map_err(db(format!("register dataset {}", d.name)))?;
        Ok(())
    }

    async fn datasets(&self) -> Result<Vec<DatasetRecord>> {
        let rows = sqlx::query(
            "SELECT d.doc AS doc, a.doc AS annotation FROM datasets d
             LEFT JOIN dataset_annotations a ON a.name = d.name ORDER BY d.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("read datasets"))?;
        rows.iter()
            .map(|r| {
                let doc: String = r.try_get("doc").map_err(db("read datasets"))?;
                let mut d: DatasetRecord =
                    serde_json::from_str(&doc).map_err(|_| crate::Error::Corrupt {
                        what: "dataset",
                        value: doc.chars().take(80).collect(),
                    })?;
                let a: Option<String> = r.try_get("annotation").map_err(db("read datasets"))?;
                if let Some(a) = a {
                    annotation_from(&a)?.apply(&mut d);
                }
                Ok(d)
            })
            .collect()
    }

    async fn datasets_version(&self) -> Result<(i64, i64)> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM datasets) + (SELECT COUNT(*) FROM dataset_annotations) AS n,
                (SELECT COALESCE(MAX(updated_ms), 0) FROM datasets)
                + (SELECT COALESCE(MAX(updated_ms), 0) FROM dataset_annotations) AS m",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db("read datasets"))?;
        Ok((
            r.try_get("n").map_err(db("read datasets"))?,
            r.try_get("m").map_err(db("read datasets"))?,
        ))
    }

    async fn dataset_annotation(&self, name: &str) -> Result<DatasetAnnotation> {
        let r = sqlx::query("SELECT doc FROM dataset_annotations WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(format!("read the annotation of {name}")))?;
        match r {
            Some(r) => annotation_from(
                &r.try_get::<String, _>("doc")
                    .map_err(db(format!("read the annotation of {name}")))?,
            ),
            None => Ok(DatasetAnnotation::default()),
        }
    }

    async fn annotate_dataset(
        &self,
        name: &str,
        patch: DatasetAnnotation,
        now_ms: i64,
    ) -> Result<DatasetAnnotation> {
        let ctx = format!("annotate {name}");
        let mut tx = self.write_tx(&ctx).await?;
        let sql = format!(
            "SELECT doc FROM dataset_annotations WHERE name = $1{}",
            self.skip_locked().replace(" SKIP LOCKED", "")
        );
        let mut a = match sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?
        {
            Some(r) => annotation_from(&r.try_get::<String, _>("doc").map_err(db(ctx.clone()))?)?,
            None => DatasetAnnotation::default(),
        };
        a.merge(patch);
        sqlx::query(
            "INSERT INTO dataset_annotations (name, doc, updated_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET doc = $2, updated_ms = $3",
        )
        .bind(name)
        .bind(serde_json::to_string(&a).unwrap_or_default())
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db(ctx.clone()))?;
        tx.commit().await.map_err(db(ctx))?;
        Ok(a)
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

fn annotation_from(doc: &str) -> Result<DatasetAnnotation> {
    serde_json::from_str(doc).map_err(|_| crate::Error::Corrupt {
        what: "dataset annotation",
        value: doc.chars().take(80).collect(),
    })
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
        let d = DatasetRecord {
            name: ds.clone(),
            namespace: "ns".into(),
            description: Some("orders".into()),
            owners: vec!["a@x".into()],
            tags: vec!["gold".into()],
            domain: None,
            glossary_terms: vec![],
            columns: vec![ColumnInfo {
                name: "email".into(),
                ty: "string".into(),
                description: None,
                pii: Some("email".into()),
                pii_confidence: Some(0.9),
                masking: None,
            }],
            row_count: Some(3),
            snapshot_id: Some(1),
            size_bytes: Some(10),
            quality: Some("passed".into()),
            pipeline: Some("p".into()),
            updated_ms: 5,
        };
        store.upsert_dataset(&d).await.unwrap();
        let mut d2 = d.clone();
        d2.updated_ms = 6;
        store.upsert_dataset(&d2).await.unwrap();
        let all = store.datasets().await.unwrap();
        assert_eq!(
            all.iter().filter(|x| x.name == ds).collect::<Vec<_>>(),
            vec![&d2]
        );
        assert!(store.datasets_version().await.unwrap().1 >= 6);

        // Hand-made metadata is laid over what writes register, merged
        // field by field, and survives the next write.
        let before = store.datasets_version().await.unwrap();
        let patch = DatasetAnnotation {
            description: Some("Orders, one row per order".into()),
            glossary_terms: Some(vec!["Order".into()]),
            columns: [(
                "email".to_string(),
                ColumnAnnotation {
                    masking: Some("hash".into()),
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        };
        store.annotate_dataset(&ds, patch, 7).await.unwrap();
        let second = DatasetAnnotation {
            owners: Some(vec!["b@x".into()]),
            columns: [(
                "email".to_string(),
                ColumnAnnotation {
                    pii: Some("none".into()),
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        };
        let merged = store.annotate_dataset(&ds, second, 8).await.unwrap();
        assert_eq!(
            merged.description.as_deref(),
            Some("Orders, one row per order")
        );
        assert_ne!(store.datasets_version().await.unwrap(), before);
        store.upsert_dataset(&d2).await.unwrap();
        let got = store
            .datasets()
            .await
            .unwrap()
            .into_iter()
            .find(|x| x.name == ds)
            .unwrap();
        assert_eq!(
            got.description.as_deref(),
            Some("Orders, one row per order")
        );
        assert_eq!(got.owners, vec!["b@x".to_string()]);
        assert_eq!(got.tags, vec!["gold".to_string()], "untouched fields stay");
        assert_eq!(got.glossary_terms, vec!["Order".to_string()]);
        assert_eq!(got.columns[0].masking.as_deref(), Some("hash"));
        assert_eq!(got.columns[0].pii, None, "the classifier was overridden");
    }
}
