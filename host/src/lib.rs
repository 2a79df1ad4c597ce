//! moat: a host in which every microservice is a WebAssembly component that
//! owns its data.
//!
//! Layout, following one call from the CLI to the database:
//! - `cli`: the `moat` command, one file per subcommand.
//! - `manifest`: `moat.toml`, the components of an app.
//! - `engine`: the Wasmtime engine and the on-disk cache of compiled components.
//! - `contract`: what a component imports and exports, and whether two sides fit.
//! - `linker`: which imports a component is granted, and the linker serving them.
//! - `app`: loading an app (plan, then open) and calling into it.
//! - `component`: one running component: instance, database, unit of work.
//! - `values`: WAVE and JSON at the edges.
//! - `control`: `moat up`'s control API (server) and the CLI's client of it.
//!
//! The capabilities a component can be granted, one module each:
//! - `store`: its own SQLite database, behind a sandbox.
//! - `log`: the host's log, and its stdout/stderr.
//! - `wasi`: WASI linked inert: no files, sockets, environment; coarse clocks.
//! - `calls`: calls to the interfaces other components export.
//! - `events`: typed events through a transactional outbox, delivered
//!   exactly once and in order, with retries and dead letters.
//! - `swap`: replacing a component's version while the app runs.
//! - `remote`: components on other hosts: events through NATS JetStream,
//!   calls through NATS request-reply.

pub mod app;
pub mod calls;
pub mod cli;
pub mod component;
pub mod contract;
pub mod control;
pub mod engine;
pub mod events;
pub mod linker;
pub mod log;
pub mod manifest;
mod platform;
pub mod remote;
pub mod store;
pub mod swap;
pub mod values;
pub mod wasi;

pub use app::{App, FunctionRef, Plan};
pub use component::{CallError, Component};
pub use engine::Runtime;
pub use manifest::Manifest;
