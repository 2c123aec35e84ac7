"""Monitoring, checked offline: the alerting rules (promtool check and promtool unit tests), the
Grafana dashboard (valid, every panel queries Prometheus, every expression parses), and the
metric names both use against the README's metrics catalog, which in turn must be exactly what
the code registers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RULES = ROOT / "deploy" / "prometheus" / "frontline-rules.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "frontline-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "frontline.json"

ALERTS = {"FrontlineWorkerDown", "FrontlineConsumerLagGrowing", "FrontlineDeadLetterRateHigh",
          "FrontlineNoAwards", "FrontlineLedgerWritesFailing", "FrontlineLedgerFallingBehind",
          "FrontlineWorkerNotReady", "FrontlineNothingPublished", "FrontlineLedgerQuarantine"}
JOBS = {"frontline-worker", "frontline-ledger"}
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


# ---- the catalog -----------------------------------------------------------------------------

def readme_catalog(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The table under "## Metrics" in README.md: {metric: (type, labels)}."""
    lines = text.splitlines()
    start = lines.index("## Metrics") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    rows = [line for line in lines[start:end] if line.startswith("|")]
    assert len(rows) > 2, "no metrics table under ## Metrics in README.md"
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[:3] == ["metric", "type", "labels"], f"unexpected catalog header {header}"
    catalog: dict[str, tuple[str, tuple[str, ...]]] = {}
    for row in rows[2:]:  # after the header and its |---| line
        name, kind, labels = (c.strip() for c in row.strip("|").split("|")[:3])
        name = name.strip("`")
        assert name not in catalog, f"{name} is listed twice in the catalog"
        catalog[name] = (kind, tuple(re.findall(r"`([^`]+)`", labels)))
    return catalog


def registry_catalog() -> dict[str, tuple[str, tuple[str, ...] | None]]:
    """What the worker and the ledger writer register, named as on /metrics and in the README
    (counters with their _total suffix): {metric: (type, labels or None if unknown)}."""
    from streams import ledger_sink, metrics  # noqa: F401 - ledger_sink registers its metrics

    labels: dict[str, tuple[str, ...]] = {}
    # prometheus_client keeps no public list of a metric's label names: read its collectors
    for collector in getattr(metrics.REGISTRY, "_collector_to_names", {}):
        name, names = getattr(collector, "_name", None), getattr(collector, "_labelnames", None)
        if name is not None and names is not None:
            labels[name] = tuple(names)
    out: dict[str, tuple[str, tuple[str, ...] | None]] = {}
    for family in metrics.REGISTRY.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        out[name] = (family.type, labels.get(family.name))
    return out


def catalog_mismatches(readme: dict[str, tuple[str, tuple[str, ...]]],
                       registry: dict[str, tuple[str, tuple[str, ...] | None]]) -> list[str]:
    """Every difference between the README's catalog and the registry, one line each."""
    problems = [f"{n}: registered ({registry[n][0]}) but not in the README catalog"
                for n in sorted(set(registry) - set(readme))]
    problems += [f"{n}: in the README catalog but not registered"
                 for n in sorted(set(readme) - set(registry))]
    for name in sorted(set(readme) & set(registry)):
        (kind, labels), (real_kind, real_labels) = readme[name], registry[name]
        if kind != real_kind:
            problems.append(f"{name}: the README says {kind}, the code registers a {real_kind}")
        if real_labels is not None and set(labels) != set(real_labels):
            problems.append(f"{name}: the README lists labels {sorted(labels)}, the code has "
                            f"{sorted(real_labels)}")
    return problems


# ---- metric names in PromQL ------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_METRIC = re.compile(r"(?<![\w:])frontline_\w*")


def metric_names(expr: str) -> set[str]:
    """The frontline_* identifiers of a PromQL expression (not inside strings: label values)."""
    return set(_METRIC.findall(_STRING.sub('""', expr)))


def unknown_metrics(names: set[str], catalog: dict[str, tuple[str, tuple[str, ...]]]) -> set[str]:
    """Names that are neither catalog metrics nor a histogram's _bucket/_sum/_count series."""
    unknown = set()
    for name in names:
        if name in catalog:
            continue
        base = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base is None or catalog.get(base, ("",))[0] != "histogram":
            unknown.add(name)
    return unknown


# ---- the files -------------------------------------------------------------------------------

def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert [g["name"] for g in groups] == ["frontline"]
    return list(groups[0]["rules"])


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside rows included."""
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    out = [(f"panel {p['id']} ({p.get('title')}) target {t.get('refId')}", t["expr"])
           for p in panels(board) for t in p.get("targets", []) if t.get("expr")]
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append((f"variable {var['name']}", query))
    for note in board.get("annotations", {}).get("list", []):
        if note.get("expr"):
            out.append((f"annotation {note['name']}", note["expr"]))
    return out


def without_variables(expr: str) -> str:
    """A panel's PromQL with Grafana's variables replaced, as Prometheus would receive it."""
    values = {"job": ".*", "instance": ".*",
              "__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), expr)


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool"
                                         if Path("/usr/bin/promtool").exists() else None)
    if found is None:
        pytest.skip("NO PROMTOOL: checking the alerting rules needs Prometheus' promtool "
                    "(Debian: apt-get install prometheus; .ci/run installs it)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          check=False)


# ---- the alerting rules ----------------------------------------------------------------------

def test_the_rules_pass_promtool_check(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_promtool_unit_tests(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_severity_an_explanation_and_a_job() -> None:
    alerts = [r for r in rules() if "alert" in r]
    assert {r["alert"] for r in alerts} == ALERTS
    for rule in alerts:
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        notes = rule["annotations"]
        assert len(notes["summary"]) > 15 and len(notes["description"]) > 80, name
        jobs = set(re.findall(r'job="([^"]*)"', rule["expr"]))
        assert jobs and jobs <= JOBS, f"{name}: selects jobs {jobs}, not one of {JOBS}"


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_must_not() -> None:
    spec = yaml.safe_load(RULES_TEST.read_text())
    assert [RULES.parent / f for f in spec["rule_files"]] == [RULES]
    fired: Counter[str] = Counter()
    quiet: Counter[str] = Counter()
    for group in spec["tests"]:
        for case in group.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet)[case["alertname"]] += 1
    assert set(fired) == ALERTS, f"no firing unit test for {sorted(ALERTS - set(fired))}"
    assert set(quiet) == ALERTS, f"no quiet unit test for {sorted(ALERTS - set(quiet))}"


# ---- the dashboard ---------------------------------------------------------------------------

def test_the_dashboard_is_valid_and_every_panel_queries_prometheus() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39 and board["uid"] and board["title"]
    every = panels(board)
    ids = Counter(p["id"] for p in every)
    assert not [i for i, n in ids.items() if n > 1], f"panel ids used twice: {ids}"
    for panel in every:
        what = f"panel {panel['id']} ({panel.get('title')})"
        assert panel.get("title"), f"{what} has no title"
        assert panel.get("datasource") == DATASOURCE, f"{what}: datasource {panel.get('datasource')}"
        targets = panel.get("targets", [])
        assert targets, f"{what} has no target"
        for target in targets:
            assert target.get("expr", "").strip(), f"{what}: a target without an expression"
            assert target.get("datasource", DATASOURCE) == DATASOURCE, what
        refs = [t.get("refId") for t in targets]
        assert len(set(refs)) == len(refs), f"{what}: refIds {refs}"
    for var in board["templating"]["list"]:
        assert var.get("datasource") == DATASOURCE, f"variable {var['name']}"
    assert {v["name"] for v in board["templating"]["list"]} >= {"job", "instance"}


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], int] = {}
    for panel in dashboard()["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, f"panel {panel['id']} is wider than the grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {panel['id']} overlap"
                cells[(x, y)] = panel["id"]


def test_dashboard_expressions_parse(promtool: str, tmp_path: Path) -> None:
    """Every panel expression, as Prometheus receives it, is valid PromQL: promtool parses them
    as recording rules."""
    board = dashboard()
    records = [{"record": f"dashboard:panel_{p['id']}_{t['refId']}",
                "expr": without_variables(t["expr"])}
               for p in panels(board) for t in p["targets"]]
    records += [{"record": f"dashboard:annotation_{i}", "expr": without_variables(n["expr"])}
                for i, n in enumerate(board["annotations"]["list"]) if n.get("expr")]
    rules_file = tmp_path / "dashboard-rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    result = run(promtool, "check", "rules", str(rules_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_has_the_latency_quantiles_and_shows_every_catalog_metric() -> None:
    board = dashboard()
    exprs = [e for _, e in dashboard_queries(board)]
    for histogram in ("frontline_processing_seconds", "frontline_end_to_end_seconds"):
        for q in ("0.5", "0.95", "0.99"):
            assert any(f"histogram_quantile({q}," in e and f"{histogram}_bucket" in e
                       for e in exprs), f"no p{q} of {histogram}"
    shown = set().union(*(metric_names(e) for e in exprs))
    shown |= {n.removesuffix("_bucket") for n in shown}
    missing = set(readme_catalog(README.read_text())) - shown
    assert not missing, f"catalog metrics with no panel: {sorted(missing)}"


# ---- metric names against the catalog, the catalog against the code --------------------------

def test_rules_and_dashboard_use_only_catalog_metrics() -> None:
    catalog = readme_catalog(README.read_text())
    used = [(f"alert {r.get('alert') or r.get('record')}", r["expr"]) for r in rules()]
    used += dashboard_queries(dashboard())
    problems = {where: sorted(unknown_metrics(metric_names(expr), catalog))
                for where, expr in used}
    problems = {where: names for where, names in problems.items() if names}
    assert not problems, f"metrics not in the README catalog: {problems}"


def test_the_readme_catalog_is_exactly_what_the_code_registers() -> None:
    problems = catalog_mismatches(readme_catalog(README.read_text()), registry_catalog())
    assert not problems, "README metrics catalog vs the registry:\n" + "\n".join(problems)


# ---- the checks themselves can fail ----------------------------------------------------------

def test_an_unknown_metric_name_is_detected() -> None:
    catalog = readme_catalog(README.read_text())
    expr = ('sum(rate(frontline_evnets_total{topic="frontline_not_a_metric"}[5m])) '
            '/ sum(rate(frontline_events_total[5m])) + frontline_events_count '
            '+ histogram_quantile(0.9, rate(frontline_processing_seconds_bucket[1m])) '
            '+ frontline_processing_seconds_sum + frontline_p99_seconds')
    names = metric_names(expr)
    assert "frontline_not_a_metric" not in names  # a label value, not a metric
    assert unknown_metrics(names, catalog) == {
        "frontline_evnets_total", "frontline_events_count", "frontline_p99_seconds"}


def test_a_catalog_out_of_step_with_the_code_is_detected() -> None:
    readme = readme_catalog(README.read_text())
    registry = registry_catalog()
    assert "frontline_awards_total" in readme and "frontline_consumer_lag" in readme
    missing_row = {k: v for k, v in readme.items() if k != "frontline_awards_total"}
    wrong = {**readme, "frontline_consumer_lag": ("counter", ("topic",)),
             "frontline_events_total": ("counter", ("topic",)),
             "frontline_made_up_total": ("counter", ())}
    assert catalog_mismatches(missing_row, registry) == [
        "frontline_awards_total: registered (counter) but not in the README catalog"]
    assert catalog_mismatches(wrong, registry) == [
        "frontline_made_up_total: in the README catalog but not registered",
        "frontline_consumer_lag: the README says counter, the code registers a gauge",
        ("frontline_events_total: the README lists labels ['topic'], the code has "
         "['outcome', 'topic']"),
    ]
