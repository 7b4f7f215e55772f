//! Landing raw files: a CSV, JSON-lines or Parquet file becomes staged
//! Parquet whose columns are the file's columns as text, plus
//! `_source_line`; the file's label is schema metadata, and
//! [`gridata_engine::skip::read_staged`] turns it back into `_source_file`.
//! Lines that do not parse (wrong field count, broken JSON, invalid UTF-8)
//! are quarantined with their text and reason instead of failing the file.
//!
//! Invariants:
//! - rows read = rows staged + lines quarantined, for every file.
//! - Memory is bounded: files stream in batches of [`BATCH`] rows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use gridata_engine::skip;
use gridata_storage::Storage;
use gridata_storage::object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::FileFormat;

/// Rows per staged batch.
pub const BATCH: usize = 32_768;

/// The type of a raw value, for parse checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// Any text.
    String,
    /// A whole number.
    Int,
    /// A decimal number.
    Decimal,
    /// A floating-point number.
    Double,
    /// `true`/`false`.
    Bool,
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY-MM-DD HH:MM:SS[.fff]` or RFC 3339.
    Timestamp,
}

impl ValueType {
    /// The SQL type used to parse values of this type.
    pub fn sql(self) -> &'static str {
        match self {
            Self::String => "VARCHAR",
            Self::Int => "BIGINT",
            Self::Decimal => "DECIMAL(38,10)",
            Self::Double => "DOUBLE",
            Self::Bool => "BOOLEAN",
            Self::Date => "DATE",
            Self::Timestamp => "TIMESTAMP",
        }
    }

    /// Whether a typed (Parquet) column holds this type.
    pub fn accepts_arrow(self, dt: &DataType) -> bool {
        use DataType as D;
        match self {
            Self::String => matches!(dt, D::Utf8 | D::LargeUtf8 | D::Utf8View),
            Self::Int => dt.is_integer(),
            Self::Decimal | Self::Double => dt.is_numeric(),
            Self::Bool => matches!(dt, D::Boolean),
            Self::Date => matches!(dt, D::Date32 | D::Date64),
            Self::Timestamp => matches!(dt, D::Timestamp(..)),
        }
    }
}

/// Whether a text value parses as `ty`.
pub fn text_parses(v: &str, ty: ValueType) -> bool {
    let v = v.trim();
    match ty {
        ValueType::String => true,
        ValueType::Int => v.parse::<i64>().is_ok(),
        ValueType::Decimal | ValueType::Double => v.parse::<f64>().is_ok(),
        ValueType::Bool => matches!(v.to_ascii_lowercase().as_str(), "true" | "false"),
        ValueType::Date => chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok(),
        ValueType::Timestamp => {
            chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f").is_ok()
                || chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
                || chrono::DateTime::parse_from_rfc3339(v).is_ok()
        }
    }
}

/// The start of a file: its columns and some rows.
#[derive(Debug, Clone)]
pub struct Peek {
    /// Column names.
    pub columns: Vec<String>,
    /// Column types, for typed formats.
    pub arrow_types: Option<Vec<DataType>>,
    /// Sampled rows as text.
    pub sample: Vec<Vec<Option<String>>>,
}

/// Read the columns and a sample of rows from the first `bytes` of a file.
pub async fn peek(
    storage: &Storage,
    uri: &str,
    format: FileFormat,
    bytes: u64,
) -> Result<Peek, String> {
    match format {
        FileFormat::Parquet => {
            let local = fetch(storage, uri).await.map_err(|e| e.to_string())?;
            let f = std::fs::File::open(local.path()).map_err(|e| e.to_string())?;
            let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .map_err(|e| e.to_string())?;
            let schema = b.schema().clone();
            Ok(Peek {
                columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
                arrow_types: Some(
                    schema
                        .fields()
                        .iter()
                        .map(|f| f.data_type().clone())
                        .collect(),
                ),
                sample: vec![],
            })
        }
        FileFormat::Csv | FileFormat::Json => {
            let head = storage
                .read_prefix(uri, bytes)
                .await
                .map_err(|e| e.to_string())?;
            let complete = match head.iter().rposition(|b| *b == b'\n') {
                Some(i) => &head[..=i],
                None => &head[..],
            };
            let mut columns = Vec::new();
            let mut sample = Vec::new();
            if format == FileFormat::Csv {
                let mut r = csv::ReaderBuilder::new()
                    .flexible(true)
                    .from_reader(complete);
                columns = r
                    .headers()
                    .map_err(|e| e.to_string())?
                    .iter()
                    .map(str::to_string)
                    .collect();
                if columns.is_empty() || columns.iter().all(|c| c.is_empty()) {
                    return Err("no header row".into());
                }
                for rec in r.records().take(1000).flatten() {
                    sample.push(rec.iter().map(|v| Some(v.to_string())).collect());
                }
            } else {
                let mut rows = Vec::new();
                for line in complete
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .take(1000)
                {
                    if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(line) {
                        for k in o.keys() {
                            if !columns.contains(k) {
                                columns.push(k.clone());
                            }
                        }
                        rows.push(o);
                    }
                }
                if rows.is_empty() {
                    return Err("no JSON object in the first lines".into());
                }
                for o in rows {
                    sample.push(
                        columns
                            .iter()
                            .map(|c| o.get(c).and_then(json_text))
                            .collect(),
                    );
                }
            }
            Ok(Peek {
                columns,
                arrow_types: None,
                sample,
            })
        }
    }
}

fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A local copy of a file: the file itself on local disk, else a
/// temporary download.
pub enum Local {
    /// The file itself.
    Direct(PathBuf),
    /// A downloaded copy, deleted on drop.
    Temp(tempfile::TempPath),
}

impl Local {
    /// Its path.
    pub fn path(&self) -> &Path {
        match self {
            Local::Direct(p) => p,
            Local::Temp(t) => t,
        }
    }
}

/// A local path for `uri`, downloading it when it is remote.
pub async fn fetch(storage: &Storage, uri: &str) -> gridata_storage::Result<Local> {
    if let Some(p) = uri.strip_prefix("file://") {
        return Ok(Local::Direct(PathBuf::from(percent_decode(p))));
    }
    use futures::StreamExt;
    use std::io::Write;
    let (store, path) = storage.resolve(uri)?;
    let io = |e: std::io::Error| gridata_storage::Error::Io {
        uri: uri.to_string(),
        reason: e.to_string(),
    };
    let tmp = tempfile::NamedTempFile::new().map_err(io)?;
    let mut f = std::io::BufWriter::new(tmp.reopen().map_err(io)?);
    let mut stream = store
        .get(&path)
        .await
        .map_err(|e| gridata_storage::Error::Io {
            uri: uri.to_string(),
            reason: e.to_string(),
        })?
        .into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| gridata_storage::Error::Io {
            uri: uri.to_string(),
            reason: e.to_string(),
        })?;
        f.write_all(&chunk).map_err(io)?;
    }
    f.flush().map_err(io)?;
    Ok(Local::Temp(tmp.into_temp_path()))
}

fn percent_decode(p: &str) -> String {
    let bytes = p.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&p[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A Parquet file being written locally, uploaded by [`Closed::upload`]
/// when its target is remote. Encoding and compression run on a thread of
/// their own, fed through a channel of [`QUEUE`] batches, so the producer
/// keeps its core.
pub struct ParquetOut {
    uri: String,
    local: Local,
    /// The file being written, until it is renamed to `local`.
    partial: Option<tempfile::TempPath>,
    tx: Option<std::sync::mpsc::SyncSender<RecordBatch>>,
    encoder: Option<std::thread::JoinHandle<Result<(), String>>>,
    /// Rows written.
    pub rows: u64,
}

/// Batches waiting for the encoder thread.
const QUEUE: usize = 2;

impl ParquetOut {
    /// Start a staged file at `uri` with `schema`: LZ4, which a run's
    /// tasks read several times and which is deleted after the run.
    /// Dictionaries stay (decision 0010's 64 KiB): without them the
    /// pipeline benchmark ran 7 % slower.
    pub fn create(uri: &str, schema: SchemaRef) -> Result<Self, String> {
        let props = WriterProperties::builder()
            .set_compression(Compression::LZ4_RAW)
            .set_dictionary_page_size_limit(gridata_lake::STAGED_DICT_SIZE)
            .build();
        Self::create_with(uri, schema, props)
    }

    /// Start a file kept after the run (a quarantine file): ZSTD.
    pub fn create_kept(uri: &str, schema: SchemaRef) -> Result<Self, String> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level 1")))
            .set_dictionary_page_size_limit(gridata_lake::STAGED_DICT_SIZE)
            .build();
        Self::create_with(uri, schema, props)
    }

    fn create_with(uri: &str, schema: SchemaRef, props: WriterProperties) -> Result<Self, String> {
        // A local target is written to a temporary file of its own beside
        // it and renamed when closed: a reader never sees half a file, and
        // two writers of one target (a timed-out attempt still running, and
        // its retry) never share a file. Dropped unclosed, it is deleted.
        let (local, file, partial) = match uri.strip_prefix("file://") {
            Some(p) => {
                let p = PathBuf::from(percent_decode(p));
                let dir = p.parent().unwrap_or(Path::new("."));
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let (file, partial) = tempfile::Builder::new()
                    .prefix(".")
                    .suffix(".partial")
                    .tempfile_in(dir)
                    .map_err(|e| format!("{uri}: {e}"))?
                    .into_parts();
                (Local::Direct(p), file, Some(partial))
            }
            None => {
                let (file, path) = tempfile::NamedTempFile::new()
                    .map_err(|e| format!("{uri}: {e}"))?
                    .into_parts();
                (Local::Temp(path), file, None)
            }
        };
        let mut writer =
            ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| e.to_string())?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(QUEUE);
        let name = uri.to_string();
        let encoder = std::thread::Builder::new()
            .name("gridata-parquet".into())
            .spawn(move || {
                for batch in rx {
                    writer.write(&batch).map_err(|e| format!("{name}: {e}"))?;
                }
                writer.close().map_err(|e| format!("{name}: {e}"))?;
                Ok(())
            })
            .map_err(|e| format!("{uri}: {e}"))?;
        Ok(Self {
            uri: uri.to_string(),
            local,
            partial,
            tx: Some(tx),
            encoder: Some(encoder),
            rows: 0,
        })
    }

    /// Append a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.rows += batch.num_rows() as u64;
        let sent = self.tx.as_ref().map(|tx| tx.send(batch.clone()).is_ok());
        if sent == Some(true) {
            return Ok(());
        }
        // The encoder stopped: its error says why.
        self.tx = None;
        Err(self
            .join()
            .err()
            .unwrap_or_else(|| format!("{}: the Parquet encoder stopped", self.uri)))
    }

    fn join(&mut self) -> Result<(), String> {
        match self.encoder.take() {
            Some(h) => h
                .join()
                .map_err(|_| format!("{}: the Parquet encoder panicked", self.uri))?,
            None => Ok(()),
        }
    }

    /// Finish the file (sync part); then [`Closed::upload`].
    pub fn close(mut self) -> Result<Closed, String> {
        self.tx = None;
        self.join()?;
        if let Some(partial) = self.partial.take() {
            partial
                .persist(self.local.path())
                .map_err(|e| format!("{}: {e}", self.uri))?;
        }
        Ok(Closed {
            uri: std::mem::take(&mut self.uri),
            local: std::mem::replace(&mut self.local, Local::Direct(PathBuf::new())),
            rows: self.rows,
        })
    }
}

/// A closed local Parquet file.
pub struct Closed {
    /// Target URI.
    pub uri: String,
    local: Local,
    /// Rows.
    pub rows: u64,
}

impl Closed {
    /// Upload to the target when remote.
    pub async fn upload(self, storage: &Storage) -> gridata_storage::Result<(String, u64)> {
        if let Local::Temp(t) = &self.local {
            storage.upload_file(&self.uri, t).await?;
        }
        Ok((self.uri, self.rows))
    }
}

/// The schema of quarantined lines.
pub fn malformed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("_source_file", DataType::Utf8, false),
        Field::new("_source_line", DataType::Int64, false),
        Field::new("_raw_line", DataType::Utf8, true),
        Field::new("_reject_rule", DataType::Utf8, false),
        Field::new("_reject_reason", DataType::Utf8, false),
        Field::new("_run_id", DataType::Utf8, false),
        Field::new("_task_id", DataType::Utf8, false),
    ]))
}

/// What landing one file did.
#[derive(Debug, Clone)]
pub struct Landed {
    /// The raw file.
    pub source: String,
    /// The staged Parquet file.
    pub staged: String,
    /// Rows read (malformed lines included).
    pub rows_read: u64,
    /// Lines quarantined.
    pub rows_rejected: u64,
    /// The quarantine file, when any line was.
    pub rejected_file: Option<String>,
}

struct Batcher {
    cols: Vec<StringBuilder>,
    /// Bytes each column held in the last batch: the next batch's builders
    /// start that large, so they are not regrown value by value.
    sizes: Vec<usize>,
    lines: Int64Builder,
    n: usize,
    schema: SchemaRef,
}

impl Batcher {
    fn new(source: &str, columns: Vec<String>) -> Result<Self, String> {
        if let Some(c) = columns
            .iter()
            .find(|c| *c == skip::SOURCE_FILE || *c == skip::SOURCE_LINE)
        {
            return Err(format!(
                "{source}: column '{c}' is reserved for the row's origin; rename it"
            ));
        }
        let mut fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(c, DataType::Utf8, true))
            .collect();
        fields.push(Field::new(skip::SOURCE_LINE, DataType::Int64, false));
        let label = HashMap::from([(skip::SOURCE_FILE_KEY.to_string(), source.to_string())]);
        Ok(Self {
            cols: columns
                .iter()
                .map(|_| StringBuilder::with_capacity(BATCH, BATCH * 8))
                .collect(),
            sizes: vec![BATCH * 8; columns.len()],
            lines: Int64Builder::with_capacity(BATCH),
            n: 0,
            schema: Arc::new(Schema::new_with_metadata(fields, label)),
        })
    }

    fn push<'a>(&mut self, values: impl Iterator<Item = Option<&'a str>>, line: u64) {
        for (b, v) in self.cols.iter_mut().zip(values) {
            match v {
                Some(v) if !v.is_empty() => b.append_value(v),
                _ => b.append_null(),
            }
        }
        self.lines.append_value(line as i64);
        self.n += 1;
    }

    fn take(&mut self) -> Option<RecordBatch> {
        if self.n == 0 {
            return None;
        }
        self.n = 0;
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.cols.len() + 1);
        for (b, size) in self.cols.iter_mut().zip(self.sizes.iter_mut()) {
            let a = b.finish();
            *size = a.value_data().len() + a.value_data().len() / 8;
            *b = StringBuilder::with_capacity(BATCH, *size);
            arrays.push(Arc::new(a));
        }
        arrays.push(Arc::new(self.lines.finish()));
        Some(RecordBatch::try_new(self.schema.clone(), arrays).expect("columns match"))
    }
}

struct Rejects {
    out: Option<ParquetOut>,
    uri: String,
    source: String,
    run_id: String,
    task_id: String,
    rows: Vec<(u64, String, String)>,
    count: u64,
}

impl Rejects {
    fn add(&mut self, line: u64, raw: String, reason: String) -> Result<(), String> {
        self.count += 1;
        self.rows.push((line, raw, reason));
        if self.rows.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.rows.is_empty() {
            return Ok(());
        }
        if self.out.is_none() {
            self.out = Some(ParquetOut::create_kept(&self.uri, malformed_schema())?);
        }
        let rows = std::mem::take(&mut self.rows);
        let n = rows.len();
        let rep = |s: &str| -> ArrayRef { Arc::new(arrow::array::StringArray::from(vec![s; n])) };
        let batch = RecordBatch::try_new(
            malformed_schema(),
            vec![
                rep(&self.source),
                Arc::new(arrow::array::Int64Array::from_iter_values(
                    rows.iter().map(|r| r.0 as i64),
                )),
                Arc::new(arrow::array::StringArray::from_iter_values(
                    rows.iter().map(|r| r.1.as_str()),
                )),
                rep("malformed_line"),
                Arc::new(arrow::array::StringArray::from_iter_values(
                    rows.iter().map(|r| r.2.as_str()),
                )),
                rep(&self.run_id),
                rep(&self.task_id),
            ],
        )
        .map_err(|e| e.to_string())?;
        self.out.as_mut().expect("created").write(&batch)
    }
}

/// Where landing writes and who it reports as.
#[derive(Debug, Clone)]
pub struct LandTarget {
    /// The staged Parquet file.
    pub staged: String,
    /// The quarantine file for malformed lines.
    pub rejected: String,
    /// Run id stamped on quarantined lines.
    pub run_id: String,
    /// Task id stamped on quarantined lines.
    pub task_id: String,
}

/// Land one raw file read from `physical`; rows are labelled with
/// `source` (its raw-zone URI, also when read back from the archive, so
/// reruns label rows the same). Errors name the file.
pub async fn land(
    storage: &Storage,
    physical: &str,
    source: &str,
    format: FileFormat,
    target: &LandTarget,
) -> Result<Landed, String> {
    let local = fetch(storage, physical)
        .await
        .map_err(|e| format!("{physical}: {e}"))?;
    let source_s = source.to_string();
    let target_c = target.clone();
    let (staged, rejects) =
        tokio::task::spawn_blocking(move || land_local(local.path(), &source_s, format, &target_c))
            .await
            .map_err(|e| format!("{source}: {e}"))??;
    let rows_rejected = rejects.as_ref().map(|r| r.rows).unwrap_or(0);
    let rows_staged = staged.rows;
    let (staged_uri, _) = staged
        .upload(storage)
        .await
        .map_err(|e| format!("{source}: {e}"))?;
    let rejected_file = match rejects {
        Some(r) => Some(
            r.upload(storage)
                .await
                .map_err(|e| format!("{source}: {e}"))?
                .0,
        ),
        None => None,
    };
    Ok(Landed {
        source: source.to_string(),
        staged: staged_uri,
        rows_read: rows_staged + rows_rejected,
        rows_rejected,
        rejected_file,
    })
}

fn land_local(
    path: &Path,
    source: &str,
    format: FileFormat,
    target: &LandTarget,
) -> Result<(Closed, Option<Closed>), String> {
    let err = |e: &dyn std::fmt::Display| format!("{source}: {e}");
    let mut rejects = Rejects {
        out: None,
        uri: target.rejected.clone(),
        source: source.to_string(),
        run_id: target.run_id.clone(),
        task_id: target.task_id.clone(),
        rows: Vec::new(),
        count: 0,
    };
    let staged = match format {
        FileFormat::Csv => {
            let file = std::fs::File::open(path).map_err(|e| err(&e))?;
            let mut r = csv::ReaderBuilder::new()
                .flexible(true)
                .buffer_capacity(1 << 20)
                .from_reader(std::io::BufReader::with_capacity(1 << 20, file));
            let header: Vec<String> = r
                .byte_headers()
                .map_err(|e| err(&e))?
                .iter()
                .map(|h| String::from_utf8_lossy(h).trim().to_string())
                .collect();
            let width = header.len();
            let mut b = Batcher::new(source, header)?;
            let mut out = ParquetOut::create(&target.staged, b.schema.clone())?;
            let mut rec = csv::ByteRecord::new();
            loop {
                match r.read_byte_record(&mut rec) {
                    Ok(false) => break,
                    Ok(true) => {
                        let line = rec.position().map(|p| p.line()).unwrap_or(0);
                        if rec.len() != width {
                            let raw = rec
                                .iter()
                                .map(|f| String::from_utf8_lossy(f).into_owned())
                                .collect::<Vec<_>>()
                                .join(",");
                            rejects.add(
                                line,
                                raw,
                                format!("expected {width} fields, found {}", rec.len()),
                            )?;
                            continue;
                        }
                        // The record is checked once and each field is a
                        // slice of it; a field must also not start or end
                        // inside a character (a delimiter splitting one).
                        let text = std::str::from_utf8(rec.as_slice()).ok().filter(|t| {
                            (0..rec.len()).all(|i| {
                                rec.range(i).is_some_and(|r| {
                                    t.is_char_boundary(r.start) && t.is_char_boundary(r.end)
                                })
                            })
                        });
                        match text {
                            Some(text) => {
                                b.push((0..rec.len()).map(|i| rec.range(i).map(|r| &text[r])), line)
                            }
                            None => rejects.add(
                                line,
                                String::from_utf8_lossy(rec.as_slice()).into_owned(),
                                "not valid UTF-8".into(),
                            )?,
                        }
                        if b.n >= BATCH {
                            out.write(&b.take().expect("rows"))?;
                        }
                    }
                    Err(e) => {
                        let line = e.position().map(|p| p.line()).unwrap_or(0);
                        rejects.add(line, String::new(), e.to_string())?;
                    }
                }
            }
            if let Some(batch) = b.take() {
                out.write(&batch)?;
            }
            out.close()?
        }
        FileFormat::Json => {
            let mut text = Vec::new();
            // Columns: keys of the objects in the first 1000 lines, in order.
            let mut columns: Vec<String> = Vec::new();
            {
                use std::io::BufRead;
                let f = std::fs::File::open(path).map_err(|e| err(&e))?;
                for line in std::io::BufReader::new(f).split(b'\n').take(1000) {
                    let line = line.map_err(|e| err(&e))?;
                    if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(&line) {
                        for k in o.keys() {
                            if !columns.contains(k) {
                                columns.push(k.clone());
                            }
                        }
                    }
                }
            }
            let mut b = Batcher::new(source, columns.clone())?;
            let mut out = ParquetOut::create(&target.staged, b.schema.clone())?;
            let f = std::fs::File::open(path).map_err(|e| err(&e))?;
            let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
            let mut line_no = 0u64;
            loop {
                text.clear();
                let n = {
                    use std::io::BufRead;
                    reader.read_until(b'\n', &mut text).map_err(|e| err(&e))?
                };
                if n == 0 {
                    break;
                }
                line_no += 1;
                let trimmed = text.trim_ascii();
                if trimmed.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(trimmed)
                {
                    Ok(o) => {
                        let vals: Vec<Option<String>> = columns
                            .iter()
                            .map(|c| o.get(c).and_then(json_text))
                            .collect();
                        b.push(vals.iter().map(|v| v.as_deref()), line_no);
                        if b.n >= BATCH {
                            out.write(&b.take().expect("rows"))?;
                        }
                    }
                    Err(e) => rejects.add(
                        line_no,
                        String::from_utf8_lossy(trimmed).into_owned(),
                        format!("not a JSON object: {e}"),
                    )?,
                }
            }
            if let Some(batch) = b.take() {
                out.write(&batch)?;
            }
            out.close()?
        }
        FileFormat::Parquet => {
            let f = std::fs::File::open(path).map_err(|e| err(&e))?;
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .map_err(|e| err(&e))?
                .with_batch_size(BATCH)
                .build()
                .map_err(|e| err(&e))?;
            let schema = arrow::record_batch::RecordBatchReader::schema(&reader);
            let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            let b = Batcher::new(source, columns)?;
            let mut out = ParquetOut::create(&target.staged, b.schema.clone())?;
            let mut line = 0i64;
            for batch in reader {
                let batch = batch.map_err(|e| err(&e))?;
                let n = batch.num_rows();
                let mut arrays = Vec::with_capacity(batch.num_columns() + 2);
                for c in batch.columns() {
                    arrays.push(arrow::compute::cast(c, &DataType::Utf8).map_err(|e| err(&e))?);
                }
                arrays.push(Arc::new(arrow::array::Int64Array::from_iter_values(
                    (line + 1)..=(line + n as i64),
                )));
                line += n as i64;
                let staged = RecordBatch::try_new(b.schema.clone(), arrays).map_err(|e| err(&e))?;
                out.write(&staged)?;
            }
            out.close()?
        }
    };
    rejects.flush()?;
    let rejected = match rejects.out.take() {
        Some(o) => Some(o.close()?),
        None => None,
    };
    debug_assert_eq!(
        rejected.as_ref().map(|r| r.rows).unwrap_or(0),
        rejects.count
    );
    Ok((staged, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delimiter splitting a character leaves every field's bytes
    /// concatenated as valid UTF-8; the line is still quarantined.
    #[test]
    fn a_character_split_by_a_delimiter_is_not_valid_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("in.csv");
        let mut bytes = b"a,b\nx,\xC3\xA9\n".to_vec();
        bytes.extend_from_slice(b"y\xC3,\xA9z\n");
        std::fs::write(&raw, bytes).unwrap();
        let uri = |n: &str| format!("file://{}", dir.path().join(n).display());
        let target = LandTarget {
            staged: uri("staged.parquet"),
            rejected: uri("bad.parquet"),
            run_id: "r".into(),
            task_id: "t".into(),
        };
        let (staged, rejected) = land_local(&raw, "in.csv", FileFormat::Csv, &target).unwrap();
        assert_eq!(staged.rows, 1);
        assert_eq!(rejected.map(|r| r.rows), Some(1));
        let partials: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".partial"))
            .collect();
        assert!(partials.is_empty(), "{partials:?}");
        assert!(dir.path().join("staged.parquet").exists());

        std::fs::write(&raw, "a,_source_line\n1,2\n").unwrap();
        let e = land_local(&raw, "in.csv", FileFormat::Csv, &target)
            .err()
            .unwrap();
        assert!(
            e.contains("in.csv") && e.contains("'_source_line' is reserved"),
            "{e}"
        );
    }
}
