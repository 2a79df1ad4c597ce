//! The CLI's side of the control API: a blocking HTTP client, over the
//! host's Unix socket or, with the host's token, over TCP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api::{CallRequest, CallResponse, ErrorBody, ReplayRequest, Replayed, Retried, RetryRequest, SwapRequest};
use crate::app::{Status, SwapReport};
use crate::events::DeadLetter;

/// How long a request may take (a swap compiles; a call is bounded by its deadline).
const TIMEOUT: Duration = Duration::from_secs(300);

/// A connection to a running host.
#[derive(Clone)]
pub struct Client {
    addr: String,
    token: Option<String>,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl Client {
    /// A client of the host at `addr`: `unix:/path/moat.sock`, or
    /// `127.0.0.1:PORT` with the host's `token`.
    pub fn new(addr: &str, token: Option<String>) -> Client {
        // One worker: requests from several threads at once each drive their
        // own, and the connections' tasks run on it.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        Client { addr: addr.to_string(), token, runtime: Arc::new(runtime) }
    }

    /// The address it talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Calls a function written in WAVE.
    pub fn call(&self, component: &str, call: &str, wait: bool) -> Result<CallResponse> {
        self.call_once(component, call, wait, None)
    }

    /// Calls a function written in WAVE, at most once under `request_id`.
    pub fn call_once(
        &self,
        component: &str,
        call: &str,
        wait: bool,
        request_id: Option<String>,
    ) -> Result<CallResponse> {
        self.post(
            "/v1/call",
            &CallRequest { component: component.into(), call: call.into(), args_json: None, wait, request_id },
        )
    }

    /// Calls `function` with its arguments as a JSON object by name.
    pub fn call_json(
        &self,
        component: &str,
        function: &str,
        args: serde_json::Value,
        wait: bool,
        request_id: Option<String>,
    ) -> Result<CallResponse> {
        self.post(
            "/v1/call",
            &CallRequest {
                component: component.into(),
                call: function.into(),
                args_json: Some(args),
                wait,
                request_id,
            },
        )
    }

    /// Swaps a component to a build, or back to its previous one.
    pub fn swap(&self, component: &str, wasm: Option<PathBuf>, rollback: bool) -> Result<SwapReport> {
        self.post("/v1/swap", &SwapRequest { component: component.into(), wasm, rollback })
    }

    /// Where the app stands.
    pub fn status(&self) -> Result<Status> {
        self.get("/v1/status")
    }

    /// The host's metrics, in Prometheus text format.
    pub fn metrics(&self) -> Result<String> {
        let (status, bytes) = self
            .runtime
            .block_on(async { tokio::time::timeout(TIMEOUT, self.send(Method::GET, "/metrics", None)).await })
            .map_err(|_| {
                anyhow!("the moat host at {} did not answer /metrics within {}s", self.addr, TIMEOUT.as_secs())
            })??;
        anyhow::ensure!(status.is_success(), "the moat host at {} answered /metrics with {status}", self.addr);
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A component's dead letters.
    pub fn dead_letters(&self, component: &str) -> Result<Vec<DeadLetter>> {
        self.get(&format!("/v1/dlq/{component}"))
    }

    /// Redrives one dead letter, or all.
    pub fn retry(&self, component: &str, id: Option<i64>) -> Result<Vec<Retried>> {
        self.post("/v1/dlq/retry", &RetryRequest { component: component.into(), id })
    }

    /// Rewinds a subscriber to the oldest kept events of a publisher.
    pub fn replay(&self, component: &str, from: &str) -> Result<Vec<Replayed>> {
        self.post("/v1/replay", &ReplayRequest { component: component.into(), from: from.into() })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.request(Method::GET, path, None)
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.request(Method::POST, path, Some(serde_json::to_vec(body)?))
    }

    /// Sends one request, reads the answer as JSON, or the host's error.
    pub fn request<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<T> {
        let (status, bytes) = self
            .runtime
            .block_on(async { tokio::time::timeout(TIMEOUT, self.send(method, path, body)).await })
            .map_err(|_| anyhow!("the moat host at {} did not answer {path} within {}s", self.addr, TIMEOUT.as_secs()))?
            .with_context(|| format!("no moat host answers at {} ({path}); is `moat up` running?", self.addr))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).with_context(|| format!("reading the host's answer to {path}"));
        }
        let error = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => body.error,
            Err(_) if status == StatusCode::UNAUTHORIZED => format!(
                "the moat host at {} refused the request: it wants the token it wrote to moat.token in its data directory (pass --data, or set MOAT_TOKEN)",
                self.addr
            ),
            Err(_) if status == StatusCode::PAYLOAD_TOO_LARGE => format!(
                "the request is larger than the host accepts ({} bytes at most)",
                crate::values::MAX_CALL_LEN * 4
            ),
            Err(_) => format!("the host answered {status}"),
        };
        Err(anyhow!("{error}"))
    }

    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<(StatusCode, Bytes)> {
        let mut request = Request::builder().method(method).uri(path).header("host", "moat");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        if let Some(traceparent) = crate::trace::environment() {
            request = request.header("traceparent", traceparent);
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = match self.addr.strip_prefix("unix:") {
            Some(path) => exchange(tokio::net::UnixStream::connect(path).await?, request).await?,
            None => exchange(tokio::net::TcpStream::connect(&self.addr).await?, request).await?,
        };
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

/// One HTTP/1.1 exchange over a fresh connection.
async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<hyper::Response<hyper::body::Incoming>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender.send_request(request).await?)
}
