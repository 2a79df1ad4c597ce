//! What a component may import, decided import by import, and the linker
//! that serves exactly that.
//!
//! Every import gets one [`Grant`] or the load is refused, naming each
//! import the host does not serve (all of them at once, so a user fixes them
//! in one go):
//!
//! | import                                        | grant                                    |
//! |-----------------------------------------------|------------------------------------------|
//! | `moat:platform/store`, `moat:platform/log`    | the component's own database, the log    |
//! | `wasi:io/*`, `wasi:cli/*`                     | stdio into the log, empty env and args   |
//! | `wasi:clocks`, `random`, `filesystem`, `sockets` | linked inert (no directories, every address denied); refused when `strict` |
//! | `P/publish`, where the component exports `P` | events appended to its outbox            |
//! | an interface another loaded component exports | calls forwarded to that component        |
//! | an interface with only types                  | nothing to link                          |
//! | anything else (`wasi:http`, unknown packages) | refused                                  |

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Result, bail};
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use crate::calls::Provider;
use crate::component::InstanceState;
use crate::contract::{self, Contract, Interface};
use crate::platform::moat::platform::{log, store};

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

/// Decides a grant for every import of `name`, or refuses the component,
/// naming every import it cannot have and what to do about it.
pub fn grant(name: &str, contract: &Contract, strict: bool, others: &BTreeMap<String, Contract>) -> Result<Grants> {
    let mut grants = Vec::new();
    let mut refused = Vec::new();
    for import in &contract.imports {
        match grant_one(name, contract, import, strict, others) {
            Ok(g) => grants.push((import.clone(), g)),
            Err(why) => refused.push(format!("  - {}: {why}", import.name)),
        }
    }
    if !refused.is_empty() {
        bail!("component `{name}` imports what the host does not grant, so it was not loaded:\n{}", refused.join("\n"));
    }
    Ok(grants)
}

fn grant_one(
    name: &str,
    contract: &Contract,
    import: &Interface,
    strict: bool,
    others: &BTreeMap<String, Contract>,
) -> Result<Grant, String> {
    let id = &import.id;
    let pkg = id.package.as_str();
    match pkg {
        "moat:platform" => {
            let host = |iface: &str| contract::InterfaceId::parse(&format!("moat:platform/{iface}@0.1.0"));
            return match id.interface.as_str() {
                "store" if host("store").serves(id) => Ok(Grant::Store),
                "log" if host("log").serves(id) => Ok(Grant::Log),
                _ => Err("this host serves moat:platform/store and moat:platform/log at 0.1.0".to_string()),
            };
        }
        "wasi:io" | "wasi:cli" => return Ok(Grant::Wasi),
        "wasi:clocks" | "wasi:random" | "wasi:filesystem" | "wasi:sockets" if !strict => return Ok(Grant::WasiInert),
        "wasi:clocks" | "wasi:random" | "wasi:filesystem" | "wasi:sockets" => {
            return Err(format!(
                "{pkg} is refused because the component is `strict`; remove `strict = true` from its manifest table to link it inert"
            ));
        }
        _ if pkg.starts_with("wasi:") => {
            return Err(format!(
                "{pkg} is not granted: a component reaches nothing outside its own database, except other components through their interfaces"
            ));
        }
        _ => {}
    }
    if import.funcs.is_empty() {
        return Ok(Grant::TypesOnly);
    }
    if let Some(grant) = crate::events::grant_publish(import, contract) {
        return grant;
    }

    let providers: Vec<(&String, &Interface)> = others
        .iter()
        .filter(|(other, _)| other.as_str() != name)
        .filter_map(|(other, c)| c.exports.iter().find(|e| e.id.serves(id)).map(|e| (other, e)))
        .collect();
    let (provider, export) = match providers.as_slice() {
        [one] => *one,
        [] => {
            let same_iface: Vec<String> = others
                .iter()
                .flat_map(|(o, c)| {
                    c.exports
                        .iter()
                        .filter(|e| e.id.unversioned() == id.unversioned())
                        .map(move |e| format!("{o} exports {}", e.name))
                })
                .collect();
            return Err(if same_iface.is_empty() {
                "no loaded component exports it, and the host does not grant it: add the component that serves it to moat.toml".to_string()
            } else {
                format!("no loaded component exports a compatible version ({})", same_iface.join("; "))
            });
        }
        many => {
            let names: Vec<&str> = many.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!("ambiguous: it is exported by {}; keep one of them in moat.toml", names.join(" and ")));
        }
    };
    let mut problems = String::new();
    for f in &import.funcs {
        match export.func(&f.name) {
            None => {
                let _ = write!(problems, "; `{provider}` has no function `{}`", f.name);
            }
            Some(p) => {
                if let Err(d) = contract::func_fits(&f.ty, &p.ty) {
                    let _ = write!(problems, "; `{}` differs in `{provider}`: {d}", f.name);
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(format!("`{provider}` exports {} but it does not fit{problems}", export.name));
    }
    Ok(Grant::Call { provider: provider.clone(), export: export.name.clone() })
}

/// Builds the linker that serves exactly `grants`. `provider` finds the
/// component a forwarded call goes to, here or on another host.
pub fn build(engine: &Engine, grants: &Grants, provider: impl Fn(&str) -> Provider) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    if grants.iter().any(|(_, g)| matches!(g, Grant::Wasi | Grant::WasiInert)) {
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    }
    if grants.iter().any(|(_, g)| *g == Grant::Store) {
        store::add_to_linker::<_, HasSelf<crate::store::Db>>(&mut linker, |s: &mut InstanceState| &mut s.db)?;
    }
    if grants.iter().any(|(_, g)| *g == Grant::Log) {
        log::add_to_linker::<_, HasSelf<crate::log::GuestLog>>(&mut linker, |s: &mut InstanceState| &mut s.log)?;
    }
    for (import, grant) in grants {
        match grant {
            Grant::Call { provider: name, .. } => crate::calls::forward(&mut linker, import, provider(name))?,
            Grant::Publish { topic } => crate::events::link_publish(&mut linker, import, topic)?,
            _ => {}
        }
    }
    Ok(linker)
}
