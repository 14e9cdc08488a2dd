//! CPU time of one Redis counter update, as the rate limiter makes it, through the gateway's
//! state store (`StateStore::incr`: timeout, failure tracking, the managed multiplexed
//! connection) and through redis-rs's managed multiplexed connection alone running the same
//! script, on a current-thread runtime like a `--workers 1` gateway, at several numbers of
//! operations in flight. CPU time is the process's user + system time from `/proc/self/stat`
//! (the multiplexed connection's driver task runs on the same thread, so it is counted);
//! Redis's own time is not.
//!
//! `cargo run --release -p ferrox-bench --bin redis_cost [-- OPS [CONCURRENCY...]]`
//! (default 50000 operations at concurrency 1, 16 and 50; needs Redis at 127.0.0.1:6379).
//! Pin it (`taskset -c 0`) and give it enough operations for a few seconds of CPU: the clock
//! ticks are 10 ms.

use std::rc::Rc;
use std::time::{Duration, Instant};

use ferrox_host::config::StateOptionsConfig;
use ferrox_host::config::units::Dur;
use ferrox_host::state::{COUNTER_SCRIPT, StateStore};

const REDIS: &str = "redis://127.0.0.1:6379";

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

/// Run `ops` operations split over `concurrency` tasks; CPU µs and wall µs per operation.
async fn measure<F, Fut>(ops: usize, concurrency: usize, op: F) -> (f64, f64)
where
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let op = Rc::new(op);
    let local = tokio::task::LocalSet::new();
    let cpu = cpu_seconds();
    let wall = Instant::now();
    for _ in 0..concurrency {
        let op = op.clone();
        local.spawn_local(async move {
            for _ in 0..ops / concurrency {
                op().await;
            }
        });
    }
    local.await;
    let n = (ops / concurrency * concurrency) as f64;
    (
        (cpu_seconds() - cpu) * 1e6 / n,
        wall.elapsed().as_secs_f64() * 1e6 / n,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ops: usize = args.first().map_or(50_000, |a| a.parse().expect("OPS"));
    let levels: Vec<usize> = if args.len() > 1 {
        args[1..]
            .iter()
            .map(|a| a.parse().expect("CONCURRENCY"))
            .collect()
    } else {
        vec![1, 16, 50]
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let prefix = format!("ferrox-redis-cost:{}:", std::process::id());
        let store = Rc::new(
            StateStore::from_config(
                REDIS,
                &StateOptionsConfig {
                    timeout: Dur(Duration::from_millis(500)),
                    key_prefix: prefix.clone(),
                },
            )
            .expect("store"),
        );
        let client = redis::Client::open(REDIS).expect("url");
        let manager = redis::aio::ConnectionManager::new(client)
            .await
            .expect("Redis at 127.0.0.1:6379");
        let script = Rc::new(redis::Script::new(COUNTER_SCRIPT));
        let key = format!("{prefix}c:rate-limit\u{1f}all\u{1f}consumer:bench-consumer");
        // Warm both up (connections made, script loaded).
        for _ in 0..2_000 {
            store.incr("k", 1, 60_000, None).await.expect("incr");
        }
        println!("| transport | concurrency | CPU µs/op | wall µs/op |");
        println!("|---|---:|---:|---:|");
        for &c in &levels {
            for round in 0..2 {
                let s = store.clone();
                let (cpu, wall) = measure(ops, c, move || {
                    let s = s.clone();
                    async move {
                        s.incr(
                            "rate-limit\u{1f}all\u{1f}consumer:bench-consumer",
                            1,
                            60_000,
                            None,
                        )
                        .await
                        .expect("incr");
                    }
                })
                .await;
                if round == 1 {
                    println!("| StateStore | {c} | {cpu:.2} | {wall:.2} |");
                }
                let (m, sc, k) = (manager.clone(), script.clone(), key.clone());
                let (cpu, wall) = measure(ops, c, move || {
                    let (mut m, sc, k) = (m.clone(), sc.clone(), k.clone());
                    async move {
                        let mut call = sc.prepare_invoke();
                        call.key(k).arg(1).arg(60_000).arg("0");
                        let v: Vec<i64> = call.invoke_async(&mut m).await.expect("script");
                        std::hint::black_box(v);
                    }
                })
                .await;
                if round == 1 {
                    println!("| redis-rs multiplexed | {c} | {cpu:.2} | {wall:.2} |");
                }
            }
        }
        let mut m = manager.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut m)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut m).await;
        }
    });
}
