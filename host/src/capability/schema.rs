//! What the host calls on a component that keeps tables:
//! `moat:platform/schema.migrate`, through typed bindings.
//!
//! The host runs it when it loads the component and before a swap, in a
//! unit of work of its own that also records the version it returns: a
//! failure leaves the database as it was. Only the host calls it: it is not
//! a contract interface, so neither the CLI nor other components reach it.

use anyhow::{Context, Result};
use wasmtime::component::{Instance, InstancePre};
use wasmtime::{AsContextMut, Store};

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/moat-platform",
        world: "moat:platform/migrating",
    });
}

use generated::exports::moat::platform::schema as wit;

/// The interface every component that keeps tables exports.
pub const INTERFACE: &str = "moat:platform/schema@0.1.0";

/// The version of a component's tables, as its `migrate` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct SchemaVersion {
    /// Incompatible changes.
    pub major: u32,
    /// Additive changes.
    pub minor: u32,
}

impl std::fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl std::str::FromStr for SchemaVersion {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let (major, minor) = s.split_once('.').with_context(|| format!("schema version {s:?} is not MAJOR.MINOR"))?;
        Ok(SchemaVersion { major: major.parse()?, minor: minor.parse()? })
    }
}

/// A build's `migrate`, found once when the build is linked.
pub struct Migrate(wit::GuestIndices);

impl Migrate {
    /// The build's `migrate`, if it exports `moat:platform/schema`.
    pub fn find<T>(pre: &InstancePre<T>) -> Option<Migrate> {
        pre.component().get_export_index(None, INTERFACE)?;
        wit::GuestIndices::new(pre).ok().map(Migrate)
    }

    /// Calls it on `instance`: the version it leaves, or why it refused.
    pub fn call<T>(
        &self,
        store: &mut Store<T>,
        instance: &Instance,
        found: Option<SchemaVersion>,
    ) -> wasmtime::Result<Result<SchemaVersion, String>> {
        let guest = self.0.load(store.as_context_mut(), instance)?;
        let found = found.map(|v| wit::SchemaVersion { major: v.major, minor: v.minor });
        Ok(guest.call_migrate(store.as_context_mut(), found)?.map(|v| SchemaVersion { major: v.major, minor: v.minor }))
    }
}
