//! Delivery of queued OpenLineage events to their sinks: an HTTP endpoint
//! (Marquez, DataHub, OpenMetadata, or Gridata itself) and/or a file of
//! JSON lines.
//!
//! Invariants:
//! - An event leaves the outbox only after its sink accepted it (a 2xx
//!   answer; a line written and synced). Failures are retried with
//!   exponential backoff, capped at five minutes, for ever: nothing is
//!   dropped.
//! - Each sink is delivered in the order events were queued.
//! - Delivery is at least once: if the process dies between a sink's
//!   acceptance and the outbox update, the event is sent again with the
//!   same `(runId, eventType)`, on which receivers deduplicate.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gridata_core::Clock;
use gridata_state::{OutboxEvent, Store};

/// The HTTP sink's name in the outbox.
pub const HTTP: &str = "http";
/// The file sink's name in the outbox.
pub const FILE: &str = "file";

/// Where events go.
#[derive(Debug, Clone, Default)]
pub struct Sinks {
    /// POST each event here.
    pub url: Option<String>,
    /// `Authorization: Bearer` for the endpoint.
    pub api_key: Option<String>,
    /// Append each event here as a line.
    pub file: Option<PathBuf>,
}

impl Sinks {
    /// The outbox names of the configured sinks.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.url.is_some() {
            out.push(HTTP.to_string());
        }
        if self.file.is_some() {
            out.push(FILE.to_string());
        }
        out
    }
}

/// Delivers the outbox.
#[derive(Debug, Clone)]
pub struct Delivery {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sinks: Sinks,
    client: reqwest::Client,
}

/// The wait before retrying after `attempts` failed deliveries: 0.5 s,
/// doubling, at most five minutes.
pub fn backoff_ms(attempts: u32) -> i64 {
    let exp = attempts.saturating_sub(1).min(9);
    (500_i64 << exp).min(300_000)
}

impl Delivery {
    /// A delivery over a store's outbox.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, sinks: Sinks) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            store,
            clock,
            sinks,
            client,
        }
    }

    async fn send(&self, sink: &str, e: &OutboxEvent) -> Result<(), String> {
        match sink {
            HTTP => {
                let url = self.sinks.url.as_deref().ok_or("no url configured")?;
                let mut req = self
                    .client
                    .post(url)
                    .header("Content-Type", "application/json")
                    .body(e.payload.clone());
                if let Some(k) = &self.sinks.api_key {
                    req = req.bearer_auth(k);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|err| format!("POST {url}: {err}"))?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    Err(format!(
                        "POST {url}: {status}: {}",
                        body.chars().take(300).collect::<String>()
                    ))
                }
            }
            FILE => {
                let path = self.sinks.file.clone().ok_or("no file configured")?;
                let line = format!("{}\n", e.payload.replace('\n', " "));
                tokio::task::spawn_blocking(move || {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)?;
                    f.write_all(line.as_bytes())?;
                    f.sync_data()
                })
                .await
                .map_err(|err| err.to_string())?
                .map_err(|err| {
                    format!(
                        "append to {}: {err}",
                        self.sinks
                            .file
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    )
                })
            }
            other => Err(format!("unknown sink {other}")),
        }
    }

    /// One pass: deliver every due event of every sink. Returns how many
    /// were delivered; a sink that fails stops its pass (order is kept).
    pub async fn deliver_due(&self) -> gridata_state::Result<usize> {
        let mut delivered = 0;
        for sink in self.sinks.names() {
            loop {
                let now = self.clock.now_ms();
                let batch = self
                    .store
                    .claim_lineage_events(&sink, now, 60_000, 100)
                    .await?;
                if batch.is_empty() {
                    break;
                }
                let mut failed: Option<i64> = None;
                for e in &batch {
                    if let Some(at) = failed {
                        // Keep order: the rest wait behind the failed one.
                        self.store
                            .lineage_event_release(&sink, &e.run_id, &e.event_type, at)
                            .await?;
                        continue;
                    }
                    match self.send(&sink, e).await {
                        Ok(()) => {
                            self.store
                                .lineage_event_delivered(
                                    &sink,
                                    &e.run_id,
                                    &e.event_type,
                                    self.clock.now_ms(),
                                )
                                .await?;
                            delivered += 1;
                        }
                        Err(err) => {
                            tracing::warn!(sink, run_id = %e.run_id, event = %e.event_type, attempts = e.attempts, error = %err, "OpenLineage delivery failed; will retry");
                            let at = self.clock.now_ms() + backoff_ms(e.attempts + 1);
                            self.store
                                .lineage_event_failed(&sink, &e.run_id, &e.event_type, &err, at)
                                .await?;
                            failed = Some(at);
                        }
                    }
                }
                if failed.is_some() || batch.len() < 100 {
                    break;
                }
            }
        }
        Ok(delivered)
    }

    /// Deliver until nothing is pending or `timeout` passed; returns the
    /// events still pending.
    pub async fn flush(&self, timeout: Duration) -> gridata_state::Result<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.deliver_due().await?;
            let pending: u64 = self
                .store
                .lineage_outbox_stats()
                .await?
                .iter()
                .filter(|s| self.sinks.names().contains(&s.sink))
                .map(|s| s.pending)
                .sum();
            if pending == 0 || tokio::time::Instant::now() >= deadline {
                return Ok(pending);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deliver every `every` until `stop` resolves.
    pub async fn run(self, every: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.deliver_due().await {
                tracing::warn!(error = %e, "OpenLineage delivery pass failed");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(1), 500);
        assert_eq!(backoff_ms(2), 1000);
        assert_eq!(backoff_ms(30), 256_000);
        assert!(backoff_ms(u32::MAX) <= 300_000);
    }

    #[tokio::test]
    async fn a_file_sink_gets_each_event_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(gridata_state::SqlStateStore::memory().await.unwrap());
        let file = dir.path().join("ol/events.jsonl");
        let sinks = Sinks {
            file: Some(file.clone()),
            ..Default::default()
        };
        let d = Delivery::new(
            store.clone(),
            Arc::new(gridata_core::SystemClock),
            sinks.clone(),
        );
        for (i, t) in ["START", "COMPLETE"].iter().enumerate() {
            store
                .enqueue_lineage_event(&sinks.names(), "r", t, &format!("{{\"n\":{i}}}"), i as i64)
                .await
                .unwrap();
        }
        // Emitted again (a resumed run): nothing new.
        store
            .enqueue_lineage_event(&sinks.names(), "r", "START", "{}", 9)
            .await
            .unwrap();
        assert_eq!(d.flush(Duration::from_secs(5)).await.unwrap(), 0);
        assert_eq!(d.deliver_due().await.unwrap(), 0);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text, "{\"n\":0}\n{\"n\":1}\n");
    }
}
