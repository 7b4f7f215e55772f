//! The home folder and the optional `gridata.yaml` configuration.
//!
//! With no configuration file, everything lives under the home folder:
//! `catalog.db` (SQLite) and `warehouse/<zone>/` on local disk. The file can
//! point storage at S3 and the catalog at PostgreSQL; no other code path
//! changes.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result, SecretRef};

/// The zones of the object store, in the order data flows through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Zone {
    /// Files as they land.
    Raw,
    /// Intermediate outputs of pipelines.
    Staging,
    /// The Iceberg warehouse.
    Curated,
    /// Raw files that were processed.
    Archive,
    /// Files and rows that failed validation, with their reasons.
    Rejected,
}

/// Every zone.
pub const ZONES: [Zone; 5] = [
    Zone::Raw,
    Zone::Staging,
    Zone::Curated,
    Zone::Archive,
    Zone::Rejected,
];

impl Zone {
    /// The zone's folder name.
    pub fn as_str(self) -> &'static str {
        match self {
            Zone::Raw => "raw",
            Zone::Staging => "staging",
            Zone::Curated => "curated",
            Zone::Archive => "archive",
            Zone::Rejected => "rejected",
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `$GRIDATA_HOME/gridata.yaml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the zones live. Default: `<home>/warehouse` on local disk.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Where the Iceberg catalog lives. Default: `<home>/catalog.db`.
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// Where run state (runs, task attempts, logs, check results) lives.
    /// Default: `<home>/state.db`.
    #[serde(default)]
    pub state: StateConfig,
    /// Where OpenLineage RunEvents go. Default: nowhere.
    #[serde(default)]
    pub openlineage: Option<OpenLineageConfig>,
    /// The query engine.
    #[serde(default)]
    pub engine: EngineConfig,
}

/// The in-process query engine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Memory that sorts, aggregations and joins of one process may hold,
    /// such as `2GB`; past it, they spill to temporary files. Joins whose
    /// build side is not known to be small then sort and merge rather than
    /// hash, and no one operator holds more than an eighth of the limit.
    /// Default: no bound. The environment variable `GRIDATA_MEMORY_LIMIT`
    /// overrides it.
    #[serde(default)]
    pub memory_limit: Option<crate::ByteSize>,
}

/// OpenLineage event delivery. Events wait in the state store until each
/// sink accepts them, so an endpoint outage loses none.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenLineageConfig {
    /// Namespace of Gridata's jobs. Default: `gridata`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The endpoint that receives events by POST, such as Marquez's
    /// `http://marquez:5000/api/v1/lineage`.
    #[serde(default)]
    pub url: Option<String>,
    /// A bearer token for the endpoint, literal or a secret reference.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// A file that receives each event as one line of JSON.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// How long `gridata run` waits for delivery before leaving what is
    /// left queued for the next run or `serve`. Default: 10 seconds.
    #[serde(default)]
    pub flush_seconds: Option<u64>,
}

/// The state database of runs and tasks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// A `postgres://` or `sqlite://` URL, literal or a secret reference.
    /// Default: `sqlite://<home>/state.db`.
    #[serde(default)]
    pub url: Option<SecretRef>,
}

/// Object storage for the zones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StorageConfig {
    /// Local disk.
    Local {
        /// Root folder of the zones. Default: `<home>/warehouse`.
        #[serde(default)]
        root: Option<PathBuf>,
    },
    /// S3 or an S3-compatible server such as MinIO.
    S3(S3Config),
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig::Local { root: None }
    }
}

/// S3 settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL, for MinIO or another S3-compatible server. Default: AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region. Default: `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// One bucket for every zone; each zone is a prefix inside it.
    #[serde(default)]
    pub bucket: Option<String>,
    /// Prefix inside `bucket` under which the zone prefixes go.
    #[serde(default)]
    pub prefix: Option<String>,
    /// A bucket per zone, e.g. `{raw: lake-raw, curated: lake-curated}`.
    /// Zones not listed fall back to `bucket` with a prefix.
    #[serde(default)]
    pub buckets: std::collections::BTreeMap<Zone, String>,
    /// Path-style addressing (`endpoint/bucket/key`), as MinIO needs.
    #[serde(default)]
    pub path_style: bool,
    /// Allow plain HTTP endpoints.
    #[serde(default)]
    pub allow_http: bool,
    /// Access key id: literal or `${env:..}` / `${file:..}`.
    #[serde(default)]
    pub access_key_id: Option<SecretRef>,
    /// Secret access key: literal or `${env:..}` / `${file:..}`.
    #[serde(default)]
    pub secret_access_key: Option<SecretRef>,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl S3Config {
    /// The bucket and key prefix of `zone`.
    pub fn location(&self, zone: Zone) -> Option<(String, String)> {
        if let Some(b) = self.buckets.get(&zone) {
            return Some((b.clone(), String::new()));
        }
        let bucket = self.bucket.clone()?;
        let prefix = match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            Some(p) if !p.is_empty() => format!("{p}/{}", zone.as_str()),
            _ => zone.as_str().to_string(),
        };
        Some((bucket, prefix))
    }
}

/// The catalog database.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// A `postgres://` or `sqlite://` URL, literal or a secret reference.
    /// Default: `sqlite://<home>/catalog.db`.
    #[serde(default)]
    pub url: Option<SecretRef>,
    /// The catalog name in the JDBC schema's `catalog_name` column.
    #[serde(default)]
    pub name: Option<String>,
}

/// The Gridata home folder and its configuration.
#[derive(Debug, Clone)]
pub struct Home {
    /// The home folder.
    pub root: PathBuf,
    /// Parsed `gridata.yaml`, or the defaults.
    pub config: Config,
}

impl Home {
    /// The default catalog name, as PyIceberg's `SqlCatalog("gridata", ..)`.
    pub const CATALOG_NAME: &'static str = "gridata";

    /// Open `root`, reading `gridata.yaml` if present. Reads only.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let root = std::path::absolute(&root).map_err(|source| Error::Io {
            path: root.clone(),
            source,
        })?;
        let path = root.join("gridata.yaml");
        let config = if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            Config::parse(&path, &text)?
        } else {
            Config::default()
        };
        Ok(Self { root, config })
    }

    /// The SQLite catalog file of the embedded default.
    pub fn catalog_db(&self) -> PathBuf {
        self.root.join("catalog.db")
    }

    /// The catalog URL: configured, or the embedded SQLite file.
    pub fn catalog_url(&self) -> Result<crate::Secret> {
        match &self.config.catalog.url {
            Some(url) => url.resolve(),
            None => Ok(SecretRef::new(format!(
                "sqlite://{}?mode=rwc",
                self.catalog_db().display()
            ))
            .resolve()?),
        }
    }

    /// The state URL: configured, or the embedded SQLite file
    /// `<home>/state.db`.
    pub fn state_url(&self) -> Result<crate::Secret> {
        match &self.config.state.url {
            Some(url) => url.resolve(),
            None => Ok(SecretRef::new(format!(
                "sqlite://{}?mode=rwc",
                self.root.join("state.db").display()
            ))
            .resolve()?),
        }
    }

    /// The folder of pipeline files: `<home>/pipelines`.
    pub fn pipelines_dir(&self) -> PathBuf {
        self.root.join("pipelines")
    }

    /// The catalog name.
    pub fn catalog_name(&self) -> &str {
        self.config
            .catalog
            .name
            .as_deref()
            .unwrap_or(Self::CATALOG_NAME)
    }

    /// Root of local zones, when storage is local.
    pub fn local_root(&self) -> Option<PathBuf> {
        match &self.config.storage {
            StorageConfig::Local { root } => Some(match root {
                Some(r) if r.is_absolute() => r.clone(),
                Some(r) => self.root.join(r),
                None => self.root.join("warehouse"),
            }),
            StorageConfig::S3(_) => None,
        }
    }
}

impl Config {
    /// Parse and validate, reporting every problem with its place.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let config: Config = serde_saphyr::from_str(text).map_err(|e| Error::InvalidConfig {
            path: path.to_path_buf(),
            problems: vec![e.to_string()],
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(Error::InvalidConfig {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Every semantic problem, at once.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let StorageConfig::S3(s3) = &self.storage {
            for zone in ZONES {
                if s3.location(zone).is_none() {
                    out.push(format!(
                        "storage: zone '{zone}' has no bucket: set storage.bucket or storage.buckets.{zone}"
                    ));
                }
            }
            for (field, v) in [
                ("storage.access_key_id", &s3.access_key_id),
                ("storage.secret_access_key", &s3.secret_access_key),
            ] {
                if let Some(Err(e)) = v.as_ref().map(|v| v.check()) {
                    out.push(format!("{field}: {e}"));
                }
            }
            if let Some(ep) = &s3.endpoint
                && !(ep.starts_with("http://") || ep.starts_with("https://"))
            {
                out.push(format!(
                    "storage.endpoint: '{ep}' must start with http:// or https://"
                ));
            }
        }
        if let Some(Err(e)) = self.catalog.url.as_ref().map(|u| u.check()) {
            out.push(format!("catalog.url: {e}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_home_is_embedded() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        assert_eq!(home.local_root().unwrap(), dir.path().join("warehouse"));
        assert!(
            home.catalog_url()
                .unwrap()
                .expose()
                .starts_with("sqlite://")
        );
        assert_eq!(home.catalog_name(), "gridata");
    }

    #[test]
    fn s3_config_with_prefixes_and_per_zone_buckets() {
        let text = r#"
storage:
  type: s3
  endpoint: http://127.0.0.1:9000
  bucket: lake
  prefix: prod
  buckets:
    raw: landing
  path_style: true
  access_key_id: ${env:AWS_ACCESS_KEY_ID}
  secret_access_key: ${file:/run/secrets/s3}
catalog:
  url: ${env:GRIDATA_CATALOG_URL}
"#;
        let c = Config::parse(Path::new("gridata.yaml"), text).unwrap();
        let StorageConfig::S3(s3) = &c.storage else {
            panic!("expected s3")
        };
        assert_eq!(
            s3.location(Zone::Raw),
            Some(("landing".into(), String::new()))
        );
        assert_eq!(
            s3.location(Zone::Curated),
            Some(("lake".into(), "prod/curated".into()))
        );
    }

    #[test]
    fn unknown_field_is_an_error_with_its_place() {
        let err = Config::parse(
            Path::new("gridata.yaml"),
            "storage:\n  type: local\n  rooot: x\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("gridata.yaml"), "{err}");
        assert!(err.contains("rooot"), "{err}");
    }

    #[test]
    fn every_semantic_problem_is_reported() {
        let text = "storage:\n  type: s3\n  endpoint: ftp://x\n  access_key_id: ${vault:x}\n";
        let err = Config::parse(Path::new("g.yaml"), text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("zone 'raw' has no bucket"), "{err}");
        assert!(err.contains("storage.endpoint"), "{err}");
        assert!(err.contains("storage.access_key_id"), "{err}");
    }
}
