//! The `skiff` command: one binary for the whole cluster. `skiff up` runs the
//! control plane and a node in one process; the other subcommands run the
//! pieces separately, manage images and run benchmarks.

#[cfg(feature = "mimalloc")]
mod alloc;
mod apply;
mod bench;
mod cli;
mod components;
mod image;
mod node;
mod up;

use clap::Parser;

fn main() -> std::process::ExitCode {
    #[cfg(feature = "mimalloc")]
    alloc::tune();
    let cli = cli::Cli::parse();
    init_tracing(cli.verbose);
    // Exactly one rustls crypto provider (see MEASURED.md).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skiff")
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn,skiff=info",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
