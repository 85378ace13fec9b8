//! `mlxrun serve`: an OpenAI-compatible HTTP server over one loaded model.
//!
//! axum on a tokio runtime takes the requests; checking, templating and tokenizing happen
//! there. One thread owns the model (`batcher`) and runs all requests through one
//! continuously batched decode. Streaming answers are server-sent events.
mod batcher;
mod errors;
mod openai_types;
mod routes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use clap::Args;

use crate::chat::LoadedTemplate;
use crate::cli::ModelArgs;
use crate::engine::CancelToken;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on (0: any free port; the address is printed)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// Require `Authorization: Bearer KEY` on /v1 requests
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,

    /// Most requests decoded together in the running batch
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub max_concurrent: usize,

    /// Most requests prefilled together when many arrive at once (the running ones take a
    /// step between such groups)
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub prefill_batch: usize,

    /// Most requests waiting for a place in the batch; beyond it requests get 429
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_queue: usize,

    /// Largest request body in bytes (413 beyond it)
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_body: usize,

    /// max_tokens of a request that gives none
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub default_max_tokens: usize,

    /// Context length: longest prompt + generation [default: the model's max_position_embeddings, else 4096]
    #[arg(long, value_name = "N")]
    pub context_length: Option<usize>,

    /// Prompt tokens processed per step
    #[arg(long, value_name = "N", default_value_t = crate::engine::generate::DEFAULT_PREFILL_STEP)]
    pub prefill_step: usize,

    /// On SIGINT/SIGTERM, seconds to let running requests finish before cancelling them
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub shutdown_timeout: f64,

    /// Print no access log lines
    #[arg(long)]
    pub quiet: bool,
}

pub(crate) struct Limits {
    pub max_requests: usize,
    pub max_body: usize,
    pub context_length: usize,
    pub default_max_tokens: usize,
}

/// What every request handler shares.
pub(crate) struct AppState {
    /// The batcher's queue; `None` once shutting down.
    jobs: Mutex<Option<std::sync::mpsc::Sender<batcher::Job>>>,
    model_id: String,
    model_path: String,
    tokenizer: Tokenizer,
    template: std::result::Result<Arc<LoadedTemplate>, String>,
    api_key: Option<String>,
    limits: Limits,
    in_flight: AtomicUsize,
    next_id: AtomicU64,
    created: u64,
    stats: Arc<batcher::Stats>,
}

/// What the batcher thread reports once the model is loaded.
struct Loaded {
    tokenizer: Tokenizer,
    template: std::result::Result<Arc<LoadedTemplate>, String>,
    context: Option<usize>,
    cancel: CancelToken,
}

pub fn run(args: ServeArgs) -> Result<()> {
    if args.max_concurrent == 0 || args.prefill_batch == 0 {
        return Err(Error::invalid("--max-concurrent and --prefill-batch must be at least 1"));
    }
    if args.prefill_step == 0 || args.default_max_tokens == 0 || args.max_body == 0 {
        return Err(Error::invalid("--prefill-step, --default-max-tokens and --max-body must be at least 1"));
    }
    if !(args.shutdown_timeout >= 0.0 && args.shutdown_timeout.is_finite()) {
        return Err(Error::invalid("--shutdown-timeout must be a non-negative number of seconds"));
    }
    if args.context_length == Some(0) {
        return Err(Error::invalid("--context-length must be at least 1"));
    }
    let load = args.model.options()?;
    if load.group.is_some() {
        return Err(Error::Unsupported("serving a model sharded over several ranks".into()));
    }

    // The model lives on its own thread from loading on: MLX work never runs on the
    // async runtime's threads.
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Loaded>>();
    let model_args = args.model.model.clone();
    let (max_rows, max_join, prefill) = (args.max_concurrent, args.prefill_batch, args.prefill_step);
    let stats = Arc::new(batcher::Stats::default());
    let batcher_stats = stats.clone();
    let model_loader = ModelArgsLoad { args: args.model, load };
    let worker = std::thread::Builder::new()
        .name("mlxrun-batcher".into())
        .spawn(move || {
            let mut model = match model_loader.args.load(&model_loader.load) {
                Ok(m) => m,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let loaded = Loaded {
                tokenizer: model.tokenizer().clone(),
                template: model.loaded_template(None).map_err(|e| e.to_string()),
                context: model.info().max_position_embeddings.filter(|&n| n > 0).map(|n| n as usize),
                cancel: model.canceller(),
            };
            if ready_tx.send(Ok(loaded)).is_ok() {
                batcher::run(model, jobs_rx, max_rows, max_join, prefill, batcher_stats);
            }
        })
        .map_err(|e| Error::Io(format!("starting the batcher thread: {e}")))?;
    let loaded = ready_rx.recv().map_err(|_| Error::Backend("the batcher thread ended while loading".into()))??;

    let model_id = std::path::Path::new(model_args.trim_end_matches('/'))
        .file_name()
        .map_or_else(|| model_args.clone(), |n| n.to_string_lossy().into_owned());
    let state = Arc::new(AppState {
        jobs: Mutex::new(Some(jobs_tx)),
        model_id,
        model_path: model_args,
        tokenizer: loaded.tokenizer,
        template: loaded.template,
        api_key: args.api_key.filter(|k| !k.is_empty()),
        limits: Limits {
            max_requests: args.max_concurrent + args.max_queue,
            max_body: args.max_body,
            context_length: args.context_length.or(loaded.context).unwrap_or(4096),
            default_max_tokens: args.default_max_tokens,
        },
        in_flight: AtomicUsize::new(0),
        next_id: AtomicU64::new(0),
        created: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        stats,
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("starting the async runtime: {e}")))?;
    let quiet = args.quiet;
    let grace = Duration::from_secs_f64(args.shutdown_timeout);
    let addr = format!("{}:{}", args.host, args.port);
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| Error::Io(format!("listening on {addr}: {e}")))?;
        let local = listener.local_addr().map_err(|e| Error::Io(e.to_string()))?;
        eprintln!("mlxrun serve: {} on http://{local} (context {} tokens)", state.model_id, state.limits.context_length);
        let app = router(state.clone(), quiet);
        let shutdown_state = state.clone();
        let cancel = loaded.cancel.clone();
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                signal().await;
                eprintln!("mlxrun serve: shutting down; waiting up to {:.0}s for running requests", grace.as_secs_f64());
                // New requests are refused from here on; running ones finish, or are
                // cancelled when the grace period is over.
                if let Ok(mut j) = shutdown_state.jobs.lock() {
                    j.take();
                }
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    cancel.cancel();
                });
            })
            .await
            .map_err(|e| Error::Io(format!("serving: {e}")))
    });
    drop(state);
    // The batcher ends once its queue is closed and its rows are done.
    let _ = worker.join();
    served
}

/// What the batcher thread needs to load the model.
struct ModelArgsLoad {
    args: ModelArgs,
    load: crate::models::LoadOptions,
}

fn router(state: Arc<AppState>, quiet: bool) -> Router {
    let max_body = state.limits.max_body;
    let app = Router::new()
        .route("/health", get(routes::health))
        .route("/v1/models", get(routes::models))
        .route("/v1/chat/completions", post(routes::chat))
        .route("/v1/completions", post(routes::completions))
        .fallback(routes::fallback)
        .method_not_allowed_fallback(routes::wrong_method)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state);
    if quiet {
        app
    } else {
        app.layer(axum::middleware::from_fn(access_log))
    }
}

/// One line per request on stderr: client, method, path, status, time to the response's
/// head (a stream goes on after it).
async fn access_log(ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let start = Instant::now();
    let res = next.run(req).await;
    eprintln!("{peer} \"{method} {path}\" {} {:.1}ms", res.status().as_u16(), start.elapsed().as_secs_f64() * 1e3);
    res
}

/// SIGINT or SIGTERM.
async fn signal() {
    let int = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = int.await;
                return;
            }
        };
        tokio::select! {
            _ = int => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = int.await;
    }
}
