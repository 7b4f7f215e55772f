//! Rows to a local file in one of the three formats.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::{BATCH_ROWS, Error, Result};

/// File format of generated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header row.
    Csv,
    /// JSON lines.
    Json,
    /// Parquet (ZSTD).
    Parquet,
}

impl Format {
    /// The file extension.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

/// A column's type in the raw files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// Text.
    Str,
    /// Integer.
    Int,
    /// A decimal with two digits, held in hundredths.
    Money,
    /// Boolean.
    Bool,
}

/// One value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Missing.
    Null,
    /// Text.
    S(String),
    /// Integer.
    I(i64),
    /// Hundredths: `M(1999)` is 19.99.
    M(i64),
    /// Boolean.
    B(bool),
}

fn money(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", v.abs() / 100, v.abs() % 100)
}

fn csv_field(out: &mut Vec<u8>, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

enum Builder {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
}

/// A finished file.
pub(crate) struct Done {
    file: NamedTempFile,
    pub rows: u64,
    pub sha256: String,
    pub defects: BTreeMap<&'static str, u64>,
}

impl Done {
    pub fn path(&self) -> &std::path::Path {
        self.file.path()
    }
}

/// Streams rows to a temporary file.
pub(crate) struct FileSink {
    format: Format,
    columns: &'static [(&'static str, ColType)],
    file: NamedTempFile,
    text: Option<BufWriter<std::fs::File>>,
    parquet: Option<(ArrowWriter<std::fs::File>, Vec<Builder>, SchemaRef, usize)>,
    line: Vec<u8>,
    rows: u64,
    defects: BTreeMap<&'static str, u64>,
}

impl FileSink {
    pub fn new(format: Format, columns: &'static [(&'static str, ColType)]) -> Result<Self> {
        let file = NamedTempFile::new().map_err(|e| Error::Io {
            path: "temporary file".into(),
            source: e,
        })?;
        let io = |e| Error::Io {
            path: file.path().display().to_string(),
            source: e,
        };
        let handle = file.reopen().map_err(io)?;
        let mut sink = Self {
            format,
            columns,
            text: None,
            parquet: None,
            line: Vec::with_capacity(256),
            rows: 0,
            defects: BTreeMap::new(),
            file,
        };
        match format {
            Format::Csv => {
                let mut w = BufWriter::with_capacity(1 << 20, handle);
                let header: Vec<&str> = columns.iter().map(|c| c.0).collect();
                writeln!(w, "{}", header.join(",")).map_err(|e| sink.io(e))?;
                sink.text = Some(w);
            }
            Format::Json => sink.text = Some(BufWriter::with_capacity(1 << 20, handle)),
            Format::Parquet => {
                let schema = Arc::new(Schema::new(
                    columns
                        .iter()
                        .map(|(n, t)| {
                            let dt = match t {
                                ColType::Str => DataType::Utf8,
                                ColType::Int => DataType::Int64,
                                ColType::Money => DataType::Float64,
                                ColType::Bool => DataType::Boolean,
                            };
                            Field::new(*n, dt, true)
                        })
                        .collect::<Vec<_>>(),
                ));
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .set_max_row_group_row_count(Some(BATCH_ROWS * 4))
                    .build();
                let w = ArrowWriter::try_new(handle, schema.clone(), Some(props))
                    .map_err(|e| sink.encode(e))?;
                let builders = sink.builders();
                sink.parquet = Some((w, builders, schema, 0));
            }
        }
        Ok(sink)
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::Io {
            path: self.file.path().display().to_string(),
            source: e,
        }
    }

    fn encode(&self, e: impl std::fmt::Display) -> Error {
        Error::Encode {
            path: self.file.path().display().to_string(),
            reason: e.to_string(),
        }
    }

    fn builders(&self) -> Vec<Builder> {
        self.columns
            .iter()
            .map(|(_, t)| match t {
                ColType::Str => Builder::Str(StringBuilder::new()),
                ColType::Int => Builder::Int(Int64Builder::new()),
                ColType::Money => Builder::Float(Float64Builder::new()),
                ColType::Bool => Builder::Bool(BooleanBuilder::new()),
            })
            .collect()
    }

    /// Count a defect of `kind`.
    pub fn defect(&mut self, kind: &'static str) {
        *self.defects.entry(kind).or_default() += 1;
    }

    /// Append one row.
    pub fn row(&mut self, row: &[Cell]) -> Result<()> {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows += 1;
        match self.format {
            Format::Csv => {
                self.line.clear();
                for (i, c) in row.iter().enumerate() {
                    if i > 0 {
                        self.line.push(b',');
                    }
                    match c {
                        Cell::Null => {}
                        Cell::S(s) => csv_field(&mut self.line, s),
                        Cell::I(v) => self.line.extend_from_slice(v.to_string().as_bytes()),
                        Cell::M(v) => self.line.extend_from_slice(money(*v).as_bytes()),
                        Cell::B(b) => {
                            self.line
                                .extend_from_slice(if *b { b"true" } else { b"false" })
                        }
                    }
                }
                self.line.push(b'\n');
                self.write_line()
            }
            Format::Json => {
                let mut obj = serde_json::Map::with_capacity(row.len());
                for ((name, _), c) in self.columns.iter().zip(row) {
                    let v = match c {
                        Cell::Null => serde_json::Value::Null,
                        Cell::S(s) => s.as_str().into(),
                        Cell::I(v) => (*v).into(),
                        Cell::M(v) => serde_json::Value::Number(
                            serde_json::Number::from_f64(*v as f64 / 100.0).expect("finite"),
                        ),
                        Cell::B(b) => (*b).into(),
                    };
                    obj.insert((*name).to_string(), v);
                }
                self.line.clear();
                serde_json::to_writer(&mut self.line, &obj).map_err(|e| self.encode(e))?;
                self.line.push(b'\n');
                self.write_line()
            }
            Format::Parquet => {
                let (_, builders, _, n) = self.parquet.as_mut().expect("parquet sink");
                for (b, c) in builders.iter_mut().zip(row) {
                    match (b, c) {
                        (Builder::Str(b), Cell::S(s)) => b.append_value(s),
                        (Builder::Int(b), Cell::I(v)) => b.append_value(*v),
                        (Builder::Float(b), Cell::M(v)) => b.append_value(*v as f64 / 100.0),
                        (Builder::Bool(b), Cell::B(v)) => b.append_value(*v),
                        (Builder::Str(b), _) => b.append_null(),
                        (Builder::Int(b), _) => b.append_null(),
                        (Builder::Float(b), _) => b.append_null(),
                        (Builder::Bool(b), _) => b.append_null(),
                    }
                }
                *n += 1;
                if *n >= BATCH_ROWS {
                    self.flush_batch()?;
                }
                Ok(())
            }
        }
    }

    /// Append a line that does not parse (text formats only).
    pub fn malformed(&mut self, text: &str) -> Result<()> {
        self.rows += 1;
        self.line.clear();
        self.line.extend_from_slice(text.as_bytes());
        if self.format == Format::Json {
            // A JSON object cut short.
            self.line.splice(0..0, b"{\"event\": \"".iter().copied());
        }
        self.line.push(b'\n');
        self.write_line()
    }

    fn write_line(&mut self) -> Result<()> {
        let w = self.text.as_mut().expect("text sink");
        w.write_all(&self.line).map_err(|e| Error::Io {
            path: self.file.path().display().to_string(),
            source: e,
        })
    }

    fn flush_batch(&mut self) -> Result<()> {
        let fresh = self.builders();
        let (w, builders, schema, n) = self.parquet.as_mut().expect("parquet sink");
        if *n == 0 {
            return Ok(());
        }
        let cols: Vec<ArrayRef> = std::mem::replace(builders, fresh)
            .into_iter()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Str(mut b) => Arc::new(b.finish()),
                    Builder::Int(mut b) => Arc::new(b.finish()),
                    Builder::Float(mut b) => Arc::new(b.finish()),
                    Builder::Bool(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        *n = 0;
        let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::Encode {
            path: "batch".into(),
            reason: e.to_string(),
        })?;
        w.write(&batch).map_err(|e| Error::Encode {
            path: "batch".into(),
            reason: e.to_string(),
        })
    }

    /// Close the file and hash it.
    pub fn finish(mut self) -> Result<Done> {
        if let Some(mut w) = self.text.take() {
            w.flush().map_err(|e| self.io(e))?;
        }
        if self.parquet.is_some() {
            self.flush_batch()?;
            let (w, ..) = self.parquet.take().expect("parquet sink");
            w.close().map_err(|e| self.encode(e))?;
        }
        let mut hasher = Sha256::new();
        let mut f = std::fs::File::open(self.file.path()).map_err(|e| self.io(e))?;
        std::io::copy(&mut f, &mut hasher).map_err(|e| self.io(e))?;
        Ok(Done {
            sha256: hex::encode(hasher.finalize()),
            file: self.file,
            rows: self.rows,
            defects: self.defects,
        })
    }
}
