//! Gridata's zones on object storage, local disk or S3, through `object_store`.
//!
//! Invariants:
//! - Every stored file is named by an absolute URI (`file:///…` or
//!   `s3://bucket/…`); that URI is what Iceberg metadata records, so other
//!   engines can open the same files.
//! - Local disk and S3 share every code path above [`Storage::resolve`].

mod error;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use gridata_core::{Home, StorageConfig, ZONES, Zone};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

pub use error::{Error, Result};
pub use object_store;

/// The object stores behind the zones.
#[derive(Debug, Clone)]
pub struct Storage {
    /// Base URI of each zone, without a trailing slash.
    zones: HashMap<Zone, String>,
    /// One store per URI authority: `file://` or `s3://<bucket>`.
    stores: HashMap<String, Arc<dyn ObjectStore>>,
}

/// A file listed in a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Absolute URI.
    pub uri: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, ms since the epoch.
    pub last_modified_ms: i64,
}

impl Storage {
    /// Storage as configured in `home`. Builds clients; makes no request.
    pub fn open(home: &Home) -> Result<Self> {
        match &home.config.storage {
            StorageConfig::Local { .. } => {
                let root = home.local_root().expect("local storage has a root");
                Ok(Self::local(root))
            }
            StorageConfig::S3(s3) => {
                let mut zones = HashMap::new();
                let mut stores: HashMap<String, Arc<dyn ObjectStore>> = HashMap::new();
                for zone in ZONES {
                    let (bucket, prefix) = s3.location(zone).ok_or_else(|| Error::Config {
                        reason: format!("zone '{zone}' has no bucket"),
                    })?;
                    let base = if prefix.is_empty() {
                        format!("s3://{bucket}")
                    } else {
                        format!("s3://{bucket}/{prefix}")
                    };
                    zones.insert(zone, base);
                    let authority = format!("s3://{bucket}");
                    if stores.contains_key(&authority) {
                        continue;
                    }
                    let mut b = AmazonS3Builder::new()
                        .with_bucket_name(&bucket)
                        .with_region(&s3.region)
                        .with_virtual_hosted_style_request(!s3.path_style)
                        .with_allow_http(s3.allow_http);
                    if let Some(ep) = &s3.endpoint {
                        b = b.with_endpoint(ep);
                    }
                    if let Some(k) = &s3.access_key_id {
                        b = b.with_access_key_id(k.resolve().map_err(Error::config)?.expose());
                    }
                    if let Some(k) = &s3.secret_access_key {
                        b = b.with_secret_access_key(k.resolve().map_err(Error::config)?.expose());
                    }
                    let store = b.build().map_err(|e| Error::Config {
                        reason: format!("S3 bucket {bucket}: {e}"),
                    })?;
                    stores.insert(authority, Arc::new(store));
                }
                Ok(Self { zones, stores })
            }
        }
    }

    /// Zones under a local folder.
    pub fn local(root: PathBuf) -> Self {
        let zones = ZONES
            .iter()
            .map(|z| {
                let p = root.join(z.as_str());
                let url = Url::from_directory_path(&p)
                    .map(|u| u.to_string().trim_end_matches('/').to_string())
                    .unwrap_or_else(|_| format!("file://{}", p.display()));
                (*z, url)
            })
            .collect();
        let mut stores: HashMap<String, Arc<dyn ObjectStore>> = HashMap::new();
        stores.insert("file://".into(), Arc::new(LocalFileSystem::new()));
        Self { zones, stores }
    }

    /// Create the zone folders on local disk. A no-op on S3, whose prefixes
    /// need no creation.
    pub fn init(&self) -> Result<()> {
        for base in self.zones.values() {
            let url = Url::parse(base).ok().filter(|u| u.scheme() == "file");
            if let Some(path) = url.and_then(|u| u.to_file_path().ok()) {
                std::fs::create_dir_all(&path).map_err(|e| Error::Io {
                    uri: base.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(())
    }

    /// Base URI of a zone, without a trailing slash.
    pub fn zone_uri(&self, zone: Zone) -> &str {
        &self.zones[&zone]
    }

    /// URI of `rel` inside `zone`.
    pub fn uri(&self, zone: Zone, rel: &str) -> String {
        format!("{}/{}", self.zone_uri(zone), rel.trim_start_matches('/'))
    }

    /// Every store with the URL DataFusion should register it under.
    pub fn stores(&self) -> impl Iterator<Item = (Url, Arc<dyn ObjectStore>)> + '_ {
        self.stores.iter().map(|(k, s)| {
            let url = if k == "file://" {
                Url::parse("file:///").expect("static url")
            } else {
                Url::parse(k).expect("validated bucket url")
            };
            (url, s.clone())
        })
    }

    /// The store and path that hold `uri`.
    pub fn resolve(&self, uri: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
        let url = Url::parse(uri).map_err(|e| Error::BadUri {
            uri: uri.into(),
            reason: e.to_string(),
        })?;
        match url.scheme() {
            "file" => {
                let store = self.stores.get("file://").ok_or_else(|| Error::BadUri {
                    uri: uri.into(),
                    reason: "this home stores data on S3, not on local disk".into(),
                })?;
                let fs = url.to_file_path().map_err(|_| Error::BadUri {
                    uri: uri.into(),
                    reason: "not an absolute file path".into(),
                })?;
                let path = Path::from_absolute_path(&fs).map_err(|e| Error::BadUri {
                    uri: uri.into(),
                    reason: e.to_string(),
                })?;
                Ok((store.clone(), path))
            }
            "s3" | "s3a" => {
                let bucket = url.host_str().unwrap_or_default();
                let store =
                    self.stores
                        .get(&format!("s3://{bucket}"))
                        .ok_or_else(|| Error::BadUri {
                            uri: uri.into(),
                            reason: format!("bucket '{bucket}' is not configured"),
                        })?;
                let key = url.path().trim_start_matches('/');
                let path = Path::parse(key).map_err(|e| Error::BadUri {
                    uri: uri.into(),
                    reason: e.to_string(),
                })?;
                Ok((store.clone(), path))
            }
            other => Err(Error::BadUri {
                uri: uri.into(),
                reason: format!("unsupported scheme '{other}'"),
            }),
        }
    }

    /// Read a whole file.
    pub async fn read(&self, uri: &str) -> Result<Bytes> {
        let (store, path) = self.resolve(uri)?;
        let got = store
            .get(&path)
            .await
            .map_err(|e| Error::from_store(uri, e))?;
        got.bytes().await.map_err(|e| Error::from_store(uri, e))
    }

    /// Read at most the first `len` bytes of a file.
    pub async fn read_prefix(&self, uri: &str, len: u64) -> Result<Bytes> {
        let (store, path) = self.resolve(uri)?;
        let size = store
            .head(&path)
            .await
            .map_err(|e| Error::from_store(uri, e))?
            .size;
        store
            .get_range(&path, 0..size.min(len))
            .await
            .map_err(|e| Error::from_store(uri, e))
    }

    /// Write a whole file, replacing any earlier one.
    pub async fn write(&self, uri: &str, data: Bytes) -> Result<()> {
        let (store, path) = self.resolve(uri)?;
        store
            .put(&path, PutPayload::from(data))
            .await
            .map_err(|e| Error::from_store(uri, e))?;
        Ok(())
    }

    /// Write a file that must not exist yet.
    pub async fn create(&self, uri: &str, data: Bytes) -> Result<()> {
        let (store, path) = self.resolve(uri)?;
        store
            .put_opts(
                &path,
                PutPayload::from(data),
                object_store::PutMode::Create.into(),
            )
            .await
            .map_err(|e| Error::from_store(uri, e))?;
        Ok(())
    }

    /// Whether a file exists.
    pub async fn exists(&self, uri: &str) -> Result<bool> {
        let (store, path) = self.resolve(uri)?;
        match store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::from_store(uri, e)),
        }
    }

    /// Size and modification time of a file.
    pub async fn head(&self, uri: &str) -> Result<FileInfo> {
        let (store, path) = self.resolve(uri)?;
        let meta = store
            .head(&path)
            .await
            .map_err(|e| Error::from_store(uri, e))?;
        Ok(FileInfo {
            uri: uri.to_string(),
            size: meta.size,
            last_modified_ms: meta.last_modified.timestamp_millis(),
        })
    }

    /// Delete a file; deleting a missing file is not an error.
    pub async fn delete(&self, uri: &str) -> Result<()> {
        let (store, path) = self.resolve(uri)?;
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::from_store(uri, e)),
        }
    }

    /// Every file under the URI prefix `dir`, recursively, sorted by URI.
    pub async fn list(&self, dir: &str) -> Result<Vec<FileInfo>> {
        let dir = dir.trim_end_matches('/');
        let (store, path) = self.resolve(dir)?;
        let base = dir_base(dir, &path);
        let mut out: Vec<FileInfo> = store
            .list(Some(&path))
            .map_ok(|m| FileInfo {
                uri: format!("{base}/{}", m.location),
                size: m.size,
                last_modified_ms: m.last_modified.timestamp_millis(),
            })
            .try_collect()
            .await
            .map_err(|e| Error::from_store(dir, e))?;
        out.sort_by(|a, b| a.uri.cmp(&b.uri));
        Ok(out)
    }

    /// Move a file: a server-side copy then a delete when both ends are in
    /// one store, else read and write.
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (src_store, src) = self.resolve(from)?;
        let (dst_store, dst) = self.resolve(to)?;
        if Arc::ptr_eq(&src_store, &dst_store) {
            src_store
                .copy(&src, &dst)
                .await
                .map_err(|e| Error::from_store(from, e))?;
        } else {
            let data = self.read(from).await?;
            self.write(to, data).await?;
        }
        self.delete(from).await
    }

    /// Upload a local file in parts of 8 MiB, so memory stays bounded
    /// whatever its size.
    pub async fn upload_file(&self, uri: &str, local: &std::path::Path) -> Result<u64> {
        use tokio::io::AsyncReadExt;
        let (store, path) = self.resolve(uri)?;
        let io = |e: std::io::Error| Error::Io {
            uri: local.display().to_string(),
            reason: e.to_string(),
        };
        let mut file = tokio::fs::File::open(local).await.map_err(io)?;
        let upload = store
            .put_multipart(&path)
            .await
            .map_err(|e| Error::from_store(uri, e))?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            writer
                .wait_for_capacity(4)
                .await
                .map_err(|e| Error::from_store(uri, e))?;
            writer.write(&buf[..n]);
        }
        writer
            .finish()
            .await
            .map_err(|e| Error::from_store(uri, e))?;
        Ok(total)
    }
}

/// The URI prefix that, joined with an object path, gives the object's URI.
fn dir_base(dir: &str, path: &Path) -> String {
    let raw = path.as_ref();
    if dir.starts_with("file://") {
        "file://".to_string()
    } else {
        // s3://bucket/<path>: strip the path to keep the authority.
        let without = dir.strip_suffix(raw).unwrap_or(dir);
        without.trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_local_uris() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::local(dir.path().to_path_buf());
        let uri = s.uri(Zone::Curated, "ns/t/data/a.parquet");
        assert!(uri.starts_with("file:///"), "{uri}");
        let (_, p) = s.resolve(&uri).unwrap();
        assert!(p.as_ref().ends_with("curated/ns/t/data/a.parquet"));
        assert!(s.resolve("s3://nope/x").is_err());
        assert!(s.resolve("gs://nope/x").is_err());
    }
}
