//! The OpenLineage outbox (events waiting for each sink) and the events
//! received from other tools.
//!
//! Invariants:
//! - An event is queued in the same store as the run state it describes,
//!   so it survives a crash or an endpoint outage; it leaves the outbox
//!   only when its sink accepted it.
//! - `(sink, run id, event type)` is unique: a resumed or retried run that
//!   emits the same event again queues nothing new, so a sink receives
//!   each event at least once and, unless a delivery's answer is lost,
//!   exactly once. Receivers deduplicate on `(run id, event type)`.
//! - Claiming hides the claimed events for a lease (`FOR UPDATE SKIP
//!   LOCKED` on PostgreSQL), so several schedulers deliver in parallel
//!   without sending an event twice.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Result, SqlStateStore, db};

/// An event waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// The sink it is for, such as `http` or `file`.
    pub sink: String,
    /// The OpenLineage run id.
    pub run_id: String,
    /// `START`, `COMPLETE`, `FAIL`…
    pub event_type: String,
    /// The event's JSON.
    pub payload: String,
    /// Deliveries that failed so far.
    pub attempts: u32,
}

/// Counts of one sink's outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutboxStats {
    /// The sink.
    pub sink: String,
    /// Events not delivered yet.
    pub pending: u64,
    /// Events delivered.
    pub delivered: u64,
    /// The last delivery error of a pending event, if any.
    pub last_error: Option<String>,
}

/// An OpenLineage event received from another tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceivedEvent {
    /// Its run id.
    pub run_id: String,
    /// Its event type.
    pub event_type: String,
    /// Its job's namespace.
    pub job_namespace: String,
    /// Its job's name.
    pub job_name: String,
    /// Its `eventTime`.
    pub event_time: String,
    /// The event's JSON.
    pub payload: String,
    /// When it arrived (ms).
    pub received_ms: i64,
}

/// Where OpenLineage events wait and arrive.
#[async_trait]
pub trait LineageOutbox: Send + Sync + std::fmt::Debug {
    /// Queue an event for each sink; returns how many were new.
    async fn enqueue_lineage_event(
        &self,
        sinks: &[String],
        run_id: &str,
        event_type: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<u64>;
    /// Claim up to `limit` due events of a sink, oldest first, hiding them
    /// from other claimers until `now_ms + lease_ms`.
    async fn claim_lineage_events(
        &self,
        sink: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>>;
    /// The sink accepted the event.
    async fn lineage_event_delivered(
        &self,
        sink: &str,
        run_id: &str,
        event_type: &str,
        now_ms: i64,
    ) -> Result<()>;
    /// Give a claimed event back untried, due at `at_ms` (to keep a
    /// sink's order behind one that failed).
    async fn lineage_event_release(
        &self,
        sink: &str,
        run_id: &str,
        event_type: &str,
        at_ms: i64,
    ) -> Result<()>;
    /// The delivery failed: count it, and try again at `retry_at_ms`.
    async fn lineage_event_failed(
        &self,
        sink: &str,
        run_id: &str,
        event_type: &str,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<()>;
    /// Pending and delivered counts per sink.
    async fn lineage_outbox_stats(&self) -> Result<Vec<OutboxStats>>;
    /// Keep a received event; `false` when `(run id, event type)` was
    /// already received (the event is then ignored).
    async fn receive_lineage_event(&self, e: &ReceivedEvent) -> Result<bool>;
    /// Received events, newest first.
    async fn received_lineage_events(&self, limit: u32) -> Result<Vec<ReceivedEvent>>;
}

#[async_trait]
impl LineageOutbox for SqlStateStore {
    async fn enqueue_lineage_event(
        &self,
        sinks: &[String],
        run_id: &str,
        event_type: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<u64> {
        let ctx = format!("queue OpenLineage {event_type} of run {run_id}");
        let mut tx = self.pool.begin().await.map_err(db(ctx.clone()))?;
        let mut new = 0;
        for sink in sinks {
            new += sqlx::query(
                "INSERT INTO lineage_outbox (sink, run_id, event_type, payload, created_ms,
                    attempts, next_attempt_ms)
                 VALUES ($1, $2, $3, $4, $5, 0, $5)
                 ON CONFLICT (sink, run_id, event_type) DO NOTHING",
            )
            .bind(sink)
            .bind(run_id)
            .bind(event_type)
            .bind(payload)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?
            .rows_affected();
        }
        tx.commit().await.map_err(db(ctx))?;
        Ok(new)
    }

    async fn claim_lineage_events(
        &self,
        sink: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>> {
        let ctx = format!("claim OpenLineage events for {sink}");
        let mut tx = self.write_tx(&ctx).await?;
        let sql = format!(
            "SELECT sink, run_id, event_type, payload, attempts FROM lineage_outbox
             WHERE sink = $1 AND delivered_ms IS NULL AND next_attempt_ms <= $2
             ORDER BY created_ms, run_id, event_type LIMIT $3{}",
            self.skip_locked()
        );
        let rows = sqlx::query(&sql)
            .bind(sink)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let e = || db("read outbox event");
            let attempts: i64 = r.try_get("attempts").map_err(e())?;
            let ev = OutboxEvent {
                sink: r.try_get("sink").map_err(e())?,
                run_id: r.try_get("run_id").map_err(e())?,
                event_type: r.try_get("event_type").map_err(e())?,
                payload: r.try_get("payload").map_err(e())?,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            };
            sqlx::query(
                "UPDATE lineage_outbox SET next_attempt_ms = $4
                 WHERE sink = $1 AND run_id = $2 AND event_type = $3",
            )
            .bind(&ev.sink)
            .bind(&ev.run_id)
            .bind(&ev.event_type)
            .bind(now_ms + lease_ms)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?;
            out.push(ev);
        }
        tx.commit().await.map_err(db(ctx))?;
        Ok(out)
    }

    async fn lineage_event_delivered(
        &self,
        sink: &str,
        run_id: &str,
        event_type: &str,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE lineage_outbox SET delivered_ms = $4, last_error = NULL
             WHERE sink = $1 AND run_id = $2 AND event_type = $3",
        )
        .bind(sink)
        .bind(run_id)
        .bind(event_type)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db(format!(
            "mark {event_type} of {run_id} delivered to {sink}"
        )))?;
        Ok(())
    }

    async fn lineage_event_release(
        &self,
        sink: &str,
        run_id: &str,
        event_type: &str,
        at_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE lineage_outbox SET next_attempt_ms = $4
             WHERE sink = $1 AND run_id = $2 AND event_type = $3 AND delivered_ms IS NULL",
        )
        .bind(sink)
        .bind(run_id)
        .bind(event_type)
        .bind(at_ms)
        .execute(&self.pool)
        .await
        .map_err(db(format!("release {event_type} of {run_id} for {sink}")))?;
        Ok(())
    }

    async fn lineage_event_failed(
        &self,
        sink: &str,
        run_id: &str,
        event_type: &str,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE lineage_outbox SET next_attempt_ms = $4, last_error = $5,
                attempts = attempts + 1
             WHERE sink = $1 AND run_id = $2 AND event_type = $3 AND delivered_ms IS NULL",
        )
        .bind(sink)
        .bind(run_id)
        .bind(event_type)
        .bind(retry_at_ms)
        .bind(error)
        .execute(&self.pool)
        .await
        .map_err(db(format!(
            "reschedule {event_type} of {run_id} for {sink}"
        )))?;
        Ok(())
    }

    async fn lineage_outbox_stats(&self) -> Result<Vec<OutboxStats>> {
        let rows = sqlx::query(
            "SELECT sink,
                SUM(CASE WHEN delivered_ms IS NULL THEN 1 ELSE 0 END) AS pending,
                SUM(CASE WHEN delivered_ms IS NULL THEN 0 ELSE 1 END) AS delivered,
                MAX(CASE WHEN delivered_ms IS NULL THEN last_error END) AS last_error
             FROM lineage_outbox GROUP BY sink ORDER BY sink",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("read the OpenLineage outbox"))?;
        rows.iter()
            .map(|r| {
                let e = || db("read the OpenLineage outbox");
                // PostgreSQL's SUM is NUMERIC: cast through text.
                let count = |c: &str| -> Result<u64> {
                    if let Ok(v) = r.try_get::<i64, _>(c) {
                        return Ok(v.max(0) as u64);
                    }
                    let t: String = r.try_get(c).map_err(e())?;
                    Ok(t.parse::<f64>().unwrap_or(0.0) as u64)
                };
                Ok(OutboxStats {
                    sink: r.try_get("sink").map_err(e())?,
                    pending: count("pending")?,
                    delivered: count("delivered")?,
                    last_error: r.try_get("last_error").map_err(e())?,
                })
            })
            .collect()
    }

    async fn receive_lineage_event(&self, ev: &ReceivedEvent) -> Result<bool> {
        let n = sqlx::query(
            "INSERT INTO lineage_events_in (run_id, event_type, job_namespace, job_name,
                event_time, payload, received_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (run_id, event_type) DO NOTHING",
        )
        .bind(&ev.run_id)
        .bind(&ev.event_type)
        .bind(&ev.job_namespace)
        .bind(&ev.job_name)
        .bind(&ev.event_time)
        .bind(&ev.payload)
        .bind(ev.received_ms)
        .execute(&self.pool)
        .await
        .map_err(db(format!(
            "store OpenLineage {} of run {}",
            ev.event_type, ev.run_id
        )))?
        .rows_affected();
        Ok(n > 0)
    }

    async fn received_lineage_events(&self, limit: u32) -> Result<Vec<ReceivedEvent>> {
        let rows = sqlx::query(
            "SELECT run_id, event_type, job_namespace, job_name, event_time, payload, received_ms
             FROM lineage_events_in ORDER BY received_ms DESC, run_id, event_type LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db("read received OpenLineage events"))?;
        rows.iter()
            .map(|r| {
                let e = || db("read received OpenLineage events");
                Ok(ReceivedEvent {
                    run_id: r.try_get("run_id").map_err(e())?,
                    event_type: r.try_get("event_type").map_err(e())?,
                    job_namespace: r.try_get("job_namespace").map_err(e())?,
                    job_name: r.try_get("job_name").map_err(e())?,
                    event_time: r.try_get("event_time").map_err(e())?,
                    payload: r.try_get("payload").map_err(e())?,
                    received_ms: r.try_get("received_ms").map_err(e())?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) async fn suite(store: &SqlStateStore, tag: &str) {
        let sinks = vec![format!("http{tag}"), format!("file{tag}")];
        let (http_sink, file_sink) = (sinks[0].as_str(), sinks[1].as_str());
        let r1 = format!("r1{tag}");
        let r1 = r1.as_str();
        assert_eq!(
            store
                .enqueue_lineage_event(&sinks, r1, "START", "{}", 10)
                .await
                .unwrap(),
            2
        );
        // The same event again queues nothing.
        assert_eq!(
            store
                .enqueue_lineage_event(&sinks, r1, "START", "{\"x\":1}", 11)
                .await
                .unwrap(),
            0
        );
        store
            .enqueue_lineage_event(&sinks, r1, "COMPLETE", "{}", 12)
            .await
            .unwrap();
        let claimed = store
            .claim_lineage_events(http_sink, 20, 1000, 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
        assert_eq!(claimed[0].event_type, "START");
        assert_eq!(claimed[0].payload, "{}");
        assert_eq!(claimed[0].attempts, 0);
        // Claimed events are hidden for the lease.
        assert!(
            store
                .claim_lineage_events(http_sink, 21, 1000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        store
            .lineage_event_delivered(http_sink, r1, "START", 22)
            .await
            .unwrap();
        store
            .lineage_event_failed(http_sink, r1, "COMPLETE", "connection refused", 500)
            .await
            .unwrap();
        assert!(
            store
                .claim_lineage_events(http_sink, 499, 1000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let again = store
            .claim_lineage_events(http_sink, 500, 1000, 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        store
            .lineage_event_release(http_sink, r1, "COMPLETE", 600)
            .await
            .unwrap();
        let released = store
            .claim_lineage_events(http_sink, 600, 1000, 10)
            .await
            .unwrap();
        assert_eq!(released[0].attempts, 1, "a release is not a failure");
        let stats = store.lineage_outbox_stats().await.unwrap();
        let http = stats.iter().find(|s| s.sink == http_sink).unwrap();
        assert_eq!((http.pending, http.delivered), (1, 1));
        assert_eq!(http.last_error.as_deref(), Some("connection refused"));
        let file = stats.iter().find(|s| s.sink == file_sink).unwrap();
        assert_eq!((file.pending, file.delivered), (2, 0));

        let ev = ReceivedEvent {
            run_id: format!("x{tag}"),
            event_type: "COMPLETE".into(),
            job_namespace: "dbt".into(),
            job_name: "model".into(),
            event_time: "2026-11-22T10:00:00Z".into(),
            payload: "{}".into(),
            received_ms: 5,
        };
        assert!(store.receive_lineage_event(&ev).await.unwrap());
        assert!(!store.receive_lineage_event(&ev).await.unwrap());
        assert!(
            store
                .received_lineage_events(10)
                .await
                .unwrap()
                .contains(&ev)
        );
    }
}
