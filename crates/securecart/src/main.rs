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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
