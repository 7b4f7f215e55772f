//! One storage suite, run on local disk and on an S3-compatible server.
//!
//! The S3 run is `#[ignore]`d so plain `cargo test` stays hermetic;
//! `scripts/test.sh` starts the server and runs it with `--include-ignored`.

use bytes::Bytes;
use gridata_core::{Config, Home, S3Config, StorageConfig, Zone};
use gridata_storage::{Error, Storage};

async fn suite(s: &Storage) {
    let run = uuid::Uuid::new_v4().to_string();
    let a = s.uri(Zone::Raw, &format!("{run}/orders/2026-11-20/a.csv"));
    let b = s.uri(Zone::Raw, &format!("{run}/orders/2026-11-20/b.csv"));

    // Round trip.
    s.write(&a, Bytes::from_static(b"id,qty\n1,2\n"))
        .await
        .unwrap();
    assert_eq!(s.read(&a).await.unwrap().as_ref(), b"id,qty\n1,2\n");
    assert!(s.exists(&a).await.unwrap());
    assert_eq!(s.head(&a).await.unwrap().size, 11);
    assert_eq!(s.read_prefix(&a, 6).await.unwrap().as_ref(), b"id,qty");
    assert_eq!(s.read_prefix(&a, 1 << 20).await.unwrap().len(), 11);

    // Create refuses to overwrite.
    s.create(&b, Bytes::from_static(b"x")).await.unwrap();
    assert!(matches!(
        s.create(&b, Bytes::from_static(b"y")).await,
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(s.read(&b).await.unwrap().as_ref(), b"x");

    // Listing is recursive, sorted and gives back usable URIs.
    let listed = s.list(&s.uri(Zone::Raw, &run)).await.unwrap();
    let uris: Vec<_> = listed.iter().map(|f| f.uri.clone()).collect();
    assert_eq!(uris, vec![a.clone(), b.clone()]);

    // Move between zones.
    let archived = s.uri(Zone::Archive, &format!("{run}/a.csv"));
    s.rename(&a, &archived).await.unwrap();
    assert!(!s.exists(&a).await.unwrap());
    assert_eq!(s.read(&archived).await.unwrap().as_ref(), b"id,qty\n1,2\n");

    // Missing files name themselves.
    let missing = s.uri(Zone::Raw, &format!("{run}/nope.csv"));
    match s.read(&missing).await {
        Err(Error::NotFound { uri }) => assert_eq!(uri, missing),
        other => panic!("expected NotFound, got {other:?}"),
    }
    s.delete(&missing).await.unwrap();
    s.delete(&b).await.unwrap();
    s.delete(&archived).await.unwrap();
    assert!(s.list(&s.uri(Zone::Raw, &run)).await.unwrap().is_empty());
}

#[tokio::test]
async fn local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::open(dir.path()).unwrap();
    let s = Storage::open(&home).unwrap();
    s.init().unwrap();
    assert!(dir.path().join("warehouse/curated").is_dir());
    suite(&s).await;
}

/// S3 settings from the environment `scripts/test.sh` sets up.
pub fn s3_home(dir: &std::path::Path) -> Home {
    let endpoint = std::env::var("GRIDATA_TEST_S3_ENDPOINT").expect(
        "GRIDATA_TEST_S3_ENDPOINT is not set: this test needs an S3-compatible server; \
         run scripts/test.sh, which starts one on loopback",
    );
    let bucket = std::env::var("GRIDATA_TEST_S3_BUCKET").unwrap_or_else(|_| "gridata-test".into());
    Home {
        root: dir.to_path_buf(),
        config: Config {
            storage: StorageConfig::S3(S3Config {
                endpoint: Some(endpoint),
                region: "us-east-1".into(),
                bucket: Some(bucket),
                prefix: Some(format!("suite-{}", uuid::Uuid::new_v4())),
                buckets: Default::default(),
                path_style: true,
                allow_http: true,
                access_key_id: Some(gridata_core::SecretRef::new("${env:AWS_ACCESS_KEY_ID}")),
                secret_access_key: Some(gridata_core::SecretRef::new(
                    "${env:AWS_SECRET_ACCESS_KEY}",
                )),
            }),
            ..Default::default()
        },
    }
}

#[tokio::test]
#[ignore = "needs an S3-compatible server: run scripts/test.sh"]
async fn s3_compatible_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(&s3_home(dir.path())).unwrap();
    suite(&s).await;
}
