//! moat's integration tests: real components, loaded by the real host, on
//! real SQLite files. `make test` builds the components first.
//!
//! One module per promise the host makes; shared helpers in `common`.

mod common;

mod integration_bad_input;
mod integration_boundary;
mod integration_cli;
mod integration_crash;
mod integration_events;
mod integration_hostile;
mod integration_http;
mod integration_limits;
mod integration_metrics;
mod integration_nats;
mod integration_new;
mod integration_operator;
mod integration_partition;
mod integration_requests;
mod integration_skeleton;
mod integration_sqllogictest;
mod integration_swap;
mod integration_traces;
mod module_graph;
