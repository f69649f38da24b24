//! `keyfold`: the operator's binary: `serve`, `init`, `epoch`, `status` and `bench` today;
//! `submit`, `lookup`, `verify` and `monitor` arrive with their issues.

mod bench;
mod directory;
#[cfg(feature = "fdb")]
mod fdb_backend;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "keyfold", version, about = "Keyfold key transparency directory: operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API and run epochs on schedule (initialises an empty data directory).
    Serve(serve::ServeArgs),
    /// Create a data directory: signing key (0600), public key, config, stores, genesis head.
    Init(directory::InitArgs),
    /// Cut and run one epoch now (the operator trigger) and print its signed head.
    Epoch(directory::DataArgs),
    /// Replay every epoch from the heads, archives and public key, and check everything signed.
    Verify(directory::DataArgs),
    /// Show the latest signed head and the queue depth of a data directory.
    Status(directory::DataArgs),
    /// Benchmark epoch updates of the sharded sparse Merkle map (seeded, repeatable).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::serve(&args),
        Command::Init(args) => directory::init(&args),
        Command::Epoch(args) => directory::epoch(&args),
        Command::Status(args) => directory::status(&args),
        Command::Verify(args) => directory::verify(&args),
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyfold: {e}");
            ExitCode::FAILURE
        }
    }
}
