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

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ferrox_host::config::StateOptionsConfig;
use ferrox_host::config::units::Dur;
use ferrox_host::state::{COUNTER_SCRIPT, StateStore};

const REDIS: &str = "redis://127.0.0.1:6379";

type BoxError = Box<dyn std::error::Error>;

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .ok_or("/proc/self/stat: no command name")?;
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let field = |i: usize| -> Result<u64, BoxError> {
        Ok(f.get(i).ok_or("/proc/self/stat: too few fields")?.parse()?)
    };
    Ok((field(11)? + field(12)?) as f64 / 100.0)
}

/// Run `ops` operations split over `concurrency` tasks: CPU µs and wall µs per operation, and
/// how many operations failed.
async fn measure<F, Fut, E>(
    ops: usize,
    concurrency: usize,
    op: F,
) -> Result<(f64, f64, usize), BoxError>
where
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = Result<(), E>> + 'static,
{
    let op = Rc::new(op);
    let failed = Rc::new(Cell::new(0usize));
    let local = tokio::task::LocalSet::new();
    let cpu = cpu_seconds()?;
    let wall = Instant::now();
    for _ in 0..concurrency {
        let (op, failed) = (op.clone(), failed.clone());
        local.spawn_local(async move {
            for _ in 0..ops / concurrency {
                if op().await.is_err() {
                    failed.set(failed.get() + 1);
                }
            }
        });
    }
    local.await;
    let n = (ops / concurrency * concurrency) as f64;
    Ok((
        (cpu_seconds()? - cpu) * 1e6 / n,
        wall.elapsed().as_secs_f64() * 1e6 / n,
        failed.get(),
    ))
}

fn parse_args() -> Result<(usize, Vec<usize>), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |what: &str, a: &String| -> Result<usize, BoxError> {
        a.parse()
            .map_err(|e| format!("{what} must be a whole number, got {a:?}: {e}").into())
    };
    let ops = match args.first() {
        Some(a) => number("OPS", a)?,
        None => 50_000,
    };
    let levels = if args.len() > 1 {
        args[1..]
            .iter()
            .map(|a| number("CONCURRENCY", a))
            .collect::<Result<_, _>>()?
    } else {
        vec![1, 16, 50]
    };
    if levels.contains(&0) {
        return Err("CONCURRENCY must be at least 1".into());
    }
    Ok((ops, levels))
}

fn main() -> Result<(), BoxError> {
    let (ops, levels) = parse_args()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(ops, levels))
}

async fn run(ops: usize, levels: Vec<usize>) -> Result<(), BoxError> {
    let prefix = format!("ferrox-redis-cost:{}:", std::process::id());
    let store = Rc::new(
        StateStore::from_config(
            REDIS,
            &StateOptionsConfig {
                timeout: Dur(Duration::from_millis(500)),
                key_prefix: prefix.clone(),
            },
        )
        .map_err(|e| format!("state store for {REDIS}: {e}"))?,
    );
    let client = redis::Client::open(REDIS)?;
    let manager = redis::aio::ConnectionManager::new(client)
        .await
        .map_err(|e| format!("Redis at {REDIS}: {e}"))?;
    let script = Rc::new(redis::Script::new(COUNTER_SCRIPT));
    let key = format!("{prefix}c:rate-limit\u{1f}all\u{1f}consumer:bench-consumer");
    // Warm both up (connections made, script loaded).
    for _ in 0..2_000 {
        store
            .incr("k", 1, 60_000, None)
            .await
            .map_err(|e| format!("warm-up counter update: {e}"))?;
    }
    println!("| transport | concurrency | CPU µs/op | wall µs/op | failed |");
    println!("|---|---:|---:|---:|---:|");
    let mut failures = 0;
    for &c in &levels {
        for round in 0..2 {
            let s = store.clone();
            let (cpu, wall, failed) = measure(ops, c, move || {
                let s = s.clone();
                async move {
                    s.incr(
                        "rate-limit\u{1f}all\u{1f}consumer:bench-consumer",
                        1,
                        60_000,
                        None,
                    )
                    .await
                    .map(drop)
                }
            })
            .await?;
            if round == 1 {
                println!("| StateStore | {c} | {cpu:.2} | {wall:.2} | {failed} |");
                failures += failed;
            }
            let (m, sc, k) = (manager.clone(), script.clone(), key.clone());
            let (cpu, wall, failed) = measure(ops, c, move || {
                let (mut m, sc, k) = (m.clone(), sc.clone(), k.clone());
                async move {
                    let mut call = sc.prepare_invoke();
                    call.key(k).arg(1).arg(60_000).arg("0");
                    call.invoke_async::<Vec<i64>>(&mut m)
                        .await
                        .map(|v| drop(std::hint::black_box(v)))
                }
            })
            .await?;
            if round == 1 {
                println!("| redis-rs multiplexed | {c} | {cpu:.2} | {wall:.2} | {failed} |");
                failures += failed;
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
    if failures > 0 {
        return Err(format!("{failures} operations failed; the numbers above include them").into());
    }
    Ok(())
}
