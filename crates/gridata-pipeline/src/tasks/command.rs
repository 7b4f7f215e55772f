//! `command`: run a program, such as a Python script, for logic SQL cannot
//! express. The run's parameters are in its environment
//! (`GRIDATA_PARAM_<NAME>`, plus `GRIDATA_RUN_ID`, `GRIDATA_PIPELINE`,
//! `GRIDATA_HOME`); its output goes to the task log, and its exit code
//! decides the task's state. It is killed at the task's timeout.

use std::collections::BTreeMap;
use std::process::Stdio;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::run::{TaskCtx, TaskError, TaskResult};

/// Settings of a `command` task.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// The program (templated), found on `PATH` or relative to the home.
    pub program: String,
    /// Its arguments (templated).
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables (templated values).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working folder; default the Gridata home.
    #[serde(default)]
    pub workdir: Option<String>,
}

pub(crate) async fn run(cfg: &Command, ctx: &TaskCtx) -> Result<TaskResult, TaskError> {
    let program = ctx.render(&cfg.program)?;
    let args: Vec<String> = cfg
        .args
        .iter()
        .map(|a| ctx.render(a))
        .collect::<Result<_, _>>()?;
    let home = ctx.home_dir();
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args)
        .current_dir(
            cfg.workdir
                .as_deref()
                .map(std::path::PathBuf::from)
                .unwrap_or(home.clone()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .env("GRIDATA_RUN_ID", ctx.run_id())
        .env("GRIDATA_PIPELINE", ctx.pipeline_id())
        .env("GRIDATA_HOME", &home);
    for (k, v) in ctx.params() {
        cmd.env(format!("GRIDATA_PARAM_{}", k.to_ascii_uppercase()), v);
    }
    for (k, v) in &cfg.env {
        cmd.env(k, ctx.render(v)?);
    }
    ctx.log(format!("$ {program} {}", args.join(" ")));
    let mut child = cmd
        .spawn()
        .map_err(|e| TaskError::fatal(format!("cannot start '{program}': {e}")))?;
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let (status, _, _) = tokio::join!(child.wait(), pump(ctx, out, ""), pump(ctx, err, "stderr: "));
    let status = status.map_err(|e| TaskError::retryable(format!("'{program}': {e}")))?;
    match status.code() {
        Some(0) => Ok(TaskResult::with_output(
            serde_json::json!({ "exit_code": 0 }),
        )),
        Some(code) => Err(TaskError::retryable(format!(
            "'{program}' exited with code {code}"
        ))),
        None => Err(TaskError::retryable(format!(
            "'{program}' was killed by a signal"
        ))),
    }
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(ctx: &TaskCtx, r: R, tag: &str) {
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(l)) = lines.next_line().await {
        ctx.log(format!("{tag}{l}"));
    }
}
