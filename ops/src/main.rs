//! `keyfold`: the operator's binary. Today it benchmarks the authenticated map; `init`, `serve`,
//! `epoch`, `status`, `submit`, `lookup`, `verify` and `monitor` arrive with their issues.

mod bench;

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
    /// Benchmark epoch updates of the sharded sparse Merkle map (seeded, repeatable).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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
