//! Triggers: cron schedules, file arrival, table changes and backfills.
//! Each turns into [`Scheduler::enqueue`] with a dedup key.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone};
use gridata_core::{TableName, Zone};
use gridata_pipeline::{Loaded, RunOptions};
use gridata_state::{RunFilter, RunState};

use crate::{Error, Result, Scheduler};

/// The next time a cron expression fires after `after_ms`, in its zone.
pub fn next_cron(expr: &str, timezone: Option<&str>, after_ms: i64) -> Result<i64> {
    let cron =
        croner::Cron::from_str(expr).map_err(|e| Error::Invalid(format!("cron '{expr}': {e}")))?;
    let tz: chrono_tz::Tz = timezone
        .unwrap_or("UTC")
        .parse()
        .map_err(|_| Error::Invalid(format!("unknown time zone '{}'", timezone.unwrap_or(""))))?;
    let after = tz
        .timestamp_millis_opt(after_ms)
        .single()
        .ok_or_else(|| Error::Invalid(format!("time {after_ms} out of range")))?;
    cron.find_next_occurrence(&after, false)
        .map(|t| t.timestamp_millis())
        .map_err(|e| Error::Invalid(format!("cron '{expr}': {e}")))
}

/// Queue the runs a cron schedule owes: every missed time with catchup,
/// else only the latest.
pub(crate) async fn cron(s: &Arc<Scheduler>, p: &Arc<Loaded>) -> Result<()> {
    let id = &p.pipeline.id;
    let t = &p.pipeline.trigger;
    let Some(expr) = &t.cron else { return Ok(()) };
    let now = s.clock.now_ms();
    let Some(last) = s.store.trigger_value(id, "cron").await? else {
        // First sight: schedules start from now, never from the epoch.
        s.store
            .set_trigger_value(id, "cron", &now.to_string())
            .await?;
        return Ok(());
    };
    let mut at: i64 = last.parse().unwrap_or(now);
    let mut due = Vec::new();
    loop {
        let next = next_cron(expr, t.timezone.as_deref(), at)?;
        if next > now || due.len() >= 1000 {
            break;
        }
        due.push(next);
        at = next;
    }
    if due.is_empty() {
        return Ok(());
    }
    if !t.catchup {
        due = vec![*due.last().expect("non-empty")];
    }
    for fire in &due {
        s.enqueue(
            id,
            RunOptions {
                trigger: "cron".into(),
                dedup_key: Some(format!("cron:{id}:{fire}")),
                logical_ms: Some(*fire),
                ..Default::default()
            },
        )
        .await?;
    }
    s.store
        .set_trigger_value(id, "cron", &at.to_string())
        .await?;
    Ok(())
}

/// Queue a run when a table the pipeline depends on has a new snapshot.
/// Changes while a table-triggered run is still queued join that run.
pub(crate) async fn tables(s: &Arc<Scheduler>, p: &Arc<Loaded>) -> Result<()> {
    let id = &p.pipeline.id;
    let mut changed = Vec::new();
    let mut missing = Vec::new();
    for table in &p.pipeline.trigger.tables {
        let Ok(name) = TableName::parse(table) else {
            continue;
        };
        // "-" stands for "no snapshot yet": the table's first data counts
        // as a change.
        let current = match s.runner.lake().load_table(&name).await {
            Ok(t) => t
                .metadata
                .current_snapshot_id()
                .map(|x| x.to_string())
                .unwrap_or_else(|| "-".into()),
            Err(_) => "-".into(),
        };
        if current == "-" {
            missing.push(table.as_str());
        }
        let key = format!("table:{table}");
        let seen = s.store.trigger_value(id, &key).await?;
        if seen.as_deref() != Some(current.as_str()) {
            if seen.is_some() && current != "-" {
                changed.push(format!("{table}@{current}"));
            }
            s.store.set_trigger_value(id, &key, &current).await?;
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    if !missing.is_empty() {
        // A run would fail on the missing input; the table's first
        // snapshot will trigger it.
        tracing::info!(pipeline = %id, missing = ?missing, "tables changed but inputs are missing; waiting");
        return Ok(());
    }
    let waiting = s
        .store
        .runs(&RunFilter {
            pipeline: Some(id.clone()),
            state: Some(RunState::Queued),
            limit: 50,
            ..Default::default()
        })
        .await?
        .iter()
        .any(|r| r.trigger == "table");
    if waiting {
        return Ok(());
    }
    s.enqueue(
        id,
        RunOptions {
            trigger: "table".into(),
            dedup_key: Some(format!("table:{id}:{}", changed.join(","))),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

/// A file trigger's path pattern: `{name}` captures a segment (a
/// parameter; `{date}` only matches `YYYY-MM-DD`), `*` matches within one.
#[derive(Debug, Clone)]
pub struct FilePattern {
    regex: regex::Regex,
    prefix: String,
}

impl FilePattern {
    /// Parse a pattern.
    pub fn parse(pattern: &str) -> Result<Self> {
        let mut re = String::from("^");
        let mut rest = pattern;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after
                    .find('}')
                    .ok_or_else(|| Error::Invalid(format!("unclosed '{{' in '{pattern}'")))?;
                let name = &after[..end];
                if name == "date" {
                    re.push_str(r"(?P<date>\d{4}-\d{2}-\d{2})");
                } else {
                    re.push_str(&format!("(?P<{name}>[^/]+)"));
                }
                rest = &after[end + 1..];
            } else if let Some(after) = rest.strip_prefix('*') {
                re.push_str("[^/]*");
                rest = after;
            } else {
                let c = rest.chars().next().expect("non-empty");
                re.push_str(&regex::escape(&c.to_string()));
                rest = &rest[c.len_utf8()..];
            }
        }
        re.push('$');
        let regex = regex::Regex::new(&re)
            .map_err(|e| Error::Invalid(format!("pattern '{pattern}': {e}")))?;
        let cut = pattern.find(['{', '*']).unwrap_or(pattern.len());
        let prefix = pattern[..cut]
            .rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default();
        Ok(Self { regex, prefix })
    }

    /// The folder to list: the pattern's fixed leading segments.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The captures if `rel` (a path in the zone) matches. Checksums and
    /// temporary files never match.
    pub fn matches(&self, rel: &str) -> Option<BTreeMap<String, String>> {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if name.starts_with('.')
            || name.contains('#')
            || name.ends_with(".sha256")
            || name.ends_with(".tmp")
        {
            return None;
        }
        let caps = self.regex.captures(rel)?;
        if let Some(d) = caps.name("date")
            && NaiveDate::parse_from_str(d.as_str(), "%Y-%m-%d").is_err()
        {
            return None;
        }
        Some(
            self.regex
                .capture_names()
                .flatten()
                .filter_map(|n| Some((n.to_string(), caps.name(n)?.as_str().to_string())))
                .collect(),
        )
    }
}

/// Queue runs for new files matching the pipeline's file trigger. With
/// `only`, just that file (from a notification); else the zone is listed.
pub(crate) async fn files(
    s: &Arc<Scheduler>,
    p: &Arc<Loaded>,
    only: Option<(String, i64)>,
) -> Result<()> {
    let id = &p.pipeline.id;
    let Some(ft) = &p.pipeline.trigger.files else {
        return Ok(());
    };
    let pattern = FilePattern::parse(&ft.path)?;
    let zone: Zone = ft.zone.zone();
    let storage = s.runner.lake().storage();
    let since: i64 = match s.store.trigger_value(id, "files.since").await? {
        Some(v) => v.parse().unwrap_or(0),
        None => {
            // Files already there when watching began are not new.
            let now = s.clock.now_ms();
            s.store
                .set_trigger_value(id, "files.since", &now.to_string())
                .await?;
            now
        }
    };
    let base = format!("{}/", storage.zone_uri(zone));
    let found: Vec<(String, i64)> = match only {
        Some(f) => vec![f],
        None => match storage.list(&storage.uri(zone, pattern.prefix())).await {
            Ok(files) => files
                .into_iter()
                .map(|f| (f.uri, f.last_modified_ms))
                .collect(),
            Err(gridata_storage::Error::NotFound { .. }) => vec![],
            Err(e) => {
                tracing::warn!(pipeline = %id, error = %e, "listing for the file trigger failed");
                vec![]
            }
        },
    };
    for (uri, modified) in found {
        if modified < since {
            continue;
        }
        let Some(rel) = uri.strip_prefix(&base) else {
            continue;
        };
        let Some(caps) = pattern.matches(rel) else {
            continue;
        };
        let key = format!("file:{id}:{rel}:{modified}");
        if !s.seen_files.lock().expect("seen").insert(key.clone()) {
            continue;
        }
        let mut params: BTreeMap<String, String> = caps
            .into_iter()
            .filter(|(k, _)| p.pipeline.params.contains_key(k))
            .collect();
        if p.pipeline.params.contains_key("file") {
            params.insert("file".into(), rel.to_string());
        }
        // A run with the same parameters created after the file arrived
        // will read it: no second run.
        let resolved =
            gridata_pipeline::load::resolve_params(&p.pipeline, &params, s.clock.now_ms())?;
        let covered = s
            .store
            .runs(&RunFilter {
                pipeline: Some(id.clone()),
                limit: 20,
                ..Default::default()
            })
            .await?
            .iter()
            .any(|r| {
                r.params == resolved
                    && r.created_ms >= modified
                    && matches!(
                        r.state,
                        RunState::Queued | RunState::Running | RunState::Success
                    )
            });
        if covered {
            continue;
        }
        s.enqueue(
            id,
            RunOptions {
                params,
                trigger: "file".into(),
                dedup_key: Some(key),
                ..Default::default()
            },
        )
        .await?;
    }
    Ok(())
}

/// Watch local zones with filesystem notifications; each new file is
/// checked against the file triggers at once.
pub(crate) fn watch_files(s: Arc<Scheduler>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let storage = s.runner.lake().storage().clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<std::path::PathBuf>();
    let mut watcher =
        match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(e) = res
                && matches!(
                    e.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any
                )
            {
                for p in e.paths {
                    let _ = tx.send(p);
                }
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "file notifications unavailable; listing instead");
                return None;
            }
        };
    let mut watched = false;
    for zone in gridata_core::ZONES {
        let Some(dir) = storage.zone_uri(zone).strip_prefix("file://") else {
            continue;
        };
        let _ = std::fs::create_dir_all(dir);
        match watcher.watch(std::path::Path::new(dir), RecursiveMode::Recursive) {
            Ok(()) => watched = true,
            Err(e) => tracing::warn!(dir, error = %e, "cannot watch; listing instead"),
        }
    }
    if !watched {
        return None;
    }
    tokio::spawn(async move {
        while let Some(path) = rx.recv().await {
            // Files can land in a new folder before its watch exists: a
            // new folder is scanned at once, and again shortly after, while
            // its watch is being set up.
            let is_dir = path.is_dir();
            for file in files_under(&path) {
                on_file(&s, &file).await;
            }
            if is_dir {
                let s = s.clone();
                tokio::spawn(async move {
                    for wait in [200, 1000] {
                        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                        for file in files_under(&path) {
                            on_file(&s, &file).await;
                        }
                    }
                });
            }
        }
    });
    Some(watcher)
}

fn files_under(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(meta) = std::fs::metadata(path) else {
        return vec![];
    };
    if meta.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => dirs.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}

async fn on_file(s: &Arc<Scheduler>, path: &std::path::Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or_else(|| s.clock.now_ms());
    let uri = format!("file://{}", path.display());
    let paused = s.store.paused().await.unwrap_or_default();
    for (id, p) in s.pipelines() {
        if p.pipeline.trigger.files.is_none() || paused.contains(&id) {
            continue;
        }
        if let Err(e) = files(s, &p, Some((uri.clone(), modified))).await {
            tracing::warn!(pipeline = %id, error = %e, "file trigger failed");
        }
    }
}

/// Move backfills on: start runs for the next dates while fewer than
/// `max_parallel` are active, and close finished backfills.
pub(crate) async fn backfills(s: &Arc<Scheduler>) -> Result<()> {
    for b in s.store.backfills(true).await? {
        let runs = s
            .store
            .runs(&RunFilter {
                backfill_id: Some(b.backfill_id.clone()),
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        let active = runs.iter().filter(|r| !r.state.is_terminal()).count();
        let end = NaiveDate::parse_from_str(&b.end_date, "%Y-%m-%d")
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let mut next = NaiveDate::parse_from_str(&b.next_date, "%Y-%m-%d")
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let mut started = 0;
        while next <= end && active + started < b.max_parallel as usize {
            let mut params = b.params.clone();
            params.insert("date".into(), next.to_string());
            s.enqueue(
                &b.pipeline,
                RunOptions {
                    params,
                    trigger: "backfill".into(),
                    dedup_key: Some(format!("backfill:{}:{next}", b.backfill_id)),
                    backfill_id: Some(b.backfill_id.clone()),
                    ..Default::default()
                },
            )
            .await?;
            started += 1;
            next = next.succ_opt().expect("date in range");
        }
        let state = if next > end && active + started == 0 {
            if runs.iter().all(|r| r.state == RunState::Success) {
                "success"
            } else if runs.iter().any(|r| r.state == RunState::Cancelled) {
                "cancelled"
            } else {
                "failed"
            }
        } else {
            "running"
        };
        if started > 0 || state != "running" {
            s.store
                .update_backfill(&b.backfill_id, &next.to_string(), state)
                .await?;
            if state != "running" {
                tracing::info!(backfill = %b.backfill_id, pipeline = %b.pipeline, state, "backfill ended");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_capture_dates_and_skip_sidecars() {
        let p = FilePattern::parse("ecommerce/orders/{date}/orders.*").unwrap();
        assert_eq!(p.prefix(), "ecommerce/orders");
        let caps = p.matches("ecommerce/orders/2026-11-20/orders.csv").unwrap();
        assert_eq!(caps["date"], "2026-11-20");
        assert!(
            p.matches("ecommerce/orders/2026-11-20/orders.csv.sha256")
                .is_none()
        );
        assert!(
            p.matches("ecommerce/orders/2026-13-40/orders.csv")
                .is_none()
        );
        assert!(p.matches("ecommerce/orders/2026-11-20/items.csv").is_none());
        assert!(
            p.matches("ecommerce/orders/2026-11-20/x/orders.csv")
                .is_none()
        );
        let q = FilePattern::parse("in/{region}/*.json").unwrap();
        assert_eq!(q.matches("in/eu/a.json").unwrap()["region"], "eu");
    }

    #[test]
    fn cron_follows_its_time_zone() {
        // 2026-11-20 00:00 UTC.
        let t = 1_795_132_800_000;
        let utc = next_cron("0 3 * * *", None, t).unwrap();
        assert_eq!(utc - t, 3 * 3_600_000);
        // 03:00 in New York (UTC-5 in November) is 08:00 UTC.
        let ny = next_cron("0 3 * * *", Some("America/New_York"), t).unwrap();
        assert_eq!(ny - t, 8 * 3_600_000);
        assert!(next_cron("0 3 * *", None, t).is_err());
        assert!(next_cron("0 3 * * *", Some("Mars/Base"), t).is_err());
    }
}
