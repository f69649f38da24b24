//! `keyfold serve`: the HTTP API and the epoch scheduler over one data directory.

use crate::connection::{ConnectionCap, WriteTimeout, raise_fd_limit};
use crate::directory::{self, DirectoryConfig, open_job};
use crate::error::CliError;
use crate::first_head;
use clap::{Args, ValueEnum};
use keyfold_api::{Api, BodyBudget, router};
use keyfold_epoch::{
    Backoff, CosignatureStore, EpochJob, HeadStore, Schedule, SchedulerError, SchedulerHealth, SchedulerOptions,
    backoff_seed, run_scheduler,
};
use keyfold_ingest::{Limits, Queue};
use keyfold_map::TreeStore;
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
    /// A witness whose cosignatures this server accepts and serves: `NAME=KEY`, KEY being base64
    /// of its ed25519 public key or its cosigner vkey (`keyfold witness init` prints both;
    /// `keyfold keygen` makes a key for `keyfold monitor`). `NAME=KEY@URL` also pushes each new
    /// checkpoint to the C2SP tlog-witness at URL (`URL/add-checkpoint`) and serves the
    /// cosignature it returns. Repeat for several.
    #[arg(long = "witness", value_name = "NAME=KEY[@URL]", env = "KEYFOLD_WITNESSES", value_delimiter = ',')]
    witness: Vec<String>,
    /// A connection's first request head must arrive whole within this long, or it is answered
    /// 408 (closed, if nothing came); later heads on a kept-alive connection too, or it is closed.
    #[arg(long, env = "KEYFOLD_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Answer 408 to a request not handled within this long (a body trickling in, say).
    #[arg(long, env = "KEYFOLD_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    request_timeout_ms: u64,
    /// End a connection whose response makes no progress for this long (a client that stopped
    /// reading, say), freeing what it holds.
    #[arg(long, env = "KEYFOLD_WRITE_TIMEOUT_MS", default_value_t = 30_000)]
    write_timeout_ms: u64,
    /// Connections served at once; more are answered 503 (Retry-After) and closed. Lowered to what
    /// the open-file limit allows (its soft limit is raised to the hard limit at start).
    #[arg(long, env = "KEYFOLD_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Request body bytes held in memory at once, over all connections; a request whose body
    /// does not fit what is left is answered 503 (Retry-After) before its body is read.
    #[arg(long, env = "KEYFOLD_MAX_INFLIGHT_BODY_BYTES", default_value_t = 256 << 20)]
    max_inflight_body_bytes: u64,
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
pub(crate) fn init_logging(format: LogFormat) -> Result<(), CliError> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KEYFOLD_LOG")
        .or_else(|_| EnvFilter::try_new("info"))
        .map_err(|e| CliError::usage(format!("KEYFOLD_LOG: {e}")))?;
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
pub enum StoreKind {
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
    write_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    max_inflight_body_bytes: Option<u64>,
}

impl ServeArgs {
    /// Fills every option that the command line and the environment left at its default (or
    /// unset) from the `--config` file, if there is one.
    /// A missing or invalid config file is the user's to fix (2); one that cannot be read is 3.
    pub(crate) fn apply_config_file(&mut self, matches: &clap::ArgMatches) -> Result<(), CliError> {
        let Some(path) = &self.config else { return Ok(()) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::file(format!("config file {}: {e}", path.display()), &e))?;
        let file: ServeFile =
            toml::from_str(&text).map_err(|e| CliError::usage(format!("config file {}: {e}", path.display())))?;
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
        fill!(write_timeout_ms);
        fill!(max_connections);
        fill!(max_inflight_body_bytes);
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

/// What bounds each connection of [`serve_http`].
#[derive(Debug)]
pub(crate) struct ConnectionOptions {
    cap: ConnectionCap,
    header_timeout: Duration,
    write_timeout: Duration,
}

impl ConnectionOptions {
    /// At most `max_connections` (lowered to what the open-file limit allows) with these timeouts.
    pub(crate) fn new(max_connections: usize, header_timeout: Duration, write_timeout: Duration) -> Arc<Self> {
        Arc::new(ConnectionOptions {
            cap: ConnectionCap::new(connection_cap(max_connections)),
            header_timeout,
            write_timeout,
        })
    }
}

/// Serves `app` on `listener` (HTTP/1.1) until `shutdown`, then stops accepting and finishes the
/// requests in flight. At most `options.cap` connections are open at once (more are answered 503
/// and closed); each has a header read timeout, so slow clients and idle keep-alive connections
/// are closed instead of held forever, and a write timeout, so one that stops reading is too.
pub(crate) async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    options: Arc<ConnectionOptions>,
    shutdown: impl std::future::Future<Output = ()>,
) {
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
                let Some(permit) = options.cap.admit() else {
                    options.cap.refuse(stream);
                    continue;
                };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let watcher = graceful.watcher();
                let options = Arc::clone(&options);
                tokio::spawn(async move {
                    let _permit = permit; // this connection's place under the cap, until it closes
                    serve_connection(stream, service, &options, watcher).await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One connection: its first head within the header timeout, or 408 (see `first_head`); then
/// hyper, with a read buffer bounded like that head, over IO that ends a stalled response.
async fn serve_connection(
    mut stream: tokio::net::TcpStream,
    service: hyper_util::service::TowerToHyperService<axum::Router>,
    options: &ConnectionOptions,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let Some(head) = first_head::read_first_head(&mut stream, options.header_timeout).await else {
        return;
    };
    let io = WriteTimeout::new(first_head::Prefixed::new(head, stream), options.write_timeout);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_buf_size(first_head::MAX_HEAD_BYTES + 8192)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        let stalled = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        static STALLED: std::sync::LazyLock<keyfold_api::LogLimiter> =
            std::sync::LazyLock::new(|| keyfold_api::LogLimiter::new(Duration::from_secs(1)));
        if stalled && let Some(suppressed) = STALLED.admit() {
            tracing::warn!(error = %e, suppressed, "connection ended: the client stopped reading (--write-timeout-ms)");
        } else {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

pub(crate) async fn shutdown_signal() {
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

/// Checks the flags, starts logging and initialises an empty data directory: what every backend
/// does before it opens its stores.
pub fn prepare(args: &ServeArgs) -> Result<(), CliError> {
    if args.epoch_interval_min_ms > args.epoch_interval_max_ms {
        return Err(CliError::usage("--epoch-interval-min-ms must not exceed --epoch-interval-max-ms"));
    }
    if args.operator_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(CliError::usage(
            "--operator-token (or KEYFOLD_OPERATOR_TOKEN) is empty: give a secret token, or leave it unset \
             to disable the operator endpoints",
        ));
    }
    if args.max_connections == 0 || args.write_timeout_ms == 0 || args.max_inflight_body_bytes == 0 {
        return Err(CliError::usage(
            "--max-connections, --write-timeout-ms and --max-inflight-body-bytes must be above 0",
        ));
    }
    // Checked before anything is written: a mistyped witness leaves no new directory behind.
    crate::push::parse_witness_specs(&args.witness)?;
    init_logging(args.log_format)?;
    directory::init_if_empty(&args.data)
}

/// `keyfold serve --store embedded`: every store in the data directory's redb files.
pub fn serve_embedded(args: &ServeArgs) -> Result<(), CliError> {
    let opened = open_job(&args.data)?;
    run(args, &opened.config, Arc::new(opened.job), opened.cosignatures)
}

/// The witnesses of `NAME=KEY[@URL]` specs (a bad one is the user's to fix); the URLs are for
/// `keyfold serve` to push to, and ignored here.
pub(crate) fn parse_witnesses(specs: &[String]) -> Result<Vec<keyfold_core::Witness>, CliError> {
    Ok(crate::push::parse_witness_specs(specs)?.into_iter().map(|spec| spec.witness).collect())
}

/// The bounds on connections and on the request body bytes held at once.
fn http_limits(args: &ServeArgs) -> (Arc<ConnectionOptions>, Arc<BodyBudget>) {
    if args.max_inflight_body_bytes < keyfold_api::MAX_BODY_BYTES as u64 {
        tracing::warn!(
            max_inflight_body_bytes = args.max_inflight_body_bytes,
            max_body_bytes = keyfold_api::MAX_BODY_BYTES,
            "--max-inflight-body-bytes is below the largest request body: such requests are always refused"
        );
    }
    let connections = ConnectionOptions::new(
        args.max_connections,
        Duration::from_millis(args.header_timeout_ms),
        Duration::from_millis(args.write_timeout_ms),
    );
    (connections, Arc::new(BodyBudget::new(args.max_inflight_body_bytes)))
}

/// `max_connections`, lowered to what the open-file limit leaves room for (after raising it).
fn connection_cap(max_connections: usize) -> usize {
    let room = raise_fd_limit().map_or(usize::MAX, |room| usize::try_from(room).unwrap_or(usize::MAX));
    if room < max_connections {
        tracing::warn!(max_connections, lowered_to = room, "--max-connections lowered to fit the open file limit");
    }
    max_connections.min(room)
}

/// Starts the epoch scheduler on a thread of its own. A fatal error or a panic ends the thread;
/// `health` then says why, and the API refuses writes and fails /healthz while reads go on. Only
/// a restart starts a new scheduler.
fn spawn_scheduler<Q, S, H>(
    args: &ServeArgs,
    job: &Arc<EpochJob<Q, S, H>>,
    trigger: &Arc<AtomicBool>,
    stop: &Arc<AtomicBool>,
    health: &Arc<SchedulerHealth>,
) -> Result<std::thread::JoinHandle<Result<u64, SchedulerError>>, CliError>
where
    Q: Queue + 'static,
    S: TreeStore + 'static,
    H: HeadStore + 'static,
{
    let options = SchedulerOptions {
        schedule: Schedule { interval_min_ms: args.epoch_interval_min_ms, interval_max_ms: args.epoch_interval_max_ms },
        poll: Duration::from_millis(20),
        // Retryable failures: 50 ms doubling to 30 s, jittered (a full disk is not hammered).
        backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(30), backoff_seed()),
    };
    let (job, trigger, stop, health) = (Arc::clone(job), Arc::clone(trigger), Arc::clone(stop), Arc::clone(health));
    std::thread::Builder::new()
        .name("keyfold-epochs".into())
        .spawn(move || run_scheduler(&job, &options, &now_ms, &trigger, &stop, &health))
        .map_err(|e| CliError::unavailable(format!("cannot start the epoch scheduler thread: {e}")))
}

/// The HTTP API and the epoch scheduler over an opened job, until SIGTERM or Ctrl-C.
pub(crate) fn run<Q, S, H>(
    args: &ServeArgs,
    config: &DirectoryConfig,
    job: Arc<EpochJob<Q, S, H>>,
    cosignatures: Arc<dyn CosignatureStore>,
) -> Result<(), CliError>
where
    Q: Queue + 'static,
    S: TreeStore + 'static,
    H: HeadStore + 'static,
{
    let witnesses = crate::push::parse_witness_specs(&args.witness)?;
    let trigger = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let health = Arc::new(SchedulerHealth::default());
    let scheduler = spawn_scheduler(args, &job, &trigger, &stop, &health)?;
    let accepted = witnesses.iter().map(|spec| spec.witness.clone()).collect();
    let api = api(args, config, job, cosignatures, trigger, health, accepted)?;
    let served = serve_api(args, config, api, &witnesses);
    // The scheduler finishes the epoch it is running (or an interrupted one is recovered by the
    // next start: the same code path, the same head).
    stop.store(true, Ordering::Release);
    // The scheduler stops early only on a fatal error, one retrying cannot cure (a corrupt store,
    // say), or a panic: exit 1.
    let epochs = scheduler.join().map_err(|_| CliError::verification("the epoch scheduler panicked"))?;
    tracing::info!("stopped");
    println!("keyfold: stopped");
    served?;
    epochs.map(|_| ()).map_err(|e| CliError::verification(format!("epoch scheduler stopped: {e}")))
}

/// The API over `job`: its witnesses, their stored cosignatures, its metrics.
fn api<Q, S, H>(
    args: &ServeArgs,
    config: &DirectoryConfig,
    job: Arc<EpochJob<Q, S, H>>,
    cosignatures: Arc<dyn CosignatureStore>,
    trigger: Arc<AtomicBool>,
    health: Arc<SchedulerHealth>,
    witnesses: Vec<keyfold_core::Witness>,
) -> Result<Arc<Api>, CliError>
where
    Q: Queue + 'static,
    S: TreeStore + 'static,
    H: HeadStore + 'static,
{
    let metrics =
        keyfold_api::install_recorder().map_err(|e| CliError::unavailable(format!("metrics recorder: {e}")))?;
    Ok(Arc::new(Api {
        directory: job as Arc<dyn keyfold_epoch::Directory>,
        origin: config.origin.clone(),
        limits: Limits::default(),
        trigger,
        operator_token: args.operator_token.clone(),
        retry_after_secs: (args.epoch_interval_min_ms / 1000).max(1),
        metrics: Some(metrics),
        witnesses,
        cosignatures,
        scheduler: health,
        cosignature_max_future_secs: keyfold_api::COSIGNATURE_MAX_FUTURE_SECS_DEFAULT,
        archive_reads: keyfold_api::ArchiveReads::default(),
    }))
}

/// Serves `api` on `--listen` until SIGTERM or Ctrl-C, then finishes the requests in flight.
/// Checkpoints are pushed to the witnesses with a URL meanwhile, on the same runtime (a push in
/// flight at shutdown is dropped with it; the next start resumes, see `push`).
fn serve_api(
    args: &ServeArgs,
    config: &DirectoryConfig,
    api: Arc<Api>,
    witnesses: &[crate::push::WitnessSpec],
) -> Result<(), CliError> {
    let (connections, budget) = http_limits(args);
    let runtime = http_runtime(args.http_threads)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| cannot_listen(args.listen, &e))?;
        let addr = listener.local_addr().map_err(|e| cannot_listen(args.listen, &e))?;
        println!("keyfold: serving {} ({}) on http://{addr}", config.origin, args.data.display());
        tracing::info!(origin = %config.origin, data = %args.data.display(), %addr, "serving");
        crate::push::spawn(&api, witnesses)?;
        // Graceful shutdown: stop accepting, finish the requests in flight (an acknowledged
        // mutation is already durable), then stop the scheduler.
        let app = keyfold_api::with_request_timeout(router(api), Duration::from_millis(args.request_timeout_ms));
        let app = keyfold_api::with_body_budget(app, budget);
        serve_http(listener, app, connections, shutdown_signal()).await;
        Ok(())
    })
}

/// `--listen` names an address this host does not have or may not use: the user's to fix (2);
/// any other failure (the port in use, say) may pass: 3.
pub(crate) fn cannot_listen(addr: SocketAddr, e: &std::io::Error) -> CliError {
    let message = format!("cannot listen on {addr}: {e}");
    match e.kind() {
        std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::PermissionDenied => CliError::usage(message),
        _ => CliError::unavailable(message),
    }
}

/// The tokio runtime an HTTP server runs on (`threads` workers, at least one).
pub(crate) fn http_runtime(threads: usize) -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| CliError::unavailable(format!("the HTTP runtime: {e}")))
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
            "listen = \"0.0.0.0:9000\"\noperator_token = \"from-file\"\nepoch_interval_min_ms = 250\n\
             max_connections = 10\nmax_inflight_body_bytes = 4096\nwrite_timeout_ms = 7\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let args = parse(&["serve", "--config", file]);
        assert_eq!(args.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(args.operator_token.as_deref(), Some("from-file"));
        assert_eq!(args.epoch_interval_min_ms, 250);
        assert_eq!(args.epoch_interval_max_ms, 60_000, "untouched options keep their defaults");
        assert_eq!((args.max_connections, args.max_inflight_body_bytes, args.write_timeout_ms), (10, 4096, 7));
        let defaults = parse(&["serve"]);
        assert_eq!(
            (defaults.max_connections, defaults.max_inflight_body_bytes, defaults.write_timeout_ms),
            (1024, 256 << 20, 30_000)
        );
        let args = parse(&["serve", "--config", file, "--listen", "127.0.0.1:1", "--operator-token", "cli"]);
        assert_eq!(args.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(args.operator_token.as_deref(), Some("cli"));

        std::fs::write(dir.path().join("bad.toml"), "listen = \"x\"\nlisen = 1\n").unwrap();
        let matches = Cli::command()
            .try_get_matches_from(["serve", "--config", dir.path().join("bad.toml").to_str().unwrap()])
            .unwrap();
        let mut cli = Cli::from_arg_matches(&matches).unwrap();
        let err = cli.serve.apply_config_file(&matches).unwrap_err();
        assert!(err.to_string().contains("bad.toml"), "{err}");
        assert_eq!(err.exit_code(), 2, "a bad config file is the user's to fix");
    }
}
