//! The capabilities a component can be granted. Each module has the same
//! shape:
//!
//! - `grant(asker, import) -> Option<Result<Grant, String>>`: whether the
//!   import is this capability's (`None`: ask the next one), and if so the
//!   grant, or why it is refused;
//! - `add_to_linker(linker, ..., get)`: serves what it granted, generic over
//!   the instance's state (`get` projects the capability's slice out of it);
//! - its slice of an instance's state, if it keeps any.
//!
//! | import | capability | grant |
//! |---|---|---|
//! | `moat:platform/store` | [`store`] | the component's own database |
//! | `moat:platform/log` | [`log`] | the host's log |
//! | `wasi:io/*`, `wasi:cli/*` | [`wasi`] | stdio into the log, empty env and args |
//! | `wasi:clocks`, `random`, `filesystem`, `sockets` | [`wasi`] | linked inert; refused when `strict` |
//! | an interface with only types | (here) | nothing to link |
//! | `P/publish`, where the component owns `P` | [`publish`] | events appended to its outbox |
//! | a public interface another component exports | [`calls`] | calls forwarded to it |
//! | anything else (`wasi:http`, unknown packages) | | refused, naming it |
//!
//! And what the host calls on a component: [`schema`] (`migrate`).

pub mod calls;
mod grant;
pub mod log;
pub mod publish;
pub mod schema;
pub mod store;
pub mod wasi;

pub use grant::{Asker, Grant, Grants, PLATFORM_VERSION};

use crate::contract::Interface;

/// Grants one import, asking each capability in turn.
pub fn grant(asker: &Asker<'_>, import: &Interface) -> Result<Grant, String> {
    store::grant(asker, import)
        .or_else(|| log::grant(asker, import))
        .or_else(|| platform_refusal(import))
        .or_else(|| wasi::grant(asker, import))
        .or_else(|| import.funcs.is_empty().then_some(Ok(Grant::TypesOnly)))
        .or_else(|| publish::grant(asker, import))
        .or_else(|| calls::grant(asker, import))
        .unwrap_or_else(|| Err("the host does not grant it".into()))
}

/// Any other `moat:platform` interface, at any other version: refused.
fn platform_refusal(import: &Interface) -> Option<Result<Grant, String>> {
    (import.id.package == "moat:platform")
        .then(|| Err(format!("this host serves moat:platform/store and moat:platform/log at {PLATFORM_VERSION}")))
}
