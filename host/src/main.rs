//! The `ferrox` binary; everything lives in the `ferrox_host` library.

fn main() -> std::process::ExitCode {
    ferrox_host::cli::main()
}
