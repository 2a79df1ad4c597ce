//! Capability: `P/publish`, a component's own events, into its outbox.
//!
//! `publish(event)` writes the event (its WAVE text) to the publisher's
//! `_moat_outbox`, in the transaction of the call: a rolled-back call
//! publishes nothing, a committed one loses nothing. Whoever delivers events
//! (the dispatcher, the NATS relays) is woken by [`Signal`] when a unit of
//! work that published commits.
//!
//! Identity comes from the contract, never from a claim: the events of
//! package `P` are published only by `P`'s owner, the one component that
//! serves `P`'s contract (exports interfaces of `P`; see `wiring`).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use wasmtime::component::{Linker, Val};

use super::grant::{Asker, Grant};
use crate::contract::Interface;
use crate::db::Db;
use crate::ledger;
use crate::trace::{self, Attribute, Kind, Span};

/// The interface a publisher imports: `P/publish`, function `publish`.
pub const PUBLISH: &str = "publish";

/// `P/publish`, for `P`'s owner only.
pub fn grant(asker: &Asker<'_>, import: &Interface) -> Option<Result<Grant, String>> {
    if import.id.interface != PUBLISH || import.id.package.is_empty() {
        return None;
    }
    let package = &import.id.package;
    match asker.owners.get(package) {
        Some(owner) if owner == asker.name => {}
        Some(owner) => {
            return Some(Err(format!(
                "{package}'s events are published by `{owner}`, which serves its contract; a component publishes only the events of the package it owns"
            )));
        }
        None => {
            return Some(Err(format!(
                "a component publishes only the events of a package it serves, and this one exports no interface of {package}"
            )));
        }
    }
    Some(match import.funcs.as_slice() {
        [f] if f.name == PUBLISH && f.ty.params().len() == 1 && f.ty.results().len() == 0 => {
            Ok(Grant::Publish { topic: package.clone() })
        }
        _ => Err(format!("{package}/publish must declare exactly `publish: func(event: T)`")),
    })
}

/// One instance's events in the current unit of work.
pub struct Outbox {
    published: u32,
    max: u32,
}

impl Outbox {
    /// At most `max` events per unit of work (`limits.events_per_call`).
    pub fn new(max: u32) -> Outbox {
        Outbox { published: 0, max }
    }

    /// Starts a unit of work's count afresh.
    pub fn new_call(&mut self) {
        self.published = 0;
    }

    /// Events published in the current unit of work.
    pub fn published(&self) -> u32 {
        self.published
    }
}

/// What `publish` needs of an instance's state.
pub struct PublishView<'a> {
    pub db: &'a mut Db,
    pub outbox: &'a mut Outbox,
    /// The span of the unit of work publishing, if traces are exported.
    pub trace: Option<&'a trace::Parent>,
}

/// Serves `P/publish` (imported as `import`) for the events of `topic`.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    import: &Interface,
    topic: &str,
    get: for<'a> fn(&'a mut T) -> PublishView<'a>,
) -> Result<()> {
    let topic: Arc<str> = Arc::from(topic);
    linker.instance(&import.name)?.func_new(PUBLISH, move |mut store, _ty, params, _results| {
        let view = get(store.data_mut());
        publish(view, &topic, &params[0]).map_err(|e| wasmtime::format_err!("{e:#}"))
    })?;
    Ok(())
}

fn publish(view: PublishView<'_>, topic: &str, event: &Val) -> Result<()> {
    view.outbox.published += 1;
    if view.outbox.published > view.outbox.max {
        bail!("it published more than {} events in one unit of work (limits.events_per_call)", view.outbox.max);
    }
    let case = match event {
        Val::Variant(case, _) | Val::Enum(case) => case.as_str(),
        _ => "event",
    };
    // Stored, and read by subscribers: an event WAVE cannot write is refused,
    // never stored as a placeholder.
    let payload =
        crate::values::try_to_wave(event).map_err(|e| anyhow::anyhow!("the {case} event cannot be stored: {e}"))?;
    // The publish's span ends here; its context rides with the event, so
    // whoever applies it, wherever and whenever, continues this trace.
    let span = Span::start(
        || format!("publish {topic} {case}").into(),
        Kind::Producer,
        view.trace,
        || {
            vec![
                Attribute::new("messaging.system", "moat"),
                Attribute::new("messaging.operation.type", "send"),
                Attribute::new("messaging.destination.name", topic.to_string()),
                Attribute::new("moat.event", case.to_string()),
            ]
        },
    );
    let traceparent = span.context().map(|c| trace::traceparent(&c));
    view.db.host(|c| ledger::append(c, topic, case, &payload, ledger::now_us(), traceparent.as_deref()))
}

/// Wakes the dispatcher (and, across hosts, the relays) when a unit of
/// work has committed new events.
#[derive(Default)]
pub struct Signal {
    generation: Mutex<u64>,
    changed: Condvar,
    /// The same, for async waiters.
    published: tokio::sync::Notify,
}

impl Signal {
    /// Something was published.
    pub fn notify(&self) {
        *self.generation.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.changed.notify_all();
        self.published.notify_waiters();
    }

    /// Resolves at the next `notify`.
    pub async fn notified(&self) {
        self.published.notified().await
    }

    /// The current generation, to wait for a later one.
    pub fn generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the generation moves past `seen`, or `timeout`.
    pub fn wait(&self, seen: u64, timeout: Duration) {
        let guard = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        let _unused = self.changed.wait_timeout_while(guard, timeout, |g| *g == seen);
    }
}
