//! `ferrox plugin new NAME [--lang rust|python|js]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::LangArg;
use crate::scaffold::{Language, bundled_sdk, new_project};

pub(super) fn run(
    name: &str,
    lang: LangArg,
    dir: &Path,
    sdk: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let language = match lang {
        LangArg::Rust => Language::Rust,
        LangArg::Python => Language::Python,
        LangArg::Js => Language::JavaScript,
    };
    let sdk = sdk.or_else(bundled_sdk);
    let root = new_project(name, dir, language, sdk.as_deref()).map_err(|e| e.to_string())?;
    let unit_tests = match language {
        Language::Rust => "\n  cargo test                      # unit tests, natively",
        Language::Python | Language::JavaScript => "",
    };
    println!(
        "created {root}
  cd {root}{unit_tests}
  ferrox plugin build             # → build/{name}.wasm
  ferrox plugin test build/{name}.wasm --request fixtures.yaml",
        root = root.display()
    );
    Ok(ExitCode::SUCCESS)
}
