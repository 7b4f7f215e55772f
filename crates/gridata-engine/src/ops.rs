//! Table writes that need the query engine: import of files, copy-on-write
//! delete, and compaction. Each commits exactly one snapshot or nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::dataframe::DataFrame;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions};
use futures::StreamExt;
use gridata_core::TableName;
use gridata_lake::iceberg::spec::Operation;
use gridata_lake::{CommitRequest, LakeTable, Removal};

use crate::provider::LakeTableProvider;
use crate::session::Engine;
use crate::{Error, Result};

/// Writes of at least this many rows get one writer per core.
pub const PARALLEL_WRITE_ROWS: u64 = 1 << 20;
/// Writes of at least this many input bytes get one writer per core.
pub const PARALLEL_WRITE_BYTES: u64 = 64 << 20;

/// A frame's rows as at most `lanes` streams: its plan's partitions when
/// there are no more of them than lanes, else one merged stream.
pub async fn partition_streams(
    df: DataFrame,
    lanes: usize,
) -> datafusion::error::Result<Vec<datafusion::physical_plan::SendableRecordBatchStream>> {
    let task = Arc::new(df.task_ctx());
    split(df.create_physical_plan().await?, task, lanes)
}

fn split(
    plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    task: Arc<datafusion::execution::TaskContext>,
    lanes: usize,
) -> datafusion::error::Result<Vec<datafusion::physical_plan::SendableRecordBatchStream>> {
    use datafusion::physical_plan::ExecutionPlanProperties;
    let n = plan.output_partitioning().partition_count();
    if lanes > 1 && n > 1 && n <= lanes {
        datafusion::physical_plan::execute_stream_partitioned(plan, task)
    } else {
        Ok(vec![datafusion::physical_plan::execute_stream(plan, task)?])
    }
}

/// An executed plan with its metrics (rows, time, spills per operator), as
/// `EXPLAIN ANALYZE` prints it: for logs at debug level.
pub fn plan_metrics(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> String {
    datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan)
        .indent(true)
        .to_string()
}

/// The format of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// CSV with a header row.
    Csv,
    /// JSON lines.
    Json,
    /// Parquet.
    Parquet,
}

impl ImportFormat {
    /// The format a file name implies.
    pub fn from_path(path: &str) -> Option<Self> {
        let p = path.to_ascii_lowercase();
        if p.ends_with(".csv") || p.ends_with(".csv.gz") {
            Some(Self::Csv)
        } else if p.ends_with(".json") || p.ends_with(".jsonl") || p.ends_with(".ndjson") {
            Some(Self::Json)
        } else if p.ends_with(".parquet") {
            Some(Self::Parquet)
        } else {
            None
        }
    }
}

/// A file to import.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// A local path or an object-store URI.
    pub path: String,
    /// Its format.
    pub format: ImportFormat,
}

/// What an import wrote.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Rows read from each input file, in order.
    pub rows_per_file: Vec<(String, u64)>,
    /// Rows written.
    pub rows: u64,
    /// Data files written.
    pub data_files: usize,
    /// The new snapshot.
    pub snapshot_id: Option<i64>,
}

/// How written rows relate to the rows already in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Add rows.
    Append,
    /// Replace every row.
    Overwrite,
    /// Replace the partitions the new rows fall in.
    OverwritePartitions,
}

fn input_err(file: &str, e: impl std::fmt::Display) -> Error {
    Error::Input {
        file: file.to_string(),
        reason: e
            .to_string()
            .trim_start_matches("Arrow error: ")
            .to_string(),
    }
}

fn plain(f: &Field) -> Field {
    Field::new(f.name(), f.data_type().clone(), true)
}

impl Engine {
    async fn head_bytes(&self, path: &str) -> Result<Vec<u8>> {
        if path.contains("://") {
            let b = self
                .lake()
                .storage()
                .read_prefix(path, 1 << 16)
                .await
                .map_err(|e| input_err(path, e))?;
            Ok(b.to_vec())
        } else {
            use std::io::Read;
            let mut f = std::fs::File::open(path).map_err(|e| input_err(path, e))?;
            let mut buf = vec![0u8; 1 << 16];
            let n = f.read(&mut buf).map_err(|e| input_err(path, e))?;
            buf.truncate(n);
            Ok(buf)
        }
    }

    /// A file's rows as a DataFrame whose columns are checked against the
    /// table: every column must exist in the table, and every required
    /// table column must be present. Errors name the file and the column.
    pub async fn read_input(&self, file: &InputFile, table: &LakeTable) -> Result<DataFrame> {
        let target = table.arrow_schema(None)?;
        let path = file.path.as_str();
        let columns: Vec<String> = match file.format {
            ImportFormat::Csv => {
                let head = self.head_bytes(path).await?;
                let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
                let line = String::from_utf8_lossy(line);
                let mut rdr = csv_header(line.trim_end_matches('\r'));
                rdr.retain(|c| !c.is_empty());
                if rdr.is_empty() {
                    return Err(input_err(path, "line 1: empty header row"));
                }
                rdr
            }
            _ => Vec::new(),
        };
        let df = match file.format {
            ImportFormat::Csv => {
                let mut fields = Vec::new();
                for c in &columns {
                    let f = target.field_with_name(c).map_err(|_| {
                        input_err(
                            path,
                            format!("line 1: column '{c}' is not in table '{}'", table.name),
                        )
                    })?;
                    fields.push(plain(f));
                }
                let schema = Schema::new(fields);
                let ext = path
                    .rsplit_once('.')
                    .map(|(_, e)| format!(".{e}"))
                    .unwrap_or_default();
                self.context()
                    .read_csv(
                        path,
                        CsvReadOptions::new()
                            .schema(&schema)
                            .has_header(true)
                            .file_extension(&ext),
                    )
                    .await
                    .map_err(|e| input_err(path, e))?
            }
            ImportFormat::Json => {
                let ext = path
                    .rsplit_once('.')
                    .map(|(_, e)| format!(".{e}"))
                    .unwrap_or_default();
                let inferred = self
                    .context()
                    .read_json(path, JsonReadOptions::default().file_extension(&ext))
                    .await
                    .map_err(|e| input_err(path, e))?;
                let mut fields = Vec::new();
                for f in inferred.schema().fields() {
                    let t = target.field_with_name(f.name()).map_err(|_| {
                        input_err(
                            path,
                            format!("field '{}' is not in table '{}'", f.name(), table.name),
                        )
                    })?;
                    fields.push(plain(t));
                }
                let schema = Schema::new(fields);
                self.context()
                    .read_json(
                        path,
                        JsonReadOptions::default()
                            .schema(&schema)
                            .file_extension(&ext),
                    )
                    .await
                    .map_err(|e| input_err(path, e))?
            }
            ImportFormat::Parquet => {
                let ext = path
                    .rsplit_once('.')
                    .map(|(_, e)| format!(".{e}"))
                    .unwrap_or_default();
                let df = self
                    .context()
                    .read_parquet(path, ParquetReadOptions::default().file_extension(&ext))
                    .await
                    .map_err(|e| input_err(path, e))?;
                for f in df.schema().fields() {
                    if target.field_with_name(f.name()).is_err() {
                        return Err(input_err(
                            path,
                            format!("column '{}' is not in table '{}'", f.name(), table.name),
                        ));
                    }
                }
                df
            }
        };
        let present: HashSet<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        for f in target.fields() {
            if !f.is_nullable() && !present.contains(f.name()) {
                return Err(input_err(
                    path,
                    format!(
                        "required column '{}' of table '{}' is missing",
                        f.name(),
                        table.name
                    ),
                ));
            }
        }
        Ok(df)
    }

    /// Import files into a table as one commit.
    pub async fn import(
        &self,
        name: &TableName,
        files: &[InputFile],
        mode: WriteMode,
        properties: HashMap<String, String>,
    ) -> Result<ImportReport> {
        let table = self.lake().load_table(name).await?;
        let target = table.arrow_schema(None)?;
        let mut report = ImportReport::default();
        let mut frames = Vec::with_capacity(files.len());
        let mut bytes = 0u64;
        for file in files {
            frames.push((self.read_input(file, &table).await?, file.path.clone()));
            bytes += self.input_size(&file.path).await.unwrap_or(0);
        }
        let lanes = self.lanes_for(None, Some(bytes));
        let (counts, added) = self.write_frames(&table, &target, frames, lanes).await?;
        for (file, rows) in files.iter().zip(counts) {
            report.rows_per_file.push((file.path.clone(), rows));
            report.rows += rows;
        }
        report.data_files = added.len();
        let (operation, removal) = match mode {
            WriteMode::Append => (Operation::Append, Removal::None),
            WriteMode::Overwrite => (Operation::Overwrite, Removal::All),
            WriteMode::OverwritePartitions => (Operation::Overwrite, Removal::Partitions),
        };
        let done = self
            .lake()
            .commit(
                name,
                CommitRequest {
                    operation,
                    stage: false,
                    added,
                    removal,
                    properties,
                },
            )
            .await?;
        report.snapshot_id = done.metadata.current_snapshot_id();
        Ok(report)
    }

    /// Writers for a write of about `rows` rows or `bytes` bytes: one for
    /// small writes, so a partition gets one file; one per core past
    /// [`PARALLEL_WRITE_ROWS`] rows or [`PARALLEL_WRITE_BYTES`] bytes.
    pub fn lanes_for(&self, rows: Option<u64>, bytes: Option<u64>) -> usize {
        let big = rows.is_some_and(|r| r >= PARALLEL_WRITE_ROWS)
            || bytes.is_some_and(|b| b >= PARALLEL_WRITE_BYTES);
        if big {
            self.context().state().config().target_partitions().max(1)
        } else {
            1
        }
    }

    /// A frame's rows as streams for parallel writers, planned once: as
    /// many as [`Engine::lanes_for`] gives for its plan's statistics. The
    /// plan is returned too: its metrics fill in as the streams are read.
    pub async fn write_streams(
        &self,
        df: DataFrame,
    ) -> datafusion::error::Result<(
        Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        Vec<datafusion::physical_plan::SendableRecordBatchStream>,
    )> {
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await?;
        let lanes = match plan.partition_statistics(None) {
            Ok(stats) => self.lanes_for(
                stats.num_rows.get_value().map(|n| *n as u64),
                stats.total_byte_size.get_value().map(|n| *n as u64),
            ),
            Err(_) => 1,
        };
        Ok((plan.clone(), split(plan, task, lanes)?))
    }

    async fn input_size(&self, path: &str) -> Option<u64> {
        if path.contains("://") {
            self.lake().storage().head(path).await.ok().map(|f| f.size)
        } else {
            std::fs::metadata(path).ok().map(|m| m.len())
        }
    }

    /// Write a DataFrame's rows as data files of `table` (not committed),
    /// through one writer.
    pub async fn write_frame(
        &self,
        table: &LakeTable,
        target: &SchemaRef,
        df: DataFrame,
        source: &str,
    ) -> Result<(u64, Vec<gridata_lake::iceberg::spec::DataFile>)> {
        let (counts, files) = self
            .write_frames(table, target, vec![(df, source.to_string())], 1)
            .await?;
        Ok((counts[0], files))
    }

    /// Write several DataFrames through `lanes` writers running in
    /// parallel: each frame's partitions are dealt to the lanes, and a lane
    /// takes the frames one after another, so a partition gets one file
    /// per lane rather than one per input. Returns the rows read from each
    /// frame and the data files (not committed). Errors name the source of
    /// the failing frame.
    pub async fn write_frames(
        &self,
        table: &LakeTable,
        target: &SchemaRef,
        frames: Vec<(DataFrame, String)>,
        lanes: usize,
    ) -> Result<(Vec<u64>, Vec<gridata_lake::iceberg::spec::DataFile>)> {
        use std::sync::atomic::{AtomicU64, Ordering};
        let lanes = lanes.max(1);
        let sources: Vec<String> = frames.iter().map(|(_, s)| s.clone()).collect();
        let mut by_lane: Vec<Vec<gridata_lake::BatchStream>> =
            (0..lanes).map(|_| Vec::new()).collect();
        let mut counters = Vec::with_capacity(frames.len());
        for (df, source) in frames {
            let parts = partition_streams(df, lanes)
                .await
                .map_err(|e| input_err(&source, e))?;
            let counter = Arc::new(AtomicU64::new(0));
            counters.push(counter.clone());
            for (lane, stream) in parts.into_iter().enumerate() {
                let counter = counter.clone();
                let source = source.clone();
                let name = table.name.to_string();
                let target = target.clone();
                by_lane[lane].push(Box::pin(stream.map(move |b| {
                    let tag = |reason: String| gridata_lake::Error::DataMismatch {
                        table: name.clone(),
                        reason: format!("{source}: {reason}"),
                    };
                    let b = b.map_err(|e| {
                        tag(e
                            .strip_backtrace()
                            .trim_start_matches("Arrow error: ")
                            .to_string())
                    })?;
                    counter.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
                    gridata_lake::conform_batch(&name, &b, &target).map_err(|e| match e {
                        gridata_lake::Error::DataMismatch { reason, .. } => tag(reason),
                        other => other,
                    })
                })));
            }
        }
        let streams: Vec<gridata_lake::BatchStream> = by_lane
            .into_iter()
            .filter(|l| !l.is_empty())
            .map(|l| Box::pin(futures::stream::iter(l).flatten()) as gridata_lake::BatchStream)
            .collect();
        let files = self
            .lake()
            .write_files(table, streams)
            .await
            .map_err(|e| match e {
                gridata_lake::Error::DataMismatch { ref reason, .. } => sources
                    .iter()
                    .find_map(|s| {
                        reason
                            .strip_prefix(s.as_str())
                            .and_then(|r| r.strip_prefix(": "))
                            .map(|r| input_err(s, r))
                    })
                    .unwrap_or(Error::Lake(e)),
                other => Error::Lake(other),
            })?;
        Ok((
            counters.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            files,
        ))
    }

    /// Delete the rows matching a SQL predicate, copy-on-write: files with
    /// matching rows are rewritten without them in one commit. Returns the
    /// number of rows deleted.
    pub async fn delete_where(
        &self,
        name: &TableName,
        predicate: &str,
        properties: HashMap<String, String>,
    ) -> Result<u64> {
        let table = self.lake().load_table(name).await?;
        let target = table.arrow_schema(None)?;
        let whole = self.context().read_table(Arc::new(LakeTableProvider::new(
            self.lake().clone(),
            table.clone(),
            None,
        )?))?;
        let expr = whole
            .parse_sql_expr(predicate)
            .map_err(|e| Error::Sql(format!("predicate '{predicate}': {}", e.strip_backtrace())))?;
        let mut removed = HashSet::new();
        let mut added = Vec::new();
        let mut deleted = 0u64;
        for f in self.lake().live_files(&table, None).await? {
            let path = f.file.file_path().to_string();
            let provider = LakeTableProvider::new(self.lake().clone(), table.clone(), None)?
                .with_files(vec![path.clone()]);
            let df = self.context().read_table(Arc::new(provider))?;
            let hits = df.clone().filter(expr.clone())?.count().await? as u64;
            if hits == 0 {
                continue;
            }
            deleted += hits;
            removed.insert(path.clone());
            let kept = df.filter(expr.clone().is_not_true())?;
            let (_, files) = self.write_frame(&table, &target, kept, &path).await?;
            added.extend(files);
        }
        if removed.is_empty() {
            return Ok(0);
        }
        let mut props = properties;
        props.insert("gridata.delete-predicate".into(), predicate.to_string());
        let operation = if added.is_empty() {
            Operation::Delete
        } else {
            Operation::Overwrite
        };
        self.lake()
            .commit(
                name,
                CommitRequest {
                    operation,
                    stage: false,
                    added,
                    removal: Removal::Files(removed),
                    properties: props,
                },
            )
            .await?;
        Ok(deleted)
    }

    /// Rewrite small files into files of the target size, per partition,
    /// without changing any row. Returns (files removed, files added).
    pub async fn compact(
        &self,
        name: &TableName,
        target_size: Option<u64>,
    ) -> Result<(usize, usize)> {
        let table = self.lake().load_table(name).await?;
        let target_size = target_size.unwrap_or_else(|| {
            gridata_lake::WriteOptions::for_table(&table).target_file_size as u64
        });
        let groups = self.lake().plan_compaction(&table, target_size).await?;
        if groups.is_empty() {
            return Ok((0, 0));
        }
        let target = table.arrow_schema(None)?;
        let mut removed = HashSet::new();
        let mut added = Vec::new();
        let mut rows_in = 0u64;
        let mut rows_out = 0u64;
        for g in groups {
            let paths: Vec<String> = g
                .files
                .iter()
                .map(|f| f.file.file_path().to_string())
                .collect();
            rows_in += g.files.iter().map(|f| f.file.record_count()).sum::<u64>();
            let provider = LakeTableProvider::new(self.lake().clone(), table.clone(), None)?
                .with_files(paths.clone());
            let df = self.context().read_table(Arc::new(provider))?;
            let (n, files) = self
                .write_frame(&table, &target, df, &table.name.to_string())
                .await?;
            rows_out += n;
            added.extend(files);
            removed.extend(paths);
        }
        if rows_in != rows_out {
            return Err(Error::Sql(format!(
                "compaction of '{name}' read {rows_out} rows but the files hold {rows_in}; nothing was committed"
            )));
        }
        let (r, a) = (removed.len(), added.len());
        self.lake()
            .commit(
                name,
                CommitRequest {
                    operation: Operation::Replace,
                    stage: false,
                    added,
                    removal: Removal::Files(removed),
                    properties: HashMap::new(),
                },
            )
            .await?;
        Ok((r, a))
    }
}

/// Split a CSV header line (quotes allowed).
fn csv_header(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parsing() {
        assert_eq!(csv_header("a,\"b,c\", d"), vec!["a", "b,c", "d"]);
        assert_eq!(
            ImportFormat::from_path("x/y.JSONL"),
            Some(ImportFormat::Json)
        );
        assert_eq!(ImportFormat::from_path("x/y.txt"), None);
    }
}
