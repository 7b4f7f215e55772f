//! The lake as DataFusion's catalog: each namespace is a schema, each table
//! a [`LakeTableProvider`], and every table has metadata tables
//! `t$snapshots`, `t$history` and `t$files`. A name `t@v<id>` or
//! `t@ts<ms>` is the table at a snapshot (see [`crate::timetravel`]).

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::{
    CatalogProvider, MemTable, MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::error::{DataFusionError, Result as DFResult};
use gridata_core::TableName;
use gridata_lake::{Lake, LakeTable};

use crate::mask::{Masks, masked};
use crate::provider::LakeTableProvider;

fn df_err(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::External(e.to_string().into())
}

/// Every namespace of the lake.
#[derive(Debug)]
pub struct LakeCatalog {
    lake: Lake,
    namespaces: Vec<String>,
    overlay: Arc<MemorySchemaProvider>,
    masks: Arc<Masks>,
    view_types: bool,
}

impl LakeCatalog {
    /// The lake's namespaces as listed now.
    pub async fn new(lake: Lake) -> gridata_lake::Result<Self> {
        let namespaces = lake.catalog().list_namespaces().await?;
        Ok(Self {
            lake,
            namespaces,
            overlay: Arc::new(MemorySchemaProvider::new()),
            masks: Arc::new(Masks::new()),
            view_types: false,
        })
    }

    /// Tables read their string and binary columns as view arrays
    /// (see [`LakeTableProvider::with_view_types`]).
    pub fn with_view_types(mut self, on: bool) -> Self {
        self.view_types = on;
        self
    }

    /// Tables resolve through these column masks.
    pub fn with_masks(mut self, masks: Masks) -> Self {
        self.masks = Arc::new(masks);
        self
    }

    /// Session-local tables, found by unqualified name before the lake's
    /// `default` namespace.
    pub fn overlay(&self) -> &Arc<MemorySchemaProvider> {
        &self.overlay
    }
}

impl CatalogProvider for LakeCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.namespaces.clone()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        // Namespaces created after the session started resolve too.
        Some(Arc::new(LakeSchema {
            lake: self.lake.clone(),
            namespace: name.to_string(),
            overlay: (name == DEFAULT_SCHEMA).then(|| self.overlay.clone()),
            masks: self.masks.clone(),
            view_types: self.view_types,
        }))
    }
}

/// One namespace.
#[derive(Debug)]
pub struct LakeSchema {
    lake: Lake,
    namespace: String,
    overlay: Option<Arc<MemorySchemaProvider>>,
    masks: Arc<Masks>,
    view_types: bool,
}

/// The schema unqualified names resolve in.
pub const DEFAULT_SCHEMA: &str = "default";

/// What a table name in SQL refers to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Current,
    Snapshot(i64),
    AsOf(i64),
    Meta(&'static str),
}

pub(crate) fn split_name(name: &str) -> (&str, Target) {
    if let Some((t, m)) = name.split_once('$') {
        for k in ["snapshots", "history", "files"] {
            if m == k {
                return (t, Target::Meta(k));
            }
        }
    }
    if let Some((t, v)) = name.split_once('@') {
        if let Some(id) = v.strip_prefix('v').and_then(|x| x.parse().ok()) {
            return (t, Target::Snapshot(id));
        }
        if let Some(ms) = v.strip_prefix("ts").and_then(|x| x.parse().ok()) {
            return (t, Target::AsOf(ms));
        }
    }
    (name, Target::Current)
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        // Listing is async; information_schema users get names via `table list`.
        Vec::new()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if let Some(overlay) = &self.overlay
            && let Some(t) = overlay.table(name).await?
        {
            return Ok(Some(t));
        }
        let (base, target) = split_name(name);
        let tname = TableName {
            namespace: self.namespace.split('.').map(String::from).collect(),
            name: base.to_string(),
        };
        let table = match self.lake.load_table(&tname).await {
            Ok(t) => t,
            Err(gridata_lake::Error::NoSuchTable { .. }) => return Ok(None),
            Err(e) => return Err(df_err(e)),
        };
        let snapshot = match target {
            Target::Current => None,
            Target::Snapshot(id) => Some(id),
            Target::AsOf(ms) => Some(table.snapshot_as_of(ms).map_err(df_err)?.snapshot_id()),
            Target::Meta(kind) => {
                return Ok(Some(
                    metadata_table(&self.lake, &table, kind)
                        .await
                        .map_err(df_err)?,
                ));
            }
        };
        let provider: Arc<dyn TableProvider> = Arc::new(
            LakeTableProvider::new(self.lake.clone(), table, snapshot)
                .map_err(df_err)?
                .with_view_types(self.view_types),
        );
        let full = format!("{}.{base}", self.namespace);
        match self.masks.get(&full) {
            Some(cols) if !cols.is_empty() => Ok(Some(masked(&full, provider, cols)?)),
            _ => Ok(Some(provider)),
        }
    }

    fn table_exist(&self, _name: &str) -> bool {
        true
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DFResult<Option<Arc<dyn TableProvider>>> {
        match &self.overlay {
            Some(o) => o.register_table(name, table),
            None => datafusion::common::not_impl_err!(
                "tables are created in namespace '{}' with `gridata table create`",
                self.namespace
            ),
        }
    }

    fn deregister_table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        match &self.overlay {
            Some(o) => o.deregister_table(name),
            None => Ok(None),
        }
    }
}

fn ts_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

async fn metadata_table(
    lake: &Lake,
    table: &LakeTable,
    kind: &str,
) -> gridata_lake::Result<Arc<dyn TableProvider>> {
    let batch = match kind {
        "snapshots" => snapshots_batch(table),
        "history" => history_batch(table),
        _ => files_batch(lake, table).await?,
    };
    let schema = batch.schema();
    MemTable::try_new(schema, vec![vec![batch]])
        .map(|t| Arc::new(t) as Arc<dyn TableProvider>)
        .map_err(|e| gridata_lake::Error::Format {
            context: format!("metadata table {}${kind}", table.name),
            reason: e.to_string(),
        })
}

fn batch(fields: Vec<Field>, cols: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("columns match fields")
}

/// `t$snapshots`: every snapshot, oldest first.
pub fn snapshots_batch(table: &LakeTable) -> RecordBatch {
    let mut snaps: Vec<_> = table.metadata.snapshots().collect();
    snaps.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
    batch(
        vec![
            Field::new("committed_at", ts_ms(), false),
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("parent_id", DataType::Int64, true),
            Field::new("sequence_number", DataType::Int64, false),
            Field::new("operation", DataType::Utf8, false),
            Field::new("manifest_list", DataType::Utf8, false),
            Field::new("summary", DataType::Utf8, false),
        ],
        vec![
            Arc::new(
                TimestampMillisecondArray::from_iter_values(snaps.iter().map(|s| s.timestamp_ms()))
                    .with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from_iter_values(
                snaps.iter().map(|s| s.snapshot_id()),
            )),
            Arc::new(Int64Array::from_iter(
                snaps.iter().map(|s| s.parent_snapshot_id()),
            )),
            Arc::new(Int64Array::from_iter_values(
                snaps.iter().map(|s| s.sequence_number()),
            )),
            Arc::new(StringArray::from_iter_values(
                snaps
                    .iter()
                    .map(|s| s.summary().operation.as_str().to_string()),
            )),
            Arc::new(StringArray::from_iter_values(
                snaps.iter().map(|s| s.manifest_list()),
            )),
            Arc::new(StringArray::from_iter_values(snaps.iter().map(|s| {
                let m: std::collections::BTreeMap<_, _> =
                    s.summary().additional_properties.iter().collect();
                serde_json::to_string(&m).unwrap_or_default()
            }))),
        ],
    )
}

/// `t$history`: when each snapshot became current.
pub fn history_batch(table: &LakeTable) -> RecordBatch {
    let meta = &table.metadata;
    let mut ancestors = std::collections::HashSet::new();
    let mut cur = meta.current_snapshot().cloned();
    while let Some(s) = cur {
        ancestors.insert(s.snapshot_id());
        cur = s
            .parent_snapshot_id()
            .and_then(|p| meta.snapshot_by_id(p).cloned());
    }
    let log = meta.history();
    batch(
        vec![
            Field::new("made_current_at", ts_ms(), false),
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("parent_id", DataType::Int64, true),
            Field::new("is_current_ancestor", DataType::Boolean, false),
        ],
        vec![
            Arc::new(
                TimestampMillisecondArray::from_iter_values(log.iter().map(|l| l.timestamp_ms()))
                    .with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from_iter_values(
                log.iter().map(|l| l.snapshot_id),
            )),
            Arc::new(Int64Array::from_iter(log.iter().map(|l| {
                meta.snapshot_by_id(l.snapshot_id)
                    .and_then(|s| s.parent_snapshot_id())
            }))),
            Arc::new(BooleanArray::from_iter(
                log.iter().map(|l| Some(ancestors.contains(&l.snapshot_id))),
            )),
        ],
    )
}

/// `t$files`: live data files of the current snapshot.
pub async fn files_batch(lake: &Lake, table: &LakeTable) -> gridata_lake::Result<RecordBatch> {
    let files = lake.live_files(table, None).await?;
    let schema = table.metadata.current_schema();
    let spec = table.metadata.default_partition_spec();
    let partition_text = |f: &gridata_lake::LiveFile| -> String {
        let part = f.file.partition();
        if part.fields().is_empty() {
            return String::new();
        }
        match table.metadata.partition_spec_by_id(f.spec_id) {
            Some(s) => s.partition_to_path(part, schema.clone()),
            None => spec.partition_to_path(part, schema.clone()),
        }
    };
    Ok(batch(
        vec![
            Field::new("file_path", DataType::Utf8, false),
            Field::new("file_format", DataType::Utf8, false),
            Field::new("spec_id", DataType::Int32, false),
            Field::new("partition", DataType::Utf8, false),
            Field::new("record_count", DataType::Int64, false),
            Field::new("file_size_in_bytes", DataType::Int64, false),
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("sequence_number", DataType::Int64, false),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                files.iter().map(|f| f.file.file_path()),
            )),
            Arc::new(StringArray::from_iter_values(
                files.iter().map(|f| f.file.file_format().to_string()),
            )),
            Arc::new(Int32Array::from_iter_values(
                files.iter().map(|f| f.spec_id),
            )),
            Arc::new(StringArray::from_iter_values(
                files.iter().map(partition_text),
            )),
            Arc::new(Int64Array::from_iter_values(
                files.iter().map(|f| f.file.record_count() as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                files.iter().map(|f| f.file.file_size_in_bytes() as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                files.iter().map(|f| f.snapshot_id),
            )),
            Arc::new(Int64Array::from_iter_values(
                files.iter().map(|f| f.sequence_number),
            )),
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_targets() {
        assert_eq!(split_name("orders"), ("orders", Target::Current));
        assert_eq!(
            split_name("orders$files"),
            ("orders", Target::Meta("files"))
        );
        assert_eq!(split_name("orders@v42"), ("orders", Target::Snapshot(42)));
        assert_eq!(
            split_name("orders@ts1700000000000"),
            ("orders", Target::AsOf(1_700_000_000_000))
        );
        assert_eq!(split_name("orders$nope"), ("orders$nope", Target::Current));
    }
}
