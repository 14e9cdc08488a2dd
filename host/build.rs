//! Compiles the built-in filter plugins (`plugins/<name>/`, not `plugins/tests/`) to
//! `wasm32-wasip2` components and generates the table that embeds them into the binary, so a
//! plain `cargo build` produces a gateway that has them.
//!
//! The nested cargo uses its own target directory (`<target>/wasm-plugins`): sharing the outer
//! build's directory would deadlock on its lock.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("host/ is inside the workspace")
        .to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    for dir in ["plugins", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let plugins = builtin_plugins(&root.join("plugins"));
    let mut table = String::from(
        "/// Built-in plugins: (name, component bytes, granted host services).\n\
         pub static BUILTIN: &[(&str, &[u8], &[&str])] = &[\n",
    );
    if !plugins.is_empty() {
        ensure_wasm_target();
        let target_dir = out
            .ancestors()
            .nth(4)
            .map(|t| t.join("wasm-plugins"))
            .unwrap_or_else(|| out.join("wasm-plugins"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&root)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--target-dir",
            ])
            .arg(&target_dir)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_TARGET_DIR");
        for (package, _, _) in &plugins {
            cmd.args(["-p", package]);
        }
        let status = cmd.status().expect("cannot run cargo to build the plugins");
        assert!(
            status.success(),
            "building the built-in plugins for wasm32-wasip2 failed"
        );
        for (package, name, grants) in &plugins {
            let wasm = target_dir
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", package.replace('-', "_")));
            assert!(
                wasm.exists(),
                "plugin {package} produced no {}",
                wasm.display()
            );
            table.push_str(&format!(
                "    ({name:?}, include_bytes!({:?}), &{grants:?}),\n",
                wasm.display().to_string()
            ));
        }
    }
    table.push_str("];\n");
    std::fs::write(out.join("builtin_plugins.rs"), table).expect("write the plugin table");
}

/// `(package, plugin name, grants)` for each `plugins/<name>/Cargo.toml` with
/// `[package.metadata.ferrox] grants = [...]`.
fn builtin_plugins(dir: &Path) -> Vec<(String, String, Vec<String>)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let manifest = entry.path().join("Cargo.toml");
        if name == "tests" || !manifest.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).expect("read a plugin manifest");
        let package = text
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("name = ")
                    .map(|v| v.trim_matches('"').to_owned())
            })
            .expect("a plugin manifest has a package name");
        let grants = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("grants = "))
            .map(|v| {
                v.trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .map(|g| g.trim().trim_matches('"').to_owned())
                    .filter(|g| !g.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        found.push((package, name, grants));
    }
    found
}

fn ensure_wasm_target() {
    let installed = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|p| p.exists());
    if installed {
        return;
    }
    println!("cargo:warning=installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
    let ok = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the built-in filters need the wasm32-wasip2 target: run `rustup target add wasm32-wasip2`"
    );
}
