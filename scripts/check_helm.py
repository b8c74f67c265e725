#!/usr/bin/env python3
"""Checks the Helm chart helm/kappa without a cluster and without a helm binary.

- renders the chart through Helm's own Go library (PyPI helm-python-sdk, Helm v4) with several
  sets of values, and runs Helm's lint (strict) on each;
- validates every rendered manifest against the Kubernetes OpenAPI schemas of fixed versions,
  offline (PyPI kubernetes-validate, strict: unknown fields are errors); the custom resources
  (Prometheus Operator's ServiceMonitor, cert-manager's Certificate and Issuer) against their
  generated models (PyPI cloudcoil.models.prometheus_operator, cloudcoil.models.cert_manager),
  unknown fields included;
- cross-checks the manifests (selectors, named ports, referenced ConfigMaps/Secrets/volumes,
  security context) and what each set of values must produce;
- checks kappa.toml and the container arguments against `kappa <command> --help` of a built
  binary, and starts that binary as the rendered pods would on 127.0.0.1: their mounted files
  made from the rendered Secrets, and the certificate Secrets the chart expects made with
  `kappa certs` (jobmanager with its auth token file and cluster certificate, REST over HTTPS
  when asked, its probe paths, a taskmanager registering its slots over mutual TLS);
- checks that values that make no sense fail rendering with their messages.

Usage:  python3 scripts/check_helm.py [--kappa target/debug/kappa] [--no-binary]
It creates .tools/helm-venv with the pinned packages below on first use (pip), then re-runs
itself there. Prints PASS/FAIL/WARN lines and "helm: N passed, N failed"; exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "kappa"
VENV = ROOT / ".tools" / "helm-venv"
# The packages this check needs, pinned (transitive dependencies come with them).
PINNED = {
    "helm-python-sdk": "0.2.2",
    "kubernetes-validate": "1.37.0",
    "cloudcoil.models.prometheus_operator": "0.80.1.0",
    "cloudcoil.models.cert_manager": "1.17.1.0",
    "PyYAML": "6.0.4",
}
# Kubernetes versions the manifests are validated against: the chart's minimum, a fixed
# mid version, and the newest the schemas cover.
KUBE_VERSIONS = ["1.25", "1.30", "1.37"]
LINT_KUBE_VERSION = "v1.30.0"
RELEASE, NAMESPACE = "kappa", "stream"
# API groups of the custom resources the chart renders (validated against generated models).
CRD_GROUPS = ("monitoring.coreos.com/", "cert-manager.io/")
# Where the pods see their Secrets (kappa.secretsDir).
SECRETS_DIR = "/var/run/secrets/kappa"
# Flags the HA work adds to `kappa jobmanager`; until a binary has them, their absence is a WARN.
PENDING_FLAGS = {"--ha", "--etcd-endpoints", "--etcd-prefix", "--advertised-address"}


# ---------------------------------------------------------------- environment bootstrap


def _versions_ok(python: str) -> bool:
    probe = (
        "import importlib.metadata as m, json, sys\n"
        f"want = {json.dumps(PINNED)}\n"
        "def v(n):\n"
        "    try: return m.version(n)\n"
        "    except m.PackageNotFoundError: return None\n"
        "sys.exit(0 if all(v(n) == w for n, w in want.items()) else 1)\n"
    )
    return subprocess.run([python, "-c", probe], check=False).returncode == 0


def ensure_environment(argv: list[str]) -> None:
    """Re-runs this script in .tools/helm-venv, creating it with the pinned packages if needed."""
    venv_python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve() and _versions_ok(sys.executable):
        return
    if "--no-install" in argv:
        if _versions_ok(sys.executable):
            return
        sys.exit(
            "check_helm: the pinned packages are missing: pip install "
            + " ".join(f"{n}=={v}" for n, v in PINNED.items())
        )
    if not venv_python.exists():
        print(f"check_helm: creating {VENV.relative_to(ROOT)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not _versions_ok(str(venv_python)):
        reqs = [f"{n}=={v}" for n, v in PINNED.items()]
        print(f"check_helm: pip install {' '.join(reqs)}", flush=True)
        subprocess.run(
            [str(venv_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *reqs],
            check=True,
        )
    os.execv(str(venv_python), [str(venv_python), str(Path(__file__).resolve()), *argv])


# ---------------------------------------------------------------- reporting


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.warnings: list[str] = []

    def ok(self, what: str) -> None:
        self.passed += 1
        print(f"PASS {what}", flush=True)

    def fail(self, what: str, detail: str = "") -> None:
        self.failed.append(what)
        print(f"FAIL {what}" + (f"\n     {detail}" if detail else ""), flush=True)

    def warn(self, what: str) -> None:
        self.warnings.append(what)
        print(f"WARN {what}", flush=True)

    def check(self, cond: bool, what: str, detail: str = "") -> bool:
        if cond:
            self.ok(what)
        else:
            self.fail(what, detail)
        return cond


# ---------------------------------------------------------------- scenarios

SCENARIOS: dict[str, dict] = {
    # (a) the defaults
    "defaults": {},
    # (b) HA: two jobmanagers electing a leader in etcd, on mutual TLS (a standby names the
    # leader by its pod IP: taskmanagers check jobmanager certificates for the gRPC Service's name)
    "ha": {
        "jobmanager": {"replicas": 2},
        "ha": {
            "enabled": True,
            "etcd": {"endpoints": ["http://etcd-0.etcd:2379", "http://etcd-1.etcd:2379"]},
        },
        "checkpoints": {"dir": "s3://kappa/checkpoints"},
        "podDisruptionBudget": {"jobmanager": {"minAvailable": 1}},
    },
    # (c) a Secret managed outside the chart, auth on, ServiceMonitor, Ingress, persistence
    "existing-secret": {
        "existingSecret": "kappa-credentials",
        "auth": {"enabled": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "kappa.example.com",
            "tls": {"enabled": True, "secretName": "kappa-tls"},
        },
        "taskmanager": {"persistence": {"enabled": True, "size": "20Gi", "storageClassName": "fast"}},
        "checkpoints": {"dir": "s3://kappa/checkpoints"},
        "s3": {"endpoint": "http://minio.storage:9000", "allowHttp": True},
    },
    # (d) the chart's own Secret (S3 keys, a given token), more settings
    "chart-secret": {
        "auth": {"enabled": True, "token": "s3cr3t-t0ken"},
        "s3": {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG"},
        "checkpoints": {"dir": "s3://kappa/checkpoints"},
        "serviceMonitor": {"enabled": True},
        "ingress": {"enabled": True, "host": ""},
        "kafka": {"bootstrapServers": "kafka.kafka:9092"},
        "jobmanager": {
            "restartStrategy": {"strategy": "fixed-delay", "delay": "5s", "maxAttempts": 10},
            "extraConfig": {"slot_timeout": "10m"},
        },
        "taskmanager": {
            "slots": 8,
            "replicas": 3,
            "persistence": {"emptyDirSizeLimit": "5Gi"},
        },
        "logLevel": "info,kappa_jobmanager=debug",
    },
    # (e) cert-manager with the chart's own CA, REST over HTTPS, monitoring, no NetworkPolicy
    "cert-manager": {
        "tls": {"certManager": {"enabled": True}},
        "rest": {"tls": {"enabled": True, "dnsNames": ["kappa.example.com"]}},
        "serviceMonitor": {"enabled": True},
        "ingress": {"enabled": True},
        "networkPolicy": {"enabled": False},
        "taskmanager": {"replicas": 3},
    },
    # (f) cert-manager with a ClusterIssuer of yours, REST over HTTPS from your Secret
    "cert-manager-issuer": {
        "tls": {"certManager": {"enabled": True, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}}},
        "rest": {"tls": {"enabled": True, "secretName": "kappa-web-tls"}},
        "networkPolicy": {"restFrom": [], "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]},
    },
    # (g) plaintext gRPC, asked for, with pod IPs
    "insecure": {
        "tls": {"insecure": True},
        "taskmanager": {"advertisedAddress": "podIP"},
        "serviceMonitor": {"enabled": True},
    },
}

# Values that make no sense, and the message rendering must fail with.
BAD_VALUES: list[tuple[str, dict, str]] = [
    (
        "2 jobmanagers without HA",
        {"jobmanager": {"replicas": 2}},
        "jobmanager.replicas=2 needs high availability: set ha.enabled=true",
    ),
    (
        "HA without etcd endpoints",
        {"ha": {"enabled": True}, "checkpoints": {"dir": "s3://b/c"}},
        "ha.enabled=true needs ha.etcd.endpoints",
    ),
    (
        "HA without checkpoints.dir",
        {"ha": {"enabled": True, "etcd": {"endpoints": ["http://etcd:2379"]}}},
        "ha.enabled=true needs checkpoints.dir",
    ),
    ("taskmanager.slots 0", {"taskmanager": {"slots": 0}}, "taskmanager.slots must be at least 1 (got 0)"),
    ("taskmanager.slots not a number", {"taskmanager": {"slots": "four"}}, "taskmanager.slots must be a whole number"),
    (
        "etcd endpoints as one comma-separated string item",
        {"ha": {"enabled": True, "etcd": {"endpoints": ["http://a:2379,http://b:2379"]}}, "checkpoints": {"dir": "s3://b/c"}},
        "is not one etcd URL",
    ),
    (
        "auth off with the REST API beyond loopback",
        {"auth": {"enabled": False}},
        "auth.enabled=false, but a jobmanager whose REST API listens on 0.0.0.0",
    ),
    (
        "a token with auth off",
        {"auth": {"enabled": False, "token": "x"}, "jobmanager": {"bindAddress": "127.0.0.1"}},
        "auth.token is set but auth.enabled=false",
    ),
    (
        "pod IPs with cluster TLS",
        {"taskmanager": {"advertisedAddress": "podIP"}},
        "taskmanager.advertisedAddress=podIP needs tls.insecure=true",
    ),
    (
        "a certificate common name beyond 64 characters",
        {"fullnameOverride": "k" * 40, "tls": {"certManager": {"enabled": True}}, "taskmanager": {"replicas": 11}},
        "is longer than the 64 characters a certificate allows",
    ),
    ("half the S3 keys", {"s3": {"accessKeyId": "AKIA"}}, "s3.accessKeyId is set but s3.secretAccessKey is empty"),
    (
        "existingSecret and inline credentials",
        {"existingSecret": "mine", "s3": {"accessKeyId": "a", "secretAccessKey": "b"}},
        "existingSecret is set, so s3.accessKeyId",
    ),
    ("unknown advertisedAddress", {"taskmanager": {"advertisedAddress": "hostname"}}, "advertisedAddress must be podIP or dns"),
    ("unknown restart strategy", {"jobmanager": {"restartStrategy": {"strategy": "always"}}}, "restartStrategy.strategy must be none"),
    ("ingress TLS without a secret", {"ingress": {"enabled": True, "tls": {"enabled": True}}}, "ingress.tls.enabled=true needs ingress.tls.secretName"),
]


# ---------------------------------------------------------------- helpers


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render(values: dict) -> dict[str, str]:
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def documents(rendered: dict[str, str]) -> list[tuple[str, dict]]:
    import yaml

    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path.split("/templates/", 1)[-1], doc))
    return docs


def notes(rendered: dict[str, str]) -> str:
    return next((t for p, t in rendered.items() if p.endswith("NOTES.txt")), "")


def kn(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def find(docs, kind: str, name: str | None = None) -> list[dict]:
    return [d for _, d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_templates(docs) -> list[tuple[dict, dict]]:
    return [(d, d["spec"]["template"]) for _, d in docs if d.get("kind") in ("Deployment", "StatefulSet")]


def cargo_version() -> str:
    import tomllib

    data = tomllib.loads((ROOT / "Cargo.toml").read_text())
    return data.get("workspace", {}).get("package", {}).get("version") or data["package"]["version"]


def free_ports(n: int) -> list[int]:
    """n distinct free ports on 127.0.0.1 (all held open while choosing)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def env_value(container: dict, name: str) -> dict | None:
    return next((e for e in container.get("env", []) if e["name"] == name), None)


def flags_of(help_text: str) -> set[str]:
    return set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", help_text, re.M))


# ---------------------------------------------------------------- static checks


def check_chart_metadata(r: Report) -> None:
    import yaml

    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    r.check(meta.get("apiVersion") == "v2", "Chart.yaml: apiVersion v2", str(meta.get("apiVersion")))
    want = cargo_version()
    r.check(
        str(meta.get("appVersion")) == want,
        f"Chart.yaml: appVersion {meta.get('appVersion')} = workspace version {want}",
        f"Cargo.toml says {want}",
    )


def check_values_documented(r: Report) -> None:
    """Every value in values.yaml has a comment on its own line above it or above a parent key."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    undocumented = []
    prev = ""
    for line in lines:
        stripped = line.strip()
        m = re.match(r"^(\s*)([A-Za-z0-9_.-]+):(\s|$)", line)
        if m and not stripped.startswith("#") and not stripped.startswith("-"):
            indent = len(m.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            documented = prev.startswith("#") or any(d for _, _, d in stack)
            rest = line[m.end():].strip()
            is_leaf = rest != "" and not rest.startswith("#")
            if is_leaf and not documented:
                undocumented.append(".".join([k for _, k, _ in stack] + [m.group(2)]))
            stack.append((indent, m.group(2), prev.startswith("#")))
        if stripped:
            prev = stripped
    r.check(not undocumented, "values.yaml: every value is documented by a comment", ", ".join(undocumented))


def lint(r: Report, name: str, values: dict) -> None:
    import helm_python as helm

    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=LINT_KUBE_VERSION)
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + [
        {"error": e} for e in report.get("errors", []) or []
    ]
    infos = [m["error"] for m in report.get("messages", []) if m.get("severity", 0) < 2]
    r.check(
        not problems,
        f"[{name}] helm lint --strict --kube-version {LINT_KUBE_VERSION}"
        + (f" (info: {'; '.join(infos)})" if infos else ""),
        "; ".join(f"{m.get('path', '')}: {m['error']}" for m in problems),
    )


def validate_schemas(r: Report, name: str, docs) -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    for version in KUBE_VERSIONS:
        errors = []
        checked = 0
        for path, doc in docs:
            if doc.get("apiVersion", "").startswith(CRD_GROUPS):
                continue  # a custom resource: validated by validate_custom_resources
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                checked += 1
            except kubernetes_validate.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                errors.append(f"{path} {kn(doc)}: {where}: {e.message}")
            except SchemaNotFoundError as e:
                errors.append(f"{path} {kn(doc)}: {e.message}")
        r.check(
            not errors,
            f"[{name}] {checked} manifests valid against Kubernetes {version} schemas (strict)",
            "\n     ".join(errors),
        )


def unknown_keys(given, parsed, path="") -> list[str]:
    """Keys in `given` that the model dropped (pydantic ignores unknown fields)."""
    out = []
    if isinstance(given, dict) and isinstance(parsed, dict):
        for k, v in given.items():
            if k not in parsed:
                out.append(f"{path}.{k}".lstrip("."))
            else:
                out += unknown_keys(v, parsed[k], f"{path}.{k}")
    elif isinstance(given, list) and isinstance(parsed, list):
        for i, (g, p) in enumerate(zip(given, parsed)):
            out += unknown_keys(g, p, f"{path}[{i}]")
    return out


def model_problems(doc: dict) -> list[str]:
    """What the generated model of a custom resource finds wrong with it, unknown fields included."""
    from cloudcoil.models.cert_manager.v1 import Certificate, Issuer
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    models = {
        ("monitoring.coreos.com/v1", "ServiceMonitor"): ServiceMonitor,
        ("cert-manager.io/v1", "Certificate"): Certificate,
        ("cert-manager.io/v1", "Issuer"): Issuer,
    }
    model = models.get((doc.get("apiVersion"), doc.get("kind")))
    if model is None:
        return [f"no model of {doc.get('apiVersion')} {doc.get('kind')}"]
    try:
        dumped = model.model_validate(doc).model_dump(by_alias=True, exclude_unset=True, mode="json")
    except Exception as e:  # pydantic.ValidationError
        return [f"does not match the CRD model: {e}"]
    return [f"unknown field {k}" for k in unknown_keys(doc, dumped)]


def validate_service_monitors(r: Report, name: str, docs, values: dict) -> None:
    monitors = [(p, d) for p, d in docs if d.get("kind") == "ServiceMonitor"]
    want = bool(values.get("serviceMonitor", {}).get("enabled"))
    r.check(
        bool(monitors) == want,
        f"[{name}] ServiceMonitors rendered only when serviceMonitor.enabled ({len(monitors)})",
    )
    services = find(docs, "Service")
    secrets = {s["metadata"]["name"]: s for s in find(docs, "Secret")}
    for path, doc in monitors:
        problems = model_problems(doc)
        spec = doc.get("spec", {})
        selector = spec.get("selector", {}).get("matchLabels", {})
        targets = [s for s in services if labels_match(selector, s["metadata"].get("labels", {}))]
        if not targets:
            problems.append(f"selector {selector} matches no rendered Service")
        endpoints = spec.get("endpoints") or []
        if not endpoints:
            problems.append("no endpoints")
        for ep in endpoints:
            if ep.get("path") != "/metrics":
                problems.append(f"endpoint path {ep.get('path')}")
            for svc in targets:
                if ep.get("port") not in [p.get("name") for p in svc["spec"]["ports"]]:
                    problems.append(f"port {ep.get('port')} is not a port name of Service/{svc['metadata']['name']}")
            cred = ep.get("authorization", {}).get("credentials")
            if cred:
                if cred["name"] in secrets:
                    data = secrets[cred["name"]].get("data", {})
                    if cred["key"] not in data:
                        problems.append(f"bearer token key {cred['key']} not in Secret/{cred['name']}")
                elif cred["name"] != values.get("existingSecret"):
                    problems.append(f"bearer token Secret/{cred['name']} is neither rendered nor existingSecret")
        r.check(not problems, f"[{name}] {path} {kn(doc)}: monitoring.coreos.com/v1 model and references", "; ".join(problems))


def check_references(r: Report, name: str, docs, values: dict) -> None:
    """Selectors, named ports, volumes, ConfigMaps, Secrets and ServiceAccounts fit together."""
    problems = []
    existing_secret = values.get("existingSecret") or ""
    configmaps = {d["metadata"]["name"]: d for d in find(docs, "ConfigMap")}
    secrets = {d["metadata"]["name"]: d for d in find(docs, "Secret")}
    accounts = {d["metadata"]["name"] for d in find(docs, "ServiceAccount")}
    pods = pod_templates(docs)
    for workload, tpl in pods:
        w = kn(workload)
        sel = workload["spec"]["selector"]["matchLabels"]
        if not labels_match(sel, tpl["metadata"].get("labels", {})):
            problems.append(f"{w}: selector {sel} does not match its pod labels")
        spec = tpl["spec"]
        sa = spec.get("serviceAccountName")
        if sa and sa not in accounts and sa != "default":
            problems.append(f"{w}: ServiceAccount {sa} not rendered")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        for v in volumes.values():
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                problems.append(f"{w}: volume {v['name']}: ConfigMap {v['configMap']['name']} not rendered")
        dup = set(volumes) & claims
        if dup:
            problems.append(f"{w}: {dup} both a volume and a volumeClaimTemplate")
        for c in spec["containers"]:
            ports = {p["name"] for p in c.get("ports", [])}
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes and m["name"] not in claims:
                    problems.append(f"{w}: mount {m['name']} has no volume")
            for probe in ("livenessProbe", "readinessProbe"):
                p = c.get(probe)
                if not p:
                    problems.append(f"{w}: no {probe}")
                    continue
                port = (p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    problems.append(f"{w}: {probe} port {port} is not a container port")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    continue
                if ref["name"] in secrets:
                    if ref["key"] not in secrets[ref["name"]].get("data", {}):
                        problems.append(f"{w}: env {e['name']}: key {ref['key']} not in Secret/{ref['name']}")
                elif ref["name"] != existing_secret:
                    problems.append(f"{w}: env {e['name']}: Secret/{ref['name']} neither rendered nor existingSecret")
            sc = c.get("securityContext", {})
            psc = spec.get("securityContext", {})
            if not (sc.get("runAsNonRoot") and sc.get("runAsUser") == 10001 and psc.get("runAsUser") == 10001):
                problems.append(f"{w}: container {c['name']} does not run as non-root uid 10001")
            if not sc.get("readOnlyRootFilesystem"):
                problems.append(f"{w}: container {c['name']} has a writable root filesystem")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{w}: container {c['name']} allows privilege escalation")
    for svc in find(docs, "Service"):
        sel = svc["spec"].get("selector", {})
        matched = [(w, t) for w, t in pods if labels_match(sel, t["metadata"].get("labels", {}))]
        if len(matched) != 1:
            problems.append(f"{kn(svc)}: selector matches {len(matched)} workloads")
            continue
        names = {p["name"] for c in matched[0][1]["spec"]["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in names:
                problems.append(f"{kn(svc)}: targetPort {p['targetPort']} is not a container port")
    for pdb in find(docs, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        if sum(labels_match(sel, t["metadata"].get("labels", {})) for _, t in pods) != 1:
            problems.append(f"{kn(pdb)}: selector does not match exactly one workload")
    services = {s["metadata"]["name"]: s for s in find(docs, "Service")}
    for ing in find(docs, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                b = p["backend"]["service"]
                svc = services.get(b["name"])
                if not svc:
                    problems.append(f"{kn(ing)}: backend Service/{b['name']} not rendered")
                elif b["port"].get("name") not in {x["name"] for x in svc["spec"]["ports"]}:
                    problems.append(f"{kn(ing)}: backend port {b['port']} not on Service/{b['name']}")
    for sts in find(docs, "StatefulSet"):
        headless = services.get(sts["spec"]["serviceName"])
        if not headless or headless["spec"].get("clusterIP") != "None":
            problems.append(f"{kn(sts)}: serviceName {sts['spec']['serviceName']} is not a rendered headless Service")
    r.check(not problems, f"[{name}] references: selectors, named ports, volumes, ConfigMaps, Secrets, security context", "\n     ".join(problems))


def cert_secrets(merged: dict) -> dict[str, str]:
    """The certificate Secrets the chart's pods mount, by name: the identity each one's common
    name must be (cluster TLS), or "rest" (the REST certificate)."""
    out = {}
    if not merged["tls"]["insecure"]:
        out[f"{RELEASE}-jobmanager-tls"] = f"jobmanager/{RELEASE}-jobmanager"
        for i in range(int(merged["taskmanager"]["replicas"])):
            out[f"{RELEASE}-taskmanager-{i}-tls"] = f"taskmanager/{RELEASE}-taskmanager-{i}"
    if merged["rest"]["tls"]["enabled"]:
        out[merged["rest"]["tls"]["secretName"] or f"{RELEASE}-jobmanager-rest-tls"] = "rest"
    return out


def secret_volumes(spec: dict) -> list[tuple[str, dict]]:
    """(volume name, secret source) of a pod's Secret volumes, projected ones included."""
    out = []
    for v in spec.get("volumes", []):
        if "secret" in v:
            out.append((v["name"], {"name": v["secret"]["secretName"], "items": v["secret"].get("items", [])}))
        for src in v.get("projected", {}).get("sources", []):
            if "secret" in src:
                out.append((v["name"], src["secret"]))
    return out


def check_tls(r: Report, name: str, docs, values: dict, rendered: dict[str, str]) -> None:
    """Auth token, cluster and REST TLS, cert-manager, Services and NetworkPolicies as the values ask."""
    merged = deep_merge(render_defaults(), values)
    jm, tm = container(docs, "Deployment"), container(docs, "StatefulSet")
    insecure = merged["tls"]["insecure"]
    rest_tls = merged["rest"]["tls"]["enabled"]
    conf = kappa_toml(docs)
    problems = []

    def expect(cond, msg):
        if not cond:
            problems.append(msg)

    # The auth token: a file from the Secret, never an environment variable.
    secret_name = merged["existingSecret"] or RELEASE
    expect(f"--auth-token-file={SECRETS_DIR}/auth/token" in jm["args"], "--auth-token-file from the mounted Secret")
    expect(env_value(jm, "KAPPA_AUTH_TOKEN") is None, "no KAPPA_AUTH_TOKEN in the environment")
    jm_spec = find(docs, "Deployment")[0]["spec"]["template"]["spec"]
    auth_vol = dict(secret_volumes(jm_spec)).get("auth-token")
    expect(auth_vol is not None and auth_vol["name"] == secret_name
           and auth_vol["items"] == [{"key": merged["secretKeys"]["authToken"], "path": "token"}],
           f"auth-token volume from Secret/{secret_name}: {auth_vol}")
    if not merged["existingSecret"]:
        data = find(docs, "Secret", RELEASE)[0]["data"] if find(docs, "Secret", RELEASE) else {}
        token = base64.b64decode(data.get(merged["secretKeys"]["authToken"], "")).decode()
        want = merged["auth"]["token"]
        expect(token == want if want else re.fullmatch(r"[A-Za-z0-9]{48}", token) is not None,
               f"the Secret's token: {'auth.token' if want else 'generated, 48 letters and digits'} ({len(token)} characters)")
    # Cluster TLS: each process's certificate from its Secret, or plaintext only when asked.
    tls_args = {a.split("=")[0]: a.split("=", 1)[1] for a in jm["args"] + tm["args"] if a.startswith("--cluster-")}
    scheme = "http" if insecure else "https"
    expect(conf["taskmanager"].get("jobmanager") == f"{scheme}://{RELEASE}-jobmanager-rpc:6123",
           f"taskmanagers register at the rpc Service: {conf['taskmanager'].get('jobmanager')}")
    if insecure:
        expect(conf["jobmanager"].get("insecure") is True and conf["taskmanager"].get("insecure") is True, "insecure = true in both tables")
        expect(not tls_args, f"no --cluster-* flags with tls.insecure: {tls_args}")
        expect(not any(a.startswith("--jobmanager-tls-name") for a in tm["args"]), "no --jobmanager-tls-name with tls.insecure")
        expect("WARNING: tls.insecure=true" in notes(rendered), "NOTES warn of plaintext gRPC")
    else:
        expect("insecure" not in conf["jobmanager"] and "insecure" not in conf["taskmanager"], "no insecure in kappa.toml")
        cluster = f"{SECRETS_DIR}/cluster"
        for c, d in ((jm, cluster), (tm, f"{cluster}/$(POD_NAME)")):
            want = [f"--cluster-cert={d}/tls.crt", f"--cluster-key={d}/tls.key", f"--cluster-ca={d}/ca.crt"]
            expect(all(a in c["args"] for a in want), f"{c['name']}: {want}")
        # In HA a standby names the leader by pod IP: jobmanager certificates are checked for
        # the gRPC Service's name, which the jobmanager's certificate carries.
        rpc_service = f"{RELEASE}-jobmanager-rpc"
        expect(f"--jobmanager-tls-name={rpc_service}" in tm["args"], f"taskmanager: --jobmanager-tls-name={rpc_service}")
        jm_certs = [c for c in find(docs, "Certificate") if c["spec"]["commonName"].startswith("jobmanager/")]
        expect(all(rpc_service in c["spec"]["dnsNames"] for c in jm_certs), f"jobmanager Certificates name {rpc_service}")
        tm_spec = find(docs, "StatefulSet")[0]["spec"]["template"]["spec"]
        sources = [src for vol, src in secret_volumes(tm_spec) if vol == "cluster-tls"]
        replicas = int(merged["taskmanager"]["replicas"])
        expect([src["name"] for src in sources] == [f"{RELEASE}-taskmanager-{i}-tls" for i in range(replicas)],
               f"taskmanager cluster-tls: a Secret per ordinal ({[src['name'] for src in sources]})")
        expect(all({i["path"] for i in src["items"]} == {f"{RELEASE}-taskmanager-{n}/{k}" for k in ("tls.crt", "tls.key", "ca.crt")}
                   for n, src in enumerate(sources)), "taskmanager cluster-tls: each Secret under its pod's name")
    # REST over HTTPS: the flags, the probes and the ServiceMonitor follow.
    probe_schemes = {jm[p]["httpGet"].get("scheme") for p in ("livenessProbe", "readinessProbe")}
    expect(probe_schemes == {"HTTPS" if rest_tls else "HTTP"}, f"probe scheme {probe_schemes}")
    expect((f"--tls-cert={SECRETS_DIR}/rest/tls.crt" in jm["args"]) == rest_tls, "--tls-cert only with rest.tls.enabled")
    for sm in find(docs, "ServiceMonitor"):
        component = sm["metadata"]["labels"]["app.kubernetes.io/component"]
        ep = sm["spec"]["endpoints"][0]
        https = rest_tls if component == "jobmanager" else not insecure
        expect(ep.get("scheme", "http") == ("https" if https else "http"), f"{kn(sm)}: scheme {ep.get('scheme')}")
        ca = ep.get("tlsConfig", {}).get("ca", {}).get("secret", {})
        expect(not https or ca.get("name") in cert_secrets(merged) and ca.get("key") == "ca.crt", f"{kn(sm)}: CA {ca}")
    # Certificate Secrets: what the pods mount is what cert-manager issues (or you create).
    expected = cert_secrets(merged)
    mounted = {src["name"] for _, t in pod_templates(docs) for _, src in secret_volumes(t["spec"])} - {secret_name}
    expect(mounted == set(expected), f"certificate Secrets mounted {sorted(mounted)}, expected {sorted(expected)}")
    certs = {c["spec"]["secretName"]: c for c in find(docs, "Certificate")}
    if merged["tls"]["certManager"]["enabled"]:
        for secret, identity in expected.items():
            if secret == merged["rest"]["tls"]["secretName"]:
                expect(secret not in certs, f"no Certificate for your Secret {secret}")
                continue
            cert = certs.get(secret, {}).get("spec", {})
            want_cn = f"{RELEASE}-jobmanager-rest" if identity == "rest" else identity
            expect(cert.get("commonName") == want_cn, f"Certificate of {secret}: common name {cert.get('commonName')}, expected {want_cn}")
            if identity.startswith("taskmanager/"):
                pod = identity.split("/", 1)[1]
                expect(f"{pod}.{RELEASE}-taskmanager.{NAMESPACE}.svc.cluster.local" in cert.get("dnsNames", []), f"{secret}: the pod's DNS name")
        own_ca = not merged["tls"]["certManager"]["issuerRef"]
        issuers = {i["metadata"]["name"] for i in find(docs, "Issuer")}
        expect(issuers == ({f"{RELEASE}-selfsigned", f"{RELEASE}-ca"} if own_ca else set()), f"Issuers {sorted(issuers)}")
        refs = {c["spec"]["issuerRef"]["name"] for c in certs.values()}
        expect(refs <= issuers | {f"{RELEASE}-selfsigned", merged["tls"]["certManager"]["issuerRef"].get("name")}, f"issuerRefs {refs}")
    else:
        expect(not certs and not find(docs, "Issuer"), "no cert-manager resources without tls.certManager.enabled")
        for secret in (s for s, i in expected.items() if i != "rest"):
            expect(secret in notes(rendered), f"NOTES name the Secret {secret} to create")
    # REST and gRPC in separate Services; the Ingress at the REST one.
    ports = {s["metadata"]["name"]: [p["name"] for p in s["spec"]["ports"]] for s in find(docs, "Service")}
    expect(ports.get(f"{RELEASE}-jobmanager-rest") == ["rest"] and ports.get(f"{RELEASE}-jobmanager-rpc") == ["rpc"],
           f"jobmanager Services {ports}")
    for ing in find(docs, "Ingress"):
        backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
        expect(backend == f"{RELEASE}-jobmanager-rest", f"Ingress backend {backend}")
    # NetworkPolicies: gRPC ports only from the release's pods (and metricsFrom to taskmanagers).
    policies = {p["metadata"]["name"]: p["spec"] for p in find(docs, "NetworkPolicy")}
    if merged["networkPolicy"]["enabled"]:
        selector = {c: {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "kappa", "app.kubernetes.io/instance": RELEASE,
                                                        "app.kubernetes.io/component": c}}} for c in ("jobmanager", "taskmanager")}
        rules = {(pol, rule["ports"][0]["port"]): rule.get("from") for pol, spec in policies.items() for rule in spec["ingress"]}
        metrics = merged["networkPolicy"]["metricsFrom"]
        rest_from = merged["networkPolicy"]["restFrom"]
        expect(rules.get((f"{RELEASE}-jobmanager", "rpc")) == [selector["taskmanager"], selector["jobmanager"]], "jobmanager rpc only from the release's pods")
        expect(rules.get((f"{RELEASE}-taskmanager", "tm")) == [selector["jobmanager"], selector["taskmanager"], *metrics], "taskmanager port from the release's pods and metricsFrom")
        expect(rules.get((f"{RELEASE}-jobmanager", "rest")) == ([*rest_from, *metrics] if rest_from else None), "jobmanager rest from restFrom and metricsFrom")
        expect(len(rules) == 3, f"three ingress rules: {sorted(rules)}")
    else:
        expect(not policies, "no NetworkPolicy when disabled")
    r.check(not problems, f"[{name}] auth token, TLS, Services and NetworkPolicies as the values ask", "; ".join(problems))


def validate_certificates(r: Report, name: str, docs) -> None:
    for path, doc in docs:
        if doc.get("apiVersion", "").startswith("cert-manager.io/"):
            problems = model_problems(doc)
            r.check(not problems, f"[{name}] {path} {kn(doc)}: cert-manager.io/v1 model", "; ".join(problems))


def kappa_toml(docs) -> dict:
    import tomllib

    cm = find(docs, "ConfigMap")[0]
    return tomllib.loads(cm["data"]["kappa.toml"])


def container(docs, kind: str) -> dict:
    return [d for _, d in docs if d.get("kind") == kind][0]["spec"]["template"]["spec"]["containers"][0]


def check_expectations(r: Report, name: str, docs, values: dict, rendered: dict[str, str]) -> None:
    """What these values must produce."""
    jm_dep = find(docs, "Deployment")[0]
    tm_sts = find(docs, "StatefulSet")[0]
    jm, tm = container(docs, "Deployment"), container(docs, "StatefulSet")
    conf = kappa_toml(docs)
    merged = deep_merge(render_defaults(), values)
    problems = []

    def expect(cond, msg):
        if not cond:
            problems.append(msg)

    expect(set(conf) == {"jobmanager", "taskmanager"}, f"kappa.toml tables {sorted(conf)}")
    expect(conf["taskmanager"].get("slots") == merged["taskmanager"]["slots"], "kappa.toml [taskmanager] slots")
    expect(conf["jobmanager"].get("checkpoint_dir") == (merged["checkpoints"]["dir"] or None), "kappa.toml checkpoint_dir")
    expect(jm["args"][0] == "jobmanager" and tm["args"][0] == "taskmanager", "container args start with the command")
    expect("--config=/etc/kappa/kappa.toml" in jm["args"] and "--config=/etc/kappa/kappa.toml" in tm["args"], "--config")
    expect("--address=0.0.0.0" in jm["args"] and "--rpc-address=0.0.0.0" in jm["args"], "jobmanager listens on 0.0.0.0")
    expect("--bind=0.0.0.0" in tm["args"], "taskmanager --bind=0.0.0.0")
    expect(jm["livenessProbe"].get("httpGet", {}).get("path") == "/", "jobmanager liveness: GET /")
    expect(jm["readinessProbe"].get("httpGet", {}).get("path") == "/readyz", "jobmanager readiness: GET /readyz (503 on a standby)")
    expect({p["containerPort"] for p in jm["ports"]} == {8081, 6123}, "jobmanager ports 8081, 6123")
    adv = [a for a in tm["args"] if a.startswith("--advertised-host=")]
    if merged["taskmanager"]["advertisedAddress"] == "dns":
        expect(
            adv == [f"--advertised-host=$(POD_NAME).{RELEASE}-taskmanager.$(POD_NAMESPACE).svc.cluster.local"],
            f"advertised host by DNS: {adv}",
        )
    else:
        expect(adv == ["--advertised-host=$(POD_IP)"], f"advertised host by pod IP: {adv}")
    expect(env_value(tm, "POD_IP") is not None and env_value(tm, "POD_NAME") is not None, "POD_IP/POD_NAME env")
    expect(jm_dep["spec"]["replicas"] == merged["jobmanager"]["replicas"], "jobmanager replicas")
    expect(tm_sts["spec"]["replicas"] == merged["taskmanager"]["replicas"], "taskmanager replicas")
    ha = merged["ha"]["enabled"]
    ha_args = [a for a in jm["args"] if a.split("=")[0] in PENDING_FLAGS]
    if ha:
        expect("--ha=etcd" in jm["args"], "--ha=etcd")
        expect(
            f"--etcd-endpoints={','.join(merged['ha']['etcd']['endpoints'])}" in jm["args"],
            "--etcd-endpoints=URL,URL",
        )
        expect(f"--etcd-prefix=/kappa/{NAMESPACE}/{RELEASE}" in jm["args"], "--etcd-prefix default")
        expect("--advertised-address=$(POD_IP)" in jm["args"], "--advertised-address=$(POD_IP)")
        expect(jm_dep["spec"]["strategy"]["type"] == "RollingUpdate", "HA: RollingUpdate")
    else:
        expect(not ha_args, f"no HA flags without HA: {ha_args}")
        expect(jm_dep["spec"]["strategy"]["type"] == "Recreate", "no HA: Recreate (never two jobmanagers)")
    secrets = find(docs, "Secret")
    existing = merged["existingSecret"]
    auth = merged["auth"]["enabled"]
    s3_keys = bool(merged["s3"]["accessKeyId"])
    if existing:
        expect(not secrets, "existingSecret: no Secret rendered")
    else:
        expect(bool(secrets) == (auth or s3_keys), f"a Secret only when it has content ({len(secrets)})")
    secret_name = existing or RELEASE
    expect(env_value(tm, "KAPPA_AUTH_TOKEN") is None and not any("auth-token" in a for a in tm["args"]), "taskmanagers do not get the token")
    for c in (jm, tm):
        key = env_value(c, "AWS_ACCESS_KEY_ID")
        if existing or s3_keys:
            expect(key is not None and key["valueFrom"]["secretKeyRef"]["name"] == secret_name, "AWS keys from the Secret")
            expect(key is not None and key["valueFrom"]["secretKeyRef"].get("optional", False) == bool(existing), "AWS keys optional only in existingSecret")
        else:
            expect(key is None, "no AWS keys without credentials")
        if merged["s3"]["endpoint"]:
            expect((env_value(c, "AWS_ENDPOINT_URL") or {}).get("value") == merged["s3"]["endpoint"], "AWS_ENDPOINT_URL")
        expect((env_value(c, "AWS_ALLOW_HTTP") or {}).get("value") == str(merged["s3"]["allowHttp"]).lower(), "AWS_ALLOW_HTTP")
    ings = find(docs, "Ingress")
    expect(bool(ings) == merged["ingress"]["enabled"], "Ingress only when enabled")
    persistent = merged["taskmanager"]["persistence"]["enabled"]
    vcts = tm_sts["spec"].get("volumeClaimTemplates", [])
    state = [v for v in tm_sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "state"]
    if persistent:
        expect(len(vcts) == 1 and vcts[0]["spec"]["resources"]["requests"]["storage"] == merged["taskmanager"]["persistence"]["size"], "state PVC")
        expect(not state, "no emptyDir state with persistence")
    else:
        expect(not vcts and len(state) == 1 and "emptyDir" in state[0], "state emptyDir")
    expect("--state-dir=/var/lib/kappa/state" in tm["args"], "--state-dir on the state volume")
    pdbs = find(docs, "PodDisruptionBudget")
    expect(len(pdbs) == 2, f"two PodDisruptionBudgets ({len(pdbs)})")
    text = notes(rendered)
    expect("port-forward service/kappa-jobmanager-rest 8081:8081" in text and "kappactl" in text, "NOTES: port-forward and kappactl")
    if auth:
        expect(f"get secret {secret_name}" in text, "NOTES: how to read the token")
    r.check(not problems, f"[{name}] rendered as the values ask", "; ".join(problems))


_DEFAULTS: dict | None = None


def render_defaults() -> dict:
    global _DEFAULTS
    if _DEFAULTS is None:
        import helm_python as helm

        with helm.Chart.load(str(CHART)) as chart:
            _DEFAULTS = chart.values
    return _DEFAULTS


def check_bad_values(r: Report) -> None:
    import helm_python as helm

    for what, values, message in BAD_VALUES:
        try:
            render(values)
        except helm.HelmError as e:
            text = str(e)
            r.check(message in text, f"bad values fail rendering: {what}", f"expected {message!r}, got: {text}")
            continue
        r.fail(f"bad values fail rendering: {what}", "rendering succeeded")


# ---------------------------------------------------------------- checks with the kappa binary


def check_flags(r: Report, kappa: Path, name: str, docs) -> None:
    """kappa.toml keys and container flags exist in `kappa <command> --help`; values parse."""
    conf = kappa_toml(docs)
    for kind, command in (("Deployment", "jobmanager"), ("StatefulSet", "taskmanager")):
        helptext = subprocess.run([str(kappa), command, "--help"], capture_output=True, text=True, check=True).stdout
        known = flags_of(helptext)
        args = container(docs, kind)["args"][1:]
        used = {a.split("=")[0] for a in args if a.startswith("--")}
        used |= {"--" + k.replace("_", "-") for k in conf[command]}
        missing = used - known
        pending = missing & PENDING_FLAGS
        if pending:
            r.warn(f"[{name}] `kappa {command} --help` of {kappa} has no {', '.join(sorted(pending))} yet (HA flags assumed)")
        r.check(
            not (missing - PENDING_FLAGS),
            f"[{name}] kappa {command}: every kappa.toml key and flag is known to the binary",
            f"unknown: {sorted(missing - PENDING_FLAGS)}",
        )
        # Values parse: clap checks each value as it reads it, and --help then stops.
        with tempfile.TemporaryDirectory() as tmp:
            toml_path = Path(tmp) / "kappa.toml"
            toml_path.write_text(find(docs, "ConfigMap")[0]["data"]["kappa.toml"])
            run_args = [a.replace("/etc/kappa/kappa.toml", str(toml_path)) for a in args if a.split("=")[0] not in pending]
            run_args = [re.sub(r"\$\((POD_\w+)\)", "x", a) for a in run_args]
            out = subprocess.run([str(kappa), command, *run_args, "--help"], capture_output=True, text=True, env=clean_env())
            r.check(
                out.returncode == 0 and "Usage:" in out.stdout,
                f"[{name}] kappa {command}: the rendered kappa.toml and arguments parse",
                (out.stderr or out.stdout).strip()[:500],
            )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("KAPPA_", "AWS_"))}


def container_env(c: dict, docs, overrides: dict[str, str]) -> dict[str, str]:
    """The container's environment as Kubernetes would set it (Secret keys from the rendered Secret)."""
    env = clean_env()
    secrets = {s["metadata"]["name"]: s for s in find(docs, "Secret")}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            data = secrets.get(ref["name"], {}).get("data", {})
            if ref["key"] in data:
                env[e["name"]] = base64.b64decode(data[ref["key"]]).decode()
    env.update(overrides)
    return env


def http_get(url: str, token: str | None = None, ca: Path | None = None) -> tuple[int, bytes]:
    """Status and body of a GET; https is checked against `ca`."""
    import ssl

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        with urllib.request.urlopen(req, timeout=3, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def secret_files(docs, certs: Path) -> dict[str, dict[str, bytes]]:
    """The data of every Secret the pods may mount: the rendered ones, and the certificate Secrets
    the chart expects (cert-manager's or yours) made from `kappa certs init` in `certs`, if any."""
    out = {s["metadata"]["name"]: {k: base64.b64decode(v) for k, v in s.get("data", {}).items()} for s in find(docs, "Secret")}
    if not (certs / "ca.pem").exists():
        return out
    ca = (certs / "ca.pem").read_bytes()
    for pem in certs.glob("*-key.pem"):
        if pem.name == "ca-key.pem":
            continue
        process = pem.name.removesuffix("-key.pem")  # <role>-<name>
        role, proc = process.split("-", 1)
        tls = {"tls.crt": (certs / f"{process}.pem").read_bytes(), "tls.key": pem.read_bytes(), "ca.crt": ca}
        out[f"{proc}-tls"] = tls
        if role == "jobmanager":  # it names localhost and 127.0.0.1: it serves REST as well
            out[f"{proc}-rest-tls"] = out["kappa-web-tls"] = tls
    return out


def cluster_secrets(kappa: Path, docs, tmp: Path) -> dict[str, dict[str, bytes]]:
    """The Secrets the rendered pods mount, with certificates from `kappa certs init` in tmp/certs
    for the jobmanager (one the jobmanagers share, naming the gRPC Service as the chart's does:
    taskmanagers check it for that name, not for the pod IP a standby names) and each
    taskmanager ordinal."""
    certs = tmp / "certs"
    ordinals = range(find(docs, "StatefulSet")[0]["spec"]["replicas"])
    subprocess.run([str(kappa), "certs", "init", "--dir", str(certs), "--jobmanager", f"{RELEASE}-jobmanager",
                    f"--host={RELEASE}-jobmanager-rpc", *(f"--taskmanager={RELEASE}-taskmanager-{i}" for i in ordinals)],
                   check=True, capture_output=True, env=clean_env())
    return secret_files(docs, certs)


def pod_files(docs, kind: str, pod: str, tmp: Path, secrets: dict[str, dict[str, bytes]]) -> dict[str, str]:
    """Writes the files of the pod's ConfigMap and Secret volumes under tmp; returns its mount
    paths and where their files are here."""
    spec = find(docs, kind)[0]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    configmaps = {c["metadata"]["name"]: c["data"] for c in find(docs, "ConfigMap")}
    mounts = {}
    for m in spec["containers"][0]["volumeMounts"]:
        v = volumes.get(m["name"], {})
        files: dict[str, bytes] = {}
        if "configMap" in v:
            files = {k: t.encode() for k, t in configmaps[v["configMap"]["name"]].items()}
        for _, src in secret_volumes({"volumes": [v]}):
            data = secrets[src["name"]]
            files |= {i["path"]: data[i["key"]] for i in src["items"]} if src["items"] else data
        if not files:
            continue
        here = tmp / pod / m["name"]
        for rel, content in files.items():
            (here / rel).parent.mkdir(parents=True, exist_ok=True)
            (here / rel).write_bytes(content)
        mounts[m["mountPath"]] = str(here)
    return mounts


def pod_args(c: dict, mounts: dict[str, str], pod: dict[str, str], replace: dict[str, str]) -> list[str]:
    """The container's arguments here: $(VAR)s of the pod, mount paths moved, some flags replaced."""
    out = []
    for a in c["args"]:
        a = re.sub(r"\$\((\w+)\)", lambda m: pod.get(m.group(1), m.group(0)), a)
        for path, here in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            a = a.replace(f"={path}/", f"={here}/")
        flag = a.split("=")[0]
        out.append(f"{flag}={replace[flag]}" if flag in replace else a)
    return out


def live_smoke(r: Report, kappa: Path, name: str, docs) -> None:
    """Runs the jobmanager and a taskmanager as the rendered pods would, with their mounted token
    and certificates, on this machine (the REST API on 0.0.0.0 as in the pod: it must have its token)."""
    jm, tm = container(docs, "Deployment"), container(docs, "StatefulSet")
    conf = kappa_toml(docs)
    tmp = Path(tempfile.mkdtemp(prefix="check-helm-"))
    procs: list[subprocess.Popen] = []
    try:
        secrets = cluster_secrets(kappa, docs, tmp)
        rest, rpc, tm_port = free_ports(3)
        jm_pod = {"POD_IP": "127.0.0.1", "POD_NAME": f"{RELEASE}-jobmanager-0", "POD_NAMESPACE": NAMESPACE}
        jm_mounts = pod_files(docs, "Deployment", jm_pod["POD_NAME"], tmp, secrets)
        # Only what cannot work on this machine is replaced: ports, host names, the state dir.
        jm_args = pod_args(jm, jm_mounts, jm_pod, {"--port": str(rest), "--rpc-port": str(rpc)})
        token_file = next((a.split("=", 1)[1] for a in jm_args if a.startswith("--auth-token-file=")), None)
        token = Path(token_file).read_text().strip() if token_file else None
        rest_tls = any(a.startswith("--tls-cert=") for a in jm_args)
        ca = tmp / "certs" / "ca.pem"
        jm_log = open(tmp / "jobmanager.log", "wb")
        procs.append(subprocess.Popen([str(kappa), *jm_args], env=container_env(jm, docs, {"TMPDIR": str(tmp), "KAPPA_LOG": "warn"}),
                                      stdout=jm_log, stderr=subprocess.STDOUT, cwd=tmp))
        base = f"{'https' if rest_tls else 'http'}://127.0.0.1:{rest}"
        rest_ca = ca if rest_tls else None
        status = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and procs[0].poll() is None:
            try:
                status, _ = http_get(base + "/", ca=rest_ca)
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        if not r.check(status == 200, f"[{name}] live: jobmanager from the rendered pod spec answers the probe GET {base}/ with 200",
                       (tmp / "jobmanager.log").read_text()[-800:]):
            return
        s_no, _ = http_get(base + "/api/v1/overview", ca=rest_ca)
        s_yes, _ = http_get(base + "/api/v1/overview", token, rest_ca)
        r.check(token is not None and s_no == 401 and s_yes == 200,
                f"[{name}] live: with the mounted token file /api/v1/overview is 401 without the token and 200 with it (so the probe uses /)",
                f"{s_no}, {s_yes}")
        s_m, _ = http_get(base + "/metrics", token, rest_ca)
        r.check(s_m == 200, f"[{name}] live: /metrics with the bearer token (as the ServiceMonitor scrapes it): {s_m}")
        tm_pod = {"POD_IP": "127.0.0.1", "POD_NAME": f"{RELEASE}-taskmanager-0", "POD_NAMESPACE": NAMESPACE}
        tm_mounts = pod_files(docs, "StatefulSet", tm_pod["POD_NAME"], tmp, secrets)
        scheme = conf["taskmanager"]["jobmanager"].split("://")[0]
        tm_args = pod_args(tm, tm_mounts, tm_pod, {"--bind": "127.0.0.1", "--port": str(tm_port), "--state-dir": str(tmp / "state"),
                                                   "--advertised-host": "127.0.0.1"})
        # The file's jobmanager URL names the rpc Service; point it at this machine (flags win).
        tm_args.append(f"--jobmanager={scheme}://127.0.0.1:{rpc}")
        tm_log = open(tmp / "taskmanager.log", "wb")
        procs.append(subprocess.Popen([str(kappa), *tm_args], env=container_env(tm, docs, {"TMPDIR": str(tmp), "KAPPA_LOG": "warn"}),
                                      stdout=tm_log, stderr=subprocess.STDOUT, cwd=tmp))
        slots = conf["taskmanager"]["slots"]
        overview: dict = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and procs[1].poll() is None:
            code, body = http_get(base + "/api/v1/overview", token, rest_ca)
            if code == 200:
                overview = json.loads(body)
                if overview.get("taskmanagers") == 1:
                    break
            time.sleep(0.3)
        tls = any(a.startswith("--cluster-cert=") for a in tm_args)
        r.check(
            overview.get("taskmanagers") == 1 and overview.get("slots_total") == slots,
            f"[{name}] live: a taskmanager from the rendered pod spec registers its {slots} slots"
            + (" over mutual TLS with its pod's certificate" if tls else " (plaintext gRPC)"),
            f"overview {overview}; taskmanager log: {(tmp / 'taskmanager.log').read_text()[-800:]}",
        )
        want_dir = conf["jobmanager"].get("checkpoint_dir")
        r.check(overview.get("checkpoint_dir") == want_dir, f"[{name}] live: the jobmanager read kappa.toml (checkpoint_dir {want_dir})",
                f"overview {overview}")
        tm_base = f"{'https' if tls else 'http'}://127.0.0.1:{tm_port}"
        s_tm, _ = http_get(f"{tm_base}/metrics", ca=ca if tls else None)
        r.check(s_tm == 200, f"[{name}] live: taskmanager {tm_base}/metrics without a token or client certificate (ServiceMonitor port tm): {s_tm}")
    finally:
        stop_processes(procs, tmp)


def stop_processes(procs: list, tmp: Path) -> None:
    """Stops the started processes (newest first) and removes their directory."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    shutil.rmtree(tmp, ignore_errors=True)


def http_no_redirect(url: str, token: str | None = None) -> tuple[int, str]:
    """Status and Location header of a GET, without following a redirect."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=3)
    try:
        conn.request("GET", u.path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Location") or ""
    finally:
        conn.close()


def wait_for(cond, seconds: float, procs: list[subprocess.Popen]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            if cond():
                return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


def live_ha(r: Report, kappa: Path) -> None:
    """HA as rendered: etcd on 127.0.0.1, two jobmanagers and a taskmanager from the pod specs.

    One jobmanager leads; the standby redirects REST calls to the leader's advertised address
    (--advertised-address=$(POD_IP)); a taskmanager pointed at the standby finds the leader.
    """
    name = "ha"
    etcd = shutil.which("etcd")
    if not etcd:
        r.warn(f"[{name}] live HA check skipped: no etcd on PATH (apt etcd-server)")
        return
    helptext = subprocess.run([str(kappa), "jobmanager", "--help"], capture_output=True, text=True).stdout
    if not PENDING_FLAGS <= flags_of(helptext):
        r.warn(f"[{name}] live HA check skipped: {kappa} lacks {', '.join(sorted(PENDING_FLAGS - flags_of(helptext)))}")
        return
    tmp = Path(tempfile.mkdtemp(prefix="check-helm-ha-"))
    procs: list[subprocess.Popen] = []
    logs: dict[str, Path] = {}

    def start(label: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        logs[label] = tmp / f"{label}.log"
        p = subprocess.Popen(cmd, env=env, stdout=open(logs[label], "wb"), stderr=subprocess.STDOUT, cwd=tmp)
        procs.append(p)
        return p

    def tail(label: str) -> str:
        return f"{label}: " + logs[label].read_text(errors="replace")[-600:] if label in logs else ""

    try:
        client, peer, *ports = free_ports(2 + 2 * 2 + 1)
        endpoint = f"http://127.0.0.1:{client}"
        start("etcd", [etcd, "--name", "s1", "--data-dir", str(tmp / "etcd"),
                       "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
                       "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                       "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                       "--initial-cluster", f"s1=http://127.0.0.1:{peer}", "--initial-cluster-state", "new"],
              clean_env())
        if not r.check(wait_for(lambda: socket.create_connection(("127.0.0.1", client), 1).close() or True, 20, procs),
                       f"[{name}] live: etcd on 127.0.0.1:{client}", tail("etcd")):
            return
        values = deep_merge(SCENARIOS["ha"], {"ha": {"etcd": {"endpoints": [endpoint]}},
                                              "checkpoints": {"dir": str(tmp / "checkpoints")}})
        docs = documents(render(values))
        jm, tm = container(docs, "Deployment"), container(docs, "StatefulSet")
        secrets = cluster_secrets(kappa, docs, tmp)
        token = base64.b64decode(find(docs, "Secret", RELEASE)[0]["data"]["KAPPA_AUTH_TOKEN"]).decode()

        def args_of(c: dict, kind: str, replace: dict[str, str], pod_name: str) -> list[str]:
            pod = {"POD_IP": "127.0.0.1", "POD_NAMESPACE": NAMESPACE, "POD_NAME": pod_name}
            return pod_args(c, pod_files(docs, kind, pod_name, tmp, secrets), pod, replace)

        jms = []
        for i in range(int(values["jobmanager"]["replicas"])):
            rest, rpc = ports.pop(), ports.pop()
            args = args_of(jm, "Deployment", {"--address": "127.0.0.1", "--rpc-address": "127.0.0.1",
                                              "--port": str(rest), "--rpc-port": str(rpc)}, f"kappa-jobmanager-{i}")
            start(f"jobmanager-{i}", [str(kappa), *args], container_env(jm, docs, {"TMPDIR": str(tmp), "KAPPA_LOG": "warn"}))
            jms.append((rest, rpc))
            if i == 0:
                # Let the first one lead, as a rolling start would.
                wait_for(lambda: http_no_redirect(f"http://127.0.0.1:{rest}/api/v1/overview", token)[0] == 200, 20, procs)

        def roles() -> list[tuple[int, str]]:
            return [http_no_redirect(f"http://127.0.0.1:{rest}/api/v1/overview", token) for rest, _ in jms]

        ok = wait_for(lambda: sorted(s for s, _ in roles()) == [200, 307], 30, procs)
        found = roles() if all(p.poll() is None for p in procs) else []
        if not r.check(ok, f"[{name}] live: of two jobmanagers from the rendered HA spec one leads (200), the other is a standby (307)",
                       f"{found}; " + " | ".join(tail(k) for k in logs if k.startswith("jobmanager"))):
            return
        leader = next(i for i, (s, _) in enumerate(found) if s == 200)
        standby = 1 - leader
        location = found[standby][1]
        r.check(location == f"http://127.0.0.1:{jms[leader][0]}/api/v1/overview",
                f"[{name}] live: the standby redirects to the leader's advertised address (--advertised-address=$(POD_IP))",
                f"Location: {location!r}")
        readyz = [http_no_redirect(f"http://127.0.0.1:{rest}/readyz")[0] for rest, _ in jms]
        r.check(readyz[leader] == 200 and readyz[standby] == 503,
                f"[{name}] live: the readiness probe's /readyz is 200 on the leader, 503 on the standby",
                f"{readyz}")
        tm_args = args_of(tm, "StatefulSet", {"--bind": "127.0.0.1", "--port": str(ports.pop()), "--state-dir": str(tmp / "state"),
                               "--advertised-host": "127.0.0.1"}, "kappa-taskmanager-0")
        tm_args.append(f"--jobmanager=https://127.0.0.1:{jms[standby][1]}")
        start("taskmanager", [str(kappa), *tm_args], container_env(tm, docs, {"TMPDIR": str(tmp), "KAPPA_LOG": "warn"}))
        leader_overview = f"http://127.0.0.1:{jms[leader][0]}/api/v1/overview"
        r.check(
            wait_for(lambda: json.loads(http_get(leader_overview, token)[1]).get("taskmanagers") == 1, 30, procs),
            f"[{name}] live: a taskmanager sent to the standby's gRPC port registers with the leader",
            tail("taskmanager"),
        )
    finally:
        stop_processes(procs, tmp)


# ---------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    global CHART
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kappa", type=Path, default=ROOT / "target" / "debug" / "kappa",
                        help="kappa binary for the flag and live checks (default: target/debug/kappa)")
    parser.add_argument("--no-binary", action="store_true", help="skip the checks that run the kappa binary")
    parser.add_argument("--no-install", action="store_true", help="never create the venv or pip install")
    parser.add_argument("--chart", type=Path, default=CHART, help="chart directory (default: helm/kappa)")
    args = parser.parse_args(argv)
    CHART = args.chart.resolve()

    import helm_python as helm

    r = Report()
    print(f"check_helm: chart {CHART}, Helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), "
          f"schemas of Kubernetes {', '.join(KUBE_VERSIONS)}", flush=True)
    steps = [("chart metadata", lambda: check_chart_metadata(r)), ("values documented", lambda: check_values_documented(r))]
    kappa = args.kappa if not args.no_binary else None
    if kappa is not None and not kappa.exists():
        r.warn(f"{kappa} not found: the flag and live checks are skipped (build it: cargo build -p kappa)")
        kappa = None

    def scenario(name: str, values: dict) -> None:
        lint(r, name, values)
        rendered = render(values)
        docs = documents(rendered)
        kinds = sorted({d["kind"] for _, d in docs})
        print(f"---- [{name}] {len(docs)} manifests: {', '.join(kinds)}", flush=True)
        validate_schemas(r, name, docs)
        validate_service_monitors(r, name, docs, values)
        validate_certificates(r, name, docs)
        check_references(r, name, docs, values)
        check_expectations(r, name, docs, values, rendered)
        check_tls(r, name, docs, values, rendered)
        if kappa:
            check_flags(r, kappa, name, docs)

    for name, values in SCENARIOS.items():
        steps.append((f"scenario {name}", lambda n=name, v=values: scenario(n, v)))
    steps.append(("bad values", lambda: check_bad_values(r)))
    if kappa:
        for live in ("defaults", "chart-secret", "cert-manager", "cert-manager-issuer", "insecure"):
            steps.append(("live", lambda n=live: live_smoke(r, kappa, n, documents(render(SCENARIOS[n])))))
        steps.append(("live HA", lambda: live_ha(r, kappa)))
    for what, step in steps:
        try:
            step()
        except Exception:
            r.fail(f"{what}: raised", traceback.format_exc().strip().replace("\n", "\n     "))

    print()
    if r.warnings:
        print(f"check_helm: {len(r.warnings)} warning(s):")
        for w in r.warnings:
            print(f"  - {w}")
    if r.failed:
        print(f"check_helm: {len(r.failed)} check(s) failed:")
        for f in r.failed:
            print(f"  - {f}")
    print(f"helm: {r.passed} passed, {len(r.failed)} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    ensure_environment(sys.argv[1:])
    sys.exit(main(sys.argv[1:]))
