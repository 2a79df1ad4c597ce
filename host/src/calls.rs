//! Capability: calls between components.
//!
//! A component that imports an interface another component exports gets, for
//! each imported function, a host function that forwards the call. The
//! forwarding is generic: arguments and results pass as dynamic
//! `component::Val`s, so the host needs no knowledge of shop types (the
//! types of both sides were checked against each other at load, by
//! `contract::func_fits`).
//!
//! The callee runs the call as its own unit of work on its own database:
//! there is no distributed transaction. If the callee fails, the caller traps
//! and its unit of work rolls back too. A callee on another host is reached
//! the same way, through NATS (`remote::calls`).

use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::Linker;

use crate::component::{Component, InstanceState};
use crate::contract::Interface;
use crate::remote::RemoteComponent;

/// Who serves an import: a component in this process, or one on another
/// host (reached through NATS).
#[derive(Clone)]
pub enum Provider {
    Local(Arc<Component>),
    Remote(RemoteComponent),
}

/// Defines every function of the imported interface `import` on `linker`,
/// each forwarding to `provider`, to whichever of its versions serves then:
/// a swap of the provider is invisible to its callers.
pub fn forward(linker: &mut Linker<InstanceState>, import: &Interface, provider: Provider) -> Result<()> {
    let mut instance = linker.instance(&import.name)?;
    let id = Arc::new(import.id.clone());
    for func in &import.funcs {
        let (provider, id, name) = (provider.clone(), id.clone(), Arc::<str>::from(func.name.as_str()));
        instance.func_new(&func.name, move |_caller, ty, params, results| {
            let out = match &provider {
                Provider::Local(component) => component.call_import(&id, &name, params).map_err(anyhow::Error::from),
                Provider::Remote(remote) => {
                    let types: Vec<_> = ty.results().collect();
                    remote.call(&id, &name, params, &types)
                }
            };
            let out = out.map_err(|e| wasmtime::format_err!("{e:#}"))?;
            for (slot, value) in results.iter_mut().zip(out) {
                *slot = value;
            }
            Ok(())
        })?;
    }
    Ok(())
}
