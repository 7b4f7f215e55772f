//! `sense`: wait until files exist.
//!
//! Each path is templated; a path ending in `/` waits for any file under
//! it, a `*` in the last segment waits for a match. Polls every
//! `poll_interval` until `timeout`, then fails without retrying.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{Dur, ZoneName, raw_zone};
use crate::run::{TaskCtx, TaskError, TaskResult};

/// Settings of a `sense` task.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sense {
    /// Zone to look in. Default `raw`; files already archived count too.
    #[serde(default = "raw_zone")]
    pub zone: ZoneName,
    /// Paths (templated) that must all exist.
    pub paths: Vec<String>,
    /// Time between looks. Default `10s`.
    #[serde(default = "default_poll")]
    pub poll_interval: Dur,
    /// Give up after this long. Default `1h`.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
}

fn default_poll() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}

fn default_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(3600))
}

pub(crate) async fn run(cfg: &Sense, ctx: &TaskCtx) -> Result<TaskResult, TaskError> {
    let paths: Vec<String> = cfg
        .paths
        .iter()
        .map(|p| ctx.render(p))
        .collect::<Result<_, _>>()?;
    let started = std::time::Instant::now();
    loop {
        let mut missing = Vec::new();
        let mut found = Vec::new();
        for p in &paths {
            match ctx.find_files(cfg.zone, p).await? {
                files if files.is_empty() => missing.push(p.clone()),
                files => found.extend(files),
            }
        }
        if missing.is_empty() {
            for f in &found {
                ctx.log(format!("found {f}"));
            }
            return Ok(TaskResult::with_output(
                serde_json::json!({ "files": found }),
            ));
        }
        if started.elapsed() >= cfg.timeout.0 {
            return Err(TaskError::fatal(format!(
                "timed out after {} waiting for {} in zone {:?}",
                cfg.timeout,
                missing.join(", "),
                cfg.zone
            )));
        }
        ctx.log(format!(
            "waiting for {} (next look in {})",
            missing.join(", "),
            cfg.poll_interval
        ));
        tokio::time::sleep(cfg.poll_interval.0).await;
    }
}
