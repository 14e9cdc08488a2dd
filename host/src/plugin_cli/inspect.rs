//! `ferrox plugin inspect FILE.wasm`: the world a component targets, its exports, the host
//! services it imports, and whether this gateway accepts it.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::plugin::host::Services;
use crate::plugin::inspect::{ComponentInfo, describe};
use crate::plugin::{FilterPool, Isolation, Plugin, PoolSettings};

/// WASI interfaces the gateway links for every filter, and what a filter gets from them.
const WASI: [(&str, &str); 7] = [
    (
        "wasi:cli/",
        "empty: no arguments or environment; stdin empty, stdout/stderr discarded",
    ),
    ("wasi:clocks/", "real clocks"),
    ("wasi:random/", "real randomness"),
    ("wasi:io/", "streams of the above"),
    ("wasi:filesystem/", "no preopened directories: no files"),
    ("wasi:sockets/", "every address denied: no network"),
    (
        "wasi:http/",
        "not provided: a component importing it is refused",
    ),
];

fn wasi_note(import: &str) -> Option<&'static str> {
    WASI.iter()
        .find(|(prefix, _)| import.starts_with(prefix))
        .map(|(_, note)| *note)
}

/// The report, and whether the component is accepted.
pub fn report(
    bytes: &[u8],
    info: &ComponentInfo,
    grants: &[String],
    accepted: &Result<(), String>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "size: {} bytes", bytes.len());
    let exports: Vec<&str> = info.exports.iter().map(|(n, _)| n.as_str()).collect();
    let filter_exports = ["init", "on-request", "on-response"];
    let world = match &info.filter_version {
        Some(v) if filter_exports.iter().all(|e| exports.contains(e)) => {
            format!("ferrox:filter@{v} (world `filter`, or a narrowing of its imports)")
        }
        Some(v) => format!("ferrox:filter@{v} types, but not the filter exports"),
        None if filter_exports.iter().all(|e| exports.contains(e)) => {
            "the filter exports, without ferrox:filter types".into()
        }
        None => "not a ferrox filter".into(),
    };
    let _ = writeln!(out, "world: {world}");
    let _ = writeln!(out, "exports:");
    for (name, kind) in &info.exports {
        let _ = writeln!(out, "  {name} ({kind})");
    }
    let _ = writeln!(
        out,
        "host services imported (grants it needs): [{}]",
        info.services.join(", ")
    );
    for s in &info.unknown_services {
        let _ = writeln!(out, "  unknown service: {s} (not offered by this gateway)");
    }
    let wasi: Vec<&String> = info
        .imports
        .iter()
        .filter(|i| i.starts_with("wasi:"))
        .collect();
    if !wasi.is_empty() {
        let _ = writeln!(out, "WASI imports (sandboxed):");
        for i in wasi {
            let _ = writeln!(
                out,
                "  {i}: {}",
                wasi_note(i).unwrap_or("not provided: refused")
            );
        }
    }
    let _ = writeln!(out, "checked with grants: [{}]", grants.join(", "));
    match accepted {
        Ok(()) => {
            let _ = writeln!(out, "accepted: yes");
        }
        Err(e) => {
            let _ = writeln!(out, "accepted: no — {e}");
        }
    }
    out
}

/// `ferrox plugin inspect`.
pub(super) fn run(
    file: &Path,
    grants: Option<Vec<String>>,
    config: Option<String>,
) -> Result<ExitCode, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let info = describe(&bytes)?;
    let grants = grants.unwrap_or_else(|| info.services.clone());
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "filter".into());
    let mut accepted = Plugin::load(&name, &bytes, &grants).map(|_| ());
    if let (Ok(()), Some(config)) = (&accepted, config) {
        let plugin = Plugin::load(&name, &bytes, &grants)?;
        accepted = super::runtime()?.block_on(async {
            let settings = PoolSettings {
                timeout: Duration::from_secs(1),
                memory: crate::plugin::engine::MAX_MEMORY,
                isolation: Isolation::Pooled,
                max_idle: 1,
                max_uses: 1,
            };
            let services = Services::new(Metrics::new());
            FilterPool::new(plugin, config, "inspect".into(), services, settings)
                .await
                .map(|_| ())
                .map_err(|e| format!("init rejected the config: {e}"))
        });
    }
    print!("{}", report(&bytes, &info, &grants, &accepted));
    Ok(if accepted.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
