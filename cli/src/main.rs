//! `keyfold`: the operator's binary: `serve`, `init`, `epoch`, `status`, `verify`, `bench`, and
//! the clients `submit` and `lookup`, the witness `monitor`, `keygen`, and the C2SP tlog-witness
//! `witness init|serve`. A failure exits with the code of its class
//! (`error::CliError::exit_code`, listed in `--help` and the README).

mod audit;
mod bench;
mod client;
mod connection;
mod directory;
mod error;
#[cfg(feature = "fdb")]
mod fdb_backend;
mod first_head;
mod fsck;
mod fsck_window;
mod heads;
mod history;
mod monitor;
mod push;
mod serve;
mod verify;
mod view_state;
mod witness;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use error::CliError;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "keyfold",
    version,
    about = "Keyfold key transparency directory: operator CLI",
    after_help = error::EXIT_CODES
)]
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
    /// Replay every epoch from the heads, archives and public key (of a data directory or a
    /// server), and check everything signed.
    Verify(verify::VerifyArgs),
    /// Audit epochs without replaying the map: each from its epoch proof, archive and the two
    /// heads around it (SPEC section 3.2), in parallel; `--from E` starts anywhere.
    Audit(audit::AuditArgs),
    /// Signed heads as plain files: `heads export --out DIR` writes every head, verified, as
    /// `head-<epoch>.note` (from a stopped data directory or a server).
    Heads(heads::HeadsArgs),
    /// Show the latest signed head and the queue depth of a data directory.
    Status(directory::DataArgs),
    /// Rotate the directory's signing key: stage a new key that the next epoch's head announces
    /// (signed by the current key); from the epoch after it, the new key signs. Works while the
    /// server runs; clients and witnesses that follow the log accept the new key through that
    /// announcement.
    RotateKey(directory::DataArgs),
    /// Check a data directory offline (server stopped): replay heads and archives, check the map
    /// against every signed root and proof, read the queue back.
    Fsck(fsck::FsckArgs),
    /// Benchmark epoch jobs: phases, mutations/s, cores, peak RSS (seeded, repeatable; --json).
    Bench(bench::BenchArgs),
    /// Submit one mutation to a server and print its durable receipt.
    Submit(client::SubmitArgs),
    /// Look a key up on a server and verify the proof and the head against a pinned key
    /// (`--history`: every version of the key, verified complete).
    Lookup(client::LookupArgs),
    /// The key owner's self-monitor: check that every version of a key since the last check is
    /// one the owner published (`--expect`), with the history verified complete against the
    /// signed leaf; reports any other version with its proof as evidence (exit 1).
    Watch(history::WatchArgs),
    /// Witness a server: replay every epoch, cosign each verified head.
    Monitor(monitor::MonitorArgs),
    /// Make an ed25519 key pair (a witness key).
    Keygen(monitor::KeygenArgs),
    /// Run a C2SP tlog-witness: `witness init` makes its key, `witness serve` cosigns the
    /// checkpoints that logs (`keyfold serve --witness NAME=KEY@URL`) push to it.
    Witness(witness::WitnessArgs),
}

/// `keyfold serve`: the backend `--store` names (the server wing has one room per backend).
fn serve_with_backend(args: &serve::ServeArgs) -> Result<(), CliError> {
    serve::prepare(args)?;
    match args.store {
        serve::StoreKind::Embedded => serve::serve_embedded(args),
        #[cfg(feature = "fdb")]
        serve::StoreKind::Fdb => fdb_backend::serve(args),
        #[cfg(not(feature = "fdb"))]
        serve::StoreKind::Fdb => Err(CliError::usage(
            "this keyfold was built without FoundationDB support: rebuild it with \
             `cargo build --release -p keyfold-cli --features fdb` on a machine with FoundationDB's client \
             library (libfdb_c), or use --store embedded",
        )),
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Serve(mut args) => {
            let serve_matches = matches.subcommand_matches("serve").expect("the serve subcommand matched");
            args.apply_config_file(serve_matches).and_then(|()| serve_with_backend(&args))
        }
        Command::Init(args) => directory::init(&args),
        Command::Epoch(args) => directory::epoch(&args),
        Command::Status(args) => directory::status(&args),
        Command::RotateKey(args) => directory::rotate_key(&args),
        Command::Verify(args) => verify::verify(&args),
        Command::Audit(args) => audit::audit(&args),
        Command::Heads(args) => heads::heads(&args),
        Command::Fsck(args) => fsck::fsck(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Submit(args) => client::submit(&args),
        Command::Lookup(args) => client::lookup(&args),
        Command::Watch(args) => history::watch(&args),
        Command::Monitor(args) => monitor::monitor(&args),
        Command::Keygen(args) => monitor::keygen(&args),
        Command::Witness(args) => witness::witness(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyfold: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
