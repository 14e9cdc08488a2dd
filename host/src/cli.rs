//! The `ferrox` command line: `serve`, `validate`, `config schema`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::app::{Options, start};
use crate::config::{self, Overrides, QUICKSTART_YAML};

/// Ferrox: a programmable API gateway.
///
/// Routes, balances and protects HTTP traffic to your services, configured by one declarative
/// YAML file that is applied live when it changes.
#[derive(Debug, Parser)]
#[command(name = "ferrox", version, about, long_about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Check a config file and print every error with its path; exits 1 when invalid.
    Validate {
        /// The config file.
        file: PathBuf,
    },
    /// Filter plugin tools.
    Plugin {
        /// What to do.
        #[command(subcommand)]
        what: PluginCommand,
    },
    /// Sync a declarative config file to a running gateway through its admin API (`PUT
    /// /config`); prints what changed.
    Apply(crate::admin::client::SyncArgs),
    /// Show what `apply` would change (a dry run); exits 0 when nothing would, 2 when something
    /// would.
    Diff(crate::admin::client::SyncArgs),
    /// Apply pending PostgreSQL schema migrations (`serve` applies them too) and exit.
    Migrate {
        /// The database, `postgres://user[:password]@host[:port]/database`.
        #[arg(long, env = "FERROX_DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Config file tools.
    Config {
        /// What to print.
        #[command(subcommand)]
        what: ConfigCommand,
    },
}

pub use crate::plugin_cli::PluginCommand;

/// `ferrox config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the JSON Schema of the config file.
    Schema,
    /// Print the quickstart config embedded in the binary.
    Example,
}

/// `ferrox serve` flags; each can also be given as the `FERROX_*` variable shown.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (YAML), watched and applied live when it changes.
    #[arg(long, short, env = "FERROX_CONFIG", conflicts_with = "demo")]
    pub config: Option<PathBuf>,
    /// Run the embedded quickstart config with a built-in echo upstream on 127.0.0.1:9001.
    #[arg(long)]
    pub demo: bool,
    /// Proxy listen address (overrides `listen`).
    #[arg(long, env = "FERROX_LISTEN")]
    pub listen: Option<String>,
    /// Admin listen address (overrides `admin.listen`).
    #[arg(long, env = "FERROX_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Admin bearer token (overrides `admin.token`); generated and printed once when unset.
    #[arg(long, env = "FERROX_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// PostgreSQL config store (overrides `database_url`): upstreams, routes, consumers and
    /// plugins live in the database, shared by every instance on it; the file (if any) gives
    /// this instance's own settings and seeds an empty database.
    #[arg(long, env = "FERROX_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Worker threads of the runtime (default: one per CPU).
    #[arg(long, env = "FERROX_WORKERS")]
    pub workers: Option<usize>,
    /// Log filter, e.g. `info`, `warn,ferrox::access=off`.
    #[arg(long, env = "FERROX_LOG", default_value = "info")]
    pub log: String,
    /// Log format: `json`, `pretty`, or `auto` (pretty on a terminal, JSON otherwise).
    #[arg(long, env = "FERROX_LOG_FORMAT", default_value = "auto")]
    pub log_format: String,
    /// Write the PID of the serving process to this file (replaced by the new process after a
    /// binary upgrade; removed at exit).
    #[arg(long, env = "FERROX_PID_FILE")]
    pub pid_file: Option<PathBuf>,
    /// The binary `SIGUSR2` starts for a zero-downtime upgrade (default: the path this process
    /// was started as).
    #[arg(long, env = "FERROX_UPGRADE_BINARY")]
    pub upgrade_binary: Option<PathBuf>,
    /// How long the new process of an upgrade may take to serve before it is stopped and this
    /// one keeps serving.
    #[arg(long, env = "FERROX_UPGRADE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub upgrade_timeout: std::time::Duration,
}

/// Run the CLI; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { file } => validate(&file),
        Command::Config {
            what: ConfigCommand::Schema,
        } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&config::json_schema()).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Command::Config {
            what: ConfigCommand::Example,
        } => {
            print!("{QUICKSTART_YAML}");
            ExitCode::SUCCESS
        }
        Command::Serve(args) => serve(args),
        Command::Migrate { database_url } => migrate(&database_url),
        Command::Apply(args) => crate::admin::client::main(args, false),
        Command::Diff(args) => crate::admin::client::main(args, true),
        Command::Plugin { what } => crate::plugin_cli::main(what),
    }
}

fn validate(file: &std::path::Path) -> ExitCode {
    let issues = match config::load_file(file, &Overrides::default()) {
        // The document is sound: build it as `serve` would, so plugins load and every filter's
        // `init` judges its own config.
        Ok(cfg) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(async {
                let metrics = crate::metrics::Metrics::new();
                let services = crate::plugin::host::Services::new(metrics.clone());
                crate::snapshot::Snapshot::build(cfg, None, &metrics, &services)
                    .await
                    .err()
                    .unwrap_or_default()
            }),
            Err(e) => {
                eprintln!("cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => e.issues(),
    };
    if issues.is_empty() {
        println!("{}: valid", file.display());
        return ExitCode::SUCCESS;
    }
    for issue in &issues {
        eprintln!("{issue}");
    }
    eprintln!("{}: {} error(s)", file.display(), issues.len());
    ExitCode::FAILURE
}

fn migrate(url: &str) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let pool = match crate::store::pg::pool(&crate::store::pg::PgOptions::new(url)) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        match crate::store::pg::migrate(&pool).await {
            Ok(applied) if applied.is_empty() => {
                println!("the schema is up to date");
                ExitCode::SUCCESS
            }
            Ok(applied) => {
                for v in applied {
                    println!("applied migration {v}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn serve(args: ServeArgs) -> ExitCode {
    crate::logging::init(&args.log, &args.log_format);
    // One worker: a current-thread runtime has no work-stealing or cross-thread wake-ups.
    let mut rt = match args.workers {
        Some(0 | 1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(args))
}

async fn run(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        listen: args.listen.clone(),
        admin_listen: args.admin_listen.clone(),
        admin_token: args.admin_token.clone(),
    };
    let (loaded, path) = match (&args.config, args.demo) {
        (Some(path), _) => (config::load_file(path, &overrides), Some(path.clone())),
        (None, _) => (config::load_str(QUICKSTART_YAML, &overrides), None),
    };
    let cfg = match loaded {
        Ok(mut cfg) => {
            if let Some(url) = &args.database_url {
                cfg.database_url = Some(url.clone());
            }
            cfg
        }
        Err(e) => {
            for issue in e.issues() {
                eprintln!("{issue}");
            }
            return ExitCode::FAILURE;
        }
    };
    let demo_task = if args.demo || args.config.is_none() {
        match crate::demo::bind().await {
            Ok((listener, addr)) => {
                tracing::info!(%addr, "demo upstream listening");
                Some(tokio::spawn(crate::demo::serve(listener)))
            }
            Err(e) => {
                eprintln!(
                    "cannot start the demo upstream on {}: {e}",
                    crate::demo::DEMO_UPSTREAM
                );
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let running = match start(Options {
        config: cfg,
        config_path: path,
        overrides,
        watch_interval: None,
        store: None,
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if running.token_generated {
        eprintln!(
            "admin token (generated for this run, shown once): {}\nset FERROX_ADMIN_TOKEN or admin.token to choose your own",
            running.admin_token
        );
    }
    tracing::info!(proxy = %running.proxy_addr, admin = %running.admin_addr, "ferrox is serving");
    if demo_task.is_some() {
        eprintln!(
            "\nFerrox is up. Try:\n  curl -i http://{p}/demo/hello\n  curl http://{a}/health\n  curl -H 'Authorization: Bearer {t}' http://{a}/metrics\nLive dashboard: http://{a}/dashboard (log in with the admin token)\n",
            p = running.proxy_addr,
            a = running.admin_addr,
            t = running.admin_token,
        );
    }
    #[cfg(unix)]
    {
        crate::upgrade::release_unclaimed();
        if let Some(path) = &args.pid_file
            && let Err(e) = crate::upgrade::write_pid_file(path)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the PID file");
        }
        crate::upgrade::announce_ready();
    }
    if wait_for_signal(&args, &running).await == Stopped::HandedOver {
        running.handed_over();
    }
    running.shutdown().await;
    if let Some(t) = demo_task {
        t.abort();
    }
    #[cfg(unix)]
    if let Some(path) = &args.pid_file {
        crate::upgrade::remove_pid_file(path);
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Why serving ends.
#[derive(Debug, PartialEq, Eq)]
enum Stopped {
    /// `SIGTERM` or `SIGINT`.
    Signal,
    /// A new process serves from the same listening sockets.
    HandedOver,
}

/// Wait for `SIGTERM`/`SIGINT`, or for a `SIGUSR2` binary upgrade whose new process serves.
#[cfg(unix)]
async fn wait_for_signal(args: &ServeArgs, running: &crate::app::Running) -> Stopped {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined2()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received; draining");
        return Stopped::Signal;
    };
    type Pending =
        std::pin::Pin<Box<dyn Future<Output = Result<u32, crate::upgrade::UpgradeError>> + Send>>;
    let mut upgrade: Option<Pending> = None;
    let timeout = args.upgrade_timeout;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = usr2.recv() => {
                if upgrade.is_some() {
                    tracing::warn!("an upgrade is already under way; SIGUSR2 ignored");
                    continue;
                }
                let fds = match running.listener_fds() {
                    Ok(fds) => fds,
                    Err(e) => {
                        tracing::error!(error = %e, "upgrade failed: cannot share the listeners; this process keeps serving");
                        continue;
                    }
                };
                // A generated admin token stays the same across the upgrade.
                let env = if running.token_generated {
                    vec![("FERROX_ADMIN_TOKEN".to_owned(), running.admin_token.to_string())]
                } else {
                    Vec::new()
                };
                let binary = crate::upgrade::successor_binary(args.upgrade_binary.as_deref());
                tracing::info!(binary = %binary.display(), "SIGUSR2: upgrading");
                upgrade = Some(Box::pin(async move {
                    crate::upgrade::spawn_successor(&binary, fds, env, timeout).await
                }));
            }
            done = async {
                match upgrade.as_mut() {
                    Some(pending) => pending.await,
                    None => std::future::pending().await,
                }
            } => {
                upgrade = None;
                match done {
                    Ok(pid) => {
                        tracing::info!(pid, "the new process serves; this one stops accepting and drains");
                        return Stopped::HandedOver;
                    }
                    Err(e) => tracing::error!(error = %e, "upgrade failed; this process keeps serving"),
                }
            }
        }
    }
    tracing::info!("shutdown signal received; draining");
    Stopped::Signal
}

#[cfg(not(unix))]
async fn wait_for_signal(_args: &ServeArgs, _running: &crate::app::Running) -> Stopped {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown signal received; draining");
    Stopped::Signal
}
