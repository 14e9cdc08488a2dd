//! The PostgreSQL config store against the server at 127.0.0.1:5432: every test creates its own
//! database (`ferrox_test_<random>`, dropped at the end, even when the test fails). Round trip of
//! a document using every field, optimistic conflicts, NOTIFY reaching another instance, seeding,
//! admin users, tokens and the audit log, and request logs written in batches.

use std::time::Duration;

use ferrox_host::config::{GatewayConfig, parse_yaml};
use ferrox_host::store::pg::{PgOptions, PgStore};
use ferrox_host::store::{AuditQuery, NewAudit, PluginBlob, Role, StoreError, sha256_hex};
use sqlx::Connection;

use crate::support::*;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A database of its own, dropped when this goes out of scope.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("ferrox_test_{:016x}", fastrand::u64(..));
        let mut admin = admin_conn().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        Self {
            url: format!("{SERVER}/{name}"),
            name,
        }
    }

    /// Store options for this database with a private component cache.
    pub fn options(&self, cache: &tempfile::TempDir) -> PgOptions {
        let mut o = PgOptions::new(&self.url);
        o.cache_dir = Some(cache.path().to_path_buf());
        o
    }

    /// A store on this database with default bootstrap settings and no seed.
    pub async fn store(&self, cache: &tempfile::TempDir) -> PgStore {
        PgStore::connect(self.options(cache), GatewayConfig::default(), None)
            .await
            .expect("store connects")
    }

    /// A plain connection to this database, to look at what was written.
    pub async fn conn(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Refuse new connections to this database and end every open one: PostgreSQL is, as far as
    /// the gateway can tell, gone.
    pub async fn cut(&self) {
        let mut admin = admin_conn().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            self.name
        )))
        .execute(&mut admin)
        .await
        .expect("ALTER DATABASE");
        self.kill_connections().await;
    }

    /// `pg_terminate_backend` on every connection to this database.
    pub async fn kill_connections(&self) -> u64 {
        let mut admin = admin_conn().await;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .execute(&mut admin)
        .await
        .expect("pg_terminate_backend")
        .rows_affected()
    }

    /// Accept connections again.
    pub async fn restore(&self) {
        let mut admin = admin_conn().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            self.name
        )))
        .execute(&mut admin)
        .await
        .expect("ALTER DATABASE");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropped from async tests: a thread with its own runtime does the async work.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut admin = admin_conn().await;
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
            });
        });
        let _ = done.join();
    }
}

async fn admin_conn() -> sqlx::PgConnection {
    tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::PgConnection::connect(&format!("{SERVER}/postgres")),
    )
    .await
    .expect("PostgreSQL answers within 10 s")
    .unwrap_or_else(|e| {
        panic!("these tests need PostgreSQL at 127.0.0.1:5432, user postgres, trust auth: {e}")
    })
}

pub fn audit(action: &str, resource: &str) -> NewAudit {
    NewAudit {
        actor: "tester".into(),
        action: action.into(),
        resource: resource.into(),
        before: None,
        after: Some(serde_json::json!({ "what": resource })),
    }
}

/// Wait until `f` holds, polling every 5 ms, at most `limit`.
pub async fn eventually<F: FnMut() -> bool>(limit: Duration, what: &str, mut f: F) {
    let deadline = tokio::time::Instant::now() + limit;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A document using every field of upstreams, routes, filters, consumers and plugins (the
/// plugin's path is `plugin_path`).
fn rich(plugin_path: &str) -> GatewayConfig {
    let key = sha256_hex(b"alice-secret-key");
    parse_yaml(&format!(
        r#"
listen: 127.0.0.1:0
upstreams:
  - name: users
    targets: [127.0.0.1:9001, "https://users.internal:8443"]
    balance: hash
    hash_header: x-user
    health_check: {{ path: /health, interval: 3s, timeout: 700ms, healthy: 4, unhealthy: 6 }}
    circuit_breaker: {{ failures: 9, cooldown: 45s }}
    timeouts: {{ connect: 1500ms, request: 12s, idle: 90s }}
    retries: 3
    retry_budget: {{ ratio: 0.35, min_per_sec: 7 }}
    protocol: http2
    preserve_host: true
    tls: {{ ca: /etc/ferrox/ca.pem, server_name: users.example }}
  - name: plain
    targets: [127.0.0.1:9002]
routes:
  - name: users-api
    match:
      path_prefix: /api/users
      hosts: [api.example.com, "*.example.org"]
      host: one.example.com
      methods: [GET, POST]
      headers: {{ x-tenant: blue, x-beta: "1" }}
    upstream: users
    strip_prefix: true
    rewrite: /v2
    max_body: 3MiB
    websocket: true
    allow_encoded_slashes: true
    filters:
      - plugin: rate-limit
        config: {{ limits: [{{ requests: 100, window: 60s }}, {{ requests: 5, window: 1s }}], by: ip, nested: {{ a: [1, 2.5, null, true] }} }}
        on_error: open
        isolation: request
        timeout: 7ms
        memory: 32MiB
      - plugin: key-auth
        config: {{ header: apikey }}
      - plugin: geo-block
  - name: exact
    match: {{ path: /exact }}
    upstream: plain
consumers:
  - name: alice
    keys: ["sha256:{key}"]
    jwt:
      - {{ issuer: alice-app, algorithm: HS256, secret: alice-jwt-secret, key_id: k1, jwks_refetch_interval: 45s }}
      - {{ issuer: alice-rsa, algorithm: RS256, public_key: "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n" }}
  - name: bob
plugins:
  - name: geo-block
    path: {plugin_path}
    grants: [log, counters]
"#
    ))
    .expect("the rich document parses")
}

#[tokio::test]
async fn round_trip_keeps_every_field() {
    let db = TestDb::new().await;
    let cache_a = tempfile::tempdir().expect("tempdir");
    let base = parse_yaml("listen: 127.0.0.1:0\nstate: local\n").expect("base");
    let a = PgStore::connect(db.options(&cache_a), base.clone(), None)
        .await
        .expect("store connects and migrates");
    let empty = a.load().await.expect("load");
    assert_eq!(empty.version, 0);
    assert!(empty.config.routes.is_empty() && empty.config.upstreams.is_empty());

    let component = std::fs::read(guest("hello")).expect("test guest");
    a.put_plugin(
        PluginBlob {
            name: "geo-block".into(),
            sha256: sha256_hex(&component),
            bytes: component.clone(),
        },
        audit("upload", "plugins/geo-block"),
    )
    .await
    .expect("upload");
    let config = rich(&a.plugin_path("geo-block"));
    let v = a
        .commit(0, &config, audit("import", "config"))
        .await
        .expect("commit");
    assert_eq!(v, 1);
    let loaded = a.load().await.expect("load");
    assert_eq!(loaded.version, 1);
    assert_eq!(
        loaded.config, config,
        "load() after commit() gives the same document"
    );

    // Another instance, with its own cache folder, gets the component written there.
    let cache_b = tempfile::tempdir().expect("tempdir");
    let b = PgStore::connect(db.options(&cache_b), base, None)
        .await
        .expect("second store");
    let other = b.load().await.expect("load");
    let mut expected = config.clone();
    expected.plugins[0].path = b.plugin_path("geo-block");
    assert_ne!(expected.plugins[0].path, config.plugins[0].path);
    assert_eq!(other.config, expected);
    assert_eq!(
        std::fs::read(&other.config.plugins[0].path).expect("materialised component"),
        component
    );

    // Plaintext keys are never stored: they come back as their hash.
    let mut plain = loaded.config.clone();
    plain.consumers[1].keys = vec!["bob-plain-key".into()];
    b.commit(1, &plain, audit("update", "consumers/bob"))
        .await
        .expect("commit");
    let mut conn = db.conn().await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT sha256 FROM api_keys ORDER BY consumer")
        .fetch_all(&mut conn)
        .await
        .expect("keys");
    assert_eq!(
        stored,
        vec![
            sha256_hex(b"alice-secret-key"),
            sha256_hex(b"bob-plain-key")
        ]
    );
    let reloaded = a.load().await.expect("load");
    assert_eq!(
        reloaded.config.consumers[1].keys,
        vec![format!("sha256:{}", sha256_hex(b"bob-plain-key"))]
    );
    // Normalised rows, in document order.
    let filters: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT route, position, plugin FROM route_filters ORDER BY route, position",
    )
    .fetch_all(&mut conn)
    .await
    .expect("filters");
    assert_eq!(
        filters,
        vec![
            ("users-api".into(), 0, "rate-limit".into()),
            ("users-api".into(), 1, "key-auth".into()),
            ("users-api".into(), 2, "geo-block".into()),
        ]
    );
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_and_writes_nothing() {
    let db = TestDb::new().await;
    let cache = tempfile::tempdir().expect("tempdir");
    let a = db.store(&cache).await;
    let b = db.store(&cache).await;
    let doc = |prefix: &str| {
        parse_yaml(&format!(
            "upstreams:\n  - {{ name: u, targets: [127.0.0.1:1] }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: {prefix} }}, upstream: u }}\n"
        ))
        .expect("doc")
    };
    assert_eq!(
        a.commit(0, &doc("/a"), audit("create", "routes/r"))
            .await
            .expect("first"),
        1
    );
    match b.commit(0, &doc("/b"), audit("create", "routes/r")).await {
        Err(StoreError::Conflict { actual }) => assert_eq!(actual, 1),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let now = b.load().await.expect("load");
    assert_eq!(now.version, 1);
    assert_eq!(
        now.config.routes[0].matcher.path_prefix.as_deref(),
        Some("/a")
    );
    let entries = a
        .audit(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(entries.len(), 1, "the refused commit left no audit row");
    // Retried with the version it now knows, the write goes through.
    assert_eq!(
        b.commit(1, &doc("/b"), audit("update", "routes/r"))
            .await
            .expect("retry"),
        2
    );
}

#[tokio::test]
async fn a_commit_notifies_every_other_instance() {
    let db = TestDb::new().await;
    let cache = tempfile::tempdir().expect("tempdir");
    let a = db.store(&cache).await;
    let b = db.store(&cache).await;
    let mut changes = b.changes();
    assert_eq!(*changes.borrow_and_update(), 0);
    let doc = parse_yaml("upstreams:\n  - { name: u, targets: [127.0.0.1:1] }\n").expect("doc");
    for expected in 1..=3 {
        a.commit(expected - 1, &doc, audit("update", "upstreams/u"))
            .await
            .expect("commit");
        tokio::time::timeout(Duration::from_secs(5), changes.wait_for(|v| *v >= expected))
            .await
            .expect("the notification arrives within 5 s")
            .expect("store alive");
    }
    assert_eq!(
        b.load().await.expect("load").config.upstreams,
        doc.upstreams
    );

    // The listener's connection is killed: it reconnects and reads the version it missed.
    db.kill_connections().await;
    // A write during the listener's reconnect may be refused as unavailable; a client retries.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match a.commit(3, &doc, audit("update", "upstreams/u")).await {
            Ok(v) => break assert_eq!(v, 4),
            Err(StoreError::Unavailable(m)) => {
                assert!(tokio::time::Instant::now() < deadline, "{m}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("commit after the kill: {e}"),
        }
    }
    tokio::time::timeout(Duration::from_secs(10), changes.wait_for(|v| *v >= 4))
        .await
        .expect("version 4 seen within 10 s of the reconnect")
        .expect("store alive");
}

#[tokio::test]
async fn an_empty_database_is_seeded_once() {
    let db = TestDb::new().await;
    let cache = tempfile::tempdir().expect("tempdir");
    let seed = parse_yaml(
        "upstreams:\n  - { name: u, targets: [127.0.0.1:1] }\nroutes:\n  - { name: r, match: { path_prefix: / }, upstream: u }\nconsumers:\n  - { name: alice, keys: [alice-secret-key] }\n",
    )
    .expect("seed");
    let a = PgStore::connect(db.options(&cache), seed.clone(), Some(&seed))
        .await
        .expect("store");
    let first = a.load().await.expect("load");
    assert_eq!(first.version, 1);
    assert_eq!(first.config.routes, seed.routes);
    assert_eq!(
        first.config.consumers[0].keys,
        vec![format!("sha256:{}", sha256_hex(b"alice-secret-key"))]
    );
    // A second instance with a different file does not overwrite what is there.
    let other = parse_yaml("upstreams:\n  - { name: x, targets: [127.0.0.1:2] }\n").expect("doc");
    let b = PgStore::connect(db.options(&cache), other.clone(), Some(&other))
        .await
        .expect("store");
    let second = b.load().await.expect("load");
    assert_eq!(second.version, 1);
    assert_eq!(second.config.upstreams, seed.upstreams);
    let seeds = a
        .audit(&AuditQuery {
            actor: Some("bootstrap".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(seeds.len(), 1);
    assert_eq!(seeds[0].action, "seed");
}

#[tokio::test]
async fn users_tokens_and_the_audit_log() {
    let db = TestDb::new().await;
    let cache = tempfile::tempdir().expect("tempdir");
    let s = db.store(&cache).await;
    let ann = s
        .create_user("ann", Role::Operator, audit("create", "users/ann"))
        .await
        .expect("create");
    assert_eq!(ann.role, Role::Operator);
    assert!(
        ann.created_at.ends_with('Z') && ann.created_at.len() == 20,
        "{}",
        ann.created_at
    );
    match s
        .create_user("ann", Role::Admin, audit("create", "users/ann"))
        .await
    {
        Err(StoreError::Invalid(m)) => assert!(m.contains("already exists"), "{m}"),
        other => panic!("duplicate user: {other:?}"),
    }
    s.create_user("vic", Role::Viewer, audit("create", "users/vic"))
        .await
        .expect("create");
    let names: Vec<String> = s
        .list_users()
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["ann", "vic"]);

    let live = sha256_hex(b"token-live");
    let t1 = s
        .add_token("ann", &live, None, audit("create", "users/ann/tokens"))
        .await
        .expect("token");
    let expired = sha256_hex(b"token-expired");
    s.add_token(
        "ann",
        &expired,
        Some("2001-01-01T00:00:00Z".into()),
        audit("create", "users/ann/tokens"),
    )
    .await
    .expect("token");
    let later = sha256_hex(b"token-later");
    let t3 = s
        .add_token(
            "vic",
            &later,
            Some("2999-01-01T00:00:00Z".into()),
            audit("create", "users/vic/tokens"),
        )
        .await
        .expect("token");
    assert_eq!(t3.expires_at.as_deref(), Some("2999-01-01T00:00:00Z"));
    assert!(matches!(
        s.add_token(
            "nobody",
            &sha256_hex(b"x"),
            None,
            audit("create", "users/nobody/tokens")
        )
        .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.add_token(
            "ann",
            &sha256_hex(b"y"),
            Some("next tuesday".into()),
            audit("create", "t")
        )
        .await,
        Err(StoreError::Invalid(_))
    ));

    let p = s.principal_for(&live).await.expect("lookup");
    assert_eq!(
        p.map(|p| (p.user, p.role)),
        Some(("ann".to_owned(), Role::Operator))
    );
    assert_eq!(s.principal_for(&expired).await.expect("lookup"), None);
    assert_eq!(
        s.principal_for(&later)
            .await
            .expect("lookup")
            .map(|p| p.role),
        Some(Role::Viewer)
    );
    assert_eq!(
        s.principal_for(&sha256_hex(b"unknown"))
            .await
            .expect("lookup"),
        None
    );

    s.revoke_token("ann", t1.id, audit("revoke", "users/ann/tokens"))
        .await
        .expect("revoke");
    assert_eq!(s.principal_for(&live).await.expect("lookup"), None);
    assert!(matches!(
        s.revoke_token("vic", t1.id, audit("revoke", "users/vic/tokens"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    let tokens = s.list_tokens("ann").await.expect("list");
    assert_eq!(tokens.len(), 2);
    assert!(tokens[0].revoked && !tokens[1].revoked);

    s.delete_user("vic", audit("delete", "users/vic"))
        .await
        .expect("delete");
    assert_eq!(s.principal_for(&later).await.expect("lookup"), None);
    assert!(s.list_tokens("vic").await.expect("list").is_empty());
    assert!(matches!(
        s.delete_user("vic", audit("delete", "users/vic")).await,
        Err(StoreError::NotFound(_))
    ));

    // The audit log: newest first, filtered by actor, resource prefix and time.
    let mut other = audit("create", "routes/r");
    other.actor = "someone".into();
    s.create_user("zed", Role::Admin, other)
        .await
        .expect("create");
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let all = s.audit(&q(|_| {})).await.expect("audit");
    assert_eq!(all.len(), 8);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(all[0].actor, "someone");
    assert_eq!(
        all[0].after,
        Some(serde_json::json!({ "what": "routes/r" }))
    );
    let counts = [
        q(|q| q.actor = Some("someone".into())),
        q(|q| q.resource_prefix = Some("users/ann/".into())),
        q(|q| q.limit = 2),
        q(|q| q.since = Some("2999-01-01T00:00:00Z".into())),
        q(|q| q.until = Some("2001-01-01T00:00:00Z".into())),
    ];
    let mut got = Vec::new();
    for query in &counts {
        got.push(s.audit(query).await.expect("audit").len());
    }
    assert_eq!(
        got,
        [1, 3, 2, 0, 0],
        "by actor, resource prefix, limit, since, until"
    );

    // Tokens are kept only as their hash.
    let mut conn = db.conn().await;
    let hashes: Vec<String> = sqlx::query_scalar("SELECT sha256 FROM admin_tokens")
        .fetch_all(&mut conn)
        .await
        .expect("tokens");
    assert!(hashes.iter().all(|h| h.len() == 64));

    // Plugin uploads: bytes and hash kept, a wrong hash refused.
    let blob = PluginBlob {
        name: "p".into(),
        sha256: sha256_hex(b"\0asm"),
        bytes: b"\0asm".to_vec(),
    };
    s.put_plugin(blob, audit("upload", "plugins/p"))
        .await
        .expect("upload");
    let back = s.plugin_bytes("p").await.expect("read").expect("present");
    assert_eq!(
        (back.sha256.as_str(), back.bytes.as_slice()),
        (sha256_hex(b"\0asm").as_str(), &b"\0asm"[..])
    );
    assert!(s.plugin_bytes("q").await.expect("read").is_none());
    assert!(matches!(
        s.put_plugin(
            PluginBlob {
                name: "p".into(),
                sha256: sha256_hex(b"other"),
                bytes: b"\0asm".to_vec(),
            },
            audit("upload", "plugins/p")
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn an_unreachable_database_fails_writes_and_recovers() {
    let db = TestDb::new().await;
    let cache = tempfile::tempdir().expect("tempdir");
    let s = db.store(&cache).await;
    assert!(s.healthy().await);
    let doc = parse_yaml("upstreams:\n  - { name: u, targets: [127.0.0.1:1] }\n").expect("doc");
    db.cut().await;
    let mut up = s.up();
    tokio::time::timeout(Duration::from_secs(10), up.wait_for(|u| !*u))
        .await
        .expect("the store notices within 10 s")
        .expect("alive");
    assert!(!s.healthy().await);
    match s.commit(0, &doc, audit("update", "upstreams/u")).await {
        Err(StoreError::Unavailable(m)) => assert!(!m.is_empty()),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(matches!(s.load().await, Err(StoreError::Unavailable(_))));
    db.restore().await;
    tokio::time::timeout(Duration::from_secs(15), up.wait_for(|u| *u))
        .await
        .expect("back within 15 s")
        .expect("alive");
    assert_eq!(
        s.commit(0, &doc, audit("update", "upstreams/u"))
            .await
            .expect("writes work again"),
        1
    );
}

/// `request_logs` settings for the request-log tests.
fn gateway_doc(db: &TestDb, up: std::net::SocketAddr, request_logs: &str) -> String {
    format!(
        "database_url: {}\nrequest_logs: {request_logs}\nupstreams:\n{}consumers:\n  - {{ name: alice, keys: [alice-key] }}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: u\n    filters:\n      - {{ plugin: key-auth, timeout: 500ms, config: {{ header: apikey }} }}\n",
        db.url,
        upstream_yaml("u", &[up], "")
    )
}

async fn count_logs(db: &TestDb) -> i64 {
    let mut conn = db.conn().await;
    sqlx::query_scalar("SELECT count(*) FROM request_logs")
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

#[tokio::test]
async fn request_logs_land_in_batches() {
    let db = TestDb::new().await;
    let up = echo_upstream().await;
    let gw = gateway(&gateway_doc(
        &db,
        up.addr,
        "{ batch: 40, flush_interval: 50ms, queue: 1000 }",
    ))
    .await;
    let total = 120;
    let mut tasks = Vec::new();
    for i in 0..total {
        let url = gw.url(&format!("/things/{i}"));
        tasks.push(tokio::spawn(async move {
            let key = if i % 10 == 0 { "wrong" } else { "alice-key" };
            get_with(&url, &[("apikey", key)]).await.status
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count_logs(&db).await < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "request logs not written within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count_logs(&db).await, total);
    let mut conn = db.conn().await;
    // Rows written by one statement share its transaction id.
    let statements: i64 = sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM request_logs")
        .fetch_one(&mut conn)
        .await
        .expect("xmin");
    assert!(
        (3..total / 4).contains(&statements),
        "{total} rows in {statements} inserts (batches of at most 40)"
    );
    let (route, consumer, method, status, filters): (Option<String>, Option<String>, String, i16, serde_json::Value) =
        sqlx::query_as(
            "SELECT route, consumer, method, status, filters FROM request_logs WHERE path = '/things/1'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("row");
    assert_eq!(route.as_deref(), Some("r"));
    assert_eq!(consumer.as_deref(), Some("alice"));
    assert_eq!((method.as_str(), status), ("GET", 200));
    assert_eq!(filters[0]["plugin"], "key-auth");
    assert_eq!(filters[0]["phase"], "request");
    let refused: (Option<String>, i16) =
        sqlx::query_as("SELECT consumer, status FROM request_logs WHERE path = '/things/10'")
            .fetch_one(&mut conn)
            .await
            .expect("row");
    assert_eq!(refused, (None, 401));
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "ferrox_request_log_dropped_total"),
        Some(0.0)
    );
    assert_eq!(metric_value(&m, "ferrox_store_up"), Some(1.0));

    // Retention deletes old rows.
    sqlx::query("UPDATE request_logs SET at = now() - interval '8 days' WHERE path = '/things/1'")
        .execute(&mut conn)
        .await
        .expect("age a row");
    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    let deleted = ferrox_host::reqlog::delete_older_than(&pool, Duration::from_secs(7 * 86400))
        .await
        .expect("delete");
    assert_eq!(deleted, 1);
    assert_eq!(count_logs(&db).await, total - 1);
    pool.close().await;
    gw.running.shutdown().await;
}

#[tokio::test]
async fn a_full_request_log_queue_drops_and_counts_without_blocking() {
    let db = TestDb::new().await;
    let up = echo_upstream().await;
    let gw = gateway(&gateway_doc(
        &db,
        up.addr,
        "{ batch: 2, flush_interval: 1ms, queue: 3 }",
    ))
    .await;
    // Hold the table: the writer's first insert waits on the lock while requests keep coming.
    let mut holder = db.conn().await;
    let mut tx = holder.begin().await.expect("begin");
    sqlx::query("LOCK TABLE request_logs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .expect("lock");
    let total = 60;
    let started = std::time::Instant::now();
    for i in 0..total {
        let r = get_with(&gw.url(&format!("/q/{i}")), &[("apikey", "alice-key")]).await;
        assert_eq!(r.status, 200, "requests are served while the log is stuck");
    }
    let served_in = started.elapsed();
    let m = gw.metrics().await;
    let dropped = metric_value(&m, "ferrox_request_log_dropped_total").expect("counter") as i64;
    // At most one batch in the writer's hands and a full queue are kept.
    assert!(dropped >= total - 2 - 3, "dropped {dropped} of {total}");
    tx.rollback().await.expect("release the lock");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count_logs(&db).await + dropped < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the kept entries are written after the lock goes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        count_logs(&db).await + dropped,
        total,
        "every entry is written or counted"
    );
    eprintln!("{total} requests served in {served_in:?} with the request log table locked");
    gw.running.shutdown().await;
}

#[tokio::test]
async fn ferrox_migrate_applies_the_schema_once() {
    let db = TestDb::new().await;
    let run = |url: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferrox"))
            .args(["migrate", "--database-url", &url])
            .env_remove("FERROX_DATABASE_URL")
            .output()
            .expect("run ferrox migrate")
    };
    let first = run(db.url.clone());
    assert!(first.status.success(), "{first:?}");
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        "applied migration 1\napplied migration 2\n"
    );
    let again = run(db.url.clone());
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "the schema is up to date\n"
    );
    let mut conn = db.conn().await;
    let version: i64 = sqlx::query_scalar("SELECT version FROM config_version")
        .fetch_one(&mut conn)
        .await
        .expect("the one-row version table exists");
    assert_eq!(version, 0);
    let bad = run("mysql://nope".into());
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a PostgreSQL URL"),
        "{bad:?}"
    );
}
