#!/usr/bin/env python3
"""Consistency checks across the deploy files that no schema covers (used by validate-deploy.sh).

- every bind-mount source in examples/deploy/compose.yaml exists;
- the grace periods (compose stop_grace_period, the Kubernetes terminationGracePeriodSeconds
  minus the preStop sleep, systemd TimeoutStopSec, the Dockerfile's advice) are longer than the
  gateway's server.drain_timeout;
- the Kubernetes probes use /health on the admin port, the Deployment's env names exist in
  `ferrox serve --help` when a binary is given;
- Grafana dashboards in examples/grafana/ parse and use the provisioned data source (or a
  data-source variable).

Prints one line per problem and exits 1 when there is any.
"""

import json
import pathlib
import re
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "examples" / "deploy"
problems: list[str] = []


def problem(msg: str) -> None:
    problems.append(msg)
    print(f"  FAIL {msg}")


def seconds(text) -> float:
    """`30s`, `1m`, `250ms`, `35` (seconds) → seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|min)?\s*", str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    n, unit = float(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}[unit]


def drain_of(cfg: dict) -> float:
    return seconds((cfg.get("server") or {}).get("drain_timeout", "30s"))


def check_compose() -> None:
    before = len(problems)
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    drain = drain_of(yaml.safe_load((DEPLOY / "ferrox.yaml").read_text()))
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith((".", "/")):
                path = (DEPLOY / src).resolve()
                if not path.exists():
                    problem(f"compose.yaml: services.{name}.volumes: {src} does not exist")
        if "ferrox.yaml" in json.dumps(svc.get("command", [])):
            grace = svc.get("stop_grace_period")
            if grace is None or seconds(grace) <= drain:
                problem(
                    f"compose.yaml: services.{name}.stop_grace_period ({grace}) must exceed "
                    f"server.drain_timeout ({drain:g}s)"
                )
            if svc.get("stop_signal", "SIGTERM") != "SIGTERM":
                problem(f"compose.yaml: services.{name}.stop_signal must be SIGTERM")
    if len(problems) == before:
        print(f"  ok   compose.yaml: bind mounts exist, grace periods > drain ({drain:g}s)")


def k8s_docs() -> dict:
    docs = {}
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                docs[(d["kind"], d["metadata"]["name"])] = d
    return docs


def check_k8s(help_text: str | None) -> None:
    docs = k8s_docs()
    before = len(problems)
    cm = docs[("ConfigMap", "ferrox-config")]
    drain = drain_of(yaml.safe_load(cm["data"]["ferrox.yaml"]))
    dep = docs[("Deployment", "ferrox")]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_s = float(pre[1]) if pre[:1] == ["sleep"] else 0.0
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= pre_s + drain:
        problem(
            f"k8s deployment: terminationGracePeriodSeconds ({grace}) must exceed preStop "
            f"({pre_s:g}s) + server.drain_timeout ({drain:g}s)"
        )
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = c.get(probe, {}).get("httpGet")
        if not get or get.get("path") != "/health" or get.get("port") not in ("admin", 9080):
            problem(f"k8s deployment: {probe} must GET /health on the admin port")
    env = {e["name"]: e for e in c.get("env", [])}
    admin_port = env.get("FERROX_ADMIN_LISTEN", {}).get("value", "").rsplit(":", 1)[-1]
    if admin_port != str(ports.get("admin")):
        problem("k8s deployment: FERROX_ADMIN_LISTEN's port differs from the admin containerPort")
    listen_port = env.get("FERROX_LISTEN", {}).get("value", "").rsplit(":", 1)[-1]
    if listen_port != str(ports.get("http")):
        problem("k8s deployment: FERROX_LISTEN's port differs from the http containerPort")
    if help_text is not None:
        for name in env:
            if name.startswith("FERROX_") and name not in help_text and name != "FERROX_CACHE_DIR":
                problem(f"k8s deployment: env {name} is not a `ferrox serve` setting")
    secret = docs[("Secret", "ferrox-secrets")]
    for e in env.values():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["key"] not in secret.get("stringData", {}):
            problem(f"k8s deployment: env {e['name']} reads a key the Secret does not have")
    sel = dep["spec"]["selector"]["matchLabels"]
    for kind, name in docs:
        spec = docs[(kind, name)].get("spec", {})
        s = spec.get("selector")
        if kind == "Service" and s != sel:
            problem(f"k8s {kind}/{name}: selector does not match the Deployment's pods")
        if kind == "PodDisruptionBudget" and s.get("matchLabels") != sel:
            problem(f"k8s {kind}/{name}: selector does not match the Deployment's pods")
    if len(problems) == before:
        print(
            f"  ok   k8s: probes on /health, grace {grace}s > preStop {pre_s:g}s + drain {drain:g}s, "
            "selectors and secret keys match"
        )


def check_systemd() -> None:
    before = len(problems)
    unit = (DEPLOY / "systemd" / "ferrox.service").read_text()
    drain = drain_of(yaml.safe_load((DEPLOY / "ferrox.yaml").read_text()))
    m = re.search(r"^TimeoutStopSec=(\S+)", unit, re.M)
    if not m or seconds(m.group(1)) <= drain:
        problem(f"systemd: TimeoutStopSec must exceed server.drain_timeout ({drain:g}s)")
    for want in (
        "KillSignal=SIGTERM",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ):
        if want not in unit:
            problem(f"systemd: {want} missing")
    if re.search(r"^MemoryDenyWriteExecute=yes", unit, re.M):
        problem("systemd: MemoryDenyWriteExecute=yes breaks the Wasm runtime's compiled code")
    if len(problems) == before:
        print(f"  ok   systemd: TimeoutStopSec > drain ({drain:g}s), hardening keys present")


def check_dockerfile() -> None:
    before = len(problems)
    text = (ROOT / "Dockerfile").read_text()
    for want in (
        "HEALTHCHECK",
        "STOPSIGNAL SIGTERM",
        "USER 10001",
        "wasm32-wasip2",
        "/health",
        "EXPOSE 8080 9080",
    ):
        if want not in text:
            problem(f"Dockerfile: {want!r} missing")
    if len(problems) == before:
        print("  ok   Dockerfile: non-root, healthcheck on /health, SIGTERM, ports")


def check_grafana() -> None:
    folder = ROOT / "examples" / "grafana"
    prov = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    uids = {d["uid"] for d in prov["datasources"]}
    names = {d["name"] for d in prov["datasources"]}
    dashboards = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not dashboards:
        problem("examples/grafana/: no dashboard JSON (compose.yaml provisions it from there)")
        return
    for f in dashboards:
        try:
            dash = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            problem(f"{f.relative_to(ROOT)}: not JSON: {e}")
            continue
        if "panels" not in dash:
            # A Prometheus scrape config or other JSON next to the dashboard.
            continue
        variables = {
            v.get("name")
            for v in (dash.get("templating") or {}).get("list", [])
            if v.get("type") == "datasource"
        }
        bad = set()

        def walk(node):
            if isinstance(node, dict):
                ds = node.get("datasource")
                ref = None
                if isinstance(ds, dict):
                    ref = ds.get("uid")
                elif isinstance(ds, str):
                    ref = ds
                if ref is not None:
                    var = re.fullmatch(r"\$\{?([A-Za-z0-9_]+)\}?", ref)
                    if not (
                        ref in uids
                        or ref in names
                        or (var and var.group(1) in variables)
                        or ref.startswith("-- ")
                    ):
                        bad.add(ref)
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(dash.get("panels", []))
        walk((dash.get("templating") or {}).get("list", []))
        if bad:
            problem(
                f"{f.relative_to(ROOT)}: data source(s) {sorted(bad)} are neither the provisioned "
                f"one ({sorted(uids)}) nor a data-source variable"
            )
        else:
            print(f"  ok   {f.relative_to(ROOT)}: parses, data sources resolve when provisioned")


def main() -> int:
    help_text = None
    if len(sys.argv) > 1 and sys.argv[1]:
        help_text = subprocess.run(
            [sys.argv[1], "serve", "--help"], capture_output=True, text=True, check=True
        ).stdout
    for check in (
        check_dockerfile,
        check_compose,
        lambda: check_k8s(help_text),
        check_systemd,
        check_grafana,
    ):
        check()
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
