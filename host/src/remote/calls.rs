//! Calls across hosts: NATS request-reply on `moat.<namespace>.call.<component>`.
//!
//! A call takes effect within its caller's deadline, or never:
//! - the request carries an id (`Moat-Request-Id`) and the caller's
//!   deadline as a wall-clock instant (`Moat-Deadline-Ms`);
//! - the callee refuses to start a request whose deadline is nearer than
//!   `[nats] clock_skew_ms` (the most the hosts' clocks may differ), runs it
//!   within what is left, never commits it after, and records the id with
//!   the result in the same unit of work;
//! - so the caller may resend the same request while it waits (a request
//!   lost in a partition), and a retry of a call whose answer was lost gets
//!   the recorded result: it takes effect once.
//!
//! The caller's error says which case it is: refused or failed (nothing
//! happened), not delivered (no host answers: nothing happened), or no
//! answer before the deadline (it did not take effect after the deadline;
//! whether it did before is unknown, and a retry with the same request id
//! finds out, applying it at most once).
//!
//! Request headers `Moat-Import` (the interface as the caller imports it),
//! `Moat-Function`, `Moat-Request-Id`, `Moat-Deadline-Ms` and `Moat-Attempt`
//! (the same on every resend of one call), and a W3C `traceparent` when
//! traces are exported; the body is the arguments in [`codec`]. The reply's
//! body is the results (with `Moat-Replayed-Committed-Ms` if an earlier call
//! under the id committed them), or `Moat-Outcome` and `Moat-Error` say why
//! not. The callee decodes with its own types and runs the call as a unit of
//! work of its own, exactly as for a caller in its own process.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_nats::HeaderMap;
use futures::StreamExt;
use tokio::sync::watch;
use wasmtime::component::Val;
use wasmtime::component::types::{ComponentFunc, Type};

use super::codec;
use super::connection::{Connection, token};
use crate::capability::calls::{Answer, Attempt, CallOptions, Callee};
use crate::component::{CallError, Component};
use crate::contract::InterfaceId;
use crate::deadline::Deadline;
use crate::ledger;
use crate::trace::{self, Attribute, Kind, Span};

/// The subject a component's calls go to: `moat.<namespace>.call.<component>`.
fn subject(nats: &Connection, component: &str) -> String {
    nats.subject(&format!("call.{}", token(component)))
}

/// A component that runs on another host, as its callers here see it.
#[derive(Clone)]
pub struct RemoteComponent {
    nats: Arc<Connection>,
    component: String,
}

/// How long a call to another host may take when the caller has no
/// deadline of its own (a call from the CLI).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait for an answer before sending the request again (same
/// id: the callee applies it at most once).
const RESEND_AFTER: Duration = Duration::from_millis(1000);

impl RemoteComponent {
    /// `component`, reached through `nats`.
    pub fn new(nats: Arc<Connection>, component: &str) -> RemoteComponent {
        RemoteComponent { nats, component: component.to_string() }
    }
}

/// What came back for one send of the request.
enum Sent {
    Answered(async_nats::Message),
    NoResponders,
    NoAnswer,
}

impl Callee for RemoteComponent {
    /// Calls `func` of the interface `import` (as the caller imports it);
    /// decodes the results with the caller's result types.
    fn call_import(
        &self,
        import: &InterfaceId,
        func: &str,
        ty: &ComponentFunc,
        params: &[Val],
        options: &CallOptions,
    ) -> Result<Answer> {
        // The caller's side of the hop: the callee's host continues the
        // trace under this span (header `traceparent`).
        let mut span = Span::start(
            || format!("call {} {}.{func}", self.component, import.interface).into(),
            Kind::Client,
            options.trace.as_ref(),
            || {
                vec![
                    Attribute::new("rpc.system", "moat"),
                    Attribute::new("rpc.service", import.to_string()),
                    Attribute::new("rpc.method", func.to_string()),
                    Attribute::new("moat.component", self.component.clone()),
                ]
            },
        );
        let traceparent = span.context().map(|c| trace::traceparent(&c));
        let answer = self.send(import, func, ty, params, options, traceparent.as_deref());
        if let Err(e) = &answer {
            span.fail(|| format!("{e:#}"));
        }
        answer
    }
}

impl RemoteComponent {
    /// Sends one call and waits for its answer, resending while it waits.
    fn send(
        &self,
        import: &InterfaceId,
        func: &str,
        ty: &ComponentFunc,
        params: &[Val],
        options: &CallOptions,
        traceparent: Option<&str>,
    ) -> Result<Answer> {
        let deadline = options.deadline.unwrap_or_else(|| Deadline::after(DEFAULT_TIMEOUT));
        let request = options.request.clone().unwrap_or_else(new_request_id);
        let results: Vec<Type> = ty.results().collect();
        let body: bytes::Bytes = codec::encode_all(params)?.into();
        let mut headers = HeaderMap::new();
        headers.insert("Moat-Import", import.to_string().as_str());
        headers.insert("Moat-Function", func);
        headers.insert("Moat-Request-Id", request.as_str());
        // Every resend below is this attempt: what one of them committed is
        // this call's own result, not a replay.
        headers.insert("Moat-Attempt", new_request_id().as_str());
        headers.insert(
            "Moat-Deadline-Ms",
            (ledger::now_ms() + deadline.remaining().as_millis() as i64).to_string().as_str(),
        );
        if let Some(traceparent) = traceparent {
            headers.insert("traceparent", traceparent);
        }
        let (subject, component) = (subject(&self.nats, &self.component), self.component.clone());
        let started = std::time::Instant::now();
        let mut maybe_delivered = false;
        let reply = loop {
            let wait = deadline.remaining().min(RESEND_AFTER);
            if wait.is_zero() {
                break None;
            }
            let (headers, body, subject) = (headers.clone(), body.clone(), subject.clone());
            let sent = self.nats.run(move |n| async move {
                let request = async_nats::Request::new().headers(headers).payload(body).timeout(Some(wait));
                match n.client.send_request(subject, request).await {
                    Ok(reply) => Sent::Answered(reply),
                    Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Sent::NoResponders,
                    Err(_) => {
                        // Timed out, or the connection failed under it: the
                        // request may have reached the callee.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Sent::NoAnswer
                    }
                }
            });
            match sent {
                Sent::Answered(reply) => break Some(reply),
                Sent::NoAnswer => maybe_delivered = true,
                Sent::NoResponders => std::thread::sleep(deadline.remaining().min(Duration::from_millis(100))),
            }
        };
        let waited = started.elapsed().as_millis();
        let Some(reply) = reply else {
            if maybe_delivered {
                bail!(Unknown {
                    message: format!(
                        "component `{component}` on another host did not answer within {waited} ms, its caller's deadline: \
                         the call did not take effect after that deadline, and whether it did before is unknown; \
                         retrying it with request id {request} applies it at most once"
                    ),
                    request,
                });
            }
            bail!(
                "component `{component}` runs on another host, and no host answered for it within {waited} ms: \
                 the call was not delivered and nothing happened (is its host up, with the same [nats] namespace?)"
            );
        };
        let header = |name: &str| reply.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        if let Some(error) = header("Moat-Error") {
            if header("Moat-Outcome").as_deref() == Some("reused") {
                bail!(Reused(error));
            }
            // Refused, or failed and rolled back: the callee says so.
            bail!("on its host, nothing happened: {error}");
        }
        let results = codec::decode_all(&results, &reply.payload)
            .with_context(|| format!("reading the results of `{component}`.{func}"))?;
        let replayed = header("Moat-Replayed-Committed-Ms").and_then(|at| at.parse::<i64>().ok());
        Ok(Answer { results, replayed })
    }
}

/// No answer came before the deadline: the outcome of the call is not known
/// to the caller (the callee knows: a retry with the request id asks it).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Unknown {
    pub message: String,
    /// The id to retry with.
    pub request: String,
}

/// The request id was used before for another call: nothing ran.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reused(String);

/// A fresh request id: unique across hosts and restarts.
pub fn new_request_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    let salt = if random.is_ok() { u64::from_le_bytes(bytes) } else { ledger::now_us() as u64 };
    format!("{salt:016x}-{:x}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Serves calls to a local component from other hosts, until `stop`.
pub(super) async fn serve(nats: Arc<Connection>, component: Arc<Component>, mut stop: watch::Receiver<bool>) {
    let subject = subject(&nats, component.name());
    let skew = Duration::from_millis(nats.settings.clock_skew_ms);
    loop {
        let subscribed = nats.client.queue_subscribe(subject.clone(), subject.clone()).await;
        let mut requests = match subscribed {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(component = component.name(), "cannot serve calls from other hosts yet: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        loop {
            let request = tokio::select! {
                r = requests.next() => r,
                _ = stop.changed() => return,
            };
            let Some(request) = request else { break };
            let (nats, component) = (nats.clone(), component.clone());
            tokio::spawn(async move {
                let Some(reply) = request.reply.clone() else { return };
                let c = component.clone();
                let answer = tokio::task::spawn_blocking(move || answer(&c, &request, skew)).await;
                let mut headers = HeaderMap::new();
                let body = match answer {
                    Ok(Ok((body, replayed))) => {
                        headers.insert("Moat-Outcome", "done");
                        if let Some(at) = replayed {
                            headers.insert("Moat-Replayed-Committed-Ms", at.to_string().as_str());
                        }
                        body
                    }
                    Ok(Err(e)) => {
                        let outcome = if e.is::<Refused>() {
                            "refused"
                        } else if matches!(e.downcast_ref::<CallError>(), Some(CallError::Reused { .. })) {
                            "reused"
                        } else {
                            "failed"
                        };
                        headers.insert("Moat-Outcome", outcome);
                        headers.insert("Moat-Error", crate::deadline::describe(&e).replace(['\r', '\n'], " ").as_str());
                        Vec::new()
                    }
                    Err(e) => {
                        headers.insert("Moat-Outcome", "failed");
                        headers.insert("Moat-Error", format!("the call panicked: {e}").as_str());
                        Vec::new()
                    }
                };
                if let Err(e) = nats.client.publish_with_headers(reply, headers, body.into()).await {
                    tracing::warn!(component = component.name(), "answering a call from another host: {e}");
                }
            });
        }
    }
}

/// The caller's deadline was too near to start: nothing happened.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// Runs one request against the component, within its caller's deadline
/// (less `skew`, the most the hosts' clocks may differ); the encoded results,
/// and, if an earlier call with its request id recorded them, when.
fn answer(component: &Component, request: &async_nats::Message, skew: Duration) -> Result<(Vec<u8>, Option<i64>)> {
    let header = |name: &str| -> Option<String> {
        request.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string())
    };
    let required = |name: &str| header(name).with_context(|| format!("a call without {name}"));
    let import = InterfaceId::parse(&required("Moat-Import")?);
    let func = required("Moat-Function")?;
    let deadline = match header("Moat-Deadline-Ms").and_then(|d| d.parse::<i64>().ok()) {
        None => None,
        Some(at) => {
            let left = at - ledger::now_ms() - skew.as_millis() as i64;
            if left <= 0 {
                return Err(Refused(format!(
                    "component `{}` on another host refused the call: its caller's deadline was {} ms away when it arrived, within the {} ms allowed for clock skew; nothing happened",
                    component.name(),
                    left + skew.as_millis() as i64,
                    skew.as_millis()
                ))
                .into());
            }
            Some(Deadline::after(Duration::from_millis(left as u64)))
        }
    };
    let attempt = header("Moat-Attempt")
        .zip(header("Moat-Deadline-Ms").and_then(|d| d.parse().ok()))
        .map(|(id, deadline_ms)| Attempt { id, deadline_ms });
    let trace = trace::incoming(header("traceparent").as_deref());
    let options = CallOptions { deadline, request: header("Moat-Request-Id"), attempt, trace };
    let version = component.version();
    let export = version
        .contract
        .public_exports()
        .find(|e| e.id.serves(&import))
        .with_context(|| format!("`{}` does not export {import}", component.name()))?;
    let f = export
        .func(&func)
        .with_context(|| format!("`{}` has no function `{func}` in {}", component.name(), export.name))?;
    let types: Vec<Type> = f.ty.params().map(|(_, t)| t).collect();
    let params = codec::decode_all(&types, &request.payload).context("reading the arguments")?;
    let answer = component.call_import(&import, &func, &f.ty, &params, &options)?;
    Ok((codec::encode_all(&answer.results)?, answer.replayed))
}
