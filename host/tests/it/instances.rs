//! `GET /instances`: instances on one PostgreSQL database report in and see each other (up,
//! the config version they run against the store's), a graceful stop shows `stopped`, an
//! instance that dies without any cleanup shows `down` after 3 heartbeat intervals and lags
//! behind later changes, a PostgreSQL outage is counted and leaves traffic alone; with a
//! memory or file store the instance lists itself alone.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::admin_api::call;
use crate::cluster::cluster;
use crate::pg_store::TestDb;
use crate::support::*;

/// Heartbeats in these tests: an instance is down after 3 × this.
const HEARTBEAT: &str = "500ms";

/// `GET {admin}/instances` with the bootstrap token.
async fn instances_at(admin: &str) -> Value {
    let r = send(
        Request::get(format!("{admin}/instances"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.json()
}

/// The entry of `id` in a listing.
fn entry<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["id"] == id)
}

/// Poll `admin`'s listing until `ok` holds (20 s at most); returns that listing.
async fn until(admin: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = instances_at(admin).await;
        if ok(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "not within 20 s: {what}: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// This instance's id, from its own listing.
async fn self_id(admin: &str) -> String {
    let list = instances_at(admin).await;
    let me: Vec<&Value> = list["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter(|i| i["self"] == true)
        .collect();
    assert_eq!(me.len(), 1, "exactly one self: {list:#}");
    assert_eq!(list["instances"][0]["self"], true, "self comes first");
    me[0]["id"].as_str().expect("id").to_owned()
}

/// An instance on a runtime (and thread) of its own, so it can die without running any of its
/// shutdown: dropping the runtime ends every task where it stands, as a crash would.
struct Doomed {
    admin: String,
    kill: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

async fn start_doomed(doc: String) -> Doomed {
    let (told, hear) = std::sync::mpsc::channel();
    let (kill, killed) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let gw = rt.block_on(gateway(&doc));
        told.send(gw.admin.clone()).expect("test waits");
        let _ = killed.recv();
        rt.shutdown_timeout(Duration::from_secs(5));
        // Its sockets and pool belong to the runtime just dropped: nothing of it may run again.
        std::mem::forget(gw);
    });
    let admin = tokio::task::spawn_blocking(move || hear.recv_timeout(Duration::from_secs(60)))
        .await
        .expect("waiter")
        .expect("the doomed instance starts");
    Doomed {
        admin,
        kill,
        thread,
    }
}

impl Doomed {
    /// Drop its runtime (the other instances' tasks keep running meanwhile).
    async fn kill(self) {
        let _ = self.kill.send(());
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("waiter")
            .expect("the doomed instance's thread ends");
    }
}

#[tokio::test]
async fn instances_see_each_other_and_a_stop_and_a_crash() {
    let db = TestDb::new().await;
    let up = echo_upstream().await;
    let yaml = format!(
        "admin: {{ heartbeat_interval: {HEARTBEAT} }}\nupstreams:\n{}",
        upstream_yaml("u", &[up.addr], "")
    );
    let nodes = cluster(&db, 2, &yaml).await;
    let doomed = start_doomed(format!("database_url: {}\n{yaml}", db.url)).await;
    let admins = [
        nodes[0].admin.clone(),
        nodes[1].admin.clone(),
        doomed.admin.clone(),
    ];
    let mut ids = Vec::new();
    for admin in &admins {
        ids.push(self_id(admin).await);
    }
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 3, "{ids:?}");

    // Every instance lists all three, up, on the store's version.
    for (n, admin) in admins.iter().enumerate() {
        let list = until(admin, "all three up", |l| {
            l["instances"].as_array().expect("instances").len() == 3
                && l["instances"]
                    .as_array()
                    .expect("instances")
                    .iter()
                    .all(|i| i["status"] == "up")
        })
        .await;
        assert_eq!(list["store"], "postgres");
        assert_eq!(list["complete"], true);
        let version = list["config_version"].as_i64().expect("config_version");
        for (m, id) in ids.iter().enumerate() {
            let i = entry(&list, id).expect("listed");
            assert_eq!(i["self"], m == n, "{i}");
            assert_eq!(i["applied_version"], version, "{i}");
            assert_eq!(i["lagging"], false, "{i}");
            assert_eq!(i["version"], env!("CARGO_PKG_VERSION"));
            assert_eq!(i["pid"], std::process::id());
            assert_eq!(i["heartbeat_interval_ms"], 500);
            assert_eq!(
                format!("http://{}", i["admin_addr"].as_str().expect("admin_addr")),
                admins[m]
            );
        }
    }

    // A change through one instance: every row reports the new version.
    let r = call(
        &nodes[0],
        Method::POST,
        "/routes",
        Some(json!({ "name": "one", "match": { "path_prefix": "/one" }, "upstream": "u" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let after = until(&admins[1], "every instance on the new version", |l| {
        let v = &l["config_version"];
        l["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .all(|i| i["applied_version"] == *v && i["lagging"] == false)
    })
    .await;
    let v1 = after["config_version"].as_i64().expect("version");

    // Requests show in the counters the heartbeats carry.
    for _ in 0..5 {
        assert_eq!(get(&nodes[0].url("/one/x")).await.status, 200);
    }
    until(&admins[1], "node 0's requests counted", |l| {
        entry(l, &ids[0]).is_some_and(|i| i["requests_total"].as_u64() >= Some(5))
    })
    .await;

    // The third dies without cleanup: down once 3 intervals pass without a heartbeat.
    let killed_at = Instant::now();
    doomed.kill().await;
    let list = until(&admins[0], "the killed instance down, the others up", |l| {
        entry(l, &ids[2]).is_some_and(|i| i["status"] == "down")
            && ids[..2]
                .iter()
                .all(|id| entry(l, id).is_some_and(|i| i["status"] == "up"))
    })
    .await;
    let took = killed_at.elapsed();
    let dead = entry(&list, &ids[2]).expect("killed");
    assert_eq!(dead["stopped_at"], Value::Null, "{dead}");
    assert!(dead["last_seen"].is_string(), "{dead}");
    println!(
        "an instance killed without cleanup shows down after {took:?} (heartbeat {HEARTBEAT})"
    );

    // A change it never sees: it lags, the others do not.
    let r = call(
        &nodes[1],
        Method::POST,
        "/routes",
        Some(json!({ "name": "two", "match": { "path_prefix": "/two" }, "upstream": "u" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let list = until(
        &admins[0],
        "the live instances on the newest version",
        |l| {
            l["config_version"].as_i64() > Some(v1)
                && ids[..2].iter().all(|id| {
                    entry(l, id).is_some_and(|i| i["applied_version"] == l["config_version"])
                })
        },
    )
    .await;
    let dead = entry(&list, &ids[2]).expect("killed");
    assert_eq!(
        (&dead["applied_version"], &dead["lagging"]),
        (&json!(v1), &json!(true))
    );
    for id in &ids[..2] {
        assert_eq!(entry(&list, id).expect("live")["lagging"], false);
    }

    // A graceful stop marks the row at once: the stop waits for it.
    let mut nodes = nodes;
    let stopped = nodes.pop().expect("node 1");
    stopped.running.shutdown().await;
    let list = instances_at(&admins[0]).await;
    let gone = entry(&list, &ids[1]).expect("stopped instance still listed");
    assert_eq!(gone["status"], "stopped", "{gone}");
    assert!(gone["stopped_at"].is_string(), "{gone}");
    assert_eq!(list["instances"].as_array().expect("instances").len(), 3);
    assert_eq!(entry(&list, &ids[0]).expect("self")["status"], "up");

    // What the table holds.
    let mut conn = db.conn().await;
    let rows: Vec<(String, bool)> = sqlx::query_as(
        "SELECT id, stopped_at IS NOT NULL FROM gateway_instances ORDER BY started_at, id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("rows");
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows.iter()
            .filter(|(_, stopped)| *stopped)
            .map(|(id, _)| id)
            .collect::<Vec<_>>(),
        vec![&ids[1]]
    );
}

#[tokio::test]
async fn a_postgres_outage_fails_heartbeats_not_requests() {
    let db = TestDb::new().await;
    let up = echo_upstream().await;
    let nodes = cluster(
        &db,
        1,
        &format!(
            "admin: {{ heartbeat_interval: {HEARTBEAT} }}\nupstreams:\n{}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: u }}\n",
            upstream_yaml("u", &[up.addr], "")
        ),
    )
    .await;
    let g = &nodes[0];
    let id = self_id(&g.admin).await;
    until(&g.admin, "the first heartbeat", |l| {
        entry(l, &id).is_some_and(|i| i["last_seen"].is_string())
    })
    .await;
    assert_eq!(
        metric_value(
            &g.metrics().await,
            "ferrox_instance_heartbeat_failures_total"
        ),
        Some(0.0)
    );

    db.cut().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let failed = metric_value(
            &g.metrics().await,
            "ferrox_instance_heartbeat_failures_total",
        );
        if failed >= Some(2.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "heartbeat failures not counted: {failed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        assert_eq!(get(&g.url("/during")).await.status, 200);
    }
    // The listing still answers, with this instance alone, and says why.
    let list = instances_at(&g.admin).await;
    assert_eq!(list["complete"], false, "{list:#}");
    assert!(
        list["error"]
            .as_str()
            .is_some_and(|e| e.contains("PostgreSQL")),
        "{list:#}"
    );
    assert_eq!(list["instances"].as_array().expect("instances").len(), 1);
    assert_eq!(list["instances"][0]["id"], id.as_str());
    assert_eq!(list["instances"][0]["status"], "up");

    db.restore().await;
    until(&g.admin, "the heartbeat back", |l| {
        l["complete"] == true && entry(l, &id).is_some_and(|i| i["status"] == "up")
    })
    .await;
    // Heartbeats land again: the row's last_seen moves.
    let mut conn = db.conn().await;
    let first = last_seen(&mut conn, &id).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while last_seen(&mut conn, &id).await <= first {
        assert!(Instant::now() < deadline, "last_seen does not move");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The row's `last_seen`, seconds since the epoch.
async fn last_seen(conn: &mut sqlx::PgConnection, id: &str) -> f64 {
    sqlx::query_scalar(
        "SELECT extract(epoch FROM last_seen)::float8 FROM gateway_instances WHERE id = $1",
    )
    .bind(id)
    .fetch_one(conn)
    .await
    .expect("the instance's row")
}

#[tokio::test]
async fn a_memory_or_file_instance_lists_itself_alone() {
    let up = echo_upstream().await;
    let yaml = format!("upstreams:\n{}", upstream_yaml("u", &[up.addr], ""));
    let memory = gateway(&yaml).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ferrox.yaml");
    std::fs::write(&path, &yaml).expect("write config");
    let file = gateway_watching(path, Duration::from_millis(50)).await;
    for (gw, kind) in [(&memory, "memory"), (&file, "file")] {
        // A change moves the store's version; the instance runs it.
        let r = call(
            gw,
            Method::POST,
            "/routes",
            Some(json!({ "name": "r", "match": { "path_prefix": "/" }, "upstream": "u" })),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let list = instances_at(&gw.admin).await;
        assert_eq!(list["store"], kind, "{list:#}");
        assert_eq!(list["complete"], true);
        let all = list["instances"].as_array().expect("instances");
        assert_eq!(all.len(), 1, "{list:#}");
        let me = &all[0];
        assert_eq!(me["self"], true);
        assert_eq!(me["status"], "up");
        assert_eq!(me["lagging"], false);
        assert_eq!(me["applied_version"], list["config_version"]);
        assert!(list["config_version"].as_i64() >= Some(1), "{list:#}");
        assert_eq!(
            format!("http://{}", me["admin_addr"].as_str().expect("addr")),
            gw.admin
        );
        assert_eq!(
            format!("http://{}", me["proxy_addr"].as_str().expect("addr")),
            gw.base
        );
        assert_eq!(
            me["last_seen"],
            Value::Null,
            "no heartbeat without PostgreSQL"
        );
        assert_eq!(me["heartbeat_interval_ms"], 5000);
    }
    assert_ne!(
        instances_at(&memory.admin).await["instances"][0]["id"],
        instances_at(&file.admin).await["instances"][0]["id"]
    );
    let doc = call(&memory, Method::GET, "/openapi.json", None)
        .await
        .json();
    assert!(
        doc["paths"]["/instances"]["get"].is_object(),
        "/instances is in the OpenAPI document"
    );
    assert!(doc["components"]["schemas"]["InstanceView"].is_object());
}

#[tokio::test]
async fn a_heartbeat_interval_out_of_range_is_refused() {
    let err = ferrox_host::config::load_str(
        "admin: { heartbeat_interval: 10ms }\n",
        &ferrox_host::config::Overrides::default(),
    )
    .expect_err("refused");
    assert!(
        err.to_string()
            .contains("admin.heartbeat_interval: must be between 100ms and 5m"),
        "{err}"
    );
}
