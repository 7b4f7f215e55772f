//! The pipeline file format: serde structs that are also the JSON Schema
//! (`gridata pipeline schema`). Every struct denies unknown fields.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::tasks;

/// A pipeline file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Unique id: letters, digits and `_`. The file is `<id>.yaml`.
    pub id: String,
    /// What the pipeline does.
    #[serde(default)]
    pub description: Option<String>,
    /// Owners (people or teams) of the pipeline.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Free tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Typed parameters, given with `--param name=value`.
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    /// When the scheduler starts runs.
    #[serde(default)]
    pub trigger: Trigger,
    /// Defaults for every task.
    #[serde(default)]
    pub defaults: Defaults,
    /// Tasks that may run at the same time within one run.
    #[serde(default = "default_max_active_tasks")]
    pub max_active_tasks: usize,
    /// Runs of this pipeline that may be running at once, across all
    /// schedulers. Default 16.
    #[serde(default = "default_max_active_runs")]
    pub max_active_runs: usize,
    /// Metadata of the tables the pipeline writes, by `namespace.table`.
    #[serde(default)]
    pub datasets: BTreeMap<String, Dataset>,
    /// The tasks; `depends_on` makes them a DAG.
    pub tasks: Vec<Task>,
}

fn default_max_active_tasks() -> usize {
    4
}

fn default_max_active_runs() -> usize {
    16
}

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// Any text.
    String,
    /// A whole number.
    Int,
    /// `YYYY-MM-DD`; the default may be `today` or `yesterday`.
    Date,
    /// `true` or `false`.
    Bool,
}

/// A typed parameter.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Its type.
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// Value when not given; without one the parameter is required.
    #[serde(default)]
    pub default: Option<String>,
    /// What it means.
    #[serde(default)]
    pub description: Option<String>,
}

/// When the scheduler runs the pipeline. Any combination may be given.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// A cron expression (five fields), e.g. `0 2 * * *`.
    #[serde(default)]
    pub cron: Option<String>,
    /// Time zone of the cron expression (IANA name). Default `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Run missed schedules after a pause or outage.
    #[serde(default)]
    pub catchup: bool,
    /// Start a run when a file matching this pattern arrives.
    #[serde(default)]
    pub files: Option<FileTrigger>,
    /// Start a run when any of these tables gets a new snapshot.
    #[serde(default)]
    pub tables: Vec<String>,
}

/// A file-arrival trigger.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileTrigger {
    /// The zone watched. Default `raw`.
    #[serde(default = "raw_zone")]
    pub zone: ZoneName,
    /// A path pattern with `{date}` (becomes the `date` parameter) and `*`.
    pub path: String,
}

/// Retry and timeout defaults.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Attempts after the first. Default 2 (three attempts in all).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry. Default `5m`.
    #[serde(default = "default_retry_delay")]
    pub retry_delay: Dur,
    /// Each further wait is the last times this. Default 3 (5m, 15m).
    #[serde(default = "default_backoff")]
    pub retry_backoff: f64,
    /// No wait is longer than this. Default `1h`.
    #[serde(default = "default_max_retry_delay")]
    pub max_retry_delay: Dur,
    /// Time limit of one attempt. Default `1h`.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Time limit of a whole run. Default `6h`.
    #[serde(default = "default_run_timeout")]
    pub run_timeout: Dur,
}

fn default_retries() -> u32 {
    2
}
fn default_retry_delay() -> Dur {
    Dur(std::time::Duration::from_secs(300))
}
fn default_backoff() -> f64 {
    3.0
}
fn default_max_retry_delay() -> Dur {
    Dur(std::time::Duration::from_secs(3600))
}
fn default_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(3600))
}
fn default_run_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(6 * 3600))
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            retries: default_retries(),
            retry_delay: default_retry_delay(),
            retry_backoff: default_backoff(),
            max_retry_delay: default_max_retry_delay(),
            timeout: default_timeout(),
            run_timeout: default_run_timeout(),
        }
    }
}

/// Metadata of a dataset the pipeline writes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// What it holds.
    #[serde(default)]
    pub description: Option<String>,
    /// Owners.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Tags, such as `pii` or `gold`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Business domain.
    #[serde(default)]
    pub domain: Option<String>,
    /// Column descriptions.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

/// A task: common settings and exactly one kind.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Unique id in the pipeline.
    pub id: String,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
    /// Tasks that must succeed first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Attempts after the first; default from `defaults`.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Wait before the first retry; default from `defaults`.
    #[serde(default)]
    pub retry_delay: Option<Dur>,
    /// Time limit of one attempt; default from `defaults`.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// A pool (created with `gridata pool set`) whose slots limit how many
    /// tasks run at once across all pipelines and schedulers.
    #[serde(default)]
    pub pool: Option<String>,
    /// Wait for files.
    #[serde(default)]
    pub sense: Option<tasks::sense::Sense>,
    /// Check a file before reading it.
    #[serde(default)]
    pub validate_file: Option<tasks::validate_file::ValidateFile>,
    /// A SQL query over named inputs.
    #[serde(default)]
    pub sql: Option<tasks::sql::Sql>,
    /// Row rules; failing rows are quarantined.
    #[serde(default)]
    pub validate_rows: Option<tasks::validate_rows::ValidateRows>,
    /// Write into an Iceberg table.
    #[serde(default)]
    pub write: Option<tasks::write::Write>,
    /// Quality checks; `error` checks gate publishing.
    #[serde(default)]
    pub quality: Option<tasks::quality::Quality>,
    /// Move processed files to the archive zone.
    #[serde(default)]
    pub archive: Option<tasks::archive::Archive>,
    /// POST JSON to a URL.
    #[serde(default)]
    pub notify: Option<tasks::notify::Notify>,
    /// Run a program.
    #[serde(default)]
    pub command: Option<tasks::command::Command>,
}

/// The closed set of task kinds.
#[derive(Debug, Clone)]
pub enum TaskKind {
    /// See [`tasks::sense`].
    Sense(tasks::sense::Sense),
    /// See [`tasks::validate_file`].
    ValidateFile(tasks::validate_file::ValidateFile),
    /// See [`tasks::sql`].
    Sql(tasks::sql::Sql),
    /// See [`tasks::validate_rows`].
    ValidateRows(tasks::validate_rows::ValidateRows),
    /// See [`tasks::write`].
    Write(tasks::write::Write),
    /// See [`tasks::quality`].
    Quality(tasks::quality::Quality),
    /// See [`tasks::archive`].
    Archive(tasks::archive::Archive),
    /// See [`tasks::notify`].
    Notify(tasks::notify::Notify),
    /// See [`tasks::command`].
    Command(tasks::command::Command),
}

/// The kind names, in the order of [`TaskKind`].
pub const KINDS: [&str; 9] = [
    "sense",
    "validate_file",
    "sql",
    "validate_rows",
    "write",
    "quality",
    "archive",
    "notify",
    "command",
];

impl TaskKind {
    /// The kind's name in pipeline files.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sense(_) => KINDS[0],
            Self::ValidateFile(_) => KINDS[1],
            Self::Sql(_) => KINDS[2],
            Self::ValidateRows(_) => KINDS[3],
            Self::Write(_) => KINDS[4],
            Self::Quality(_) => KINDS[5],
            Self::Archive(_) => KINDS[6],
            Self::Notify(_) => KINDS[7],
            Self::Command(_) => KINDS[8],
        }
    }
}

impl Task {
    /// The kinds set on this task (valid tasks have exactly one).
    pub fn kinds(&self) -> Vec<TaskKind> {
        let mut out = Vec::new();
        if let Some(k) = &self.sense {
            out.push(TaskKind::Sense(k.clone()));
        }
        if let Some(k) = &self.validate_file {
            out.push(TaskKind::ValidateFile(k.clone()));
        }
        if let Some(k) = &self.sql {
            out.push(TaskKind::Sql(k.clone()));
        }
        if let Some(k) = &self.validate_rows {
            out.push(TaskKind::ValidateRows(k.clone()));
        }
        if let Some(k) = &self.write {
            out.push(TaskKind::Write(k.clone()));
        }
        if let Some(k) = &self.quality {
            out.push(TaskKind::Quality(k.clone()));
        }
        if let Some(k) = &self.archive {
            out.push(TaskKind::Archive(k.clone()));
        }
        if let Some(k) = &self.notify {
            out.push(TaskKind::Notify(k.clone()));
        }
        if let Some(k) = &self.command {
            out.push(TaskKind::Command(k.clone()));
        }
        out
    }

    /// The task's one kind.
    pub fn kind(&self) -> TaskKind {
        self.kinds()
            .into_iter()
            .next()
            .expect("validated tasks have a kind")
    }
}

/// Where a task reads rows from: exactly one of `task`, `table`, `file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The output of an earlier task (it must be upstream).
    #[serde(default)]
    pub task: Option<String>,
    /// A table, `namespace.table`.
    #[serde(default)]
    pub table: Option<String>,
    /// A file path (templated) in `zone`; read as text columns plus
    /// `_source_file` and `_source_line`.
    #[serde(default)]
    pub file: Option<String>,
    /// Zone of `file`. Default `raw` (falling back to `archive` for
    /// files already archived, so reruns work).
    #[serde(default)]
    pub zone: Option<ZoneName>,
    /// Format of `file`; default from its extension.
    #[serde(default)]
    pub format: Option<FileFormat>,
}

impl Input {
    /// What the input names, for messages.
    pub fn describe(&self) -> String {
        match (&self.task, &self.table, &self.file) {
            (Some(t), _, _) => format!("task '{t}'"),
            (_, Some(t), _) => format!("table '{t}'"),
            (_, _, Some(f)) => format!("file '{f}'"),
            _ => "nothing".into(),
        }
    }
}

/// A raw file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// CSV with a header row.
    Csv,
    /// JSON lines.
    Json,
    /// Parquet.
    Parquet,
}

impl FileFormat {
    /// The format a path's extension implies (the same rule as
    /// `gridata table import`; compressed files are not landed yet).
    pub fn from_path(path: &str) -> Option<Self> {
        use gridata_engine::ImportFormat;
        if path.to_ascii_lowercase().ends_with(".gz") {
            return None;
        }
        ImportFormat::from_path(path).map(|f| match f {
            ImportFormat::Csv => Self::Csv,
            ImportFormat::Json => Self::Json,
            ImportFormat::Parquet => Self::Parquet,
        })
    }
}

/// A storage zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ZoneName {
    /// Landing files.
    Raw,
    /// Intermediate data of runs.
    Staging,
    /// The Iceberg warehouse.
    Curated,
    /// Processed raw files.
    Archive,
    /// Quarantined files and rows.
    Rejected,
}

impl ZoneName {
    /// The storage zone.
    pub fn zone(self) -> gridata_core::Zone {
        use gridata_core::Zone;
        match self {
            Self::Raw => Zone::Raw,
            Self::Staging => Zone::Staging,
            Self::Curated => Zone::Curated,
            Self::Archive => Zone::Archive,
            Self::Rejected => Zone::Rejected,
        }
    }
}

pub(crate) fn raw_zone() -> ZoneName {
    ZoneName::Raw
}

/// A duration: `30s`, `5m`, `1h`, `2d`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Dur(pub std::time::Duration);

impl From<Dur> for String {
    fn from(d: Dur) -> String {
        d.to_string()
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        if s > 0 && s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s > 0 && s.is_multiple_of(3_600) {
            write!(f, "{}h", s / 3_600)
        } else if s > 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else if self.0.subsec_millis() > 0 {
            write!(f, "{}ms", self.0.as_millis())
        } else {
            write!(f, "{s}s")
        }
    }
}

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (num, unit) = t.split_at(
            t.find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(t.len()),
        );
        let n: f64 = num
            .parse()
            .map_err(|_| format!("'{s}' is not a duration such as 30s, 5m, 1h or 2d"))?;
        let secs = match unit.trim() {
            "" | "s" => n,
            "ms" => n / 1000.0,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86_400.0,
            other => return Err(format!("unknown duration unit '{other}' in '{s}'")),
        };
        Ok(Dur(std::time::Duration::from_secs_f64(secs)))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Dur(std::time::Duration::from_secs(n))),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: `30s`, `5m`, `1h`, `2d`, or seconds.",
            "anyOf": [
                {"type": "string", "pattern": "^[0-9.]+(ms|s|m|h|d)?$"},
                {"type": "integer", "minimum": 0}
            ]
        })
    }
}

pub use gridata_core::ByteSize;

/// The JSON Schema of pipeline files, for editors.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Pipeline);
    serde_json::to_string_pretty(&schema).expect("schema serializes") + "\n"
}
