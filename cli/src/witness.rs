//! `keyfold witness`: a C2SP tlog-witness (`keyfold-witness`, SPEC section 6.5) for Keyfold
//! directories and any other log with ed25519 checkpoints.
//!
//! `witness init` makes the witness's data directory and key; `witness serve` answers `POST
//! /add-checkpoint` (what `keyfold serve --witness NAME=KEY@URL` pushes to), `GET
//! /checkpoint/<origin>` and `GET /evidence[/<n>]` at the root of its address. Layout of `--data
//! DIR`: `witness.key` (the private key, mode 0600), `witness.pub` (its public key, base64) and
//! `witness.redb` (the latest cosigned checkpoint of each log, and evidence of forks).

use crate::error::CliError;
use crate::serve::{ConnectionOptions, LogFormat, cannot_listen, init_logging, serve_http, shutdown_signal};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Subcommand};
use keyfold_witness::{LogKey, Witness, WitnessConfig, WitnessError, WitnessStore};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const KEY_FILE: &str = "witness.key";
const PUBLIC_KEY_FILE: &str = "witness.pub";
const STORE_FILE: &str = "witness.redb";

/// The bounds of the witness's HTTP server: the same as `keyfold serve`'s defaults, but fewer
/// connections (a witness has a few logs as clients, and monitors reading).
const MAX_CONNECTIONS: usize = 256;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP worker threads; store work runs on tokio's blocking threads, not on these.
const HTTP_THREADS: usize = 2;

#[derive(Debug, Args)]
pub struct WitnessArgs {
    #[command(subcommand)]
    command: WitnessCommand,
}

#[derive(Debug, Subcommand)]
enum WitnessCommand {
    /// Create a witness data directory with a new key (`witness.key`, mode 0600; never
    /// overwritten) and print its cosigner vkey and its public key.
    Init(InitArgs),
    /// Serve the witness: `POST /add-checkpoint` (C2SP tlog-witness), `GET /checkpoint/<origin>`,
    /// `GET /evidence[/<n>]`, until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The witness's data directory (created if absent).
    #[arg(long, env = "KEYFOLD_WITNESS_DATA")]
    data: PathBuf,
    /// The witness's name in its cosignature lines: a C2SP key name (printable ASCII, no space
    /// or `+`), such as `witness.example.com/w1`. `witness serve` must be given the same one.
    #[arg(long, env = "KEYFOLD_WITNESS_NAME")]
    name: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The witness's data directory (`keyfold witness init`).
    #[arg(long, env = "KEYFOLD_WITNESS_DATA")]
    data: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, env = "KEYFOLD_WITNESS_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The witness's name, as given to `witness init` (its vkey was printed with it).
    #[arg(long, env = "KEYFOLD_WITNESS_NAME")]
    name: String,
    /// A log to witness: `ORIGIN=VKEY`, the log's origin and the C2SP verifier key its
    /// checkpoints are signed with (a Keyfold directory's: `keyfold status`, or `vkey` in
    /// `/v1/directory`). Repeat for several logs, or for several keys of one log.
    #[arg(
        long = "log",
        value_name = "ORIGIN=VKEY",
        env = "KEYFOLD_WITNESS_LOGS",
        value_delimiter = ',',
        required = true
    )]
    logs: Vec<String>,
}

pub fn witness(args: &WitnessArgs) -> Result<(), CliError> {
    match &args.command {
        WitnessCommand::Init(args) => init(args),
        WitnessCommand::Serve(args) => serve(args),
    }
}

/// A name or key file the user must fix is 2; a directory that cannot be created is 2 or 3
/// (`CliError::file`).
fn init(args: &InitArgs) -> Result<(), CliError> {
    keyfold_core::check_witness_name(&args.name).map_err(|e| CliError::usage(format!("--name: {e}")))?;
    let dir = &args.data;
    std::fs::create_dir_all(dir).map_err(|e| CliError::file(format!("cannot create {}: {e}", dir.display()), &e))?;
    // The key is written (0600, synced) before its public half: a crash in between leaves a key
    // without `witness.pub`, which `init` refuses to overwrite; `witness serve` needs only the key.
    let public = keyfold_epoch::generate_key_files(&dir.join(KEY_FILE), &dir.join(PUBLIC_KEY_FILE))
        .map_err(|e| CliError::usage(format!("{e} (an existing witness key is never overwritten)")))?;
    println!("initialised witness {} in {}", args.name, dir.display());
    println!("cosignature vkey: {}", keyfold_core::cosignature_vkey(&args.name, &public));
    println!("public key: {}", B64.encode(public.as_bytes()));
    println!(
        "serve it with `keyfold witness serve --data {} --name {} --log ORIGIN=VKEY`; a directory pushes to it \
         with `keyfold serve --witness {}=VKEY@http://ADDRESS`",
        dir.display(),
        args.name,
        args.name
    );
    Ok(())
}

/// `ORIGIN=VKEY` log specs (a bad one is the user's to fix).
fn parse_logs(specs: &[String]) -> Result<Vec<LogKey>, CliError> {
    specs
        .iter()
        .map(|spec| {
            let (origin, vkey) =
                spec.split_once('=').ok_or_else(|| CliError::usage(format!("--log {spec:?}: write ORIGIN=VKEY")))?;
            LogKey::from_vkey(origin, vkey.trim()).map_err(|e| CliError::usage(format!("--log {spec:?}: {e}")))
        })
        .collect()
}

/// The witness over its data directory: configuration mistakes are 2, a store that cannot be
/// opened (held by another witness process, an I/O failure) is 3.
fn open_witness(args: &ServeArgs) -> Result<Witness, CliError> {
    let logs = parse_logs(&args.logs)?;
    let signing_key = load_key(&args.data, &args.name)?;
    let path = args.data.join(STORE_FILE);
    // Each cosignature is committed durably (redb, `Durability::Immediate`) before it is
    // returned; a reopened store is the whole state (`WitnessStore`).
    let store = WitnessStore::open(&path).map_err(|e| CliError::unavailable(format!("{}: {e}", path.display())))?;
    let config = WitnessConfig { name: args.name.clone(), signing_key, logs };
    Witness::new(config, store).map_err(|e| match e {
        WitnessError::Config(_) => CliError::usage(e),
        other => CliError::unavailable(other),
    })
}

fn load_key(dir: &Path, name: &str) -> Result<keyfold_core::SigningKey, CliError> {
    let path = dir.join(KEY_FILE);
    if !path.exists() {
        return Err(CliError::usage(format!(
            "no witness key at {}: create one with `keyfold witness init --data {} --name {name}`",
            path.display(),
            dir.display()
        )));
    }
    keyfold_epoch::load_signing_key(&path).map_err(CliError::usage)
}

/// Serves the witness at the root of `--listen` until SIGTERM or Ctrl-C, then finishes the
/// requests in flight (a cosignature is returned only after its commit, so none is half-given).
fn serve(args: &ServeArgs) -> Result<(), CliError> {
    let witness = Arc::new(open_witness(args)?);
    init_logging(LogFormat::Text)?;
    let runtime = crate::serve::http_runtime(HTTP_THREADS)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| cannot_listen(args.listen, &e))?;
        let addr = listener.local_addr().map_err(|e| cannot_listen(args.listen, &e))?;
        println!("keyfold: witness {} ({}) on http://{addr}", args.name, args.data.display());
        tracing::info!(witness = %args.name, data = %args.data.display(), %addr, "witness serving");
        let app = keyfold_api::with_request_timeout(keyfold_witness::router(witness), REQUEST_TIMEOUT);
        let options = ConnectionOptions::new(MAX_CONNECTIONS, HEADER_TIMEOUT, WRITE_TIMEOUT);
        serve_http(listener, app, options, shutdown_signal()).await;
        Ok::<(), CliError>(())
    })?;
    tracing::info!("stopped");
    println!("keyfold: stopped");
    Ok(())
}
