//! The `gridata` binary as users and other processes drive it: exit codes,
//! several writer processes at once, and a writer killed with SIGKILL.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn gridata(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gridata"));
    c.arg("--home")
        .arg(home)
        .env_remove("GRIDATA_FAULT_PAUSE_BEFORE_COMMIT_MS");
    c
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = gridata(home).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "gridata {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fail(home: &Path, args: &[&str]) -> Output {
    let out = gridata(home).args(args).output().unwrap();
    assert!(!out.status.success(), "gridata {args:?} should fail");
    out
}

fn count(home: &Path, table: &str) -> i64 {
    let out = ok(
        home,
        &[
            "sql",
            &format!("SELECT count(*) AS n FROM {table}"),
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["n"].as_i64().unwrap()
}

fn setup(dir: &Path) -> std::path::PathBuf {
    let home = dir.join("home");
    ok(&home, &["init"]);
    ok(&home, &["namespace", "create", "shop"]);
    ok(
        &home,
        &[
            "table",
            "create",
            "shop.orders",
            "--schema",
            "id long not null, amount double, ts timestamptz",
            "--partition",
            "day(ts)",
        ],
    );
    home
}

fn csv(dir: &Path, name: &str, from: i64, n: i64) -> String {
    let mut s = String::from("id,amount,ts\n");
    for i in from..from + n {
        s.push_str(&format!(
            "{i},{}.5,2026-11-{:02}T12:00:00Z\n",
            i % 100,
            1 + i % 20
        ));
    }
    let p = dir.join(name);
    std::fs::write(&p, s).unwrap();
    p.display().to_string()
}

#[test]
fn errors_exit_non_zero_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = fail(&dir.path().join("nohome"), &["table", "list"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("gridata --home"));
    let home = setup(dir.path());
    let out = fail(&home, &["table", "show", "shop.nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("table 'shop.nope' does not exist"));
    let out = fail(&home, &["table", "rollback", "shop.orders", "--to", "7"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot 7"));
    let out = fail(&home, &["table", "evolve", "shop.orders", "drop", "ts"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("partition"));
    let out = fail(&home, &["sql", "SELEC 1"]);
    assert!(!out.stderr.is_empty());
}

#[test]
fn writer_processes_in_parallel_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = setup(dir.path());
    let children: Vec<_> = (0..4)
        .map(|w| {
            let f = csv(dir.path(), &format!("w{w}.csv"), w * 1000, 200);
            gridata(&home)
                .args(["table", "import", "shop.orders", &f])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(count(&home, "shop.orders"), 800);
    let out = ok(
        &home,
        &[
            "sql",
            "SELECT count(DISTINCT id) AS n FROM shop.orders",
            "--format",
            "json",
        ],
    );
    assert!(out.contains("800"), "{out}");
    let snaps: serde_json::Value = serde_json::from_str(&ok(
        &home,
        &["table", "snapshots", "shop.orders", "--format", "json"],
    ))
    .unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 4);
}

fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn sigkill_mid_write_leaves_the_previous_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let home = setup(dir.path());
    ok(
        &home,
        &[
            "table",
            "import",
            "shop.orders",
            &csv(dir.path(), "a.csv", 0, 100),
        ],
    );
    let data = home.join("warehouse/curated/shop/orders/data");
    let before = parquet_files(&data);

    let mut child = gridata(&home)
        .args([
            "table",
            "import",
            "shop.orders",
            &csv(dir.path(), "b.csv", 100, 100),
        ])
        .env("GRIDATA_FAULT_PAUSE_BEFORE_COMMIT_MS", "60000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the doomed write has put its data files down, then kill it.
    let start = Instant::now();
    while parquet_files(&data).len() <= before.len() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the write never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let leftovers: Vec<_> = parquet_files(&data)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(!leftovers.is_empty());

    // Still the previous snapshot, still readable.
    assert_eq!(count(&home, "shop.orders"), 100);
    // The next write succeeds.
    ok(
        &home,
        &[
            "table",
            "import",
            "shop.orders",
            &csv(dir.path(), "c.csv", 200, 50),
        ],
    );
    assert_eq!(count(&home, "shop.orders"), 150);
    // Orphan cleanup removes what the killed write left, and nothing else.
    let out = ok(
        &home,
        &[
            "table",
            "remove-orphans",
            "shop.orders",
            "--older-than",
            "0s",
        ],
    );
    for p in &leftovers {
        assert!(
            !p.exists(),
            "{} survived orphan cleanup:\n{out}",
            p.display()
        );
    }
    assert_eq!(count(&home, "shop.orders"), 150);
}
