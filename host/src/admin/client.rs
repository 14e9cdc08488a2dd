//! `ferrox apply -f FILE` and `ferrox diff -f FILE`: config as code. The file is sent to a
//! running gateway's `PUT /config` (a dry run for `diff`) and the changes are printed.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Flags of `ferrox apply` / `ferrox diff`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The declarative config file (YAML or JSON).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Base URL of the gateway's admin API.
    #[arg(
        long,
        env = "FERROX_ADMIN_URL",
        default_value = "http://127.0.0.1:9080"
    )]
    pub admin_url: String,
    /// Admin bearer token (an admin's: imports need the admin role).
    #[arg(long, env = "FERROX_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Run `apply` (or `diff` when `dry_run`); returns the exit code.
pub fn main(args: SyncArgs, dry_run: bool) -> ExitCode {
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
    match rt.block_on(sync(&args, dry_run)) {
        Ok(out) => {
            print!("{}", out.text);
            if dry_run && out.changed {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// What a sync printed and whether anything differs.
#[derive(Debug)]
pub struct Outcome {
    /// Lines for the terminal.
    pub text: String,
    /// Whether the document differs from the gateway's.
    pub changed: bool,
}

/// Send `args.file` to the admin API; the error is a message for the terminal.
pub async fn sync(args: &SyncArgs, dry_run: bool) -> Result<Outcome, String> {
    let body = std::fs::read(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let token = args
        .token
        .clone()
        .ok_or("an admin token is required: --token or FERROX_ADMIN_TOKEN")?;
    let base = args.admin_url.trim_end_matches('/');
    if !base.starts_with("http://") {
        return Err(format!(
            "{base}: only http:// admin URLs are supported (the admin API listens on loopback by default)"
        ));
    }
    let url = format!("{base}/config?dry_run={dry_run}");
    let req = http::Request::put(&url)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/yaml")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("{url}: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("cannot reach {base}: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if !status.is_success() {
        let mut msg = format!(
            "{}: {} {}",
            args.file.display(),
            status.as_u16(),
            v["message"]
                .as_str()
                .unwrap_or("the gateway refused the document")
        );
        if let Some(issues) = v["issues"].as_array().filter(|i| i.len() > 1) {
            for i in issues {
                msg.push_str(&format!(
                    "\n  {}: {}",
                    i["path"].as_str().unwrap_or(""),
                    i["message"].as_str().unwrap_or("")
                ));
            }
        }
        return Err(msg);
    }
    Ok(render(&v, dry_run))
}

fn render(v: &serde_json::Value, dry_run: bool) -> Outcome {
    let changes = v["changes"].as_array().cloned().unwrap_or_default();
    let mut text = String::new();
    for c in &changes {
        let sign = match c["op"].as_str() {
            Some("add") => '+',
            Some("remove") => '-',
            _ => '~',
        };
        text.push_str(&format!("{sign} {}\n", c["path"].as_str().unwrap_or("?")));
    }
    let version = v["version"].as_i64().unwrap_or_default();
    text.push_str(&match (changes.is_empty(), dry_run) {
        (true, _) => format!("no changes (config version {version})\n"),
        (false, true) => format!("{} change(s) would be applied\n", changes.len()),
        (false, false) => format!(
            "{} change(s) applied: config version {version}\n",
            changes.len()
        ),
    });
    Outcome {
        text,
        changed: !changes.is_empty(),
    }
}
