//! Capability: calls to the interfaces other components export.
//!
//! A component that imports a public interface another component exports
//! gets, for each imported function, a host function that forwards the call
//! to whoever serves it now ([`Callee`]: a component in this process, or one
//! on another host through NATS). The forwarding is generic: arguments and
//! results pass as dynamic `Val`s, so the host needs no knowledge of shop
//! types (the two sides' types were checked against each other when the
//! import was granted, by `contract::func_fits`).
//!
//! The callee runs the call as its own unit of work on its own database:
//! there is no distributed transaction. It gets what is left of the caller's
//! deadline, at most its own. If it fails, the caller traps and its unit of
//! work rolls back too.
//!
//! Only public interfaces are callable: not `P/handler` or
//! `moat:platform/schema` (the host alone calls those), nor exports outside
//! any package.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::types::ComponentFunc;
use wasmtime::component::{Linker, Val};

use super::grant::{Asker, Grant};
use crate::contract::{self, Interface, InterfaceId};
use crate::deadline::Deadline;

/// How a call is to run: by when, and under which request id.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// It must end by then (at most the callee's own deadline).
    pub deadline: Option<Deadline>,
    /// Calls made with an id take effect at most once: the callee records
    /// the id with the result in the unit of work that commits it, and a
    /// call reusing the id gets the recorded result instead of running again.
    pub request: Option<String>,
    /// Which attempt of the caller's this is, when the caller is on another
    /// host: it resends a request while it waits, under the same attempt, so
    /// the result one of its own resends committed is not reported replayed.
    pub attempt: Option<Attempt>,
    /// The span the call is made under (the caller's, or a `traceparent`
    /// received), when traces are exported.
    pub trace: Option<crate::trace::Parent>,
}

/// One attempt of a caller on another host, as it sent it.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub id: String,
    /// The caller's deadline, as its wall clock says (ms since the Unix
    /// epoch): kept with the request's record, so whether a call committed
    /// before its caller gave up can be checked afterwards.
    pub deadline_ms: i64,
}

/// What a call returned.
#[derive(Debug)]
pub struct Answer {
    /// Its results.
    pub results: Vec<Val>,
    /// When they were recorded (ms since the Unix epoch), if an earlier call
    /// with the same request id committed them: this one did not run again.
    pub replayed: Option<i64>,
}

/// Who serves calls to a component: it, here, or its host, through NATS.
pub trait Callee: Send + Sync {
    /// Calls `func` of the exported interface that serves `import` (as the
    /// caller imports it, `shop:product/catalog@1.0.0`); `ty` is the
    /// function as the caller sees it.
    fn call_import(
        &self,
        import: &InterfaceId,
        func: &str,
        ty: &ComponentFunc,
        params: &[Val],
        options: &CallOptions,
    ) -> Result<Answer>;
}

/// An import of a public interface another component of the app exports.
pub fn grant(asker: &Asker<'_>, import: &Interface) -> Option<Result<Grant, String>> {
    let id = &import.id;
    if !contract::is_public(id) {
        return Some(Err(if id.interface == "handler" && !id.package.is_empty() {
            "only the host calls a handler: it delivers events to it; a component cannot import one".into()
        } else {
            "it is not a contract interface of any package, so no component can serve it".into()
        }));
    }
    let providers: Vec<(&String, &Interface)> = asker
        .app
        .iter()
        .filter(|(other, _)| other.as_str() != asker.name)
        .filter_map(|(other, c)| c.exports.iter().find(|e| e.id.serves(id)).map(|e| (other, e)))
        .collect();
    let (provider, export) = match providers.as_slice() {
        [one] => *one,
        [] => {
            let elsewhere: Vec<String> = asker
                .app
                .iter()
                .flat_map(|(o, c)| {
                    c.exports
                        .iter()
                        .filter(|e| e.id.unversioned() == id.unversioned())
                        .map(move |e| format!("`{o}` exports {}", e.name))
                })
                .collect();
            return Some(Err(if elsewhere.is_empty() {
                "no loaded component exports it, and the host does not grant it: add the component that serves it to the manifest".to_string()
            } else {
                format!(
                    "{}, not a compatible version (a consumer needs the same major version, and at least its minor)",
                    elsewhere.join("; ")
                )
            }));
        }
        many => {
            let names: Vec<&str> = many.iter().map(|(n, _)| n.as_str()).collect();
            return Some(Err(format!(
                "ambiguous: it is exported by {}; keep one of them in the manifest",
                names.join(" and ")
            )));
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
        return Some(Err(format!("`{provider}` exports {} but it does not fit{problems}", export.name)));
    }
    Some(Ok(Grant::Call { provider: provider.clone(), export: export.name.clone() }))
}

/// Defines every function of the imported interface `import`, each
/// forwarding to `callee` with what is left of the caller's deadline and a
/// request id derived from the caller's (`options` reads both from the
/// caller's state), so that retrying the caller's call retries its calls
/// with the same ids.
pub fn forward<T: 'static>(
    linker: &mut Linker<T>,
    import: &Interface,
    callee: Arc<dyn Callee>,
    options: fn(&mut T) -> CallOptions,
) -> Result<()> {
    let mut instance = linker.instance(&import.name)?;
    let id = Arc::new(import.id.clone());
    for func in &import.funcs {
        let (callee, id, name) = (callee.clone(), id.clone(), Arc::<str>::from(func.name.as_str()));
        instance.func_new(&func.name, move |mut store, ty, params, results| {
            let options = options(store.data_mut());
            let out = callee.call_import(&id, &name, &ty, params, &options).map_err(|e| {
                // Past the caller's own deadline, the caller has overrun too.
                if e.is::<crate::deadline::Overrun>() && options.deadline.is_some_and(|d| d.passed()) {
                    wasmtime::Error::new(crate::deadline::Overrun)
                } else {
                    wasmtime::format_err!("{}", crate::deadline::describe(&e))
                }
            })?;
            for (slot, value) in results.iter_mut().zip(out.results) {
                *slot = value;
            }
            Ok(())
        })?;
    }
    Ok(())
}
