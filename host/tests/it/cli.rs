//! The `ferrox` binary: `validate`, `config schema|example`, `serve --help`, and `serve` draining
//! on SIGTERM / SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::sync::{Semaphore, mpsc};

use crate::support::*;

const ENV_VARS: [&str; 7] = [
    "FERROX_CONFIG",
    "FERROX_LISTEN",
    "FERROX_ADMIN_LISTEN",
    "FERROX_ADMIN_TOKEN",
    "FERROX_WORKERS",
    "FERROX_LOG",
    "FERROX_LOG_FORMAT",
];

/// The real binary, with no `FERROX_*` variable inherited from the test environment.
pub(crate) fn ferrox() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferrox"));
    for v in ENV_VARS {
        c.env_remove(v);
    }
    c
}

fn run(args: &[&str]) -> Output {
    ferrox().args(args).output().expect("run ferrox")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Write `yaml` to `name` in `dir`.
fn file(dir: &tempfile::TempDir, name: &str, yaml: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, yaml).expect("write file");
    p
}

fn validate(path: &Path) -> (Option<i32>, String, String) {
    let out = run(&["validate", path.to_str().expect("utf-8 path")]);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn validate_reports_every_semantic_error_with_its_path() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = file(
        &dir,
        "bad.yaml",
        r#"upstreams:
  - name: users
    targets: [127.0.0.1:9001, "ftp://x:1"]
    timeouts: { connect: 0s }
routes:
  - name: a
    match: { path_prefix: /a }
    upstream: users
  - name: b
    match: { path_prefix: /b }
    upstream: userz
"#,
    );
    let (code, stdout, stderr) = validate(&path);
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(!stdout.contains("valid"), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    for want in [
        "routes[1].upstream: unknown upstream \"userz\"",
        "upstreams[0].targets[1]: target \"ftp://x:1\" has an unsupported scheme",
        "upstreams[0].timeouts.connect: must be greater than zero",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in:\n{stderr}"
        );
    }
    assert!(
        lines
            .last()
            .is_some_and(|l| l.ends_with("bad.yaml: 3 error(s)")),
        "{stderr}"
    );
    assert_eq!(
        lines.len(),
        4,
        "one line per error and a summary:\n{stderr}"
    );
}

#[test]
fn validate_stops_at_the_first_parse_error_and_names_it() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    // A bad duration is a parse error: the unknown upstream further down is not reached.
    let path = file(
        &dir,
        "duration.yaml",
        "upstreams:\n  - name: users\n    targets: [127.0.0.1:9001]\n    timeouts: { connect: soon }\nroutes:\n  - name: b\n    match: { path_prefix: /b }\n    upstream: userz\n",
    );
    let (code, _, stderr) = validate(&path);
    assert_eq!(code, Some(1), "{stderr}");
    let first = stderr.lines().next().expect("an error line");
    assert!(
        first.starts_with("upstreams[0].timeouts.connect: invalid duration \"soon\""),
        "{stderr}"
    );
    assert!(first.ends_with("(line 4, column 15)"), "{stderr}");
    assert!(!stderr.contains("userz"), "{stderr}");
    assert!(stderr.contains("duration.yaml: 1 error(s)"), "{stderr}");

    let path = file(
        &dir,
        "field.yaml",
        "upstreams:\n  - name: u\n    targets: [127.0.0.1:9001]\nroutes:\n  - name: a\n    match: { path_prefix: /a }\n    upstream: u\n    colour: red\n",
    );
    let (code, _, stderr) = validate(&path);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("routes[0].colour: unknown field `colour`"),
        "{stderr}"
    );
    assert!(stderr.contains("(line 8, column 5)"), "{stderr}");
}

#[test]
fn validate_reports_yaml_syntax_errors_with_a_line() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = file(
        &dir,
        "syntax.yaml",
        "routes:\n  - name: a\n    match: { path_prefix: /a\n    upstream: u\n",
    );
    let (code, stdout, stderr) = validate(&path);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stdout.contains("valid"), "{stdout}");
    assert!(stderr.contains("(line 4, column"), "{stderr}");
    assert!(stderr.contains("syntax.yaml: 1 error(s)"), "{stderr}");

    let (code, _, stderr) = validate(&dir.path().join("missing.yaml"));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn validate_accepts_a_valid_file_and_the_embedded_example() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = file(
        &dir,
        "good.yaml",
        "listen: 127.0.0.1:8080\nadmin: { listen: 127.0.0.1:9080, token: change-me }\nupstreams:\n  - name: users\n    targets: [127.0.0.1:9001, 127.0.0.1:9002]\n    balance: round_robin\n    health_check: { path: /health, interval: 5s }\n    circuit_breaker: { failures: 5, cooldown: 30s }\n    timeouts: { connect: 2s, request: 30s }\n    retries: 1\nroutes:\n  - name: users-api\n    match: { path_prefix: /api/users, methods: [GET, POST] }\n    upstream: users\n    strip_prefix: true\n",
    );
    let (code, stdout, stderr) = validate(&path);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.trim_end().ends_with("good.yaml: valid"), "{stdout}");

    let example = run(&["config", "example"]);
    assert!(example.status.success());
    let path = file(&dir, "example.yaml", &text(&example.stdout));
    let (code, stdout, stderr) = validate(&path);
    assert_eq!(code, Some(0), "the embedded example is valid: {stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
}

#[test]
fn config_schema_is_json_schema_of_the_document() {
    let out = run(&["config", "schema"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
    assert!(
        schema["$schema"]
            .as_str()
            .is_some_and(|s| s.contains("json-schema.org")),
        "{schema}"
    );
    assert_eq!(schema["type"], "object");
    let props = &schema["properties"];
    for key in ["listen", "admin", "server", "upstreams", "routes"] {
        assert!(props.get(key).is_some(), "schema lacks properties.{key}");
    }
    assert_eq!(props["routes"]["type"], "array");
    assert_eq!(props["upstreams"]["type"], "array");
}

#[test]
fn serve_help_documents_every_environment_variable() {
    let out = run(&["serve", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for v in ENV_VARS {
        assert!(
            help.contains(v),
            "`serve --help` does not mention {v}:\n{help}"
        );
    }
}

/// Two free loopback ports: bound, read, released (the binary binds them right after).
pub(crate) fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    (
        a.local_addr().expect("addr").port(),
        b.local_addr().expect("addr").port(),
    )
}

/// A `ferrox serve` child process; killed (by its PID) if the test ends while it runs.
pub(crate) struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send `signal` to this process only, by PID.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Wait for the process to exit; its exit code.
    pub(crate) async fn exited(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "ferrox did not exit within {within:?}; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn spawn_server(cmd: &mut Command, dir: &tempfile::TempDir) -> Server {
    let log = dir.path().join("ferrox.log");
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn ferrox serve");
    Server { child, log }
}

/// Poll the admin `/health` until it answers 200.
pub(crate) async fn wait_ready(server: &mut Server, admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://{admin}/health");
    loop {
        assert!(server.running(), "ferrox exited early:\n{}", server.logs());
        let req = Request::get(url.as_str())
            .body(Full::new(Bytes::new()))
            .expect("request");
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), client().request(req)).await
            && r.status() == StatusCode::OK
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ferrox never became ready:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll until a connection to `addr` is refused.
async fn wait_refused(server: &Server, addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            other => assert!(
                Instant::now() < deadline,
                "{addr} still accepts connections: {other:?}\n{}",
                server.logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How the instance gets its bootstrap settings.
enum Bootstrap {
    /// Everything in the config file, given with `--config`.
    File,
    /// Listen addresses, token and config path from `FERROX_*` variables; the file's own
    /// addresses are never used.
    Env,
}

/// Start `ferrox serve` in front of an upstream that holds one request until released, send
/// `signal` while it is held: the listener closes, the request still completes 200, and the
/// process exits 0.
async fn drains_on(signal: &str, bootstrap: Bootstrap) {
    let release = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let up = {
        let release = release.clone();
        upstream(move |_req: Request<Incoming>| {
            let tx = tx.clone();
            let release = release.clone();
            async move {
                let _ = tx.send(());
                let _ = tokio::time::timeout(Duration::from_secs(10), release.acquire()).await;
                text_response(StatusCode::OK, "drained")
            }
        })
        .await
    };
    let (proxy_port, admin_port) = free_ports();
    let proxy: SocketAddr = ([127, 0, 0, 1], proxy_port).into();
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let dir = tempfile::TempDir::new().expect("temp dir");
    let routes = format!(
        "upstreams:\n{}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: u }}\n",
        upstream_yaml("u", &[up.addr], "")
    );
    let mut cmd = ferrox();
    cmd.args(["serve", "--log-format", "json"]);
    match bootstrap {
        Bootstrap::File => {
            let config = file(
                &dir,
                "ferrox.yaml",
                &format!("listen: {proxy}\nadmin: {{ listen: {admin}, token: {TOKEN} }}\n{routes}"),
            );
            cmd.arg("--config").arg(config);
        }
        Bootstrap::Env => {
            // Port 9 (discard) on loopback: never what the test connects to.
            let config = file(
                &dir,
                "ferrox.yaml",
                &format!("listen: 127.0.0.1:9\nadmin: {{ listen: 127.0.0.1:9 }}\n{routes}"),
            );
            cmd.env("FERROX_CONFIG", config)
                .env("FERROX_LISTEN", proxy.to_string())
                .env("FERROX_ADMIN_LISTEN", admin.to_string())
                .env("FERROX_ADMIN_TOKEN", TOKEN)
                .env("FERROX_WORKERS", "2")
                .env("FERROX_LOG", "warn");
        }
    }
    let mut server = spawn_server(&mut cmd, &dir);
    wait_ready(&mut server, admin).await;

    let url = format!("http://{proxy}/slow");
    let in_flight = tokio::spawn(async move { get(&url).await });
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("upstream receives the request")
        .expect("upstream alive");

    server.signal(signal);
    wait_refused(&server, proxy).await;
    assert!(
        server.running(),
        "ferrox must wait for the in-flight request:\n{}",
        server.logs()
    );
    release.add_permits(16);
    let r = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("in-flight request completes")
        .expect("request task");
    assert_eq!(r.status, StatusCode::OK, "{}", server.logs());
    assert_eq!(&r.body[..], b"drained");
    let code = server.exited(Duration::from_secs(10)).await;
    assert_eq!(
        code,
        Some(0),
        "exit code after {signal}:\n{}",
        server.logs()
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn serve_drains_and_exits_zero_on_sigterm() {
    drains_on("TERM", Bootstrap::File).await;
}

#[tokio::test]
async fn serve_drains_and_exits_zero_on_sigint_configured_from_env() {
    drains_on("INT", Bootstrap::Env).await;
}

/// `ferrox plugin new` scaffolds a crate whose own tests pass and which builds to a component
/// the gateway accepts.
#[test]
fn plugin_new_scaffolds_a_filter_that_tests_builds_and_loads() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let out = run(&[
        "plugin",
        "new",
        "tenant-check",
        "--dir",
        &dir.path().display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let root = dir.path().join("tenant-check");
    // A cached target directory keeps repeated runs quick.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("scaffold");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let test = Command::new(&cargo)
        .current_dir(&root)
        .args(["test", "--target-dir"])
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo test");
    assert!(
        test.status.success(),
        "{}\n{}",
        text(&test.stdout),
        text(&test.stderr)
    );
    assert!(
        text(&test.stdout).contains("test result: ok. 3 passed"),
        "{}",
        text(&test.stdout)
    );
    let build = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo build");
    assert!(build.status.success(), "{}", text(&build.stderr));
    let wasm =
        std::fs::read(target.join("wasm32-wasip2/release/tenant_check.wasm")).expect("component");
    ferrox_host::plugin::Plugin::load("tenant-check", &wasm, &[]).expect("the gateway accepts it");
}
