"""OpenLineage out and in, end to end.

Gridata is configured to send RunEvents to an HTTP endpoint (a small
receiver of this test's own making, standing in for Marquez) and to a file.
The endpoint is down while pipelines run; it comes back while ``gridata
serve`` runs, and then every event must arrive, none twice. Every event
must validate against the official OpenLineage 2-0-2 JSON schema and the
schema of each facet it carries (vendored in tests/openlineage/spec, since
the openlineage-python package ships no JSON schema).

Then the events are posted to Gridata's own ``POST /api/v1/lineage``, as
another tool would: each is stored once, and an event from a foreign tool
joins the lineage graph.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from conftest import Gridata

SPEC_DIR = Path(__file__).resolve().parents[1] / "openlineage" / "spec"
DAY = "2026-11-20"


# ---------------------------------------------------------------------------
# the official schemas
# ---------------------------------------------------------------------------


def load_registry() -> tuple[Registry, dict[str, Any]]:
    core = json.loads((SPEC_DIR / "OpenLineage.json").read_text())
    resources = [(core["$id"], Resource(contents=core, specification=DRAFT202012))]
    # Older facet files point at older cores whose $defs 2-0-2 still has.
    for old in ("1-0-2", "1-0-3", "1-0-5", "2-0-0", "2-0-1"):
        resources.append((f"https://openlineage.io/spec/{old}/OpenLineage.json", Resource(contents=core, specification=DRAFT202012)))
    facets: dict[str, Any] = {}
    for f in sorted((SPEC_DIR / "facets").glob("*.json")):
        doc = json.loads(f.read_text())
        resources.append((doc["$id"], Resource(contents=doc, specification=DRAFT202012)))
        facets[doc["$id"]] = doc
    return Registry().with_resources(resources), {"core": core, "facets": facets}


REGISTRY, SCHEMAS = load_registry()


def validate(event: dict[str, Any]) -> None:
    """Validates an event against the core spec, then every facet against its own schema."""
    core = SCHEMAS["core"]
    jsonschema.Draft202012Validator(
        {"$ref": core["$id"]}, registry=REGISTRY, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(event)
    assert event["schemaURL"].startswith(core["$id"]), event["schemaURL"]

    def facets_of(holder: dict[str, Any], *keys: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for k in keys:
            for name, facet in (holder.get(k) or {}).items():
                yield name, facet

    found: list[tuple[str, dict[str, Any]]] = []
    found += facets_of(event["run"], "facets")
    found += facets_of(event["job"], "facets")
    for d in event.get("inputs", []):
        found += facets_of(d, "facets", "inputFacets")
    for d in event.get("outputs", []):
        found += facets_of(d, "facets", "outputFacets")
    for name, facet in found:
        url = facet["_schemaURL"]
        file_id, _, pointer = url.partition("#")
        assert file_id in SCHEMAS["facets"], f"facet {name}: no vendored schema for {url}"
        jsonschema.Draft202012Validator(
            {"$ref": url}, registry=REGISTRY, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        ).validate(facet)


def test_the_validator_rejects_a_broken_event():
    good = {
        "eventTime": "2026-11-20T10:00:00.000Z",
        "producer": "https://example.invalid/p",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "eventType": "COMPLETE",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "n", "name": "j"},
    }
    validate(good)
    for broken in (
        {k: v for k, v in good.items() if k != "producer"},
        {**good, "eventType": "DONE"},
        {**good, "job": {"namespace": "n"}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)
    bad_facet = {
        **good,
        "run": {
            "runId": good["run"]["runId"],
            "facets": {
                "parent": {
                    "_producer": "https://example.invalid/p",
                    "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet",
                    "run": {},
                }
            },
        },
    }
    with pytest.raises(jsonschema.ValidationError):
        validate(bad_facet)


# ---------------------------------------------------------------------------
# an endpoint that can go down
# ---------------------------------------------------------------------------


class Receiver:
    """An HTTP endpoint recording every POSTed event; stop() closes its socket."""

    def __init__(self, port: int):
        self.port = port
        self.events: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        events = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                events.append(json.loads(body))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode() or "null")


class Serve:
    """`gridata serve` on a free port, stopped with SIGTERM."""

    def __init__(self, g: Gridata):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(g.binary), "--home", str(g.home), "serve", "--addr", f"127.0.0.1:{self.port}", "--no-watch"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=dict(os.environ, NO_COLOR="1"),
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"gridata serve exited: {self.proc.stderr.read()}", pytrace=False)
            try:
                if api(self.port, "GET", "/api/v1/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        pytest.fail("gridata serve did not answer in 60 s", pytrace=False)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------------------
# the outage
# ---------------------------------------------------------------------------


def key(e: dict[str, Any]) -> tuple[str, str]:
    return (e["run"]["runId"], e["eventType"])


@pytest.fixture(scope="module")
def outage(gridata_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("openlineage") / "home"
    g = Gridata(gridata_bin, home)
    g("init")
    receiver = Receiver(free_port())
    (home / "gridata.yaml").write_text(
        "openlineage:\n"
        f"  url: http://127.0.0.1:{receiver.port}/api/v1/lineage\n"
        "  file: openlineage/events.jsonl\n"
        "  flush_seconds: 1\n"
    )
    g("generate", "ecommerce", "--orders", 300, "--days", 1, "--start", DAY, "--seed", 5)
    # The endpoint is down: runs succeed, their events wait in the outbox.
    runs = []
    for p in ("ecommerce_customers", "ecommerce_products", "ecommerce_clickstream", "ecommerce_orders"):
        proc = g.run("run", p, "--param", f"date={DAY}", "--json")
        assert proc.returncode == 0, proc.stderr
        assert "could not be delivered yet" in proc.stderr, proc.stderr
        runs.append(json.loads(proc.stdout))
    assert receiver.events == []
    # It comes back while `gridata serve` runs.
    receiver.start()
    serve = Serve(g)
    try:
        deadline = time.time() + 90
        while True:
            status, stats = api(serve.port, "GET", "/api/v1/lineage/outbox")
            assert status == 200, stats
            if stats and all(s["pending"] == 0 for s in stats):
                break
            assert time.time() < deadline, f"events still pending after 90 s: {stats}"
            time.sleep(0.5)
        yield {
            "g": g,
            "runs": runs,
            "received": list(receiver.events),
            "file": [json.loads(line) for line in (home / "openlineage" / "events.jsonl").read_text().splitlines()],
            "serve": serve,
            "stats": stats,
        }
    finally:
        serve.stop()
        receiver.stop()


def test_every_event_arrives_once_after_an_outage(outage: dict[str, Any]):
    received = outage["received"]
    counts = Counter(key(e) for e in received)
    twice = [k for k, n in counts.items() if n > 1]
    assert not twice, f"events delivered twice: {twice}"
    # The file sink got the same events, independently of the endpoint.
    assert set(counts) == {key(e) for e in outage["file"]}
    assert {s["sink"]: s["delivered"] for s in outage["stats"]} == {"http": len(received), "file": len(received)}

    # Each run: START and COMPLETE; each task attempt: START and an end.
    by_job: dict[str, set[str]] = {}
    for e in received:
        by_job.setdefault(e["run"]["runId"], set()).add(e["eventType"])
    for run in outage["runs"]:
        assert run["state"] == "success", run
        pipeline = run["pipeline"]
        run_events = [e for e in received if e["job"]["name"] == pipeline]
        assert sorted(e["eventType"] for e in run_events) == ["COMPLETE", "START"], pipeline
        run_id = run_events[0]["run"]["runId"]
        for t in run["tasks"]:
            if t["attempts"] == 0:
                continue
            task_events = [e for e in received if e["job"]["name"] == f"{pipeline}.{t['task_id']}"]
            assert len(task_events) == 2 * t["attempts"], (pipeline, t)
            for e in task_events:
                assert e["run"]["facets"]["parent"]["run"]["runId"] == run_id
    for events in by_job.values():
        assert "START" in events and len(events) == 2, events


def test_every_event_validates_against_the_official_schema(outage: dict[str, Any]):
    assert outage["received"]
    for e in outage["received"]:
        validate(e)


def test_outputs_carry_version_schema_statistics_and_column_lineage(outage: dict[str, Any]):
    g = outage["g"]
    completes = [e for e in outage["received"] if e["job"]["name"] == "ecommerce_orders" and e["eventType"] == "COMPLETE"]
    assert len(completes) == 1
    outputs = {o["name"]: o for o in completes[0]["outputs"]}
    assert "ecommerce.orders" in outputs, list(outputs)
    orders = outputs["ecommerce.orders"]
    # The run's COMPLETE names the snapshot it published: the current one
    # (the orders pipeline ran once).
    current = [s["snapshot_id"] for s in g.snapshots("ecommerce.orders") if s["current"]]
    assert len(current) == 1, current
    assert orders["facets"]["version"]["datasetVersion"] == str(current[0])
    assert {f["name"] for f in orders["facets"]["schema"]["fields"]} >= {"order_id", "customer_id"}
    assert orders["outputFacets"]["outputStatistics"]["rowCount"] > 0
    lineage = orders["facets"]["columnLineage"]["fields"]
    assert lineage["order_id"]["inputFields"], lineage["order_id"]
    src = lineage["order_id"]["inputFields"][0]
    assert src["name"].startswith("raw/"), src
    inputs = {i["name"] for i in completes[0]["inputs"]}
    assert any(n.startswith("raw/ecommerce/orders") for n in inputs), inputs
    # Quality checks ride on their datasets as assertions.
    assertions = [
        i["inputFacets"]["dataQualityAssertions"]
        for e in outage["received"]
        for i in e.get("inputs", [])
        if "dataQualityAssertions" in i.get("inputFacets", {})
    ]
    assert assertions, "no quality task reported assertions"


def test_gridata_receives_events_once_and_merges_foreign_lineage(outage: dict[str, Any]):
    port = outage["serve"].port
    # The namespace Gridata gives its tables, from its own events.
    tables_ns = next(
        o["namespace"] for e in outage["received"] for o in e.get("outputs", []) if o["name"] == "ecommerce.orders"
    )
    first = [api(port, "POST", "/api/v1/lineage", e) for e in outage["received"]]
    assert all(s == 201 for s, _ in first), [b for s, b in first if s != 201][:3]
    again = [api(port, "POST", "/api/v1/lineage", e) for e in outage["received"][:5]]
    assert all(s == 200 and b["new"] is False for s, b in again), again

    # A dbt model reading Gridata's orders table.
    dbt = {
        "eventTime": "2026-11-20T12:00:00Z",
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.24.2/integration/dbt",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "eventType": "COMPLETE",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "dbt", "name": "shop.daily_revenue"},
        "inputs": [{"namespace": tables_ns, "name": "ecommerce.orders"}],
        "outputs": [
            {
                "namespace": "postgres://warehouse:5432",
                "name": "shop.public.daily_revenue",
                "facets": {
                    "columnLineage": {
                        "_producer": "https://github.com/OpenLineage/OpenLineage/tree/1.24.2/integration/dbt",
                        "_schemaURL": "https://openlineage.io/spec/facets/1-1-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet",
                        "fields": {
                            "revenue": {
                                "inputFields": [
                                    {
                                        "namespace": tables_ns,
                                        "name": "ecommerce.orders",
                                        "field": "order_id",
                                        "transformations": [{"type": "DIRECT", "subtype": "AGGREGATION"}],
                                    }
                                ]
                            }
                        },
                    }
                },
            }
        ],
    }
    validate(dbt)
    status, body = api(port, "POST", "/api/v1/lineage", dbt)
    assert status == 201, body
    assert body["datasets"] == ["postgres://warehouse:5432/shop.public.daily_revenue"]
    status, walk = api(port, "GET", "/api/v1/lineage?dataset=ecommerce.orders&direction=downstream")
    assert status == 200, walk
    targets = {(h["edge"]["target_dataset"], h["edge"]["target_field"]) for h in walk["edges"]}
    assert ("postgres://warehouse:5432/shop.public.daily_revenue", "revenue") in targets
    status, bad = api(port, "POST", "/api/v1/lineage", {"eventTime": "now"})
    assert status == 400 and "eventTime" in bad["message"], bad
