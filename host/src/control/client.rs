//! The CLI's side of the control API: a blocking HTTP client.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api::{CallRequest, CallResponse, ErrorBody, ReplayRequest, Replayed, Retried, RetryRequest, SwapRequest};
use crate::app::{Status, SwapReport};
use crate::events::DeadLetter;

/// A connection to a running host.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the host listening at `addr` (`127.0.0.1:7311`).
    pub fn new(addr: &str) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build();
        Client { base: format!("http://{addr}"), agent: ureq::Agent::new_with_config(config) }
    }

    /// The address it talks to.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Calls a function written in WAVE.
    pub fn call(&self, component: &str, call: &str, wait: bool) -> Result<CallResponse> {
        self.post("/v1/call", &CallRequest { component: component.into(), call: call.into(), wait })
    }

    /// Swaps a component to a build, or back to its previous one.
    pub fn swap(&self, component: &str, wasm: Option<PathBuf>, rollback: bool) -> Result<SwapReport> {
        self.post("/v1/swap", &SwapRequest { component: component.into(), wasm, rollback })
    }

    /// Where the app stands.
    pub fn status(&self) -> Result<Status> {
        self.get("/v1/status")
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
        let response = self.agent.get(format!("{}{path}", self.base)).call();
        self.read(path, response)
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        let response = self.agent.post(format!("{}{path}", self.base)).send_json(body);
        self.read(path, response)
    }

    fn read<T: DeserializeOwned>(
        &self,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T> {
        let mut response = response
            .with_context(|| format!("no moat host answers at {} ({path}); is `moat up` running?", self.addr()))?;
        if response.status().is_success() {
            return response.body_mut().read_json().with_context(|| format!("reading the host's answer to {path}"));
        }
        let status = response.status();
        let body: ErrorBody = response.body_mut().read_json().unwrap_or_else(|_| ErrorBody {
            error: if status == ureq::http::StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "the request is larger than the host accepts ({} bytes at most)",
                    crate::values::MAX_CALL_LEN * 4
                )
            } else {
                format!("the host answered {status}")
            },
        });
        Err(anyhow!("{}", body.error))
    }
}
