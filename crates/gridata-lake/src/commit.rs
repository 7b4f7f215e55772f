//! Snapshot production: manifests, manifest list, metadata file, and the
//! compare-and-swap, retried on conflict.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use gridata_core::TableName;
use iceberg::spec::{
    DataFile, ManifestFile, ManifestListWriter, ManifestStatus, ManifestWriterBuilder, Operation,
    Snapshot, Struct, Summary, TableMetadata,
};

use crate::lake::{Lake, LakeTable};
use crate::{Error, Result};

/// How many times a commit retries after losing the compare-and-swap.
const MAX_ATTEMPTS: u32 = 30;

/// Which live files a commit removes.
#[derive(Debug, Clone)]
pub enum Removal {
    /// None: an append.
    None,
    /// Every live file: an overwrite.
    All,
    /// Files in the partitions that the added files cover: a dynamic
    /// partition overwrite.
    Partitions,
    /// Exactly these files (by path); if one is no longer live when the
    /// commit is applied, the commit fails instead of retrying.
    Files(HashSet<String>),
}

/// One commit of data files.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// The Iceberg operation recorded in the snapshot summary.
    pub operation: Operation,
    /// Files to add.
    pub added: Vec<DataFile>,
    /// Files to remove.
    pub removal: Removal,
    /// Caller properties for the summary, such as `gridata.run-id`.
    pub properties: HashMap<String, String>,
    /// Stage the snapshot without making it current (write-audit-publish):
    /// readers keep seeing the parent until [`Lake::publish`].
    pub stage: bool,
}

/// A staged snapshot not on the main branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedSnapshot {
    /// Its id.
    pub snapshot_id: i64,
    /// The snapshot it was staged on.
    pub parent_id: Option<i64>,
    /// Data files it added.
    pub added: Vec<String>,
}

/// What a run's task left in a table; see [`Lake::run_writes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunWrites {
    /// The table's current snapshot.
    pub current: Option<i64>,
    /// One of the task's snapshots is on the main branch.
    pub published: bool,
    /// Its snapshots that are staged only.
    pub staged: Vec<StagedSnapshot>,
}

/// What one attempt prepared: new metadata and the files it wrote.
pub(crate) struct Prepared {
    pub metadata: TableMetadata,
    pub written: Vec<String>,
}

fn next_metadata_location(table: &LakeTable) -> String {
    let file = table
        .metadata_location
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let version: u64 = file
        .split('-')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    format!(
        "{}/metadata/{:05}-{}.metadata.json",
        table.metadata.location(),
        version + 1,
        uuid::Uuid::new_v4()
    )
}

/// Fault injection for crash tests: with `GRIDATA_FAULT_PAUSE_BEFORE_COMMIT_MS`
/// set, a commit waits that long after writing its files and before the
/// compare-and-swap, so a test can kill the process at the worst moment.
async fn fault_pause() {
    if let Some(ms) = std::env::var("GRIDATA_FAULT_PAUSE_BEFORE_COMMIT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

fn new_snapshot_id() -> i64 {
    let (hi, lo) = uuid::Uuid::new_v4().as_u64_pair();
    ((hi ^ lo) & (i64::MAX as u64)) as i64
}

impl Lake {
    /// Apply `prepare` to the current metadata and swap it in, retrying on
    /// conflict. `prepare` runs once per attempt on fresh metadata.
    pub(crate) async fn update<F, Fut>(&self, name: &TableName, mut prepare: F) -> Result<LakeTable>
    where
        F: FnMut(LakeTable, u32) -> Fut,
        Fut: Future<Output = Result<Option<Prepared>>>,
    {
        for attempt in 0..MAX_ATTEMPTS {
            let current = self.load_table(name).await?;
            let Some(prepared) = prepare(current.clone(), attempt).await? else {
                return Ok(current);
            };
            let location = next_metadata_location(&current);
            let written = prepared.written;
            if let Err(e) = self.write_metadata(&location, &prepared.metadata).await {
                self.delete_all(&written).await;
                return Err(e);
            }
            fault_pause().await;
            match self
                .catalog()
                .swap(name, &current.metadata_location, &location)
                .await
            {
                Ok(true) => {
                    return Ok(LakeTable {
                        name: name.clone(),
                        metadata_location: location,
                        metadata: std::sync::Arc::new(prepared.metadata),
                    });
                }
                Ok(false) => {
                    tracing::debug!(table = %name, attempt, "commit conflict; retrying");
                    self.delete_all(&written).await;
                    let _ = self.storage().delete(&location).await;
                    let jitter = (new_snapshot_id() % 20) as u64;
                    let backoff = (5u64 << attempt.min(6)).min(500) + jitter;
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                }
                Err(e) => {
                    // The swap's outcome is unknown: keep the files, which
                    // orphan cleanup removes if the swap did not happen.
                    return Err(e);
                }
            }
        }
        Err(Error::CommitConflict {
            table: name.to_string(),
            attempts: MAX_ATTEMPTS,
        })
    }

    async fn delete_all(&self, uris: &[String]) {
        for u in uris {
            if let Err(e) = self.storage().delete(u).await {
                tracing::warn!(file = %u, error = %e, "could not delete file of a failed commit");
            }
        }
    }

    /// Commit data files as a new snapshot.
    pub async fn commit(&self, name: &TableName, request: CommitRequest) -> Result<LakeTable> {
        if request.added.is_empty() && matches!(request.removal, Removal::None) {
            return self.load_table(name).await;
        }
        let request = &request;
        self.update(name, |table, attempt| async move {
            self.prepare_snapshot(&table, request, attempt)
                .await
                .map(Some)
        })
        .await
    }

    async fn prepare_snapshot(
        &self,
        table: &LakeTable,
        req: &CommitRequest,
        attempt: u32,
    ) -> Result<Prepared> {
        let meta = &table.metadata;
        let schema = meta.current_schema().clone();
        let snapshot_id = new_snapshot_id();
        let seq = meta.next_sequence_number();
        let parent = meta.current_snapshot().cloned();
        let location = meta.location().to_string();
        let mut written = Vec::new();
        let mut manifests: Vec<ManifestFile> = Vec::new();

        let added_partitions: HashSet<(i32, Struct)> = req
            .added
            .iter()
            .map(|f| (meta.default_partition_spec_id(), f.partition().clone()))
            .collect();
        let mut to_remove = match &req.removal {
            Removal::Files(set) => set.clone(),
            _ => HashSet::new(),
        };
        let (mut deleted_files, mut deleted_rows, mut removed_size) = (0u64, 0u64, 0u64);
        let mut changed_partitions: HashSet<(i32, Struct)> = added_partitions.clone();

        if let Some(parent) = &parent {
            for mf in self.manifests(table, parent).await? {
                if matches!(req.removal, Removal::None) {
                    if mf.has_added_files() || mf.has_existing_files() {
                        manifests.push(mf);
                    }
                    continue;
                }
                let manifest = mf
                    .load_manifest(self.file_io())
                    .await
                    .map_err(Error::iceberg(format!(
                        "table '{}': manifest {}",
                        table.name, mf.manifest_path
                    )))?;
                let alive: Vec<_> = manifest
                    .entries()
                    .iter()
                    .filter(|e| e.status() != ManifestStatus::Deleted)
                    .cloned()
                    .collect();
                let spec_id = mf.partition_spec_id;
                let removes = |f: &DataFile| match &req.removal {
                    Removal::None => false,
                    Removal::All => true,
                    Removal::Partitions => {
                        added_partitions.contains(&(spec_id, f.partition().clone()))
                    }
                    Removal::Files(set) => set.contains(f.file_path()),
                };
                if !alive.iter().any(|e| removes(e.data_file())) {
                    if !alive.is_empty() {
                        manifests.push(mf);
                    }
                    continue;
                }
                let spec = meta
                    .partition_spec_by_id(mf.partition_spec_id)
                    .ok_or_else(|| Error::CorruptMetadata {
                        table: table.name.to_string(),
                        location: mf.manifest_path.clone(),
                        reason: format!("unknown partition spec {}", mf.partition_spec_id),
                    })?;
                let path = format!(
                    "{location}/metadata/{}-m{}.avro",
                    uuid::Uuid::new_v4(),
                    manifests.len()
                );
                let out = self
                    .file_io()
                    .new_output(&path)
                    .map_err(Error::iceberg(format!("write {path}")))?;
                let mut w = ManifestWriterBuilder::new(
                    out,
                    Some(snapshot_id),
                    schema.clone(),
                    spec.as_ref().clone(),
                )
                .build_v2_data();
                for e in alive {
                    let df = e.data_file().clone();
                    let eseq = e.sequence_number().unwrap_or(mf.sequence_number);
                    let fseq = e.file_sequence_number.or(Some(mf.sequence_number));
                    if removes(&df) {
                        to_remove.remove(df.file_path());
                        deleted_files += 1;
                        deleted_rows += df.record_count();
                        removed_size += df.file_size_in_bytes();
                        changed_partitions.insert((spec_id, df.partition().clone()));
                        w.add_delete_file(df, eseq, fseq)
                    } else {
                        let sid = e.snapshot_id().unwrap_or(mf.added_snapshot_id);
                        w.add_existing_file(df, sid, eseq, fseq)
                    }
                    .map_err(Error::iceberg(format!("write {path}")))?;
                }
                written.push(path.clone());
                manifests.push(
                    w.write_manifest_file()
                        .await
                        .map_err(Error::iceberg(format!("write {path}")))?,
                );
            }
        }
        if let Removal::Files(_) = &req.removal
            && !to_remove.is_empty()
        {
            self.cleanup(&written).await;
            let mut missing: Vec<_> = to_remove.into_iter().collect();
            missing.sort();
            return Err(Error::ConcurrentChange {
                table: table.name.to_string(),
                reason: format!(
                    "{} file(s) it rewrites were removed by another commit, e.g. {}",
                    missing.len(),
                    missing[0]
                ),
            });
        }

        if !req.added.is_empty() {
            let spec = meta.default_partition_spec();
            let path = format!(
                "{location}/metadata/{}-m{}.avro",
                uuid::Uuid::new_v4(),
                manifests.len()
            );
            let out = self
                .file_io()
                .new_output(&path)
                .map_err(Error::iceberg(format!("write {path}")))?;
            let mut w = ManifestWriterBuilder::new(
                out,
                Some(snapshot_id),
                schema.clone(),
                spec.as_ref().clone(),
            )
            .build_v2_data();
            for f in &req.added {
                w.add_file(f.clone(), seq)
                    .map_err(Error::iceberg(format!("write {path}")))?;
            }
            written.push(path.clone());
            manifests.push(
                w.write_manifest_file()
                    .await
                    .map_err(Error::iceberg(format!("write {path}")))?,
            );
        }

        let list_path = format!(
            "{location}/metadata/snap-{snapshot_id}-{attempt}-{}.avro",
            uuid::Uuid::new_v4()
        );
        let out = self
            .file_io()
            .new_output(&list_path)
            .map_err(Error::iceberg(format!("write {list_path}")))?;
        let writer = out
            .writer()
            .await
            .map_err(Error::iceberg(format!("write {list_path}")))?;
        let mut lw = ManifestListWriter::v2(
            writer,
            snapshot_id,
            parent.as_ref().map(|p| p.snapshot_id()),
            seq,
        );
        let total_records: u64 = manifests
            .iter()
            .map(|m| m.added_rows_count.unwrap_or(0) + m.existing_rows_count.unwrap_or(0))
            .sum();
        let total_files: u64 = manifests
            .iter()
            .map(|m| {
                (m.added_files_count.unwrap_or(0) + m.existing_files_count.unwrap_or(0)) as u64
            })
            .sum();
        lw.add_manifests(manifests.into_iter())
            .map_err(Error::iceberg(format!("write {list_path}")))?;
        written.push(list_path.clone());
        lw.close()
            .await
            .map_err(Error::iceberg(format!("write {list_path}")))?;

        let added_size: u64 = req.added.iter().map(|f| f.file_size_in_bytes()).sum();
        let added_rows: u64 = req.added.iter().map(|f| f.record_count()).sum();
        let parent_size = parent
            .as_ref()
            .and_then(|p| p.summary().additional_properties.get("total-files-size"))
            .and_then(|v| v.parse::<u64>().ok());
        let mut props: HashMap<String, String> = HashMap::from([
            ("added-data-files".into(), req.added.len().to_string()),
            ("added-records".into(), added_rows.to_string()),
            ("added-files-size".into(), added_size.to_string()),
            ("deleted-data-files".into(), deleted_files.to_string()),
            ("deleted-records".into(), deleted_rows.to_string()),
            ("removed-files-size".into(), removed_size.to_string()),
            (
                "changed-partition-count".into(),
                changed_partitions.len().to_string(),
            ),
            ("total-records".into(), total_records.to_string()),
            ("total-data-files".into(), total_files.to_string()),
            ("total-delete-files".into(), "0".into()),
            ("total-position-deletes".into(), "0".into()),
            ("total-equality-deletes".into(), "0".into()),
        ]);
        if let Some(ps) = parent_size.or(parent.is_none().then_some(0)) {
            props.insert(
                "total-files-size".into(),
                (ps + added_size).saturating_sub(removed_size).to_string(),
            );
        }
        if matches!(req.removal, Removal::Partitions) {
            props.insert("replace-partitions".into(), "true".into());
        }
        props.extend(req.properties.clone());

        let snapshot = Snapshot::builder()
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(parent.as_ref().map(|p| p.snapshot_id()))
            .with_sequence_number(seq)
            .with_timestamp_ms(self.clock().now_ms().max(meta.last_updated_ms()))
            .with_manifest_list(list_path)
            .with_summary(Summary {
                operation: req.operation.clone(),
                additional_properties: props,
            })
            .with_schema_id(meta.current_schema_id())
            .build();
        let builder = meta
            .as_ref()
            .clone()
            .into_builder(Some(table.metadata_location.clone()));
        let builder = if req.stage {
            builder.add_snapshot(snapshot)
        } else {
            builder.set_branch_snapshot(snapshot, iceberg::spec::MAIN_BRANCH)
        };
        let metadata = builder
            .and_then(|b| b.build())
            .map_err(Error::iceberg(format!(
                "table '{}': new snapshot",
                table.name
            )))?
            .metadata;
        Ok(Prepared { metadata, written })
    }

    /// Make a staged snapshot current. If the table moved on since it was
    /// staged, the same files are committed again on top of the current
    /// snapshot (as Iceberg's cherry-pick does), and the staged snapshot is
    /// dropped. Returns the table with the published snapshot current.
    pub async fn publish(
        &self,
        name: &TableName,
        staged: i64,
        request: &CommitRequest,
    ) -> Result<LakeTable> {
        match self.fast_forward(name, staged).await {
            Ok(t) => return Ok(t),
            Err(Error::ConcurrentChange { .. }) => {}
            Err(e) => return Err(e),
        }
        let mut again = request.clone();
        again.stage = false;
        let done = self.commit(name, again).await?;
        self.drop_staged(name, staged).await?;
        Ok(done)
    }

    /// Remove a staged snapshot that will never be published, and delete
    /// the data files it added. The current snapshot is untouched.
    pub async fn discard(&self, name: &TableName, staged: i64, added: &[String]) -> Result<()> {
        self.drop_staged(name, staged).await?;
        self.delete_all(added).await;
        Ok(())
    }

    /// Make a staged snapshot current if the table has not moved since it
    /// was staged; else [`Error::ConcurrentChange`].
    pub async fn fast_forward(&self, name: &TableName, staged: i64) -> Result<LakeTable> {
        let table = self.load_table(name).await?;
        let parent = table
            .snapshot(Some(staged))?
            .and_then(|s| s.parent_snapshot_id());
        self.update(name, |t, _| async move {
            if t.metadata.current_snapshot_id() != parent {
                return Err(Error::ConcurrentChange {
                    table: name.to_string(),
                    reason: "the table moved while publishing".into(),
                });
            }
            let metadata = t
                .metadata
                .as_ref()
                .clone()
                .into_builder(Some(t.metadata_location.clone()))
                .set_ref(
                    iceberg::spec::MAIN_BRANCH,
                    iceberg::spec::SnapshotReference::new(
                        staged,
                        iceberg::spec::SnapshotRetention::branch(None, None, None),
                    ),
                )
                .and_then(|b| b.build())
                .map_err(Error::iceberg(format!("table '{name}': publish")))?
                .metadata;
            Ok(Some(Prepared {
                metadata,
                written: vec![],
            }))
        })
        .await
    }

    /// What one pipeline task of one run left in a table: whether one of
    /// its snapshots is on the main branch (published), and the snapshots
    /// it staged that are not.
    pub async fn run_writes(
        &self,
        name: &TableName,
        run_id: &str,
        task_id: &str,
    ) -> Result<RunWrites> {
        let table = self.load_table(name).await?;
        let mine = |s: &iceberg::spec::Snapshot| {
            let p = &s.summary().additional_properties;
            p.get("gridata.run-id").map(String::as_str) == Some(run_id)
                && p.get("gridata.task").map(String::as_str) == Some(task_id)
        };
        let mut on_main = std::collections::HashSet::new();
        let mut next = table.metadata.current_snapshot_id();
        while let Some(id) = next {
            on_main.insert(id);
            next = table
                .metadata
                .snapshot_by_id(id)
                .and_then(|s| s.parent_snapshot_id());
        }
        let published = table
            .metadata
            .snapshots()
            .any(|s| on_main.contains(&s.snapshot_id()) && mine(s));
        let mut staged = Vec::new();
        for s in table.metadata.snapshots() {
            if on_main.contains(&s.snapshot_id()) || !mine(s) {
                continue;
            }
            let id = s.snapshot_id();
            let added = self
                .live_files(&table, Some(id))
                .await?
                .into_iter()
                .filter(|f| f.snapshot_id == id)
                .map(|f| f.file.file_path().to_string())
                .collect();
            staged.push(StagedSnapshot {
                snapshot_id: id,
                parent_id: s.parent_snapshot_id(),
                added,
            });
        }
        Ok(RunWrites {
            current: table.metadata.current_snapshot_id(),
            published,
            staged,
        })
    }

    async fn drop_staged(&self, name: &TableName, staged: i64) -> Result<()> {
        self.update(name, |t, _| async move {
            if t.metadata.snapshot_by_id(staged).is_none() {
                return Ok(None);
            }
            if t.metadata.current_snapshot_id() == Some(staged) {
                return Err(Error::ConcurrentChange {
                    table: name.to_string(),
                    reason: format!("snapshot {staged} is current and cannot be discarded"),
                });
            }
            let metadata = t
                .metadata
                .as_ref()
                .clone()
                .into_builder(Some(t.metadata_location.clone()))
                .remove_snapshots(&[staged])
                .build()
                .map_err(Error::iceberg(format!(
                    "table '{name}': discard staged snapshot"
                )))?
                .metadata;
            Ok(Some(Prepared {
                metadata,
                written: vec![],
            }))
        })
        .await
        .map(|_| ())
    }

    async fn cleanup(&self, written: &[String]) {
        self.delete_all(written).await;
    }
}
