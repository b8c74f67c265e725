#!/usr/bin/env python3
"""Checks docker-compose.yml, deploy/Dockerfile and the files they use, without a Docker engine.

    python3 scripts/check_deploy.py target/debug/kappa [--kappactl PATH] [--root DIR]

The binary is the `kappa` just built: every KAPPA_* variable the compose file or the Dockerfile
sets must be one that the command the service runs reads (`kappa <command> --help` lists them
as `[env: KAPPA_…]`), and every `--flag` a service passes must be one of its flags. Also
checked: the expected services and published ports, build context and Dockerfile, images
pinned to a version (no `latest`), bind-mounted files, the Dockerfile's stages, non-root USER,
HEALTHCHECK, EXPOSE and ENTRYPOINT, Prometheus' targets, the metric names of the Grafana
dashboard, and the compose job file (`kappactl validate`).

Security (issue 12): every published port bound to 127.0.0.1; no KAPPA_INSECURE or token in the
file; each jobmanager and taskmanager with its own certificate, key and CA from a volume only it
mounts (read-only), which the one-shot service kappa-init fills (deploy/kappa-init.sh) before
them; the jobmanager's token file; Prometheus scraping the jobmanager with the token and the
taskmanagers over HTTPS with the CA.

Live smoke: runs deploy/kappa-init.sh and the binaries with the services' environment (the
Dockerfile's ENV, then the service's), with ports, paths and host names mapped to this machine
(etcd when on PATH; a local checkpoint directory instead of MinIO): the REST token, allowed
hosts, the image's health check, both taskmanagers registering over mutual TLS, and /metrics as
Prometheus reads it. `docker compose config` runs only where the docker CLI has the compose
plugin (it needs no engine); hadolint only where it is installed. Needs Python 3.11 and PyYAML.
Exit status 0 when everything holds, 1 otherwise (each problem on its own line), 2 on usage
errors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

# The live smoke's process helpers are those of the chart's live check (stdlib only).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_helm import free_ports, stop_processes, wait_for  # noqa: E402

try:
    import yaml
except ImportError:  # pragma: no cover - reported to the user
    print("check_deploy: needs PyYAML (python3 -m pip install pyyaml)", file=sys.stderr)
    sys.exit(2)

COMPOSE = "docker-compose.yml"
DOCKERFILE = "deploy/Dockerfile"
PROMETHEUS = "deploy/prometheus.yml"
DASHBOARDS = "deploy/grafana/dashboards"
PROVISIONING = "deploy/grafana/provisioning"
EXAMPLE_JOB = "examples/hourly-item-clicks.toml"
COMPOSE_JOB = "deploy/jobs/hourly-item-clicks.toml"

EXPECTED_SERVICES = [
    "kafka", "kafka-init", "etcd", "minio", "minio-init", "kappa-init", "jobmanager",
    "taskmanager-1", "taskmanager-2", "click-generator", "prometheus", "grafana",
]
# service -> container ports that must be published on the host
EXPECTED_PUBLISHED = {"jobmanager": {8081}, "prometheus": {9090}, "grafana": {3000}}
# Kappa commands a service may run, and the ports their metrics are scraped on
KAPPA_COMMANDS = {"jobmanager", "taskmanager", "local", "demo", "bench"}
METRICS_PORT = {"jobmanager": 8081, "local": 8081, "taskmanager": 6121}
# What the jobmanager's HA needs in compose (issue 6: `kappa jobmanager --ha etcd`)
JOBMANAGER_REQUIRED_ENV = {
    "KAPPA_CHECKPOINT_DIR": r"^s3://",
    "KAPPA_HA": r"^etcd$",
    "KAPPA_ETCD_ENDPOINTS": r"^http://etcd:2379",
}
S3_ENV = ["AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
          "AWS_REGION"]
DOCKERFILE_EXPOSE = {8081, 6123, 6121}
# The one-shot service that makes the CA, the certificates and the token, and its script: it
# mounts the volume of process <name> at /secrets/<name>, the process mounts it at SECRETS.
INIT_SERVICE = "kappa-init"
INIT_SCRIPT = "deploy/kappa-init.sh"
INIT_OUT = "/secrets/"
INIT_CA = "/kappa-ca"
SECRETS = "/kappa-secrets"
# The files kappa-init.sh writes into a process's volume (token: jobmanagers and Prometheus)
SECRET_FILES = {"KAPPA_CLUSTER_CERT": "cert.pem", "KAPPA_CLUSTER_KEY": "key.pem",
                "KAPPA_CLUSTER_CA": "ca.pem", "KAPPA_AUTH_TOKEN_FILE": "token"}
LOOPBACK_ADDRESSES = {"127.0.0.1", "localhost", "::1"}
# Tags that follow new releases (a Debian codename such as bookworm is a release: allowed)
MOVING_TAGS = {"latest", "stable", "edge", "lts", "current", "main", "master", "nightly",
               "rolling", "testing", "unstable", "sid", "mainline"}

ENV_IN_HELP = re.compile(r"\[env: (KAPPA_[A-Z0-9_]+)[=\]]")
FLAG_IN_HELP = re.compile(r"^\s+(?:-[a-zA-Z], )?(--[a-z0-9][a-z0-9-]*)", re.MULTILINE)


class Checker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[str] = []
        self.passed = 0
        self.compose_doc: dict = {}

    def ok(self, cond: bool, problem: str) -> bool:
        if cond:
            self.passed += 1
        else:
            self.problems.append(problem)
        return cond

    def skip(self, what: str) -> None:
        print(f"check_deploy: skipped: {what}")


# ---------------------------------------------------------------- the binaries' --help

def run_help(binary: Path, args: list[str]) -> str:
    out = subprocess.run([str(binary), *args, "--help"], capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"`{binary} {' '.join(args)} --help` exited {out.returncode}: "
                           f"{out.stderr.strip()}")
    return out.stdout


def subcommands(top_help: str) -> list[str]:
    cmds, inside = [], False
    for line in top_help.splitlines():
        if line.strip() == "Commands:":
            inside = True
            continue
        if inside:
            m = re.match(r"^\s{2}([a-z][a-z0-9-]*)\s", line)
            if m:
                if m.group(1) != "help":
                    cmds.append(m.group(1))
            elif line.strip() == "" or not line.startswith(" "):
                inside = False
    return cmds


class Cli:
    """KAPPA_* variables and flags of each `kappa` command and of `kappactl`."""

    def __init__(self, kappa: Path, kappactl: Path | None) -> None:
        self.env: dict[str, set[str]] = {}
        self.flags: dict[str, set[str]] = {}
        top = run_help(kappa, [])
        for cmd in subcommands(top):
            text = run_help(kappa, [cmd])
            self.env[cmd] = set(ENV_IN_HELP.findall(text))
            self.flags[cmd] = set(FLAG_IN_HELP.findall(text))
        if not self.env:
            raise RuntimeError(f"`{kappa} --help` lists no commands")
        if kappactl is not None:
            self.env["kappactl"] = set(ENV_IN_HELP.findall(run_help(kappactl, [])))

    def all_env(self) -> set[str]:
        return set().union(*self.env.values())


# ---------------------------------------------------------------- compose helpers

def env_map(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = str(item).partition("=")
            out[k] = v
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def published_bindings(service: dict) -> list[tuple[str | None, int, str]]:
    """(host address or None for every interface, container port, as written) of each published port."""
    out = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            if p.get("target") is not None:
                out.append((p.get("host_ip"), int(str(p["target"]).split("-")[0]), str(p)))
            continue
        text = str(p).split("/")[0]
        if text.startswith("["):  # [::1]:8081:8081
            host, _, rest = text[1:].partition("]:")
            out.append((host, int(rest.rsplit(":", 1)[-1].split("-")[0]), str(p)))
            continue
        parts = text.split(":")
        host = parts[0] if len(parts) == 3 else None
        out.append((host, int(parts[-1].split("-")[0]), str(p)))
    return out


def volume_mounts(service: dict) -> list[tuple[str, str, bool]]:
    """(source, target, read-only) of each volume entry; source is a volume name or a path."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            out.append((str(v.get("source", "")), str(v.get("target", "")), bool(v.get("read_only"))))
            continue
        parts = str(v).split(":")
        if len(parts) == 1:
            out.append(("", parts[0], False))
        else:
            mode = parts[2] if len(parts) > 2 else ""
            out.append((parts[0], parts[1], "ro" in mode.split(",")))
    return out


def depends_condition(service: dict, on: str) -> str | None:
    dep = service.get("depends_on") or {}
    if isinstance(dep, list):
        return "service_started" if on in dep else None
    if on not in dep:
        return None
    return (dep[on] or {}).get("condition", "service_started")


def kappa_command(service: dict) -> str | None:
    cmd = command_list(service.get("command"))
    if cmd and cmd[0] in KAPPA_COMMANDS and not service.get("entrypoint"):
        return cmd[0]
    return None


def published_container_ports(service: dict) -> set[int]:
    ports = set()
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            if p.get("published") is not None and p.get("target") is not None:
                ports.add(int(str(p["target"]).split("-")[0]))
            continue
        text = str(p).split("/")[0]
        parts = text.rsplit(":", 2)
        if len(parts) >= 2:  # host:container or ip:host:container
            ports.add(int(parts[-1].split("-")[0]))
    return ports


def image_problem(image: str) -> str | None:
    if "${" in image:
        return "uses a variable; pin a version instead"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (that is `latest`)"
    tag = last.split(":", 1)[1]
    if not tag or tag.split("-")[0] in MOVING_TAGS:
        return f"has the moving tag `{tag or '(empty)'}`; pin a version"
    return None


def bind_sources(service: dict) -> list[str]:
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out.append(str(v["source"]))
            continue
        src = str(v).split(":", 1)[0]
        if src.startswith((".", "/", "~")):
            out.append(src)
    return out


# ---------------------------------------------------------------- Dockerfile

def dockerfile_instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out: list[tuple[int, str, str]] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    if buf:
        word, _, rest = buf.strip().partition(" ")
        out.append((start, word.upper(), rest.strip()))
    return out


def check_dockerfile(c: Checker, cli: Cli, path: Path) -> None:
    where = str(path.relative_to(c.root))
    if not c.ok(path.is_file(), f"{where}: missing"):
        return
    ins = dockerfile_instructions(path.read_text())
    stages: list[dict] = []
    for line, word, args in ins:
        if word == "FROM":
            toks = [t for t in args.split() if not t.startswith("--")]
            image = toks[0] if toks else ""
            name = toks[2] if len(toks) >= 3 and toks[1].upper() == "AS" else None
            stages.append({"line": line, "image": image, "name": name, "ins": []})
        elif stages:
            stages[-1]["ins"].append((line, word, args))
    c.ok(len(stages) >= 2, f"{where}: not multi-stage ({len(stages)} FROM line(s))")
    names = {s["name"] for s in stages if s["name"]}
    for s in stages:
        if s["image"] in names or s["image"] == "scratch":
            continue
        p = image_problem(s["image"])
        c.ok(p is None, f"{where}:{s['line']}: FROM {s['image']} {p}")
    if not stages:
        return
    final = stages[-1]["ins"]

    users = [(n, a) for n, w, a in final if w == "USER"]
    if c.ok(bool(users), f"{where}: the final stage has no USER (it would run as root)"):
        n, user = users[-1]
        who = user.split(":")[0]
        c.ok(who not in ("root", "0"), f"{where}:{n}: USER {user} is root")

    checks = [(n, a) for n, w, a in final if w == "HEALTHCHECK"]
    if c.ok(bool(checks), f"{where}: the final stage has no HEALTHCHECK"):
        n, hc = checks[-1]
        c.ok(hc.strip().upper() != "NONE", f"{where}:{n}: HEALTHCHECK NONE")
        c.ok(" CMD " in f" {hc} ", f"{where}:{n}: HEALTHCHECK without CMD")
        if "kappactl" in hc:
            flags = set(re.findall(r"--[a-z0-9-]+", hc.split(" CMD ", 1)[-1]))
            c.ok(flags <= {"--jobmanager", "--token", "--json"},
                 f"{where}:{n}: HEALTHCHECK passes kappactl flags it does not have: "
                 f"{sorted(flags - {'--jobmanager', '--token', '--json'})}")

    exposed: set[int] = set()
    for _, w, a in final:
        if w == "EXPOSE":
            exposed |= {int(p.split("/")[0]) for p in a.split()}
    c.ok(DOCKERFILE_EXPOSE <= exposed,
         f"{where}: EXPOSE lacks {sorted(DOCKERFILE_EXPOSE - exposed)} (has {sorted(exposed)})")

    entry = [a for _, w, a in final if w == "ENTRYPOINT"]
    c.ok(bool(entry) and re.search(r'^\[\s*"(/usr/local/bin/)?kappa"', entry[-1]) is not None,
         f"{where}: ENTRYPOINT is not [\"kappa\"] ({entry[-1] if entry else 'none'})")

    copied = " ".join(a for _, w, a in final if w == "COPY")
    for binary in ("kappa", "kappactl"):
        c.ok(re.search(rf"/{binary}\b", copied) is not None and "/usr/local/bin" in copied,
             f"{where}: the final stage does not copy {binary} into /usr/local/bin")

    known = cli.all_env()
    for n, w, a in ins:
        if w != "ENV":
            continue
        for name in re.findall(r"\b(KAPPA_[A-Z0-9_]+)=", a):
            c.ok(name in known, f"{where}:{n}: ENV {name} is read by no kappa command "
                                f"(they read: {', '.join(sorted(known))})")


# ---------------------------------------------------------------- compose

def check_compose(c: Checker, cli: Cli, path: Path) -> dict:
    where = COMPOSE
    if not c.ok(path.is_file(), f"{where}: missing"):
        return {}
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        c.ok(False, f"{where}: not valid YAML: {e}")
        return {}
    c.compose_doc = doc or {}
    services = (doc or {}).get("services") or {}
    if not c.ok(isinstance(services, dict) and services, f"{where}: no services"):
        return {}

    for name in EXPECTED_SERVICES:
        c.ok(name in services, f"{where}: service `{name}` is missing")
    for name, ports in EXPECTED_PUBLISHED.items():
        if name in services:
            have = published_container_ports(services[name])
            c.ok(ports <= have, f"{where}: service `{name}` does not publish port(s) "
                                f"{sorted(ports - have)} (publishes {sorted(have)})")

    known = cli.all_env()
    for name, svc in services.items():
        svc = svc or {}
        image = svc.get("image")
        build = svc.get("build")
        if c.ok(bool(image), f"{where}: service `{name}` has no image name"
                             + (" (give the built image a version tag)" if build else "")):
            p = image_problem(str(image))
            c.ok(p is None, f"{where}: service `{name}`: image {image} {p}")
        if build is not None:
            ctx = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            ctx_path = (c.root / ctx).resolve()
            if c.ok(ctx_path.is_dir(), f"{where}: service `{name}`: build context `{ctx}` "
                                       "is not a directory"):
                c.ok((ctx_path / dockerfile).is_file(), f"{where}: service `{name}`: "
                     f"Dockerfile `{dockerfile}` not found in context `{ctx}`")
        for src in bind_sources(svc):
            c.ok((c.root / src).exists(), f"{where}: service `{name}` mounts `{src}`, "
                                          "which does not exist")

        env = env_map(svc)
        cmd = command_list(svc.get("command"))
        kappa_cmd = cmd[0] if cmd and cmd[0] in KAPPA_COMMANDS and not svc.get("entrypoint") else None
        for var in sorted(v for v in env if v.startswith("KAPPA_")):
            if kappa_cmd is None:
                c.ok(var in known, f"{where}: service `{name}`: {var} is read by no kappa "
                                   "command")
            else:
                reads = cli.env.get(kappa_cmd, set())
                c.ok(var in reads, f"{where}: service `{name}`: {var} is not read by "
                                   f"`kappa {kappa_cmd}` (it reads: {', '.join(sorted(reads))})")
        if kappa_cmd is not None:
            c.ok(kappa_cmd in cli.flags, f"{where}: service `{name}`: `kappa {kappa_cmd}` is "
                                         "not a command of this binary")
            for tok in cmd[1:]:
                if tok.startswith("--"):
                    flag = tok.split("=", 1)[0]
                    c.ok(flag in cli.flags.get(kappa_cmd, set()),
                         f"{where}: service `{name}`: `kappa {kappa_cmd}` has no flag {flag}")
            if kappa_cmd == "taskmanager":
                host = env.get("KAPPA_ADVERTISED_HOST")
                c.ok(host == name, f"{where}: service `{name}`: KAPPA_ADVERTISED_HOST is "
                                   f"`{host}`, not the service name")
                c.ok(env.get("KAPPA_BIND_ADDRESS") == "0.0.0.0",
                     f"{where}: service `{name}`: KAPPA_BIND_ADDRESS is not 0.0.0.0")
                rpc = env.get("KAPPA_JOBMANAGER_RPC", "")
                c.ok(rpc.startswith("https://jobmanager:"), f"{where}: service `{name}`: "
                     f"KAPPA_JOBMANAGER_RPC `{rpc}` is not the jobmanager service over TLS "
                     "(https://jobmanager:6123)")
                hc = svc.get("healthcheck") or {}
                c.ok(bool(hc) and (hc.get("disable") or "kappactl" not in str(hc.get("test"))),
                     f"{where}: service `{name}`: a taskmanager serves no REST API; override "
                     "the image's HEALTHCHECK (healthcheck: test or disable)")
            if kappa_cmd in ("jobmanager", "taskmanager", "local") and \
                    env.get("KAPPA_CHECKPOINT_DIR", "s3://").startswith("s3://"):
                missing = [v for v in S3_ENV if v not in env]
                c.ok(not missing, f"{where}: service `{name}`: S3 checkpoints need {missing}")
            if kappa_cmd == "jobmanager":
                for var, pattern in JOBMANAGER_REQUIRED_ENV.items():
                    c.ok(re.search(pattern, env.get(var, "")) is not None,
                         f"{where}: service `{name}`: {var} should match `{pattern}` "
                         f"(is `{env.get(var, '')}`)")
        if image and str(image).split(":")[0].endswith("kappa") and build is None:
            c.ok(False, f"{where}: service `{name}` uses the kappa image without `build`")
    return services


def init_mounts(services: dict) -> dict[str, str]:
    """volume name -> the process name kappa-init writes it for (its mount /secrets/<name>)."""
    init = services.get(INIT_SERVICE) or {}
    return {src: tgt[len(INIT_OUT):].strip("/") for src, tgt, _ in volume_mounts(init)
            if tgt.startswith(INIT_OUT)}


def secrets_volume(svc: dict) -> tuple[str, bool] | None:
    """The volume a service mounts at SECRETS, and whether read-only."""
    return next(((src, ro) for src, tgt, ro in volume_mounts(svc) if tgt.rstrip("/") == SECRETS), None)


def check_security(c: Checker, services: dict) -> None:
    """Issue 12: loopback ports, no plaintext gRPC, a token, certificates per process from kappa-init."""
    where = COMPOSE
    for name, svc in services.items():
        svc = svc or {}
        for host, port, raw in published_bindings(svc):
            c.ok(host in LOOPBACK_ADDRESSES, f"{where}: service `{name}` publishes port {port} on "
                 f"{'every interface' if host is None else host} (`{raw}`); bind it to 127.0.0.1 "
                 f"(\"127.0.0.1:{port}:{port}\")")
        env = env_map(svc)
        c.ok("KAPPA_INSECURE" not in env, f"{where}: service `{name}` sets KAPPA_INSECURE "
                                          "(plaintext gRPC); give it certificates from kappa-init")
        c.ok("--insecure" not in command_list(svc.get("command")),
             f"{where}: service `{name}` passes --insecure")
        c.ok("KAPPA_AUTH_TOKEN" not in env, f"{where}: service `{name}` has the token in the "
                                            "file (KAPPA_AUTH_TOKEN); use KAPPA_AUTH_TOKEN_FILE")

    init = services.get(INIT_SERVICE)
    if not c.ok(isinstance(init, dict), f"{where}: no service `{INIT_SERVICE}` (certificates and token)"):
        return
    c.ok(str(init.get("user", "")).split(":")[0] in ("0", "root"),
         f"{where}: `{INIT_SERVICE}` must run as root to hand the files to uid 10001 and 65534 "
         f"(user: \"0:0\"; is {init.get('user')!r})")
    c.ok(str(init.get("restart", "no")) == "no", f"{where}: `{INIT_SERVICE}` is one-shot: restart \"no\"")
    c.ok(any(src.endswith(INIT_SCRIPT) for src in bind_sources(init)),
         f"{where}: `{INIT_SERVICE}` does not mount {INIT_SCRIPT}")
    entry = command_list(init.get("entrypoint"))
    c.ok(any(t.endswith("/kappa-init.sh") for t in entry),
         f"{where}: `{INIT_SERVICE}`'s entrypoint does not run kappa-init.sh ({entry})")
    c.ok((init.get("healthcheck") or {}).get("disable") is True,
         f"{where}: `{INIT_SERVICE}`: turn off the image's HEALTHCHECK (healthcheck: disable: true)")
    identities = command_list(init.get("command"))
    written = init_mounts(services)
    ca_users = [n for n, svc in services.items() if any(tgt == INIT_CA or src == "kappa-ca"
                                                        for src, tgt, _ in volume_mounts(svc or {}))]
    c.ok(ca_users == [INIT_SERVICE], f"{where}: the CA volume (with the CA key) must be mounted by "
                                     f"`{INIT_SERVICE}` only, is by {ca_users}")
    declared = set((c.compose_doc.get("volumes") or {}).keys())
    for vol in written:
        users = [n for n, svc in services.items() if n != INIT_SERVICE
                 and any(src == vol for src, _, _ in volume_mounts(svc or {}))]
        c.ok(len(users) == 1, f"{where}: volume `{vol}` (secrets of `{written[vol]}`) should be "
                              f"mounted by one service besides `{INIT_SERVICE}`, is by {users}")
        c.ok(vol in declared, f"{where}: volume `{vol}` is not declared under volumes:")

    for name, svc in services.items():
        svc = svc or {}
        cmd = kappa_command(svc)
        uses_secrets = cmd in ("jobmanager", "taskmanager") or name == "prometheus"
        if not uses_secrets:
            continue
        c.ok(depends_condition(svc, INIT_SERVICE) == "service_completed_successfully",
             f"{where}: service `{name}` must start after `{INIT_SERVICE}` (depends_on: "
             f"{INIT_SERVICE}: condition: service_completed_successfully)")
        mount = secrets_volume(svc)
        if not c.ok(mount is not None, f"{where}: service `{name}` mounts nothing at {SECRETS}"):
            continue
        vol, ro = mount
        c.ok(ro, f"{where}: service `{name}` should mount {SECRETS} read-only (:ro)")
        c.ok(written.get(vol) == name, f"{where}: service `{name}` mounts `{vol}` at {SECRETS}, "
             f"which `{INIT_SERVICE}` fills for {written.get(vol)!r} (mount it there at {INIT_OUT}{name})")
        if cmd is None:
            continue
        env = env_map(svc)
        wanted = ["KAPPA_CLUSTER_CERT", "KAPPA_CLUSTER_KEY", "KAPPA_CLUSTER_CA"]
        if cmd == "jobmanager":
            wanted.append("KAPPA_AUTH_TOKEN_FILE")
        for var in wanted:
            want = f"{SECRETS}/{SECRET_FILES[var]}"
            c.ok(env.get(var) == want, f"{where}: service `{name}`: {var} should be {want} "
                                       f"(is {env.get(var)!r})")
        c.ok(f"{cmd}/{name}" in identities, f"{where}: `{INIT_SERVICE}` issues no certificate "
             f"{cmd}/{name} for service `{name}` (its command: {identities})")
        if cmd == "taskmanager" and "KAPPA_TASKMANAGER_ID" in env:
            c.ok(env["KAPPA_TASKMANAGER_ID"] == name, f"{where}: service `{name}`: "
                 f"KAPPA_TASKMANAGER_ID must be its certificate's id `{name}`")
        if cmd == "taskmanager":
            test = str((svc.get("healthcheck") or {}).get("test"))
            c.ok("HTTP/1" not in test, f"{where}: service `{name}`: the health check speaks "
                 "plain HTTP to a port that serves TLS only")


def check_prometheus(c: Checker, services: dict) -> None:
    path = c.root / PROMETHEUS
    if not c.ok(path.is_file(), f"{PROMETHEUS}: missing"):
        return
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        c.ok(False, f"{PROMETHEUS}: not valid YAML: {e}")
        return
    targets = prometheus_scrapes(c.root)
    mount = secrets_volume(services.get("prometheus") or {})
    for name, svc in services.items():
        cmd = kappa_command(svc or {})
        if cmd not in METRICS_PORT:
            continue
        want = f"{name}:{METRICS_PORT[cmd]}"
        if not c.ok(want in targets, f"{PROMETHEUS}: no scrape target {want} "
                                     f"(the /metrics of service `{name}`)"):
            continue
        sc = targets[want]
        job = sc.get("job_name")
        tls = sc.get("tls_config") or {}
        c.ok(not tls.get("insecure_skip_verify"), f"{PROMETHEUS}: job {job}: insecure_skip_verify")
        if cmd == "jobmanager":
            cred = (sc.get("authorization") or {}).get("credentials_file")
            c.ok(cred == f"{SECRETS}/token" and mount is not None,
                 f"{PROMETHEUS}: job {job}: the jobmanager's /metrics needs the token: "
                 f"authorization: credentials_file: {SECRETS}/token (with the volume mounted; "
                 f"is {cred!r})")
        if cmd == "taskmanager":
            c.ok(sc.get("scheme") == "https" and tls.get("ca_file") == f"{SECRETS}/ca.pem"
                 and mount is not None,
                 f"{PROMETHEUS}: job {job}: a taskmanager's /metrics is HTTPS: scheme: https, "
                 f"tls_config: ca_file: {SECRETS}/ca.pem (is {sc.get('scheme')!r}, {tls})")


def check_grafana(c: Checker) -> None:
    for sub in ("datasources", "dashboards"):
        d = c.root / PROVISIONING / sub
        files = sorted(d.glob("*.yml")) + sorted(d.glob("*.yaml"))
        if c.ok(bool(files), f"{PROVISIONING}/{sub}: no provisioning file"):
            for f in files:
                try:
                    doc = yaml.safe_load(f.read_text()) or {}
                    c.ok(doc.get("apiVersion") == 1, f"{f.relative_to(c.root)}: apiVersion is not 1")
                except yaml.YAMLError as e:
                    c.ok(False, f"{f.relative_to(c.root)}: not valid YAML: {e}")
    dashboards = sorted((c.root / DASHBOARDS).glob("*.json"))
    if not c.ok(bool(dashboards), f"{DASHBOARDS}: no dashboard"):
        return
    source = ""
    crates = c.root / "crates"
    if crates.is_dir():
        source = "\n".join(p.read_text(errors="replace") for p in crates.rglob("*.rs"))
    for f in dashboards:
        rel = f.relative_to(c.root)
        try:
            dash = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            c.ok(False, f"{rel}: not valid JSON: {e}")
            continue
        exprs = []

        def walk(node):
            if isinstance(node, dict):
                if isinstance(node.get("expr"), str):
                    exprs.append(node["expr"])
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(dash.get("panels", []))
        walk(dash.get("templating", {}))
        c.ok(bool(exprs), f"{rel}: no queries")
        names = set()
        for e in exprs + [json.dumps(dash.get("templating", {}))]:
            names |= set(re.findall(r"\bkappa_[a-z0-9_]+", e))
        if source:
            for n in sorted(names):
                c.ok(f'"{n}"' in source, f"{rel}: metric {n} is not exported by any crate")
        else:
            c.skip(f"{rel}: metric names (no crates/ to compare with)")


def check_compose_job(c: Checker, kappactl: Path | None) -> None:
    job, example = c.root / COMPOSE_JOB, c.root / EXAMPLE_JOB
    if not c.ok(job.is_file(), f"{COMPOSE_JOB}: missing"):
        return
    text = job.read_text()
    c.ok("127.0.0.1" not in text, f"{COMPOSE_JOB}: points at 127.0.0.1, not a compose service")
    if example.is_file():
        # The example with the compose network's Kafka, plus a [checkpoints] table.
        body = re.sub(r"\A(#[^\n]*\n)+", "", text)
        body = re.sub(r"\n\[checkpoints\]\n(?:[a-z_]+ = [^\n]*\n)*\Z", "\n", body)
        expected = example.read_text().replace('"127.0.0.1:9092"', '"kafka:9092"')
        c.ok(body.rstrip() == expected.rstrip(),
             f"{COMPOSE_JOB}: differs from {EXAMPLE_JOB} by more than the Kafka address and "
             "its [checkpoints] table")
    if kappactl is None:
        c.skip(f"`kappactl validate {COMPOSE_JOB}` (no kappactl)")
        return
    out = subprocess.run([str(kappactl), "validate", str(job)], capture_output=True, text=True,
                         timeout=60)
    c.ok(out.returncode == 0, f"{COMPOSE_JOB}: `kappactl validate` failed: "
                              f"{(out.stderr or out.stdout).strip()}")

# ---------------------------------------------------------------- live smoke

def http_status(port: int, path: str, token: str | None = None, host: str | None = None,
                tls: tuple[Path, str] | None = None) -> int:
    """Status of GET 127.0.0.1:port/path; with tls=(ca, name) over TLS, the server's
    certificate verified against ca for the host name `name` (as a client dialing `name`)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if host:
        headers["Host"] = host
    sock = socket.create_connection(("127.0.0.1", port), timeout=3)
    try:
        if tls:
            ctx = ssl.create_default_context(cafile=str(tls[0]))
            sock = ctx.wrap_socket(sock, server_hostname=tls[1])
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if "Host" not in headers:
            head += f"Host: 127.0.0.1:{port}\r\n"
        sock.sendall(f"GET {path} HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode())
        first = b""
        while b"\r\n" not in first:
            chunk = sock.recv(4096)
            if not chunk:
                break
            first += chunk
        m = re.match(rb"HTTP/1\.[01] (\d{3})", first)
        return int(m.group(1)) if m else 0
    finally:
        sock.close()


def image_env(root: Path) -> dict[str, str]:
    """The KAPPA_* ENV of the Dockerfile's final stage (what every kappa container starts with)."""
    path = root / DOCKERFILE
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for _, word, args in dockerfile_instructions(path.read_text()):
        if word == "FROM":
            out = {}
        elif word == "ENV":
            for k, v in re.findall(r"\b(KAPPA_[A-Z0-9_]+)=(\S+)", args):
                out[k] = v
    return out


class Smoke:
    """Processes of the live smoke, their logs, and a scratch directory."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="check-deploy-"))
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, label: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.tmp / f"{label}.log", "wb")
        p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs[label] = p
        return p

    def log_start(self, label: str) -> str:
        log = self.tmp / f"{label}.log"
        return f"{label} log: " + log.read_text(errors="replace")[:700] if log.exists() else ""

    def wait(self, cond, seconds: float) -> bool:
        """Whether cond() holds within `seconds` while every process runs."""
        return wait_for(cond, seconds, list(self.procs.values()))

    def stop(self) -> None:
        stop_processes(list(self.procs.values()), self.tmp)


def live_smoke(c: Checker, kappa: Path, kappactl: Path | None, services: dict) -> None:
    """Runs kappa-init.sh, the jobmanager and the taskmanagers with the compose services'
    environment on this machine: ports, paths and host names mapped, nothing else changed."""
    init = services.get(INIT_SERVICE)
    jm_name = next((n for n, s in services.items() if kappa_command(s or {}) == "jobmanager"), None)
    tm_names = [n for n, s in services.items() if kappa_command(s or {}) == "taskmanager"]
    if not isinstance(init, dict) or jm_name is None or not tm_names:
        c.skip("live smoke (no kappa-init, jobmanager or taskmanager service)")
        return
    if shutil.which("bash") is None:
        c.skip("live smoke (no bash for the health checks)")
        return
    smoke = Smoke()
    tmp = smoke.tmp
    try:
        # kappa-init as compose runs it, its volumes as directories under tmp.
        volumes: dict[str, Path] = {}
        for src, tgt, _ in volume_mounts(init):
            if not src.startswith((".", "/")):
                volumes[src] = tmp / tgt.lstrip("/")
                volumes[src].mkdir(parents=True, exist_ok=True)
        run_init = [shutil.which("sh") or "/bin/sh", str(c.root / INIT_SCRIPT),
                    *command_list(init.get("command"))]
        init_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KAPPA_INIT_ROOT": str(tmp),
                    "KAPPA_BIN": str(kappa)}
        out = subprocess.run(run_init, env=init_env, capture_output=True, text=True, timeout=60)
        if not c.ok(out.returncode == 0, f"live: {INIT_SCRIPT} failed: {out.stderr.strip()}"):
            return

        def snapshot() -> dict[str, bytes]:
            return {str(p.relative_to(tmp)): p.read_bytes() for p in sorted(tmp.rglob("*"))
                    if p.is_file() and p.suffix != ".log"}

        first = snapshot()
        out = subprocess.run(run_init, env=init_env, capture_output=True, text=True, timeout=60)
        c.ok(out.returncode == 0 and snapshot() == first,
             f"live: {INIT_SCRIPT} run again changed files or failed (must keep what exists): "
             f"{out.stderr.strip()}")
        if os.geteuid() == 0:
            for vol, name in init_mounts(services).items():
                uid = 65534 if name == "prometheus" else 10001
                for f in volumes[vol].iterdir():
                    st = f.stat()
                    secret = f.name in ("key.pem", "token")
                    c.ok(st.st_uid == uid and (st.st_mode & 0o077 == 0 or not secret),
                         f"live: {INIT_SCRIPT}: {vol}/{f.name} is uid {st.st_uid} mode "
                         f"{st.st_mode & 0o777:o} (want uid {uid}{', no group/other access' if secret else ''})")

        def container_env(name: str, replace: dict[str, str]) -> dict[str, str]:
            """The Dockerfile's ENV, then the service's, /kappa-secrets mapped to its volume."""
            svc = services[name] or {}
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("KAPPA_", "AWS_", "RUST_BACKTRACE"))}
            env.update(image_env(c.root))
            env.update(env_map(svc))
            mount = secrets_volume(svc)
            if mount and mount[0] in volumes:
                for k, v in env.items():
                    if v.startswith(SECRETS + "/"):
                        env[k] = str(volumes[mount[0]]) + v[len(SECRETS):]
            env.update(replace)
            env.update({"TMPDIR": str(tmp), "KAPPA_LOG": "warn"})
            return env

        rest, rpc, etcd_client, etcd_peer, *tm_ports = free_ports(4 + len(tm_names))
        jm_replace = {"KAPPA_REST_PORT": str(rest), "KAPPA_RPC_PORT": str(rpc),
                      "KAPPA_CHECKPOINT_DIR": str(tmp / "checkpoints")}   # no MinIO here
        etcd = shutil.which("etcd")
        if env_map(services[jm_name]).get("KAPPA_HA") == "etcd":
            if etcd:
                url = f"http://127.0.0.1:{etcd_client}"
                peer = f"http://127.0.0.1:{etcd_peer}"
                smoke.start("etcd", [etcd, "--name", "etcd", "--data-dir", str(tmp / "etcd"),
                                     "--listen-client-urls", url, "--advertise-client-urls", url,
                                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                     "--initial-cluster", f"etcd={peer}", "--initial-cluster-state", "new"],
                            {"PATH": os.environ.get("PATH", "")})
                if not c.ok(smoke.wait(lambda: socket.create_connection(("127.0.0.1", etcd_client), 1).close() or True, 20),
                            f"live: etcd on 127.0.0.1:{etcd_client}: {smoke.log_start('etcd')}"):
                    return
                jm_replace["KAPPA_ETCD_ENDPOINTS"] = url
            else:
                c.skip("live smoke: HA on etcd (no etcd on PATH; the jobmanager runs without HA)")
                jm_replace["KAPPA_HA"] = "none"
        jm_env = container_env(jm_name, jm_replace)
        token_file = Path(jm_env.get("KAPPA_AUTH_TOKEN_FILE", tmp / "no-token-file"))
        if not c.ok(token_file.is_file(), f"live: service `{jm_name}`: no token file from "
                                          f"{INIT_SERVICE} (KAPPA_AUTH_TOKEN_FILE)"):
            return
        token = token_file.read_text().strip()
        smoke.start(jm_name, [str(kappa), *command_list(services[jm_name].get("command"))], jm_env)

        # The image's HEALTHCHECK, as the container runs it (with the jobmanager's environment).
        hc = image_healthcheck(c.root)
        if kappactl is not None and hc and hc[0] == "kappactl":
            ping_env = dict(jm_env, KAPPA_JOBMANAGER=f"http://127.0.0.1:{rest}")
            ping = lambda: subprocess.run([str(kappactl), *hc[1:]], env=ping_env, capture_output=True,
                                          text=True, timeout=10)
            ok = smoke.wait(lambda: ping().returncode == 0, 30)
            if not c.ok(ok, f"live: service `{jm_name}`: the image's health check "
                            f"`{' '.join(hc)}` does not pass: {smoke.log_start(jm_name)}"):
                return
        elif not c.ok(smoke.wait(lambda: http_status(rest, "/readyz") == 200, 30),
                      f"live: service `{jm_name}`: /readyz never answered 200: {smoke.log_start(jm_name)}"):
            return
        # With HA it answers the API once it leads (a standby: 503 or 307).
        c.ok(smoke.wait(lambda: http_status(rest, "/api/v1/overview", token) == 200, 30)
             and http_status(rest, "/api/v1/overview") == 401,
             f"live: service `{jm_name}`: /api/v1/overview should be 200 with the token of "
             f"{INIT_SERVICE} and 401 without it: {smoke.log_start(jm_name)}")
        if "KAPPA_ALLOWED_HOSTS" in jm_env:
            c.ok(http_status(rest, "/api/v1/overview", token, host="rebound.example:8081") == 403,
                 f"live: service `{jm_name}`: a request for another host name is not refused (403)")
        # Prometheus: its token file and CA, as deploy/prometheus.yml names them.
        prom_vol = secrets_volume(services.get("prometheus") or {})
        prom_dir = volumes.get(prom_vol[0]) if prom_vol else None
        scrape = prometheus_scrapes(c.root)

        def prom_file(target: str, key: str) -> Path | None:
            """A file deploy/prometheus.yml names for `target`, in Prometheus' volume."""
            sc = scrape.get(target) or {}
            name = (sc.get("authorization") or {}).get("credentials_file") if key == "token" \
                else (sc.get("tls_config") or {}).get("ca_file")
            if prom_dir is None or not name or not str(name).startswith(SECRETS + "/"):
                return None
            return prom_dir / str(name)[len(SECRETS) + 1:]

        prom_token = prom_file(f"{jm_name}:8081", "token")
        if c.ok(prom_token is not None and prom_token.is_file(),
                f"live: {PROMETHEUS}: the jobmanager's credentials_file is not in the volume "
                f"{INIT_SERVICE} fills for Prometheus ({prom_token})"):
            c.ok(http_status(rest, "/metrics", prom_token.read_text().strip(),
                             host=f"{jm_name}:8081") == 200,
                 f"live: service `{jm_name}`: /metrics with Prometheus' token file, as "
                 f"{jm_name}:8081, is not 200")
        jm_ca = Path(jm_env["KAPPA_CLUSTER_CA"])
        try:
            tls_ok = http_status(rpc, "/", tls=(jm_ca, jm_name)) >= 0
        except (OSError, ssl.SSLError) as e:
            tls_ok = False
            c.problems.append(f"live: service `{jm_name}`: gRPC TLS as `{jm_name}`: {e}")
        c.ok(tls_ok, f"live: service `{jm_name}`: its gRPC certificate is valid for the name "
                     f"`{jm_name}` the taskmanagers dial")

        for name, port in zip(tm_names, tm_ports):
            env = env_map(services[name] or {})
            rpc_url = re.sub(r"^(\w+://)[^/:]+:\d+", rf"\g<1>127.0.0.1:{rpc}", env.get("KAPPA_JOBMANAGER_RPC", ""))
            tm_env = container_env(name, {"KAPPA_TASKMANAGER_PORT": str(port), "KAPPA_BIND_ADDRESS": "127.0.0.1",
                                          "KAPPA_ADVERTISED_HOST": "127.0.0.1", "KAPPA_JOBMANAGER_RPC": rpc_url,
                                          "KAPPA_STATE_DIR": str(tmp / f"state-{name}")})
            smoke.start(name, [str(kappa), *command_list(services[name].get("command"))], tm_env)
        slots = sum(int(env_map(services[n]).get("KAPPA_SLOTS", "4")) for n in tm_names)

        def registered() -> bool:
            import urllib.request
            req = urllib.request.Request(f"http://127.0.0.1:{rest}/api/v1/overview",
                                         headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=3) as resp:
                o = json.loads(resp.read())
            return o.get("taskmanagers") == len(tm_names) and o.get("slots_total") == slots

        c.ok(smoke.wait(registered, 30),
             f"live: {', '.join(tm_names)} did not register {slots} slots over mutual TLS: "
             + " | ".join(smoke.log_start(n) for n in tm_names))
        for name, port in zip(tm_names, tm_ports):
            prom_ca = prom_file(f"{name}:6121", "ca")
            if c.ok(prom_ca is not None and prom_ca.is_file(),
                    f"live: {PROMETHEUS}: the ca_file for {name}:6121 is not in Prometheus' volume"):
                try:
                    status = http_status(port, "/metrics", tls=(prom_ca, name))
                except (OSError, ssl.SSLError) as e:
                    status = str(e)
                c.ok(status == 200, f"live: service `{name}`: https /metrics with Prometheus' CA, "
                                    f"verified as `{name}`, is {status}, not 200")
            try:
                plain = http_status(port, "/metrics")
            except OSError:
                plain = 0
            c.ok(plain != 200, f"live: service `{name}`: /metrics answers plaintext HTTP")
            test = command_list((services[name].get("healthcheck") or {}).get("test"))
            if test[:1] == ["CMD"]:
                cmd = [t.replace("6121", str(port)) for t in test[1:]]
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
                c.ok(out.returncode == 0, f"live: service `{name}`: its health check "
                                          f"{test[1:]} fails: {out.stderr.strip()}")
        for label, p in smoke.procs.items():
            c.ok(p.poll() is None, f"live: `{label}` exited: {smoke.log_start(label)}")
    finally:
        smoke.stop()


def prometheus_scrapes(root: Path) -> dict[str, dict]:
    """target -> its scrape config in deploy/prometheus.yml."""
    try:
        doc = yaml.safe_load((root / PROMETHEUS).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return {t: sc for sc in doc.get("scrape_configs") or [] for st in sc.get("static_configs") or []
            for t in st.get("targets") or []}


def image_healthcheck(root: Path) -> list[str]:
    """The command of the Dockerfile's HEALTHCHECK (exec form), or []."""
    path = root / DOCKERFILE
    if not path.is_file():
        return []
    found = [a for _, w, a in dockerfile_instructions(path.read_text()) if w == "HEALTHCHECK"]
    if not found or " CMD " not in f" {found[-1]} ":
        return []
    text = found[-1].split("CMD", 1)[1].strip()
    try:
        return [str(t) for t in json.loads(text)]
    except json.JSONDecodeError:
        return shlex.split(text)



def docker_compose_config(c: Checker) -> None:
    docker = shutil.which("docker")
    if docker is None:
        c.skip("`docker compose config` (no docker CLI)")
        return
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        c.skip("`docker compose config` (the docker CLI has no compose plugin)")
        return
    out = subprocess.run([docker, "compose", "-f", str(c.root / COMPOSE), "config", "--quiet"],
                         capture_output=True, text=True, cwd=c.root, timeout=120)
    c.ok(out.returncode == 0, f"`docker compose config` failed: {out.stderr.strip()}")


def hadolint(c: Checker) -> None:
    tool = shutil.which("hadolint")
    if tool is None:
        c.skip("hadolint (not installed)")
        return
    out = subprocess.run([tool, "--no-color", "--failure-threshold", "warning", str(c.root / DOCKERFILE)],
                         capture_output=True, text=True)
    c.ok(out.returncode == 0, f"hadolint {DOCKERFILE}:\n{out.stdout.strip()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kappa", type=Path, help="the kappa binary (e.g. target/debug/kappa)")
    ap.add_argument("--kappactl", type=Path,
                    help="the kappactl binary (default: next to kappa)")
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="the repository (default: this script's)")
    a = ap.parse_args()
    if not os.access(a.kappa, os.X_OK):
        print(f"check_deploy: {a.kappa} is not an executable (build it: cargo build -p kappa)",
              file=sys.stderr)
        return 2
    kappactl = a.kappactl or a.kappa.with_name("kappactl")
    if not os.access(kappactl, os.X_OK):
        if a.kappactl:
            print(f"check_deploy: {kappactl} is not an executable", file=sys.stderr)
            return 2
        kappactl = None
    try:
        cli = Cli(a.kappa, kappactl)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        print(f"check_deploy: {e}", file=sys.stderr)
        return 2

    c = Checker(a.root.resolve())
    check_dockerfile(c, cli, c.root / DOCKERFILE)
    c.ok((c.root / ".dockerignore").is_file(), ".dockerignore: missing")
    services = check_compose(c, cli, c.root / COMPOSE)
    if services:
        check_security(c, services)
    check_prometheus(c, services)
    check_grafana(c)
    check_compose_job(c, kappactl)
    if services:
        live_smoke(c, a.kappa, kappactl, services)
    docker_compose_config(c)
    hadolint(c)

    for p in c.problems:
        print(f"check_deploy: FAIL: {p}", file=sys.stderr)
    if c.problems:
        print(f"check_deploy: {len(c.problems)} problem(s), {c.passed} check(s) held",
              file=sys.stderr)
        return 1
    print(f"check_deploy: OK, {c.passed} checks held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
