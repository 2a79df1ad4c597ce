//! moat: a host in which every microservice is a WebAssembly component that
//! owns its data.
//!
//! Layout, from the front door down; each module imports only the ones
//! below it (`make test` checks: `tests/module_graph.rs`):
//! - `cli`: the `moat` command, one file per subcommand.
//! - `control`: `moat up`'s control API (server) and the CLI's client of it.
//! - `http`: `moat up`'s HTTP gateway: every contract function as JSON over
//!   HTTP, with its OpenAPI description, derived from the WIT.
//! - `metrics`: the running app in Prometheus text, for `GET /metrics` on
//!   the gateway and the control API.
//! - `app`: loading an app (plan, then open), calling into it, swapping one
//!   component's build.
//! - `remote`: components on other hosts, through NATS JetStream.
//! - `events`: delivering events from outboxes to handlers, exactly once,
//!   in order, with retries and dead letters.
//! - `linker`: the linker of one build: a loop over its grants.
//! - `wiring`: the one check of an app's wiring: owners, grants,
//!   subscriptions, start order.
//! - `component`: one running component: instance, database, and the unit
//!   of work every call runs in.
//! - `capability`: what a component can be granted, one module each, all
//!   the same shape: `store`, `log`, `wasi`, `calls`, `publish`, and the
//!   host's call into it, `schema`.
//! - `db`: a component's database: the sandbox, and the unit of work's
//!   transaction; `ledger`: every statement on the host's own tables.
//! - `data_dir`, `engine`, `contract`, `manifest`, `values`, `deadline`,
//!   `trace`, `suggest`: the data directory, the Wasmtime engine and compile
//!   cache, imports and exports, `moat.toml`, WAVE and JSON, deadlines,
//!   OpenTelemetry spans, "did you mean".

pub mod app;
pub mod capability;
pub mod cli;
pub mod component;
pub mod contract;
pub mod control;
pub mod data_dir;
pub mod db;
pub mod deadline;
pub mod engine;
pub mod events;
pub mod http;
pub mod ledger;
pub mod linker;
pub mod manifest;
pub mod metrics;
mod platform;
pub mod remote;
pub mod suggest;
pub mod trace;
pub mod values;
pub mod wiring;

pub use app::{App, FunctionRef, Invocation, Plan};
pub use component::{CallError, Component};
pub use engine::Runtime;
pub use manifest::Manifest;
