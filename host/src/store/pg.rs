//! The PostgreSQL config store: the document in normalised tables (`migrations/`), admin users,
//! tokens, the audit log and uploaded components, shared by every instance on one database.
//!
//! A commit replaces the document's rows in one transaction guarded by the version in
//! `config_version` and ends with `NOTIFY ferrox_config, '<version>'`. A listener task feeds
//! [`PgStore::changes`]; when its connection drops it reconnects with backoff and re-reads the
//! version, so a notification missed meanwhile is not lost. While PostgreSQL cannot be reached,
//! [`PgStore::healthy`] answers `false` from cached state, writes fail with
//! [`StoreError::Unavailable`] and the instance keeps serving the snapshot it has.
//!
//! The database holds `upstreams`, `routes`, `consumers` and `plugins`; the other settings
//! (`listen`, `tls`, `admin`, `state`, `state_options`, `server`) are each instance's bootstrap
//! settings and come from its file and flags. Uploaded components are written to a local cache
//! folder and `plugins[].path` points there when the document is loaded.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor, Postgres, Row, Transaction};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{
    AdminUser, AuditEntry, AuditQuery, NewAudit, PluginBlob, Principal, Role, StoreError, Stored,
    TokenInfo, Version, sha256_hex,
};
use crate::config::units::{ByteSize, Dur};
use crate::config::{
    ConsumerConfig, FilterConfig, GatewayConfig, JwtCredentialConfig, MatchConfig, PluginConfig,
    RouteConfig, UpstreamConfig,
};

/// The channel commits notify on; the payload is the new version.
pub const CHANNEL: &str = "ferrox_config";

/// The schema migrations, embedded in the binary (the files in `migrations/`).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "control plane",
        include_str!("../../../migrations/0001_control_plane.sql"),
    ),
    (
        2,
        "instances",
        include_str!("../../../migrations/0002_instances.sql"),
    ),
];

/// The migrator for [`MIGRATIONS`].
pub fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(*sql).into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

use sqlx::SqlSafeStr as _;

/// Apply every pending migration; returns the versions applied now.
pub async fn migrate(pool: &PgPool) -> Result<Vec<i64>, StoreError> {
    let before: Vec<i64> = applied_versions(pool).await;
    migrator()
        .run(pool)
        .await
        .map_err(|e| StoreError::Unavailable(format!("migrations failed: {e}")))?;
    let after = applied_versions(pool).await;
    Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
}

async fn applied_versions(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await
        .unwrap_or_default()
}

/// How to reach the database and where to keep uploaded components.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `postgres://user[:password]@host[:port]/database[?sslmode=…]`.
    pub url: String,
    /// The folder uploaded components are written to (default: the user's cache folder).
    pub cache_dir: Option<PathBuf>,
    /// How long a write waits for a connection before failing as unavailable.
    pub acquire_timeout: Duration,
    /// Most connections this instance opens (the listener holds one of them).
    pub max_connections: u32,
}

impl PgOptions {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cache_dir: None,
            acquire_timeout: Duration::from_secs(2),
            max_connections: 8,
        }
    }
}

/// Parse a database URL; the error never repeats a password.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Invalid(
            "database_url: not a PostgreSQL URL (postgres://user@host:port/db)".into(),
        ));
    }
    url.parse::<PgConnectOptions>()
        .map(|o| o.application_name("ferrox"))
        .map_err(|e| {
            StoreError::Invalid(format!(
                "database_url: not a PostgreSQL URL (postgres://user@host:port/db): {}",
                redact(&e.to_string())
            ))
        })
}

/// Connect a pool (no query is made yet).
pub fn pool(opts: &PgOptions) -> Result<PgPool, StoreError> {
    Ok(PgPoolOptions::new()
        .max_connections(opts.max_connections.max(2))
        .acquire_timeout(opts.acquire_timeout)
        .connect_lazy_with(connect_options(&opts.url)?))
}

fn redact(s: &str) -> String {
    // `scheme://user:password@host` → `scheme://user:***@host`
    match (s.find("://"), s.find('@')) {
        (Some(i), Some(at)) if at > i => {
            let creds = &s[i + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &s[..i + 3], &creds[..c], &s[at..]),
                None => s.to_owned(),
            }
        }
        _ => s.to_owned(),
    }
}

/// Open the store `config.database_url` names (the caller checked it is set): migrations run,
/// an empty database is seeded with `config`'s document, and `config` gives the bootstrap
/// settings.
pub async fn open(url: &str, config: &GatewayConfig) -> Result<PgStore, StoreError> {
    PgStore::connect(PgOptions::new(url), config.clone(), Some(config)).await
}

/// What PostgreSQL mode adds to a running instance: `ferrox_store_up` follows the store, and
/// request logs are written when `settings.enabled`. Nothing for the other stores.
pub fn attach(
    store: &super::Store,
    gateway: &crate::gateway::Gateway,
    settings: &crate::config::RequestLogsConfig,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let super::Store::Postgres(pg) = store else {
        return Vec::new();
    };
    let mut tasks = Vec::new();
    let gauge = gateway.metrics.store_up.clone();
    let mut up = pg.up();
    let mut stop_gauge = stop.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            gauge.set(i64::from(*up.borrow_and_update()));
            tokio::select! {
                changed = up.changed() => if changed.is_err() { return },
                _ = stop_gauge.wait_for(|s| *s) => return,
            }
        }
    }));
    if settings.enabled {
        let (log, writers) = crate::reqlog::spawn(
            pg.pool().clone(),
            settings,
            gateway.metrics.request_log_dropped.clone(),
            stop.clone(),
        );
        // Attached once per instance; a second writer would only idle until `stop`.
        let _ = gateway.request_log.set(log);
        tasks.extend(writers);
    }
    tasks
}

/// The PostgreSQL store of one instance.
pub struct PgStore {
    pool: PgPool,
    describe: String,
    /// The bootstrap settings the document is completed with on load.
    base: GatewayConfig,
    cache_dir: PathBuf,
    /// SHA-256 of each component already written to `cache_dir` by this process.
    materialised: Mutex<HashMap<String, String>>,
    version: watch::Sender<Version>,
    up: Arc<watch::Sender<bool>>,
    /// Whether the LISTEN connection is up: while it is not, operations fail at once.
    listening: Arc<AtomicBool>,
    listener: JoinHandle<()>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.describe)
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PgStore {
    /// Connect, apply pending migrations, seed an empty database with `seed`'s document, and
    /// start following changes. `base` gives the bootstrap settings (everything but upstreams,
    /// routes, consumers and plugins) of the documents [`load`](Self::load) returns.
    pub async fn connect(
        opts: PgOptions,
        base: GatewayConfig,
        seed: Option<&GatewayConfig>,
    ) -> Result<Self, StoreError> {
        let connect = connect_options(&opts.url)?;
        let describe = format!(
            "postgres {}:{}/{}",
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or("postgres")
        );
        let pool = pool(&opts)?;
        migrate(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("{describe}: {e}")))?;
        let cache_dir = match opts.cache_dir {
            Some(d) => d,
            None => default_cache_dir(&describe),
        };
        let current: Version = sqlx::query_scalar("SELECT version FROM config_version")
            .fetch_one(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("{describe}: {e}")))?;
        let (version, _) = watch::channel(current);
        let (up, _) = watch::channel(true);
        let up = Arc::new(up);
        let listening = Arc::new(AtomicBool::new(true));
        let listener = tokio::spawn(listen(
            pool.clone(),
            version.clone(),
            up.clone(),
            listening.clone(),
        ));
        let store = Self {
            pool,
            describe,
            base: bootstrap_only(base),
            cache_dir,
            materialised: Mutex::new(HashMap::new()),
            version,
            up,
            listening,
            listener,
        };
        if current == 0
            && let Some(seed) = seed
        {
            let audit = NewAudit {
                actor: "bootstrap".into(),
                action: "seed".into(),
                resource: "config".into(),
                before: None,
                after: None,
            };
            match store.commit(0, seed, audit).await {
                Ok(v) => tracing::info!(version = v, "empty database seeded from the config file"),
                // Another instance seeded it first.
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(store)
    }

    /// The connection pool (request logs share it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether PostgreSQL answered the last time it was used; follows every change.
    pub fn up(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// `postgres host:port/db`.
    pub fn describe(&self) -> String {
        self.describe.clone()
    }

    /// Whether PostgreSQL answered the last time it was used (cached; never waits).
    pub async fn healthy(&self) -> bool {
        *self.up.borrow()
    }

    /// The newest version known.
    pub fn changes(&self) -> watch::Receiver<Version> {
        self.version.subscribe()
    }

    /// Where the uploaded component `name` is written on this machine.
    pub fn plugin_path(&self, name: &str) -> String {
        self.cache_dir
            .join(format!("{name}.wasm"))
            .display()
            .to_string()
    }

    /// Map a database error, noting when PostgreSQL is out of reach.
    fn fail(&self, e: sqlx::Error) -> StoreError {
        let mapped = map_error(e);
        if matches!(mapped, StoreError::Unavailable(_)) {
            self.up.send_if_modified(|u| std::mem::replace(u, false));
        }
        mapped
    }

    /// PostgreSQL just answered.
    fn mark_up(&self) {
        self.up.send_if_modified(|u| !std::mem::replace(u, true));
    }

    fn saw_version(&self, v: Version) {
        self.version.send_if_modified(|cur| {
            if v > *cur {
                *cur = v;
                true
            } else {
                false
            }
        });
    }

    /// Record `audit` in `tx` and commit it.
    async fn finish(
        &self,
        mut tx: Transaction<'static, Postgres>,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        insert_audit(&mut tx, audit)
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        self.mark_up();
        Ok(())
    }

    /// Fail at once while the listener knows PostgreSQL is out of reach, instead of waiting
    /// for a connection that will not come (admin calls answer 503 without delay).
    fn reachable(&self) -> Result<(), StoreError> {
        if self.listening.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "{} is unreachable; reconnecting in the background",
                self.describe
            )))
        }
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.reachable()?;
        self.pool.begin().await.map_err(|e| self.fail(e))
    }

    /// The current document and its version, read in one consistent snapshot.
    pub async fn load(&self) -> Result<Stored, StoreError> {
        let mut tx = self.begin().await?;
        let result = read_document(&mut tx).await;
        let (version, mut docs, plugins) = match result {
            Ok(r) => r,
            Err(e) => return Err(self.fail(e)),
        };
        let _ = tx.commit().await;
        docs.plugins = Vec::with_capacity(plugins.len());
        for p in plugins {
            let path = self.materialise(&p.name, &p.sha256).await?;
            docs.plugins.push(PluginConfig {
                name: p.name,
                path,
                grants: p.grants,
            });
        }
        let mut config = self.base.clone();
        config.upstreams = docs.upstreams;
        config.routes = docs.routes;
        config.consumers = docs.consumers;
        config.plugins = docs.plugins;
        self.saw_version(version);
        self.mark_up();
        Ok(Stored { version, config })
    }

    /// Write the component `name` (with hash `sha256`) to the cache folder unless it is there.
    async fn materialise(&self, name: &str, sha256: &str) -> Result<String, StoreError> {
        let path = self.plugin_path(name);
        let known = self
            .materialised
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .is_some_and(|s| s == sha256);
        if known {
            return Ok(path);
        }
        let on_disk = tokio::fs::read(&path)
            .await
            .ok()
            .is_some_and(|b| sha256_hex(&b) == sha256);
        if !on_disk {
            let bytes: Vec<u8> = sqlx::query_scalar("SELECT bytes FROM plugins WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.fail(e))?;
            write_atomic(&self.cache_dir, Path::new(&path), &bytes)
                .await
                .map_err(|e| {
                    StoreError::Unavailable(format!(
                        "cannot write plugin {name} to {}: {e}",
                        self.cache_dir.display()
                    ))
                })?;
        }
        self.materialised
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), sha256.to_owned());
        Ok(path)
    }

    /// Replace the document if the stored version is still `expected`; records `audit` and
    /// notifies every instance in the same transaction.
    pub async fn commit(
        &self,
        expected: Version,
        config: &GatewayConfig,
        audit: NewAudit,
    ) -> Result<Version, StoreError> {
        // Components are read before the transaction: nothing slow happens while it is open.
        let mut components = Vec::with_capacity(config.plugins.len());
        for (i, p) in config.plugins.iter().enumerate() {
            let bytes = tokio::fs::read(&p.path).await.map_err(|e| {
                StoreError::Invalid(format!("plugins[{i}].path: cannot read {}: {e}", p.path))
            })?;
            components.push((sha256_hex(&bytes), bytes));
        }
        let rows = Rows::from_config(config)?;
        let mut tx = self.begin().await?;
        let bumped: Option<Version> = sqlx::query_scalar(
            "UPDATE config_version SET version = version + 1, updated_at = now() \
             WHERE version = $1 RETURNING version",
        )
        .bind(expected)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.fail(e))?;
        let Some(version) = bumped else {
            let actual: Version = sqlx::query_scalar("SELECT version FROM config_version")
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.fail(e))?;
            self.saw_version(actual);
            return Err(StoreError::Conflict { actual });
        };
        let written = write_document(&mut tx, &rows, config, &components).await;
        let written = match written {
            Ok(()) => insert_audit(&mut tx, &audit).await,
            Err(e) => Err(e),
        };
        written.map_err(|e| self.fail(e))?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(version.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        for ((sha, _), p) in components.iter().zip(&config.plugins) {
            // The committing instance already has the bytes where the document says.
            if Path::new(&p.path) == Path::new(&self.plugin_path(&p.name)) {
                self.materialised
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(p.name.clone(), sha.clone());
            }
        }
        self.saw_version(version);
        self.mark_up();
        Ok(version)
    }

    /// Audit entries matching `q`, newest first.
    pub async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.reachable()?;
        let rows = sqlx::query(
            "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at, \
                    actor, action, resource, before, after \
             FROM audit_log \
             WHERE ($1::text IS NULL OR actor = $1) \
               AND ($2::text IS NULL OR starts_with(resource, $2)) \
               AND ($3::timestamptz IS NULL OR at >= $3::timestamptz) \
               AND ($4::timestamptz IS NULL OR at <= $4::timestamptz) \
             ORDER BY id DESC LIMIT $5",
        )
        .bind(&q.actor)
        .bind(&q.resource_prefix)
        .bind(&q.since)
        .bind(&q.until)
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        let entries = rows
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    resource: r.try_get("resource")?,
                    before: r.try_get("before")?,
                    after: r.try_get("after")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(|e| self.fail(e))?;
        self.mark_up();
        Ok(entries)
    }

    /// Create a named admin user.
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        audit: NewAudit,
    ) -> Result<AdminUser, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(format_sql(
            "INSERT INTO admin_users (name, role) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING RETURNING name, role, {created}",
            "created_at",
        ))
        .bind(name)
        .bind(role.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.fail(e))?;
        let Some(row) = row else {
            return Err(StoreError::Invalid(format!("user {name} already exists")));
        };
        let user = user_from_row(&row).map_err(|e| self.fail(e))?;
        self.finish(tx, &audit).await?;
        Ok(user)
    }

    /// Every admin user, by name.
    pub async fn list_users(&self) -> Result<Vec<AdminUser>, StoreError> {
        self.reachable()?;
        let rows = sqlx::query(format_sql(
            "SELECT name, role, {created} FROM admin_users ORDER BY name",
            "created_at",
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        let users = rows
            .iter()
            .map(user_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.fail(e))?;
        self.mark_up();
        Ok(users)
    }

    /// Delete a user and their tokens.
    pub async fn delete_user(&self, name: &str, audit: NewAudit) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM admin_users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(e))?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {name}")));
        }
        self.finish(tx, &audit).await?;
        Ok(())
    }

    /// Store a token of `user` by its SHA-256.
    pub async fn add_token(
        &self,
        user: &str,
        token_sha256: &str,
        expires_at: Option<String>,
        audit: NewAudit,
    ) -> Result<TokenInfo, StoreError> {
        let mut tx = self.begin().await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT name FROM admin_users WHERE name = $1")
                .bind(user)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.fail(e))?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("user {user}")));
        }
        let row = sqlx::query(format_sql(
            "INSERT INTO admin_tokens (user_name, sha256, expires_at) \
             VALUES ($1, $2, $3::timestamptz) RETURNING id, user_name, revoked, {created}, {expires}",
            "created_at",
        ))
        .bind(user)
        .bind(token_sha256)
        .bind(&expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.fail(e))?;
        let token = token_from_row(&row).map_err(|e| self.fail(e))?;
        self.finish(tx, &audit).await?;
        Ok(token)
    }

    /// The tokens of `user`, oldest first (no secrets).
    pub async fn list_tokens(&self, user: &str) -> Result<Vec<TokenInfo>, StoreError> {
        self.reachable()?;
        let rows = sqlx::query(format_sql(
            "SELECT id, user_name, revoked, {created}, {expires} FROM admin_tokens \
             WHERE user_name = $1 ORDER BY id",
            "created_at",
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        let tokens = rows
            .iter()
            .map(token_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.fail(e))?;
        self.mark_up();
        Ok(tokens)
    }

    /// Revoke token `id` of `user`.
    pub async fn revoke_token(
        &self,
        user: &str,
        id: i64,
        audit: NewAudit,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done =
            sqlx::query("UPDATE admin_tokens SET revoked = true WHERE id = $1 AND user_name = $2")
                .bind(id)
                .bind(user)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.fail(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {id} of user {user}")));
        }
        self.finish(tx, &audit).await?;
        Ok(())
    }

    /// The user a hashed token belongs to, if it is valid now.
    pub async fn principal_for(&self, token_sha256: &str) -> Result<Option<Principal>, StoreError> {
        self.reachable()?;
        let row = sqlx::query(
            "SELECT u.name, u.role FROM admin_tokens t JOIN admin_users u ON u.name = t.user_name \
             WHERE t.sha256 = $1 AND NOT t.revoked \
               AND (t.expires_at IS NULL OR t.expires_at > now())",
        )
        .bind(token_sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        let principal = match row {
            None => None,
            Some(r) => {
                let user: String = r.try_get("name").map_err(|e| self.fail(e))?;
                let role: String = r.try_get("role").map_err(|e| self.fail(e))?;
                Some(Principal {
                    user,
                    role: parse_role(&role)?,
                })
            }
        };
        self.mark_up();
        Ok(principal)
    }

    /// Keep an uploaded component (not yet declared by the document unless it already was)
    /// and write it to this machine's cache folder.
    pub async fn put_plugin(&self, blob: PluginBlob, audit: NewAudit) -> Result<(), StoreError> {
        let sha = sha256_hex(&blob.bytes);
        if !blob.sha256.is_empty() && !blob.sha256.eq_ignore_ascii_case(&sha) {
            return Err(StoreError::Invalid(format!(
                "plugin {}: sha256 {} does not match the bytes ({sha})",
                blob.name, blob.sha256
            )));
        }
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO plugins (name, sha256, bytes) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET sha256 = $2, bytes = $3, uploaded_at = now()",
        )
        .bind(&blob.name)
        .bind(&sha)
        .bind(&blob.bytes)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.fail(e))?;
        insert_audit(&mut tx, &audit)
            .await
            .map_err(|e| self.fail(e))?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        let path = self.plugin_path(&blob.name);
        write_atomic(&self.cache_dir, Path::new(&path), &blob.bytes)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot write {path}: {e}")))?;
        self.materialised
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(blob.name, sha);
        self.mark_up();
        Ok(())
    }

    /// An uploaded component's bytes.
    pub async fn plugin_bytes(&self, name: &str) -> Result<Option<PluginBlob>, StoreError> {
        self.reachable()?;
        let row = sqlx::query("SELECT name, sha256, bytes FROM plugins WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail(e))?;
        let blob = match row {
            None => None,
            Some(r) => Some(PluginBlob {
                name: r.try_get("name").map_err(|e| self.fail(e))?,
                sha256: r.try_get("sha256").map_err(|e| self.fail(e))?,
                bytes: r.try_get("bytes").map_err(|e| self.fail(e))?,
            }),
        };
        self.mark_up();
        Ok(blob)
    }
}

/// Timestamps as RFC 3339 UTC with seconds, as the other stores write them.
fn format_sql(template: &str, created: &str) -> sqlx::AssertSqlSafe<String> {
    let ts = |col: &str| {
        format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS {col}")
    };
    sqlx::AssertSqlSafe(
        template
            .replace("{created}", &ts(created))
            .replace("{expires}", &ts("expires_at")),
    )
}

fn parse_role(s: &str) -> Result<Role, StoreError> {
    match s {
        "admin" => Ok(Role::Admin),
        "operator" => Ok(Role::Operator),
        "viewer" => Ok(Role::Viewer),
        other => Err(StoreError::Invalid(format!("unknown role {other:?}"))),
    }
}

fn user_from_row(r: &PgRow) -> Result<AdminUser, sqlx::Error> {
    let role: String = r.try_get("role")?;
    Ok(AdminUser {
        name: r.try_get("name")?,
        role: parse_role(&role).map_err(|e| sqlx::Error::Decode(e.to_string().into()))?,
        created_at: r.try_get("created_at")?,
    })
}

fn token_from_row(r: &PgRow) -> Result<TokenInfo, sqlx::Error> {
    Ok(TokenInfo {
        id: r.try_get("id")?,
        user: r.try_get("user_name")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked: r.try_get("revoked")?,
    })
}

/// SQLSTATE classes that are the request's fault; everything else means PostgreSQL cannot
/// serve it now.
fn map_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        let code = d.code().unwrap_or_default();
        // 22: data exception, 23: integrity constraint violation.
        if code.starts_with("22") || code.starts_with("23") {
            return StoreError::Invalid(d.message().to_owned());
        }
    }
    if let sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } = &e {
        return StoreError::Invalid(format!("stored data cannot be read: {e}"));
    }
    StoreError::Unavailable(redact(&e.to_string()))
}

async fn insert_audit(
    tx: &mut Transaction<'static, Postgres>,
    a: &NewAudit,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (actor, action, resource, before, after) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&a.actor)
    .bind(&a.action)
    .bind(&a.resource)
    .bind(&a.before)
    .bind(&a.after)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Everything of `config` but the four collections the database holds.
fn bootstrap_only(mut config: GatewayConfig) -> GatewayConfig {
    config.upstreams.clear();
    config.routes.clear();
    config.consumers.clear();
    config.plugins.clear();
    config
}

fn default_cache_dir(describe: &str) -> PathBuf {
    let base = std::env::var_os("FERROX_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("ferrox")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/ferrox")))
        .unwrap_or_else(|| std::env::temp_dir().join("ferrox"));
    // One folder per database, so two databases never share component files.
    let key: String = describe
        .trim_start_matches("postgres ")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    base.join("components").join(key)
}

/// Write `bytes` to `path` through a uniquely named temporary file in `dir` and a rename.
async fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let tmp = dir.join(format!(".tmp-{:016x}", fastrand::u64(..)));
    tokio::fs::write(&tmp, bytes).await?;
    let renamed = tokio::fs::rename(&tmp, path).await;
    if renamed.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    renamed
}

// ---------------------------------------------------------------------------------------------
// The document ↔ rows.

fn to_text<T: Serialize>(v: &T) -> Result<String, StoreError> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Ok(other.to_string()),
        Err(e) => Err(StoreError::Invalid(e.to_string())),
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(v).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn from_text<T: DeserializeOwned>(s: String) -> Result<T, sqlx::Error> {
    serde_json::from_value(serde_json::Value::String(s))
        .map_err(|e| sqlx::Error::Decode(e.to_string().into()))
}

fn from_json<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, sqlx::Error> {
    serde_json::from_value(v).map_err(|e| sqlx::Error::Decode(e.to_string().into()))
}

fn size(v: ByteSize, path: &str) -> Result<i64, StoreError> {
    i64::try_from(v.0).map_err(|_| StoreError::Invalid(format!("{path}: too large")))
}

fn position(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

/// The SHA-256 (hex) of an API key as the document holds it (`sha256:<hex>` or plaintext).
fn key_hash(key: &str) -> String {
    match key.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            hex.to_ascii_lowercase()
        }
        _ => sha256_hex(key.as_bytes()),
    }
}

/// Serialised parts of a document checked before the transaction opens.
struct Rows {
    upstreams: Vec<UpstreamRow>,
    routes: Vec<RouteRow>,
}

struct UpstreamRow {
    balance: String,
    health_check: Option<serde_json::Value>,
    circuit_breaker: serde_json::Value,
    timeouts: serde_json::Value,
    retry_budget: serde_json::Value,
    protocol: String,
    tls: Option<serde_json::Value>,
}

struct RouteRow {
    headers: serde_json::Value,
    max_body: i64,
    filters: Vec<FilterRow>,
}

struct FilterRow {
    on_error: String,
    isolation: String,
    timeout: String,
    memory: i64,
}

impl Rows {
    fn from_config(c: &GatewayConfig) -> Result<Self, StoreError> {
        let upstreams = c
            .upstreams
            .iter()
            .map(|u| {
                Ok(UpstreamRow {
                    balance: to_text(&u.balance)?,
                    health_check: u.health_check.as_ref().map(to_json).transpose()?,
                    circuit_breaker: to_json(&u.circuit_breaker)?,
                    timeouts: to_json(&u.timeouts)?,
                    retry_budget: to_json(&u.retry_budget)?,
                    protocol: to_text(&u.protocol)?,
                    tls: u.tls.as_ref().map(to_json).transpose()?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let routes = c
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Ok(RouteRow {
                    headers: to_json(&r.matcher.headers)?,
                    max_body: size(r.max_body, &format!("routes[{i}].max_body"))?,
                    filters: r
                        .filters
                        .iter()
                        .enumerate()
                        .map(|(j, f)| {
                            Ok(FilterRow {
                                on_error: to_text(&f.on_error)?,
                                isolation: to_text(&f.isolation)?,
                                timeout: f.timeout.to_string(),
                                memory: size(
                                    f.memory,
                                    &format!("routes[{i}].filters[{j}].memory"),
                                )?,
                            })
                        })
                        .collect::<Result<_, StoreError>>()?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Self { upstreams, routes })
    }
}

async fn write_document(
    tx: &mut Transaction<'static, Postgres>,
    rows: &Rows,
    c: &GatewayConfig,
    components: &[(String, Vec<u8>)],
) -> Result<(), sqlx::Error> {
    tx.execute(
        "DELETE FROM route_filters; DELETE FROM routes; DELETE FROM targets; \
         DELETE FROM upstreams; DELETE FROM api_keys; DELETE FROM jwt_credentials; \
         DELETE FROM consumers; UPDATE plugins SET position = NULL WHERE position IS NOT NULL;",
    )
    .await?;
    for (i, (u, row)) in c.upstreams.iter().zip(&rows.upstreams).enumerate() {
        sqlx::query(
            "INSERT INTO upstreams (name, position, balance, hash_header, health_check, \
             circuit_breaker, timeouts, retries, retry_budget, protocol, preserve_host, tls) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&u.name)
        .bind(position(i))
        .bind(&row.balance)
        .bind(&u.hash_header)
        .bind(&row.health_check)
        .bind(&row.circuit_breaker)
        .bind(&row.timeouts)
        .bind(i64::from(u.retries))
        .bind(&row.retry_budget)
        .bind(&row.protocol)
        .bind(u.preserve_host)
        .bind(&row.tls)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO targets (upstream, position, target) \
             SELECT $1, t.ord::integer - 1, t.target FROM unnest($2::text[]) WITH ORDINALITY AS t(target, ord)",
        )
        .bind(&u.name)
        .bind(&u.targets)
        .execute(&mut **tx)
        .await?;
    }
    for (i, (p, (sha, bytes))) in c.plugins.iter().zip(components).enumerate() {
        // Bytes are only sent when they changed.
        let stored: Option<String> =
            sqlx::query_scalar("SELECT sha256 FROM plugins WHERE name = $1")
                .bind(&p.name)
                .fetch_optional(&mut **tx)
                .await?;
        if stored.as_deref() == Some(sha.as_str()) {
            sqlx::query("UPDATE plugins SET position = $2, grants = $3 WHERE name = $1")
                .bind(&p.name)
                .bind(position(i))
                .bind(&p.grants)
                .execute(&mut **tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO plugins (name, position, sha256, bytes, grants) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name) DO UPDATE SET position = $2, sha256 = $3, bytes = $4, \
                 grants = $5, uploaded_at = now()",
            )
            .bind(&p.name)
            .bind(position(i))
            .bind(sha)
            .bind(bytes)
            .bind(&p.grants)
            .execute(&mut **tx)
            .await?;
        }
    }
    for (i, (r, row)) in c.routes.iter().zip(&rows.routes).enumerate() {
        let m = &r.matcher;
        sqlx::query(
            "INSERT INTO routes (name, position, path_prefix, path, hosts, host, methods, headers, \
             upstream, strip_prefix, rewrite, max_body, websocket, allow_encoded_slashes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&r.name)
        .bind(position(i))
        .bind(&m.path_prefix)
        .bind(&m.path)
        .bind(&m.hosts)
        .bind(&m.host)
        .bind(&m.methods)
        .bind(&row.headers)
        .bind(&r.upstream)
        .bind(r.strip_prefix)
        .bind(&r.rewrite)
        .bind(row.max_body)
        .bind(r.websocket)
        .bind(r.allow_encoded_slashes)
        .execute(&mut **tx)
        .await?;
        for (j, (f, frow)) in r.filters.iter().zip(&row.filters).enumerate() {
            sqlx::query(
                "INSERT INTO route_filters (route, position, plugin, config, on_error, isolation, \
                 timeout, memory) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&r.name)
            .bind(position(j))
            .bind(&f.plugin)
            .bind(&f.config)
            .bind(&frow.on_error)
            .bind(&frow.isolation)
            .bind(&frow.timeout)
            .bind(frow.memory)
            .execute(&mut **tx)
            .await?;
        }
    }
    for (i, consumer) in c.consumers.iter().enumerate() {
        sqlx::query("INSERT INTO consumers (name, position) VALUES ($1, $2)")
            .bind(&consumer.name)
            .bind(position(i))
            .execute(&mut **tx)
            .await?;
        let hashes: Vec<String> = consumer.keys.iter().map(|k| key_hash(k)).collect();
        sqlx::query(
            "INSERT INTO api_keys (consumer, position, sha256) \
             SELECT $1, k.ord::integer - 1, k.sha256 FROM unnest($2::text[]) WITH ORDINALITY AS k(sha256, ord)",
        )
        .bind(&consumer.name)
        .bind(&hashes)
        .execute(&mut **tx)
        .await?;
        for (j, jwt) in consumer.jwt.iter().enumerate() {
            let credential =
                serde_json::to_value(jwt).map_err(|e| sqlx::Error::Encode(e.to_string().into()))?;
            sqlx::query(
                "INSERT INTO jwt_credentials (consumer, position, issuer, algorithm, credential) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&consumer.name)
            .bind(position(j))
            .bind(&jwt.issuer)
            .bind(jwt.algorithm.name())
            .bind(credential)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// The document's collections as stored (plugins without their path yet).
struct Docs {
    upstreams: Vec<UpstreamConfig>,
    routes: Vec<RouteConfig>,
    consumers: Vec<ConsumerConfig>,
    plugins: Vec<PluginConfig>,
}

struct StoredPlugin {
    name: String,
    sha256: String,
    grants: Vec<String>,
}

async fn read_document(
    tx: &mut Transaction<'static, Postgres>,
) -> Result<(Version, Docs, Vec<StoredPlugin>), sqlx::Error> {
    tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let version: Version = sqlx::query_scalar("SELECT version FROM config_version")
        .fetch_one(&mut **tx)
        .await?;

    let mut targets: HashMap<String, Vec<String>> = HashMap::new();
    for r in sqlx::query("SELECT upstream, target FROM targets ORDER BY upstream, position")
        .fetch_all(&mut **tx)
        .await?
    {
        targets
            .entry(r.try_get("upstream")?)
            .or_default()
            .push(r.try_get("target")?);
    }
    let mut upstreams = Vec::new();
    for r in sqlx::query("SELECT * FROM upstreams ORDER BY position")
        .fetch_all(&mut **tx)
        .await?
    {
        let name: String = r.try_get("name")?;
        let retries: i64 = r.try_get("retries")?;
        upstreams.push(UpstreamConfig {
            targets: targets.remove(&name).unwrap_or_default(),
            name,
            balance: from_text(r.try_get("balance")?)?,
            hash_header: r.try_get("hash_header")?,
            health_check: r
                .try_get::<Option<serde_json::Value>, _>("health_check")?
                .map(from_json)
                .transpose()?,
            circuit_breaker: from_json(r.try_get("circuit_breaker")?)?,
            timeouts: from_json(r.try_get("timeouts")?)?,
            retries: u32::try_from(retries).unwrap_or(u32::MAX),
            retry_budget: from_json(r.try_get("retry_budget")?)?,
            protocol: from_text(r.try_get("protocol")?)?,
            preserve_host: r.try_get("preserve_host")?,
            tls: r
                .try_get::<Option<serde_json::Value>, _>("tls")?
                .map(from_json)
                .transpose()?,
        });
    }

    let mut filters: HashMap<String, Vec<FilterConfig>> = HashMap::new();
    for r in sqlx::query("SELECT * FROM route_filters ORDER BY route, position")
        .fetch_all(&mut **tx)
        .await?
    {
        let timeout: String = r.try_get("timeout")?;
        let memory: i64 = r.try_get("memory")?;
        filters
            .entry(r.try_get("route")?)
            .or_default()
            .push(FilterConfig {
                plugin: r.try_get("plugin")?,
                config: r.try_get("config")?,
                on_error: from_text(r.try_get("on_error")?)?,
                isolation: from_text(r.try_get("isolation")?)?,
                timeout: timeout
                    .parse::<Dur>()
                    .map_err(|e| sqlx::Error::Decode(e.into()))?,
                memory: ByteSize(u64::try_from(memory).unwrap_or_default()),
            });
    }
    let mut routes = Vec::new();
    for r in sqlx::query("SELECT * FROM routes ORDER BY position")
        .fetch_all(&mut **tx)
        .await?
    {
        let name: String = r.try_get("name")?;
        let max_body: i64 = r.try_get("max_body")?;
        routes.push(RouteConfig {
            filters: filters.remove(&name).unwrap_or_default(),
            name,
            matcher: MatchConfig {
                path_prefix: r.try_get("path_prefix")?,
                path: r.try_get("path")?,
                hosts: r.try_get("hosts")?,
                host: r.try_get("host")?,
                methods: r.try_get("methods")?,
                headers: from_json(r.try_get("headers")?)?,
            },
            upstream: r.try_get("upstream")?,
            strip_prefix: r.try_get("strip_prefix")?,
            rewrite: r.try_get("rewrite")?,
            max_body: ByteSize(u64::try_from(max_body).unwrap_or_default()),
            websocket: r.try_get("websocket")?,
            allow_encoded_slashes: r.try_get("allow_encoded_slashes")?,
        });
    }

    let mut keys: HashMap<String, Vec<String>> = HashMap::new();
    for r in sqlx::query("SELECT consumer, sha256 FROM api_keys ORDER BY consumer, position")
        .fetch_all(&mut **tx)
        .await?
    {
        let hash: String = r.try_get("sha256")?;
        keys.entry(r.try_get("consumer")?)
            .or_default()
            .push(format!("sha256:{hash}"));
    }
    let mut jwts: HashMap<String, Vec<JwtCredentialConfig>> = HashMap::new();
    for r in
        sqlx::query("SELECT consumer, credential FROM jwt_credentials ORDER BY consumer, position")
            .fetch_all(&mut **tx)
            .await?
    {
        jwts.entry(r.try_get("consumer")?)
            .or_default()
            .push(from_json(r.try_get("credential")?)?);
    }
    let mut consumers = Vec::new();
    for r in sqlx::query("SELECT name FROM consumers ORDER BY position")
        .fetch_all(&mut **tx)
        .await?
    {
        let name: String = r.try_get("name")?;
        consumers.push(ConsumerConfig {
            keys: keys.remove(&name).unwrap_or_default(),
            jwt: jwts.remove(&name).unwrap_or_default(),
            name,
        });
    }

    let mut plugins = Vec::new();
    for r in sqlx::query(
        "SELECT name, sha256, grants FROM plugins WHERE position IS NOT NULL ORDER BY position",
    )
    .fetch_all(&mut **tx)
    .await?
    {
        plugins.push(StoredPlugin {
            name: r.try_get("name")?,
            sha256: r.try_get("sha256")?,
            grants: r.try_get("grants")?,
        });
    }
    Ok((
        version,
        Docs {
            upstreams,
            routes,
            consumers,
            plugins: Vec::new(),
        },
        plugins,
    ))
}

// ---------------------------------------------------------------------------------------------
// Following changes.

/// LISTEN on [`CHANNEL`] for as long as the store lives. Each (re)connection re-reads the
/// version, so a notification sent while the connection was down is not lost.
async fn listen(
    pool: PgPool,
    version: watch::Sender<Version>,
    up: Arc<watch::Sender<bool>>,
    listening: Arc<AtomicBool>,
) {
    const MIN_BACKOFF: Duration = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(2);
    let mut backoff = MIN_BACKOFF;
    let advance = |v: Version| {
        version.send_if_modified(|cur| {
            if v > *cur {
                *cur = v;
                true
            } else {
                false
            }
        });
    };
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            let current: Version = sqlx::query_scalar("SELECT version FROM config_version")
                .fetch_one(&pool)
                .await?;
            Ok::<_, sqlx::Error>((listener, current))
        }
        .await;
        let mut listener = match connected {
            Ok((listener, current)) => {
                advance(current);
                listening.store(true, Ordering::Release);
                if up.send_if_modified(|u| !std::mem::replace(u, true)) {
                    tracing::info!("PostgreSQL reachable again; following config changes");
                }
                backoff = MIN_BACKOFF;
                listener
            }
            Err(e) => {
                listening.store(false, Ordering::Release);
                if up.send_if_modified(|u| std::mem::replace(u, false)) {
                    tracing::warn!(error = %redact(&e.to_string()), "PostgreSQL unreachable; serving the last config");
                }
                tokio::time::sleep(backoff + Duration::from_millis(fastrand::u64(..50))).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match n.payload().parse::<Version>() {
                    Ok(v) => advance(v),
                    Err(_) => tracing::warn!(
                        payload = n.payload(),
                        "ignoring a malformed config notification"
                    ),
                },
                Ok(None) | Err(_) => {
                    listening.store(false, Ordering::Release);
                    if up.send_if_modified(|u| std::mem::replace(u, false)) {
                        tracing::warn!(
                            "lost the PostgreSQL connection; serving the last config while reconnecting"
                        );
                    }
                    break;
                }
            }
        }
        drop(listener);
        tokio::time::sleep(backoff).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_appear_in_messages() {
        assert_eq!(
            redact("postgres://ferrox:s3cret@db:5432/ferrox"),
            "postgres://ferrox:***@db:5432/ferrox"
        );
        assert_eq!(redact("postgres://ferrox@db/x"), "postgres://ferrox@db/x");
    }

    #[test]
    fn keys_are_stored_as_hashes() {
        let h = key_hash("alice-secret-key");
        assert_eq!(h, sha256_hex(b"alice-secret-key"));
        assert_eq!(key_hash(&format!("sha256:{}", h.to_uppercase())), h);
    }

    #[test]
    fn bad_database_settings_name_their_path() {
        let cfg = crate::config::parse_yaml(
            "database_url: mysql://db/x\nrequest_logs: { queue: 0, batch: 20000, flush_interval: 2m, retention: 10s }\n",
        )
        .expect("parses");
        let paths: Vec<String> = crate::config::validate(&cfg)
            .into_iter()
            .map(|i| i.path)
            .collect();
        assert_eq!(
            paths,
            [
                "database_url",
                "request_logs.queue",
                "request_logs.batch",
                "request_logs.flush_interval",
                "request_logs.retention"
            ]
        );
        let ok =
            crate::config::parse_yaml("database_url: postgres://u:p@db:5432/x\n").expect("parses");
        assert!(crate::config::validate(&ok).is_empty());
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        let m = migrator();
        let versions: Vec<i64> = m.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
    }
}
