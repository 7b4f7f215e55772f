//! OpenLineage 2-0-2 RunEvents: built for Gridata's runs and tasks, and
//! read from other tools (dbt, Spark…) into Gridata's lineage graph.
//!
//! Invariants:
//! - Run ids are UUIDs derived from Gridata's ids (a run; a run and task),
//!   so an event emitted again after a resume or retry has the same
//!   `(runId, eventType)` and is deduplicated downstream.
//! - Every facet carries `_producer` and a `_schemaURL` naming the facet
//!   version whose fields it fills; tests validate events against those
//!   schemas.
//! - Dataset names: tables keep their catalog name (`sales.orders`) in the
//!   table namespace; file patterns (`raw:orders/*.csv`) become their zone
//!   path in the file namespace. [`Naming::dataset`] and
//!   [`Naming::graph_name`] are inverse, so received events about our own
//!   datasets join the same graph nodes.

use gridata_state::LineageEdge;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The RunEvent schema.
pub const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
/// What produced the events.
pub const PRODUCER: &str = concat!(
    "https://github.com/gridata/gridata/tree/v",
    env!("CARGO_PKG_VERSION")
);

const FACETS: &str = "https://openlineage.io/spec/facets";

/// A facet with `_producer` and `_schemaURL` (`<version>/<Name>.json`).
fn facet(version_and_name: &str, body: Value) -> Value {
    let name = version_and_name.rsplit('/').next().unwrap_or_default();
    let mut m = match body {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("_producer".into(), PRODUCER.into());
    m.insert(
        "_schemaURL".into(),
        format!("{FACETS}/{version_and_name}.json#/$defs/{name}").into(),
    );
    Value::Object(m)
}

/// A UUID (version 8, name-based) from text: the same text, the same id.
pub fn uuid_for(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex_lower(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The OpenLineage run id of a Gridata run.
pub fn run_uuid(run_id: &str) -> String {
    uuid_for(&format!("gridata-run:{run_id}"))
}

/// The OpenLineage run id of an attempt of a task of a Gridata run.
pub fn task_uuid(run_id: &str, task_id: &str, attempt: u32) -> String {
    uuid_for(&format!("gridata-task:{run_id}/{task_id}#{attempt}"))
}

/// How Gridata's jobs and datasets are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// Namespace of jobs (pipelines and their tasks).
    pub jobs: String,
    /// Namespace of tables: the catalog's warehouse.
    pub tables: String,
    /// Namespace of files: the root of the zones.
    pub files: String,
}

impl Naming {
    /// `(namespace, name)` of a dataset of Gridata's graph: a table
    /// `ns.t`, a file pattern `<zone>:<pattern>`, or `task:<id>`.
    pub fn dataset(&self, graph_name: &str) -> (String, String) {
        if let Some(task) = graph_name.strip_prefix("task:") {
            return (self.jobs.clone(), format!("task/{task}"));
        }
        match graph_name.split_once(':') {
            Some((zone, pattern)) if !zone.contains('.') && !zone.contains('/') => {
                (self.files.clone(), format!("{zone}/{pattern}"))
            }
            _ => (self.tables.clone(), graph_name.to_string()),
        }
    }

    /// The graph's name for a dataset of an event: ours map back, others
    /// are `<namespace>/<name>`.
    pub fn graph_name(&self, namespace: &str, name: &str) -> String {
        if namespace == self.tables {
            name.to_string()
        } else if namespace == self.files
            && let Some((zone, pattern)) = name.split_once('/')
        {
            format!("{zone}:{pattern}")
        } else if namespace == self.jobs
            && let Some(task) = name.strip_prefix("task/")
        {
            format!("task:{task}")
        } else {
            format!("{}/{}", namespace.trim_end_matches('/'), name)
        }
    }
}

/// `START`, `COMPLETE`, `FAIL`, `ABORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Began.
    Start,
    /// Succeeded.
    Complete,
    /// Failed.
    Fail,
    /// Cancelled.
    Abort,
}

impl EventType {
    /// The spec's name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Complete => "COMPLETE",
            EventType::Fail => "FAIL",
            EventType::Abort => "ABORT",
        }
    }
}

/// A dataset read or written, with what Gridata knows of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetInfo {
    /// The graph's name (`sales.orders`, `raw:orders/*.csv`).
    pub name: String,
    /// Columns and their types.
    pub schema: Vec<(String, String)>,
    /// The snapshot read or written.
    pub snapshot_id: Option<i64>,
    /// Rows written (outputs).
    pub rows: Option<u64>,
    /// Data files written (outputs).
    pub files: Option<u64>,
    /// Column lineage, as [`crate::ColumnLineage::to_json`] writes it.
    pub lineage: Option<Value>,
    /// Quality assertions on it: (check name, passed, column, severity).
    pub assertions: Vec<(String, bool, Option<String>, String)>,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec<'a> {
    /// Its type.
    pub event_type: EventType,
    /// When (ms).
    pub time_ms: i64,
    /// The pipeline.
    pub pipeline: &'a str,
    /// The Gridata run.
    pub run_id: &'a str,
    /// The task, its kind and the attempt (task events), or `None` (run
    /// events).
    pub task: Option<(&'a str, &'a str, u32)>,
    /// The pipeline's description.
    pub description: Option<&'a str>,
    /// An SQL task's query.
    pub sql: Option<&'a str>,
    /// The error (FAIL).
    pub error: Option<&'a str>,
    /// Datasets read.
    pub inputs: Vec<DatasetInfo>,
    /// Datasets written.
    pub outputs: Vec<DatasetInfo>,
}

/// Build a RunEvent.
pub fn run_event(naming: &Naming, e: &EventSpec<'_>) -> Value {
    let (run_id, job_name) = match e.task {
        Some((task, _, attempt)) => (
            task_uuid(e.run_id, task, attempt),
            format!("{}.{}", e.pipeline, task),
        ),
        None => (run_uuid(e.run_id), e.pipeline.to_string()),
    };
    let mut run_facets = Map::new();
    run_facets.insert(
        "processing_engine".into(),
        facet(
            "1-1-0/ProcessingEngineRunFacet",
            json!({
                "version": env!("CARGO_PKG_VERSION"),
                "name": "gridata",
                "openlineageAdapterVersion": env!("CARGO_PKG_VERSION"),
            }),
        ),
    );
    if e.task.is_some() {
        run_facets.insert(
            "parent".into(),
            facet(
                "1-2-0/ParentRunFacet",
                json!({
                    "run": { "runId": run_uuid(e.run_id) },
                    "job": { "namespace": naming.jobs, "name": e.pipeline },
                    "root": {
                        "run": { "runId": run_uuid(e.run_id) },
                        "job": { "namespace": naming.jobs, "name": e.pipeline },
                    },
                }),
            ),
        );
    }
    if let Some(err) = e.error {
        run_facets.insert(
            "errorMessage".into(),
            facet(
                "1-0-0/ErrorMessageRunFacet",
                json!({ "message": err, "programmingLanguage": "rust" }),
            ),
        );
    }
    let mut job_facets = Map::new();
    job_facets.insert(
        "jobType".into(),
        facet(
            "2-0-4/JobTypeJobFacet",
            json!({
                "processingType": "BATCH",
                "integration": "GRIDATA",
                "jobType": match e.task { Some((_, kind, _)) => kind.to_uppercase(), None => "PIPELINE".into() },
            }),
        ),
    );
    if let Some(d) = e.description {
        job_facets.insert(
            "documentation".into(),
            facet("1-0-1/DocumentationJobFacet", json!({ "description": d })),
        );
    }
    if let Some(q) = e.sql {
        job_facets.insert(
            "sql".into(),
            facet("1-0-1/SQLJobFacet", json!({ "query": q })),
        );
    }
    let time = chrono::DateTime::from_timestamp_millis(e.time_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({
        "eventTime": time,
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "eventType": e.event_type.as_str(),
        "run": { "runId": run_id, "facets": run_facets },
        "job": { "namespace": naming.jobs, "name": job_name, "facets": job_facets },
        "inputs": e.inputs.iter().map(|d| dataset(naming, d, false)).collect::<Vec<_>>(),
        "outputs": e.outputs.iter().map(|d| dataset(naming, d, true)).collect::<Vec<_>>(),
    })
}

fn dataset(naming: &Naming, d: &DatasetInfo, output: bool) -> Value {
    let (namespace, name) = naming.dataset(&d.name);
    let mut facets = Map::new();
    if !d.schema.is_empty() {
        facets.insert(
            "schema".into(),
            facet(
                "1-0-0/SchemaDatasetFacet",
                json!({ "fields": d.schema.iter().map(|(n, t)| json!({ "name": n, "type": t })).collect::<Vec<_>>() }),
            ),
        );
    }
    if let Some(s) = d.snapshot_id {
        facets.insert(
            "version".into(),
            facet(
                "1-0-0/DatasetVersionDatasetFacet",
                json!({ "datasetVersion": s.to_string() }),
            ),
        );
    }
    if let Some(l) = &d.lineage {
        facets.insert("columnLineage".into(), column_lineage(naming, l));
    }
    let assertions = (!d.assertions.is_empty()).then(|| {
        facet(
            "1-2-0/DataQualityAssertionsDatasetFacet",
            json!({
                "assertions": d.assertions.iter().map(|(name, ok, col, severity)| {
                    let mut a = json!({ "assertion": name, "success": ok, "name": name, "severity": severity });
                    if let Some(c) = col {
                        a["column"] = c.clone().into();
                    }
                    a
                }).collect::<Vec<_>>(),
            }),
        )
    });
    let mut v = json!({ "namespace": namespace, "name": name, "facets": facets });
    if output {
        let mut out = Map::new();
        if let Some(rows) = d.rows {
            let mut stats = json!({ "rowCount": rows });
            if let Some(f) = d.files {
                stats["fileCount"] = f.into();
            }
            out.insert(
                "outputStatistics".into(),
                facet("1-0-0/OutputStatisticsOutputDatasetFacet", stats),
            );
        }
        if let Some(a) = assertions {
            // The spec's assertions facet is an input facet; on an output
            // it is a dataset facet describing the written snapshot.
            v["facets"]["dataQualityAssertions"] = a;
        }
        v["outputFacets"] = Value::Object(out);
    } else {
        let mut inp = Map::new();
        if let Some(a) = assertions {
            inp.insert("dataQualityAssertions".into(), a);
        }
        v["inputFacets"] = Value::Object(inp);
    }
    v
}

/// Gridata's lineage JSON as the columnLineage facet; row-level sources
/// (filters, join and group keys) go in `dataset`, as facet 1-2-0 has it.
fn column_lineage(naming: &Naming, l: &Value) -> Value {
    let inputs = |list: &Value| -> Vec<Value> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|src| {
                let (ns, name) = naming.dataset(src["dataset"].as_str().unwrap_or_default());
                json!({
                    "namespace": ns,
                    "name": name,
                    "field": src["field"].as_str().unwrap_or_default(),
                    "transformations": src["transformations"].clone(),
                })
            })
            .collect()
    };
    let mut fields = Map::new();
    for (col, list) in l["fields"].as_object().into_iter().flatten() {
        fields.insert(col.clone(), json!({ "inputFields": inputs(list) }));
    }
    facet(
        "1-1-0/ColumnLineageDatasetFacet",
        json!({ "fields": fields, "dataset": inputs(&l["dataset"]) }),
    )
}

/// What a received event adds to the lineage graph: for each output, its
/// edges (from its columnLineage facet, or dataset to dataset without one).
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// `runId`.
    pub run_id: String,
    /// `eventType` (`OTHER` when absent).
    pub event_type: String,
    /// `job.namespace`.
    pub job_namespace: String,
    /// `job.name`.
    pub job_name: String,
    /// `eventTime`.
    pub event_time: String,
    /// Output dataset (graph name) → its edges; only for `COMPLETE`.
    pub lineage: Vec<(String, Vec<LineageEdge>)>,
}

/// Read an event from another tool. Errors name the missing or wrong field.
pub fn read_event(naming: &Naming, v: &Value, now_ms: i64) -> Result<Received, String> {
    let s = |path: &[&str]| -> Result<String, String> {
        let mut cur = v;
        for p in path {
            cur = &cur[*p];
        }
        cur.as_str()
            .filter(|x| !x.is_empty())
            .map(String::from)
            .ok_or_else(|| format!("`{}` must be a non-empty string", path.join(".")))
    };
    if !v.is_object() {
        return Err("the body must be a JSON object (an OpenLineage RunEvent)".into());
    }
    let event_time = s(&["eventTime"])?;
    chrono::DateTime::parse_from_rfc3339(&event_time)
        .map_err(|e| format!("`eventTime` '{event_time}' is not an ISO-8601 date-time: {e}"))?;
    s(&["producer"])?;
    s(&["schemaURL"])?;
    let run_id = s(&["run", "runId"])?;
    if run_id.len() != 36 || run_id.chars().filter(|c| *c == '-').count() != 4 {
        return Err(format!("`run.runId` '{run_id}' is not a UUID"));
    }
    let job_namespace = s(&["job", "namespace"])?;
    let job_name = s(&["job", "name"])?;
    let event_type = match &v["eventType"] {
        Value::Null => "OTHER".to_string(),
        Value::String(t)
            if ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"].contains(&t.as_str()) =>
        {
            t.clone()
        }
        other => {
            return Err(format!(
                "`eventType` {other} is not START, RUNNING, COMPLETE, ABORT, FAIL or OTHER"
            ));
        }
    };
    let mut lineage = Vec::new();
    if event_type == "COMPLETE" {
        let name_of = |d: &Value, what: &str| -> Result<String, String> {
            match (d["namespace"].as_str(), d["name"].as_str()) {
                (Some(ns), Some(n)) => Ok(naming.graph_name(ns, n)),
                _ => Err(format!("every {what} needs `namespace` and `name`")),
            }
        };
        let inputs: Vec<String> = v["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| name_of(d, "input"))
            .collect::<Result<_, _>>()?;
        let pipeline = format!("{job_namespace}/{job_name}");
        for out in v["outputs"].as_array().into_iter().flatten() {
            let target = name_of(out, "output")?;
            let edge =
                |field: &str, src: String, src_field: &str, subtypes: Vec<String>| LineageEdge {
                    target_dataset: target.clone(),
                    target_field: field.to_string(),
                    source_dataset: src,
                    source_field: src_field.to_string(),
                    subtypes,
                    pipeline: pipeline.clone(),
                    task_id: String::new(),
                    run_id: run_id.clone(),
                    updated_ms: now_ms,
                };
            let subtypes = |f: &Value| -> Vec<String> {
                let t: Vec<String> = f["transformations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| {
                        t["subtype"]
                            .as_str()
                            .or_else(|| t["type"].as_str())
                            .map(str::to_uppercase)
                    })
                    .collect();
                if t.is_empty() {
                    vec!["UNKNOWN".to_string()]
                } else {
                    t
                }
            };
            let mut edges = Vec::new();
            let cl = &out["facets"]["columnLineage"];
            if let Some(fields) = cl["fields"].as_object() {
                for (col, f) in fields {
                    for src in f["inputFields"].as_array().into_iter().flatten() {
                        edges.push(edge(
                            col,
                            name_of(src, "input field")?,
                            src["field"].as_str().unwrap_or_default(),
                            subtypes(src),
                        ));
                    }
                }
                for src in cl["dataset"].as_array().into_iter().flatten() {
                    edges.push(edge(
                        "",
                        name_of(src, "input field")?,
                        src["field"].as_str().unwrap_or_default(),
                        subtypes(src),
                    ));
                }
            } else {
                for i in &inputs {
                    edges.push(edge("", i.clone(), "", vec!["UNKNOWN".into()]));
                }
            }
            lineage.push((target, edges));
        }
    }
    Ok(Received {
        run_id,
        event_type,
        job_namespace,
        job_name,
        event_time,
        lineage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming {
            jobs: "gridata".into(),
            tables: "file:///w/curated".into(),
            files: "file:///w".into(),
        }
    }

    #[test]
    fn ids_are_stable_uuids() {
        let a = task_uuid("r1", "load", 1);
        assert_eq!(a, task_uuid("r1", "load", 1));
        assert_ne!(a, task_uuid("r1", "load", 2));
        assert_ne!(a, task_uuid("r1", "clean", 1));
        assert_ne!(run_uuid("r1"), task_uuid("r1", "", 0));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }

    #[test]
    fn names_round_trip() {
        let n = naming();
        for g in ["sales.orders", "raw:orders/*.csv", "task:clean"] {
            let (ns, name) = n.dataset(g);
            assert_eq!(n.graph_name(&ns, &name), g, "{g}");
        }
        assert_eq!(
            n.graph_name("postgres://db:5432", "shop.public.orders"),
            "postgres://db:5432/shop.public.orders"
        );
    }

    #[test]
    fn a_task_event_has_parent_outputs_and_facets_and_reads_back() {
        let n = naming();
        let lineage = json!({
            "fields": { "id": [{ "dataset": "raw:orders/*.csv", "field": "order_id",
                "transformations": [{ "type": "DIRECT", "subtype": "IDENTITY" }] }] },
            "dataset": [{ "dataset": "raw:orders/*.csv", "field": "status",
                "transformations": [{ "type": "INDIRECT", "subtype": "FILTER" }] }],
        });
        let e = run_event(
            &n,
            &EventSpec {
                event_type: EventType::Complete,
                time_ms: 1_700_000_000_000,
                pipeline: "orders",
                run_id: "r1",
                task: Some(("write", "write", 1)),
                description: None,
                sql: None,
                error: None,
                inputs: vec![],
                outputs: vec![DatasetInfo {
                    name: "sales.orders".into(),
                    schema: vec![("id".into(), "long".into())],
                    snapshot_id: Some(42),
                    rows: Some(10),
                    files: Some(1),
                    lineage: Some(lineage),
                    assertions: vec![("unique_id".into(), true, Some("id".into()), "error".into())],
                }],
            },
        );
        assert_eq!(e["eventTime"], "2023-11-14T22:13:20.000Z");
        assert_eq!(e["run"]["facets"]["parent"]["run"]["runId"], run_uuid("r1"));
        assert_eq!(e["job"]["name"], "orders.write");
        let out = &e["outputs"][0];
        assert_eq!(out["namespace"], "file:///w/curated");
        assert_eq!(out["facets"]["version"]["datasetVersion"], "42");
        assert_eq!(out["outputFacets"]["outputStatistics"]["rowCount"], 10);
        assert_eq!(
            out["facets"]["columnLineage"]["fields"]["id"]["inputFields"][0]["name"],
            "raw/orders/*.csv"
        );
        for f in out["facets"].as_object().unwrap().values() {
            assert!(f["_schemaURL"].as_str().unwrap().starts_with(FACETS));
        }
        let back = read_event(&n, &e, 5).unwrap();
        assert_eq!(back.event_type, "COMPLETE");
        let (target, edges) = &back.lineage[0];
        assert_eq!(target, "sales.orders");
        assert_eq!(edges.len(), 2);
        assert_eq!(edges[0].source_dataset, "raw:orders/*.csv");
        assert_eq!(edges[0].subtypes, vec!["IDENTITY"]);
        assert_eq!(edges[1].target_field, "");
    }

    #[test]
    fn bad_events_name_the_field() {
        let n = naming();
        let err = read_event(&n, &json!({"eventTime": "2026-01-01T00:00:00Z"}), 0).unwrap_err();
        assert!(err.contains("producer"), "{err}");
        let err = read_event(
            &n,
            &json!({"eventTime": "2026-01-01T00:00:00Z", "producer": "p", "schemaURL": "s",
                "run": {"runId": "nope"}, "job": {"namespace": "a", "name": "b"}}),
            0,
        )
        .unwrap_err();
        assert!(err.contains("run.runId"), "{err}");
    }
}
