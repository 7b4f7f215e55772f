//! `archive`: move processed files from a zone (default `raw`) to
//! `archive/`, keeping their relative paths. A file's `<file>.sha256`
//! checksum sidecar moves with it (before it, so a retry finishes the move).
//! Idempotent: a file already archived is not an error.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{ZoneName, raw_zone};
use crate::run::{TaskCtx, TaskError, TaskResult};

/// Settings of an `archive` task.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    /// Zone the files are in. Default `raw`.
    #[serde(default = "raw_zone")]
    pub zone: ZoneName,
    /// Paths (templated): files, `*` patterns, or folders ending in `/`.
    pub paths: Vec<String>,
}

pub(crate) async fn run(cfg: &Archive, ctx: &TaskCtx) -> Result<TaskResult, TaskError> {
    use gridata_core::Zone;
    let storage = ctx.storage();
    let from_base = storage.zone_uri(cfg.zone.zone()).to_string();
    let to_base = storage.zone_uri(Zone::Archive).to_string();
    let mut moved = Vec::new();
    for p in &cfg.paths {
        let p = ctx.render(p)?;
        for uri in ctx.list_matching(cfg.zone.zone(), &p).await? {
            let rel = uri
                .strip_prefix(&from_base)
                .unwrap_or(&uri)
                .trim_start_matches('/');
            let to = format!("{to_base}/{rel}");
            // The sidecar first: a retry after a crash between the two
            // renames still finds the data file, and so moves both.
            let sidecar = format!("{uri}.sha256");
            if storage
                .exists(&sidecar)
                .await
                .map_err(TaskError::retryable)?
            {
                storage
                    .rename(&sidecar, &format!("{to}.sha256"))
                    .await
                    .map_err(TaskError::retryable)?;
            }
            storage
                .rename(&uri, &to)
                .await
                .map_err(TaskError::retryable)?;
            ctx.log(format!("archived {uri} -> {to}"));
            moved.push(to);
        }
    }
    if moved.is_empty() {
        ctx.log("nothing to archive (already archived?)".to_string());
    }
    Ok(TaskResult::with_output(
        serde_json::json!({ "archived": moved }),
    ))
}
