//! The config store: where the declarative document, admin users, tokens, the audit log and
//! uploaded plugins live. The document is the unit of change: the admin API reads it, applies
//! one change, validates and builds it, then commits it with the version it read (optimistic
//! concurrency). Every instance follows [`Store::changes`] and applies newer versions.
//!
//! Backends: [`MemoryStore`] (nothing persists; `--demo`), [`FileStore`] (the YAML file is the
//! document; users, tokens and audit in a sidecar file next to it), [`pg::PgStore`] (PostgreSQL,
//! shared by every instance on one database; changes arrive by LISTEN/NOTIFY).

mod local;
pub mod pg;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::GatewayConfig;

pub use local::{FileStore, MemoryStore};

/// A version of the config document; every commit (and every external edit of the file) moves
/// it forward.
pub type Version = i64;

/// The current document and its version.
#[derive(Clone, Debug)]
pub struct Stored {
    /// Version of `config`.
    pub version: Version,
    /// The document (consumers' keys as `sha256:<hex>` when written through the admin API).
    pub config: GatewayConfig,
}

/// What an admin user may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read only.
    Viewer,
    /// Routes, filters, upstreams, consumers; no users, no plugin uploads.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    /// The lowercase name (`admin`, `operator`, `viewer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

/// What a write records in the audit log.
#[derive(Clone, Debug)]
pub struct NewAudit {
    /// Admin user name, or `bootstrap` for the bootstrap token.
    pub actor: String,
    /// `create`, `update`, `delete`, `import`, …
    pub action: String,
    /// E.g. `routes/users-api`, `consumers/alice/keys/3`.
    pub resource: String,
    /// The resource before the change (never a secret).
    pub before: Option<serde_json::Value>,
    /// The resource after the change (never a secret; keys only by id).
    pub after: Option<serde_json::Value>,
}

/// One recorded write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Increasing id.
    pub id: i64,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// To what.
    pub resource: String,
    /// Before the change.
    #[serde(default)]
    pub before: Option<serde_json::Value>,
    /// After the change.
    #[serde(default)]
    pub after: Option<serde_json::Value>,
}

/// A filter over the audit log (newest first).
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only resources starting with this.
    pub resource_prefix: Option<String>,
    /// Not before this instant (RFC 3339).
    pub since: Option<String>,
    /// Not after this instant (RFC 3339).
    pub until: Option<String>,
    /// At most this many entries.
    pub limit: u32,
}

/// A named admin user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminUser {
    /// Unique name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// When the user was created, RFC 3339 UTC.
    pub created_at: String,
}

/// An admin token, without its secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Id, unique across users.
    pub id: i64,
    /// Owner.
    pub user: String,
    /// When it was created, RFC 3339 UTC.
    pub created_at: String,
    /// When it stops working, RFC 3339 UTC.
    pub expires_at: Option<String>,
    /// Revoked tokens never work again.
    pub revoked: bool,
}

/// Who a token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user name (`bootstrap` for the bootstrap token).
    pub user: String,
    /// Their role.
    pub role: Role,
}

/// An uploaded plugin component.
#[derive(Clone, Debug)]
pub struct PluginBlob {
    /// The plugin's name.
    pub name: String,
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
    /// The component.
    pub bytes: Vec<u8>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The document moved on since it was read.
    #[error("conflict: the config changed (now at version {actual})")]
    Conflict {
        /// The version now stored.
        actual: Version,
    },
    /// The store cannot be reached or written (the admin API answers 503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// No such user, token or plugin.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is refused (duplicate name, bad value).
    #[error("{0}")]
    Invalid(String),
}

/// The config store of an instance.
#[derive(Debug)]
pub enum Store {
    /// In memory; nothing persists.
    Memory(MemoryStore),
    /// The YAML file plus its sidecar admin file.
    File(FileStore),
    /// PostgreSQL, shared by every instance on the database.
    Postgres(pg::PgStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Memory($s) => $e,
            Store::File($s) => $e,
            Store::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// The current document and its version.
    pub async fn load(&self) -> Result<Stored, StoreError> {
        dispatch!(self, s => s.load().await)
    }

    /// Write `config` if the stored version is still `expected`; records `audit` with it and
    /// tells every follower. Returns the new version.
    pub async fn commit(
        &self,
        expected: Version,
        config: &GatewayConfig,
        audit: NewAudit,
    ) -> Result<Version, StoreError> {
        dispatch!(self, s => s.commit(expected, config, audit).await)
    }

    /// The newest version known; changes when a commit (from any instance) lands.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<Version> {
        dispatch!(self, s => s.changes())
    }

    /// Audit entries matching `q`, newest first.
    pub async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        dispatch!(self, s => s.audit(q).await)
    }

    /// Create a named admin user.
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        audit: NewAudit,
    ) -> Result<AdminUser, StoreError> {
        dispatch!(self, s => s.create_user(name, role, audit).await)
    }

    /// Every admin user.
    pub async fn list_users(&self) -> Result<Vec<AdminUser>, StoreError> {
        dispatch!(self, s => s.list_users().await)
    }

    /// Delete a user and their tokens.
    pub async fn delete_user(&self, name: &str, audit: NewAudit) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete_user(name, audit).await)
    }

    /// Store a token for `user`: only its SHA-256 (hex) is kept; the caller generated it.
    pub async fn add_token(
        &self,
        user: &str,
        token_sha256: &str,
        expires_at: Option<String>,
        audit: NewAudit,
    ) -> Result<TokenInfo, StoreError> {
        dispatch!(self, s => s.add_token(user, token_sha256, expires_at, audit).await)
    }

    /// The tokens of `user` (no secrets).
    pub async fn list_tokens(&self, user: &str) -> Result<Vec<TokenInfo>, StoreError> {
        dispatch!(self, s => s.list_tokens(user).await)
    }

    /// Revoke token `id` of `user`.
    pub async fn revoke_token(
        &self,
        user: &str,
        id: i64,
        audit: NewAudit,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.revoke_token(user, id, audit).await)
    }

    /// The user a (hashed) token belongs to if it exists, is not revoked and not expired.
    pub async fn principal_for(&self, token_sha256: &str) -> Result<Option<Principal>, StoreError> {
        dispatch!(self, s => s.principal_for(token_sha256).await)
    }

    /// Keep an uploaded plugin component (the document references it by
    /// [`Store::plugin_path`]).
    pub async fn put_plugin(&self, blob: PluginBlob, audit: NewAudit) -> Result<(), StoreError> {
        dispatch!(self, s => s.put_plugin(blob, audit).await)
    }

    /// An uploaded plugin's bytes.
    pub async fn plugin_bytes(&self, name: &str) -> Result<Option<PluginBlob>, StoreError> {
        dispatch!(self, s => s.plugin_bytes(name).await)
    }

    /// Where the uploaded plugin `name` is found on this machine (`plugins[].path`).
    pub fn plugin_path(&self, name: &str) -> String {
        dispatch!(self, s => s.plugin_path(name))
    }

    /// What the store is, for `/status` and logs (`memory`, `file /path`, …).
    pub fn describe(&self) -> String {
        dispatch!(self, s => s.describe())
    }

    /// The store's kind: `memory`, `file` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::File(_) => "file",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Whether the store answers.
    pub async fn healthy(&self) -> bool {
        dispatch!(self, s => s.healthy().await)
    }

    /// The file store, if this is one (the config watcher needs it).
    pub fn as_file(&self) -> Option<&FileStore> {
        match self {
            Store::File(f) => Some(f),
            _ => None,
        }
    }
}

/// Now, RFC 3339 UTC with seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Parse an RFC 3339 instant (`2026-01-02T03:04:05Z`, fractions and offsets-free forms).
pub fn parse_rfc3339(s: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .ok()
        .or_else(|| humantime::parse_rfc3339(s).ok())
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
