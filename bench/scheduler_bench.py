#!/usr/bin/env python3
"""Scheduler benchmark (issue #4), driven through a real `gridata serve`.

(a) task-to-task latency: the time from a task's end to its successor's
    start, median and p99, over a chain of 100 no-op tasks (3 runs);
(b) file arrival to run start, with filesystem notifications and with the
    listing fallback;
(c) task instances per second through the state store (the
    `throughput` example of gridata-state), on SQLite and PostgreSQL.

Standard library only. Prints a report and writes JSON to bench/out/.
"""

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

CHAIN = 100


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def pct(xs, p):
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


class Serve:
    def __init__(self, bin_, home, *extra):
        self.p = subprocess.Popen(
            [bin_, "--home", home, "serve", "--addr", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.p.stdout.readline()
        if "listening on" not in line:
            raise SystemExit(f"gridata serve did not start: {line!r}")
        self.base = line.split("listening on ")[1].split()[0]

    def close(self):
        self.p.terminate()
        self.p.wait(timeout=60)


def make_home(bin_, root, state_url, pipelines):
    home = os.path.join(root, "home")
    os.makedirs(home, exist_ok=True)
    if state_url:
        with open(os.path.join(home, "gridata.yaml"), "w") as f:
            f.write(f'state:\n  url: "{state_url}"\n')
    subprocess.run([bin_, "--home", home, "init"], check=True, stdout=subprocess.DEVNULL)
    pdir = os.path.join(home, "pipelines")
    for f in os.listdir(pdir):
        os.remove(os.path.join(pdir, f))
    for pid, text in pipelines.items():
        with open(os.path.join(pdir, f"{pid}.yaml"), "w") as f:
            f.write(text)
    return home


def wait_run(base, run_id, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        v = call("GET", f"{base}/api/v1/runs/{run_id}")
        if v["run"]["state"] in ("success", "failed", "cancelled"):
            return v
        time.sleep(0.05)
    raise SystemExit(f"run {run_id} did not end")


def chain_latency(bin_, state_url, tag):
    pid = f"chain_{tag}_{time.time_ns()}"
    tasks = []
    for i in range(CHAIN):
        dep = f"\n    depends_on: [t{i - 1}]" if i else ""
        tasks.append(f"  - id: t{i}{dep}\n    command: {{ program: \"true\" }}")
    yaml = f"id: {pid}\nmax_active_tasks: 1\ntasks:\n" + "\n".join(tasks) + "\n"
    with tempfile.TemporaryDirectory() as root:
        home = make_home(bin_, root, state_url, {pid: yaml})
        s = Serve(bin_, home)
        try:
            gaps, durations = [], []
            for _ in range(3):
                run = call("POST", f"{s.base}/api/v1/pipelines/{pid}/runs", {})
                v = wait_run(s.base, run["run_id"])
                assert v["run"]["state"] == "success", v["run"]
                by = {t["task_id"]: t for t in v["tasks"]}
                for i in range(1, CHAIN):
                    gaps.append(by[f"t{i}"]["started_ms"] - by[f"t{i - 1}"]["ended_ms"])
                durations.append(v["run"]["ended_ms"] - v["run"]["started_ms"])
        finally:
            s.close()
    return {
        "gaps": len(gaps),
        "median_ms": statistics.median(gaps),
        "p99_ms": pct(gaps, 99),
        "max_ms": max(gaps),
        "run_seconds": [d / 1000 for d in durations],
    }


def file_latency(bin_, state_url, tag, watch, files=15):
    pid = f"files_{tag}_{time.time_ns()}"
    yaml = f"""id: {pid}
params:
  date: {{ type: date }}
trigger:
  files: {{ zone: raw, path: "bench/{{date}}/data.csv" }}
tasks:
  - id: t
    command: {{ program: "true" }}
"""
    with tempfile.TemporaryDirectory() as root:
        home = make_home(bin_, root, state_url, {pid: yaml})
        extra = [] if watch else ["--no-watch"]
        s = Serve(bin_, home, *extra)
        lat = []
        try:
            time.sleep(1.5)  # the trigger records when watching began
            raw = os.path.join(home, "warehouse", "raw", "bench")
            start = dt.date(2026, 1, 1)
            for k in range(files):
                day = (start + dt.timedelta(days=k)).isoformat()
                d = os.path.join(raw, day)
                os.makedirs(d, exist_ok=True)
                tmp = os.path.join(root, f"tmp-{k}")
                with open(tmp, "w") as f:
                    f.write("a\n1\n")
                os.rename(tmp, os.path.join(d, "data.csv"))
                arrived = time.time() * 1000
                end = time.time() + 30
                started = None
                while time.time() < end and started is None:
                    page = call("GET", f"{s.base}/api/v1/runs?pipeline={pid}&limit=50")
                    for r in page["items"]:
                        if r["params"].get("date") == day and r["started_ms"]:
                            started = r["started_ms"]
                    if started is None:
                        time.sleep(0.005)
                if started is None:
                    raise SystemExit(f"no run started for {day}")
                lat.append(started - arrived)
                time.sleep(0.2)
        finally:
            s.close()
    return {
        "files": files,
        "median_ms": round(statistics.median(lat), 1),
        "p99_ms": round(pct(lat, 99), 1),
        "max_ms": round(max(lat), 1),
    }


def throughput(example, url, n, conc):
    out = subprocess.run([example, url, str(n), str(conc)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the gridata binary")
    ap.add_argument("--throughput", required=True, help="the gridata-state throughput example binary")
    ap.add_argument("--pg-url", default=os.environ.get("GRIDATA_TEST_PG_URL"))
    ap.add_argument("--instances", type=int, default=5000)
    args = ap.parse_args()

    stores = [("sqlite", None)]
    if args.pg_url:
        stores.append(("postgres", args.pg_url))
    report = {"when": dt.datetime.now().isoformat(timespec="seconds"), "results": {}}
    for name, url in stores:
        r = report["results"].setdefault(name, {})
        print(f"== state store: {name}", file=sys.stderr)
        r["a_chain"] = chain_latency(args.bin, url, name)
        print(f"  (a) {r['a_chain']}", file=sys.stderr)
        r["b_files_notify"] = file_latency(args.bin, url, name, watch=True)
        print(f"  (b) notify {r['b_files_notify']}", file=sys.stderr)
        r["b_files_listing"] = file_latency(args.bin, url, name, watch=False, files=5)
        print(f"  (b) listing {r['b_files_listing']}", file=sys.stderr)
        with tempfile.TemporaryDirectory() as d:
            store_url = url or f"sqlite://{d}/state.db?mode=rwc"
            r["c_throughput"] = {
                str(c): throughput(args.throughput, store_url, args.instances, c) for c in (1, 4)
            }
        print(f"  (c) {r['c_throughput']}", file=sys.stderr)

    os.makedirs(os.path.join(os.path.dirname(__file__), "out"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "out", f"scheduler-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print("\nScheduler benchmark (targets: (a) median < 5 ms, (b) < 200 ms with notifications, (c) > 1000/s on SQLite)")
    print(f"{'store':<10} {'(a) median':>11} {'(a) p99':>9} {'(b) notify':>11} {'(b) p99':>9} {'(b) listing':>12} {'(c) 1 conn':>11} {'(c) 4 conc':>11}")
    for name, r in report["results"].items():
        print(
            f"{name:<10} {r['a_chain']['median_ms']:>9} ms {r['a_chain']['p99_ms']:>6} ms "
            f"{r['b_files_notify']['median_ms']:>8} ms {r['b_files_notify']['p99_ms']:>6} ms "
            f"{r['b_files_listing']['median_ms']:>9} ms "
            f"{r['c_throughput']['1']['per_second']:>8}/s {r['c_throughput']['4']['per_second']:>8}/s"
        )
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
