//! `moat up`: the app served continuously. Events are delivered by a
//! dispatcher thread as soon as they commit; the control API answers on
//! loopback. SIGINT or SIGTERM stops it cleanly: the listener closes,
//! requests in flight finish, the dispatcher ends its batch, and the
//! databases close. Nothing committed is lost; undelivered events wait in
//! their outbox for the next start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::api::{CallRequest, CallResponse, ErrorBody, ReplayRequest, Replayed, Retried, RetryRequest, SwapRequest};
use crate::app::{App, SwapError};
use crate::component::{Redrive, returned_err};
use crate::data_dir::ADDR_FILE;
use crate::events::dead_letters;
use crate::values;

/// How long a call with `wait` waits for its events.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Serves `app` on `listen` until SIGINT or SIGTERM. `ready` is told the
/// address once the listener is bound (with port 0, the port picked).
pub async fn serve(app: Arc<App>, listen: SocketAddr, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    if !listen.ip().is_loopback() {
        bail!("the control API serves on loopback only: use 127.0.0.1:PORT or [::1]:PORT, not {listen}");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}: pick a free port with --listen 127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let addr_file = app.data_dir().join(ADDR_FILE);
    std::fs::write(&addr_file, addr.to_string()).with_context(|| format!("writing {}", addr_file.display()))?;
    let _remove_addr_file = RemoveOnDrop(addr_file);

    let stop = Arc::new(AtomicBool::new(false));
    let dispatcher = {
        let (app, stop) = (app.clone(), stop.clone());
        std::thread::Builder::new().name("moat-dispatcher".into()).spawn(move || app.events().run(&stop))?
    };
    ready(addr);

    let router = Router::new()
        .route("/v1/call", post(call))
        .route("/v1/swap", post(swap))
        .route("/v1/status", get(status))
        .route("/v1/dlq/{component}", get(dlq_list))
        .route("/v1/dlq/retry", post(dlq_retry))
        .route("/v1/replay", post(replay))
        // Room for the longest call the host reads (the check that says so
        // runs on the request), and JSON's escapes around it.
        .layer(axum::extract::DefaultBodyLimit::max(values::MAX_CALL_LEN * 4))
        .with_state(app.clone());
    let served = axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await;

    stop.store(true, Ordering::Relaxed);
    app.events().wake();
    if dispatcher.join().is_err() {
        tracing::error!("the event dispatcher panicked");
    }
    served.context("serving the control API")
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

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
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

async fn call(State(app): State<Arc<App>>, Json(req): Json<CallRequest>) -> Result<Json<CallResponse>, Failure> {
    blocking(move || {
        let invocation = app.invocation(&req.component, &req.call).map_err(bad_input)?;
        let results = app.invoke(&invocation).map_err(failed)?;
        if req.wait
            && let Err(e) = app.settle(SETTLE_LIMIT)
        {
            // The call committed: a problem delivering its events elsewhere
            // is not its failure.
            tracing::warn!("the call committed, but delivering its events failed: {e:#}");
        }
        Ok(CallResponse {
            wave: results.first().map(values::to_wave),
            json: results.first().map(values::to_json),
            returned_err: returned_err(&results),
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
