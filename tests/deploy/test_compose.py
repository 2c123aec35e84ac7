"""deploy/compose.yaml, deploy/prometheus/prometheus.yml and Grafana's provisioning, checked
offline (there is no Docker engine here): the Compose file is valid against the Compose
Specification's JSON schema, runs only commands the project's own parser accepts with settings
that exist and load, its dependencies, builds and mounts resolve, the workers' health check works
against the real metrics endpoint, Prometheus scrapes exactly the services that serve metrics
(promtool agrees), and Grafana's datasource and dashboards meet. Each check is a function that
returns the problems it finds, and each is shown failing on a broken copy."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from deploy_refs import (
    DEPLOY,
    DOCKERFILE,
    ROOT,
    SETTING_VARIABLES,
    command_problem,
    effective_argv,
    load_settings,
    parse_command,
    settings_problems,
)
from sqlalchemy.engine import make_url

from streams import metrics
from streams.embedded_broker import free_port

COMPOSE = DEPLOY / "compose.yaml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "frontline-rules.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
REQUIRED_SERVICES = {"kafka", "postgres", "migrate", "worker-1", "worker-2", "ledger",
                     "simulator", "prometheus", "grafana"}
WORKER_JOB, LEDGER_JOB = "frontline-worker", "frontline-ledger"

Compose = dict[str, Any]


def load_compose() -> Compose:
    data = yaml.safe_load(COMPOSE.read_text())  # YAML anchors and merge keys resolved
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def load_prometheus() -> dict[str, Any]:
    data = yaml.safe_load(PROMETHEUS.read_text())
    assert isinstance(data, dict)
    return data


# ---- reading a Compose file --------------------------------------------------------------------

def as_argv(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def frontline_services(c: Compose) -> list[str]:
    """Services running the image built from deploy/Dockerfile (or tagged as one that is)."""
    built: set[str] = set()
    names = []
    for name, svc in c["services"].items():
        build = svc.get("build")
        if build is None:
            continue
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile",
                                                                             "Dockerfile")
        if ((COMPOSE.parent / context) / dockerfile).resolve() == DOCKERFILE:
            names.append(name)
            if svc.get("image"):
                built.add(svc["image"])
    names += [n for n, s in c["services"].items() if n not in names and s.get("image") in built]
    return names


def argv_of(service: dict[str, Any]) -> list[str]:
    return effective_argv(as_argv(service.get("entrypoint")), as_argv(service.get("command")))


def runs(c: Compose, *command: str) -> list[str]:
    """Frontline services whose command is `frontline <command...>`."""
    out = []
    for name in frontline_services(c):
        argv = argv_of(c["services"][name])
        if command_problem(argv) is None and argv[1:1 + len(command)] == list(command):
            out.append(name)
    return out


def mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, source, target) of a service's volumes, short or long syntax."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            source, _, rest = v.partition(":")
            target = rest.split(":", 1)[0] if rest else source
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        else:
            source, target = v.get("source", ""), v["target"]
            kind = v.get("type", "volume")
        out.append((kind, source, target))
    return out


def repo_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository file a container path of the service is bind-mounted from, if any."""
    for kind, source, target in mounts(service):
        if kind != "bind":
            continue
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            rest = container_path[len(target):].lstrip("/")
            return (COMPOSE.parent / source / rest).resolve()
    return None


def metrics_port(service: dict[str, Any]) -> int:
    return load_settings(env_of(service)).metrics_port


def exposed(service: dict[str, Any]) -> set[int]:
    ports = {int(str(p).split("/")[0]) for p in service.get("expose") or []}
    for p in service.get("ports") or []:
        target = p.get("target") if isinstance(p, dict) else str(p).split("/")[0].split(":")[-1]
        ports.add(int(target))
    return ports


# ---- the checks --------------------------------------------------------------------------------

def compose_schema() -> dict[str, Any]:
    """The Compose Specification's JSON schema as check-jsonschema ships it (read as a file:
    importing check_jsonschema is not needed)."""
    path = importlib.metadata.distribution("check-jsonschema").locate_file(
        "check_jsonschema/builtin_schemas/vendor/compose-spec.json")
    return json.loads(Path(str(path)).read_text())


def schema_problems(c: Compose) -> list[str]:
    validator = jsonschema.Draft7Validator(compose_schema())
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(c), key=lambda e: list(map(str, e.path)))]


def command_problems(c: Compose) -> list[str]:
    problems = []
    for name in frontline_services(c):
        problem = command_problem(argv_of(c["services"][name]))
        if problem:
            problems.append(f"{name}: {problem}")
    return problems


def env_problems(c: Compose, text: str | None = None) -> list[str]:
    """Every FRONTLINE_* name anywhere in the file is a setting; every Frontline service's
    environment loads."""
    text = COMPOSE.read_text() if text is None else text
    problems = [f"compose.yaml mentions {name}, which is not a setting"
                for name in sorted(set(re.findall(r"\bFRONTLINE_[A-Z0-9_]+", text)))
                if name not in SETTING_VARIABLES]
    for name, svc in c["services"].items():
        problems += settings_problems(env_of(svc), name)
    return problems


def depends_problems(c: Compose) -> list[str]:
    services = c["services"]
    problems = []
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for target, spec in deps.items():
            if target not in services:
                problems.append(f"{name} depends on {target}, which is not a service")
                continue
            condition = spec.get("condition", "service_started")
            other = services[target]
            if condition == "service_healthy" and not other.get("healthcheck"):
                problems.append(f"{name} waits for {target} to be healthy; it has no healthcheck")
            if condition == "service_completed_successfully" and other.get("restart",
                                                                            "no") != "no":
                problems.append(f"{name} waits for {target} to complete; it restarts")
            if other.get("profiles") and not set(other["profiles"]) >= set(svc.get("profiles")
                                                                             or ["*"]):
                problems.append(f"{name} depends on {target}, which only runs in a profile")
    return problems


def path_problems(c: Compose) -> list[str]:
    problems = []
    declared = set(c.get("volumes") or {})
    for name, svc in c["services"].items():
        build = svc.get("build")
        if isinstance(build, dict):
            context = (COMPOSE.parent / build.get("context", ".")).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not context.is_dir() or not dockerfile.is_file():
                problems.append(f"{name}: build {context} / {build.get('dockerfile')} not found")
        for kind, source, target in mounts(svc):
            if kind == "bind":
                path = (COMPOSE.parent / source).resolve()
                if not path.exists():
                    shown = path.relative_to(ROOT) if ROOT in path.parents else path
                    problems.append(f"{name}: mounts {source} (at {target}), which does not "
                                    f"exist: {shown}")
                elif ROOT not in path.parents:
                    problems.append(f"{name}: mounts {path}, outside the repository")
            elif kind == "volume" and source and source not in declared:
                problems.append(f"{name}: volume {source} is not declared under volumes:")
    return problems


def scrape_problems(c: Compose, prom: dict[str, Any]) -> list[str]:
    """Prometheus scrapes every worker (job frontline-worker) and the ledger writer (job
    frontline-ledger) at a service name and the metrics port that service serves and exposes."""
    services = c["services"]
    jobs = {j["job_name"]: j for j in prom.get("scrape_configs") or []}
    problems = []
    for job, command in ((WORKER_JOB, ("worker",)), (LEDGER_JOB, ("ledger", "run"))):
        if job not in jobs:
            problems.append(f"no scrape job {job}")
            continue
        if jobs[job].get("metrics_path", "/metrics") != "/metrics":
            problems.append(f"{job}: metrics_path is not /metrics")
        targets = [t for sc in jobs[job].get("static_configs") or [] for t in sc["targets"]]
        for target in targets:
            host, _, port = target.rpartition(":")
            if host not in services:
                problems.append(f"{job}: target {target} is not a compose service")
                continue
            svc = services[host]
            if int(port) != metrics_port(svc):
                problems.append(f"{job}: {target}, but {host} serves metrics on "
                                f"{metrics_port(svc)}")
            if int(port) not in exposed(svc):
                problems.append(f"{job}: {target}, but {host} does not expose {port}")
        expected = {f"{n}:{metrics_port(services[n])}" for n in runs(c, *command)}
        missing = expected - set(targets)
        if missing:
            problems.append(f"{job}: not scraped: {sorted(missing)}")
        wrong = {t for t in targets if t.rpartition(":")[0] in services} - expected
        if wrong:
            problems.append(f"{job}: {sorted(wrong)} do not run `frontline {' '.join(command)}`")
    return problems


def prometheus_mount_problems(c: Compose, prom: dict[str, Any]) -> list[str]:
    """The Prometheus container reads this prometheus.yml, and the rule files it names (relative
    to the config file there) are the repository's files the same names resolve to here."""
    svc = c["services"]["prometheus"]
    args = as_argv(svc.get("command")) or []
    config = next((a.split("=", 1)[1] for a in args if a.startswith("--config.file=")),
                  "/etc/prometheus/prometheus.yml")
    problems = []
    if repo_path(svc, config) != PROMETHEUS.resolve():
        problems.append(f"prometheus reads {config}, which is not deploy/prometheus/prometheus.yml")
    for rule_file in prom.get("rule_files") or []:
        inside = posixpath.join(posixpath.dirname(config), rule_file)
        here = (PROMETHEUS.parent / rule_file).resolve()
        if repo_path(svc, inside) != here:
            problems.append(f"rule file {rule_file}: {inside} in the container is not {here}")
    return problems


# ---- the Compose file --------------------------------------------------------------------------

def test_compose_file_is_valid_against_the_compose_specification() -> None:
    assert schema_problems(load_compose()) == []


def test_the_schema_check_catches_a_misspelt_key_and_a_bad_condition() -> None:
    broken = load_compose()
    broken["services"]["worker-1"]["imagee"] = "frontline:local"
    broken["services"]["ledger"]["depends_on"]["migrate"]["condition"] = "service_done"
    problems = schema_problems(broken)
    assert any("imagee" in p for p in problems), problems
    assert any("service_done" in p for p in problems), problems


def test_required_services_run_pinned_images() -> None:
    c = load_compose()
    services = c["services"]
    assert REQUIRED_SERVICES <= set(services), REQUIRED_SERVICES - set(services)
    assert set(frontline_services(c)) == {"migrate", "worker-1", "worker-2", "ledger",
                                          "simulator"}
    images = {name: svc.get("image", "") for name, svc in services.items()}
    assert re.fullmatch(r"apache/kafka:[34]\.\d+\.\d+", images["kafka"]), images["kafka"]
    assert re.fullmatch(r"postgres:15(\.\d+)?(-\w+)?", images["postgres"]), images["postgres"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", images["prometheus"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", images["grafana"])
    assert services["simulator"].get("profiles") == ["simulator"]
    for name in ("kafka", "postgres", "prometheus", "grafana"):
        assert any(v[0] == "volume" for v in mounts(services[name])), f"{name} keeps no data"


def test_kafka_is_one_kraft_node_that_the_services_reach() -> None:
    c = load_compose()
    kafka = c["services"]["kafka"]
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert len(voters) == 1 and voters[0].startswith(env["KAFKA_NODE_ID"] + "@kafka:")
    assert "zookeeper" not in json.dumps(kafka).lower()
    assert kafka["healthcheck"]["test"] and any("9092" in part
                                                for part in kafka["healthcheck"]["test"])
    advertised = {urlsplit(u).netloc for u in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name in set(frontline_services(c)) - set(runs(c, "ledger", "migrate")):
        for server in load_settings(env_of(c["services"][name])).bootstrap_servers:
            assert server in advertised, f"{name}: broker {server} is not a Kafka listener"


def test_every_frontline_command_parses_with_the_projects_cli() -> None:
    c = load_compose()
    assert command_problems(c) == []
    services = c["services"]
    assert runs(c, "worker") == ["worker-1", "worker-2"]
    assert runs(c, "ledger", "migrate") == ["migrate"]
    assert runs(c, "ledger", "run") == ["ledger"]
    simulate = parse_command(argv_of(services["simulator"]))
    assert simulate.command == "simulate"  # type: ignore[attr-defined]
    assert simulate.duration or simulate.count  # type: ignore[attr-defined]


def test_the_command_check_catches_a_bad_subcommand_and_a_bad_flag() -> None:
    broken = load_compose()
    broken["services"]["worker-2"]["command"] = ["wroker"]
    broken["services"]["simulator"]["command"] = ["simulate", "--rte", "200"]
    broken["services"]["migrate"]["command"] = "ledger migrate --database-uri x"
    problems = command_problems(broken)
    assert len(problems) == 3, problems
    assert any(p.startswith("worker-2: frontline wroker: ") for p in problems), problems
    assert any(p.startswith("simulator: ") and "--rte" in p for p in problems), problems
    assert any(p.startswith("migrate: ") and "--database-uri" in p for p in problems), problems


def test_every_setting_is_real_and_loads() -> None:
    assert env_problems(load_compose()) == []


def test_the_settings_check_catches_a_typo_and_a_bad_value() -> None:
    broken = load_compose()
    broken["services"]["worker-1"]["environment"]["FRONTLINE_BROKERS"] = "kafka://kafka:9092"
    broken["services"]["ledger"]["environment"]["FRONTLINE_METRICS_PORT"] = "ninety"
    problems = env_problems(broken, COMPOSE.read_text() + "\n# FRONTLINE_PARTITION\n")
    assert "compose.yaml mentions FRONTLINE_PARTITION, which is not a setting" in problems
    assert any("worker-1: FRONTLINE_BROKERS is not a setting" in p for p in problems), problems
    assert any(p.startswith("ledger: FRONTLINE_METRICS_PORT='ninety'") for p in problems)


def test_workers_share_one_group_with_distinct_static_members() -> None:
    c = load_compose()
    workers = runs(c, "worker")
    settings = [load_settings(env_of(c["services"][w])) for w in workers]
    assert len(workers) == 2
    assert len({s.app_id for s in settings}) == 1, "one consumer group"
    ids = [s.group_instance_id for s in settings]
    assert None not in ids and len(set(ids)) == len(ids), ids
    assert len({s.partitions for s in settings}) == 1
    assert settings[0].partitions >= len(workers), "a worker without a partition idles"
    kafka_default = int(env_of(c["services"]["kafka"])["KAFKA_NUM_PARTITIONS"])
    assert kafka_default == settings[0].partitions
    ledger = load_settings(env_of(c["services"]["ledger"]))
    assert (ledger.app_id, ledger.topic_prefix) == (settings[0].app_id, settings[0].topic_prefix)


def test_the_ledger_uses_the_compose_postgres() -> None:
    c = load_compose()
    postgres = env_of(c["services"]["postgres"])
    for name in runs(c, "ledger"):
        url = make_url(load_settings(env_of(c["services"][name])).database_url)
        assert url.drivername == "postgresql+psycopg", name
        assert (url.host, url.port) == ("postgres", 5432), name
        assert (url.username, url.password, url.database) == (
            postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])


def test_dependencies_exist_and_can_be_met() -> None:
    c = load_compose()
    assert depends_problems(c) == []
    services = c["services"]
    for worker in runs(c, "worker"):
        assert services[worker]["depends_on"]["kafka"]["condition"] == "service_healthy"
    ledger = services["ledger"]["depends_on"]
    assert ledger["migrate"]["condition"] == "service_completed_successfully"


def test_the_dependency_check_catches_missing_and_unmeetable_targets() -> None:
    broken = load_compose()
    services = broken["services"]
    services["worker-1"]["depends_on"]["kafak"] = {"condition": "service_healthy"}
    services["ledger"]["depends_on"]["prometheus"] = {"condition": "service_healthy"}
    services["grafana"]["depends_on"] = ["simulator"]
    services["migrate"]["restart"] = "on-failure"
    problems = depends_problems(broken)
    assert "worker-1 depends on kafak, which is not a service" in problems
    assert "ledger waits for prometheus to be healthy; it has no healthcheck" in problems
    assert "ledger waits for migrate to complete; it restarts" in problems
    assert "grafana depends on simulator, which only runs in a profile" in problems


def test_builds_and_mounted_files_exist() -> None:
    assert path_problems(load_compose()) == []


def test_the_path_check_catches_a_missing_file_and_an_undeclared_volume() -> None:
    broken = load_compose()
    broken["services"]["prometheus"]["volumes"].append(
        "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro")
    broken["services"]["postgres"]["volumes"] = ["pg-data:/var/lib/postgresql/data"]
    broken["services"]["worker-1"]["build"] = {"context": ".", "dockerfile": "deploy/Dockerfile"}
    problems = path_problems(broken)
    assert len(problems) == 3, problems
    assert any(p.startswith("prometheus: mounts ./prometheus/alerts.yml") for p in problems)
    assert "postgres: volume pg-data is not declared under volumes:" in problems
    assert any(p.startswith("worker-1: build") for p in problems), problems


def test_the_health_check_needs_no_curl_and_asks_healthz_on_the_metrics_port() -> None:
    c = load_compose()
    dockerfile = DOCKERFILE.read_text()
    assert "curl" not in dockerfile and "wget" not in dockerfile
    for name in runs(c, "worker") + runs(c, "ledger", "run"):
        svc = c["services"][name]
        test = svc["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], f"{name}: {test}"
        assert f"127.0.0.1:{metrics_port(svc)}/healthz" in test[3], name


def test_metrics_listen_on_every_interface_in_the_containers() -> None:
    """The default is loopback only; Prometheus scrapes from another container."""
    c = load_compose()
    for name in runs(c, "worker") + runs(c, "ledger", "run"):
        assert load_settings(env_of(c["services"][name])).metrics_host == "0.0.0.0", name


@pytest.mark.timeout(60)
def test_the_health_check_passes_on_a_live_endpoint_and_fails_on_a_stuck_one() -> None:
    """The worker's health check, run as compose runs it, against the real metrics endpoint."""
    c = load_compose()
    svc = c["services"]["worker-1"]
    code = svc["healthcheck"]["test"][3]
    port = free_port()
    health = metrics.Health()
    metrics.serve(port, "127.0.0.1", health)
    probe = code.replace(f":{metrics_port(svc)}/", f":{port}/")
    assert probe != code, "the health check names the metrics port"

    def check() -> int:
        return subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True,
                              timeout=20).returncode

    assert check() == 0
    health.stall_s = -1.0  # its event loop has been silent for longer than allowed
    health.beat()
    assert check() != 0


# ---- Prometheus --------------------------------------------------------------------------------

def test_prometheus_scrapes_every_worker_and_the_ledger() -> None:
    c, prom = load_compose(), load_prometheus()
    assert scrape_problems(c, prom) == []
    assert prometheus_mount_problems(c, prom) == []
    assert prom["rule_files"], "the alerting rules are loaded"
    for rule_file in prom["rule_files"]:
        assert (PROMETHEUS.parent / rule_file).resolve() == RULES.resolve()


def test_the_scrape_check_catches_a_missing_worker_and_a_wrong_port() -> None:
    c, prom = load_compose(), load_prometheus()
    c["services"]["worker-3"] = copy.deepcopy(c["services"]["worker-2"])
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    jobs[WORKER_JOB]["static_configs"][0]["targets"][0] = "worker-1:9109"
    jobs[LEDGER_JOB]["static_configs"][0]["targets"] = ["ledgr:9108"]
    prom["rule_files"] = ["alerts.yml"]
    problems = scrape_problems(c, prom) + prometheus_mount_problems(c, prom)
    assert f"{WORKER_JOB}: worker-1:9109, but worker-1 serves metrics on 9108" in problems
    assert f"{WORKER_JOB}: worker-1:9109, but worker-1 does not expose 9109" in problems
    assert any("not scraped" in p and "worker-3:9108" in p for p in problems), problems
    assert f"{LEDGER_JOB}: target ledgr:9108 is not a compose service" in problems
    assert any(p.startswith("rule file alerts.yml") for p in problems), problems


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("NO PROMTOOL: `promtool check config` needs Prometheus's promtool "
                    "(Debian: apt-get install prometheus)")
    return path


def test_promtool_accepts_the_config_and_its_rules() -> None:
    assert RULES.is_file(), "deploy/prometheus/frontline-rules.yml: the alerting rules"
    done = subprocess.run([promtool(), "check", "config", str(PROMETHEUS)],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rule files found" in done.stdout + done.stderr


def test_promtool_rejects_a_broken_config(tmp_path: Path) -> None:
    tool = promtool()
    prom = load_prometheus()
    prom["global"]["scrape_interval"] = "fifteen seconds"
    bad = tmp_path / "prometheus.yml"
    bad.write_text(yaml.safe_dump(prom))
    done = subprocess.run([tool, "check", "config", str(bad)], check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    good = load_prometheus()  # valid, but its rule file is not beside it
    (tmp_path / "moved.yml").write_text(yaml.safe_dump(good))
    done = subprocess.run([tool, "check", "config", str(tmp_path / "moved.yml")],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "frontline-rules.yml" in done.stdout + done.stderr


# ---- Grafana -----------------------------------------------------------------------------------

def provisioned(kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for path in sorted((PROVISIONING / kind).glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == 1, path
        items += doc["datasources" if kind == "datasources" else "providers"]
    return items


def datasource_refs(node: Any) -> list[Any]:
    """Every "datasource" value in a dashboard's JSON."""
    if isinstance(node, dict):
        found = [node["datasource"]] if "datasource" in node else []
        return found + [r for v in node.values() for r in datasource_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in datasource_refs(v)]
    return []


def dashboard_problems(dashboard: dict[str, Any], uids: set[str], names: set[str]) -> list[str]:
    builtin = {"-- Grafana --", "grafana", "-- Mixed --", "-- Dashboard --"}
    problems = []
    for ref in datasource_refs(dashboard):
        value = ref.get("uid") if isinstance(ref, dict) else ref
        if value is None or str(value).startswith("$") or value in builtin:
            continue
        if value not in (uids if isinstance(ref, dict) else names | uids):
            problems.append(f"datasource {value!r} is not provisioned")
    return problems


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboards() -> None:
    c = load_compose()
    grafana = c["services"]["grafana"]
    assert repo_path(grafana, "/etc/grafana/provisioning") == PROVISIONING.resolve()
    sources = provisioned("datasources")
    prometheus = [s for s in sources if s["uid"] == "prometheus"]
    assert len(prometheus) == 1 and prometheus[0]["type"] == "prometheus"
    url = urlsplit(prometheus[0]["url"])
    assert url.hostname in c["services"] and "prometheus" in c["services"][url.hostname]["image"]
    assert url.port in exposed(c["services"][url.hostname])
    providers = provisioned("dashboards")
    assert providers and all(p["type"] == "file" for p in providers)
    for provider in providers:
        assert repo_path(grafana, provider["options"]["path"]) == DASHBOARDS.resolve()
    home = env_of(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home and repo_path(grafana, home) == (DASHBOARDS / "frontline.json").resolve()


def test_the_dashboards_use_the_provisioned_datasource() -> None:
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert DASHBOARDS / "frontline.json" in dashboards, "deploy/grafana/dashboards/frontline.json"
    sources = provisioned("datasources")
    uids, names = {s["uid"] for s in sources}, {s["name"] for s in sources}
    for path in dashboards:
        assert dashboard_problems(json.loads(path.read_text()), uids, names) == [], path.name
    broken = {"panels": [{"datasource": {"type": "prometheus", "uid": "PBFA97CFB590B2093"}}]}
    assert dashboard_problems(broken, uids, names) == [
        "datasource 'PBFA97CFB590B2093' is not provisioned"]
