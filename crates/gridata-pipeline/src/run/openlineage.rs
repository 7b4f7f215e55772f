//! OpenLineage events of runs and task attempts, queued in the state
//! store's outbox (see `gridata_metadata::deliver` for delivery).
//!
//! Invariants:
//! - A run is one OpenLineage run (`START`, then `COMPLETE`, `FAIL` or
//!   `ABORT`); each task attempt is another, whose parent facet names the
//!   run. Ids derive from Gridata's, so emitting again after a resume
//!   queues nothing new.
//! - Emission never fails a run: a store error is logged, like any other
//!   bookkeeping failure after the work is done.

use std::collections::BTreeSet;
use std::sync::Arc;

use gridata_core::TableName;
use gridata_metadata::openlineage::{self, DatasetInfo, EventSpec, EventType, Naming};
use serde_json::Value;

use super::{Runner, Shared};
use crate::model::{Task, TaskKind};

/// Where a runner's events go.
#[derive(Debug, Clone)]
pub struct Emitter {
    /// Names of jobs and datasets.
    pub naming: Naming,
    /// Outbox sinks, such as `http` and `file`.
    pub sinks: Vec<String>,
}

/// Gridata's OpenLineage names over a lake: jobs in `jobs` (default
/// `gridata`), tables in the curated zone's URI, files under the zones'
/// root URI.
pub fn naming(lake: &gridata_lake::Lake, jobs: Option<&str>) -> Naming {
    let storage = lake.storage();
    let curated = storage
        .zone_uri(gridata_core::Zone::Curated)
        .trim_end_matches('/')
        .to_string();
    let raw = storage
        .zone_uri(gridata_core::Zone::Raw)
        .trim_end_matches('/');
    let files = raw.strip_suffix("/raw").unwrap_or(raw).to_string();
    Naming {
        jobs: jobs.unwrap_or("gridata").to_string(),
        tables: curated,
        files,
    }
}

impl Runner {
    /// The names events use: the emitter's, or the defaults.
    pub fn naming(&self) -> Naming {
        match &self.openlineage {
            Some(e) => e.naming.clone(),
            None => naming(&self.lake, None),
        }
    }

    /// Emit OpenLineage events of every run and task attempt.
    pub fn with_openlineage(mut self, emitter: Emitter) -> Self {
        if !emitter.sinks.is_empty() {
            self.openlineage = Some(Arc::new(emitter));
        }
        self
    }

    async fn queue_event(&self, e: &Emitter, spec: &EventSpec<'_>, ol_run: &str) {
        let event = openlineage::run_event(&e.naming, spec);
        if let Err(err) = self
            .state
            .enqueue_lineage_event(
                &e.sinks,
                ol_run,
                spec.event_type.as_str(),
                &event.to_string(),
                self.clock.now_ms(),
            )
            .await
        {
            tracing::warn!(run = %spec.run_id, error = %err, "could not queue an OpenLineage event");
        }
    }

    /// A table's schema and current snapshot.
    async fn table_info(&self, name: &str) -> DatasetInfo {
        let mut d = DatasetInfo {
            name: name.to_string(),
            ..Default::default()
        };
        if let Ok(tn) = TableName::parse(name)
            && let Ok(t) = self.lake.load_table(&tn).await
        {
            d.schema = t
                .metadata
                .current_schema()
                .as_struct()
                .fields()
                .iter()
                .map(|f| (f.name.clone(), f.field_type.to_string()))
                .collect();
            d.snapshot_id = t.metadata.current_snapshot_id();
        }
        d
    }

    /// The datasets a task's output JSON names: (inputs, outputs).
    async fn task_datasets(
        &self,
        run_id: &str,
        task_id: &str,
        output: &Value,
    ) -> (Vec<DatasetInfo>, Vec<DatasetInfo>) {
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        if let Some(table) = output["table"].as_str() {
            let mut d = self.table_info(table).await;
            if let Some(s) = output["staged_snapshot"].as_i64() {
                d.snapshot_id = Some(s);
            }
            d.rows = output["rows"].as_u64();
            d.files = output["files"].as_u64();
            if !output["lineage"].is_null() {
                let sources: BTreeSet<String> = sources(&output["lineage"]);
                for s in sources {
                    inputs.push(self.source_info(&s).await);
                }
                d.lineage = Some(output["lineage"].clone());
            }
            outputs.push(d);
        } else if let Some(dataset) = output["dataset"].as_str() {
            // A quality task: assertions on the dataset it read.
            let mut d = if dataset.starts_with("task:") {
                DatasetInfo {
                    name: dataset.to_string(),
                    ..Default::default()
                }
            } else {
                self.table_info(dataset).await
            };
            if let Some(s) = output["snapshot"].as_i64() {
                d.snapshot_id = Some(s);
            }
            d.assertions = self
                .state
                .checks(run_id)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.task_id == task_id)
                .map(|c| (c.name, c.passed, None, c.severity))
                .collect();
            inputs.push(d);
        }
        (inputs, outputs)
    }

    async fn source_info(&self, name: &str) -> DatasetInfo {
        if name.contains(':') {
            DatasetInfo {
                name: name.to_string(),
                ..Default::default()
            }
        } else {
            self.table_info(name).await
        }
    }

    /// A task attempt's event.
    pub(super) async fn emit_task(
        &self,
        shared: &Shared,
        task: &Task,
        attempt: u32,
        event_type: EventType,
        output: Option<&Value>,
        error: Option<&str>,
    ) {
        let Some(e) = self.openlineage.clone() else {
            return;
        };
        let p = &shared.pipeline.pipeline;
        let kind = task.kind();
        let (inputs, outputs) = match output {
            Some(o) => self.task_datasets(&shared.run_id, &task.id, o).await,
            None => (Vec::new(), Vec::new()),
        };
        let sql = match &kind {
            TaskKind::Sql(s) => Some(s.query.as_str()),
            _ => None,
        };
        let spec = EventSpec {
            event_type,
            time_ms: self.clock.now_ms(),
            pipeline: &p.id,
            run_id: &shared.run_id,
            task: Some((&task.id, kind.name(), attempt)),
            description: task.description.as_deref(),
            sql,
            error,
            inputs,
            outputs,
        };
        let id = openlineage::task_uuid(&shared.run_id, &task.id, attempt);
        self.queue_event(&e, &spec, &id).await;
    }

    /// A run's event; the end event lists every table the run wrote.
    pub(super) async fn emit_run(
        &self,
        shared: &Shared,
        event_type: EventType,
        error: Option<&str>,
    ) {
        let Some(e) = self.openlineage.clone() else {
            return;
        };
        let p = &shared.pipeline.pipeline;
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        if event_type == EventType::Complete {
            let mut seen = BTreeSet::new();
            for t in self.state.tasks(&shared.run_id).await.unwrap_or_default() {
                let Some(o) = t
                    .output
                    .as_deref()
                    .and_then(|o| serde_json::from_str::<Value>(o).ok())
                else {
                    continue;
                };
                let Some(table) = o["table"].as_str() else {
                    continue;
                };
                // Published: the table's current snapshot.
                let mut d = self.table_info(table).await;
                d.rows = o["rows"].as_u64();
                d.files = o["files"].as_u64();
                if !o["lineage"].is_null() {
                    for s in sources(&o["lineage"]) {
                        if seen.insert(s.clone()) {
                            inputs.push(self.source_info(&s).await);
                        }
                    }
                    d.lineage = Some(o["lineage"].clone());
                }
                outputs.push(d);
            }
        }
        let spec = EventSpec {
            event_type,
            time_ms: self.clock.now_ms(),
            pipeline: &p.id,
            run_id: &shared.run_id,
            task: None,
            description: p.description.as_deref(),
            sql: None,
            error,
            inputs,
            outputs,
        };
        self.queue_event(&e, &spec, &openlineage::run_uuid(&shared.run_id))
            .await;
    }
}

/// The source datasets of a lineage JSON, tasks excluded.
fn sources(lineage: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |list: &Value| {
        for s in list.as_array().into_iter().flatten() {
            if let Some(d) = s["dataset"].as_str()
                && !d.starts_with("task:")
            {
                out.insert(d.to_string());
            }
        }
    };
    for list in lineage["fields"].as_object().into_iter().flatten() {
        add(list.1);
    }
    add(&lineage["dataset"]);
    out
}
