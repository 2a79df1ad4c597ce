//! What a capability decides a grant on, and what it grants.

use std::collections::BTreeMap;

use crate::contract::{Contract, Interface, InterfaceId};

/// The version of the `moat:platform` package this host serves.
pub const PLATFORM_VERSION: &str = "0.1.0";

/// How the host serves one import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// `moat:platform/store`: the component's own database.
    Store,
    /// `moat:platform/log`: the host's log.
    Log,
    /// WASI I/O and CLI: stdio into the log, nothing else.
    Wasi,
    /// WASI clocks, random, filesystem or sockets, linked so that they reach
    /// nothing: no preopened directory, every socket address denied.
    WasiInert,
    /// `P/publish`: events of package `topic` appended to the outbox.
    Publish { topic: String },
    /// Calls forwarded to the component `provider`, which exports it as `export`.
    Call { provider: String, export: String },
    /// An interface that declares only types.
    TypesOnly,
}

impl Grant {
    /// A few words for `moat components`.
    pub fn describe(&self) -> String {
        match self {
            Grant::Store => "host: own database".into(),
            Grant::Log => "host: log".into(),
            Grant::Wasi => "host: stdio to log".into(),
            Grant::WasiInert => "host: inert".into(),
            Grant::Publish { topic } => format!("host: outbox of {topic} events"),
            Grant::Call { provider, .. } => format!("calls {provider}"),
            Grant::TypesOnly => "types only".into(),
        }
    }
}

/// One component's imports, each with its grant.
pub type Grants = Vec<(Interface, Grant)>;

/// Who is asking, and the app around it: what a capability decides a grant on.
pub struct Asker<'a> {
    /// The component's name.
    pub name: &'a str,
    /// Its contract.
    pub contract: &'a Contract,
    /// Whether it is `strict` (no WASI beyond io and cli).
    pub strict: bool,
    /// Every component of the app, on every host, by name (itself included).
    pub app: &'a BTreeMap<String, Contract>,
    /// Which component owns each package (serves its contract, publishes its events).
    pub owners: &'a BTreeMap<String, String>,
}

/// Whether an import of `moat:platform/<interface>` is served by this host's version.
pub(crate) fn platform_serves(import: &Interface, interface: &str) -> bool {
    import.id.package == "moat:platform"
        && import.id.interface == interface
        && InterfaceId::parse(&format!("moat:platform/{interface}@{PLATFORM_VERSION}")).serves(&import.id)
}
