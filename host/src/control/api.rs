//! The control API's requests and answers, as JSON.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `POST /v1/call`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CallRequest {
    /// The component.
    pub component: String,
    /// The call in WAVE: `get-product("PROD001")`; with `args_json`, the
    /// function's name alone.
    pub call: String,
    /// The arguments as a JSON object by name (`values::json`), instead of
    /// WAVE in `call`.
    #[serde(default)]
    pub args_json: Option<serde_json::Value>,
    /// Wait until the events it published are delivered.
    #[serde(default)]
    pub wait: bool,
    /// Run it at most once: a call with an id that committed before gets
    /// its recorded result back, and nothing runs.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// The answer to a call.
#[derive(Debug, Serialize, Deserialize)]
pub struct CallResponse {
    /// The result in WAVE, if the function returns one.
    pub wave: Option<String>,
    /// The result as JSON.
    pub json: Option<serde_json::Value>,
    /// The function returned `err(...)`; its unit of work was rolled back.
    pub returned_err: bool,
    /// The result was recorded by an earlier call with the same request id.
    #[serde(default)]
    pub replayed: bool,
}

/// `POST /v1/swap`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SwapRequest {
    /// The component.
    pub component: String,
    /// The new build (absolute, or relative to the host's directory).
    pub wasm: Option<PathBuf>,
    /// Go back to the build before the last swap instead.
    #[serde(default)]
    pub rollback: bool,
}

/// `POST /v1/dlq/retry`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RetryRequest {
    /// The subscribing component.
    pub component: String,
    /// The dead letter, or `None` for all of them.
    pub id: Option<i64>,
}

/// The outcome of redriving one dead letter.
#[derive(Debug, Serialize, Deserialize)]
pub struct Retried {
    /// The dead letter.
    pub id: i64,
    /// `None` if it was handled; why it failed again otherwise.
    pub failed: Option<String>,
    /// It was not there any more: another redrive took it first.
    #[serde(default)]
    pub gone: bool,
}

/// `POST /v1/replay`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplayRequest {
    /// The subscribing component.
    pub component: String,
    /// The publishing component.
    pub from: String,
}

/// What a replay will deliver again.
#[derive(Debug, Serialize, Deserialize)]
pub struct Replayed {
    /// The publishing package.
    pub topic: String,
    /// The first event delivered again.
    pub from_seq: i64,
    /// The last event pruned before it, if any was.
    pub pruned_through: Option<i64>,
}

/// The body of every failure.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and what to do, as the CLI would print it.
    pub error: String,
}
