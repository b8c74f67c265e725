#!/usr/bin/env python3
"""Checks docker-compose.yml, deploy/Dockerfile and the files they use, without a Docker engine.

    python3 scripts/check_deploy.py target/debug/kappa [--kappactl PATH] [--root DIR]

The binary is the `kappa` just built: every KAPPA_* variable the compose file or the Dockerfile
sets must be one that the command the service runs reads (`kappa <command> --help` lists them
as `[env: KAPPA_…]`), and every `--flag` a service passes must be one of its flags. Also
checked: the expected services and published ports, build context and Dockerfile, images
pinned to a version (no `latest`), bind-mounted files, the Dockerfile's stages, non-root USER,
HEALTHCHECK, EXPOSE and ENTRYPOINT, Prometheus' targets, the metric names of the Grafana
dashboard, and the compose job file (`kappactl validate`). `docker compose config` runs only
where the docker CLI has the compose plugin (it needs no engine); hadolint only where it is
installed. Needs Python 3.11 and PyYAML. Exit status 0 when everything holds, 1 otherwise
(each problem on its own line), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

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
    "kafka", "kafka-init", "etcd", "minio", "minio-init", "jobmanager",
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
                c.ok(rpc.startswith("http://jobmanager:"), f"{where}: service `{name}`: "
                     f"KAPPA_JOBMANAGER_RPC `{rpc}` is not the jobmanager service")
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


def check_prometheus(c: Checker, services: dict) -> None:
    path = c.root / PROMETHEUS
    if not c.ok(path.is_file(), f"{PROMETHEUS}: missing"):
        return
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        c.ok(False, f"{PROMETHEUS}: not valid YAML: {e}")
        return
    targets = set()
    for sc in doc.get("scrape_configs") or []:
        for st in sc.get("static_configs") or []:
            targets |= set(st.get("targets") or [])
    for name, svc in services.items():
        cmd = command_list((svc or {}).get("command"))
        if cmd and cmd[0] in METRICS_PORT:
            want = f"{name}:{METRICS_PORT[cmd[0]]}"
            c.ok(want in targets, f"{PROMETHEUS}: no scrape target {want} "
                                  f"(the /metrics of service `{name}`)")


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
    check_prometheus(c, services)
    check_grafana(c)
    check_compose_job(c, kappactl)
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
