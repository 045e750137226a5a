//! The `securecart` command. It only glues: it parses the command line, loads the topology,
//! and hands each library crate the settings it needs.

mod admin_client;
mod cli;
mod commands;
mod settings;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // One worker runs on a current-thread runtime: no work stealing, no cross-thread
    // wake-ups, which is how a one-worker nginx or HAProxy runs too.
    let mut builder = match cli.command.workers() {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("securecart: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("securecart: {error:#}");
            ExitCode::FAILURE
        }
    }
}
