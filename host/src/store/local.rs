//! The in-process stores: [`MemoryStore`] (nothing persists) and [`FileStore`] (the YAML file is
//! the document, written atomically; users, tokens and the audit log in `<config>.admin.json`,
//! mode 0600; uploaded plugins in `<config dir>/plugins/<name>.wasm`).
//!
//! Both keep the state in memory behind one lock; the file store writes through on every change.
//! The version is a counter in memory: it starts at 1 and moves on every commit and on every
//! external edit of the file that the config watcher adopts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use super::{
    AdminUser, AuditEntry, AuditQuery, NewAudit, PluginBlob, Principal, Role, StoreError, Stored,
    TokenInfo, Version, now_rfc3339, parse_rfc3339, sha256_hex,
};
use crate::config::GatewayConfig;

/// Audit entries kept by the in-process stores (oldest dropped first).
const AUDIT_CAP: usize = 10_000;

/// Users, tokens and the audit log (the sidecar file's content).
#[derive(Debug, Default, Serialize, Deserialize)]
struct AdminData {
    #[serde(default)]
    users: Vec<AdminUser>,
    #[serde(default)]
    tokens: Vec<TokenRecord>,
    #[serde(default)]
    audit: Vec<AuditEntry>,
    #[serde(default)]
    next_token_id: i64,
    #[serde(default)]
    next_audit_id: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TokenRecord {
    #[serde(flatten)]
    info: TokenInfo,
    sha256: String,
}

impl AdminData {
    fn record(&mut self, a: NewAudit) {
        self.next_audit_id += 1;
        self.audit.push(AuditEntry {
            id: self.next_audit_id,
            at: now_rfc3339(),
            actor: a.actor,
            action: a.action,
            resource: a.resource,
            before: a.before,
            after: a.after,
        });
        if self.audit.len() > AUDIT_CAP {
            let excess = self.audit.len() - AUDIT_CAP;
            self.audit.drain(..excess);
        }
    }

    fn query(&self, q: &AuditQuery) -> Vec<AuditEntry> {
        let since = q.since.as_deref().and_then(parse_rfc3339);
        let until = q.until.as_deref().and_then(parse_rfc3339);
        self.audit
            .iter()
            .rev()
            .filter(|e| q.actor.as_deref().is_none_or(|a| e.actor == a))
            .filter(|e| {
                q.resource_prefix
                    .as_deref()
                    .is_none_or(|p| e.resource.starts_with(p))
            })
            .filter(|e| {
                let at = parse_rfc3339(&e.at);
                since.is_none_or(|s| at.is_some_and(|t| t >= s))
                    && until.is_none_or(|u| at.is_some_and(|t| t <= u))
            })
            .take(q.limit as usize)
            .cloned()
            .collect()
    }

    fn create_user(
        &mut self,
        name: &str,
        role: Role,
        audit: NewAudit,
    ) -> Result<AdminUser, StoreError> {
        if self.users.iter().any(|u| u.name == name) {
            return Err(StoreError::Invalid(format!(
                "admin user {name} already exists"
            )));
        }
        let user = AdminUser {
            name: name.to_owned(),
            role,
            created_at: now_rfc3339(),
        };
        self.users.push(user.clone());
        self.record(audit);
        Ok(user)
    }

    fn delete_user(&mut self, name: &str, audit: NewAudit) -> Result<(), StoreError> {
        let before = self.users.len();
        self.users.retain(|u| u.name != name);
        if self.users.len() == before {
            return Err(StoreError::NotFound(format!("admin user {name}")));
        }
        self.tokens.retain(|t| t.info.user != name);
        self.record(audit);
        Ok(())
    }

    fn add_token(
        &mut self,
        user: &str,
        sha256: &str,
        expires_at: Option<String>,
        audit: NewAudit,
    ) -> Result<TokenInfo, StoreError> {
        if !self.users.iter().any(|u| u.name == user) {
            return Err(StoreError::NotFound(format!("admin user {user}")));
        }
        self.next_token_id += 1;
        let info = TokenInfo {
            id: self.next_token_id,
            user: user.to_owned(),
            created_at: now_rfc3339(),
            expires_at,
            revoked: false,
        };
        self.tokens.push(TokenRecord {
            info: info.clone(),
            sha256: sha256.to_owned(),
        });
        self.record(audit);
        Ok(info)
    }

    fn list_tokens(&self, user: &str) -> Result<Vec<TokenInfo>, StoreError> {
        if !self.users.iter().any(|u| u.name == user) {
            return Err(StoreError::NotFound(format!("admin user {user}")));
        }
        Ok(self
            .tokens
            .iter()
            .filter(|t| t.info.user == user)
            .map(|t| t.info.clone())
            .collect())
    }

    fn revoke_token(&mut self, user: &str, id: i64, audit: NewAudit) -> Result<(), StoreError> {
        let token = self
            .tokens
            .iter_mut()
            .find(|t| t.info.user == user && t.info.id == id)
            .ok_or_else(|| StoreError::NotFound(format!("token {id} of admin user {user}")))?;
        token.info.revoked = true;
        self.record(audit);
        Ok(())
    }

    fn principal_for(&self, sha256: &str) -> Option<Principal> {
        let now = std::time::SystemTime::now();
        let token = self
            .tokens
            .iter()
            .find(|t| crate::admin::constant_time_eq(t.sha256.as_bytes(), sha256.as_bytes()))?;
        if token.info.revoked {
            return None;
        }
        if let Some(exp) = &token.info.expires_at {
            // An expiry that cannot be read is treated as passed.
            if parse_rfc3339(exp).is_none_or(|e| e <= now) {
                return None;
            }
        }
        let user = self.users.iter().find(|u| u.name == token.info.user)?;
        Some(Principal {
            user: user.name.clone(),
            role: user.role,
        })
    }
}

#[derive(Debug)]
struct State {
    version: Version,
    config: GatewayConfig,
    admin: AdminData,
}

/// What the file store adds: where it writes, and the hash of what it last wrote.
#[derive(Debug)]
struct FileParts {
    path: PathBuf,
    admin_path: PathBuf,
    /// SHA-256 of the bytes this store last wrote to (or adopted from) the config file.
    known: std::sync::Mutex<Option<String>>,
}

/// The state and behaviour both in-process stores share; the file store also writes through.
#[derive(Debug)]
pub struct Local {
    state: Mutex<State>,
    tx: watch::Sender<Version>,
    plugin_dir: PathBuf,
    file: Option<FileParts>,
}

/// A store that keeps everything in memory (nothing survives a restart; uploaded plugins go to
/// a temporary folder).
#[derive(Debug)]
pub struct MemoryStore(Local);

/// A store backed by the YAML config file and its sidecar admin file.
#[derive(Debug)]
pub struct FileStore(Local);

impl std::ops::Deref for MemoryStore {
    type Target = Local;
    fn deref(&self) -> &Local {
        &self.0
    }
}

impl std::ops::Deref for FileStore {
    type Target = Local;
    fn deref(&self) -> &Local {
        &self.0
    }
}

impl Local {
    fn new(
        config: GatewayConfig,
        admin: AdminData,
        plugin_dir: PathBuf,
        file: Option<FileParts>,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                version: 1,
                config,
                admin,
            }),
            tx: watch::channel(1).0,
            plugin_dir,
            file,
        }
    }

    fn set_known(&self, digest: Option<String>) -> Option<String> {
        let f = self.file.as_ref()?;
        f.known
            .lock()
            .ok()
            .and_then(|mut k| std::mem::replace(&mut *k, digest))
    }

    async fn write_admin(&self, admin: &AdminData) -> Result<(), StoreError> {
        let Some(f) = &self.file else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(admin)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode the admin file: {e}")))?;
        write_atomic(f.admin_path.clone(), bytes, Some(0o600)).await
    }

    /// Apply `change` to the admin data and persist it; on a write failure the change is
    /// rolled back.
    async fn admin_change<T>(
        &self,
        change: impl FnOnce(&mut AdminData) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut s = self.state.lock().await;
        let saved = serde_json::to_value(&s.admin)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode the admin file: {e}")))?;
        let out = change(&mut s.admin)?;
        if let Err(e) = self.write_admin(&s.admin).await {
            if let Ok(prev) = serde_json::from_value(saved) {
                s.admin = prev;
            }
            return Err(e);
        }
        Ok(out)
    }

    pub(super) async fn load(&self) -> Result<Stored, StoreError> {
        let s = self.state.lock().await;
        Ok(Stored {
            version: s.version,
            config: s.config.clone(),
        })
    }

    pub(super) async fn commit(
        &self,
        expected: Version,
        config: &GatewayConfig,
        audit: NewAudit,
    ) -> Result<Version, StoreError> {
        let mut s = self.state.lock().await;
        if s.version != expected {
            return Err(StoreError::Conflict { actual: s.version });
        }
        if let Some(f) = &self.file {
            let yaml = serde_yaml::to_string(config)
                .map_err(|e| StoreError::Unavailable(format!("cannot encode the config: {e}")))?;
            let bytes = yaml.into_bytes();
            // Mark the content as ours before it lands so the watcher never takes it for an
            // external edit.
            let previous = self.set_known(Some(sha256_hex(&bytes)));
            if let Err(e) = write_atomic(f.path.clone(), bytes, None).await {
                self.set_known(previous);
                return Err(e);
            }
        }
        s.version += 1;
        s.config = config.clone();
        s.admin.record(audit);
        if let Err(e) = self.write_admin(&s.admin).await {
            tracing::warn!(error = %e, "the config was written but its audit entry was not");
        }
        let v = s.version;
        self.tx.send_replace(v);
        Ok(v)
    }

    pub(super) fn changes(&self) -> watch::Receiver<Version> {
        self.tx.subscribe()
    }

    pub(super) async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.state.lock().await.admin.query(q))
    }

    pub(super) async fn create_user(
        &self,
        name: &str,
        role: Role,
        audit: NewAudit,
    ) -> Result<AdminUser, StoreError> {
        self.admin_change(|a| a.create_user(name, role, audit))
            .await
    }

    pub(super) async fn list_users(&self) -> Result<Vec<AdminUser>, StoreError> {
        Ok(self.state.lock().await.admin.users.clone())
    }

    pub(super) async fn delete_user(&self, name: &str, audit: NewAudit) -> Result<(), StoreError> {
        self.admin_change(|a| a.delete_user(name, audit)).await
    }

    pub(super) async fn add_token(
        &self,
        user: &str,
        sha256: &str,
        expires_at: Option<String>,
        audit: NewAudit,
    ) -> Result<TokenInfo, StoreError> {
        self.admin_change(|a| a.add_token(user, sha256, expires_at, audit))
            .await
    }

    pub(super) async fn list_tokens(&self, user: &str) -> Result<Vec<TokenInfo>, StoreError> {
        self.state.lock().await.admin.list_tokens(user)
    }

    pub(super) async fn revoke_token(
        &self,
        user: &str,
        id: i64,
        audit: NewAudit,
    ) -> Result<(), StoreError> {
        self.admin_change(|a| a.revoke_token(user, id, audit)).await
    }

    pub(super) async fn principal_for(
        &self,
        sha256: &str,
    ) -> Result<Option<Principal>, StoreError> {
        Ok(self.state.lock().await.admin.principal_for(sha256))
    }

    pub(super) async fn put_plugin(
        &self,
        blob: PluginBlob,
        audit: NewAudit,
    ) -> Result<(), StoreError> {
        let path = PathBuf::from(self.plugin_path(&blob.name));
        tokio::fs::create_dir_all(&self.plugin_dir)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", self.plugin_dir.display()))
            })?;
        write_atomic(path, blob.bytes, None).await?;
        self.admin_change(|a| {
            a.record(audit);
            Ok(())
        })
        .await
    }

    pub(super) async fn plugin_bytes(&self, name: &str) -> Result<Option<PluginBlob>, StoreError> {
        let path = self.plugin_path(name);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(PluginBlob {
                name: name.to_owned(),
                sha256: sha256_hex(&bytes),
                bytes,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Unavailable(format!("cannot read {path}: {e}"))),
        }
    }

    pub(super) fn plugin_path(&self, name: &str) -> String {
        self.plugin_dir
            .join(format!("{name}.wasm"))
            .display()
            .to_string()
    }

    pub(super) fn describe(&self) -> String {
        match &self.file {
            Some(f) => format!("file {}", f.path.display()),
            None => "memory".into(),
        }
    }

    pub(super) async fn healthy(&self) -> bool {
        match &self.file {
            Some(f) => tokio::fs::metadata(&f.path).await.is_ok(),
            None => true,
        }
    }
}

impl MemoryStore {
    /// A store holding `config` at version 1.
    pub fn new(config: GatewayConfig) -> Self {
        let plugin_dir = std::env::temp_dir().join(format!(
            "ferrox-plugins-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        Self(Local::new(config, AdminData::default(), plugin_dir, None))
    }
}

impl FileStore {
    /// Open the store of the config file at `path`, whose current (parsed, without overrides)
    /// content is `config`. Reads the sidecar admin file when it exists.
    pub fn open(path: &Path, config: GatewayConfig) -> Result<Self, StoreError> {
        let admin_path = sidecar_path(path);
        let admin = match std::fs::read(&admin_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Invalid(format!("{}: {e}", admin_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AdminData::default(),
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot read {}: {e}",
                    admin_path.display()
                )));
            }
        };
        let known = std::fs::read(path).ok().map(|b| sha256_hex(&b));
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let file = FileParts {
            path: path.to_owned(),
            admin_path,
            known: std::sync::Mutex::new(known),
        };
        Ok(Self(Local::new(
            config,
            admin,
            dir.join("plugins"),
            Some(file),
        )))
    }

    fn parts(&self) -> Option<&FileParts> {
        self.0.file.as_ref()
    }

    /// The config file.
    pub fn path(&self) -> &Path {
        self.parts().map_or(Path::new(""), |f| f.path.as_path())
    }

    /// Whether `bytes` are what this store last wrote or adopted (so the watcher skips them).
    pub fn is_known(&self, bytes: &[u8]) -> bool {
        let digest = sha256_hex(bytes);
        self.parts()
            .and_then(|f| {
                f.known
                    .lock()
                    .ok()
                    .map(|k| k.as_deref() == Some(digest.as_str()))
            })
            .unwrap_or(false)
    }

    /// Adopt an external edit of the file (already applied by the watcher): the document
    /// becomes `config` at a new version, audited as actor `file`.
    pub async fn adopt_external(&self, bytes: &[u8], config: GatewayConfig) -> Version {
        let mut s = self.state.lock().await;
        s.version += 1;
        s.config = config;
        s.admin.record(NewAudit {
            actor: "file".into(),
            action: "reload".into(),
            resource: "config".into(),
            before: None,
            after: None,
        });
        self.set_known(Some(sha256_hex(bytes)));
        // The audit entry is best effort here: the edit itself is already in the file.
        if let Err(e) = self.write_admin(&s.admin).await {
            tracing::warn!(error = %e, "cannot record the config reload in the admin file");
        }
        let v = s.version;
        self.tx.send_replace(v);
        v
    }
}

/// `<config>.admin.json` next to the config file.
fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".admin.json");
    path.with_file_name(name)
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
async fn write_atomic(path: PathBuf, bytes: Vec<u8>, mode: Option<u32>) -> Result<(), StoreError> {
    tokio::task::spawn_blocking(move || write_atomic_blocking(&path, &bytes, mode))
        .await
        .map_err(|e| StoreError::Unavailable(format!("write task failed: {e}")))?
}

fn write_atomic_blocking(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), StoreError> {
    use std::io::Write;
    let fail = |what: &str, e: std::io::Error| {
        StoreError::Unavailable(format!("cannot {what} {}: {e}", path.display()))
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", fastrand::u64(..)));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Keep the existing file's permissions unless a mode is required.
        let keep = std::fs::metadata(path).ok().map(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode() & 0o777
        });
        opts.mode(mode.or(keep).unwrap_or(0o644));
    }
    let result = opts
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(|e| fail("write", e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| fail("replace", e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // Make the rename durable.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(resource: &str) -> NewAudit {
        NewAudit {
            actor: "alice".into(),
            action: "update".into(),
            resource: resource.into(),
            before: None,
            after: None,
        }
    }

    #[tokio::test]
    async fn commit_checks_the_version_and_notifies() {
        let s = MemoryStore::new(GatewayConfig::default());
        let rx = s.changes();
        let v = s.load().await.expect("load").version;
        let v2 = s
            .commit(v, &GatewayConfig::default(), audit("routes/a"))
            .await
            .expect("commit");
        assert_eq!(v2, v + 1);
        assert_eq!(*rx.borrow(), v2);
        let err = s
            .commit(v, &GatewayConfig::default(), audit("routes/b"))
            .await
            .expect_err("stale");
        assert!(matches!(err, StoreError::Conflict { actual } if actual == v2));
        let q = AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        };
        let entries = s.audit(&q).await.expect("audit");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].resource, "routes/a");
    }

    #[tokio::test]
    async fn tokens_expire_and_revoke() {
        let s = MemoryStore::new(GatewayConfig::default());
        s.create_user("bob", Role::Operator, audit("users/bob"))
            .await
            .expect("user");
        let t = s
            .add_token("bob", "aa", None, audit("users/bob/tokens"))
            .await
            .expect("token");
        assert_eq!(
            s.principal_for("aa").await.expect("ok"),
            Some(Principal {
                user: "bob".into(),
                role: Role::Operator
            })
        );
        s.add_token(
            "bob",
            "bb",
            Some("2000-01-01T00:00:00Z".into()),
            audit("users/bob/tokens"),
        )
        .await
        .expect("token");
        assert_eq!(s.principal_for("bb").await.expect("ok"), None);
        s.revoke_token("bob", t.id, audit("users/bob/tokens/1"))
            .await
            .expect("revoke");
        assert_eq!(s.principal_for("aa").await.expect("ok"), None);
        assert!(
            s.create_user("bob", Role::Viewer, audit("users/bob"))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_file_store_writes_atomically_and_knows_its_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ferrox.yaml");
        std::fs::write(&path, "listen: 127.0.0.1:0\n").expect("write");
        let cfg = crate::config::parse_yaml("listen: 127.0.0.1:0\n").expect("parse");
        let s = FileStore::open(&path, cfg.clone()).expect("open");
        assert!(s.is_known(&std::fs::read(&path).expect("read")));
        let mut next = cfg.clone();
        next.listen = "127.0.0.1:1".into();
        s.commit(1, &next, audit("config")).await.expect("commit");
        let written = std::fs::read(&path).expect("read");
        assert!(s.is_known(&written));
        let reparsed =
            crate::config::parse_yaml(&String::from_utf8_lossy(&written)).expect("valid");
        assert_eq!(reparsed, next);
        s.create_user("eve", Role::Viewer, audit("users/eve"))
            .await
            .expect("user");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(sidecar_path(&path))
                .expect("sidecar")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let reopened = FileStore::open(&path, reparsed).expect("reopen");
        assert_eq!(reopened.list_users().await.expect("users")[0].name, "eve");
        assert!(!s.is_known(b"listen: 127.0.0.1:2\n"));
    }
}
