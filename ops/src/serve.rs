//! `keyfold serve`: the HTTP API and the epoch scheduler over one data directory.

use crate::directory::{self, DirectoryConfig, open_job};
use crate::first_head;
use clap::{Args, ValueEnum};
use keyfold_api::{Api, router};
use keyfold_epoch::{EpochJob, HeadStore, Schedule, run_scheduler};
use keyfold_ingest::{Limits, Queue};
use keyfold_shards::TreeStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file with any of these options (same names, `_` for `-`, e.g. `listen =
    /// "0.0.0.0:8080"`). Precedence: command line, then environment, then this file, then defaults.
    #[arg(long, env = "KEYFOLD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory; an empty or absent one is initialised with defaults (as `keyfold init`).
    #[arg(long, env = "KEYFOLD_DATA", default_value = "keyfold-data")]
    pub(crate) data: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, env = "KEYFOLD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Cut an epoch once mutations have waited this long.
    #[arg(long, env = "KEYFOLD_EPOCH_INTERVAL_MIN_MS", default_value_t = 1_000)]
    epoch_interval_min_ms: u64,
    /// Cut a (heartbeat) epoch at least this often.
    #[arg(long, env = "KEYFOLD_EPOCH_INTERVAL_MAX_MS", default_value_t = 60_000)]
    epoch_interval_max_ms: u64,
    /// Bearer token for `POST /v1/epochs`; without it the operator endpoint is disabled.
    #[arg(long, env = "KEYFOLD_OPERATOR_TOKEN")]
    operator_token: Option<String>,
    /// HTTP worker threads (the epoch job runs on its own threads, never on these).
    #[arg(long, env = "KEYFOLD_HTTP_THREADS", default_value_t = 2)]
    http_threads: usize,
    /// Where the queue, the tree and the heads live: `embedded` (redb files under --data) or
    /// `fdb` (a FoundationDB cluster; config, keys and archives stay under --data). `fdb` needs a
    /// binary built with `--features fdb`.
    #[arg(long, value_enum, env = "KEYFOLD_STORE", default_value_t = StoreKind::Embedded)]
    pub(crate) store: StoreKind,
    /// FoundationDB cluster file (with --store fdb).
    #[arg(long, env = "FDB_CLUSTER_FILE", default_value = "/etc/foundationdb/fdb.cluster")]
    pub(crate) cluster_file: PathBuf,
    /// Key prefix of this directory in the cluster (with --store fdb); default `keyfold/<origin>/`.
    #[arg(long, env = "KEYFOLD_FDB_PREFIX")]
    pub(crate) fdb_prefix: Option<String>,
    /// A witness whose cosignatures this server accepts and serves: `NAME=BASE64_PUBLIC_KEY`
    /// (repeat for several; `keyfold keygen` makes a witness key).
    #[arg(long = "witness", value_name = "NAME=KEY", env = "KEYFOLD_WITNESSES", value_delimiter = ',')]
    witness: Vec<String>,
    /// A connection's first request head must arrive whole within this long, or it is answered
    /// 408 (closed, if nothing came); later heads on a kept-alive connection too, or it is closed.
    #[arg(long, env = "KEYFOLD_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Answer 408 to a request not handled within this long (a body trickling in, say).
    #[arg(long, env = "KEYFOLD_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    request_timeout_ms: u64,
    /// Log lines on stderr: `text` or `json` (one object per line). The level filter comes from
    /// `KEYFOLD_LOG` (e.g. `info`, `debug`, `keyfold_epoch=debug`; default `info`).
    #[arg(long, value_enum, env = "KEYFOLD_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Structured logs on stderr (stdout keeps the one line with the address, for scripts).
pub(crate) fn init_logging(format: LogFormat) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("KEYFOLD_LOG").or_else(|_| EnvFilter::try_new("info")).map_err(|e| e.to_string())?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second call in one process (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreKind {
    Embedded,
    Fdb,
}

/// The `--config` file: every serve option, all optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    data: Option<PathBuf>,
    listen: Option<SocketAddr>,
    epoch_interval_min_ms: Option<u64>,
    epoch_interval_max_ms: Option<u64>,
    operator_token: Option<String>,
    http_threads: Option<usize>,
    store: Option<StoreKind>,
    cluster_file: Option<PathBuf>,
    fdb_prefix: Option<String>,
    log_format: Option<LogFormat>,
    witness: Option<Vec<String>>,
    header_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
}

impl ServeArgs {
    /// Fills every option that the command line and the environment left at its default (or
    /// unset) from the `--config` file, if there is one.
    pub(crate) fn apply_config_file(&mut self, matches: &clap::ArgMatches) -> Result<(), String> {
        let Some(path) = &self.config else { return Ok(()) };
        let text = std::fs::read_to_string(path).map_err(|e| format!("config file {}: {e}", path.display()))?;
        let file: ServeFile = toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
        let unset = |id: &str| matches!(matches.value_source(id), None | Some(clap::parser::ValueSource::DefaultValue));
        macro_rules! fill {
            ($field:ident) => {
                if unset(stringify!($field))
                    && let Some(v) = file.$field
                {
                    self.$field = v;
                }
            };
            (option $field:ident) => {
                if unset(stringify!($field)) && file.$field.is_some() {
                    self.$field = file.$field;
                }
            };
        }
        fill!(data);
        fill!(listen);
        fill!(epoch_interval_min_ms);
        fill!(epoch_interval_max_ms);
        fill!(option operator_token);
        fill!(http_threads);
        fill!(store);
        fill!(cluster_file);
        fill!(option fdb_prefix);
        fill!(log_format);
        fill!(header_timeout_ms);
        fill!(request_timeout_ms);
        if unset("witness")
            && let Some(witnesses) = file.witness
        {
            self.witness = witnesses;
        }
        Ok(())
    }
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Serves `app` on `listener` (HTTP/1.1) until `shutdown`, then stops accepting and finishes the
/// requests in flight. Each connection has a header read timeout, so slow clients and idle
/// keep-alive connections are closed instead of held forever.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let mut stream = stream;
                    // The first head within the header timeout, or 408 (see `first_head`).
                    let Some(head) = first_head::read_first_head(&mut stream, header_timeout).await else {
                        return;
                    };
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(header_timeout)
                        .serve_connection(hyper_util::rt::TokioIo::new(first_head::Prefixed::new(head, stream)), service);
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

pub fn serve(args: &ServeArgs) -> Result<(), String> {
    if args.epoch_interval_min_ms > args.epoch_interval_max_ms {
        return Err("--epoch-interval-min-ms must not exceed --epoch-interval-max-ms".into());
    }
    init_logging(args.log_format)?;
    directory::init_if_empty(&args.data)?;
    match args.store {
        StoreKind::Embedded => {
            let (config, job) = open_job(&args.data)?;
            run(args, &config, Arc::new(job))
        }
        #[cfg(feature = "fdb")]
        StoreKind::Fdb => crate::fdb_backend::serve(args),
        #[cfg(not(feature = "fdb"))]
        StoreKind::Fdb => Err("this keyfold was built without FoundationDB support: rebuild it with \
             `cargo build --release -p keyfold-ops --features fdb` on a machine with FoundationDB's client \
             library (libfdb_c), or use --store embedded"
            .into()),
    }
}

/// `NAME=BASE64_KEY` witness specs.
pub(crate) fn parse_witnesses(specs: &[String]) -> Result<Vec<keyfold_core::Witness>, String> {
    use base64::Engine;
    let mut witnesses: Vec<keyfold_core::Witness> = Vec::new();
    for spec in specs {
        let (name, key) = spec.split_once('=').ok_or_else(|| format!("--witness {spec:?}: write NAME=BASE64_KEY"))?;
        keyfold_core::check_witness_name(name).map_err(|e| format!("--witness {spec:?}: {e}"))?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .filter(|k| keyfold_core::VerifyingKey::from_bytes(k).is_ok())
            .ok_or_else(|| format!("--witness {spec:?}: the key is not base64 of an ed25519 public key"))?;
        if witnesses.iter().any(|w| w.name == name) {
            return Err(format!("--witness {name:?} is given twice"));
        }
        witnesses.push(keyfold_core::Witness { name: name.to_owned(), public_key: key });
    }
    Ok(witnesses)
}

/// The HTTP API and the epoch scheduler over an opened job, until SIGTERM or Ctrl-C.
pub(crate) fn run<Q, S, H>(
    args: &ServeArgs,
    config: &DirectoryConfig,
    job: Arc<EpochJob<Q, S, H>>,
) -> Result<(), String>
where
    Q: Queue + 'static,
    S: TreeStore + 'static,
    H: HeadStore + 'static,
{
    let trigger = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let schedule =
        Schedule { interval_min_ms: args.epoch_interval_min_ms, interval_max_ms: args.epoch_interval_max_ms };
    let scheduler = {
        let (job, trigger, stop) = (Arc::clone(&job), Arc::clone(&trigger), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("keyfold-epochs".into())
            .spawn(move || run_scheduler(&job, schedule, Duration::from_millis(20), &now_ms, &trigger, &stop))
            .map_err(|e| e.to_string())?
    };
    let api = Arc::new(Api {
        job: Arc::clone(&job),
        origin: config.origin.clone(),
        limits: Limits::default(),
        trigger,
        operator_token: args.operator_token.clone(),
        retry_after_secs: (args.epoch_interval_min_ms / 1000).max(1),
        metrics: Some(keyfold_api::install_recorder().map_err(|e| format!("metrics recorder: {e}"))?),
        witnesses: parse_witnesses(&args.witness)?,
        cosignatures: Arc::new(
            keyfold_epoch::RedbCosignatures::open(&args.data.join("cosignatures.redb"))
                .map_err(|e| format!("cosignatures: {e}"))?,
        ),
        cosignature_max_future_secs: keyfold_api::COSIGNATURE_MAX_FUTURE_SECS_DEFAULT,
        archive_reads: keyfold_api::ArchiveReads::default(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.http_threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("keyfold: serving {} ({}) on http://{addr}", config.origin, args.data.display());
        tracing::info!(origin = %config.origin, data = %args.data.display(), %addr, "serving");
        // Graceful shutdown: stop accepting, finish the requests in flight (an acknowledged
        // mutation is already durable), then stop the scheduler below.
        let app = keyfold_api::with_request_timeout(router(api), Duration::from_millis(args.request_timeout_ms));
        serve_http(listener, app, Duration::from_millis(args.header_timeout_ms), shutdown_signal()).await
    });
    // The scheduler finishes the epoch it is running (or an interrupted one is recovered by the
    // next start: the same code path, the same head).
    stop.store(true, Ordering::Release);
    let epochs = scheduler.join().map_err(|_| "the epoch scheduler panicked".to_string())?;
    tracing::info!("stopped");
    println!("keyfold: stopped");
    served?;
    epochs.map(|_| ()).map_err(|e| format!("epoch scheduler stopped: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> ServeArgs {
        let matches = Cli::command().try_get_matches_from(args).unwrap();
        let mut cli = Cli::from_arg_matches(&matches).unwrap();
        cli.serve.apply_config_file(&matches).unwrap();
        cli.serve
    }

    #[test]
    fn config_file_fills_defaults_and_the_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("serve.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:9000\"\noperator_token = \"from-file\"\nepoch_interval_min_ms = 250\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let args = parse(&["serve", "--config", file]);
        assert_eq!(args.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(args.operator_token.as_deref(), Some("from-file"));
        assert_eq!(args.epoch_interval_min_ms, 250);
        assert_eq!(args.epoch_interval_max_ms, 60_000, "untouched options keep their defaults");
        let args = parse(&["serve", "--config", file, "--listen", "127.0.0.1:1", "--operator-token", "cli"]);
        assert_eq!(args.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(args.operator_token.as_deref(), Some("cli"));

        std::fs::write(dir.path().join("bad.toml"), "listen = \"x\"\nlisen = 1\n").unwrap();
        let matches = Cli::command()
            .try_get_matches_from(["serve", "--config", dir.path().join("bad.toml").to_str().unwrap()])
            .unwrap();
        let mut cli = Cli::from_arg_matches(&matches).unwrap();
        let err = cli.serve.apply_config_file(&matches).unwrap_err();
        assert!(err.contains("bad.toml"), "{err}");
    }
}
