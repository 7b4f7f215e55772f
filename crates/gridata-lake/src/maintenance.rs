//! Rollback, schema evolution, snapshot expiry, orphan removal and
//! compaction planning.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use gridata_core::TableName;
use iceberg::spec::{
    MAIN_BRANCH, NestedField, PrimitiveType, Schema, SnapshotReference, SnapshotRetention, Struct,
    Type,
};

use crate::commit::Prepared;
use crate::lake::{Lake, LakeTable, LiveFile};
use crate::schema::type_name;
use crate::{Error, Result};

/// One schema change.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaUpdate {
    /// Add an optional column at the end.
    Add {
        name: String,
        ty: PrimitiveType,
        doc: Option<String>,
    },
    /// Drop a column. Its data stays in old files; readers skip it.
    Drop { name: String },
    /// Rename a column, keeping its field id.
    Rename { from: String, to: String },
    /// Widen a column: int to long, float to double, decimal precision up.
    Widen { name: String, ty: PrimitiveType },
}

/// What expiry removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpireReport {
    /// Snapshots removed from the metadata.
    pub expired_snapshots: Vec<i64>,
    /// Files deleted: data files, manifests and manifest lists.
    pub deleted_files: usize,
}

/// What orphan removal found and deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrphanReport {
    /// Files under the table location that no snapshot references.
    pub deleted: Vec<String>,
}

/// Small files of one partition to rewrite together.
#[derive(Debug, Clone)]
pub struct CompactionGroup {
    /// The partition (spec id and values).
    pub partition: (i32, Struct),
    /// The files, all below the target size.
    pub files: Vec<LiveFile>,
}

fn widens(from: &PrimitiveType, to: &PrimitiveType) -> bool {
    use PrimitiveType::*;
    match (from, to) {
        (Int, Long) | (Float, Double) => true,
        (
            Decimal {
                precision: p1,
                scale: s1,
            },
            Decimal {
                precision: p2,
                scale: s2,
            },
        ) => s1 == s2 && p2 >= p1,
        (a, b) => a == b,
    }
}

impl Lake {
    /// Make `snapshot_id` the current snapshot again. Later snapshots stay
    /// in the history until expired.
    pub async fn rollback(&self, name: &TableName, snapshot_id: i64) -> Result<LakeTable> {
        self.update(name, |table, _| async move {
            table.snapshot(Some(snapshot_id))?;
            if table.metadata.current_snapshot_id() == Some(snapshot_id) {
                return Ok(None);
            }
            let metadata = table
                .metadata
                .as_ref()
                .clone()
                .into_builder(Some(table.metadata_location.clone()))
                .set_ref(
                    MAIN_BRANCH,
                    SnapshotReference::new(
                        snapshot_id,
                        SnapshotRetention::branch(None, None, None),
                    ),
                )
                .and_then(|b| b.build())
                .map_err(Error::iceberg(format!("table '{name}': rollback")))?
                .metadata;
            Ok(Some(Prepared {
                metadata,
                written: vec![],
            }))
        })
        .await
    }

    /// Apply schema changes as one new schema. Field ids are kept, so old
    /// files read correctly; changes that would break them are refused.
    pub async fn evolve(&self, name: &TableName, updates: &[SchemaUpdate]) -> Result<LakeTable> {
        self.update(name, |table, _| async move {
            let schema = evolve_schema(&table, updates)?;
            let metadata = table
                .metadata
                .as_ref()
                .clone()
                .into_builder(Some(table.metadata_location.clone()))
                .add_current_schema(schema)
                .and_then(|b| b.build())
                .map_err(Error::iceberg(format!("table '{name}': evolve schema")))?
                .metadata;
            Ok(Some(Prepared {
                metadata,
                written: vec![],
            }))
        })
        .await
    }

    /// Set or remove table properties.
    pub async fn set_properties(
        &self,
        name: &TableName,
        props: &BTreeMap<String, Option<String>>,
    ) -> Result<LakeTable> {
        self.update(name, |table, _| async move {
            let set = props
                .iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                .collect();
            let remove: Vec<String> = props
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            let metadata = table
                .metadata
                .as_ref()
                .clone()
                .into_builder(Some(table.metadata_location.clone()))
                .set_properties(set)
                .and_then(|b| b.remove_properties(&remove))
                .and_then(|b| b.build())
                .map_err(Error::iceberg(format!("table '{name}': properties")))?
                .metadata;
            Ok(Some(Prepared {
                metadata,
                written: vec![],
            }))
        })
        .await
    }

    /// Expire snapshots older than `older_than_ms` (epoch ms), keeping the
    /// current one and the last `retain_last` of its ancestry, then delete
    /// the files only the expired snapshots referenced.
    pub async fn expire(
        &self,
        name: &TableName,
        older_than_ms: i64,
        retain_last: usize,
    ) -> Result<ExpireReport> {
        let before = self.load_table(name).await?;
        let expired_cell = std::sync::Mutex::new(Vec::new());
        let after = self
            .update(name, |table, _| {
                let expired = &expired_cell;
                async move {
                    let meta = &table.metadata;
                    let mut keep: HashSet<i64> = meta.current_snapshot_id().into_iter().collect();
                    let mut cur = meta.current_snapshot().cloned();
                    let mut n = 0;
                    while let Some(s) = cur {
                        if n >= retain_last.max(1) {
                            break;
                        }
                        keep.insert(s.snapshot_id());
                        n += 1;
                        cur = s
                            .parent_snapshot_id()
                            .and_then(|p| meta.snapshot_by_id(p).cloned());
                    }
                    let ids: Vec<i64> = meta
                        .snapshots()
                        .filter(|s| {
                            s.timestamp_ms() < older_than_ms && !keep.contains(&s.snapshot_id())
                        })
                        .map(|s| s.snapshot_id())
                        .collect();
                    if ids.is_empty() {
                        *expired.lock().unwrap_or_else(|p| p.into_inner()) = ids;
                        return Ok(None);
                    }
                    let metadata = meta
                        .as_ref()
                        .clone()
                        .into_builder(Some(table.metadata_location.clone()))
                        .remove_snapshots(&ids)
                        .build()
                        .map_err(Error::iceberg(format!("table '{name}': expire")))?
                        .metadata;
                    *expired.lock().unwrap_or_else(|p| p.into_inner()) = ids;
                    Ok(Some(Prepared {
                        metadata,
                        written: vec![],
                    }))
                }
            })
            .await?;
        let expired = expired_cell.into_inner().unwrap_or_else(|p| p.into_inner());
        if expired.is_empty() {
            return Ok(ExpireReport::default());
        }
        let kept = self.referenced_files(&after).await?;
        let mut gone = HashSet::new();
        for id in &expired {
            if let Some(s) = before.metadata.snapshot_by_id(*id) {
                gone.insert(s.manifest_list().to_string());
                for mf in self.manifests(&before, s).await? {
                    gone.insert(mf.manifest_path.clone());
                }
                for f in self.live_files(&before, Some(*id)).await? {
                    gone.insert(f.file.file_path().to_string());
                }
            }
        }
        let mut deleted = 0;
        for f in gone.difference(&kept) {
            self.storage().delete(f).await?;
            deleted += 1;
        }
        Ok(ExpireReport {
            expired_snapshots: expired,
            deleted_files: deleted,
        })
    }

    /// Every file that some snapshot or metadata version of `table` needs.
    async fn referenced_files(&self, table: &LakeTable) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        out.insert(table.metadata_location.clone());
        for log in table.metadata.metadata_log() {
            out.insert(log.metadata_file.clone());
        }
        for s in table.metadata.snapshots() {
            out.insert(s.manifest_list().to_string());
            for mf in self.manifests(table, s).await? {
                out.insert(mf.manifest_path.clone());
            }
            for f in self.live_files(table, Some(s.snapshot_id())).await? {
                out.insert(f.file.file_path().to_string());
            }
        }
        Ok(out)
    }

    /// Delete files under the table's location that nothing references and
    /// that are older than `older_than_ms` (epoch ms): leftovers of killed
    /// writers or failed commits. The age bound protects in-flight writes.
    pub async fn remove_orphans(
        &self,
        name: &TableName,
        older_than_ms: i64,
    ) -> Result<OrphanReport> {
        let table = self.load_table(name).await?;
        let referenced = self.referenced_files(&table).await?;
        let mut deleted = Vec::new();
        for f in self.storage().list(table.metadata.location()).await? {
            if referenced.contains(&f.uri) || f.last_modified_ms >= older_than_ms {
                continue;
            }
            // Keep metadata files: another engine may be mid-commit on them.
            if f.uri.ends_with(".metadata.json") && f.last_modified_ms >= older_than_ms - 3_600_000
            {
                continue;
            }
            self.storage().delete(&f.uri).await?;
            deleted.push(f.uri);
        }
        Ok(OrphanReport { deleted })
    }

    /// Groups of small files, per partition, worth rewriting into files of
    /// the target size. Partitions with fewer than two small files are left.
    pub async fn plan_compaction(
        &self,
        table: &LakeTable,
        target_size: u64,
    ) -> Result<Vec<CompactionGroup>> {
        let small = target_size * 3 / 4;
        let mut groups: BTreeMap<String, CompactionGroup> = BTreeMap::new();
        for f in self.live_files(table, None).await? {
            if f.file.file_size_in_bytes() >= small {
                continue;
            }
            let key = (f.spec_id, f.file.partition().clone());
            groups
                .entry(format!("{key:?}"))
                .or_insert_with(|| CompactionGroup {
                    partition: key,
                    files: Vec::new(),
                })
                .files
                .push(f);
        }
        Ok(groups.into_values().filter(|g| g.files.len() > 1).collect())
    }
}

fn evolve_schema(table: &LakeTable, updates: &[SchemaUpdate]) -> Result<Schema> {
    let meta = &table.metadata;
    let current = meta.current_schema();
    let refuse = |reason: String| Error::SchemaChange {
        table: table.name.to_string(),
        reason,
    };
    let mut fields: Vec<NestedField> = current
        .as_struct()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut next_id = meta.last_column_id() + 1;
    let partition_sources: HashSet<i32> = meta
        .partition_specs_iter()
        .flat_map(|s| s.fields().iter().map(|f| f.source_id))
        .collect();
    let identifier: HashSet<i32> = current.identifier_field_ids().collect();
    for u in updates {
        let find = |fields: &[NestedField], n: &str| fields.iter().position(|f| f.name == n);
        match u {
            SchemaUpdate::Add { name, ty, doc } => {
                if find(&fields, name).is_some() {
                    return Err(refuse(format!("column '{name}' already exists")));
                }
                let mut f = NestedField::optional(next_id, name, Type::Primitive(ty.clone()));
                if let Some(d) = doc {
                    f = f.with_doc(d);
                }
                fields.push(f);
                next_id += 1;
            }
            SchemaUpdate::Drop { name } => {
                let i = find(&fields, name).ok_or_else(|| refuse(format!("no column '{name}'")))?;
                let id = fields[i].id;
                if partition_sources.contains(&id) {
                    return Err(refuse(format!(
                        "column '{name}' is the source of a partition field; dropping it would break partition pruning of existing files"
                    )));
                }
                if identifier.contains(&id) {
                    return Err(refuse(format!("column '{name}' is an identifier field")));
                }
                if fields.len() == 1 {
                    return Err(refuse("cannot drop the last column".into()));
                }
                fields.remove(i);
            }
            SchemaUpdate::Rename { from, to } => {
                if find(&fields, to).is_some() {
                    return Err(refuse(format!("column '{to}' already exists")));
                }
                if to.is_empty() || !to.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    return Err(refuse(format!("bad column name '{to}'")));
                }
                let i = find(&fields, from).ok_or_else(|| refuse(format!("no column '{from}'")))?;
                fields[i].name = to.clone();
            }
            SchemaUpdate::Widen { name, ty } => {
                let i = find(&fields, name).ok_or_else(|| refuse(format!("no column '{name}'")))?;
                let from = match fields[i].field_type.as_ref() {
                    Type::Primitive(p) => p.clone(),
                    other => {
                        return Err(refuse(format!(
                            "column '{name}' is {other}, not a primitive"
                        )));
                    }
                };
                if !widens(&from, ty) {
                    return Err(refuse(format!(
                        "column '{name}': {} to {} is not a widening (allowed: int to long, float to double, decimal(p,s) to decimal(p2,s) with p2 >= p); old files could not be read",
                        type_name(&Type::Primitive(from.clone())),
                        type_name(&Type::Primitive(ty.clone()))
                    )));
                }
                *fields[i].field_type = Type::Primitive(ty.clone());
            }
        }
    }
    Schema::builder()
        .with_fields(fields.into_iter().map(Arc::new))
        .with_identifier_field_ids(identifier)
        .build()
        .map_err(|e| refuse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_rules() {
        use PrimitiveType::*;
        assert!(widens(&Int, &Long));
        assert!(widens(&Float, &Double));
        assert!(!widens(&Long, &Int));
        assert!(!widens(&Double, &Float));
        assert!(!widens(&Int, &String));
        assert!(widens(
            &Decimal {
                precision: 10,
                scale: 2
            },
            &Decimal {
                precision: 12,
                scale: 2
            }
        ));
        assert!(!widens(
            &Decimal {
                precision: 10,
                scale: 2
            },
            &Decimal {
                precision: 12,
                scale: 3
            }
        ));
    }
}
