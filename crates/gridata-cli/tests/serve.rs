//! `gridata serve` as real processes: SIGKILL recovery, two schedulers
//! sharing one state store, failover, graceful shutdown, and the access
//! rules of every write endpoint. The PostgreSQL variants need
//! `GRIDATA_TEST_PG_URL` (scripts/test.sh starts PostgreSQL and sets it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn gridata(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gridata"));
    c.arg("--home").arg(home);
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

fn pg_url() -> String {
    std::env::var("GRIDATA_TEST_PG_URL").expect(
        "GRIDATA_TEST_PG_URL is not set: this test needs PostgreSQL; run scripts/test.sh, which installs and starts it",
    )
}

/// A home with the given state store and no pipelines but `pipelines`.
fn home(dir: &Path, state_url: Option<&str>, pipelines: &[(&str, String)]) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    if let Some(url) = state_url {
        std::fs::write(
            home.join("gridata.yaml"),
            format!("state:\n  url: \"{url}\"\n"),
        )
        .unwrap();
    }
    ok(&home, &["init"]);
    for f in std::fs::read_dir(home.join("pipelines")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    for (id, yaml) in pipelines {
        std::fs::write(home.join("pipelines").join(format!("{id}.yaml")), yaml).unwrap();
    }
    home
}

/// A unique pipeline id, so runs in a shared PostgreSQL never mix.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{nanos}")
}

struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn start(home: &Path, extra: &[&str]) -> Self {
        let mut child = gridata(home)
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--lease-ttl",
                "2",
                "--tick-ms",
                "100",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("serve did not start: {line:?}"))
            .to_string();
        Self { child, base: addr }
    }

    fn kill9(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    fn term(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn run_json(base: &str, run_id: &str) -> Value {
    let (status, v) = call("GET", &format!("{base}/api/v1/runs/{run_id}"), None, None).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn wait_run(base: &str, run_id: &str, state: &str, secs: u64) -> Value {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut last = Value::Null;
    while Instant::now() < end {
        let v = run_json(base, run_id).await;
        if v["run"]["state"] == state {
            return v;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run_id} never became {state}: {last:#}");
}

async fn wait_task_running(base: &str, run_id: &str, task: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        let v = run_json(base, run_id).await;
        let running = v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["task_id"] == task && t["state"] == "running");
        if running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {task} of {run_id} never ran");
}

fn task<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"] == id)
        .unwrap()
}

fn count(home: &Path, sql: &str) -> i64 {
    let out = ok(home, &["sql", sql, "--format", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0]["n"].as_i64().unwrap()
}

/// Writes 1000 rows, then waits while the write is staged, then checks.
fn slow_load(id: &str) -> String {
    format!(
        r#"
id: {id}
defaults: {{ retries: 2, retry_delay: 1s }}
tasks:
  - id: rows
    sql: {{ query: "SELECT CAST(value AS BIGINT) AS id FROM generate_series(1, 1000)" }}
  - id: write
    depends_on: [rows]
    write: {{ input: rows, table: demo.{id}, mode: append }}
  - id: wait
    depends_on: [write]
    command: {{ program: sleep, args: ["3"] }}
  - id: check
    depends_on: [wait]
    quality:
      table: demo.{id}
      checks:
        - row_count: {{ min: 1000, max: 1000 }}
"#
    )
}

async fn sigkill_recovery(state_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("slow");
    let home = home(dir.path(), state_url, &[(&id, slow_load(&id))]);
    let mut first = Serve::start(&home, &[]);
    let (status, run) = call(
        "POST",
        &format!("{}/api/v1/pipelines/{id}/runs", first.base),
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    // Killed while the write is staged and a task is running.
    wait_task_running(&first.base, &run_id, "wait").await;
    first.kill9();

    let second = Serve::start(&home, &[]);
    let done = wait_run(&second.base, &run_id, "success", 60).await;
    let wait = task(&done, "wait");
    assert!(wait["attempts"].as_u64().unwrap() >= 2, "{done:#}");
    let (_, attempts) = call(
        "GET",
        &format!("{}/api/v1/runs/{run_id}/tasks/wait", second.base),
        None,
        None,
    )
    .await;
    assert!(
        attempts["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{attempts:#}"
    );
    drop(second);
    // No row lost and none written twice; no staged snapshot left over.
    assert_eq!(
        count(&home, &format!("SELECT count(*) AS n FROM demo.{id}")),
        1000
    );
    assert_eq!(
        count(
            &home,
            &format!("SELECT count(DISTINCT id) AS n FROM demo.{id}")
        ),
        1000
    );
    let snaps: Value = serde_json::from_str(&ok(
        &home,
        &[
            "table",
            "snapshots",
            &format!("demo.{id}"),
            "--format",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_resumes_on_restart_sqlite() {
    sigkill_recovery(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn sigkill_mid_run_resumes_on_restart_postgres() {
    sigkill_recovery(Some(&pg_url())).await;
}

/// Runs of two tasks; task `a` lasts long enough that 16 runs outlast a
/// second scheduler's claim interval (1 s) even on a loaded machine.
fn logged(id: &str, log: &Path) -> String {
    let log = log.display();
    format!(
        r#"
id: {id}
max_active_runs: 16
tasks:
  - id: a
    command: {{ program: sh, args: ["-c", "echo {{{{ run_id }}}} a >> {log}; sleep 0.6"] }}
  - id: b
    depends_on: [a]
    command: {{ program: sh, args: ["-c", "echo {{{{ run_id }}}} b >> {log}"] }}
"#
    )
}

async fn two_schedulers(state_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("shared");
    let slow = unique("failover");
    let log = dir.path().join("runs.log");
    let home = home(
        dir.path(),
        state_url,
        &[(&id, logged(&id, &log)), (&slow, slow_load(&slow))],
    );
    // Failover: A runs a slow run, B is idle; A dies; B finishes it.
    let mut a = Serve::start(&home, &["--max-runs", "2"]);
    let (_, run) = call(
        "POST",
        &format!("{}/api/v1/pipelines/{slow}/runs", a.base),
        None,
        Some(json!({})),
    )
    .await;
    let slow_run = run["run_id"].as_str().unwrap().to_string();
    wait_task_running(&a.base, &slow_run, "wait").await;
    let owner_a = run_json(&a.base, &slow_run).await["run"]["owner"].clone();
    let b = Serve::start(&home, &["--max-runs", "2"]);
    a.kill9();
    let killed = Instant::now();
    let done = wait_run(&b.base, &slow_run, "success", 60).await;
    assert_ne!(
        done["run"]["owner"], owner_a,
        "taken over by the other scheduler"
    );
    // Lease 2 s, then the interrupted task (3 s) runs again.
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(
        count(&home, &format!("SELECT count(*) AS n FROM demo.{slow}")),
        1000
    );

    // Sharing: two schedulers, many runs, no task twice.
    let a = Serve::start(&home, &["--max-runs", "2"]);
    let mut ids = Vec::new();
    for _ in 0..16 {
        let (status, run) = call(
            "POST",
            &format!("{}/api/v1/pipelines/{id}/runs", a.base),
            None,
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 201);
        ids.push(run["run_id"].as_str().unwrap().to_string());
    }
    let mut owners = std::collections::BTreeSet::new();
    for r in &ids {
        let v = wait_run(&b.base, r, "success", 60).await;
        owners.insert(v["run"]["owner"].as_str().unwrap().to_string());
    }
    assert_eq!(owners.len(), 2, "both schedulers executed runs: {owners:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 32, "{text}");
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 32, "a task ran twice:\n{text}");
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_share_runs_and_fail_over_sqlite() {
    two_schedulers(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn two_schedulers_share_runs_and_fail_over_postgres() {
    two_schedulers(Some(&pg_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_task_finish_and_hands_the_run_back() {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("slow");
    let home = home(dir.path(), None, &[(&id, slow_load(&id))]);
    let mut first = Serve::start(&home, &["--shutdown-grace", "20"]);
    let (_, run) = call(
        "POST",
        &format!("{}/api/v1/pipelines/{id}/runs", first.base),
        None,
        Some(json!({})),
    )
    .await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    wait_task_running(&first.base, &run_id, "wait").await;
    let status = first.term();
    assert!(status.success(), "{status:?}");
    let second = Serve::start(&home, &[]);
    let done = wait_run(&second.base, &run_id, "success", 30).await;
    assert_eq!(
        task(&done, "wait")["attempts"],
        1,
        "not interrupted: {done:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_endpoint_enforces_its_role() {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("p");
    let home = home(dir.path(), None, &[(&id, slow_load(&id))]);
    // Open (no token): loopback only, whatever was asked.
    let mut open = gridata(&home)
        .args(["serve", "--addr", "0.0.0.0:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(open.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening on http://127.0.0.1:"), "{line}");
    let _ = open.kill();
    let _ = open.wait();

    let token = |role: &str| {
        ok(&home, &["token", "create", "--role", role])
            .trim()
            .to_string()
    };
    let (viewer, operator, admin) = (token("viewer"), token("operator"), token("admin"));
    let s = Serve::start(&home, &[]);
    // A finished run and a table to act on.
    let (_, run) = call(
        "POST",
        &format!("{}/api/v1/pipelines/{id}/runs", s.base),
        Some(&admin),
        Some(json!({})),
    )
    .await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let done = wait_run_auth(&s.base, &run_id, &admin).await;
    let snapshot = {
        let (_, snaps) = call(
            "GET",
            &format!("{}/api/v1/tables/demo.{id}/snapshots", s.base),
            Some(&admin),
            None,
        )
        .await;
        snaps[0]["snapshot_id"].as_i64().unwrap()
    };
    assert_eq!(done, "success");
    let b = &s.base;
    let endpoints: Vec<(&str, String, Value, &str)> = vec![
        (
            "POST",
            format!("{b}/api/v1/pipelines/validate"),
            json!({"yaml": "id: x\ntasks: []"}),
            "viewer",
        ),
        (
            "POST",
            format!("{b}/api/v1/sql"),
            json!({"query": "SELECT 1"}),
            "viewer",
        ),
        (
            "POST",
            format!("{b}/api/v1/pipelines/{id}/pause"),
            json!({"paused": false}),
            "operator",
        ),
        (
            "POST",
            format!("{b}/api/v1/pipelines/{id}/runs"),
            json!({}),
            "operator",
        ),
        (
            "POST",
            format!("{b}/api/v1/pipelines/{id}/backfills"),
            json!({"start": "2026-11-01", "end": "2026-11-02"}),
            "operator",
        ),
        (
            "POST",
            format!("{b}/api/v1/runs/{run_id}/cancel"),
            json!({}),
            "operator",
        ),
        (
            "POST",
            format!("{b}/api/v1/runs/{run_id}/clear"),
            json!({"task": "check"}),
            "operator",
        ),
        (
            "POST",
            format!("{b}/api/v1/tables/demo.{id}/rollback"),
            json!({"snapshot_id": snapshot}),
            "admin",
        ),
        (
            "POST",
            format!("{b}/api/v1/tokens"),
            json!({"name": "t", "role": "viewer"}),
            "admin",
        ),
        (
            "DELETE",
            format!("{b}/api/v1/tokens/nope"),
            Value::Null,
            "admin",
        ),
        (
            "PUT",
            format!("{b}/api/v1/pools/db"),
            json!({"slots": 2}),
            "admin",
        ),
    ];
    let rank = |r: &str| {
        ["viewer", "operator", "admin"]
            .iter()
            .position(|x| *x == r)
            .unwrap()
    };
    for (method, url, body, needs) in &endpoints {
        let body = (!body.is_null()).then(|| body.clone());
        let (status, v) = call(method, url, None, body.clone()).await;
        assert_eq!(status, 401, "{method} {url} without a token: {v}");
        assert_eq!(v["code"], "unauthorized");
        let (status, _) = call(method, url, Some("gdt_bad_token"), body.clone()).await;
        assert_eq!(status, 401, "{method} {url} with a bad token");
        for (role, token) in [
            ("viewer", &viewer),
            ("operator", &operator),
            ("admin", &admin),
        ] {
            let (status, v) = call(method, url, Some(token), body.clone()).await;
            if rank(role) < rank(needs) {
                assert_eq!(status, 403, "{method} {url} as {role}: {v}");
                assert_eq!(v["code"], "forbidden");
            } else {
                assert!(
                    status != 401 && status != 403 && status < 500,
                    "{method} {url} as {role}: {status} {v}"
                );
            }
        }
    }
    // Reads need at least a viewer token.
    let (status, _) = call("GET", &format!("{b}/api/v1/runs"), None, None).await;
    assert_eq!(status, 401);
    let (status, _) = call("GET", &format!("{b}/api/v1/runs"), Some(&viewer), None).await;
    assert_eq!(status, 200);
    // A revoked token is refused.
    let list = ok(&home, &["token", "list"]);
    let viewer_id = list
        .lines()
        .find(|l| l.contains("viewer"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    ok(&home, &["token", "revoke", &viewer_id]);
    let (status, _) = call("GET", &format!("{b}/api/v1/runs"), Some(&viewer), None).await;
    assert_eq!(status, 401);
}

async fn wait_run_auth(base: &str, run_id: &str, token: &str) -> String {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        let (_, v) = call(
            "GET",
            &format!("{base}/api/v1/runs/{run_id}"),
            Some(token),
            None,
        )
        .await;
        let state = v["run"]["state"].as_str().unwrap_or("").to_string();
        if state == "success" || state == "failed" {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run_id} did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let home = home(dir.path(), None, &[]);
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed to make a test certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let s = Serve::start(
        &home,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/api/v1/health", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Plain HTTP on the TLS port gets no API answer.
    let plain = s.base.replace("https://", "http://");
    let r = reqwest::get(format!("{plain}/api/v1/health")).await;
    assert!(r.is_err() || !r.unwrap().status().is_success());
}
