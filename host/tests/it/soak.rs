//! Soak (the short version of `bench/soak.sh`): the real `ferrox` binary with key-auth,
//! rate-limit and transform on a route under steady load for `FERROX_SOAK_SECS` seconds
//! (default 120), its RSS and open file descriptors sampled every 10 s. No request may fail,
//! the fd count may not creep, and RSS may not grow by 5 % or more after the warm-up.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::support::*;

/// Concurrent clients, each on its own keep-alive connection.
const CLIENTS: usize = 4;
/// Requests per second each client sends (paced, not as fast as it can: the test runs next to
/// the rest of the suite, so the gateway gets a steady, modest load).
const PER_CLIENT_RPS: u64 = 40;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Open descriptors may differ by this many between the first sample after the warm-up and
/// the last (a pooled upstream connection replaced in between).
const FD_SLACK: i64 = 4;

/// The child process; killed by its PID if the test ends while it runs.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn fd_count(pid: u32) -> i64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count() as i64
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn wait_ready(server: &mut Server, admin: SocketAddr, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://{admin}/health");
    loop {
        assert!(
            server.0.try_wait().expect("try_wait").is_none(),
            "ferrox exited early:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        let req = Request::get(url.as_str())
            .body(Full::new(Bytes::new()))
            .expect("request");
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), client().request(req)).await
            && r.status() == StatusCode::OK
        {
            return;
        }
        assert!(Instant::now() < deadline, "ferrox never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_with_filters_keeps_memory_and_fds_flat_without_errors() {
    let secs: u64 = std::env::var("FERROX_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120)
        .max(40);
    // RSS settles once pools, caches and the dashboard's ring of recent requests are full.
    let warm_up = Duration::from_secs((secs / 4).clamp(20, 60));

    let up =
        upstream(|_req| async { text_response(StatusCode::OK, "hello from upstream\n") }).await;
    let proxy: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let dir = tempfile::TempDir::new().expect("temp dir");
    let config = dir.path().join("ferrox.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {proxy}
admin: {{ listen: {admin}, token: soak-token }}
consumers:
  - name: soak
    keys: [soak-key]
upstreams:
  - name: u
    targets: [{upstream}]
routes:
  - name: all
    match: {{ path_prefix: / }}
    upstream: u
    filters:
      - plugin: key-auth
        timeout: 500ms
      - plugin: rate-limit
        timeout: 500ms
        config: {{ limits: [{{ requests: 1000000000, window: 60s }}], by: consumer }}
      - plugin: transform
        timeout: 500ms
        config: {{ response: {{ set_headers: {{ x-gateway: ferrox }} }} }}
",
            upstream = up.addr
        ),
    )
    .expect("write config");
    let log = dir.path().join("ferrox.log");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_ferrox"))
        .args([
            "serve",
            "--log",
            "warn",
            "--log-format",
            "json",
            "--workers",
            "2",
        ])
        .arg("--config")
        .arg(&config)
        .env_remove("FERROX_LISTEN")
        .env_remove("FERROX_ADMIN_LISTEN")
        .env_remove("FERROX_ADMIN_TOKEN")
        .env_remove("FERROX_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .expect("spawn ferrox serve");
    let mut server = Server(child);
    let pid = server.0.id();
    wait_ready(&mut server, admin, &log).await;

    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let url = format!("http://{proxy}/soak");
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (ok, errors, first_error, url) =
            (ok.clone(), errors.clone(), first_error.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            let http = client();
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / PER_CLIENT_RPS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < end {
                tick.tick().await;
                let req = Request::get(url.as_str())
                    .header("apikey", "soak-key")
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let outcome =
                    match tokio::time::timeout(Duration::from_secs(10), http.request(req)).await {
                        Ok(Ok(r)) => {
                            let (parts, body) = r.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes());
                            match body {
                                Ok(b)
                                    if parts.status == StatusCode::OK
                                        && parts.headers.get("x-gateway").is_some()
                                        && &b[..] == b"hello from upstream\n" =>
                                {
                                    Ok(())
                                }
                                other => Err(format!("{} {other:?}", parts.status)),
                            }
                        }
                        Ok(Err(e)) => Err(format!("request failed: {e}")),
                        Err(_) => Err("no answer within 10s".to_owned()),
                    };
                match outcome {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        first_error.lock().expect("lock").get_or_insert(e);
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }

    // (seconds since start, RSS KiB, fds)
    let mut samples: Vec<(u64, u64, i64)> = Vec::new();
    let mut next = started + SAMPLE_EVERY;
    while next <= end {
        tokio::time::sleep_until(next.into()).await;
        samples.push((started.elapsed().as_secs(), rss_kib(pid), fd_count(pid)));
        next += SAMPLE_EVERY;
    }
    for c in clients {
        c.await.expect("client task");
    }
    let table: String = samples
        .iter()
        .map(|(t, rss, fds)| format!("  t={t:>4}s rss={rss} KiB fds={fds}\n"))
        .collect();
    let ok = ok.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    eprintln!("soak: {secs}s, {ok} ok, {errors} errors\n{table}");

    assert_eq!(
        errors,
        0,
        "first error: {:?}\n{}",
        first_error.lock().expect("lock"),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The load was there: at least half of what the clients were paced to send.
    let expected = CLIENTS as u64 * PER_CLIENT_RPS * secs;
    assert!(
        ok >= expected / 2,
        "only {ok} of ~{expected} requests were sent"
    );

    let base = samples
        .iter()
        .find(|(t, _, _)| *t >= warm_up.as_secs())
        .expect("a sample after the warm-up");
    let last = samples.last().expect("samples");
    assert!(last.0 > base.0, "no sample after the warm-up one:\n{table}");
    let growth = (last.1 as f64 - base.1 as f64) / base.1 as f64;
    assert!(
        growth < 0.05,
        "RSS grew {:.1} % after the warm-up:\n{table}",
        growth * 100.0
    );
    assert!(
        last.2 - base.2 <= FD_SLACK,
        "open fds grew from {} to {}:\n{table}",
        base.2,
        last.2
    );
}
