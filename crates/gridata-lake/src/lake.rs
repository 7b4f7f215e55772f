//! [`Lake`]: the catalog, the stores and the clock, and the table
//! operations that need only metadata.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use gridata_core::{Clock, Home, SystemClock, TableName, Zone};
use gridata_storage::Storage;
use iceberg::TableIdent;
use iceberg::io::FileIO;
use iceberg::spec::{
    DataFile, FormatVersion, ManifestFile, ManifestList, ManifestStatus, Schema, SnapshotRef,
    SortOrder, TableMetadata, TableMetadataBuilder, TableMetadataRef, UnboundPartitionSpec,
};
use iceberg::table::Table;

use crate::catalog::{Catalog, SqlCatalog};
use crate::{Error, Result};

/// The lake: catalog, storage and clock.
#[derive(Debug, Clone)]
pub struct Lake {
    catalog: Arc<dyn Catalog>,
    storage: Storage,
    file_io: FileIO,
    clock: Arc<dyn Clock>,
}

/// A loaded table: its name, its current metadata, and where that lives.
#[derive(Debug, Clone)]
pub struct LakeTable {
    /// The table's name.
    pub name: TableName,
    /// The metadata file the catalog points at.
    pub metadata_location: String,
    /// The parsed metadata.
    pub metadata: TableMetadataRef,
}

/// A data file live in a snapshot, with its manifest bookkeeping.
#[derive(Debug, Clone)]
pub struct LiveFile {
    /// The data file.
    pub file: DataFile,
    /// The partition spec it was written with.
    pub spec_id: i32,
    /// The snapshot that added it.
    pub snapshot_id: i64,
    /// Its data sequence number.
    pub sequence_number: i64,
    /// Its file sequence number.
    pub file_sequence_number: Option<i64>,
}

impl Lake {
    /// The lake configured by `home`: the SQL catalog (SQLite by default)
    /// and the zones' stores.
    pub async fn open(home: &Home) -> Result<Self> {
        let storage = Storage::open(home)?;
        let url = home.catalog_url().map_err(|e| Error::Catalog {
            reason: e.to_string(),
        })?;
        let catalog = SqlCatalog::connect(url.expose(), home.catalog_name()).await?;
        Ok(Self::new(Arc::new(catalog), storage, Arc::new(SystemClock)))
    }

    /// A lake from parts.
    pub fn new(catalog: Arc<dyn Catalog>, storage: Storage, clock: Arc<dyn Clock>) -> Self {
        let file_io = crate::io::file_io(&storage);
        Self {
            catalog,
            storage,
            file_io,
            clock,
        }
    }

    /// The stores.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// iceberg's view of the stores.
    pub fn file_io(&self) -> &FileIO {
        &self.file_io
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Create a namespace.
    pub async fn create_namespace(&self, ns: &str, props: &BTreeMap<String, String>) -> Result<()> {
        for part in ns.split('.') {
            gridata_core::ident::validate_part(ns, part).map_err(|e| Error::Parse {
                what: "namespace",
                text: ns.into(),
                reason: e.to_string(),
            })?;
        }
        self.catalog.create_namespace(ns, props).await
    }

    /// Every table, or those of one namespace.
    pub async fn list_tables(&self, ns: Option<&str>) -> Result<Vec<TableName>> {
        let namespaces = match ns {
            Some(ns) => {
                self.catalog.namespace_properties(ns).await?;
                vec![ns.to_string()]
            }
            None => self.catalog.list_namespaces().await?,
        };
        let mut out = Vec::new();
        for ns in namespaces {
            out.extend(self.catalog.list_tables(&ns).await?);
        }
        Ok(out)
    }

    /// The default location of a table: `<curated>/<ns>/<table>`.
    pub fn default_location(&self, name: &TableName) -> String {
        self.storage.uri(
            Zone::Curated,
            &format!("{}/{}", name.namespace.join("/"), name.name),
        )
    }

    /// Create a table with a schema, a partition spec and properties.
    pub async fn create_table(
        &self,
        name: &TableName,
        schema: Schema,
        spec: UnboundPartitionSpec,
        properties: HashMap<String, String>,
    ) -> Result<LakeTable> {
        let ns = name.namespace_str();
        self.catalog.namespace_properties(&ns).await?;
        if self.catalog.load(name).await.is_ok() {
            return Err(Error::TableExists {
                table: name.to_string(),
            });
        }
        let location = self.default_location(name);
        let mut props = HashMap::from([
            (
                "write.parquet.compression-codec".to_string(),
                "zstd".to_string(),
            ),
            ("write.format.default".to_string(), "parquet".to_string()),
        ]);
        props.extend(properties);
        let metadata = TableMetadataBuilder::new(
            schema,
            spec,
            SortOrder::unsorted_order(),
            location.clone(),
            FormatVersion::V2,
            props,
        )
        .and_then(|b| b.build())
        .map_err(Error::iceberg(format!("create table '{name}'")))?
        .metadata;
        let meta_loc = format!(
            "{location}/metadata/00000-{}.metadata.json",
            uuid::Uuid::new_v4()
        );
        self.write_metadata(&meta_loc, &metadata).await?;
        if let Err(e) = self.catalog.create(name, &meta_loc).await {
            let _ = self.storage.delete(&meta_loc).await;
            return Err(e);
        }
        Ok(LakeTable {
            name: name.clone(),
            metadata_location: meta_loc,
            metadata: Arc::new(metadata),
        })
    }

    /// Load a table's current metadata.
    pub async fn load_table(&self, name: &TableName) -> Result<LakeTable> {
        let location = self.catalog.load(name).await?;
        let metadata = self.read_metadata(name, &location).await?;
        Ok(LakeTable {
            name: name.clone(),
            metadata_location: location,
            metadata: Arc::new(metadata),
        })
    }

    /// Drop a table from the catalog; with `purge`, delete its files too.
    pub async fn drop_table(&self, name: &TableName, purge: bool) -> Result<()> {
        let table = self.load_table(name).await.ok();
        self.catalog.drop_table(name).await?;
        if purge && let Some(t) = table {
            for f in self.storage.list(t.metadata.location()).await? {
                self.storage.delete(&f.uri).await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn read_metadata(
        &self,
        name: &TableName,
        location: &str,
    ) -> Result<TableMetadata> {
        let corrupt = |reason: String| Error::CorruptMetadata {
            table: name.to_string(),
            location: location.to_string(),
            reason,
        };
        let bytes = self
            .storage
            .read(location)
            .await
            .map_err(|e| corrupt(e.to_string()))?;
        let bytes = if location.ends_with(".gz.metadata.json") {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut out)
                .map_err(|e| corrupt(e.to_string()))?;
            Bytes::from(out)
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))
    }

    pub(crate) async fn write_metadata(
        &self,
        location: &str,
        metadata: &TableMetadata,
    ) -> Result<()> {
        let json = serde_json::to_vec(metadata).map_err(|e| Error::Format {
            context: format!("serialise metadata {location}"),
            reason: e.to_string(),
        })?;
        self.storage.create(location, Bytes::from(json)).await?;
        Ok(())
    }

    /// The manifests of a snapshot.
    pub async fn manifests(
        &self,
        table: &LakeTable,
        snapshot: &SnapshotRef,
    ) -> Result<Vec<ManifestFile>> {
        let bytes = self
            .storage
            .read(snapshot.manifest_list())
            .await
            .map_err(|e| Error::CorruptMetadata {
                table: table.name.to_string(),
                location: snapshot.manifest_list().to_string(),
                reason: e.to_string(),
            })?;
        let list = ManifestList::parse_with_version(&bytes, table.metadata.format_version())
            .map_err(Error::iceberg(format!(
                "table '{}': manifest list {}",
                table.name,
                snapshot.manifest_list()
            )))?;
        Ok(list.consume_entries().into_iter().collect())
    }

    /// Every live data file of a snapshot (the current one by default).
    pub async fn live_files(
        &self,
        table: &LakeTable,
        snapshot_id: Option<i64>,
    ) -> Result<Vec<LiveFile>> {
        let Some(snapshot) = table.snapshot(snapshot_id)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for mf in self.manifests(table, &snapshot).await? {
            let manifest = mf
                .load_manifest(&self.file_io)
                .await
                .map_err(Error::iceberg(format!(
                    "table '{}': manifest {}",
                    table.name, mf.manifest_path
                )))?;
            for e in manifest.entries() {
                if e.status() != ManifestStatus::Deleted {
                    out.push(LiveFile {
                        file: e.data_file().clone(),
                        spec_id: mf.partition_spec_id,
                        snapshot_id: e.snapshot_id().unwrap_or(mf.added_snapshot_id),
                        sequence_number: e.sequence_number().unwrap_or(mf.sequence_number),
                        file_sequence_number: e.file_sequence_number.or(Some(mf.sequence_number)),
                    });
                }
            }
        }
        Ok(out)
    }

    /// iceberg's `Table`, for scan planning.
    pub fn iceberg_table(&self, table: &LakeTable) -> Result<Table> {
        let ident = TableIdent::from_strs(
            table
                .name
                .namespace
                .iter()
                .map(String::as_str)
                .chain([table.name.name.as_str()]),
        )
        .map_err(Error::iceberg(format!("table '{}'", table.name)))?;
        Table::builder()
            .metadata(table.metadata.clone())
            .metadata_location(table.metadata_location.clone())
            .identifier(ident)
            .file_io(self.file_io.clone())
            .readonly(true)
            .runtime(
                iceberg::Runtime::try_current()
                    .map_err(Error::iceberg(format!("table '{}': runtime", table.name)))?,
            )
            .build()
            .map_err(Error::iceberg(format!("table '{}'", table.name)))
    }
}

impl LakeTable {
    /// The snapshot `id`, or the current one; `None` for an empty table.
    pub fn snapshot(&self, id: Option<i64>) -> Result<Option<SnapshotRef>> {
        match id {
            None => Ok(self.metadata.current_snapshot().cloned()),
            Some(id) => self
                .metadata
                .snapshot_by_id(id)
                .cloned()
                .map(Some)
                .ok_or_else(|| Error::NoSuchSnapshot {
                    table: self.name.to_string(),
                    snapshot: id.to_string(),
                }),
        }
    }

    /// The snapshot that was current at `ts_ms`, from the snapshot log.
    pub fn snapshot_as_of(&self, ts_ms: i64) -> Result<SnapshotRef> {
        self.metadata
            .history()
            .iter()
            .filter(|l| l.timestamp_ms() <= ts_ms)
            .max_by_key(|l| l.timestamp_ms())
            .and_then(|l| self.metadata.snapshot_by_id(l.snapshot_id))
            .cloned()
            .ok_or_else(|| Error::NoSuchSnapshot {
                table: self.name.to_string(),
                snapshot: format!("as of {}", fmt_ms(ts_ms)),
            })
    }

    /// The schema a snapshot was written with (the current one if `None`).
    pub fn schema_at(&self, snapshot_id: Option<i64>) -> Result<Arc<Schema>> {
        match self.snapshot(snapshot_id)? {
            Some(s) if snapshot_id.is_some() => s
                .schema(&self.metadata)
                .map_err(Error::iceberg(format!("table '{}'", self.name))),
            _ => Ok(self.metadata.current_schema().clone()),
        }
    }

    /// The table's Arrow schema, with Parquet field ids in field metadata.
    pub fn arrow_schema(&self, snapshot_id: Option<i64>) -> Result<arrow::datatypes::SchemaRef> {
        let schema = self.schema_at(snapshot_id)?;
        iceberg::arrow::schema_to_arrow_schema(&schema)
            .map(Arc::new)
            .map_err(Error::iceberg(format!("table '{}'", self.name)))
    }
}

/// A timestamp in ms as RFC 3339.
pub(crate) fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339())
        .unwrap_or_else(|| ms.to_string())
}
