//! `ferrox plugin build [DIR]`: the component of a filter project, whatever its language, into
//! `DIR/build/NAME.wasm`.
//!
//! Python and JavaScript toolchains (componentize-py, componentize-js) make a component import
//! every interface of the world they build for, and the gateway refuses a component importing a
//! service it was not granted. So these filters are built for a world of their own: the
//! `filter` world with only the host services the project lists as its grants
//! (`[tool.ferrox] grants` in `pyproject.toml`, `"ferrox": {"grants": [...]}` in
//! `package.json`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// The WIT this binary implements.
pub const FILTER_WIT: &str = include_str!("../../../wit/filter.wit");

/// componentize-py used when a Python project pins none in `requirements.txt`.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The language of a filter project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// `Cargo.toml`.
    Rust,
    /// `app.py`.
    Python,
    /// `package.json`.
    Js,
}

/// The language of the project in `dir`.
pub fn detect(dir: &Path) -> Result<Lang, String> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("package.json").is_file() {
        Ok(Lang::Js)
    } else if dir.join("app.py").is_file() {
        Ok(Lang::Python)
    } else {
        Err(format!(
            "{} is not a filter project: no Cargo.toml (Rust), app.py (Python) or package.json (JavaScript)",
            dir.display()
        ))
    }
}

/// A WIT file adding world `world` to the package of `filter_wit`: its `filter` world importing
/// only `services`. Fails when a service is not one the world offers.
pub fn narrow_world(filter_wit: &str, world: &str, services: &[String]) -> Result<String, String> {
    let package = filter_wit
        .lines()
        .find(|l| l.starts_with("package ") && l.trim_end().ends_with(';'))
        .ok_or("the WIT has no package declaration")?;
    let mut out = format!("{package}\n\nworld {world} {{\n");
    let mut inside = false;
    let mut found = false;
    let mut offered = Vec::new();
    for line in filter_wit.lines() {
        if !inside {
            inside = line.starts_with("world filter {");
            found |= inside;
            continue;
        }
        if line.starts_with('}') {
            break;
        }
        let trimmed = line.trim();
        if trimmed.starts_with("///") {
            continue;
        }
        if let Some(name) = trimmed
            .strip_prefix("import ")
            .and_then(|r| r.strip_suffix(';'))
        {
            offered.push(name.to_owned());
            if !services.iter().any(|s| s == name) {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if !found {
        return Err("the WIT has no `world filter`".into());
    }
    if let Some(s) = services.iter().find(|s| !offered.contains(s)) {
        return Err(format!(
            "`{s}` is not a host service of this gateway (services: {})",
            offered.join(", ")
        ));
    }
    out.push_str("}\n");
    Ok(out)
}

/// The raw value of `key = ...` in table `[table]` of a TOML file (one line, comment cut).
fn toml_value<'a>(text: &'a str, table: &str, key: &str) -> Option<&'a str> {
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_table = line == format!("[{table}]");
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && in_table
            && k.trim() == key
        {
            return Some(v.split(" #").next().unwrap_or(v).trim());
        }
    }
    None
}

/// The string values of `key = [...]` in table `[table]` of a TOML file (a one-line array).
fn toml_string_array(text: &str, table: &str, key: &str) -> Result<Option<Vec<String>>, String> {
    toml_value(text, table, key)
        .map(|v| {
            serde_json::from_str(&v.replace('\'', "\"")).map_err(|_| {
                format!("[{table}] {key} must be a one-line list of strings, e.g. [\"log\"]")
            })
        })
        .transpose()
}

/// A string value `key = "..."` in table `[table]` of a TOML file.
fn toml_string(text: &str, table: &str, key: &str) -> Option<String> {
    toml_value(text, table, key).map(|v| v.trim_matches('"').to_owned())
}

/// The filter's name and the grants its project declares.
fn manifest(dir: &Path, lang: Lang) -> Result<(String, Vec<String>), String> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .map_err(|e| format!("cannot read {}: {e}", dir.join(f).display()))
    };
    let fallback = || {
        dir.canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "filter".into())
    };
    match lang {
        Lang::Rust => {
            let text = read("Cargo.toml")?;
            let grants = toml_string_array(&text, "package.metadata.ferrox", "grants")?;
            let name = toml_string(&text, "package", "name").unwrap_or_else(fallback);
            Ok((name, grants.unwrap_or_default()))
        }
        Lang::Python => {
            let text = if dir.join("pyproject.toml").is_file() {
                read("pyproject.toml")?
            } else {
                String::new()
            };
            let grants = toml_string_array(&text, "tool.ferrox", "grants")?;
            let name = toml_string(&text, "project", "name").unwrap_or_else(fallback);
            Ok((name, grants.unwrap_or_default()))
        }
        Lang::Js => {
            let text = read("package.json")?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("package.json is not valid JSON: {e}"))?;
            let name = json["name"]
                .as_str()
                .map(|n| n.rsplit('/').next().unwrap_or(n).to_owned())
                .unwrap_or_else(fallback);
            let grants = match &json["ferrox"]["grants"] {
                serde_json::Value::Null => Vec::new(),
                v => serde_json::from_value(v.clone()).map_err(|_| {
                    "package.json: ferrox.grants must be a list of strings".to_owned()
                })?,
            };
            Ok((name, grants))
        }
    }
}

fn run_tool(cmd: &mut Command, what: &str) -> Result<(), String> {
    // Tools' chatter goes to stderr: stdout carries only the artifact's path.
    let status = cmd
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Where downloads of language toolchains are cached.
fn lang_cache() -> PathBuf {
    std::env::var_os("FERROX_LANG_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ferrox-lang")))
        .unwrap_or_else(|| std::env::temp_dir().join("ferrox-lang"))
}

/// A scratch folder removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let p = std::env::temp_dir().join(format!("ferrox-build-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
        Ok(Self(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copy the WIT (the folder given, or the one embedded) into `out` with the narrowed world.
fn write_wit(wit: Option<&Path>, out: &Path, world: &str, grants: &[String]) -> Result<(), String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let filter_wit = match wit {
        Some(dir) => {
            for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
                let entry = entry.map_err(|e| io(dir, e))?;
                if entry.path().extension().is_some_and(|x| x == "wit") {
                    std::fs::copy(entry.path(), out.join(entry.file_name()))
                        .map_err(|e| io(&entry.path(), e))?;
                }
            }
            let f = dir.join("filter.wit");
            std::fs::read_to_string(&f).map_err(|e| io(&f, e))?
        }
        None => {
            std::fs::write(out.join("filter.wit"), FILTER_WIT).map_err(|e| io(out, e))?;
            FILTER_WIT.to_owned()
        }
    };
    let extra = out.join(format!("zz-{world}.wit"));
    std::fs::write(&extra, narrow_world(&filter_wit, world, grants)?).map_err(|e| io(&extra, e))
}

/// Build the project in `dir`; returns the component's path (`dir/build/NAME.wasm`).
pub fn build(dir: &Path, wit: Option<&Path>) -> Result<PathBuf, String> {
    let lang = detect(dir)?;
    let (name, grants) = manifest(dir, lang)?;
    let out_dir = dir.join("build");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let out = out_dir.join(format!("{name}.wasm"));
    let cache = lang_cache();
    match lang {
        Lang::Rust => build_rust(dir, &out)?,
        Lang::Python => {
            let venv = dir.join(".venv");
            let tool = venv.join("bin/componentize-py");
            if !tool.exists() {
                run_tool(
                    Command::new("python3").arg("-m").arg("venv").arg(&venv),
                    "python3 -m venv",
                )?;
                let mut pip = Command::new(venv.join("bin/pip"));
                pip.args(["install", "--quiet", "--disable-pip-version-check"])
                    .env("PIP_CACHE_DIR", cache.join("pip"));
                if dir.join("requirements.txt").is_file() {
                    pip.arg("-r").arg(dir.join("requirements.txt"));
                } else {
                    pip.arg(COMPONENTIZE_PY);
                }
                run_tool(&mut pip, "pip install")?;
            }
            componentize(
                wit,
                &name,
                &grants,
                &out,
                "componentize-py",
                |wit_dir, world, tmp| {
                    let mut cmd = Command::new(&tool);
                    cmd.arg("-d")
                        .arg(wit_dir)
                        .args(["-w", world, "componentize", "app", "-p"])
                        .arg(dir)
                        .arg("-o")
                        .arg(tmp);
                    cmd
                },
            )?;
        }
        Lang::Js => {
            let tool = dir.join("node_modules/.bin/componentize-js");
            if !tool.exists() {
                let ci = if dir.join("package-lock.json").is_file() {
                    "ci"
                } else {
                    "install"
                };
                run_tool(
                    Command::new("npm")
                        .args([ci, "--no-audit", "--no-fund", "--cache"])
                        .arg(cache.join("npm"))
                        .current_dir(dir),
                    &format!("npm {ci}"),
                )?;
            }
            let main = std::fs::read_to_string(dir.join("package.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|j| j["main"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "app.js".into());
            // No wasi:http (filters get no network).
            componentize(
                wit,
                &name,
                &grants,
                &out,
                "componentize-js",
                |wit_dir, world, tmp| {
                    let mut cmd = Command::new(&tool);
                    cmd.arg(dir.join(&main))
                        .arg("--wit")
                        .arg(wit_dir)
                        .args(["-n", world, "-d", "http", "fetch-event", "-o"])
                        .arg(tmp);
                    cmd
                },
            )?;
        }
    }
    Ok(out)
}

/// Run a componentize tool (`command(wit folder, world, output)`) against a world narrowed to
/// `grants`, and copy its component to `out`.
fn componentize(
    wit: Option<&Path>,
    name: &str,
    grants: &[String],
    out: &Path,
    what: &str,
    command: impl FnOnce(&Path, &str, &Path) -> Command,
) -> Result<(), String> {
    let scratch = Scratch::new()?;
    let world = format!("{name}-filter");
    let wit_dir = scratch.0.join("wit");
    write_wit(wit, &wit_dir, &world, grants)?;
    let tmp = scratch.0.join("out.wasm");
    run_tool(&mut command(&wit_dir, &world, &tmp), what)?;
    std::fs::copy(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(())
}

fn build_rust(dir: &Path, out: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo build failed ({})", output.status));
    }
    // The cdylib's .wasm, wherever the target directory is.
    let wasm = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
        })
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .rfind(|f| f.extension().is_some_and(|x| x == "wasm"))
        .ok_or("cargo built no .wasm: is the crate a cdylib?")?;
    std::fs::copy(&wasm, out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(())
}

/// `ferrox plugin build`.
pub(super) fn run(dir: &Path, wit: Option<&Path>) -> Result<ExitCode, String> {
    let out = build(dir, wit)?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_narrowed_world_imports_only_the_grants() {
        let grants = ["clock".to_owned(), "log".to_owned()];
        let wit = narrow_world(FILTER_WIT, "mine", &grants).expect("narrowed");
        assert!(wit.starts_with("package ferrox:filter@"));
        assert!(wit.contains("world mine {") && wit.contains("    import log;"));
        assert!(wit.contains("    import clock;") && !wit.contains("import counters;"));
        assert!(wit.contains("export on-request"));
        let err = narrow_world(FILTER_WIT, "mine", &["files".to_owned()]).expect_err("unknown");
        assert!(err.contains("`files` is not a host service"), "{err}");
    }

    #[test]
    fn grants_are_read_from_the_project_manifest() {
        let text =
            "[project]\nname = \"sig\"\n\n[tool.ferrox]\ngrants = ['log', \"clock\"]  # services\n";
        assert_eq!(
            toml_string_array(text, "tool.ferrox", "grants").expect("parses"),
            Some(vec!["log".to_owned(), "clock".to_owned()])
        );
        assert_eq!(toml_string(text, "project", "name").as_deref(), Some("sig"));
        assert!(toml_string_array("[tool.ferrox]\ngrants = 3\n", "tool.ferrox", "grants").is_err());
    }
}
