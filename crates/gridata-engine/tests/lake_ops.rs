//! End-to-end table operations through the engine: every write, time
//! travel, rollback, schema evolution, maintenance and bad input.
//!
//! Each scenario runs on the embedded default (local disk + SQLite). The
//! `#[ignore]`d variants run the same scenarios on an S3-compatible server
//! and on PostgreSQL; `scripts/test.sh` starts both and passes
//! `--include-ignored`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use gridata_core::{Home, SystemClock, TableName};
use gridata_engine::datafusion::arrow::array::{Array, Int64Array, StringArray};
use gridata_engine::{Engine, Error, ImportFormat, InputFile, WriteMode};
use gridata_lake::iceberg::spec::PrimitiveType;
use gridata_lake::schema::{parse_partition_spec, parse_schema};
use gridata_lake::{Lake, SchemaUpdate, SqlCatalog};
use gridata_storage::Storage;

struct Env {
    dir: tempfile::TempDir,
    engine: Engine,
}

impl Env {
    fn lake(&self) -> &Lake {
        self.engine.lake()
    }

    fn csv(&self, name: &str, body: &str) -> InputFile {
        let p = self.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        InputFile {
            path: p.display().to_string(),
            format: ImportFormat::from_path(name).unwrap(),
        }
    }

    async fn ids(&self, sql: &str) -> Vec<i64> {
        let (_, batches) = self.engine.query(sql).await.unwrap();
        let mut out = Vec::new();
        for b in batches {
            let c = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            out.extend(c.iter().map(|v| v.unwrap()));
        }
        out
    }

    async fn strings(&self, sql: &str) -> Vec<Option<String>> {
        let (_, batches) = self.engine.query(sql).await.unwrap();
        let mut out = Vec::new();
        for b in batches {
            let c = gridata_engine::datafusion::arrow::compute::cast(
                b.column(0),
                &gridata_engine::datafusion::arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let c = c.as_any().downcast_ref::<StringArray>().unwrap();
            out.extend(c.iter().map(|v| v.map(String::from)));
        }
        out
    }
}

async fn embedded() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::open(dir.path()).unwrap();
    Storage::open(&home).unwrap().init().unwrap();
    let lake = Lake::open(&home).await.unwrap();
    Env {
        engine: Engine::new(lake).await.unwrap(),
        dir,
    }
}

fn s3_storage(dir: &Path) -> Storage {
    let endpoint = std::env::var("GRIDATA_TEST_S3_ENDPOINT").expect(
        "GRIDATA_TEST_S3_ENDPOINT is not set: this test needs an S3-compatible server; run scripts/test.sh, which starts one on loopback",
    );
    let yaml = format!(
        "storage:\n  type: s3\n  endpoint: {endpoint}\n  bucket: {}\n  prefix: lake-{}\n  path_style: true\n  allow_http: true\n  access_key_id: ${{env:AWS_ACCESS_KEY_ID}}\n  secret_access_key: ${{env:AWS_SECRET_ACCESS_KEY}}\n",
        std::env::var("GRIDATA_TEST_S3_BUCKET").unwrap_or_else(|_| "gridata-test".into()),
        uuid::Uuid::new_v4()
    );
    std::fs::write(dir.join("gridata.yaml"), yaml).unwrap();
    Storage::open(&Home::open(dir).unwrap()).unwrap()
}

async fn on_s3() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let storage = s3_storage(dir.path());
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("catalog.db").display()
    );
    let catalog = SqlCatalog::connect(&url, "gridata").await.unwrap();
    let lake = Lake::new(Arc::new(catalog), storage, Arc::new(SystemClock));
    Env {
        engine: Engine::new(lake).await.unwrap(),
        dir,
    }
}

async fn on_postgres() -> Env {
    let url = std::env::var("GRIDATA_TEST_PG_URL").expect(
        "GRIDATA_TEST_PG_URL is not set: this test needs PostgreSQL; run scripts/test.sh, which installs and starts it",
    );
    let dir = tempfile::tempdir().unwrap();
    let home = Home::open(dir.path()).unwrap();
    let storage = Storage::open(&home).unwrap();
    storage.init().unwrap();
    // A catalog name of its own keeps runs apart in one database.
    let name = format!("test-{}", uuid::Uuid::new_v4());
    let catalog = SqlCatalog::connect(&url, &name).await.unwrap();
    let lake = Lake::new(Arc::new(catalog), storage, Arc::new(SystemClock));
    Env {
        engine: Engine::new(lake).await.unwrap(),
        dir,
    }
}

const SCHEMA: &str = "id long not null, name string, amount int, ts timestamptz not null";

async fn orders_table(env: &Env, ns: &str) -> TableName {
    env.lake()
        .create_namespace(ns, &BTreeMap::new())
        .await
        .unwrap();
    let name = TableName::parse(&format!("{ns}.orders")).unwrap();
    let schema = parse_schema(SCHEMA).unwrap();
    let spec = parse_partition_spec(&["month(ts)".into()], &schema).unwrap();
    env.lake()
        .create_table(&name, schema, spec, HashMap::new())
        .await
        .unwrap();
    name
}

const OCT_NOV: &str = "id,name,amount,ts\n1,a,10,2026-10-01T10:00:00Z\n2,b,20,2026-10-15T10:00:00Z\n3,c,30,2026-11-02T10:00:00Z\n4,d,40,2026-11-20T10:00:00Z\n";

async fn table_lifecycle(env: Env) {
    let t = orders_table(&env, "shop").await;
    let run = HashMap::from([("gridata.run-id".to_string(), "run-1".to_string())]);

    // Append, with caller properties in the summary.
    let r = env
        .engine
        .import(&t, &[env.csv("a.csv", OCT_NOV)], WriteMode::Append, run)
        .await
        .unwrap();
    assert_eq!(r.rows, 4);
    assert_eq!(r.data_files, 2, "one file per month partition");
    let first = r.snapshot_id.unwrap();
    let table = env.lake().load_table(&t).await.unwrap();
    let summary = &table
        .metadata
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties;
    assert_eq!(summary["gridata.run-id"], "run-1");
    assert_eq!(summary["added-records"], "4");
    assert_eq!(summary["total-records"], "4");
    assert_eq!(
        env.ids("SELECT id FROM shop.orders ORDER BY id").await,
        vec![1, 2, 3, 4]
    );

    // Files are ZSTD Parquet.
    let meta = file_metadata(&env, &t).await;
    let codec = meta.row_group(0).column(0).compression();
    assert!(format!("{codec:?}").starts_with("ZSTD"), "{codec:?}");

    // Pruning: a filter on the partition column plans fewer files.
    assert_eq!(
        env.ids("SELECT id FROM shop.orders WHERE ts >= '2026-11-01T00:00:00Z' ORDER BY id")
            .await,
        vec![3, 4]
    );

    // Dynamic partition overwrite: only November is replaced.
    let nov = "id,name,amount,ts\n5,e,50,2026-11-05T10:00:00Z\n";
    env.engine
        .import(
            &t,
            &[env.csv("nov.csv", nov)],
            WriteMode::OverwritePartitions,
            HashMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        env.ids("SELECT id FROM shop.orders ORDER BY id").await,
        vec![1, 2, 5]
    );

    // Copy-on-write delete.
    let n = env
        .engine
        .delete_where(&t, "amount < 15", HashMap::new())
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        env.ids("SELECT id FROM shop.orders ORDER BY id").await,
        vec![2, 5]
    );
    assert_eq!(
        env.engine
            .delete_where(&t, "amount > 1000", HashMap::new())
            .await
            .unwrap(),
        0
    );

    // Time travel by snapshot id and by timestamp.
    assert_eq!(
        env.ids(&format!(
            "SELECT id FROM shop.orders VERSION AS OF {first} ORDER BY id"
        ))
        .await,
        vec![1, 2, 3, 4]
    );
    let ts = env
        .lake()
        .load_table(&t)
        .await
        .unwrap()
        .metadata
        .snapshot_by_id(first)
        .unwrap()
        .timestamp_ms();
    assert_eq!(
        env.ids(&format!(
            "SELECT count(*) FROM shop.orders FOR SYSTEM_TIME AS OF {ts}"
        ))
        .await,
        vec![4]
    );
    let err = env
        .engine
        .query("SELECT * FROM shop.orders VERSION AS OF 12345")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no snapshot 12345"), "{err}");

    // Overwrite all rows.
    let all = "id,name,amount,ts\n7,g,70,2026-12-01T00:00:00Z\n8,h,80,2026-10-03T00:00:00Z\n";
    env.engine
        .import(
            &t,
            &[env.csv("all.csv", all)],
            WriteMode::Overwrite,
            HashMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        env.ids("SELECT id FROM shop.orders ORDER BY id").await,
        vec![7, 8]
    );

    // Rollback to the first snapshot, then to a missing one.
    env.lake().rollback(&t, first).await.unwrap();
    assert_eq!(
        env.ids("SELECT id FROM shop.orders ORDER BY id").await,
        vec![1, 2, 3, 4]
    );
    let err = env.lake().rollback(&t, 42).await.unwrap_err();
    assert!(
        matches!(err, gridata_lake::Error::NoSuchSnapshot { .. }),
        "{err}"
    );

    // Schema evolution keeps old files readable by field id.
    env.lake()
        .evolve(
            &t,
            &[
                SchemaUpdate::Rename {
                    from: "name".into(),
                    to: "customer".into(),
                },
                SchemaUpdate::Widen {
                    name: "amount".into(),
                    ty: PrimitiveType::Long,
                },
                SchemaUpdate::Add {
                    name: "name".into(),
                    ty: PrimitiveType::String,
                    doc: None,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        env.strings("SELECT customer FROM shop.orders ORDER BY id")
            .await,
        vec![
            Some("a".into()),
            Some("b".into()),
            Some("c".into()),
            Some("d".into())
        ]
    );
    assert_eq!(
        env.strings("SELECT name FROM shop.orders ORDER BY id")
            .await,
        vec![None, None, None, None],
        "a new column that reuses an old name must not read the old data"
    );
    assert_eq!(
        env.ids("SELECT amount FROM shop.orders ORDER BY id").await,
        vec![10, 20, 30, 40]
    );
    env.lake()
        .evolve(
            &t,
            &[SchemaUpdate::Drop {
                name: "customer".into(),
            }],
        )
        .await
        .unwrap();
    let (schema, _) = env.engine.query("SELECT * FROM shop.orders").await.unwrap();
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, vec!["id", "amount", "ts", "name"]);

    // Refused schema changes.
    for bad in [
        SchemaUpdate::Widen {
            name: "amount".into(),
            ty: PrimitiveType::Int,
        },
        SchemaUpdate::Drop { name: "ts".into() },
        SchemaUpdate::Rename {
            from: "nope".into(),
            to: "x".into(),
        },
    ] {
        let e = env.lake().evolve(&t, &[bad]).await.unwrap_err();
        assert!(matches!(e, gridata_lake::Error::SchemaChange { .. }), "{e}");
    }

    // Compaction: several small appends to one partition become one file.
    for i in 0..3 {
        let body = format!("id,amount,ts\n{},1,2026-10-0{}T00:00:00Z\n", 100 + i, i + 1);
        env.engine
            .import(
                &t,
                &[env.csv(&format!("s{i}.csv"), &body)],
                WriteMode::Append,
                HashMap::new(),
            )
            .await
            .unwrap();
    }
    let before = env.ids("SELECT id FROM shop.orders ORDER BY id").await;
    let n_before = env.ids("SELECT count(*) FROM shop.orders$files").await[0];
    let (removed, added) = env.engine.compact(&t, Some(64 << 20)).await.unwrap();
    assert!(removed >= 3 && added < removed, "{removed} -> {added}");
    assert_eq!(
        env.ids("SELECT id FROM shop.orders ORDER BY id").await,
        before
    );
    let n_after = env.ids("SELECT count(*) FROM shop.orders$files").await[0];
    assert_eq!(n_after, n_before - removed as i64 + added as i64);
    let ops = env
        .strings("SELECT operation FROM shop.orders$snapshots")
        .await;
    assert_eq!(ops.last().unwrap().as_deref(), Some("replace"));

    // Expiry keeps the last snapshot and deletes unreachable files.
    let now = env.lake().clock().now_ms() + 1;
    let report = env.lake().expire(&t, now, 1).await.unwrap();
    assert!(!report.expired_snapshots.is_empty());
    assert!(report.deleted_files > 0);
    let table = env.lake().load_table(&t).await.unwrap();
    assert_eq!(table.metadata.snapshots().len(), 1);
    assert_eq!(
        env.ids("SELECT id FROM shop.orders ORDER BY id").await,
        before
    );
    assert_eq!(
        env.ids("SELECT count(*) FROM shop.orders$history")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn table_lifecycle_embedded() {
    table_lifecycle(embedded().await).await;
}

#[tokio::test]
#[ignore = "needs an S3-compatible server: run scripts/test.sh"]
async fn table_lifecycle_s3() {
    table_lifecycle(on_s3().await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn table_lifecycle_postgres() {
    table_lifecycle(on_postgres().await).await;
}

async fn bad_input(env: Env) {
    let t = orders_table(&env, "bad").await;
    // Unknown table and namespace.
    let missing = TableName::parse("bad.nope").unwrap();
    let e = env.lake().load_table(&missing).await.unwrap_err();
    assert_eq!(e.to_string(), "table 'bad.nope' does not exist");
    let e = env
        .lake()
        .load_table(&TableName::parse("nons.t").unwrap())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nons.t"), "{e}");
    let e = env
        .engine
        .query("SELECT * FROM bad.nope")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let e = env
        .lake()
        .create_table(
            &TableName::parse("nons.t").unwrap(),
            parse_schema("id long").unwrap(),
            Default::default(),
            HashMap::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, gridata_lake::Error::NoSuchNamespace { .. }),
        "{e}"
    );

    // A file with a column the table lacks: names file and column.
    let f = env.csv("extra.csv", "id,nope,ts\n1,x,2026-10-01T00:00:00Z\n");
    let e = env
        .engine
        .import(
            &t,
            std::slice::from_ref(&f),
            WriteMode::Append,
            HashMap::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Input { .. }));
    assert!(
        e.to_string().contains(&f.path) && e.to_string().contains("'nope'"),
        "{e}"
    );

    // A missing required column.
    let f = env.csv("noid.csv", "name,ts\nx,2026-10-01T00:00:00Z\n");
    let e = env
        .engine
        .import(&t, &[f], WriteMode::Append, HashMap::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("required column 'id'"), "{e}");

    // A value that does not parse: names the file and the line.
    let good = env.csv("good.csv", OCT_NOV);
    let f = env.csv(
        "badval.csv",
        "id,amount,ts\n1,10,2026-10-01T00:00:00Z\n2,ten,2026-10-01T00:00:00Z\n",
    );
    let e = env
        .engine
        .import(&t, &[good, f.clone()], WriteMode::Append, HashMap::new())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&f.path) && e.to_string().contains("line"),
        "{e}"
    );
    // Nothing from the good file was committed either.
    let table = env.lake().load_table(&t).await.unwrap();
    assert!(
        table.metadata.current_snapshot().is_none(),
        "no partial commit"
    );

    // A corrupt metadata file is named in the error.
    let loc = table.metadata_location.clone();
    env.lake()
        .storage()
        .write(&loc, bytes::Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    let e = env.lake().load_table(&t).await.unwrap_err();
    assert!(
        matches!(e, gridata_lake::Error::CorruptMetadata { .. }),
        "{e}"
    );
    assert!(e.to_string().contains(&loc), "{e}");
}

#[tokio::test]
async fn bad_input_embedded() {
    bad_input(embedded().await).await;
}

async fn concurrent_appends(env: Env) {
    let t = orders_table(&env, "conc").await;
    let mut handles = Vec::new();
    for w in 0..6 {
        let engine = env.engine.clone();
        let t = t.clone();
        let body = (0..10)
            .map(|i| format!("{},w{w},{i},2026-10-0{}T00:00:00Z", w * 100 + i, 1 + i % 5))
            .collect::<Vec<_>>()
            .join("\n");
        let file = env.csv(
            &format!("w{w}.csv"),
            &format!("id,name,amount,ts\n{body}\n"),
        );
        handles.push(tokio::spawn(async move {
            engine
                .import(&t, &[file], WriteMode::Append, HashMap::new())
                .await
        }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let ids = env.ids("SELECT id FROM conc.orders ORDER BY id").await;
    let expect: Vec<i64> = (0..6)
        .flat_map(|w| (0..10).map(move |i| w * 100 + i))
        .collect();
    assert_eq!(ids, expect, "no commit lost, no row duplicated");
    let table = env.lake().load_table(&t).await.unwrap();
    assert_eq!(table.metadata.snapshots().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_embedded() {
    concurrent_appends(embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn concurrent_appends_postgres() {
    concurrent_appends(on_postgres().await).await;
}

/// The Parquet footer of the table's first live data file.
async fn file_metadata(
    env: &Env,
    t: &TableName,
) -> gridata_engine::datafusion::parquet::file::metadata::ParquetMetaData {
    use gridata_engine::datafusion::parquet::file::reader::FileReader;
    let table = env.lake().load_table(t).await.unwrap();
    let files = env.lake().live_files(&table, None).await.unwrap();
    let (store, path) = env
        .lake()
        .storage()
        .resolve(files[0].file.file_path())
        .unwrap();
    let bytes = gridata_storage::object_store::ObjectStoreExt::get(store.as_ref(), &path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    gridata_engine::datafusion::parquet::file::reader::SerializedFileReader::new(bytes)
        .unwrap()
        .metadata()
        .clone()
}

#[tokio::test]
async fn the_dictionary_size_property_bounds_dictionary_encoding() {
    use gridata_engine::datafusion::parquet::basic::Encoding;
    let env = embedded().await;
    env.lake()
        .create_namespace("dict", &BTreeMap::new())
        .await
        .unwrap();
    let mut csv = String::from("id,status\n");
    for i in 0..5000 {
        csv.push_str(&format!("{},{}\n", i * 7919, ["paid", "shipped"][i % 2]));
    }
    let input = env.csv("ids.csv", &csv);
    let mut all_dictionary = Vec::new();
    for (name, props) in [
        ("dict.default", HashMap::new()),
        (
            "dict.small",
            HashMap::from([(
                "write.parquet.dict-size-bytes".to_string(),
                "1024".to_string(),
            )]),
        ),
    ] {
        let t = TableName::parse(name).unwrap();
        let schema = parse_schema("id long not null, status string").unwrap();
        let spec = parse_partition_spec(&[], &schema).unwrap();
        env.lake()
            .create_table(&t, schema, spec, props)
            .await
            .unwrap();
        env.engine
            .import(
                &t,
                std::slice::from_ref(&input),
                WriteMode::Append,
                HashMap::new(),
            )
            .await
            .unwrap();
        let meta = file_metadata(&env, &t).await;
        let rg = meta.row_group(0);
        all_dictionary.push(
            (0..2)
                .map(|c| {
                    rg.column(c)
                        .page_encoding_stats_mask()
                        .is_some_and(|m| m.is_only(Encoding::RLE_DICTIONARY))
                })
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            env.ids(&format!("SELECT count(*) FROM {name}")).await,
            vec![5000]
        );
    }
    // 5,000 distinct ids are 40 KB: within 1 MiB, past 1 KiB. Two statuses
    // stay a dictionary either way.
    assert_eq!(all_dictionary, vec![vec![true, true], vec![false, true]]);
}

#[tokio::test]
async fn rewrite_of_vanished_files_fails_clearly() {
    let env = embedded().await;
    let t = orders_table(&env, "cow").await;
    env.engine
        .import(
            &t,
            &[env.csv("a.csv", OCT_NOV)],
            WriteMode::Append,
            HashMap::new(),
        )
        .await
        .unwrap();
    let table = env.lake().load_table(&t).await.unwrap();
    let victim = env.lake().live_files(&table, None).await.unwrap()[0]
        .file
        .file_path()
        .to_string();
    // Another writer overwrites everything first.
    env.engine
        .import(
            &t,
            &[env.csv("b.csv", OCT_NOV)],
            WriteMode::Overwrite,
            HashMap::new(),
        )
        .await
        .unwrap();
    let e = env
        .lake()
        .commit(
            &t,
            gridata_lake::CommitRequest {
                operation: gridata_lake::iceberg::spec::Operation::Delete,
                stage: false,
                added: vec![],
                removal: gridata_lake::Removal::Files([victim].into()),
                properties: HashMap::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, gridata_lake::Error::ConcurrentChange { .. }),
        "{e}"
    );
    assert_eq!(env.ids("SELECT count(*) FROM cow.orders").await, vec![4]);
}

#[tokio::test]
async fn masked_columns_are_hidden_on_every_path() {
    let env = embedded().await;
    let t = orders_table(&env, "shop").await;
    env.engine
        .import(
            &t,
            &[env.csv("a.csv", OCT_NOV)],
            WriteMode::Append,
            HashMap::new(),
        )
        .await
        .unwrap();
    let snap = env
        .lake()
        .load_table(&t)
        .await
        .unwrap()
        .metadata
        .current_snapshot_id()
        .unwrap();
    let masks = gridata_engine::Masks::from([(
        "shop.orders".to_string(),
        BTreeMap::from([
            ("name".to_string(), gridata_engine::Mask::Hash),
            ("amount".to_string(), gridata_engine::Mask::Redact),
        ]),
    )]);
    let masked = Env {
        engine: Engine::with_masks(env.lake().clone(), masks).await.unwrap(),
        dir: tempfile::tempdir().unwrap(),
    };
    let names = masked
        .strings("SELECT name FROM shop.orders ORDER BY id")
        .await;
    assert_eq!(names.len(), 4);
    assert!(
        names
            .iter()
            .all(|n| n.as_deref().is_some_and(|n| n.len() == 32 && n != "a")),
        "{names:?}"
    );
    // Equal values stay equal: the hash is deterministic.
    let again = masked
        .strings("SELECT name FROM shop.orders ORDER BY id")
        .await;
    assert_eq!(names, again);
    // Redacted, through time travel and through a join too.
    let amounts = masked
        .strings(&format!(
            "SELECT o.amount FROM shop.orders VERSION AS OF {snap} o JOIN shop.orders p ON o.id = p.id"
        ))
        .await;
    assert_eq!(amounts, vec![None; 4]);
    // Unmasked columns and filters on them work as before.
    assert_eq!(
        masked
            .ids("SELECT id FROM shop.orders WHERE id > 2 ORDER BY id")
            .await,
        vec![3, 4]
    );
    // Without masks the values are there.
    assert_eq!(
        env.strings("SELECT name FROM shop.orders ORDER BY id")
            .await[0]
            .as_deref(),
        Some("a")
    );
}
