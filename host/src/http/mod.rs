//! The HTTP gateway: every function of every contract a component serves,
//! over HTTP with JSON, derived from its WIT. No component has HTTP code.
//!
//! - `POST /{component}/{interface}/{function}`, the body a JSON object of
//!   the function's named parameters (`{}` or empty for none), in the one
//!   JSON mapping (`values::json`). POST only: WIT does not say which
//!   functions only read, and a GET must not write.
//! - Status codes from the function's result type: `result` ok → 200 with
//!   the ok value (204 without one), err → 422 with the error value in a
//!   problem body, or the status `[http.errors]` maps the error's case to;
//!   `option` some → 200 with the value, none → 404; any other type → 200
//!   (no result → 204). Bad input (malformed JSON, a missing, extra or
//!   mistyped field, an unknown component or function) → 400, a trap → 500,
//!   past the deadline → 504, another host's answer lost → 504; every error
//!   an RFC 9457 `application/problem+json` body. Bad input writes nothing;
//!   a failed call is rolled back.
//! - `Idempotency-Key: K` runs the call at most once: the key is the call's
//!   request id (`http:K`), recorded with the result in the callee's unit
//!   of work, so a retry gets the recorded response (`Idempotent-Replayed:
//!   true`), even after the host died between commit and reply; the same
//!   key with another body is 422.
//! - `GET /openapi.json`: OpenAPI 3.1 (`openapi`), as the contracts are now
//!   (a swap changes it). `GET /metrics`: Prometheus text (`crate::metrics`). `GET /healthz`: the host answers. `GET /readyz`:
//!   every component serves, and NATS, if used, is reachable.
//!
//! Layout: `mod.rs` (here): settings, router, the call handler;
//! `openapi`: the document and the JSON Schema of each WIT type;
//! `problem`: error bodies.

mod docs;
mod openapi;
mod problem;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value as Json_};
use wasmtime::component::Val;
use wasmtime::component::types::Type;

pub use docs::WitDocs;
use openapi::MAX_KEY;
pub use openapi::document;
use problem::Problem;

use crate::app::{App, FunctionRef};
use crate::capability::calls::CallOptions;
use crate::component::CallError;
use crate::manifest::HttpSettings;
use crate::values::json::{self, JsonError};

/// The gateway, bound and ready to serve.
pub struct Gateway {
    pub listener: tokio::net::TcpListener,
    pub router: Router,
}

impl Gateway {
    /// Binds `addr` (`settings.listen` if `None`) and makes the routes.
    pub async fn bind(app: Arc<App>, settings: &HttpSettings, addr: Option<SocketAddr>) -> Result<Gateway> {
        let addr = addr.unwrap_or(settings.listen);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("the HTTP gateway cannot listen on {addr}: pick a free port, or port 0"))?;
        Ok(Gateway { listener, router: router(app, settings) })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }
}

fn router(app: Arc<App>, settings: &HttpSettings) -> Router {
    let docs = WitDocs::for_manifest(app.manifest());
    let gateway = Arc::new(Shared { app, settings: settings.clone(), docs });
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .route("/metrics", get(metrics))
        .route("/{component}/{interface}/{function}", post(call))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(settings.max_body_bytes))
        .with_state(gateway);
    if !settings.cors_origins.is_empty() {
        router = router.layer(cors(&settings.cors_origins));
    }
    router
}

fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, "idempotency-key".parse().expect("a header name")])
        .expose_headers(["idempotent-replayed".parse().expect("a header name")])
}

struct Shared {
    app: Arc<App>,
    settings: HttpSettings,
    docs: WitDocs,
}

async fn healthz() -> Json<Json_> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready: every component has a live instance, and NATS (if the app spans
/// hosts) answered within its ping interval.
async fn readyz(State(g): State<Arc<Shared>>) -> Response {
    let status = g.app.status();
    let nats = status.nats.as_ref().is_none_or(|n| n.connected);
    if nats {
        (StatusCode::OK, Json(serde_json::json!({ "status": "ready" }))).into_response()
    } else {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not ready", "this host cannot reach NATS").into_response()
    }
}

/// Prometheus text format (`crate::metrics`).
async fn metrics(State(g): State<Arc<Shared>>) -> Response {
    let app = g.app.clone();
    match tokio::task::spawn_blocking(move || crate::metrics::render(&app)).await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "metrics failed", &e.to_string()).into_response(),
    }
}

async fn openapi_json(State(g): State<Arc<Shared>>) -> Response {
    let name = app_name(g.app.manifest());
    Json(document(&name, &g.app.contracts(), &g.settings, &g.docs)).into_response()
}

/// An app's name: the directory that holds its manifest.
pub fn app_name(manifest: &crate::manifest::Manifest) -> String {
    std::path::absolute(&manifest.path)
        .ok()
        .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "app".into())
}

async fn not_found() -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no such route",
        "functions are at POST /{component}/{interface}/{function}; GET /openapi.json lists them",
    )
    .into_response()
}

async fn call(
    State(g): State<Arc<Shared>>,
    Path((component, interface, function)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = g.clone();
    match tokio::task::spawn_blocking(move || run(&shared, &component, &interface, &function, &headers, &body)).await {
        Ok(response) => response,
        Err(e) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the call panicked", &e.to_string()).into_response(),
    }
}

/// One request: one call, one unit of work.
fn run(g: &Shared, component: &str, interface: &str, function: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let f = match g.app.function(component, &format!("{interface}.{function}")) {
        Ok(f) if f.interface().interface == interface => f,
        found => {
            let detail = match found {
                Err(e) => format!("{e:#}"),
                Ok(_) => format!("`{component}` has no interface `{interface}` with a function `{function}`"),
            };
            return Problem::new(StatusCode::BAD_REQUEST, "no such function", &detail).into_response();
        }
    };
    let params = match arguments(&f, body) {
        Ok(params) => params,
        Err(problem) => return *problem,
    };
    let request = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if !key.is_empty() && key.len() <= MAX_KEY => Some(format!("http:{key}")),
        Some(_) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "bad Idempotency-Key",
                &format!("an Idempotency-Key is 1 to {MAX_KEY} visible ASCII characters"),
            )
            .into_response();
        }
    };
    let trace = crate::trace::incoming(headers.get("traceparent").and_then(|v| v.to_str().ok()));
    let options = CallOptions { request, trace, ..CallOptions::default() };
    match g.app.call_with(&f, &params, &options) {
        Ok(answer) => {
            let mut response = respond(g, &f, answer.results.first());
            if answer.replayed.is_some() {
                response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            response
        }
        Err(e) => failure(e).into_response(),
    }
}

/// The body as the function's arguments, or the 400 that says why not.
fn arguments(f: &FunctionRef, body: &[u8]) -> Result<Vec<Val>, Box<Response>> {
    let bad = |detail: String, errors: Vec<JsonError>| {
        let mut p = Problem::new(StatusCode::BAD_REQUEST, "bad arguments", &detail);
        p.errors = errors;
        Box::new(p.into_response())
    };
    let args: Json_ = if body.iter().all(u8::is_ascii_whitespace) {
        Json_::Object(Map::new())
    } else {
        match serde_json::from_slice::<Json_>(body) {
            Ok(args @ Json_::Object(_)) => args,
            Ok(other) => {
                return Err(bad(
                    format!("the body must be a JSON object of the arguments by name, not {}", kind(&other)),
                    Vec::new(),
                ));
            }
            Err(e) => return Err(bad(format!("the body is not JSON: {e}"), Vec::new())),
        }
    };
    json::arguments(&f.ty, &args).map_err(|errors| {
        let detail = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        bad(detail, errors)
    })
}

fn kind(json: &Json_) -> &'static str {
    match json {
        Json_::Null => "null",
        Json_::Bool(_) => "a boolean",
        Json_::Number(_) => "a number",
        Json_::String(_) => "a string",
        Json_::Array(_) => "an array",
        Json_::Object(_) => "an object",
    }
}

/// The response for what the function returned, by its result type.
fn respond(g: &Shared, f: &FunctionRef, result: Option<&Val>) -> Response {
    let ty = f.ty.results().next();
    match (ty, result) {
        (Some(Type::Result(r)), Some(Val::Result(Ok(v)))) => match (r.ok(), v) {
            (Some(ty), Some(v)) => (StatusCode::OK, Json(json::to_json(&ty, v))).into_response(),
            _ => StatusCode::NO_CONTENT.into_response(),
        },
        (Some(Type::Result(r)), Some(Val::Result(Err(v)))) => {
            let error = match (r.err(), v) {
                (Some(ty), Some(v)) => json::to_json(&ty, v),
                _ => Json_::Null,
            };
            let case = v.as_deref().and_then(case_name);
            let status = case
                .and_then(|c| g.settings.errors.get(c))
                .and_then(|s| StatusCode::from_u16(*s).ok())
                .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            let detail = match case {
                Some(case) => format!("`{}` returned the error `{case}`; nothing was written", f.func),
                None => format!("`{}` returned an error; nothing was written", f.func),
            };
            let mut problem = Problem::new(status, "the function returned an error", &detail);
            problem.error = Some(error);
            problem.into_response()
        }
        (Some(Type::Option(o)), Some(Val::Option(v))) => match v {
            Some(v) => (StatusCode::OK, Json(json::to_json(&o.ty(), v))).into_response(),
            None => {
                Problem::new(StatusCode::NOT_FOUND, "not found", &format!("`{}` returned none", f.func)).into_response()
            }
        },
        (Some(ty), Some(v)) => (StatusCode::OK, Json(json::to_json(&ty, v))).into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

/// The case of an error value, for `[http.errors]`.
fn case_name(val: &Val) -> Option<&str> {
    match val {
        Val::Variant(case, _) | Val::Enum(case) => Some(case),
        _ => None,
    }
}

/// A call that did not return.
fn failure(e: CallError) -> Problem {
    let detail = e.to_string();
    match &e {
        CallError::Refused { .. } => Problem::new(StatusCode::BAD_REQUEST, "no such function", &detail),
        CallError::Reused { .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Idempotency-Key reused",
            "this Idempotency-Key was used before for another call (another function, or other arguments); nothing ran: use a new key for a new call",
        ),
        CallError::Unknown { .. } => Problem::new(StatusCode::GATEWAY_TIMEOUT, "outcome unknown", &detail),
        e if e.overrun() => Problem::new(StatusCode::GATEWAY_TIMEOUT, "past the deadline", &detail),
        CallError::Trap { .. } => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the call trapped", &detail),
        _ => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the call failed", &detail),
    }
}
