//! `validate_file`: check one file before anything reads it: it exists,
//! its size is within bounds, its checksum matches the `<file>.sha256`
//! sidecar when there is one, it parses in its format, and its columns
//! match the declared schema (names, required columns, and types: exactly
//! for Parquet; for text formats a column whose sampled values mostly fail
//! to parse is a type mismatch). A failing file moves to
//! `rejected/<pipeline>/<run>/<task>/files/` with a `.reason.json` beside it, and
//! the task fails without retrying.
//!
//! A valid file that a task downstream reads is landed here (once per
//! run); its rows are counted by the first task that reads them.

use gridata_storage::object_store::ObjectStoreExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::landing::{ValueType, text_parses};
use crate::model::{ByteSize, FileFormat, ZoneName, raw_zone};
use crate::run::{TaskCtx, TaskError, TaskResult};

/// Settings of a `validate_file` task.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateFile {
    /// Zone of the file. Default `raw` (or `archive` if already archived).
    #[serde(default = "raw_zone")]
    pub zone: ZoneName,
    /// Path of the file (templated).
    pub path: String,
    /// Format; default from the extension.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// Smallest acceptable size. Default 1 byte.
    #[serde(default)]
    pub min_size: Option<ByteSize>,
    /// Largest acceptable size.
    #[serde(default)]
    pub max_size: Option<ByteSize>,
    /// `if_present` (default): verify `<file>.sha256` when it exists;
    /// `required`: fail without it; `skip`.
    #[serde(default)]
    pub checksum: ChecksumMode,
    /// Expected columns.
    #[serde(default)]
    pub columns: Vec<ColumnSpec>,
    /// Whether columns not listed are allowed. Default true.
    #[serde(default = "yes")]
    pub allow_extra_columns: bool,
}

fn yes() -> bool {
    true
}

/// When to verify a checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    /// Verify when the sidecar exists.
    #[default]
    IfPresent,
    /// The sidecar must exist and match.
    Required,
    /// Do not verify.
    Skip,
}

/// An expected column.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Column name.
    pub name: String,
    /// Expected type of its values.
    #[serde(default, rename = "type")]
    pub ty: Option<ValueType>,
    /// Whether the column must be present.
    #[serde(default)]
    pub required: bool,
}

const SAMPLE_BYTES: u64 = 1 << 16;

pub(crate) async fn run(cfg: &ValidateFile, ctx: &TaskCtx) -> Result<TaskResult, TaskError> {
    let rel = ctx.render(&cfg.path)?;
    let Some(uri) = ctx.locate(cfg.zone, &rel).await? else {
        return Err(TaskError::fatal(format!(
            "file {rel} not found in zone {:?} (nor in archive)",
            cfg.zone
        )));
    };
    let format = cfg
        .format
        .or_else(|| FileFormat::from_path(&rel))
        .ok_or_else(|| TaskError::fatal(format!("{uri}: cannot tell the format; set `format`")))?;
    let problems = check(cfg, ctx, &uri, format).await?;
    if problems.is_empty() {
        ctx.log(format!("{uri}: ok"));
        // A task downstream reads the file: land it now, beside the other
        // tasks that run before that reader, rather than on its path.
        if let Some(input) = ctx.downstream_readers(cfg.zone, &rel)?.first() {
            ctx.land_input(input).await?;
        }
        return Ok(TaskResult::with_output(
            serde_json::json!({ "file": uri, "valid": true }),
        ));
    }
    let rejected = ctx.reject_file(&uri, &problems).await?;
    Err(TaskError::fatal(format!(
        "{uri}: {}; moved to {rejected}",
        problems.join("; ")
    )))
}

async fn check(
    cfg: &ValidateFile,
    ctx: &TaskCtx,
    uri: &str,
    format: FileFormat,
) -> Result<Vec<String>, TaskError> {
    let storage = ctx.storage();
    let mut problems = Vec::new();
    let info = storage.head(uri).await.map_err(TaskError::retryable)?;
    let min = cfg.min_size.map(|s| s.0).unwrap_or(1);
    if info.size < min {
        problems.push(format!(
            "size {} bytes is below the minimum {min}",
            info.size
        ));
    }
    if let Some(max) = cfg.max_size
        && info.size > max.0
    {
        problems.push(format!(
            "size {} bytes is above the maximum {}",
            info.size, max.0
        ));
    }
    if cfg.checksum != ChecksumMode::Skip {
        let sidecar = format!("{uri}.sha256");
        match storage.read(&sidecar).await {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let expected = text
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                let actual = sha256(ctx, uri).await?;
                if expected != actual {
                    problems.push(format!(
                        "checksum mismatch: {sidecar} says {expected}, the file hashes to {actual}"
                    ));
                } else {
                    ctx.log(format!("checksum ok ({actual})"));
                }
            }
            Err(gridata_storage::Error::NotFound { .. }) => {
                if cfg.checksum == ChecksumMode::Required {
                    problems.push(format!("checksum file {sidecar} is missing"));
                }
            }
            Err(e) => return Err(TaskError::retryable(e)),
        }
    }
    if info.size == 0 {
        return Ok(problems);
    }
    match crate::landing::peek(storage, uri, format, SAMPLE_BYTES).await {
        Err(reason) => problems.push(format!("not valid {format:?}: {reason}")),
        Ok(peek) => {
            for col in &cfg.columns {
                let Some(i) = peek.columns.iter().position(|c| c == &col.name) else {
                    if col.required {
                        problems.push(format!("required column '{}' is missing", col.name));
                    }
                    continue;
                };
                let Some(ty) = col.ty else { continue };
                if let Some(arrow) = &peek.arrow_types {
                    if !ty.accepts_arrow(&arrow[i]) {
                        problems.push(format!(
                            "column '{}' has type {}, expected {ty:?}",
                            col.name, arrow[i]
                        ));
                    }
                    continue;
                }
                let values: Vec<&str> = peek
                    .sample
                    .iter()
                    .filter_map(|r| r.get(i).and_then(|v| v.as_deref()))
                    .filter(|v| !v.trim().is_empty())
                    .collect();
                let bad = values.iter().filter(|v| !text_parses(v, ty)).count();
                if values.len() >= 5 && bad * 2 > values.len() {
                    problems.push(format!(
                        "column '{}' is not {ty:?}: {bad} of {} sampled values do not parse",
                        col.name,
                        values.len()
                    ));
                }
            }
            if !cfg.allow_extra_columns {
                for c in &peek.columns {
                    if !c.starts_with('_') && !cfg.columns.iter().any(|s| &s.name == c) {
                        problems.push(format!("unexpected column '{c}'"));
                    }
                }
            }
        }
    }
    Ok(problems)
}

async fn sha256(ctx: &TaskCtx, uri: &str) -> Result<String, TaskError> {
    use futures::StreamExt;
    let (store, path) = ctx.storage().resolve(uri).map_err(TaskError::fatal)?;
    let mut stream = store
        .get(&path)
        .await
        .map_err(|e| TaskError::retryable(format!("{uri}: {e}")))?
        .into_stream();
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(chunk.map_err(|e| TaskError::retryable(format!("{uri}: {e}")))?);
    }
    Ok(hex::encode(hasher.finalize()))
}
