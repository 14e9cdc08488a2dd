//! The `ferrox` binary; everything lives in the `ferrox_host` library.

/// mimalloc: the proxy allocates and frees small blocks (header maps, bytes, futures) on every
/// request; glibc's allocator spent ~11 % of the proxy's CPU on them (bench/README.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ferrox_host::cli::main()
}
