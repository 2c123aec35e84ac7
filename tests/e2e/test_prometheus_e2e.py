"""Monitoring end to end: a real Prometheus server (Debian's /usr/bin/prometheus) scrapes a
running worker every second with Frontline's alerting rules loaded, and what it sees through its
HTTP API is what was produced: the counts, the target up, the rules loaded and evaluated, and
the dashboard's expressions answered."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness import InteractionMaker, Pipeline, wait_until
from streams.embedded_broker import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "frontline-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "frontline.json"
JOB = "frontline-worker"
PROMETHEUS_WAIT_S = 20.0
# dashboard panels with no data when a worker has processed only valid interactions without
# csat: no gap, lesson, award or dead letter, and no ledger writer
EMPTY_PANELS = {"Gaps opened / closed by standard",
                "Lessons assigned by standard, completed, ended", "Awards by rule",
                "Points by rule", "Dead letters by error type", "Ledger writes by topic",
                "Ledger lag, write failures, retrying", "Ledger quarantine by topic and reason"}


@dataclass
class Prometheus:
    """A Prometheus server started by the test on a loopback port."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad query; say what Prometheus said
            body = json.loads(exc.read() or b"{}")
        assert body.get("status") == "success", f"GET {path} {params}: {body}"
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        data = self.get("/api/v1/query", query=promql)
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The value of a query with at most one series; None when it has none."""
        result = self.query(promql)
        assert len(result) <= 1, f"{promql}: {result}"
        return float(result[0]["value"][1]) if result else None

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines()
        return f"prometheus log {self.log} ends with:\n" + "\n".join(text[-lines:])


def prometheus_binary() -> str | None:
    found = shutil.which("prometheus")
    if found is None and Path("/usr/bin/prometheus").exists():
        found = "/usr/bin/prometheus"
    return found


@pytest.fixture
def prometheus(pipeline: Pipeline, tmp_path: Path) -> Iterator[Prometheus]:
    """Prometheus scraping the pipeline's worker (job frontline-worker) every second, with the
    rules of deploy/prometheus loaded; terminated (then killed) at the end, whatever happens."""
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("NO PROMETHEUS: the monitoring end-to-end test needs a Prometheus server "
                    "binary (Debian: apt-get install prometheus; .ci/run installs it)")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": JOB, "static_configs": [
            {"targets": [f"127.0.0.1:{pipeline.metrics_port}"]}]}],
    }))
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    server = Prometheus(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until(lambda: _ready(server), "Prometheus to be ready (/-/ready)", PROMETHEUS_WAIT_S,
                   server.log_tail)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _ready(server: Prometheus) -> bool:
    if server.process.poll() is not None:
        pytest.fail(f"Prometheus exited with status {server.process.returncode}; "
                    f"{server.log_tail()}")
    try:
        with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def interactions(round_no: int, employees: int, each: int) -> list[tuple[bytes, bytes]]:
    """Valid interactions keyed by employee (so none is forwarded), without csat and fewer than
    20 per employee: no reward rule can award anything."""
    out = []
    for e in range(employees):
        employee = f"emp-prom-{round_no}-{e}"
        make = InteractionMaker(employee)
        out += [(employee.encode(), make()) for _ in range(each)]
    return out


def active_alerts(server: Prometheus) -> dict[str, str]:
    """alertname -> state (pending / firing) of every active alert."""
    return {a["labels"]["alertname"]: a["state"] for a in server.get("/api/v1/alerts")["alerts"]}


@pytest.mark.e2e
def test_prometheus_scrapes_the_worker_and_evaluates_the_rules(
        pipeline: Pipeline, prometheus: Prometheus) -> None:
    p, prom = pipeline, prometheus
    up = f'up{{job="{JOB}"}}'
    wait_until(lambda: prom.value(up) == 1.0, f"{up} == 1", PROMETHEUS_WAIT_S,
               lambda: f"{up} is {prom.query(up)}; {prom.log_tail()}")

    # two rounds: after each, Prometheus' sum is exactly what was produced. The second round
    # is what FrontlineNoAwards counts as a meaningful rate: more than 0.1/s over its 15 minutes
    # (rate() divides by the whole window), i.e. more than 90 records.
    total = f'sum(frontline_events_total{{job="{JOB}"}})'
    produced = 0
    for round_no, employees, each in ((1, 4, 5), (2, 8, 15)):
        batch = interactions(round_no, employees, each)
        p.produce(batch)
        produced += len(batch)
        p.wait_handled(produced)
        wait_until(lambda n=produced: prom.value(total) == n,
                   f"Prometheus to see {produced} events", PROMETHEUS_WAIT_S,
                   lambda: f"{total} is {prom.query(total)}; worker says {dict(p.events())}")
    by_outcome = prom.query(f'sum by (topic, outcome) (frontline_events_total{{job="{JOB}"}})')
    assert {(r["metric"]["topic"], r["metric"]["outcome"]): float(r["value"][1])
            for r in by_outcome} == {("interactions", "processed"): produced}
    assert prom.value(up) == 1.0
    assert prom.value(f'frontline_worker_ready{{job="{JOB}"}}') == 1.0
    assert prom.value(f'frontline_broker_up{{job="{JOB}"}}') == 1.0
    # one execution score per interaction, each acknowledged by the broker
    acked = (f'sum(frontline_records_published_total{{job="{JOB}", '
             f'topic="execution-scores"}})')
    wait_until(lambda: prom.value(acked) == produced, "Prometheus to see every score acked",
               PROMETHEUS_WAIT_S, lambda: f"{acked} is {prom.query(acked)}")

    # the rule group is loaded from the repository's file, and every rule evaluates cleanly
    rules_in_file = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]

    def groups() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = prom.get("/api/v1/rules")["groups"]
        return found

    frontline = [g for g in groups() if g["name"] == "frontline"]
    assert len(frontline) == 1, f"rule groups: {[g['name'] for g in groups()]}"
    assert Path(frontline[0]["file"]) == RULES
    assert [r["name"] for r in frontline[0]["rules"]] == [r["alert"] for r in rules_in_file]

    def evaluated_ok() -> bool:
        rules = next(g for g in groups() if g["name"] == "frontline")["rules"]
        return all(r["health"] == "ok" and not r.get("lastError") for r in rules)

    wait_until(evaluated_ok, "every frontline rule to evaluate with health ok", 10,
               lambda: json.dumps([(r["name"], r["health"], r.get("lastError"))
                                   for g in groups() for r in g["rules"]]))

    # on the worker's real series (labels included): interactions processed and no award at all
    # make FrontlineNoAwards pending (it fires after 2 h); nothing else is active
    wait_until(lambda: active_alerts(prom) == {"FrontlineNoAwards": "pending"},
               "only FrontlineNoAwards to be active, pending", 15,
               lambda: f"active alerts: {active_alerts(prom)}")

    # every expression of the dashboard is accepted by Prometheus, and every panel but those of
    # decisions, dead letters and the ledger (none here) shows data of this worker
    board = json.loads(DASHBOARD.read_text())
    variables = {"job": JOB, "instance": ".*", "__rate_interval": "1m", "__interval": "1m"}
    empty = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)),
                          target["expr"])
            if not prom.query(expr):
                empty.append(panel["title"])
    assert set(empty) == EMPTY_PANELS, f"panels without data: {sorted(set(empty))}"
