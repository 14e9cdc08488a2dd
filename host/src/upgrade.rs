//! Zero-downtime binary upgrade by listener hand-over, and the process's service-manager
//! plumbing (PID file, systemd readiness).
//!
//! On `SIGUSR2` a serving process starts its successor (the binary it was started as, or
//! `--upgrade-binary`) with the same arguments and environment, passing duplicates of its proxy
//! and admin listening sockets as inherited file descriptors, named in `FERROX_LISTEN_FDS`
//! (`proxy:7,admin:8`), and the write end of a socket pair in `FERROX_UPGRADE_READY_FD`. The
//! successor adopts the inherited sockets instead of binding (when they listen where its config
//! says), builds its config, starts serving and writes `ready` on the pair. Only then does the
//! old process stop accepting and drain. Both processes accept from the same socket in between,
//! and the socket (with its accept queue) never closes, so no connection is refused or reset. If
//! the successor exits, or is not ready within `--upgrade-timeout` (then it is killed), the old
//! process logs why and keeps serving.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::Duration;

/// Names the inherited listening sockets: `proxy:<fd>,admin:<fd>`.
pub const LISTEN_FDS_ENV: &str = "FERROX_LISTEN_FDS";
/// The inherited descriptor on which a successor reports that it serves.
pub const READY_FD_ENV: &str = "FERROX_UPGRADE_READY_FD";

/// What this process inherited from a predecessor, parsed once from the environment.
#[derive(Debug, Default)]
struct Inherited {
    listeners: Vec<(String, OwnedFd)>,
    ready: Option<OwnedFd>,
}

static INHERITED: Mutex<Option<Inherited>> = Mutex::new(None);

fn with_inherited<T>(f: impl FnOnce(&mut Inherited) -> T) -> T {
    let mut guard = INHERITED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(guard.get_or_insert_with(parse_env))
}

fn parse_env() -> Inherited {
    let mut seen: Vec<RawFd> = Vec::new();
    let mut claim = |text: &str| -> Option<OwnedFd> {
        let fd: RawFd = text.trim().parse().ok()?;
        // 0-2 are stdio; each descriptor is owned once.
        if fd < 3 || seen.contains(&fd) {
            return None;
        }
        seen.push(fd);
        let owned = adopt_inherited_fd(fd)?;
        // Not passed on to anything this process starts.
        let _ = socket2::SockRef::from(&owned).set_cloexec(true);
        Some(owned)
    };
    let mut inherited = Inherited::default();
    if let Ok(list) = std::env::var(LISTEN_FDS_ENV) {
        for entry in list.split(',').filter(|e| !e.is_empty()) {
            let Some((name, fd)) = entry.split_once(':') else {
                tracing::warn!(entry, "ignoring a malformed {LISTEN_FDS_ENV} entry");
                continue;
            };
            match claim(fd) {
                Some(owned) => inherited.listeners.push((name.to_owned(), owned)),
                None => tracing::warn!(
                    entry,
                    "ignoring an inherited descriptor that is not an open socket"
                ),
            }
        }
    }
    if let Ok(fd) = std::env::var(READY_FD_ENV) {
        inherited.ready = claim(&fd);
    }
    inherited
}

/// Take ownership of descriptor `fd`, inherited from the process that started this one.
///
/// Returns `None` unless `fd` is open and is a socket (checked through `/proc/self/fd`, so a
/// stale or forged variable cannot make this process claim an unrelated file).
#[allow(unsafe_code)]
fn adopt_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    if !link.to_string_lossy().starts_with("socket:") {
        return None;
    }
    // SAFETY: `fd` is open (its /proc entry exists) and is a socket. It was inherited across
    // exec from the predecessor, which named it in our environment for us to own; nothing else
    // in this process knows or uses it (std and tokio open every descriptor they create with
    // close-on-exec, and `parse_env` runs once and hands out each number at most once), so this
    // `OwnedFd` is its only owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The inherited listening socket called `name`, if there is one and it listens on `want`
/// (a port of 0 in `want` matches any port on the same address). A socket that does not match
/// is closed (the address changed in the config: the caller binds afresh).
pub fn inherited_listener(name: &str, want: SocketAddr) -> Option<std::net::TcpListener> {
    let fd = with_inherited(|i| {
        let at = i.listeners.iter().position(|(n, _)| n == name)?;
        Some(i.listeners.swap_remove(at).1)
    })?;
    let socket = socket2::Socket::from(fd);
    let local = socket.local_addr().ok().and_then(|a| a.as_socket());
    let listening = socket.is_listener().unwrap_or(false);
    match local {
        Some(have)
            if listening
                && have.ip() == want.ip()
                && (want.port() == 0 || have.port() == want.port()) =>
        {
            if let Err(e) = socket.set_nonblocking(true) {
                tracing::warn!(listener = name, error = %e, "cannot adopt the inherited listener; binding afresh");
                return None;
            }
            tracing::info!(listener = name, addr = %have, "adopted the inherited listener");
            Some(socket.into())
        }
        _ => {
            tracing::warn!(
                listener = name,
                inherited = ?local,
                configured = %want,
                listening,
                "the inherited listener does not match the config; binding afresh"
            );
            None
        }
    }
}

/// Close inherited listeners that were not adopted (their address left the config), so no
/// socket stays open that nobody accepts on.
pub fn release_unclaimed() {
    let left = with_inherited(|i| std::mem::take(&mut i.listeners));
    for (name, _) in &left {
        tracing::warn!(listener = %name, "closing an inherited listener the config no longer uses");
    }
}

/// Tell whoever is waiting that this process now serves: the predecessor of an upgrade (on the
/// inherited ready descriptor) and systemd (`READY=1`; after an upgrade also `MAINPID=`, so
/// the service manager follows the new process). Returns whether this process is a successor.
pub fn announce_ready() -> bool {
    let ready = with_inherited(|i| i.ready.take());
    let successor = ready.is_some();
    if successor {
        notify_systemd(&format!("MAINPID={}\nREADY=1", std::process::id()));
    } else {
        notify_systemd("READY=1");
    }
    if let Some(fd) = ready {
        let mut stream = UnixStream::from(fd);
        if let Err(e) = stream.write_all(b"ready\n") {
            tracing::warn!(error = %e, "cannot tell the previous process that this one serves");
        }
    }
    successor
}

/// Send `state` to systemd's notification socket when `NOTIFY_SOCKET` names one.
pub fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            #[cfg(target_os = "linux")]
            {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)?;
                return Ok(());
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = name;
                return Err(std::io::ErrorKind::Unsupported.into());
            }
        }
        socket.send_to(state.as_bytes(), Path::new(&path))?;
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// Write this process's PID to `path` (atomically: a sibling file renamed over it).
pub fn write_pid_file(path: &Path) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, path)
}

/// Remove the PID file if it still names this process (after an upgrade it names the successor).
pub fn remove_pid_file(path: &Path) {
    let ours =
        std::fs::read_to_string(path).is_ok_and(|t| t.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// The binary a successor runs: `explicit`, else the path this process was started as
/// (`argv[0]`, looked up in `PATH` like the shell did when it has no `/`), else the executable
/// this process runs, with the ` (deleted)` Linux appends once a package has replaced the file.
pub fn successor_binary(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit.filter(|p| !p.as_os_str().is_empty()) {
        return p.to_owned();
    }
    if let Some(arg0) = std::env::args_os().next().filter(|a| !a.is_empty()) {
        return PathBuf::from(arg0);
    }
    if let Ok(link) = std::fs::read_link("/proc/self/exe") {
        let text = link.as_os_str().as_encoded_bytes();
        return match text.strip_suffix(b" (deleted)") {
            Some(rest) => {
                PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(rest))
            }
            None => link,
        };
    }
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ferrox"))
}

/// Why an upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// Preparing or spawning failed.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The new process ended before it served.
    #[error("the new process {pid} exited before it was ready ({status})")]
    Exited {
        /// Its PID.
        pid: u32,
        /// How it ended.
        status: String,
    },
    /// The new process did not report readiness in time; it was killed.
    #[error("the new process {pid} was not ready within {timeout:?}; it was stopped")]
    Timeout {
        /// Its PID.
        pid: u32,
        /// The limit.
        timeout: Duration,
    },
}

/// Start the successor with `listeners` (name, listening socket) and `env` added to this
/// process's environment; return its PID once it reports that it serves.
pub async fn spawn_successor(
    binary: &Path,
    listeners: Vec<(&'static str, OwnedFd)>,
    env: Vec<(String, String)>,
    timeout: Duration,
) -> Result<u32, UpgradeError> {
    let spawn_err = |source| UpgradeError::Spawn {
        binary: binary.display().to_string(),
        source,
    };
    let (ours, theirs) = UnixStream::pair().map_err(spawn_err)?;
    // The child's copies: duplicates (close-on-exec cleared) that exist only until it is spawned.
    let mut inherit = Vec::new();
    let mut names = Vec::new();
    for (name, fd) in listeners {
        let socket = socket2::Socket::from(fd);
        socket.set_cloexec(false).map_err(spawn_err)?;
        names.push(format!("{name}:{}", socket.as_raw_fd()));
        inherit.push(socket);
    }
    let ready = socket2::Socket::from(OwnedFd::from(theirs));
    ready.set_cloexec(false).map_err(spawn_err)?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let spawned = std::process::Command::new(binary)
        .args(&args)
        .envs(env)
        .env(LISTEN_FDS_ENV, names.join(","))
        .env(READY_FD_ENV, ready.as_raw_fd().to_string())
        .spawn();
    drop(inherit);
    drop(ready);
    // Killed if this wait is abandoned (the old process was told to stop meanwhile).
    let mut child = Successor(Some(spawned.map_err(spawn_err)?));
    let pid = child.id();
    tracing::info!(pid, binary = %binary.display(), "started the new process; waiting until it serves");

    // `ready` on the pair means it serves; end of stream means it exited (or closed it) first.
    let read = tokio::task::spawn_blocking(move || {
        let mut ours = ours;
        let mut buf = Vec::new();
        let _ = ours.read_to_end(&mut buf);
        buf
    });
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(buf)) if buf.starts_with(b"ready") => {
            // It runs on alone.
            drop(child.0.take());
            Ok(pid)
        }
        Ok(_) => {
            let mut exited = child.0.take();
            let status = tokio::task::spawn_blocking(move || exited.as_mut().map(Child::wait))
                .await
                .ok()
                .flatten()
                .and_then(Result::ok)
                .map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
            Err(UpgradeError::Exited { pid, status })
        }
        Err(_) => {
            drop(child);
            Err(UpgradeError::Timeout { pid, timeout })
        }
    }
}

/// A successor process that is killed (and reaped) when dropped while still held.
struct Successor(Option<Child>);

impl Successor {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }
}

impl Drop for Successor {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
