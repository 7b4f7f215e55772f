//! `/metrics` in the Prometheus text format (0.0.4).
//!
//! Invariants:
//! - Counters only grow and end in `_total`; durations are in seconds.
//! - Every family has HELP and TYPE lines, and label values are escaped,
//!   so `promtool check metrics` accepts the output.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

type Labels = Vec<(&'static str, String)>;

/// A gauge family computed at scrape time: name, help, labelled values.
pub type Gauge<'a> = (&'a str, &'a str, Vec<(Labels, f64)>);

#[derive(Debug, Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// The metrics of one server process.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, Labels), f64>>,
    histograms: Mutex<BTreeMap<(&'static str, Labels), Histogram>>,
}

/// Help text of each family.
const HELP: &[(&str, &str, &str)] = &[
    (
        "gridata_runs_queued_total",
        "counter",
        "Runs queued, by pipeline and trigger.",
    ),
    (
        "gridata_runs_claimed_total",
        "counter",
        "Runs this process began executing, by pipeline.",
    ),
    (
        "gridata_runs_finished_total",
        "counter",
        "Runs that stopped executing here, by pipeline and state.",
    ),
    (
        "gridata_tasks_started_total",
        "counter",
        "Task attempts started, by pipeline.",
    ),
    (
        "gridata_tasks_finished_total",
        "counter",
        "Tasks that reached a final state, by pipeline and state.",
    ),
    (
        "gridata_http_requests_total",
        "counter",
        "HTTP requests, by method, route and status.",
    ),
    (
        "gridata_task_duration_seconds",
        "histogram",
        "Time from a task's first attempt to its final state.",
    ),
    (
        "gridata_run_duration_seconds",
        "histogram",
        "Time a run executed in this process.",
    ),
    (
        "gridata_http_request_duration_seconds",
        "histogram",
        "HTTP request latency, by route.",
    ),
];

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(l: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        "+Inf".into()
    } else {
        format!("{v}")
    }
}

impl Metrics {
    /// Add to a counter.
    pub fn inc(&self, name: &'static str, l: Labels, by: f64) {
        *self
            .counters
            .lock()
            .expect("metrics")
            .entry((name, l))
            .or_default() += by;
    }

    /// Record an observation.
    pub fn observe(&self, name: &'static str, l: Labels, v: f64) {
        let mut h = self.histograms.lock().expect("metrics");
        let h = h.entry((name, l)).or_insert_with(|| Histogram {
            buckets: vec![0; BUCKETS.len()],
            ..Default::default()
        });
        for (i, b) in BUCKETS.iter().enumerate() {
            if v <= *b {
                h.buckets[i] += 1;
            }
        }
        h.sum += v;
        h.count += 1;
    }

    /// The exposition text, with `gauges` (name, help, labelled values)
    /// computed at scrape time.
    pub fn render(&self, gauges: &[Gauge<'_>]) -> String {
        let mut out = String::new();
        let counters = self.counters.lock().expect("metrics");
        let histograms = self.histograms.lock().expect("metrics");
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            if *kind == "counter" {
                for ((n, l), v) in counters.iter() {
                    if n == name {
                        let _ = writeln!(out, "{name}{} {}", labels(l, None), number(*v));
                    }
                }
            } else {
                for ((n, l), h) in histograms.iter() {
                    if n != name {
                        continue;
                    }
                    for (i, b) in BUCKETS.iter().enumerate() {
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {}",
                            labels(l, Some(("le", number(*b)))),
                            h.buckets[i]
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        labels(l, Some(("le", "+Inf".into()))),
                        h.count
                    );
                    let _ = writeln!(out, "{name}_sum{} {}", labels(l, None), number(h.sum));
                    let _ = writeln!(out, "{name}_count{} {}", labels(l, None), h.count);
                }
            }
        }
        for (name, help, values) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (l, v) in values {
                let _ = writeln!(out, "{name}{} {}", labels(l, None), number(*v));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.inc(
            "gridata_runs_queued_total",
            vec![("pipeline", "a\"b".into())],
            1.0,
        );
        m.observe(
            "gridata_task_duration_seconds",
            vec![("pipeline", "a".into())],
            0.3,
        );
        let text = m.render(&[("gridata_up", "Up.", vec![(vec![], 1.0)])]);
        assert!(text.contains("gridata_runs_queued_total{pipeline=\"a\\\"b\"} 1\n"));
        assert!(
            text.contains("gridata_task_duration_seconds_bucket{pipeline=\"a\",le=\"0.25\"} 0\n")
        );
        assert!(
            text.contains("gridata_task_duration_seconds_bucket{pipeline=\"a\",le=\"0.5\"} 1\n")
        );
        assert!(
            text.contains("gridata_task_duration_seconds_bucket{pipeline=\"a\",le=\"+Inf\"} 1\n")
        );
        assert!(text.contains("# TYPE gridata_up gauge\ngridata_up 1\n"));
    }
}
