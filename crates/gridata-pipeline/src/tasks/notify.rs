//! `notify`: POST a JSON body to a URL, e.g. to refresh a BI tool. Every
//! string in the body is templated; a URL that renders empty sends nothing. A non-2xx answer fails the attempt,
//! which is retried.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::Dur;
use crate::run::{TaskCtx, TaskError, TaskResult};

/// Settings of a `notify` task.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// The URL (templated).
    pub url: String,
    /// JSON body; strings are templated. Default: the run's id, pipeline,
    /// parameters and the tables it published.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// Extra headers (templated values).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request time limit. Default `30s`.
    #[serde(default = "default_timeout")]
    pub request_timeout: Dur,
}

fn default_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}

fn render_json(v: &serde_json::Value, ctx: &TaskCtx) -> Result<serde_json::Value, TaskError> {
    use serde_json::Value;
    Ok(match v {
        Value::String(s) => Value::String(ctx.render(s)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_json(x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), render_json(x, ctx)?)))
                .collect::<Result<_, TaskError>>()?,
        ),
        other => other.clone(),
    })
}

pub(crate) async fn run(cfg: &Notify, ctx: &TaskCtx) -> Result<TaskResult, TaskError> {
    let url = ctx.render(&cfg.url)?;
    if url.trim().is_empty() {
        ctx.log("no URL configured: nothing sent".into());
        return Ok(TaskResult::with_output(
            serde_json::json!({ "sent": false }),
        ));
    }
    let body = match &cfg.body {
        Some(b) => render_json(b, ctx)?,
        None => serde_json::json!({
            "run_id": ctx.run_id(),
            "pipeline": ctx.pipeline_id(),
            "params": ctx.params(),
            "published": ctx.published_tables(),
        }),
    };
    let client = reqwest::Client::builder()
        .timeout(cfg.request_timeout.0)
        .build()
        .map_err(TaskError::fatal)?;
    let mut req = client
        .post(&url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).map_err(TaskError::fatal)?);
    for (k, v) in &cfg.headers {
        req = req.header(k.as_str(), ctx.render(v)?);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| TaskError::retryable(format!("POST {url}: {e}")))?;
    let status = resp.status();
    ctx.log(format!("POST {url} -> {status}"));
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(TaskError::retryable(format!(
            "POST {url} answered {status}: {}",
            text.chars().take(200).collect::<String>()
        )));
    }
    Ok(TaskResult::with_output(
        serde_json::json!({ "url": url, "status": status.as_u16() }),
    ))
}
