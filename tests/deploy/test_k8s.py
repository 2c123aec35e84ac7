"""deploy/k8s/, checked offline (there is no cluster here): every object, as kustomize builds it,
is valid against the Kubernetes API's JSON schemas (kubernetes-validate, strict: unknown fields
are errors), and means what Frontline needs: commands the project's own parser accepts, settings
that exist and load, probes on /healthz and /readyz of the metrics port that Prometheus's
annotations name, the shipped playbook mounted where FRONTLINE_PLAYBOOK points, every ConfigMap
and Secret a workload refers to present, the restricted Pod Security profile. Each check returns
the problems it finds and is shown failing on a broken copy. When kubectl is installed, its
built-in kustomize renders the directory and the same checks run on its output."""

from __future__ import annotations

import base64
import posixpath
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_refs import (
    DEPLOY,
    SHIPPED_PLAYBOOK,
    command_problem,
    effective_argv,
    frontline_image,
    load_settings,
    settings_problems,
)

from models.playbook import PlaybookError, load_playbook
from streams.settings import Settings

K8S = DEPLOY / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
K8S_VERSIONS = ("1.30.0", "1.33.0")
CLUSTER_SCOPED = {"Namespace"}
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet"}

Obj = dict[str, Any]


# ---- building the objects as kustomize does ----------------------------------------------------

def kustomization() -> dict[str, Any]:
    data = yaml.safe_load(KUSTOMIZATION.read_text())
    assert data["kind"] == "Kustomization"
    return data


def env_file(path: Path) -> dict[str, str]:
    """kustomize's env file: KEY=VALUE lines, # comments and blank lines skipped."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not KEY=VALUE"
            out[key.strip()] = value
    return out


def generated(k: dict[str, Any]) -> list[Obj]:
    out = []
    for gen in k.get("configMapGenerator") or []:
        data: dict[str, str] = {}
        for env in gen.get("envs") or []:
            data.update(env_file(K8S / env))
        for literal in gen.get("literals") or []:
            key, _, value = literal.partition("=")
            data[key] = value
        for spec in gen.get("files") or []:
            key, sep, path = spec.partition("=")
            if not sep:
                key, path = posixpath.basename(spec), spec
            data[key] = (K8S / path).read_text()
        out.append({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": gen["name"]}, "data": data})
    return out


def manifests() -> list[Obj]:
    """The objects of deploy/k8s: the listed resources and the generated ConfigMaps, in the
    kustomization's namespace (names without kustomize's content hash)."""
    k = kustomization()
    objects: list[Obj] = []
    for resource in k["resources"]:
        objects += [d for d in yaml.safe_load_all((K8S / resource).read_text()) if d]
    objects += generated(k)
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED and k.get("namespace"):
            obj["metadata"].setdefault("namespace", k["namespace"])
    return objects


def rendered() -> list[Obj]:
    """The objects as kubectl's built-in kustomize builds them."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("NO KUBECTL: rendering deploy/k8s with kustomize needs kubectl "
                    "(its built-in kustomize; no cluster is contacted)")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], check=False, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


# ---- reading objects ---------------------------------------------------------------------------

def name(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def find(objects: list[Obj], kind: str, obj_name: str) -> Obj | None:
    return next((o for o in objects if o["kind"] == kind and o["metadata"]["name"] == obj_name),
                None)


def by_component(objects: list[Obj], kind: str, component: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"].get("labels", {}).get(
        "app.kubernetes.io/component") == component]
    assert len(found) == 1, f"one {kind} of component {component}, found {len(found)}"
    return found[0]


def pod_template(obj: Obj) -> dict[str, Any]:
    template: dict[str, Any] = obj["spec"]["template"]
    return template


def containers(objects: list[Obj]) -> Iterator[tuple[Obj, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            spec = pod_template(obj)["spec"]
            for c in spec.get("initContainers", []) + spec["containers"]:
                yield obj, c


def secret_data(secret: Obj) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return {**data, **(secret.get("stringData") or {})}


def container_env(objects: list[Obj], obj: Obj, c: dict[str, Any]) -> tuple[dict[str, str],
                                                                              list[str]]:
    """The container's environment as the kubelet makes it, and what it refers to that is
    missing. A field reference to the pod's name gets the StatefulSet's first pod name."""
    env: dict[str, str] = {}
    problems = []
    where = f"{name(obj)} {c['name']}"
    for source in c.get("envFrom") or []:
        for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if key in source:
                ref = find(objects, kind, source[key]["name"])
                if ref is None:
                    problems.append(f"{where}: envFrom {kind} {source[key]['name']} is missing")
                else:
                    env.update(secret_data(ref) if kind == "Secret" else ref.get("data") or {})
    for var in c.get("env") or []:
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        src = var.get("valueFrom", {})
        if "fieldRef" in src:
            field = src["fieldRef"]["fieldPath"]
            env[var["name"]] = {"metadata.name": f"{obj['metadata']['name']}-0",
                                "metadata.namespace": obj["metadata"].get("namespace", "")
                                }.get(field, field)
        for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            if key in src:
                ref = find(objects, kind, src[key]["name"])
                data = (secret_data(ref) if kind == "Secret" else ref.get("data") or {}) \
                    if ref else {}
                if ref is None:
                    problems.append(f"{where}: {var['name']} refers to the missing {kind} "
                                    f"{src[key]['name']}")
                elif src[key]["key"] not in data:
                    problems.append(f"{where}: {var['name']} refers to key {src[key]['key']} "
                                    f"that {kind} {src[key]['name']} lacks")
                else:
                    env[var["name"]] = data[src[key]["key"]]
    return env, problems


def argv(c: dict[str, Any]) -> list[str]:
    return effective_argv(c.get("command"), c.get("args"))


def settings_of(objects: list[Obj], obj: Obj, c: dict[str, Any]) -> Settings:
    return load_settings(container_env(objects, obj, c)[0])


def workers(objects: list[Obj]) -> list[tuple[Obj, dict[str, Any]]]:
    return [(o, c) for o, c in containers(objects) if argv(c)[1:2] == ["worker"]]


def quantity(text: str | int) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text)).groups()  # type: ignore
    return float(number) * units.get(unit, 1)


# ---- the checks --------------------------------------------------------------------------------

def schema_problems(objects: list[Obj], version: str) -> list[str]:
    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(map(str, exc.path)) or "(top)"
            problems.append(f"{name(obj)}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name(obj)}: {exc}")
    return problems


def command_problems(objects: list[Obj]) -> list[str]:
    return [f"{name(o)} {c['name']}: {p}" for o, c in containers(objects)
            if (p := command_problem(argv(c)))]


def env_problems(objects: list[Obj]) -> list[str]:
    problems = []
    for obj, c in containers(objects):
        env, missing = container_env(objects, obj, c)
        problems += missing + settings_problems(env, f"{name(obj)} {c['name']}")
    return problems


def reference_problems(objects: list[Obj]) -> list[str]:
    """Volumes' ConfigMaps and Secrets exist (env references: container_env)."""
    problems = []
    for obj in objects:
        if obj["kind"] not in WORKLOADS:
            continue
        for volume in pod_template(obj)["spec"].get("volumes") or []:
            for key, kind, field in (("configMap", "ConfigMap", "name"),
                                     ("secret", "Secret", "secretName")):
                if key in volume and find(objects, kind, volume[key][field]) is None:
                    problems.append(f"{name(obj)}: volume {volume['name']}: {kind} "
                                    f"{volume[key][field]} is missing")
        for _, c in containers([obj]):
            problems += container_env(objects, obj, c)[1]
    return problems


def probe_problems(objects: list[Obj]) -> list[str]:
    """Long-running containers: startup and liveness on /healthz, readiness on /readyz, all on
    the metrics port, which the Prometheus annotations name too."""
    problems = []
    for obj, c in containers(objects):
        if obj["kind"] not in LONG_RUNNING:
            continue
        where = f"{name(obj)} {c['name']}"
        settings = settings_of(objects, obj, c)
        port = settings.metrics_port
        if settings.metrics_host != "0.0.0.0":  # the kubelet and Prometheus are outside the pod
            problems.append(f"{where}: metrics bound to {settings.metrics_host}, unreachable "
                            f"for probes and Prometheus (FRONTLINE_METRICS_HOST=0.0.0.0)")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
        if port not in ports.values():
            problems.append(f"{where}: metrics port {port} is not a container port")
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                            ("readinessProbe", "/readyz")):
            get = (c.get(probe) or {}).get("httpGet")
            if get is None:
                problems.append(f"{where}: no {probe} over HTTP")
                continue
            target = ports.get(get["port"], get["port"])
            if get.get("path") != path or target != port:
                problems.append(f"{where}: {probe} asks {get.get('path')} on {get['port']}, "
                                f"not {path} on {port}")
        notes = pod_template(obj)["metadata"].get("annotations") or {}
        wanted = {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                  "prometheus.io/path": "/metrics"}
        for key, value in wanted.items():
            if notes.get(key) != value:
                problems.append(f"{where}: annotation {key} is {notes.get(key)!r}, not {value!r}")
    return problems


def playbook_problems(objects: list[Obj], tmp: Path) -> list[str]:
    """A worker's FRONTLINE_PLAYBOOK is a file of a mounted ConfigMap that holds the shipped
    playbook, and the project's loader accepts it."""
    problems = []
    found = workers(objects)
    if not found:
        return ["no worker"]
    for obj, c in found:
        where = f"{name(obj)} {c['name']}"
        path = settings_of(objects, obj, c).playbook
        if path is None:
            problems.append(f"{where}: FRONTLINE_PLAYBOOK not set (the image's own would be used)")
            continue
        mount = next((m for m in c.get("volumeMounts") or []
                      if str(path).startswith(m["mountPath"].rstrip("/") + "/")), None)
        volumes = {v["name"]: v for v in pod_template(obj)["spec"].get("volumes") or []}
        volume = volumes.get(mount["name"]) if mount else None
        if volume is None or "configMap" not in volume:
            problems.append(f"{where}: {path} is not on a mounted ConfigMap")
            continue
        cm = find(objects, "ConfigMap", volume["configMap"]["name"])
        key = posixpath.relpath(str(path), mount["subPath"] if "subPath" in mount
                                else mount["mountPath"])
        text = ((cm or {}).get("data") or {}).get(key)
        if text is None:
            problems.append(f"{where}: ConfigMap {volume['configMap']['name']} has no {key}")
            continue
        if text != SHIPPED_PLAYBOOK.read_text():
            problems.append(f"{where}: ConfigMap {volume['configMap']['name']} {key} differs "
                            f"from models/default_playbook.yaml")
        copy_path = tmp / key
        copy_path.write_text(text)
        try:
            load_playbook(copy_path)
        except PlaybookError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def security_problems(objects: list[Obj]) -> list[str]:
    """The restricted Pod Security Standard, the image's non-root user, a writable data
    directory under a read-only root, and requests within limits."""
    problems = []
    for obj, c in containers(objects):
        where = f"{name(obj)} {c['name']}"
        pod = pod_template(obj)["spec"].get("securityContext") or {}
        ctx = {**pod, **(c.get("securityContext") or {})}
        if ctx.get("runAsNonRoot") is not True or ctx.get("runAsUser") in (0, None):
            problems.append(f"{where}: not forced to run as a non-root user")
        if str(ctx.get("runAsUser")) != frontline_image().user:
            problems.append(f"{where}: runs as {ctx.get('runAsUser')}, the image's user is "
                            f"{frontline_image().user}")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if "ALL" not in (ctx.get("capabilities") or {}).get("drop", []):
            problems.append(f"{where}: capabilities not dropped")
        if (ctx.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: no seccomp profile")
        if ctx.get("readOnlyRootFilesystem") and argv(c)[1:2] == ["worker"]:
            data_dir = str(settings_of(objects, obj, c).data_dir)
            if not any(data_dir == m["mountPath"] or data_dir.startswith(m["mountPath"] + "/")
                       for m in c.get("volumeMounts") or [] if not m.get("readOnly")):
                problems.append(f"{where}: data dir {data_dir} is on the read-only root")
        res = c.get("resources") or {}
        for kind in ("cpu", "memory"):
            req, lim = (res.get("requests") or {}).get(kind), (res.get("limits") or {}).get(kind)
            if req is None or lim is None:
                problems.append(f"{where}: no {kind} request and limit")
            elif quantity(req) > quantity(lim):
                problems.append(f"{where}: {kind} request {req} above its limit {lim}")
    return problems


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def workload_problems(objects: list[Obj]) -> list[str]:
    problems = []
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    for obj in objects:
        ns = obj["metadata"].get("namespace")
        if obj["kind"] not in CLUSTER_SCOPED and ns not in namespaces:
            problems.append(f"{name(obj)}: namespace {ns} is not among the manifests")
        if obj["kind"] in WORKLOADS - {"Job"}:
            labels = pod_template(obj)["metadata"].get("labels") or {}
            if not labels_match(obj["spec"]["selector"]["matchLabels"], labels):
                problems.append(f"{name(obj)}: selector does not match its pods")
    sts = [o for o in objects if o["kind"] == "StatefulSet"]
    for s in sts:
        service = find(objects, "Service", s["spec"]["serviceName"])
        pods = pod_template(s)["metadata"]["labels"]
        if service is None or service["spec"].get("clusterIP") != "None":
            problems.append(f"{name(s)}: serviceName {s['spec']['serviceName']} is not a "
                            f"headless Service")
        elif not labels_match(service["spec"]["selector"], pods):
            problems.append(f"{name(s)}: its Service selects other pods")
        pdbs = [p for p in objects if p["kind"] == "PodDisruptionBudget"
                and labels_match(p["spec"]["selector"]["matchLabels"], pods)]
        if not pdbs:
            problems.append(f"{name(s)}: no PodDisruptionBudget covers its pods")
        for pdb in pdbs:
            if int(pdb["spec"].get("maxUnavailable", 0)) >= s["spec"]["replicas"]:
                problems.append(f"{name(pdb)}: lets every worker go at once")
    for obj, c in workers(objects):
        settings = settings_of(objects, obj, c)
        replicas = obj["spec"].get("replicas", 1)
        if settings.partitions < replicas:
            problems.append(f"{name(obj)}: {replicas} workers for {settings.partitions} "
                            f"partitions: some would idle")
        ref = next((v.get("valueFrom", {}).get("fieldRef", {}) for v in c.get("env") or []
                    if v["name"] == "FRONTLINE_GROUP_INSTANCE_ID"), {})
        if ref.get("fieldPath") != "metadata.name":
            problems.append(f"{name(obj)}: FRONTLINE_GROUP_INSTANCE_ID is not the pod's name")
    return problems


def all_problems(objects: list[Obj], tmp: Path) -> list[str]:
    return (command_problems(objects) + env_problems(objects) + reference_problems(objects)
            + probe_problems(objects) + playbook_problems(objects, tmp)
            + security_problems(objects) + workload_problems(objects))


# ---- the manifests -----------------------------------------------------------------------------

def test_the_kustomization_lists_every_manifest_and_the_manifests_parse() -> None:
    k = kustomization()
    listed = set(k["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, f"listed but missing: {listed - on_disk}; " \
                              f"not listed: {on_disk - listed}"
    kinds = sorted(o["kind"] for o in manifests())
    assert kinds == sorted(["Namespace", "Secret", "Service", "StatefulSet",
                            "PodDisruptionBudget", "Job", "Deployment", "ConfigMap",
                            "ConfigMap"]), kinds
    assert [i["name"] for i in k["images"]] == ["frontline"]
    assert {c["image"] for _, c in containers(manifests())} == {"frontline"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    assert schema_problems(manifests(), version) == []


def test_the_schema_check_is_strict() -> None:
    objects = manifests()
    ledger = by_component(objects, "Deployment", "ledger")
    ledger["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pth"] = "/"
    by_component(objects, "StatefulSet", "worker")["spec"]["replicas"] = "2"
    problems = schema_problems(objects, K8S_VERSIONS[0])
    assert len(problems) == 2, problems
    assert any("'pth' was unexpected" in p for p in problems)
    assert any("replicas: '2' is not of type 'integer'" in p for p in problems)


def test_the_manifests_mean_what_frontline_needs(tmp_path: Path) -> None:
    objects = manifests()
    assert all_problems(objects, tmp_path) == []
    sts = by_component(objects, "StatefulSet", "worker")
    assert sts["spec"]["replicas"] == 2
    assert by_component(objects, "Deployment", "ledger")["spec"]["replicas"] == 1
    commands = sorted(argv(c) for _, c in containers(objects))
    assert commands == [["frontline", "ledger", "migrate"], ["frontline", "ledger", "run"],
                        ["frontline", "worker"]]
    job = by_component(objects, "Job", "ledger-migrate")
    ledger = by_component(objects, "Deployment", "ledger")
    urls = {settings_of(objects, o, c).database_url for o in (job, ledger)
            for c in pod_template(o)["spec"]["containers"]}
    assert len(urls) == 1 and urls.pop().startswith("postgresql+psycopg://")


def test_the_command_and_settings_checks_catch_mistakes() -> None:
    objects = manifests()
    worker = pod_template(by_component(objects, "StatefulSet", "worker"))["spec"]["containers"][0]
    worker["args"] = ["wroker"]
    job = pod_template(by_component(objects, "Job", "ledger-migrate"))["spec"]["containers"][0]
    job["command"] = ["frontline", "ledger", "migrate", "--dry-run"]
    settings = find(objects, "ConfigMap", "frontline-settings")
    assert settings is not None
    settings["data"]["FRONTLINE_PARTITIONS"] = "lots"
    ledger = pod_template(by_component(objects, "Deployment", "ledger"))["spec"]["containers"][0]
    ledger["env"].append({"name": "FRONTLINE_DATABASE", "value": "sqlite://"})
    commands = command_problems(objects)
    assert len(commands) == 2, commands
    assert any("invalid choice: 'wroker'" in p for p in commands)
    assert any("unrecognized arguments: --dry-run" in p for p in commands)
    env = env_problems(objects)
    assert any("FRONTLINE_PARTITIONS='lots'" in p for p in env), env
    assert any("FRONTLINE_DATABASE is not a setting" in p for p in env), env


def test_the_probe_and_annotation_checks_catch_mistakes() -> None:
    objects = manifests()
    sts = by_component(objects, "StatefulSet", "worker")
    worker = pod_template(sts)["spec"]["containers"][0]
    worker["readinessProbe"]["httpGet"]["path"] = "/healthz"
    worker["livenessProbe"]["httpGet"]["port"] = 8080
    pod_template(sts)["metadata"]["annotations"]["prometheus.io/port"] = "9090"
    ledger = pod_template(by_component(objects, "Deployment", "ledger"))["spec"]["containers"][0]
    del ledger["startupProbe"]
    ledger["env"].append({"name": "FRONTLINE_METRICS_HOST", "value": "127.0.0.1"})
    problems = probe_problems(objects)
    assert len(problems) == 5, problems
    assert any("ledger: metrics bound to 127.0.0.1, unreachable" in p for p in problems)
    assert any("readinessProbe asks /healthz" in p for p in problems)
    assert any("livenessProbe asks /healthz on 8080" in p for p in problems)
    assert any("annotation prometheus.io/port is '9090', not '9108'" in p for p in problems)
    assert any("ledger: no startupProbe" in p for p in problems)


def test_the_reference_and_playbook_checks_catch_mistakes(tmp_path: Path) -> None:
    objects = [o for o in manifests() if o["kind"] != "Secret"]
    playbook = find(objects, "ConfigMap", "frontline-playbook")
    assert playbook is not None
    playbook["data"]["playbook.yaml"] = playbook["data"]["playbook.yaml"].replace(
        "target: 0.9\n", "target: 1.9\n", 1)
    references = reference_problems(objects)
    assert any("FRONTLINE_DATABASE_URL refers to the missing Secret frontline-database" in p
               for p in references), references
    problems = playbook_problems(objects, tmp_path)
    assert any("differs from models/default_playbook.yaml" in p for p in problems), problems
    assert any("target: Input should be less than 1" in p for p in problems), problems
    objects = manifests()
    sts = by_component(objects, "StatefulSet", "worker")
    pod_template(sts)["spec"]["volumes"][0]["configMap"]["name"] = "playbook"
    assert reference_problems(objects) == [
        "StatefulSet/frontline-worker: volume playbook: ConfigMap playbook is missing"]


def test_the_security_and_workload_checks_catch_mistakes() -> None:
    objects = manifests()
    sts = by_component(objects, "StatefulSet", "worker")
    spec = pod_template(sts)["spec"]
    del spec["securityContext"]["runAsNonRoot"]
    del spec["containers"][0]["resources"]["limits"]["memory"]
    spec["containers"][0]["volumeMounts"] = [m for m in spec["containers"][0]["volumeMounts"]
                                             if m["name"] != "data"]
    sts["spec"]["replicas"] = 20
    sts["spec"]["serviceName"] = "frontline"
    spec["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] = "spec.nodeName"
    security = security_problems(objects)
    assert any("worker: not forced to run as a non-root user" in p for p in security)
    assert any("worker: no memory request and limit" in p for p in security)
    assert any("data dir /var/lib/frontline is on the read-only root" in p for p in security)
    workload = workload_problems(objects)
    assert any("20 workers for 12 partitions" in p for p in workload), workload
    assert any("serviceName frontline is not a headless Service" in p for p in workload)
    assert any("FRONTLINE_GROUP_INSTANCE_ID is not the pod's name" in p for p in workload)


def test_the_secret_is_a_documented_placeholder() -> None:
    secret = find(manifests(), "Secret", "frontline-database")
    assert secret is not None
    url = secret_data(secret)["FRONTLINE_DATABASE_URL"]
    assert "CHANGE-ME" in url and url.startswith("postgresql+psycopg://")
    assert "PLACEHOLDER" in (K8S / "secret.yaml").read_text()


# ---- as kustomize renders them -----------------------------------------------------------------

def test_kustomize_renders_valid_objects_that_mean_the_same(tmp_path: Path) -> None:
    objects = rendered()
    for version in K8S_VERSIONS:
        assert schema_problems(objects, version) == []
    assert all_problems(objects, tmp_path) == []
    mine = {(o["kind"], o["metadata"]["name"]) for o in manifests()}
    theirs = {(o["kind"], re.sub(r"-[a-z0-9]{10}$", "", o["metadata"]["name"])
               if o["kind"] == "ConfigMap" else o["metadata"]["name"]) for o in objects}
    assert mine == theirs
    generated_names = [o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"]
    assert all(re.search(r"-[a-z0-9]{10}$", n) for n in generated_names), generated_names
    image = kustomization()["images"][0]
    assert {c["image"] for _, c in containers(objects)} == {
        f"{image['newName']}:{image['newTag']}"}
    assert all(o["metadata"].get("namespace") == "frontline" for o in objects
               if o["kind"] != "Namespace")


def test_the_playbook_copy_is_the_shipped_playbook() -> None:
    """kustomize reads no file outside deploy/k8s, so the ConfigMap is generated from a copy."""
    assert (K8S / "config" / "playbook.yaml").read_text() == SHIPPED_PLAYBOOK.read_text(), (
        "deploy/k8s/config/playbook.yaml differs from models/default_playbook.yaml: "
        "cp models/default_playbook.yaml deploy/k8s/config/playbook.yaml")


def test_settings_are_shared_and_sized(tmp_path: Path) -> None:
    objects = manifests()
    settings = {c["name"]: settings_of(objects, o, c) for o, c in containers(objects)}
    assert len({(s.app_id, s.topic_prefix, s.broker) for s in settings.values()}) == 1
    worker = settings["worker"]
    assert worker.session_timeout_s >= 3 * worker.heartbeat_s
    assert worker.partitions >= by_component(
        objects, "StatefulSet", "worker")["spec"]["replicas"]
