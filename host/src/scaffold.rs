//! `ferrox plugin new NAME [--lang rust|python|js]`: a filter project that builds and passes its
//! own tests out of the box (Rust: `cargo test`; every language: the golden tests in
//! `fixtures.yaml`, run by `ferrox plugin test`).

use std::path::{Path, PathBuf};

const CARGO_TOML: &str = include_str!("../templates/filter/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../templates/filter/lib.rs.tmpl");
const README: &str = include_str!("../templates/filter/README.md.tmpl");
const FIXTURES: &str = include_str!("../templates/fixtures.yaml.tmpl");
const PY_APP: &str = include_str!("../templates/python/app.py.tmpl");
const PY_PROJECT: &str = include_str!("../templates/python/pyproject.toml.tmpl");
const PY_REQUIREMENTS: &str = include_str!("../templates/python/requirements.txt.tmpl");
const PY_README: &str = include_str!("../templates/python/README.md.tmpl");
const PY_GITIGNORE: &str = include_str!("../templates/python/gitignore.tmpl");
const JS_APP: &str = include_str!("../templates/js/app.js.tmpl");
const JS_PACKAGE: &str = include_str!("../templates/js/package.json.tmpl");
const JS_README: &str = include_str!("../templates/js/README.md.tmpl");
const JS_GITIGNORE: &str = include_str!("../templates/js/gitignore.tmpl");

/// The language of a scaffolded filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// A crate using `ferrox-sdk`.
    Rust,
    /// componentize-py.
    Python,
    /// componentize-js.
    JavaScript,
}

/// Why scaffolding failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a crate name.
    #[error(
        "{0:?} is not a valid filter name: use lower-case letters, digits and '-', starting with a letter"
    )]
    Name(String),
    /// The target exists.
    #[error("{0} already exists")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The SDK this binary was built with, when its source is still where it was built.
pub fn bundled_sdk() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    p.join("Cargo.toml")
        .exists()
        .then(|| p.canonicalize().unwrap_or(p))
}

/// Create `dir/name` with a Rust filter crate; `sdk` is the path of `ferrox-sdk` (or `None` to
/// depend on the published crate).
pub fn new_filter(name: &str, dir: &Path, sdk: Option<&Path>) -> Result<PathBuf, ScaffoldError> {
    new_project(name, dir, Language::Rust, sdk)
}

/// Create `dir/name` with a filter project in `lang`; `sdk` is used by Rust projects only.
pub fn new_project(
    name: &str,
    dir: &Path,
    lang: Language,
    sdk: Option<&Path>,
) -> Result<PathBuf, ScaffoldError> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if !valid {
        return Err(ScaffoldError::Name(name.to_owned()));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists(root));
    }
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let sdk_dependency = match sdk {
        Some(p) => format!("ferrox-sdk = {{ path = {:?} }}", p.display().to_string()),
        None => "ferrox-sdk = \"0.1\"".to_owned(),
    };
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{type_name}}", &type_name)
            .replace("{{crate_file}}", &name.replace('-', "_"))
            .replace("{{sdk_dependency}}", &sdk_dependency)
            .replace("{{dir}}", &root.display().to_string())
            // Python and JavaScript instances need more memory than the route default.
            .replace(
                "{{memory}}",
                if lang == Language::Rust {
                    "16MiB"
                } else {
                    "32MiB"
                },
            )
    };
    let files = match lang {
        Language::Rust => vec![
            ("Cargo.toml", fill(CARGO_TOML)),
            ("src/lib.rs", fill(LIB_RS)),
            ("README.md", fill(README)),
            ("fixtures.yaml", fill(FIXTURES)),
            (".gitignore", "/target\n/build\n".to_owned()),
        ],
        Language::Python => vec![
            ("app.py", fill(PY_APP)),
            ("pyproject.toml", fill(PY_PROJECT)),
            ("requirements.txt", fill(PY_REQUIREMENTS)),
            ("README.md", fill(PY_README)),
            ("fixtures.yaml", fill(FIXTURES)),
            (".gitignore", fill(PY_GITIGNORE)),
        ],
        Language::JavaScript => vec![
            ("app.js", fill(JS_APP)),
            ("package.json", fill(JS_PACKAGE)),
            ("README.md", fill(JS_README)),
            ("fixtures.yaml", fill(FIXTURES)),
            (".gitignore", fill(JS_GITIGNORE)),
        ],
    };
    for (rel, text) in files {
        let path = root.join(rel);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text)
        };
        write().map_err(|source| ScaffoldError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_templates_filled() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        assert!(matches!(
            new_filter("Bad_Name", dir.path(), None),
            Err(ScaffoldError::Name(_))
        ));
        let root = new_filter("tenant-check", dir.path(), None).expect("scaffolds");
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains("pub struct TenantCheck"));
        assert!(lib.contains("export_filter!(TenantCheck)"));
        assert!(!lib.contains("{{"), "every placeholder filled");
        let toml = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
        assert!(toml.contains("name = \"tenant-check\"") && toml.contains("ferrox-sdk = \"0.1\""));
        assert!(matches!(
            new_filter("tenant-check", dir.path(), None),
            Err(ScaffoldError::Exists(_))
        ));
        for (lang, main) in [
            (Language::Python, "app.py"),
            (Language::JavaScript, "app.js"),
        ] {
            let root =
                new_project("tenant-gate", &dir.path().join(main), lang, None).expect("scaffolds");
            for file in [main, "fixtures.yaml", "README.md", ".gitignore"] {
                let text = std::fs::read_to_string(root.join(file)).expect("written");
                assert!(!text.contains("{{"), "{file}: every placeholder filled");
            }
            let fixtures = std::fs::read_to_string(root.join("fixtures.yaml")).expect("fixtures");
            assert!(fixtures.contains("x-tenant-gate: seen") && fixtures.contains("32MiB"));
        }
    }
}
