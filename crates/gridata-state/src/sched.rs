//! Coordination state for schedulers: run leases, pause flags, trigger
//! watermarks, backfills, pools and API tokens.
//!
//! Invariants:
//! - A run is executed only by the owner of an unexpired lease. Claims
//!   take candidate rows with `FOR UPDATE SKIP LOCKED` on PostgreSQL (the
//!   SQLite write lock serializes them there), so two schedulers never
//!   claim the same run.
//! - A per-pipeline run limit holds across schedulers: claims of one
//!   pipeline lock its `pipeline_flags` row before counting.
//! - A dedup key names at most one run, so a trigger that fires twice, or
//!   in two schedulers, starts one run.
//! - Pool slots are counted and taken in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};

use crate::{
    Error, RUN_COLUMNS, Result, RunFilter, RunRecord, RunState, SqlStateStore, StateStore, db,
    run_from,
};

/// A store with the run history, the coordination state and metadata.
pub trait Store: StateStore + SchedulerStore + crate::MetadataStore + crate::LineageOutbox {}
impl<T: StateStore + SchedulerStore + crate::MetadataStore + crate::LineageOutbox> Store for T {}

/// Limits applied when claiming runs.
#[derive(Debug, Clone, Default)]
pub struct ClaimLimits {
    /// Claim at most this many runs.
    pub max_runs: usize,
    /// Running runs allowed per pipeline; pipelines not listed are not
    /// claimed (the scheduler does not know them).
    pub per_pipeline: BTreeMap<String, usize>,
}

/// The answer to a lease renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The caller still holds the lease.
    pub owned: bool,
    /// A user asked to cancel the run.
    pub cancel_requested: bool,
}

/// A scheduler process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchedulerInfo {
    /// Its id, unique per process.
    pub owner: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Start time (ms).
    pub started_ms: i64,
    /// Last heartbeat (ms).
    pub heartbeat_ms: i64,
    /// It shut down cleanly.
    pub stopped: bool,
}

/// A backfill: one run per date of a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackfillRecord {
    /// Id.
    pub backfill_id: String,
    /// Pipeline.
    pub pipeline: String,
    /// First date (`YYYY-MM-DD`).
    pub start_date: String,
    /// Last date, inclusive.
    pub end_date: String,
    /// The next date to start a run for; after `end_date` when all started.
    pub next_date: String,
    /// Runs of this backfill that may be active at once.
    pub max_parallel: u32,
    /// Other parameters of every run.
    pub params: BTreeMap<String, String>,
    /// `running`, `success`, `failed` or `cancelled`.
    pub state: String,
    /// Creation time (ms).
    pub created_ms: i64,
}

/// An API token (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenRecord {
    /// Public id.
    pub token_id: String,
    /// What it is for.
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// SHA-256 of the secret, hex.
    pub secret_hash: String,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Revoked tokens are refused.
    pub revoked: bool,
    /// Sees PII columns unmasked (admins always do).
    #[serde(default)]
    pub pii: bool,
}

/// A pool and its use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolRecord {
    /// Name.
    pub name: String,
    /// Tasks that may run in it at once.
    pub slots: u32,
    /// Slots taken now.
    pub used: u32,
    /// What it guards.
    pub description: Option<String>,
}

/// Coordination between scheduler processes.
#[async_trait]
pub trait SchedulerStore: Send + Sync + fmt::Debug {
    /// Add a run unless a run with its dedup key exists; returns whether
    /// it was added.
    async fn enqueue_run(&self, run: &RunRecord) -> Result<bool>;
    /// Claim queued runs and runs whose lease expired, oldest first, within
    /// the limits; they become `running` and owned by `owner`.
    async fn claim_runs(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limits: &ClaimLimits,
    ) -> Result<Vec<RunRecord>>;
    /// Renew the lease on a run.
    async fn heartbeat_run(
        &self,
        run_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Heartbeat>;
    /// Give a running run back so another scheduler resumes it at once.
    async fn release_run(&self, run_id: &str, owner: &str) -> Result<bool>;
    /// Cancel: a queued run ends at once; a running one is flagged for its
    /// owner. Returns the run's state afterwards.
    async fn request_cancel(&self, run_id: &str, now_ms: i64) -> Result<RunState>;
    /// Requeue an ended run with these tasks reset to `queued`.
    async fn requeue_run(&self, run_id: &str, tasks: &[String], now_ms: i64) -> Result<()>;
    /// Count runs matching a filter (limit and offset ignored).
    async fn count_runs(&self, filter: &RunFilter) -> Result<u64>;

    /// Record a scheduler's start, heartbeat or stop.
    async fn scheduler_heartbeat(&self, info: &SchedulerInfo) -> Result<()>;
    /// Known schedulers, most recent heartbeat first.
    async fn schedulers(&self) -> Result<Vec<SchedulerInfo>>;

    /// Pause or unpause a pipeline.
    async fn set_paused(&self, pipeline: &str, paused: bool, now_ms: i64) -> Result<()>;
    /// Paused pipelines.
    async fn paused(&self) -> Result<BTreeSet<String>>;

    /// A trigger's watermark (last cron time, last snapshot seen…).
    async fn trigger_value(&self, pipeline: &str, key: &str) -> Result<Option<String>>;
    /// Set a trigger's watermark.
    async fn set_trigger_value(&self, pipeline: &str, key: &str, value: &str) -> Result<()>;

    /// Record a new backfill.
    async fn create_backfill(&self, b: &BackfillRecord) -> Result<()>;
    /// Backfills, newest first.
    async fn backfills(&self, active_only: bool) -> Result<Vec<BackfillRecord>>;
    /// Move a backfill on.
    async fn update_backfill(&self, id: &str, next_date: &str, state: &str) -> Result<()>;

    /// Create or resize a pool.
    async fn set_pool(&self, name: &str, slots: u32, description: Option<&str>) -> Result<()>;
    /// Pools with their use.
    async fn pools(&self) -> Result<Vec<PoolRecord>>;
    /// Take a slot of a pool for a task if one is free.
    async fn acquire_slot(
        &self,
        pool: &str,
        run_id: &str,
        task_id: &str,
        now_ms: i64,
    ) -> Result<bool>;
    /// Free a task's slot, or every slot of a run.
    async fn release_slots(&self, run_id: &str, task_id: Option<&str>) -> Result<()>;

    /// Store a token.
    async fn create_token(&self, t: &TokenRecord) -> Result<()>;
    /// The token with this secret hash, if any.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    /// All tokens.
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Revoke a token; returns whether it existed.
    async fn revoke_token(&self, token_id: &str) -> Result<bool>;
}

impl SqlStateStore {
    /// Begin a transaction that writes: on SQLite the first statement takes
    /// the database's write lock, so later reads in it are not stale.
    pub(crate) async fn write_tx(&self, ctx: &str) -> Result<Transaction<'static, Any>> {
        let mut tx = self.pool.begin().await.map_err(db(ctx))?;
        if !self.postgres {
            sqlx::query("UPDATE gridata_state_version SET version = version")
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
        }
        Ok(tx)
    }

    pub(crate) fn skip_locked(&self) -> &'static str {
        if self.postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    }
}

const FILTER_SQL: &str = "($1 = '' OR pipeline = $1) AND ($2 = '' OR state = $2) \
     AND ($3 = '' OR backfill_id = $3)";

fn backfill_from(r: &sqlx::any::AnyRow) -> Result<BackfillRecord> {
    let e = || db("read backfill");
    let params: String = r.try_get("params").map_err(e())?;
    Ok(BackfillRecord {
        backfill_id: r.try_get("backfill_id").map_err(e())?,
        pipeline: r.try_get("pipeline").map_err(e())?,
        start_date: r.try_get("start_date").map_err(e())?,
        end_date: r.try_get("end_date").map_err(e())?,
        next_date: r.try_get("next_date").map_err(e())?,
        max_parallel: r.try_get::<i64, _>("max_parallel").map_err(e())? as u32,
        params: serde_json::from_str(&params).map_err(|_| Error::Corrupt {
            what: "backfill params",
            value: params.clone(),
        })?,
        state: r.try_get("state").map_err(e())?,
        created_ms: r.try_get("created_ms").map_err(e())?,
    })
}

fn token_from(r: &sqlx::any::AnyRow) -> Result<TokenRecord> {
    let e = || db("read token");
    Ok(TokenRecord {
        token_id: r.try_get("token_id").map_err(e())?,
        name: r.try_get("name").map_err(e())?,
        role: r.try_get("role").map_err(e())?,
        secret_hash: r.try_get("secret_hash").map_err(e())?,
        created_ms: r.try_get("created_ms").map_err(e())?,
        revoked: r.try_get::<i64, _>("revoked").map_err(e())? != 0,
        pii: r.try_get::<i64, _>("pii").map_err(e())? != 0,
    })
}

#[async_trait]
impl SchedulerStore for SqlStateStore {
    async fn enqueue_run(&self, run: &RunRecord) -> Result<bool> {
        if let Some(key) = &run.dedup_key {
            let exists = sqlx::query("SELECT run_id FROM runs WHERE dedup_key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(db("find run by key"))?;
            if exists.is_some() {
                return Ok(false);
            }
        }
        match self.create_run(run).await {
            Ok(()) => Ok(true),
            // Lost a race on the dedup key with another scheduler.
            Err(Error::Db { source, .. })
                if run.dedup_key.is_some()
                    && source
                        .as_database_error()
                        .is_some_and(|d| d.is_unique_violation()) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn claim_runs(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limits: &ClaimLimits,
    ) -> Result<Vec<RunRecord>> {
        if limits.per_pipeline.is_empty() || limits.max_runs == 0 {
            return Ok(vec![]);
        }
        let ctx = "claim runs";
        let mut tx = self.write_tx(ctx).await?;
        // Only pipelines this scheduler knows: runs of others never starve it.
        let known: Vec<String> = (0..limits.per_pipeline.len())
            .map(|i| format!("${}", i + 2))
            .collect();
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE pipeline IN ({})
               AND ((state = 'queued' AND cancel_requested = 0
                     AND pipeline NOT IN (SELECT pipeline FROM pipeline_flags WHERE paused = 1))
                    OR (state = 'running' AND COALESCE(lease_until_ms, 0) < $1))
             ORDER BY created_ms, run_id LIMIT 200{}",
            known.join(", "),
            self.skip_locked()
        );
        let mut q = sqlx::query(&sql).bind(now_ms);
        for p in limits.per_pipeline.keys() {
            q = q.bind(p.as_str());
        }
        let candidates = q
            .fetch_all(&mut *tx)
            .await
            .map_err(db(ctx))?
            .iter()
            .map(run_from)
            .collect::<Result<Vec<_>>>()?;
        let pipelines: BTreeSet<&str> = candidates
            .iter()
            .map(|r| r.pipeline.as_str())
            .filter(|p| limits.per_pipeline.contains_key(*p))
            .collect();
        let mut active: BTreeMap<String, usize> = BTreeMap::new();
        for p in pipelines {
            if self.postgres {
                // Serialize claims of one pipeline across schedulers.
                sqlx::query(
                    "INSERT INTO pipeline_flags (pipeline, paused, updated_ms) VALUES ($1, 0, $2)
                     ON CONFLICT (pipeline) DO NOTHING",
                )
                .bind(p)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
                sqlx::query("SELECT pipeline FROM pipeline_flags WHERE pipeline = $1 FOR UPDATE")
                    .bind(p)
                    .execute(&mut *tx)
                    .await
                    .map_err(db(ctx))?;
            }
            let n: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM runs
                 WHERE pipeline = $1 AND state = 'running' AND lease_until_ms >= $2",
            )
            .bind(p)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await
            .map_err(db(ctx))?
            .try_get("n")
            .map_err(db(ctx))?;
            active.insert(p.to_string(), n as usize);
        }
        let mut claimed = Vec::new();
        for mut run in candidates {
            if claimed.len() >= limits.max_runs {
                break;
            }
            let Some(limit) = limits.per_pipeline.get(&run.pipeline) else {
                continue;
            };
            let n = active.entry(run.pipeline.clone()).or_default();
            if *n >= *limit {
                continue;
            }
            *n += 1;
            sqlx::query(
                "UPDATE runs SET owner = $1, lease_until_ms = $2, state = 'running',
                    started_ms = COALESCE(started_ms, $3), ended_ms = NULL
                 WHERE run_id = $4",
            )
            .bind(owner)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .bind(&run.run_id)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
            run.owner = Some(owner.to_string());
            run.lease_until_ms = Some(now_ms + lease_ms);
            run.started_ms = run.started_ms.or(Some(now_ms));
            run.state = RunState::Running;
            claimed.push(run);
        }
        tx.commit().await.map_err(db(ctx))?;
        Ok(claimed)
    }

    async fn heartbeat_run(
        &self,
        run_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Heartbeat> {
        let ctx = format!("renew lease on run {run_id}");
        let row = sqlx::query(&format!(
            "UPDATE runs SET lease_until_ms = $1
             WHERE run_id IN (SELECT run_id FROM runs
                              WHERE run_id = $2 AND owner = $3 AND state = 'running'{})
             RETURNING cancel_requested",
            self.skip_locked()
        ))
        .bind(now_ms + lease_ms)
        .bind(run_id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(ctx.clone()))?;
        if let Some(row) = row {
            let c: i64 = row.try_get("cancel_requested").map_err(db(ctx))?;
            return Ok(Heartbeat {
                owned: true,
                cancel_requested: c != 0,
            });
        }
        // Not renewed: either lost, or a claimer holds the row right now.
        let run = self.run(run_id).await?;
        Ok(Heartbeat {
            owned: run.state == RunState::Running
                && run.owner.as_deref() == Some(owner)
                && run.lease_until_ms.unwrap_or(0) >= now_ms,
            cancel_requested: run.cancel_requested,
        })
    }

    async fn release_run(&self, run_id: &str, owner: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE runs SET owner = NULL, lease_until_ms = 0
             WHERE run_id = $1 AND owner = $2 AND state = 'running'",
        )
        .bind(run_id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(db(format!("release run {run_id}")))?;
        Ok(done.rows_affected() == 1)
    }

    async fn request_cancel(&self, run_id: &str, now_ms: i64) -> Result<RunState> {
        let ctx = format!("cancel run {run_id}");
        let mut tx = self.write_tx(&ctx).await?;
        let ended = sqlx::query(
            "UPDATE runs SET state = 'cancelled', ended_ms = $1, error = 'cancelled by a user',
                cancel_requested = 1
             WHERE run_id = $2 AND state = 'queued'",
        )
        .bind(now_ms)
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(db(ctx.clone()))?;
        if ended.rows_affected() == 1 {
            sqlx::query(
                "UPDATE task_instances SET state = 'skipped', ended_ms = $1
                 WHERE run_id = $2 AND state IN ('queued', 'up_for_retry')",
            )
            .bind(now_ms)
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?;
        } else {
            sqlx::query(
                "UPDATE runs SET cancel_requested = 1 WHERE run_id = $1 AND state = 'running'",
            )
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?;
        }
        tx.commit().await.map_err(db(ctx))?;
        Ok(self.run(run_id).await?.state)
    }

    async fn requeue_run(&self, run_id: &str, tasks: &[String], now_ms: i64) -> Result<()> {
        let ctx = format!("clear run {run_id}");
        let mut tx = self.write_tx(&ctx).await?;
        let state: Option<String> = sqlx::query("SELECT state FROM runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?
            .map(|r| r.try_get("state"))
            .transpose()
            .map_err(db(ctx.clone()))?;
        let Some(state) = state else {
            return Err(Error::RunNotFound(run_id.into()));
        };
        let state: RunState = state.parse()?;
        if !state.is_terminal() {
            return Err(Error::Conflict(format!(
                "run '{run_id}' is {state}; only an ended run can be cleared"
            )));
        }
        for t in tasks {
            sqlx::query(
                "UPDATE task_instances SET state = 'queued', ended_ms = NULL, error = NULL
                 WHERE run_id = $1 AND task_id = $2",
            )
            .bind(run_id)
            .bind(t)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?;
        }
        sqlx::query(
            "UPDATE runs SET state = 'queued', owner = NULL, lease_until_ms = NULL,
                ended_ms = NULL, error = NULL, cancel_requested = 0
             WHERE run_id = $1",
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(db(ctx.clone()))?;
        tx.commit().await.map_err(db(ctx))?;
        tracing::info!(
            run = run_id,
            tasks = tasks.len(),
            at = now_ms,
            "run cleared"
        );
        Ok(())
    }

    async fn count_runs(&self, f: &RunFilter) -> Result<u64> {
        let n: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM runs WHERE {FILTER_SQL}"
        ))
        .bind(f.pipeline.as_deref().unwrap_or(""))
        .bind(f.state.map(|s| s.as_str()).unwrap_or(""))
        .bind(f.backfill_id.as_deref().unwrap_or(""))
        .fetch_one(&self.pool)
        .await
        .map_err(db("count runs"))?
        .try_get("n")
        .map_err(db("count runs"))?;
        Ok(n as u64)
    }

    async fn scheduler_heartbeat(&self, i: &SchedulerInfo) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedulers (owner, host, pid, started_ms, heartbeat_ms, stopped)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (owner) DO UPDATE SET heartbeat_ms = $5, stopped = $6",
        )
        .bind(&i.owner)
        .bind(&i.host)
        .bind(i64::from(i.pid))
        .bind(i.started_ms)
        .bind(i.heartbeat_ms)
        .bind(i64::from(i.stopped))
        .execute(&self.pool)
        .await
        .map_err(db("scheduler heartbeat"))?;
        Ok(())
    }

    async fn schedulers(&self) -> Result<Vec<SchedulerInfo>> {
        let rows = sqlx::query(
            "SELECT owner, host, pid, started_ms, heartbeat_ms, stopped FROM schedulers
             ORDER BY heartbeat_ms DESC LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("list schedulers"))?;
        rows.iter()
            .map(|r| {
                let e = || db("read scheduler");
                Ok(SchedulerInfo {
                    owner: r.try_get("owner").map_err(e())?,
                    host: r.try_get("host").map_err(e())?,
                    pid: r.try_get::<i64, _>("pid").map_err(e())? as u32,
                    started_ms: r.try_get("started_ms").map_err(e())?,
                    heartbeat_ms: r.try_get("heartbeat_ms").map_err(e())?,
                    stopped: r.try_get::<i64, _>("stopped").map_err(e())? != 0,
                })
            })
            .collect()
    }

    async fn set_paused(&self, pipeline: &str, paused: bool, now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO pipeline_flags (pipeline, paused, updated_ms) VALUES ($1, $2, $3)
             ON CONFLICT (pipeline) DO UPDATE SET paused = $2, updated_ms = $3",
        )
        .bind(pipeline)
        .bind(i64::from(paused))
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db(format!("pause {pipeline}")))?;
        Ok(())
    }

    async fn paused(&self) -> Result<BTreeSet<String>> {
        let rows = sqlx::query("SELECT pipeline FROM pipeline_flags WHERE paused = 1")
            .fetch_all(&self.pool)
            .await
            .map_err(db("read pause flags"))?;
        rows.iter()
            .map(|r| r.try_get("pipeline").map_err(db("read pause flags")))
            .collect()
    }

    async fn trigger_value(&self, pipeline: &str, key: &str) -> Result<Option<String>> {
        sqlx::query("SELECT value FROM trigger_state WHERE pipeline = $1 AND trigger_key = $2")
            .bind(pipeline)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read trigger state"))?
            .map(|r| r.try_get("value"))
            .transpose()
            .map_err(db("read trigger state"))
    }

    async fn set_trigger_value(&self, pipeline: &str, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO trigger_state (pipeline, trigger_key, value) VALUES ($1, $2, $3)
             ON CONFLICT (pipeline, trigger_key) DO UPDATE SET value = $3",
        )
        .bind(pipeline)
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(db("write trigger state"))?;
        Ok(())
    }

    async fn create_backfill(&self, b: &BackfillRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO backfills (backfill_id, pipeline, start_date, end_date, next_date,
                max_parallel, params, state, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&b.backfill_id)
        .bind(&b.pipeline)
        .bind(&b.start_date)
        .bind(&b.end_date)
        .bind(&b.next_date)
        .bind(i64::from(b.max_parallel))
        .bind(serde_json::to_string(&b.params).unwrap_or_default())
        .bind(&b.state)
        .bind(b.created_ms)
        .execute(&self.pool)
        .await
        .map_err(db(format!("create backfill {}", b.backfill_id)))?;
        Ok(())
    }

    async fn backfills(&self, active_only: bool) -> Result<Vec<BackfillRecord>> {
        let rows = sqlx::query(
            "SELECT backfill_id, pipeline, start_date, end_date, next_date, max_parallel, params,
                state, created_ms
             FROM backfills WHERE ($1 = 0 OR state = 'running')
             ORDER BY created_ms DESC LIMIT 500",
        )
        .bind(i64::from(active_only))
        .fetch_all(&self.pool)
        .await
        .map_err(db("list backfills"))?;
        rows.iter().map(backfill_from).collect()
    }

    async fn update_backfill(&self, id: &str, next_date: &str, state: &str) -> Result<()> {
        sqlx::query("UPDATE backfills SET next_date = $1, state = $2 WHERE backfill_id = $3")
            .bind(next_date)
            .bind(state)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db(format!("update backfill {id}")))?;
        Ok(())
    }

    async fn set_pool(&self, name: &str, slots: u32, description: Option<&str>) -> Result<()> {
        sqlx::query(
            "INSERT INTO pools (name, slots, description) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET slots = $2, description = $3",
        )
        .bind(name)
        .bind(i64::from(slots))
        .bind(description)
        .execute(&self.pool)
        .await
        .map_err(db(format!("set pool {name}")))?;
        Ok(())
    }

    async fn pools(&self) -> Result<Vec<PoolRecord>> {
        let rows = sqlx::query(
            "SELECT p.name AS name, p.slots AS slots, p.description AS description,
                (SELECT COUNT(*) FROM pool_slots s WHERE s.pool = p.name) AS used
             FROM pools p ORDER BY p.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("list pools"))?;
        rows.iter()
            .map(|r| {
                let e = || db("read pool");
                Ok(PoolRecord {
                    name: r.try_get("name").map_err(e())?,
                    slots: r.try_get::<i64, _>("slots").map_err(e())? as u32,
                    used: r.try_get::<i64, _>("used").map_err(e())? as u32,
                    description: r.try_get("description").map_err(e())?,
                })
            })
            .collect()
    }

    async fn acquire_slot(
        &self,
        pool: &str,
        run_id: &str,
        task_id: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let ctx = format!("take a slot of pool {pool}");
        let mut tx = self.write_tx(&ctx).await?;
        // Locks the pool's row, so counting and taking are one step.
        let slots: Option<i64> = sqlx::query(&format!(
            "SELECT slots FROM pools WHERE name = $1{}",
            if self.postgres { " FOR UPDATE" } else { "" }
        ))
        .bind(pool)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(ctx.clone()))?
        .map(|r| r.try_get("slots"))
        .transpose()
        .map_err(db(ctx.clone()))?;
        let Some(slots) = slots else {
            return Err(Error::NotFound {
                what: "pool",
                name: pool.to_string(),
            });
        };
        let held = sqlx::query("SELECT pool FROM pool_slots WHERE run_id = $1 AND task_id = $2")
            .bind(run_id)
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?;
        if held.is_some() {
            tx.commit().await.map_err(db(ctx))?;
            return Ok(true);
        }
        let used: i64 = sqlx::query("SELECT COUNT(*) AS n FROM pool_slots WHERE pool = $1")
            .bind(pool)
            .fetch_one(&mut *tx)
            .await
            .map_err(db(ctx.clone()))?
            .try_get("n")
            .map_err(db(ctx.clone()))?;
        if used >= slots {
            tx.rollback().await.map_err(db(ctx))?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO pool_slots (pool, run_id, task_id, acquired_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(pool)
        .bind(run_id)
        .bind(task_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db(ctx.clone()))?;
        tx.commit().await.map_err(db(ctx))?;
        Ok(true)
    }

    async fn release_slots(&self, run_id: &str, task_id: Option<&str>) -> Result<()> {
        sqlx::query("DELETE FROM pool_slots WHERE run_id = $1 AND ($2 = '' OR task_id = $2)")
            .bind(run_id)
            .bind(task_id.unwrap_or(""))
            .execute(&self.pool)
            .await
            .map_err(db(format!("free pool slots of run {run_id}")))?;
        Ok(())
    }

    async fn create_token(&self, t: &TokenRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (token_id, name, role, secret_hash, created_ms, revoked, pii)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&t.token_id)
        .bind(&t.name)
        .bind(&t.role)
        .bind(&t.secret_hash)
        .bind(t.created_ms)
        .bind(i64::from(t.revoked))
        .bind(i64::from(t.pii))
        .execute(&self.pool)
        .await
        .map_err(db("create token"))?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        sqlx::query(
            "SELECT token_id, name, role, secret_hash, created_ms, revoked, pii FROM api_tokens
             WHERE secret_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("find token"))?
        .as_ref()
        .map(token_from)
        .transpose()
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(
            "SELECT token_id, name, role, secret_hash, created_ms, revoked, pii FROM api_tokens
             ORDER BY created_ms",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("list tokens"))?;
        rows.iter().map(token_from).collect()
    }

    async fn revoke_token(&self, token_id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE api_tokens SET revoked = 1 WHERE token_id = $1")
            .bind(token_id)
            .execute(&self.pool)
            .await
            .map_err(db("revoke token"))?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn run(id: &str, pipeline: &str, created: i64, key: Option<&str>) -> RunRecord {
        let mut r = RunRecord::queued(id.into(), pipeline, BTreeMap::new(), "manual", created);
        r.dedup_key = key.map(String::from);
        r
    }

    /// Coordination behaviour every backend must show. `tag` keeps ids
    /// apart between runs against a shared database.
    pub(crate) async fn suite(store: &SqlStateStore, tag: &str) {
        let p = format!("p_{tag}");
        let q = format!("q_{tag}");
        let id = |n: &str| format!("{tag}-{n}");
        // Dedup keys make triggering idempotent.
        let key = format!("cron:{p}:1");
        assert!(
            store
                .enqueue_run(&run(&id("a"), &p, 1, Some(&key)))
                .await
                .unwrap()
        );
        assert!(
            !store
                .enqueue_run(&run(&id("b"), &p, 2, Some(&key)))
                .await
                .unwrap()
        );
        assert!(
            store
                .enqueue_run(&run(&id("c"), &p, 3, None))
                .await
                .unwrap()
        );
        assert!(
            store
                .enqueue_run(&run(&id("d"), &q, 4, None))
                .await
                .unwrap()
        );
        // One run of p at a time; q is unknown to this scheduler.
        let limits = ClaimLimits {
            max_runs: 10,
            per_pipeline: BTreeMap::from([(p.clone(), 1)]),
        };
        let got = store.claim_runs("s1", 100, 50, &limits).await.unwrap();
        let ids: Vec<_> = got.iter().map(|r| r.run_id.clone()).collect();
        assert_eq!(ids, vec![id("a")]);
        // A second scheduler gets nothing while the lease holds.
        assert!(
            store
                .claim_runs("s2", 120, 50, &limits)
                .await
                .unwrap()
                .is_empty()
        );
        let hb = store.heartbeat_run(&id("a"), "s1", 140, 50).await.unwrap();
        assert_eq!(
            hb,
            Heartbeat {
                owned: true,
                cancel_requested: false
            }
        );
        assert!(
            !store
                .heartbeat_run(&id("a"), "s2", 140, 50)
                .await
                .unwrap()
                .owned
        );
        // The lease (renewed to 190) expires; s2 takes over the oldest.
        let got = store.claim_runs("s2", 200, 50, &limits).await.unwrap();
        assert_eq!(got[0].run_id, id("a"));
        assert_eq!(got[0].owner.as_deref(), Some("s2"));
        assert!(
            !store
                .heartbeat_run(&id("a"), "s1", 210, 50)
                .await
                .unwrap()
                .owned
        );
        // Cancel: queued ends at once, running is flagged.
        assert_eq!(
            store.request_cancel(&id("c"), 220).await.unwrap(),
            RunState::Cancelled
        );
        assert_eq!(
            store.request_cancel(&id("a"), 220).await.unwrap(),
            RunState::Running
        );
        assert!(
            store
                .heartbeat_run(&id("a"), "s2", 230, 50)
                .await
                .unwrap()
                .cancel_requested
        );
        // Clearing needs an ended run.
        assert!(matches!(
            store.requeue_run(&id("a"), &[], 240).await,
            Err(Error::Conflict(_))
        ));
        store
            .set_run_state(&id("a"), RunState::Failed, 240, Some("x"))
            .await
            .unwrap();
        store
            .set_task_state(&id("a"), "t", crate::TaskState::Failed, 240, Some("x"))
            .await
            .unwrap();
        store
            .requeue_run(&id("a"), &["t".into()], 250)
            .await
            .unwrap();
        let a = store.run(&id("a")).await.unwrap();
        assert_eq!(
            (a.state, a.owner, a.cancel_requested),
            (RunState::Queued, None, false)
        );
        assert_eq!(
            store.tasks(&id("a")).await.unwrap()[0].state,
            crate::TaskState::Queued
        );
        // Paused pipelines are not claimed.
        store.set_paused(&p, true, 260).await.unwrap();
        assert!(store.paused().await.unwrap().contains(&p));
        assert!(
            store
                .claim_runs("s1", 300, 50, &limits)
                .await
                .unwrap()
                .is_empty()
        );
        store.set_paused(&p, false, 270).await.unwrap();
        assert_eq!(
            store
                .claim_runs("s1", 300, 50, &limits)
                .await
                .unwrap()
                .len(),
            1
        );
        // Release hands a run back at once.
        assert!(store.release_run(&id("a"), "s1").await.unwrap());
        assert_eq!(
            store
                .claim_runs("s2", 301, 50, &limits)
                .await
                .unwrap()
                .len(),
            1
        );

        // Pools.
        let pool = format!("pool_{tag}");
        assert!(matches!(
            store.acquire_slot(&pool, "r", "t", 1).await,
            Err(Error::NotFound { .. })
        ));
        store.set_pool(&pool, 1, Some("db")).await.unwrap();
        assert!(store.acquire_slot(&pool, &id("r1"), "t", 1).await.unwrap());
        assert!(store.acquire_slot(&pool, &id("r1"), "t", 1).await.unwrap());
        assert!(!store.acquire_slot(&pool, &id("r2"), "t", 1).await.unwrap());
        store.release_slots(&id("r1"), None).await.unwrap();
        assert!(store.acquire_slot(&pool, &id("r2"), "t", 1).await.unwrap());
        let pools = store.pools().await.unwrap();
        let mine = pools.iter().find(|x| x.name == pool).unwrap();
        assert_eq!((mine.slots, mine.used), (1, 1));

        // Trigger watermarks, backfills and tokens.
        assert_eq!(store.trigger_value(&p, "cron").await.unwrap(), None);
        store.set_trigger_value(&p, "cron", "5").await.unwrap();
        store.set_trigger_value(&p, "cron", "6").await.unwrap();
        assert_eq!(
            store.trigger_value(&p, "cron").await.unwrap().as_deref(),
            Some("6")
        );
        let b = BackfillRecord {
            backfill_id: id("bf"),
            pipeline: p.clone(),
            start_date: "2026-11-01".into(),
            end_date: "2026-11-03".into(),
            next_date: "2026-11-01".into(),
            max_parallel: 2,
            params: BTreeMap::new(),
            state: "running".into(),
            created_ms: 1,
        };
        store.create_backfill(&b).await.unwrap();
        store
            .update_backfill(&b.backfill_id, "2026-11-04", "success")
            .await
            .unwrap();
        let all = store.backfills(false).await.unwrap();
        let got = all.iter().find(|x| x.backfill_id == b.backfill_id).unwrap();
        assert_eq!(
            (got.next_date.as_str(), got.state.as_str()),
            ("2026-11-04", "success")
        );
        assert!(
            !store
                .backfills(true)
                .await
                .unwrap()
                .iter()
                .any(|x| x.backfill_id == b.backfill_id)
        );
        let t = TokenRecord {
            token_id: id("tok"),
            name: "ci".into(),
            role: "operator".into(),
            secret_hash: format!("hash-{tag}"),
            created_ms: 1,
            revoked: false,
            pii: true,
        };
        store.create_token(&t).await.unwrap();
        assert_eq!(
            store.token_by_hash(&t.secret_hash).await.unwrap(),
            Some(t.clone())
        );
        assert!(store.revoke_token(&t.token_id).await.unwrap());
        assert!(
            store
                .token_by_hash(&t.secret_hash)
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
        let info = SchedulerInfo {
            owner: id("sched"),
            host: "h".into(),
            pid: 1,
            started_ms: 1,
            heartbeat_ms: 2,
            stopped: false,
        };
        store.scheduler_heartbeat(&info).await.unwrap();
        assert!(store.schedulers().await.unwrap().contains(&info));
    }
}
