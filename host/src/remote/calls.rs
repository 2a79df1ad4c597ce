//! Calls across hosts: NATS request-reply on `moat.<namespace>.call.<component>`.
//!
//! Request headers `Moat-Import` (the interface as the caller imports it)
//! and `Moat-Function`; the body is the arguments in [`codec`]. The reply's
//! body is the results, or a `Moat-Error` header says why the call failed.
//! The callee decodes with its own types and runs the call as a unit of work
//! of its own, exactly as for a caller in its own process.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use async_nats::HeaderMap;
use futures::StreamExt;
use tokio::sync::watch;
use wasmtime::component::Val;
use wasmtime::component::types::{ComponentFunc, Type};

use super::codec;
use super::connection::{Connection, token};
use crate::capability::calls::Callee;
use crate::component::Component;
use crate::contract::InterfaceId;
use crate::deadline::Deadline;

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

impl RemoteComponent {
    /// `component`, reached through `nats`.
    pub fn new(nats: Arc<Connection>, component: &str) -> RemoteComponent {
        RemoteComponent { nats, component: component.to_string() }
    }
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
        deadline: Option<Deadline>,
    ) -> Result<Vec<Val>> {
        let timeout = deadline.map_or(DEFAULT_TIMEOUT, |d| d.remaining());
        let results: Vec<Type> = ty.results().collect();
        let body = codec::encode_all(params)?;
        let mut headers = HeaderMap::new();
        headers.insert("Moat-Import", import.to_string().as_str());
        headers.insert("Moat-Function", func);
        let (subject, component) = (subject(&self.nats, &self.component), self.component.clone());
        let reply = self.nats.run(move |n| async move {
            let request = async_nats::Request::new().headers(headers).payload(body.into()).timeout(Some(timeout));
            n.client.send_request(subject, request).await
        });
        let reply = reply.map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => anyhow!(
                "component `{component}` runs on another host, and no host answers for it now (nothing answers its calls on NATS): is its host up, with the same [nats] namespace?"
            ),
            async_nats::RequestErrorKind::TimedOut => {
                anyhow!("component `{component}` on another host did not answer within {} ms", timeout.as_millis())
            }
            _ => anyhow!("calling component `{component}` on another host through NATS: {e}"),
        })?;
        if let Some(error) = reply.headers.as_ref().and_then(|h| h.get("Moat-Error")) {
            bail!("{}", error.as_str());
        }
        codec::decode_all(&results, &reply.payload)
            .with_context(|| format!("reading the results of `{component}`.{func}"))
    }
}

/// Serves calls to a local component from other hosts, until `stop`.
pub(super) async fn serve(nats: Arc<Connection>, component: Arc<Component>, mut stop: watch::Receiver<bool>) {
    let subject = subject(&nats, component.name());
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
                let answer = tokio::task::spawn_blocking(move || answer(&c, &request)).await;
                let mut headers = HeaderMap::new();
                let body = match answer {
                    Ok(Ok(body)) => body,
                    Ok(Err(e)) => {
                        headers.insert("Moat-Error", format!("{e:#}").replace(['\r', '\n'], " ").as_str());
                        Vec::new()
                    }
                    Err(e) => {
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

/// Runs one request against the component; the encoded results.
fn answer(component: &Component, request: &async_nats::Message) -> Result<Vec<u8>> {
    let header = |name: &str| -> Result<String> {
        request
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
            .with_context(|| format!("a call without {name}"))
    };
    let import = InterfaceId::parse(&header("Moat-Import")?);
    let func = header("Moat-Function")?;
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
    let results = component.call_import(&import, &func, &f.ty, &params, None)?;
    codec::encode_all(&results)
}
