//! `keyfold monitor`: a witness. It follows a server's heads, replays every epoch's archive from
//! the genesis head (checking signatures, chain links, archive digests, outcomes and roots), and
//! posts a cosignature (SPEC section 6.3) on each head it verified. It never cosigns a head it
//! could not verify: on a divergence it stops with the report and a non-zero exit.
//!
//! `keyfold keygen` makes the witness's key pair.

use crate::client::{Published, pinned_key};
use crate::error::CliError;
use clap::Args;
use keyfold_core::cosign;
use keyfold_epoch::{generate_key_files, load_signing_key};
use keyfold_verify::Replayer;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The server's base URL.
    #[arg(long, env = "KEYFOLD_SERVER")]
    server: String,
    /// The directory's public key you trust (a `signing.pub` file or base64).
    #[arg(long)]
    public_key: String,
    /// The directory's origin you trust.
    #[arg(long)]
    origin: String,
    /// This witness's private key (`keyfold keygen`; mode 0600).
    #[arg(long)]
    witness_key: PathBuf,
    /// This witness's name in its cosignature lines (the server must list it with --witness).
    #[arg(long)]
    witness_name: String,
    /// How often to look for new heads.
    #[arg(long, default_value_t = 1_000)]
    poll_ms: u64,
    /// Verify and cosign up to the current head, then exit.
    #[arg(long)]
    once: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (created with mode 0600; must not exist).
    #[arg(long)]
    private: PathBuf,
    /// Where to write the public key (base64).
    #[arg(long)]
    public: PathBuf,
}

/// A key file that cannot be written (it exists, say: keys are never overwritten) is the user's
/// to fix (2).
pub fn keygen(args: &KeygenArgs) -> Result<(), CliError> {
    use base64::Engine;
    let public = generate_key_files(&args.private, &args.public).map_err(CliError::usage)?;
    println!("public key (base64): {}", base64::engine::general_purpose::STANDARD.encode(public.as_bytes()));
    Ok(())
}

/// A head that does not replay is exit 1 (nothing more is cosigned); a server that cannot be
/// reached is 3, one that refuses a request (a cosignature by a witness it does not list, say) 4.
pub fn monitor(args: &MonitorArgs) -> Result<(), CliError> {
    crate::serve::init_logging(crate::serve::LogFormat::Text)?;
    let public = pinned_key(&args.public_key)?;
    let key = load_signing_key(&args.witness_key).map_err(CliError::usage)?;
    keyfold_core::check_witness_name(&args.witness_name)
        .map_err(|e| CliError::usage(format!("--witness-name: {e}")))?;
    let server = Published::new(&args.server)?;
    let shard_bits = server.shard_bits()?;
    let genesis = server.text("/v1/heads/0")?;
    let mut replayer = Replayer::from_genesis(&genesis, &args.origin, &public, shard_bits)
        .map_err(|d| CliError::verification(format!("divergence, nothing cosigned: {d}")))?;
    let mut cosigned = 0u64;
    loop {
        let latest = server.latest_epoch()?;
        while replayer.head().epoch < latest {
            cosign_next(args, &server, &mut replayer, &key)?;
            cosigned += 1;
        }
        if args.once {
            println!(
                "verified epochs 0..={} of {} and cosigned {cosigned} heads as {}",
                replayer.head().epoch,
                args.origin,
                args.witness_name
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(args.poll_ms));
    }
}

/// Replays the epoch after the replayer's head and posts a cosignature of its head.
fn cosign_next(
    args: &MonitorArgs,
    server: &Published,
    replayer: &mut Replayer,
    key: &keyfold_core::SigningKey,
) -> Result<(), CliError> {
    let epoch = replayer.head().epoch.next();
    let note = server.text(&format!("/v1/heads/{}", epoch.0))?;
    let archive = server.bytes(&format!("/v1/epochs/{}/archive", epoch.0))?;
    let head = replayer
        .replay(&note, archive)
        .map_err(|d| CliError::verification(format!("divergence at epoch {epoch}, not cosigned; stopping: {d}")))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let line = cosign(&note, &args.witness_name, key, now)
        .map_err(|e| CliError::verification(format!("epoch {epoch}: cannot cosign the head: {e}")))?;
    let url = format!("{}/v1/heads/{}/cosignatures", server.base, epoch.0);
    let request = format!("POST {url}");
    let response = server.client.post(&url).body(line).send().map_err(|e| CliError::transport(&request, &e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(CliError::refused(request, status, &response.text().unwrap_or_default()));
    }
    tracing::info!(epoch = head.epoch.0, mutations = head.counts.mutations, "verified and cosigned");
    Ok(())
}
