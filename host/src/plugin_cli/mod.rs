//! `ferrox plugin …`: the filter developer's workflow — scaffold (`new`), build the component
//! for the language at hand (`build`), run it against written requests in the real host runtime
//! (`test`), and show what it imports and whether this gateway accepts it (`inspect`).

mod build;
mod fixtures;
mod inspect;
mod new;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

pub use build::{Lang, build, detect, narrow_world};
pub use fixtures::{Fixtures, run_fixtures};

/// The language of a filter project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LangArg {
    /// A Rust crate using `ferrox-sdk` (cargo, wasm32-wasip2).
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with componentize-js.
    Js,
}

/// `ferrox plugin …`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Scaffold a filter project that builds and passes its tests.
    New {
        /// Filter name: lower-case letters, digits and '-'.
        name: String,
        /// Language of the filter.
        #[arg(long, value_enum, default_value = "rust")]
        lang: LangArg,
        /// Folder to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path of the `ferrox-sdk` crate, for Rust (default: the SDK this binary was built
        /// from, when present, otherwise the published crate).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build the component of the filter project in DIR (Rust: Cargo.toml, Python: app.py,
    /// JavaScript: package.json) into DIR/build/NAME.wasm, and print that path.
    Build {
        /// The project folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// WIT folder to build Python/JS filters against (default: the WIT this binary
        /// implements).
        #[arg(long)]
        wit: Option<PathBuf>,
    },
    /// Run a component in the gateway's filter runtime against the requests of a fixture file
    /// and check the outcomes; exits 1 with a diff on any mismatch.
    Test {
        /// The component.
        file: PathBuf,
        /// Fixture file (YAML): the filter's config and grants, and cases of requests with
        /// their expected outcome.
        #[arg(long, short)]
        request: PathBuf,
    },
    /// Show the WIT world a component targets, its exports, the host services it imports, and
    /// whether this gateway accepts it.
    Inspect {
        /// The component.
        file: PathBuf,
        /// Check acceptance with these grants (comma-separated) instead of the ones it needs.
        #[arg(long, value_delimiter = ',')]
        grants: Option<Vec<String>>,
        /// Also run its `init` with this JSON config.
        #[arg(long)]
        config: Option<String>,
    },
}

/// Run a `ferrox plugin` sub-command.
pub fn main(command: PluginCommand) -> ExitCode {
    let result = match command {
        PluginCommand::New {
            name,
            lang,
            dir,
            sdk,
        } => new::run(&name, lang, &dir, sdk),
        PluginCommand::Build { dir, wit } => build::run(&dir, wit.as_deref()),
        PluginCommand::Test { file, request } => fixtures::run(&file, &request),
        PluginCommand::Inspect {
            file,
            grants,
            config,
        } => inspect::run(&file, grants, config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// A current-thread runtime for the sub-commands that run components.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}
