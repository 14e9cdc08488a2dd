//! Zero-downtime binary upgrade on the real binary: `SIGUSR2` starts a new process on the same
//! listening sockets; the old one drains and exits once the new one serves. Under continuous
//! load (a new connection per request, and keep-alive connections), no request fails and no
//! connection is refused. A new process that fails or hangs leaves the old one serving.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// How long anything that should happen "soon" may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// The real binary, with no `FERROX_*` variable inherited from the test environment.
fn ferrox() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferrox"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FERROX_") || k == "NOTIFY_SOCKET" {
            c.env_remove(k);
        }
    }
    c
}

/// Two free loopback ports: bound, read, released (the binary binds them right after).
fn free_ports() -> (SocketAddr, SocketAddr) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    (a.local_addr().expect("addr"), b.local_addr().expect("addr"))
}

/// Whether process `pid` still runs (a zombie counts as ended).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// A process this test started (directly or through an upgrade), killed if the test ends
/// while it runs.
struct Proc {
    pid: u32,
    child: Option<Child>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        match &mut self.child {
            Some(child) => {
                if let Ok(None) = child.try_wait() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            None => {
                if alive(self.pid) {
                    kill(self.pid, "KILL");
                }
            }
        }
    }
}

/// A gateway under test: its files, addresses and first process.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
    proxy: SocketAddr,
    admin: SocketAddr,
    upstream: Upstream,
}

impl Setup {
    async fn new() -> Self {
        let upstream =
            upstream(|_req: Request<Incoming>| async move { text_response(StatusCode::OK, "ok") })
                .await;
        let (proxy, admin) = free_ports();
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = dir.path().join("ferrox.yaml");
        let s = Self {
            config,
            pid_file: dir.path().join("ferrox.pid"),
            log: dir.path().join("ferrox.log"),
            dir,
            proxy,
            admin,
            upstream,
        };
        std::fs::write(&s.config, s.yaml()).expect("write config");
        s
    }

    fn yaml(&self) -> String {
        format!(
            "listen: {}\nadmin: {{ listen: {}, token: {TOKEN} }}\nupstreams:\n{}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: u }}\n",
            self.proxy,
            self.admin,
            upstream_yaml("u", &[self.upstream.addr], "")
        )
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ferrox serve` with the PID file, logs to the log file, `env` added.
    fn spawn(&self, env: &[(&str, &str)]) -> Proc {
        let out = std::fs::File::create(&self.log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = ferrox();
        cmd.args([
            "serve",
            "--log-format",
            "json",
            "--log",
            "info,ferrox::access=off",
        ])
        .arg("--config")
        .arg(&self.config)
        .arg("--pid-file")
        .arg(&self.pid_file)
        .env("FERROX_WORKERS", "2")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
        let child = cmd.spawn().expect("spawn ferrox serve");
        Proc {
            pid: child.id(),
            child: Some(child),
        }
    }

    /// The PID in the PID file, if it is written.
    fn pid_in_file(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Wait until the PID file names `pid` and the proxy answers.
    async fn wait_serving(&self, server: &mut Proc) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(child) = &mut server.child {
                assert!(
                    child.try_wait().expect("try_wait").is_none(),
                    "ferrox exited early:\n{}",
                    self.logs()
                );
            }
            if self.pid_in_file() == Some(server.pid)
                && get(&format!("http://{}/", self.proxy)).await.status == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ferrox never served:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the log has `n` lines containing `text`.
    async fn wait_log(&self, text: &str, n: usize) {
        let deadline = Instant::now() + DEADLINE;
        while self.logs().matches(text).count() < n {
            assert!(
                Instant::now() < deadline,
                "no {n}x {text:?} in the log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Scrape the admin `/metrics` (whichever process accepts).
    async fn metrics(&self) -> String {
        let req = Request::get(format!("http://{}/metrics", self.admin))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = client().request(req).await.expect("metrics answer");
        assert_eq!(resp.status(), StatusCode::OK);
        String::from_utf8(body_bytes(resp.into_body()).await.to_vec()).expect("utf-8")
    }
}

/// Wait for a child process to exit; its exit code.
async fn exited(server: &mut Proc, setup: &Setup) -> Option<i32> {
    let pid = server.pid;
    let child = server.child.as_mut().expect("a child of the test");
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "ferrox {pid} did not exit:\n{}",
            setup.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counters of the load.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut errors = self.errors.lock().expect("lock");
        if errors.len() < 20 {
            errors.push(what);
        }
    }
    fn connect_error(&self, e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        self.fail(format!("connect: {e}"));
    }
    /// Wait until `n` more requests succeeded than `from`.
    async fn wait_ok(&self, from: u64, n: u64) {
        let deadline = Instant::now() + DEADLINE;
        while self.ok() < from + n {
            assert!(
                Instant::now() < deadline,
                "load stalled at {} requests",
                self.ok()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One request on a new connection (`Connection: close`), over a raw socket.
async fn fresh_connection_request(proxy: SocketAddr, tally: &Tally) {
    let mut stream = match TcpStream::connect(proxy).await {
        Ok(s) => s,
        Err(e) => return tally.connect_error(&e),
    };
    let request = b"GET /fresh HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n";
    let mut answer = Vec::new();
    let exchange = async {
        stream.write_all(request).await?;
        stream.read_to_end(&mut answer).await
    };
    match tokio::time::timeout(Duration::from_secs(20), exchange).await {
        Ok(Ok(_)) if answer.starts_with(b"HTTP/1.1 200") && answer.ends_with(b"ok") => {
            tally.ok.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Ok(_)) => tally.fail(format!(
            "fresh: answer {:?}",
            String::from_utf8_lossy(&answer)
        )),
        Ok(Err(e)) => tally.fail(format!("fresh: {e}")),
        Err(_) => tally.fail("fresh: timed out".into()),
    }
}

/// Requests on one keep-alive connection until the server closes it (after a response that
/// says `Connection: close`) or `stop`; no retries: any error after a request was sent fails.
async fn keep_alive_connection(proxy: SocketAddr, tally: &Tally, stop: &AtomicBool) {
    let stream = match TcpStream::connect(proxy).await {
        Ok(s) => s,
        Err(e) => return tally.connect_error(&e),
    };
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => return tally.fail(format!("handshake: {e}")),
        };
    let conn = tokio::spawn(conn);
    while !stop.load(Ordering::SeqCst) {
        // A connection the server closed cleanly between requests: nothing was sent, reconnect.
        if sender.ready().await.is_err() {
            break;
        }
        let req = Request::get("/keepalive")
            .header("host", "gw")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let sent = tokio::time::timeout(Duration::from_secs(20), async {
            let resp = sender.send_request(req).await?;
            let close = resp
                .headers()
                .get(http::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body, close))
        })
        .await;
        match sent {
            Ok(Ok((StatusCode::OK, body, close))) if &body[..] == b"ok" => {
                tally.ok.fetch_add(1, Ordering::SeqCst);
                if close {
                    break;
                }
            }
            Ok(Ok((status, body, _))) => {
                tally.fail(format!("keep-alive: {status} {body:?}"));
                break;
            }
            Ok(Err(e)) => {
                tally.fail(format!("keep-alive: {e}"));
                break;
            }
            Err(_) => {
                tally.fail("keep-alive: timed out".into());
                break;
            }
        }
    }
    drop(sender);
    let _ = conn.await;
}

/// Continuous load from `clients` tasks of each kind until `stop`.
fn start_load(
    proxy: SocketAddr,
    clients: usize,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (t, s) = (tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                fresh_connection_request(proxy, &t).await;
            }
        }));
        let (t, s) = (tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                keep_alive_connection(proxy, &t, &s).await;
            }
        }));
    }
    tasks
}

async fn stop_load(tasks: Vec<tokio::task::JoinHandle<()>>, stop: &AtomicBool) {
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        tokio::time::timeout(DEADLINE, t)
            .await
            .expect("load task ends")
            .expect("load task");
    }
}

/// `ferrox_requests_total` for the test route's 200s in a scrape.
fn served(text: &str) -> f64 {
    metric_value(
        text,
        "ferrox_requests_total{method=\"GET\",route=\"r\",status=\"200\"}",
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigusr2_hands_the_listeners_to_a_new_process_without_failing_a_request() {
    let setup = Setup::new().await;
    // The service manager's notification socket, as systemd would pass it.
    let notify_path = setup.dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
    notify.set_nonblocking(true).expect("nonblocking");
    let notify_env = notify_path.to_str().expect("utf-8 path").to_owned();
    let mut old = setup.spawn(&[("NOTIFY_SOCKET", notify_env.as_str())]);
    setup.wait_serving(&mut old).await;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(setup.proxy, 8, &tally, &stop);
    tally.wait_ok(0, 200).await;

    let before = tally.ok();
    kill(old.pid, "USR2");
    // The new process writes the PID file once it serves; the old one then drains and exits.
    let deadline = Instant::now() + DEADLINE;
    let new_pid = loop {
        match setup.pid_in_file() {
            Some(pid) if pid != old.pid => break pid,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no new process:\n{}",
            setup.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut new = Proc {
        pid: new_pid,
        child: None,
    };
    let code = exited(&mut old, &setup).await;
    assert_eq!(code, Some(0), "the old process's exit:\n{}", setup.logs());
    let during = tally.ok() - before;
    assert!(alive(new_pid), "the new process runs:\n{}", setup.logs());

    // Only the new process accepts now.
    let after_exit = tally.ok();
    tally.wait_ok(after_exit, 300).await;
    stop_load(load, &stop).await;

    let total = tally.ok();
    let failed = tally.failed.load(Ordering::SeqCst);
    let refused = tally.refused.load(Ordering::SeqCst);
    let by_new = served(&setup.metrics().await) as u64;
    eprintln!(
        "upgrade under load: {total} requests ({during} between SIGUSR2 and the old process's exit), \
         {by_new} served by the new process, {failed} failed, {refused} refused"
    );
    let errors = tally.errors.lock().expect("lock").clone();
    assert_eq!(
        (failed, refused),
        (0, 0),
        "errors: {errors:#?}\n{}",
        setup.logs()
    );
    // The metrics belong to the new process alone: it served every request after the old one
    // exited, and the old one the rest.
    assert!(
        by_new >= total - after_exit && by_new < total,
        "the new process served {by_new} of {total} ({} after the old exited)",
        total - after_exit
    );
    assert!(setup.logs().contains("the new process serves"));

    // systemd: READY=1 from the old process, then the new one takes over as the main PID.
    let mut messages = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = notify.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(
        messages,
        vec!["READY=1".to_owned(), format!("MAINPID={new_pid}\nREADY=1")]
    );

    // The new process is an ordinary instance: SIGTERM drains it and removes its PID file.
    kill(new_pid, "TERM");
    let deadline = Instant::now() + DEADLINE;
    while alive(new_pid) {
        assert!(
            Instant::now() < deadline,
            "the new process did not stop:\n{}",
            setup.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    new.pid = 0;
    assert!(!setup.pid_file.exists(), "PID file left behind");
    assert!(
        TcpStream::connect(setup.proxy).await.is_err(),
        "the listener closed with the last process"
    );
}

/// A successor that exits before serving, then one that never serves (killed at the
/// `--upgrade-timeout`): each time the old process logs why and keeps serving, under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_binary_that_fails_or_hangs_leaves_the_old_process_serving() {
    let setup = Setup::new().await;
    // First run: record what it was given and exit 1 (like /bin/false); later runs: note the
    // PID and hang.
    let script = setup.dir.path().join("broken-ferrox");
    let seen = setup.dir.path().join("seen-env");
    let hung = setup.dir.path().join("hung.pid");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ ! -e '{seen}' ]; then env > '{seen}'; exit 1; fi\necho $$ > '{hung}'\nexec sleep 600\n",
            seen = seen.display(),
            hung = hung.display()
        ),
    )
    .expect("write script");
    make_executable(&script);
    let mut old = setup.spawn(&[
        ("FERROX_UPGRADE_BINARY", script.to_str().expect("utf-8")),
        ("FERROX_UPGRADE_TIMEOUT", "2s"),
    ]);
    setup.wait_serving(&mut old).await;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(setup.proxy, 4, &tally, &stop);
    tally.wait_ok(0, 50).await;

    kill(old.pid, "USR2");
    setup.wait_log("upgrade failed", 1).await;
    assert!(
        setup.logs().contains("exited before it was ready"),
        "{}",
        setup.logs()
    );
    let env = std::fs::read_to_string(&seen).expect("the new binary ran");
    assert!(
        env.lines()
            .any(|l| l.starts_with("FERROX_LISTEN_FDS=proxy:") && l.contains(",admin:")),
        "listeners named for the new process:\n{env}"
    );
    assert!(env.contains("FERROX_UPGRADE_READY_FD="), "{env}");
    tally.wait_ok(tally.ok(), 50).await;

    kill(old.pid, "USR2");
    setup.wait_log("upgrade failed", 2).await;
    assert!(
        setup.logs().contains("was not ready within 2s"),
        "{}",
        setup.logs()
    );
    tally.wait_ok(tally.ok(), 50).await;
    stop_load(load, &stop).await;

    let errors = tally.errors.lock().expect("lock").clone();
    assert_eq!(
        (
            tally.failed.load(Ordering::SeqCst),
            tally.refused.load(Ordering::SeqCst)
        ),
        (0, 0),
        "errors: {errors:#?}"
    );
    assert_eq!(
        setup.pid_in_file(),
        Some(old.pid),
        "the PID file is the old one's"
    );
    assert!(
        old.child
            .as_mut()
            .expect("child")
            .try_wait()
            .expect("try_wait")
            .is_none(),
        "the old process serves on"
    );
    // The hung successor was killed, not left behind.
    let hung: u32 = std::fs::read_to_string(&hung)
        .expect("the hung successor ran")
        .trim()
        .parse()
        .expect("a PID");
    assert!(!alive(hung), "the hung successor {hung} still runs");
}

/// A config made invalid before the signal: the new process refuses it and the old one keeps
/// serving; once the file is fixed, the same signal upgrades.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_config_fails_the_upgrade_and_a_fixed_one_upgrades() {
    let setup = Setup::new().await;
    let mut old = setup.spawn(&[]);
    setup.wait_serving(&mut old).await;

    let good = setup.yaml();
    std::fs::write(
        &setup.config,
        good.replace("upstream: u }", "upstream: nosuch }"),
    )
    .expect("break config");
    kill(old.pid, "USR2");
    setup.wait_log("upgrade failed", 1).await;
    let r = get(&format!("http://{}/", setup.proxy)).await;
    assert_eq!(r.status, StatusCode::OK, "the old process serves on");
    assert_eq!(setup.pid_in_file(), Some(old.pid));

    std::fs::write(&setup.config, &good).expect("fix config");
    kill(old.pid, "USR2");
    let code = exited(&mut old, &setup).await;
    assert_eq!(code, Some(0), "{}", setup.logs());
    let new_pid = setup.pid_in_file().expect("PID file");
    assert_ne!(new_pid, old.pid);
    let _new = Proc {
        pid: new_pid,
        child: None,
    };
    let r = get(&format!("http://{}/", setup.proxy)).await;
    assert_eq!(r.status, StatusCode::OK, "the new process serves");
    assert!(alive(new_pid));
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path).expect("metadata").permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms).expect("chmod");
}
