//! An app: the components a manifest names, wired, running.
//!
//! Layout:
//! - `plan`: loading without touching data ([`Plan::new`]: compile, wire).
//! - `running`: opening the data directory and starting the components
//!   ([`Plan::open`]), then calling into the running [`App`].
//! - `invoke`: one call-preparation path (find the function, read the
//!   arguments) for every front door.
//! - `swap`: replacing one component's build while the rest keep running.

mod invoke;
mod plan;
mod running;
mod swap;

pub use crate::capability::calls::Answer;
pub use invoke::{FunctionRef, Invocation, find_function, listing};
pub use plan::{Part, Plan};
pub use running::{App, ServedElsewhere, Status};
pub use swap::{SwapError, SwapReport};
