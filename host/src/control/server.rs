//! `moat up`: the app served continuously. Events are delivered by a
//! worker per route as soon as they commit; the control API answers on the
//! data directory's Unix socket (the owner's alone), or on loopback TCP with
//! a bearer token. SIGINT or SIGTERM stops it cleanly: delivery stops, the
//! listener closes, requests in flight finish (each within its deadline),
//! and the databases close. Nothing committed is lost; undelivered events
//! wait in their outbox for the next start.

use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::api::{CallRequest, CallResponse, ErrorBody, ReplayRequest, Replayed, Retried, RetryRequest, SwapRequest};
use crate::app::{App, SwapError};
use crate::capability::calls::CallOptions;
use crate::component::{CallError, Redrive, returned_err};
use crate::data_dir::{ADDR_FILE, SOCKET_FILE, TOKEN_FILE};
use crate::events::dead_letters;
use crate::http::Gateway;
use crate::{trace, values};

/// How long a call with `wait` waits for its events.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Where the control API listens.
pub enum Listen {
    /// The data directory's socket (the default).
    Socket,
    /// A Unix socket elsewhere.
    Unix(PathBuf),
    /// Loopback TCP, with a bearer token.
    Tcp(SocketAddr),
}

/// Serves `app` until SIGINT or SIGTERM, with the HTTP gateway beside the
/// control API if `gateway` is given. `ready` is told the control API's
/// address once the listener is bound (`unix:/path`, or `IP:PORT` with the
/// port picked).
pub async fn serve(app: Arc<App>, listen: Listen, gateway: Option<Gateway>, ready: impl FnOnce(&str)) -> Result<()> {
    let mut cleanup = Vec::new();
    let router = router(app.clone());
    let (addr, served) = match listen {
        Listen::Socket | Listen::Unix(_) => {
            let path = match listen {
                Listen::Unix(path) => path,
                _ => app.data_dir().join(SOCKET_FILE),
            };
            // The data directory's lock is ours: a socket file left there is
            // a dead host's.
            let _ = std::fs::remove_file(&path);
            let listener = tokio::net::UnixListener::bind(&path)
                .with_context(|| format!("listening on the socket {}", path.display()))?;
            owner_only(&path, 0o600)?;
            cleanup.push(path.clone());
            let addr = format!("unix:{}", path.display());
            (addr, Served::Unix(listener, router))
        }
        Listen::Tcp(listen) => {
            if !listen.ip().is_loopback() {
                bail!("the control API serves on loopback only: use 127.0.0.1:PORT or [::1]:PORT, not {listen}");
            }
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}: pick a free port with --listen 127.0.0.1:0"))?;
            let token = new_token()?;
            let token_file = app.data_dir().join(TOKEN_FILE);
            write_owner_only(&token_file, token.as_bytes())?;
            cleanup.push(token_file);
            let router = router.layer(axum::middleware::from_fn_with_state(Arc::new(token), require_token));
            (listener.local_addr()?.to_string(), Served::Tcp(listener, router))
        }
    };
    let addr_file = app.data_dir().join(ADDR_FILE);
    std::fs::write(&addr_file, &addr).with_context(|| format!("writing {}", addr_file.display()))?;
    cleanup.push(addr_file);
    let _remove = RemoveOnDrop(cleanup);

    let dispatcher = {
        let app = app.clone();
        std::thread::Builder::new().name("moat-dispatcher".into()).spawn(move || app.events().run())?
    };
    ready(&addr);

    // On a signal: stop delivering at once (settles in requests return), then
    // let the requests in flight finish; each is bounded by its deadline.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopping = app.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopping.events().stop();
        let _ = stop.send(true);
    });
    let shutdown = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let gateway = gateway.map(|g| {
        let shutdown = shutdown(stopped.clone());
        tokio::spawn(async move { axum::serve(g.listener, g.router).with_graceful_shutdown(shutdown).await })
    });
    let served = match served {
        Served::Unix(listener, router) => axum::serve(listener, router).with_graceful_shutdown(shutdown(stopped)).await,
        Served::Tcp(listener, router) => axum::serve(listener, router).with_graceful_shutdown(shutdown(stopped)).await,
    };
    if let Some(gateway) = gateway {
        match gateway.await {
            Ok(Err(e)) => tracing::error!("serving the HTTP gateway: {e}"),
            Err(e) => tracing::error!("the HTTP gateway panicked: {e}"),
            Ok(Ok(())) => {}
        }
    }
    app.events().stop();
    if dispatcher.join().is_err() {
        tracing::error!("the event dispatcher panicked");
    }
    served.context("serving the control API")
}

enum Served {
    Unix(tokio::net::UnixListener, Router),
    Tcp(tokio::net::TcpListener, Router),
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/call", post(call))
        .route("/v1/swap", post(swap))
        .route("/v1/status", get(status))
        .route("/v1/dlq/{component}", get(dlq_list))
        .route("/v1/dlq/retry", post(dlq_retry))
        .route("/v1/replay", post(replay))
        .route("/metrics", get(metrics))
        // Room for the longest call the host reads (the check that says so
        // runs on the request), and JSON's escapes around it.
        .layer(axum::extract::DefaultBodyLimit::max(values::MAX_CALL_LEN * 4))
        .with_state(app)
}

/// Over TCP, only a request carrying the host's token gets through.
async fn require_token(State(token): State<Arc<String>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(ErrorBody {
                error: format!(
                    "this host wants its token (Authorization: Bearer ...), which it wrote to {TOKEN_FILE} in its data directory"
                ),
            }),
        )
            .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random bytes, hex.
fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)
        .context("reading random bytes for the control token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn owner_only(path: &FsPath, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("making {} its owner's alone", path.display()))?;
    }
    Ok(())
}

/// Writes a file that only its owner can read, from the moment it exists.
fn write_owner_only(path: &FsPath, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    owner_only(path, 0o600)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("stopping: finishing requests in flight");
}

struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A failed request: the status code says whose fault it was.
struct Failure(StatusCode, anyhow::Error);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: format!("{:#}", self.1) })).into_response()
    }
}

/// Runs blocking work (wasm, SQLite) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<Json<T>, Failure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map(Json),
        Err(e) => Err(Failure(StatusCode::INTERNAL_SERVER_ERROR, anyhow::anyhow!("the request panicked: {e}"))),
    }
}

fn bad_input(e: anyhow::Error) -> Failure {
    Failure(StatusCode::BAD_REQUEST, e)
}

fn failed(e: impl Into<anyhow::Error>) -> Failure {
    Failure(StatusCode::INTERNAL_SERVER_ERROR, e.into())
}

async fn call(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<CallRequest>,
) -> Result<Json<CallResponse>, Failure> {
    let trace = trace::incoming(headers.get("traceparent").and_then(|v| v.to_str().ok()));
    blocking(move || {
        let invocation = match &req.args_json {
            Some(args) => app.invocation_json(&req.component, &req.call, args),
            None => app.invocation(&req.component, &req.call),
        }
        .map_err(bad_input)?;
        let options = CallOptions { request: req.request_id.clone(), trace, ..CallOptions::default() };
        let answer = app.invoke_with(&invocation, &options).map_err(|e| match e {
            CallError::Reused { .. } => Failure(StatusCode::UNPROCESSABLE_ENTITY, e.into()),
            CallError::Unknown { .. } => Failure(StatusCode::GATEWAY_TIMEOUT, e.into()),
            e => failed(e),
        })?;
        let results = answer.results;
        if req.wait && !app.catch_up(SETTLE_LIMIT) {
            // The call committed: its events are delivered by the routes'
            // workers; a route that is failing is not the call's failure.
            tracing::debug!("answering a call while some events are still pending (a route is failing?)");
        }
        Ok(CallResponse {
            wave: results.first().map(values::to_wave),
            json: results.first().map(|_| values::result_json(&invocation.function.ty, &results)),
            returned_err: returned_err(&results),
            replayed: answer.replayed.is_some(),
        })
    })
    .await
}

async fn swap(
    State(app): State<Arc<App>>,
    Json(req): Json<SwapRequest>,
) -> Result<Json<crate::app::SwapReport>, Failure> {
    blocking(move || {
        app.require(&req.component).map_err(bad_input)?;
        let report = match (&req.wasm, req.rollback) {
            (_, true) => app.rollback(&req.component),
            (Some(wasm), false) => app.swap(&req.component, wasm),
            (None, false) => return Err(bad_input(anyhow::anyhow!("name the new build, or ask for a rollback"))),
        };
        report.map_err(|e| match e {
            SwapError::Refused(why) => Failure(StatusCode::CONFLICT, anyhow::anyhow!(why)),
            SwapError::Failed(e) => Failure(StatusCode::INTERNAL_SERVER_ERROR, e),
        })
    })
    .await
}

async fn status(State(app): State<Arc<App>>) -> Result<Json<crate::app::Status>, Failure> {
    blocking(move || Ok(app.status())).await
}

/// Prometheus text format (`crate::metrics`).
async fn metrics(State(app): State<Arc<App>>) -> Response {
    match tokio::task::spawn_blocking(move || crate::metrics::render(&app)).await {
        Ok(text) => ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            Failure(StatusCode::INTERNAL_SERVER_ERROR, anyhow::anyhow!("the request panicked: {e}")).into_response()
        }
    }
}

async fn dlq_list(
    State(app): State<Arc<App>>,
    Path(component): Path<String>,
) -> Result<Json<Vec<crate::events::DeadLetter>>, Failure> {
    blocking(move || {
        let c = app.require(&component).map_err(bad_input)?;
        dead_letters::list(c).map_err(failed)
    })
    .await
}

async fn dlq_retry(State(app): State<Arc<App>>, Json(req): Json<RetryRequest>) -> Result<Json<Vec<Retried>>, Failure> {
    blocking(move || {
        let c = app.require(&req.component).map_err(bad_input)?;
        let letters = dead_letters::list(c).map_err(failed)?;
        let chosen: Vec<_> = match req.id {
            Some(id) => match letters.into_iter().find(|l| l.id == id) {
                Some(l) => vec![l],
                None => return Err(bad_input(anyhow::anyhow!("`{}` has no dead letter {id}", req.component))),
            },
            None => letters,
        };
        let mut out = Vec::new();
        for letter in &chosen {
            let outcome = dead_letters::retry(c, letter.id).map_err(failed)?;
            out.push(Retried {
                id: letter.id,
                failed: match &outcome {
                    Redrive::FailedAgain(why) => Some(why.clone()),
                    _ => None,
                },
                gone: outcome == Redrive::Gone,
            });
        }
        Ok(out)
    })
    .await
}

async fn replay(State(app): State<Arc<App>>, Json(req): Json<ReplayRequest>) -> Result<Json<Vec<Replayed>>, Failure> {
    blocking(move || {
        app.require(&req.component).map_err(bad_input)?;
        app.require(&req.from).map_err(bad_input)?;
        let replays = app.events().replay(&req.component, &req.from).map_err(failed)?;
        if replays.is_empty() {
            return Err(bad_input(anyhow::anyhow!(
                "`{}` does not handle events `{}` publishes",
                req.component,
                req.from
            )));
        }
        app.events().wake();
        Ok(replays
            .into_iter()
            .map(|(sub, from_seq, pruned_through)| Replayed { topic: sub.topic, from_seq, pruned_through })
            .collect())
    })
    .await
}
