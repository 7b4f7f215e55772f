//! The Iceberg catalog: which metadata file is current for each table.
//!
//! [`SqlCatalog`] stores pointers in the Iceberg JDBC catalog schema
//! (`iceberg_tables`, `iceberg_namespace_properties`), exactly as PyIceberg's
//! `SqlCatalog` and Java's `JdbcCatalog` do, on SQLite (embedded) or
//! PostgreSQL (several writers). [`MemoryCatalog`] is the in-process one.
//!
//! Invariant: a table's pointer only moves by compare-and-swap
//! ([`Catalog::swap`]); a writer that lost the race sees `false` and retries
//! on top of the winner.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use gridata_core::TableName;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor, Row};

use crate::{Error, Result};

/// Where table pointers and namespaces live.
#[async_trait]
pub trait Catalog: Send + Sync + std::fmt::Debug {
    /// Every namespace, sorted.
    async fn list_namespaces(&self) -> Result<Vec<String>>;
    /// Create a namespace with properties.
    async fn create_namespace(&self, ns: &str, props: &BTreeMap<String, String>) -> Result<()>;
    /// A namespace's properties; `NoSuchNamespace` if it does not exist.
    async fn namespace_properties(&self, ns: &str) -> Result<BTreeMap<String, String>>;
    /// Set (or with `None`, remove) namespace properties.
    async fn update_namespace(
        &self,
        ns: &str,
        props: &BTreeMap<String, Option<String>>,
    ) -> Result<()>;
    /// Drop an empty namespace.
    async fn drop_namespace(&self, ns: &str) -> Result<()>;
    /// Tables of a namespace, sorted.
    async fn list_tables(&self, ns: &str) -> Result<Vec<TableName>>;
    /// The current metadata location of a table.
    async fn load(&self, table: &TableName) -> Result<String>;
    /// Register a new table; `TableExists` if the name is taken.
    async fn create(&self, table: &TableName, location: &str) -> Result<()>;
    /// Move the pointer from `old` to `new`; `false` if `old` is no longer current.
    async fn swap(&self, table: &TableName, old: &str, new: &str) -> Result<bool>;
    /// Remove a table's pointer.
    async fn drop_table(&self, table: &TableName) -> Result<()>;
}

/// The JDBC-schema catalog on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlCatalog {
    pool: AnyPool,
    name: String,
}

const CREATE_TABLES: &str = "CREATE TABLE IF NOT EXISTS iceberg_tables (
    catalog_name VARCHAR(255) NOT NULL,
    table_namespace VARCHAR(255) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    metadata_location VARCHAR(1000),
    previous_metadata_location VARCHAR(1000),
    PRIMARY KEY (catalog_name, table_namespace, table_name))";

const CREATE_NAMESPACES: &str = "CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
    catalog_name VARCHAR(255) NOT NULL,
    namespace VARCHAR(255) NOT NULL,
    property_key VARCHAR(255) NOT NULL,
    property_value VARCHAR(1000),
    PRIMARY KEY (catalog_name, namespace, property_key))";

impl SqlCatalog {
    /// Connect to `url` (`sqlite://…` or `postgres://…`) and create the
    /// JDBC-schema tables if missing. SQLite runs in WAL mode with a busy
    /// timeout, so several processes can share one file.
    pub async fn connect(url: &str, name: &str) -> Result<Self> {
        install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 4 } else { 8 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if is_sqlite {
                        conn.execute("PRAGMA busy_timeout = 30000").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|e| Error::Catalog {
                reason: format!("cannot open {}: {e}", redact_url(url)),
            })?;
        let me = Self {
            pool,
            name: name.to_string(),
        };
        for ddl in [CREATE_TABLES, CREATE_NAMESPACES] {
            me.pool.execute(ddl).await.map_err(Error::catalog)?;
        }
        Ok(me)
    }

    async fn namespace_exists(&self, ns: &str) -> Result<bool> {
        let prefix = format!("{ns}.%");
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM iceberg_namespace_properties
                     WHERE catalog_name = $1 AND (namespace = $2 OR namespace LIKE $3))
                  + (SELECT COUNT(*) FROM iceberg_tables
                     WHERE catalog_name = $1 AND (table_namespace = $2 OR table_namespace LIKE $3)) AS n",
        )
        .bind(&self.name)
        .bind(ns)
        .bind(&prefix)
        .fetch_one(&self.pool)
        .await
        .map_err(Error::catalog)?;
        Ok(row.try_get::<i64, _>("n").map_err(Error::catalog)? > 0)
    }
}

/// Hide the password in a database URL.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[async_trait]
impl Catalog for SqlCatalog {
    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT namespace AS ns FROM iceberg_namespace_properties WHERE catalog_name = $1
             UNION SELECT table_namespace AS ns FROM iceberg_tables WHERE catalog_name = $1",
        )
        .bind(&self.name)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::catalog)?;
        let mut out: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String, _>("ns"))
            .collect::<std::result::Result<_, _>>()
            .map_err(Error::catalog)?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn create_namespace(&self, ns: &str, props: &BTreeMap<String, String>) -> Result<()> {
        if self.namespace_exists(ns).await? {
            return Err(Error::NamespaceExists {
                namespace: ns.into(),
            });
        }
        let mut tx = self.pool.begin().await.map_err(Error::catalog)?;
        // PyIceberg marks namespaces with an `exists` property; so do we.
        let mut all = props.clone();
        all.entry("exists".into()).or_insert_with(|| "true".into());
        for (k, v) in &all {
            sqlx::query(
                "INSERT INTO iceberg_namespace_properties
                 (catalog_name, namespace, property_key, property_value) VALUES ($1, $2, $3, $4)",
            )
            .bind(&self.name)
            .bind(ns)
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => Error::NamespaceExists {
                    namespace: ns.into(),
                },
                e => Error::catalog(e),
            })?;
        }
        tx.commit().await.map_err(Error::catalog)
    }

    async fn namespace_properties(&self, ns: &str) -> Result<BTreeMap<String, String>> {
        if !self.namespace_exists(ns).await? {
            return Err(Error::NoSuchNamespace {
                namespace: ns.into(),
            });
        }
        let rows = sqlx::query(
            "SELECT property_key, property_value FROM iceberg_namespace_properties
             WHERE catalog_name = $1 AND namespace = $2",
        )
        .bind(&self.name)
        .bind(ns)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::catalog)?;
        let mut out = BTreeMap::new();
        for r in rows {
            let k: String = r.try_get("property_key").map_err(Error::catalog)?;
            let v: Option<String> = r.try_get("property_value").map_err(Error::catalog)?;
            out.insert(k, v.unwrap_or_default());
        }
        Ok(out)
    }

    async fn update_namespace(
        &self,
        ns: &str,
        props: &BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        if !self.namespace_exists(ns).await? {
            return Err(Error::NoSuchNamespace {
                namespace: ns.into(),
            });
        }
        let mut tx = self.pool.begin().await.map_err(Error::catalog)?;
        for (k, v) in props {
            sqlx::query(
                "DELETE FROM iceberg_namespace_properties
                 WHERE catalog_name = $1 AND namespace = $2 AND property_key = $3",
            )
            .bind(&self.name)
            .bind(ns)
            .bind(k)
            .execute(&mut *tx)
            .await
            .map_err(Error::catalog)?;
            if let Some(v) = v {
                sqlx::query(
                    "INSERT INTO iceberg_namespace_properties
                     (catalog_name, namespace, property_key, property_value) VALUES ($1, $2, $3, $4)",
                )
                .bind(&self.name)
                .bind(ns)
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await
                .map_err(Error::catalog)?;
            }
        }
        tx.commit().await.map_err(Error::catalog)
    }

    async fn drop_namespace(&self, ns: &str) -> Result<()> {
        if !self.namespace_exists(ns).await? {
            return Err(Error::NoSuchNamespace {
                namespace: ns.into(),
            });
        }
        let tables = self.list_tables(ns).await?;
        if !tables.is_empty() {
            return Err(Error::NamespaceNotEmpty {
                namespace: ns.into(),
                tables: tables.len(),
            });
        }
        sqlx::query(
            "DELETE FROM iceberg_namespace_properties WHERE catalog_name = $1 AND namespace = $2",
        )
        .bind(&self.name)
        .bind(ns)
        .execute(&self.pool)
        .await
        .map_err(Error::catalog)?;
        Ok(())
    }

    async fn list_tables(&self, ns: &str) -> Result<Vec<TableName>> {
        let rows = sqlx::query(
            "SELECT table_name FROM iceberg_tables
             WHERE catalog_name = $1 AND table_namespace = $2 ORDER BY table_name",
        )
        .bind(&self.name)
        .bind(ns)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::catalog)?;
        rows.iter()
            .map(|r| {
                Ok(TableName {
                    namespace: ns.split('.').map(String::from).collect(),
                    name: r.try_get("table_name").map_err(Error::catalog)?,
                })
            })
            .collect()
    }

    async fn load(&self, table: &TableName) -> Result<String> {
        let row = sqlx::query(
            "SELECT metadata_location FROM iceberg_tables
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3",
        )
        .bind(&self.name)
        .bind(table.namespace_str())
        .bind(&table.name)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::catalog)?;
        match row {
            Some(r) => {
                let loc: Option<String> = r.try_get("metadata_location").map_err(Error::catalog)?;
                loc.ok_or_else(|| Error::NoSuchTable {
                    table: table.to_string(),
                })
            }
            None => Err(Error::NoSuchTable {
                table: table.to_string(),
            }),
        }
    }

    async fn create(&self, table: &TableName, location: &str) -> Result<()> {
        let ns = table.namespace_str();
        if !self.namespace_exists(&ns).await? {
            return Err(Error::NoSuchNamespace { namespace: ns });
        }
        sqlx::query(
            "INSERT INTO iceberg_tables
             (catalog_name, table_namespace, table_name, metadata_location, previous_metadata_location)
             VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(&self.name)
        .bind(&ns)
        .bind(&table.name)
        .bind(location)
        .execute(&self.pool)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => Error::TableExists {
                table: table.to_string(),
            },
            e => Error::catalog(e),
        })?;
        Ok(())
    }

    async fn swap(&self, table: &TableName, old: &str, new: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2
             WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5
               AND metadata_location = $2",
        )
        .bind(new)
        .bind(old)
        .bind(&self.name)
        .bind(table.namespace_str())
        .bind(&table.name)
        .execute(&self.pool)
        .await
        .map_err(Error::catalog)?;
        Ok(done.rows_affected() == 1)
    }

    async fn drop_table(&self, table: &TableName) -> Result<()> {
        let done = sqlx::query(
            "DELETE FROM iceberg_tables
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3",
        )
        .bind(&self.name)
        .bind(table.namespace_str())
        .bind(&table.name)
        .execute(&self.pool)
        .await
        .map_err(Error::catalog)?;
        if done.rows_affected() == 0 {
            return Err(Error::NoSuchTable {
                table: table.to_string(),
            });
        }
        Ok(())
    }
}

/// An in-process catalog, for tests and throwaway sessions.
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    tables: HashMap<TableName, String>,
}

impl MemoryCatalog {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Catalog for MemoryCatalog {
    async fn list_namespaces(&self) -> Result<Vec<String>> {
        Ok(self.lock().namespaces.keys().cloned().collect())
    }

    async fn create_namespace(&self, ns: &str, props: &BTreeMap<String, String>) -> Result<()> {
        let mut s = self.lock();
        if s.namespaces.contains_key(ns) {
            return Err(Error::NamespaceExists {
                namespace: ns.into(),
            });
        }
        s.namespaces.insert(ns.into(), props.clone());
        Ok(())
    }

    async fn namespace_properties(&self, ns: &str) -> Result<BTreeMap<String, String>> {
        self.lock()
            .namespaces
            .get(ns)
            .cloned()
            .ok_or_else(|| Error::NoSuchNamespace {
                namespace: ns.into(),
            })
    }

    async fn update_namespace(
        &self,
        ns: &str,
        props: &BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        let mut s = self.lock();
        let p = s
            .namespaces
            .get_mut(ns)
            .ok_or_else(|| Error::NoSuchNamespace {
                namespace: ns.into(),
            })?;
        for (k, v) in props {
            match v {
                Some(v) => p.insert(k.clone(), v.clone()),
                None => p.remove(k),
            };
        }
        Ok(())
    }

    async fn drop_namespace(&self, ns: &str) -> Result<()> {
        let mut s = self.lock();
        let n = s.tables.keys().filter(|t| t.namespace_str() == ns).count();
        if n > 0 {
            return Err(Error::NamespaceNotEmpty {
                namespace: ns.into(),
                tables: n,
            });
        }
        s.namespaces
            .remove(ns)
            .map(|_| ())
            .ok_or_else(|| Error::NoSuchNamespace {
                namespace: ns.into(),
            })
    }

    async fn list_tables(&self, ns: &str) -> Result<Vec<TableName>> {
        let mut v: Vec<_> = self
            .lock()
            .tables
            .keys()
            .filter(|t| t.namespace_str() == ns)
            .cloned()
            .collect();
        v.sort();
        Ok(v)
    }

    async fn load(&self, table: &TableName) -> Result<String> {
        self.lock()
            .tables
            .get(table)
            .cloned()
            .ok_or_else(|| Error::NoSuchTable {
                table: table.to_string(),
            })
    }

    async fn create(&self, table: &TableName, location: &str) -> Result<()> {
        let mut s = self.lock();
        if !s.namespaces.contains_key(&table.namespace_str()) {
            return Err(Error::NoSuchNamespace {
                namespace: table.namespace_str(),
            });
        }
        if s.tables.contains_key(table) {
            return Err(Error::TableExists {
                table: table.to_string(),
            });
        }
        s.tables.insert(table.clone(), location.into());
        Ok(())
    }

    async fn swap(&self, table: &TableName, old: &str, new: &str) -> Result<bool> {
        let mut s = self.lock();
        match s.tables.get_mut(table) {
            Some(cur) if cur == old => {
                *cur = new.into();
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(Error::NoSuchTable {
                table: table.to_string(),
            }),
        }
    }

    async fn drop_table(&self, table: &TableName) -> Result<()> {
        self.lock()
            .tables
            .remove(table)
            .map(|_| ())
            .ok_or_else(|| Error::NoSuchTable {
                table: table.to_string(),
            })
    }
}
