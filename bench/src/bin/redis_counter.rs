//! Cost of the Redis state store: `N` sequential counter updates (fixed and sliding window)
//! against a Redis (default `redis://127.0.0.1:6379`), a plain `GET` round trip through the same
//! store for comparison, the in-process store, and `N` updates from 64 concurrent tasks over
//! the one multiplexed connection.
//!
//! `cargo run --release -p ferrox-bench --bin redis_counter [-- URL [N]]`

use std::time::{Duration, Instant};

use ferrox_host::state::{LocalState, RedisOptions, RedisState, now_ms};

fn per_call(total: Duration, n: u32) -> f64 {
    total.as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    rt.block_on(async move {
        let store = RedisState::new(
            &url,
            RedisOptions {
                timeout: Duration::from_secs(1),
                key_prefix: format!("ferrox-bench:{}:", std::process::id()),
            },
        )
        .expect("a valid Redis URL");
        // Connect and load the script before timing.
        for _ in 0..100 {
            store
                .incr("warm", 1, 60_000, None)
                .await
                .expect("Redis answers");
        }

        let started = Instant::now();
        for _ in 0..n {
            store.incr("k", 1, 60_000, None).await.expect("incr");
        }
        let fixed = started.elapsed();

        let started = Instant::now();
        for _ in 0..n {
            store
                .incr_sliding("s", 1, 60_000, None)
                .await
                .expect("incr_sliding");
        }
        let sliding = started.elapsed();

        let started = Instant::now();
        for _ in 0..n {
            store.get("missing", None).await.expect("get");
        }
        let get = started.elapsed();

        let local = LocalState::default();
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(local.incr("k", 1, 60_000, now_ms()));
        }
        let local_time = started.elapsed();

        let tasks = 64;
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for t in 0..tasks {
            let store = store.clone();
            let calls = n / tasks + u32::from(t < n % tasks);
            set.spawn(async move {
                for _ in 0..calls {
                    store.incr("c", 1, 60_000, None).await.expect("incr");
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("task");
        }
        let concurrent = started.elapsed();

        println!("{n} calls each against {}", store.target());
        println!(
            "redis incr (fixed window):   {:8.1} µs/call",
            per_call(fixed, n)
        );
        println!(
            "redis incr_sliding:          {:8.1} µs/call",
            per_call(sliding, n)
        );
        println!(
            "redis cache get (plain GET): {:8.1} µs/call",
            per_call(get, n)
        );
        println!(
            "local incr (in-process):     {:8.3} µs/call",
            per_call(local_time, n)
        );
        println!(
            "redis incr, {tasks} concurrent:    {:8.0} calls/s",
            f64::from(n) / concurrent.as_secs_f64()
        );
    });
}
