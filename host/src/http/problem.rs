//! Error bodies: RFC 9457 `application/problem+json`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value as Json;

use crate::values::json::JsonError;

/// One problem: what went wrong, and (for bad input) where.
#[derive(Serialize)]
pub struct Problem {
    /// Always `about:blank`: the status says the kind.
    #[serde(rename = "type")]
    kind: &'static str,
    title: String,
    status: u16,
    detail: String,
    /// For bad arguments: each value that did not fit, by JSON Pointer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<JsonError>,
    /// For a function that returned `err`: the error value, in JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Json>,
}

impl Problem {
    pub fn new(status: StatusCode, title: &str, detail: &str) -> Problem {
        Problem {
            kind: "about:blank",
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.to_string(),
            errors: Vec::new(),
            error: None,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        response
    }
}
