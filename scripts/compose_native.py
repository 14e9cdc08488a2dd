#!/usr/bin/env python3
"""Run the topology of examples/deploy/compose.yaml as plain processes on this machine, check it,
and stop it. Driven by scripts/compose-native.sh (which finds the ferrox binary and Python).

The compose file is the input: each service's command, environment and bind mounts are read
from it (with ${VAR:-default} interpolation), the gateway image's ENTRYPOINT and ENV from the
Dockerfile. What cannot be the same on one host is mapped, and only that:

- `postgres` → the local PostgreSQL (127.0.0.1:5432, user postgres) on a fresh database;
- `redis` → the local Redis (127.0.0.1:6379); the gateways' `state_options.key_prefix` gets a
  random suffix so nothing else's keys are touched;
- every other service's container ports → free ports on 127.0.0.1, and `name:port` references
  (the upstream target, Prometheus's scrape targets) → those ports;
- bind-mounted files and folders → the repository's files (the gateway config as a rewritten
  copy), tmpfs and image folders → temporary folders;
- `grafana` is not started (no Grafana here); `prometheus` is, when a `prometheus` binary exists.

Checks: migrations complete; both gateways report healthy; a request through each is proxied
to the upstream with the route's filters applied; rate-limit counters of both instances land in
the same Redis keys; Prometheus scrapes both gateways with the token and loads the alert rules;
in PostgreSQL mode, a route created through gateway-1's admin API serves on gateway-2, and
gateway-1 restarted (SIGTERM, exit 0, started again) comes back with that route while gateway-2
answers every request meanwhile; SIGTERM stops each gateway cleanly (exit 0). Exit status 1 when a check failed or a feature the file
uses is missing from the binary.
"""

import json
import os
import pathlib
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPOSE = pathlib.Path(os.environ.get("COMPOSE_FILE", ROOT / "examples/deploy/compose.yaml"))
DEPLOY = COMPOSE.parent
FERROX = os.environ["FERROX_BIN"]
PG = ("127.0.0.1", 5432, "postgres")
REDIS = ("127.0.0.1", 6379)
READY_TIMEOUT = float(os.environ.get("READY_TIMEOUT", "30"))
KEEP_TMP = os.environ.get("KEEP_TMP") == "1"

# (PASS | FAIL | MISSING: the binary lacks what the file uses | SKIP: not available here)
results: list[tuple[str, str, str]] = []


def log(msg: str) -> None:
    print(f"[compose-native] {msg}", flush=True)


def record(status: str, check: str, detail: str = "") -> None:
    results.append((status, check, detail))
    log(f"{status:7} {check}" + (f": {detail}" if detail else ""))


# ------------------------------------------------------------------------ inputs --


def interpolate(value):
    """Compose's ${VAR}, ${VAR:-default} and ${VAR-default} against this environment."""
    if isinstance(value, str):

        def sub(m):
            name, op, default = m.group(1), m.group(2), m.group(3) or ""
            got = os.environ.get(name)
            if op == ":-":
                return got if got else default
            if op == "-":
                return got if got is not None else default
            return got or ""

        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}", sub, value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


def dockerfile_runtime() -> tuple[list[str], dict[str, str]]:
    """ENTRYPOINT and ENV of the Dockerfile's last stage."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stage = text.split("\nFROM ")[-1]
    entry, env = [], {}
    for line in stage.splitlines():
        line = line.strip()
        if line.startswith("ENTRYPOINT "):
            entry = json.loads(line[len("ENTRYPOINT ") :])
        elif line.startswith("ENV "):
            for tok in shlex.split(line[4:]):
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    env[k] = v
    return entry, env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------- processes --


class Proc:
    def __init__(self, name, argv, env, logdir):
        self.name = name
        self.argv, self.env, self.logdir = argv, env, logdir
        self.log_path = logdir / f"{name}.log"
        self.log_file = open(self.log_path, "ab")
        self.p = subprocess.Popen(
            argv,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=logdir,
        )
        log(f"started {name} (pid {self.p.pid}): {shlex.join(argv)}")

    def tail(self, n=15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float) -> int | None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for {timeout:g}s; SIGKILL")
                self.p.kill()
                self.p.wait()
                return None
        self.log_file.close()
        return self.p.returncode


def http(method, url, body=None, headers=None, timeout=5.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


def wait_until(what, fn, timeout=READY_TIMEOUT, proc: Proc | None = None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.p.poll() is not None:
            raise RuntimeError(f"{what}: {proc.name} exited {proc.p.returncode}\n{proc.tail()}")
        try:
            got = fn()
            if got:
                return got
        except (OSError, ValueError) as e:
            last = e
        time.sleep(0.2)
    tail = f"\n{proc.tail()}" if proc else ""
    raise RuntimeError(f"{what}: not within {timeout:g}s (last error: {last}){tail}")


def redis_cmd(*args) -> str:
    return subprocess.run(
        ["redis-cli", "-h", REDIS[0], "-p", str(REDIS[1]), "--raw", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def psql(db, sql):
    subprocess.run(
        [
            "psql",
            "-h",
            PG[0],
            "-p",
            str(PG[1]),
            "-U",
            PG[2],
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
        text=True,
    )


# ------------------------------------------------------------------------ runner --


class Topology:
    def __init__(self):
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="ferrox-compose-"))
        self.compose = interpolate(yaml.safe_load(COMPOSE.read_text()))
        self.services = self.compose["services"]
        self.entry, self.image_env = dockerfile_runtime()
        self.suffix = secrets.token_hex(4)
        self.database = f"ferrox_compose_{self.suffix}"
        self.key_prefix = None
        self.ports: dict[tuple[str, int], int] = {}
        self.procs: dict[str, Proc] = {}
        self.db_created = False
        self.completed: set[str] = set()
        help_all = subprocess.run([FERROX, "--help"], capture_output=True, text=True).stdout
        self.serve_help = subprocess.run(
            [FERROX, "serve", "--help"], capture_output=True, text=True
        ).stdout
        self.subcommands = set(re.findall(r"^\s{2}([a-z][a-z-]+)\s", help_all, re.M))

    # --- classification
    def kind(self, name) -> str:
        svc = self.services[name]
        image = svc.get("image", "")
        if image.startswith("postgres"):
            return "postgres"
        if image.startswith("redis"):
            return "redis"
        if "prometheus" in image:
            return "prometheus"
        if "grafana" in image:
            return "grafana"
        if "build" in svc or image.startswith("ferrox"):
            return "ferrox"
        return "process"

    def container_ports(self, name) -> list[int]:
        svc = self.services[name]
        ports = {int(str(p).split(":")[-1].split("/")[0]) for p in svc.get("ports", [])}
        ports |= {int(p) for p in svc.get("expose", [])}
        return sorted(ports)

    # --- mapping container names/paths to this host
    def map_address(self, text: str, own: str | None) -> str:
        def hostport(m):
            host, port = m.group(1), int(m.group(2))
            if host == "0.0.0.0" and own is not None:
                return f"127.0.0.1:{self.ports[(own, port)]}"
            if host in self.services:
                k = self.kind(host)
                if k == "postgres":
                    return f"{PG[0]}:{PG[1]}"
                if k == "redis":
                    return f"{REDIS[0]}:{REDIS[1]}"
                if (host, port) in self.ports:
                    return f"127.0.0.1:{self.ports[(host, port)]}"
            return m.group(0)

        # postgres://user[:password]@postgres:5432/db → the local server's fresh database
        for name in self.services:
            if self.kind(name) == "postgres":
                text = re.sub(
                    rf"postgres(?:ql)?://[^@/\s]+@{re.escape(name)}(?::\d+)?/[A-Za-z0-9_]+",
                    f"postgres://{PG[2]}@{PG[0]}:{PG[1]}/{self.database}",
                    text,
                )
        return re.sub(r"\b([A-Za-z0-9_.-]+):(\d{2,5})\b", hostport, text)

    def mounts(self, name) -> list[tuple[str, pathlib.Path]]:
        """(container path, host path), longest container path first."""
        svc = self.services[name]
        out = []
        for vol in svc.get("volumes", []):
            parts = vol.split(":")
            if len(parts) >= 2 and parts[0].startswith((".", "/")):
                out.append((parts[1], (DEPLOY / parts[0]).resolve()))
        for t in svc.get("tmpfs", []):
            host = self.tmp / f"{name}-tmpfs{t.replace('/', '_')}"
            host.mkdir(parents=True, exist_ok=True)
            out.append((t, host))
        return sorted(out, key=lambda m: -len(m[0]))

    def map_paths(self, text: str, mounts) -> str:
        for cpath, hpath in mounts:
            text = re.sub(rf"(?<![\w/]){re.escape(cpath)}(?=/|$|\s|\")", str(hpath), text)
        return text

    def rewrite_ferrox_config(self, name, mounts):
        """Copy each mounted gateway config with addresses mapped and a random Redis prefix."""
        out = []
        for cpath, hpath in mounts:
            if hpath.is_file() and hpath.suffix in (".yaml", ".yml"):
                cfg = yaml.safe_load(hpath.read_text())
                if isinstance(cfg, dict) and ("routes" in cfg or "upstreams" in cfg):
                    text = self.map_address(hpath.read_text(), None)
                    cfg = yaml.safe_load(text)
                    if str(cfg.get("state", "local")).startswith("redis"):
                        base = (cfg.get("state_options") or {}).get("key_prefix", "ferrox:")
                        self.key_prefix = f"{base.rstrip(':')}-native-{self.suffix}:"
                        cfg.setdefault("state_options", {})["key_prefix"] = self.key_prefix
                    copy = self.tmp / f"{name}-{hpath.name}"
                    copy.write_text(yaml.safe_dump(cfg, sort_keys=False))
                    hpath = copy
            out.append((cpath, hpath))
        return out

    # --- starting services
    def argv_env(self, name):
        svc = self.services[name]
        kind = self.kind(name)
        mounts = self.mounts(name)
        env = {k: str(v) for k, v in os.environ.items()}
        svc_env = svc.get("environment", {}) or {}
        if isinstance(svc_env, list):
            svc_env = dict(e.split("=", 1) for e in svc_env)
        if kind == "ferrox":
            mounts = self.rewrite_ferrox_config(name, mounts)
            image_dirs = {
                "/var/cache/ferrox": self.tmp / f"{name}-cache",
                "/var/lib/ferrox": self.tmp / f"{name}-home",
            }
            for d in image_dirs.values():
                d.mkdir(exist_ok=True)
            mounts = sorted(
                mounts + [(c, h) for c, h in image_dirs.items() if c not in dict(mounts)],
                key=lambda m: -len(m[0]),
            )
            merged = {**self.image_env, **{k: str(v) for k, v in svc_env.items()}}
            for k, v in merged.items():
                env[k] = self.map_paths(self.map_address(v, name), mounts)
            cmd = svc.get("command", [])
            argv = [FERROX] + [self.map_paths(self.map_address(a, name), mounts) for a in cmd]
            # The entrypoint is the binary; nothing else may stand before the command.
            assert self.entry and self.entry[-1].endswith("ferrox"), self.entry
        else:
            cmd = svc.get("command", [])
            if isinstance(cmd, str):
                cmd = shlex.split(cmd)
            own = {str(c): str(self.ports[(name, c)]) for c in self.container_ports(name)}
            argv = []
            for a in cmd:
                a = own.get(a, a)
                a = "127.0.0.1" if a == "0.0.0.0" else a
                argv.append(self.map_paths(self.map_address(a, name), mounts))
            for k, v in svc_env.items():
                env[k] = self.map_paths(self.map_address(str(v), name), mounts)
        return argv, env

    def start_service(self, name):
        kind = self.kind(name)
        if kind == "postgres":
            psql("postgres", f'CREATE DATABASE "{self.database}"')
            self.db_created = True
            log(f"{name}: local PostgreSQL, fresh database {self.database}")
            return
        if kind == "redis":
            if redis_cmd("PING").strip() != "PONG":
                raise RuntimeError("local Redis does not answer PING")
            log(f"{name}: local Redis {REDIS[0]}:{REDIS[1]}")
            return
        if kind == "grafana":
            record(
                "SKIP",
                f"{name} started",
                "no Grafana on this machine; its files are checked by validate-deploy.sh",
            )
            return
        if kind == "prometheus":
            return self.start_prometheus(name)
        argv, env = self.argv_env(name)
        if kind == "ferrox":
            sub = argv[1] if len(argv) > 1 else "serve"
            if sub not in self.subcommands:
                record("MISSING", f"{name}: `ferrox {sub}`", "this binary has no such command")
                return
            for k in env:
                if (
                    sub == "serve"
                    and k.startswith("FERROX_")
                    and k in (self.services[name].get("environment") or {})
                    and k not in self.serve_help
                ):
                    record("MISSING", f"{name}: {k}", "`ferrox serve --help` does not list it")
        self.procs[name] = Proc(name, argv, env, self.tmp)

    def start_prometheus(self, name):
        binary = shutil_which("prometheus")
        if binary is None:
            record("MISSING", f"{name} started", "no prometheus binary (Debian package prometheus)")
            return
        port = self.ports[(name, 9090)]
        mounts = self.mounts(name)
        token = self.tmp / "prometheus-token"
        token.write_text(self.compose["configs"]["admin_token"]["content"])
        for c in self.services[name].get("configs", []):
            mounts.append((c["target"], token))
        mounts.sort(key=lambda m: -len(m[0]))
        cfg = self.tmp / "prometheus.yml"
        text = (DEPLOY / "prometheus/prometheus.yml").read_text()
        text = self.map_paths(self.map_address(text, None), mounts)
        text = text.replace("scrape_interval: 10s", "scrape_interval: 1s")
        cfg.write_text(text)
        data = self.tmp / "prometheus-data"
        self.procs[name] = Proc(
            name,
            [
                binary,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            dict(os.environ),
            self.tmp,
        )

    def wait_ready(self, name, condition):
        kind = self.kind(name)
        proc = self.procs.get(name)
        if condition == "service_completed_successfully":
            if proc is None or name in self.completed:
                return
            self.completed.add(name)
            rc = proc.p.wait(READY_TIMEOUT)
            if rc == 0:
                record("PASS", f"{name} completed", proc.tail(3).replace("\n", " | "))
            else:
                record("FAIL", f"{name} completed", f"exit {rc}\n{proc.tail()}")
                raise RuntimeError(f"{name} failed")
        elif condition == "service_healthy" and kind == "ferrox" and proc is not None:
            self.wait_gateway(name)

    def admin_url(self, name):
        return f"http://127.0.0.1:{self.ports[(name, 9080)]}"

    def proxy_url(self, name):
        return f"http://127.0.0.1:{self.ports[(name, 8080)]}"

    def wait_gateway(self, name):
        proc = self.procs[name]
        wait_until(
            f"{name} /health",
            lambda: http("GET", self.admin_url(name) + "/health")[0] == 200,
            proc=proc,
        )

    def order(self) -> list[tuple[str, dict]]:
        done, out = set(), []

        def visit(n):
            if n in done:
                return
            deps = self.services[n].get("depends_on", {})
            if isinstance(deps, list):
                deps = {d: {"condition": "service_started"} for d in deps}
            for d in deps:
                visit(d)
            done.add(n)
            out.append((n, deps))

        for n in self.services:
            visit(n)
        return out

    def up(self):
        for name in self.services:
            for c in self.container_ports(name):
                self.ports[(name, c)] = free_port()
            if self.kind(name) == "ferrox":
                for c in (8080, 9080):
                    self.ports.setdefault((name, c), free_port())
        for name, deps in self.order():
            for d, spec in deps.items():
                self.wait_ready(d, spec.get("condition", "service_started"))
            self.start_service(name)

    # --- checks
    def gateways(self):
        return [
            n
            for n in self.services
            if self.kind(n) == "ferrox" and n in self.procs and "serve" in self.procs[n].p.args
        ]

    def check(self):
        gws = self.gateways()
        token = self.services[gws[0]]["environment"]["FERROX_ADMIN_TOKEN"]
        auth = {"authorization": f"Bearer {token}"}
        for g in gws:
            try:
                self.wait_gateway(g)
                status, _, body = http("GET", self.admin_url(g) + "/health")
                record("PASS", f"{g} healthy", body.decode()[:120])
            except RuntimeError as e:
                record("FAIL", f"{g} healthy", str(e))
        for g in gws:
            try:
                status, headers, body = wait_until(
                    f"{g} proxies /demo/hello.json",
                    lambda: (lambda r: r if r[0] == 200 else None)(
                        http("GET", self.proxy_url(g) + "/demo/hello.json")
                    ),
                    proc=self.procs[g],
                )
                h = {k.lower(): v for k, v in headers.items()}
                ok = (
                    b"from the demo upstream" in body
                    and h.get("x-gateway") == "ferrox"
                    and "ratelimit" in h
                )
                record(
                    "PASS" if ok else "FAIL",
                    f"request through {g}",
                    f"200 {body.decode().strip()} x-gateway={h.get('x-gateway')} "
                    f"ratelimit={h.get('ratelimit')!r}",
                )
            except RuntimeError as e:
                record("FAIL", f"request through {g}", str(e))
        self.check_shared_counters(gws)
        self.check_prometheus(auth)
        self.check_admin_change(gws, auth)

    def check_shared_counters(self, gws):
        if not self.key_prefix:
            record("FAIL", "shared rate-limit counters", "the gateway config has no Redis state")
            return
        n = 10
        for attempt in range(3):
            for k in self.redis_keys():
                redis_cmd("DEL", k)
            start = time.monotonic()
            for i in range(n):
                http("GET", self.proxy_url(gws[i % len(gws)]) + "/demo/hello.json")
            keys = self.redis_keys()
            total = sum(int(redis_cmd("GET", k).strip() or 0) for k in keys)
            if time.monotonic() - start < 1.0:
                break
        detail = f"{n} requests over {len(gws)} gateways → {len(keys)} key(s), sum {total}"
        # One 1s window (two when the burst crosses a boundary), counted by both instances.
        record(
            "PASS" if total == n and 1 <= len(keys) <= 2 else "FAIL",
            "shared rate-limit counters in Redis",
            detail,
        )

    def redis_keys(self) -> list[str]:
        out = redis_cmd("--scan", "--pattern", f"{self.key_prefix}*")
        return [k for k in out.split("\n") if k]

    def check_prometheus(self, auth):
        name = next((n for n in self.services if self.kind(n) == "prometheus"), None)
        if name is None or name not in self.procs:
            return
        base = f"http://127.0.0.1:{self.ports[(name, 9090)]}"

        def targets_up():
            _, _, body = http("GET", base + "/api/v1/targets")
            active = json.loads(body)["data"]["activeTargets"]
            ups = [t for t in active if t["health"] == "up"]
            return active if active and len(ups) == len(active) else None

        try:
            active = wait_until("prometheus targets up", targets_up, proc=self.procs[name])
            _, _, body = http("GET", base + "/api/v1/rules")
            rules = sum(len(g["rules"]) for g in json.loads(body)["data"]["groups"])
            record(
                "PASS",
                "Prometheus scrapes both gateways with the token",
                f"{len(active)} targets up, {rules} alert rules loaded",
            )
        except RuntimeError as e:
            record("FAIL", "Prometheus scrapes both gateways", str(e))

    def check_admin_change(self, gws, auth):
        if "FERROX_DATABASE_URL" not in self.serve_help:
            record(
                "MISSING",
                "route change through gateway-1's admin API serves on gateway-2",
                "`ferrox serve` has no --database-url / FERROX_DATABASE_URL: instances do not "
                "share a config store",
            )
            return
        a, b = gws[0], gws[1]
        route = {
            "name": f"native-{self.suffix}",
            "match": {"path_prefix": f"/native-{self.suffix}"},
            "upstream": "demo",
            "strip_prefix": True,
        }
        status, _, body = http("POST", self.admin_url(a) + "/routes", route, auth)
        if status not in (200, 201):
            record(
                "FAIL", "create a route through gateway-1's admin API", f"{status} {body[:300]!r}"
            )
            return
        t0 = time.monotonic()
        try:
            wait_until(
                f"new route on {b}",
                lambda: http("GET", f"{self.proxy_url(b)}/native-{self.suffix}/hello.json")[0]
                == 200,
                timeout=10,
            )
            record(
                "PASS",
                f"route created on {a} serves on {b}",
                f"after {1000 * (time.monotonic() - t0):.0f} ms",
            )
        except RuntimeError as e:
            record("FAIL", f"route created on {a} serves on {b}", str(e))
            return
        self.check_restart(a, b, f"/native-{self.suffix}/hello.json")

    def check_restart(self, a, b, new_path):
        """Restart `a` while `b` serves traffic: `a` drains and exits 0, comes back with the
        route made through the admin API (read from PostgreSQL, not from its file), and `b`
        answers every request meanwhile."""
        stop = threading.Event()
        counts = {"ok": 0, "failed": 0}

        def traffic():
            while not stop.is_set():
                try:
                    ok = http("GET", self.proxy_url(b) + "/demo/hello.json", timeout=2)[0] in (
                        200,
                        429,
                    )
                except OSError:
                    ok = False
                counts["ok" if ok else "failed"] += 1
                time.sleep(0.01)

        t = threading.Thread(target=traffic, daemon=True)
        t.start()
        try:
            old = self.procs[a]
            rc = old.stop(40)
            if rc != 0:
                record("FAIL", f"restart {a}", f"exit {rc} on SIGTERM")
                return
            self.procs[a] = Proc(a, old.argv, old.env, old.logdir)
            self.wait_gateway(a)
            status = http("GET", self.proxy_url(a) + new_path)[0]
            record(
                "PASS" if status == 200 else "FAIL",
                f"{a} restarted comes back with the admin API's route (from PostgreSQL)",
                f"GET {new_path} → {status}",
            )
        except RuntimeError as e:
            record("FAIL", f"restart {a}", str(e))
        finally:
            stop.set()
            t.join()
        record(
            "PASS" if counts["failed"] == 0 and counts["ok"] > 0 else "FAIL",
            f"{b} serves while {a} restarts",
            f"{counts['ok']} answered, {counts['failed']} failed",
        )

    # --- stopping
    def down(self):
        gws = set(self.gateways())
        for name in reversed([n for n, _ in self.order()]):
            proc = self.procs.get(name)
            if proc is None:
                continue
            rc = proc.stop(40)
            if name in gws:
                record("PASS" if rc == 0 else "FAIL", f"{name} stops on SIGTERM", f"exit {rc}")
            elif proc.p.returncode not in (0, -signal.SIGTERM, 143):
                log(f"{name} exited {proc.p.returncode}")

    def cleanup(self):
        for p in self.procs.values():
            if p.p.poll() is None:
                p.p.kill()
        if self.key_prefix:
            for k in self.redis_keys():
                redis_cmd("DEL", k)
        if self.db_created:
            try:
                psql("postgres", f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            except subprocess.CalledProcessError as e:
                log(f"could not drop {self.database}: {e.stderr}")
        if KEEP_TMP:
            log(f"logs and rewritten files kept in {self.tmp}")
        else:
            subprocess.run(["rm", "-rf", "--", str(self.tmp)])


def shutil_which(name):
    import shutil

    return shutil.which(name)


def main() -> int:
    topo = Topology()
    log(f"compose file {COMPOSE}, binary {FERROX}, temp {topo.tmp}")
    try:
        topo.up()
        topo.check()
        topo.down()
    except Exception as e:  # report and clean up whatever went wrong
        record("FAIL", "topology", f"{type(e).__name__}: {e}")
        for p in topo.procs.values():
            log(f"--- {p.name} log tail\n{p.tail()}")
    finally:
        topo.cleanup()
    print()
    for status, check, detail in results:
        print(f"{status:7} {check}" + (f" — {detail}" if detail else ""))
    bad = [r for r in results if r[0] in ("FAIL", "MISSING")]
    print(
        f"\n{sum(r[0] == 'PASS' for r in results)} passed, {len(bad)} failed"
        + (f" ({sum(r[0] == 'MISSING' for r in bad)} of them missing features)" if bad else "")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
