//! The linker of one build: every capability it was granted, linked, and
//! nothing else. A loop over the grants; each capability links its own
//! (`capability::*::add_to_linker`) onto the instance state's slice it owns.

use std::sync::Arc;

use anyhow::Result;
use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::capability::calls::Callee;
use crate::capability::publish::PublishView;
use crate::capability::{self, Grant, Grants};
use crate::component::InstanceState;

/// Builds the linker that serves exactly `grants`. `callee` finds whoever
/// serves calls to a provider, here or on another host.
pub fn build(
    engine: &Engine,
    grants: &Grants,
    callee: impl Fn(&str) -> Arc<dyn Callee>,
) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    let granted = |g: fn(&Grant) -> bool| grants.iter().any(|(_, grant)| g(grant));
    if granted(|g| matches!(g, Grant::Wasi | Grant::WasiInert)) {
        capability::wasi::add_to_linker(&mut linker, |s: &mut InstanceState| s.deadline)?;
    }
    if granted(|g| *g == Grant::Store) {
        capability::store::add_to_linker(&mut linker, |s: &mut InstanceState| &mut s.db)?;
    }
    if granted(|g| *g == Grant::Log) {
        capability::log::add_to_linker(&mut linker, |s: &mut InstanceState| &mut s.log)?;
    }
    for (import, grant) in grants {
        match grant {
            Grant::Call { provider, .. } => {
                capability::calls::forward(&mut linker, import, callee(provider), InstanceState::call_options)?
            }
            Grant::Publish { topic } => capability::publish::add_to_linker(&mut linker, import, topic, |s| {
                PublishView { db: &mut s.db, outbox: &mut s.outbox, trace: s.trace.as_ref() }
            })?,
            Grant::Store | Grant::Log | Grant::Wasi | Grant::WasiInert | Grant::TypesOnly => {}
        }
    }
    Ok(linker)
}
