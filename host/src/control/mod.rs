//! The control API of a long-running host (`moat up`): JSON over HTTP on
//! loopback. `moat call`, `swap`, `status`, `dlq` and `replay` use it when a
//! host serves the data directory, and open the app themselves otherwise.
//!
//! | request | body | answer |
//! |---|---|---|
//! | `POST /v1/call` | [`CallRequest`] | [`CallResponse`] |
//! | `POST /v1/swap` | [`SwapRequest`] | [`SwapReport`](crate::app::SwapReport) |
//! | `GET /v1/status` | | [`Status`](crate::app::Status) |
//! | `GET /v1/dlq/{component}` | | list of [`DeadLetter`](crate::events::DeadLetter) |
//! | `POST /v1/dlq/retry` | [`RetryRequest`] | list of [`Retried`] |
//! | `POST /v1/replay` | [`ReplayRequest`] | list of [`Replayed`] |
//!
//! Failures answer `400` (bad input: unknown component or function,
//! arguments that do not parse), `409` (a swap refused: the build does not
//! fit) or `500` (a call or a swap that failed), each with an [`ErrorBody`].

pub mod api;
pub mod client;
pub mod server;

pub use api::*;
