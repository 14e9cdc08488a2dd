//! Starting and stopping a gateway instance: bind the listeners, spawn the proxy, the admin API
//! and the config watcher, and drain on shutdown. Tests start instances in-process on port 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ConfigIssue, GatewayConfig, Overrides};
use crate::gateway::Gateway;

/// What to start.
#[derive(Debug, Default)]
pub struct Options {
    /// The validated config.
    pub config: GatewayConfig,
    /// The file to watch for live changes, if any.
    pub config_path: Option<PathBuf>,
    /// Bootstrap overrides re-applied on every reload.
    pub overrides: Overrides,
    /// How often the config file is checked (default 1 s).
    pub watch_interval: Option<Duration>,
    /// The config store; when `None`, the file store of `config_path`, or a memory store.
    pub store: Option<Arc<crate::store::Store>>,
}

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config cannot be built.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigIssue>),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A running instance.
#[derive(Debug)]
pub struct Running {
    /// Where the proxy listens.
    pub proxy_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// Shared state (snapshot, metrics).
    pub gateway: Arc<Gateway>,
    /// The control plane (store, admin writes).
    pub control: Arc<crate::control::ControlPlane>,
    /// The admin bearer token in force (configured or generated).
    pub admin_token: Arc<str>,
    /// Whether the token was generated at start (to print it once).
    pub token_generated: bool,
    stop: watch::Sender<bool>,
    /// Set when a successor process took over the listening sockets (binary upgrade).
    handed_over: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    /// Duplicates of the listening sockets (`proxy`, `admin`) for a binary upgrade; closed when
    /// the instance stops accepting.
    #[cfg(unix)]
    listen_fds: std::sync::Mutex<Vec<(&'static str, std::os::fd::OwnedFd)>>,
}

/// Bind `addr`, or adopt the listener called `name` inherited from a predecessor process
/// (binary upgrade) when it listens there.
async fn bind(addr: &str, name: &str) -> Result<TcpListener, StartError> {
    let parsed: SocketAddr = addr.parse().map_err(|_| StartError::Bind {
        addr: addr.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not ip:port"),
    })?;
    #[cfg(unix)]
    if let Some(listener) = crate::upgrade::inherited_listener(name, parsed) {
        return TcpListener::from_std(listener).map_err(|source| StartError::Bind {
            addr: addr.to_owned(),
            source,
        });
    }
    #[cfg(not(unix))]
    let _ = name;
    let socket = if parsed.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .and_then(|s| {
        s.set_reuseaddr(true)?;
        s.bind(parsed)?;
        Ok(s)
    })
    .map_err(|source| StartError::Bind {
        addr: addr.to_owned(),
        source,
    })?;
    socket.listen(1024).map_err(|source| StartError::Bind {
        addr: addr.to_owned(),
        source,
    })
}

/// Start an instance: returns once both listeners are bound and serving.
pub async fn start(opts: Options) -> Result<Running, StartError> {
    let issues = crate::config::validate(&opts.config);
    if !issues.is_empty() {
        return Err(StartError::Config(issues));
    }
    let tls = match &opts.config.tls {
        Some(t) => Some(crate::proxy::tls::acceptor(t).map_err(|i| StartError::Config(vec![i]))?),
        None => None,
    };
    let (token, token_generated) = match opts.config.admin.token.clone() {
        Some(t) => (t, false),
        None => (generate_token(), true),
    };
    let proxy_listener = bind(&opts.config.listen, "proxy").await?;
    let admin_listener = bind(&opts.config.admin.listen, "admin").await?;
    #[cfg(unix)]
    let listen_fds = {
        use std::os::fd::AsFd;
        let dup = |l: &TcpListener, addr: &str| {
            l.as_fd()
                .try_clone_to_owned()
                .map_err(|source| StartError::Bind {
                    addr: addr.to_owned(),
                    source,
                })
        };
        vec![
            ("proxy", dup(&proxy_listener, &opts.config.listen)?),
            ("admin", dup(&admin_listener, &opts.config.admin.listen)?),
        ]
    };
    let proxy_addr = proxy_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: opts.config.listen.clone(),
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: opts.config.admin.listen.clone(),
            source,
        })?;
    let store = match opts.store {
        Some(store) => store,
        None => match &opts.config.database_url {
            Some(url) => Arc::new(crate::store::Store::Postgres(
                crate::store::pg::open(url, &opts.config)
                    .await
                    .map_err(|e| StartError::Config(vec![store_issue(e)]))?,
            )),
            None => Arc::new(local_store(&opts.config, opts.config_path.as_deref())?),
        },
    };
    let stored = store
        .load()
        .await
        .map_err(|e| StartError::Config(vec![store_issue(e)]))?;
    let mut initial = stored.config;
    opts.overrides.apply(&mut initial);
    let gateway = Gateway::new(initial).await.map_err(StartError::Config)?;
    let control = crate::control::ControlPlane::new(
        gateway.clone(),
        store,
        opts.overrides.clone(),
        stored.version,
    );
    let (stop, stop_rx) = watch::channel(false);
    let handed_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let token: Arc<str> = token.into();

    let mut tasks = Vec::new();
    tasks.push(crate::instances::start(
        &control,
        proxy_addr,
        admin_addr,
        opts.config.admin.heartbeat_interval.0,
        stop_rx.clone(),
    ));
    let mut rx = stop_rx.clone();
    tasks.push(tokio::spawn(crate::proxy::server::serve(
        gateway.clone(),
        proxy_listener,
        tls,
        {
            let handed_over = handed_over.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
                if handed_over.load(std::sync::atomic::Ordering::Acquire) {
                    crate::proxy::server::StopAccepting::HandOver
                } else {
                    crate::proxy::server::StopAccepting::Close
                }
            }
        },
    )));
    let admin = crate::dashboard::mount(
        crate::admin::router(control.clone(), token.clone()),
        gateway.clone(),
    );
    let mut rx = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        let served = axum::serve(admin_listener, admin)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin listener failed");
        }
    }));
    tasks.push(control.follow(stop_rx.clone()));
    tasks.extend(crate::tracing_export::attach(
        &gateway,
        opts.config.tracing.as_ref(),
        opts.config.server.drain_timeout.0,
        stop_rx.clone(),
    ));
    tasks.extend(crate::store::pg::attach(
        &control.store,
        &gateway,
        &opts.config.request_logs,
        stop_rx.clone(),
    ));
    // With PostgreSQL the document lives in the database: the file only gave bootstrap settings.
    let watched = opts
        .config_path
        .filter(|_| !matches!(*control.store, crate::store::Store::Postgres(_)));
    if let Some(path) = watched {
        tasks.push(crate::config::watch::spawn(
            control.clone(),
            path,
            opts.watch_interval.unwrap_or(Duration::from_secs(1)),
            stop_rx,
        ));
    }
    Ok(Running {
        proxy_addr,
        admin_addr,
        gateway,
        control,
        admin_token: token,
        token_generated,
        stop,
        handed_over,
        tasks,
        #[cfg(unix)]
        listen_fds: std::sync::Mutex::new(listen_fds),
    })
}

/// The store of an instance without an explicit one: the file store of `path` (its document
/// is the file as written, without overrides), else a memory store holding `config`.
fn local_store(
    config: &GatewayConfig,
    path: Option<&std::path::Path>,
) -> Result<crate::store::Store, StartError> {
    use crate::store::{FileStore, MemoryStore, Store};
    let Some(path) = path else {
        return Ok(Store::Memory(MemoryStore::new(config.clone())));
    };
    let doc = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| crate::config::parse_yaml(&text).ok())
        .unwrap_or_else(|| config.clone());
    FileStore::open(path, doc)
        .map(Store::File)
        .map_err(|e| StartError::Config(vec![store_issue(e)]))
}

fn store_issue(e: crate::store::StoreError) -> ConfigIssue {
    ConfigIssue {
        path: String::new(),
        message: e.to_string(),
    }
}

impl Running {
    /// Stop accepting; in-flight requests drain (bounded by `server.drain_timeout`).
    pub fn begin_shutdown(&self) {
        // The spare duplicates go first, so the listening socket closes when the server drops
        // it (unless a successor holds it).
        #[cfg(unix)]
        self.listen_fds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        let _ = self.stop.send(true);
    }

    /// A successor process now accepts from the listening sockets: stopping leaves them open.
    pub fn handed_over(&self) {
        self.handed_over
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Fresh duplicates of the listening sockets (`proxy`, `admin`) to hand to a new process;
    /// empty once the instance has begun to shut down.
    #[cfg(unix)]
    pub fn listener_fds(&self) -> std::io::Result<Vec<(&'static str, std::os::fd::OwnedFd)>> {
        self.listen_fds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(name, fd)| Ok((*name, fd.try_clone()?)))
            .collect()
    }

    /// Stop and wait until every request has drained.
    pub async fn shutdown(self) {
        self.begin_shutdown();
        self.wait().await;
    }

    /// Wait until the instance has stopped.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A 256-bit token from the OS's CSPRNG, URL-safe.
fn generate_token() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 43];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness is a broken host; refuse to invent a guessable token.
        panic!("the operating system provides no randomness for the admin token");
    }
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(b & 63)] as char)
        .collect()
}
