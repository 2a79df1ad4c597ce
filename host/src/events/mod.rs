//! Capability: typed events between components, through a transactional
//! outbox, delivered exactly once and in order.
//!
//! Follow one event:
//! 1. **Publish.** A component that exports interfaces of package `P` may
//!    import `P/publish` and call `publish(event)`. The host writes the event
//!    (its WAVE text) to `_moat_outbox` in the publisher's own database, in
//!    the transaction of the call: a rolled-back call publishes nothing, a
//!    committed one loses nothing. ([`link_publish`])
//! 2. **Route.** A component that exports `P/handler` subscribes to `P`'s
//!    events; its `handle` must accept every event `P` publishes (checked at
//!    load, by type). ([`subscriptions`])
//! 3. **Deliver.** For each route the [`Dispatcher`] reads the publisher's
//!    outbox after the subscriber's cursor and hands the subscriber a batch:
//!    one transaction, a savepoint per event, and the cursor
//!    (`_moat_cursor`) advanced in the same transaction, so each event takes
//!    effect exactly once, in publication order, whatever crashes.
//! 4. **Fail.** A handler that returns `err` or traps has its savepoint
//!    rolled back; the events before it commit, and it is retried with
//!    backoff. After `max_attempts` it moves to `_moat_dead_letter` (the
//!    cursor passes it) and delivery goes on. ([`dead_letters`])
//!
//! Events are stored as WAVE text: tagged by field and case names, readable
//! in `moat events`, and decoded with the subscriber's own type, so a
//! subscriber that knows more cases than the publisher sends reads them all.

pub mod dead_letters;
pub(crate) mod delivery;
pub mod history;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Result;
use rusqlite::Connection;
use wasmtime::component::{Linker, Val};

use crate::component::InstanceState;
use crate::contract::{self, Contract, Interface};
use crate::linker::{Grant, Grants};

pub use delivery::{Dispatcher, RouteStatus, Settled};

/// The interface a publisher imports: `P/publish`, function `publish`.
pub const PUBLISH: &str = "publish";
/// The interface a subscriber exports: `P/handler`, function `handle`.
pub const HANDLER: &str = "handler";

/// The host's event tables, created in every component's database.
pub(crate) const TABLES: &str = "
    CREATE TABLE IF NOT EXISTS _moat_outbox (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        topic        TEXT NOT NULL,
        event        TEXT NOT NULL,
        payload      TEXT NOT NULL,
        published_us INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS _moat_outbox_by_topic ON _moat_outbox (topic, seq);
    CREATE TABLE IF NOT EXISTS _moat_cursor (
        publisher TEXT NOT NULL,
        topic     TEXT NOT NULL,
        seq       INTEGER NOT NULL,
        PRIMARY KEY (publisher, topic)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS _moat_dead_letter (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        publisher TEXT NOT NULL,
        topic     TEXT NOT NULL,
        seq       INTEGER NOT NULL,
        event     TEXT NOT NULL,
        payload   TEXT NOT NULL,
        error     TEXT NOT NULL,
        attempts  INTEGER NOT NULL,
        failed_ms INTEGER NOT NULL
    );";

/// One event as the outbox keeps it.
#[derive(Clone, Debug)]
pub struct OutboxEvent {
    /// Its position in the publisher's outbox: increasing, never reused.
    pub seq: i64,
    /// The publishing package: `shop:product`.
    pub topic: String,
    /// The variant case: `price-updated`.
    pub event: String,
    /// The event in WAVE.
    pub payload: String,
    /// When it was published, in microseconds since the Unix epoch.
    pub published_us: i64,
}

/// Who hears whose events: the subscriber's `handler` export takes the
/// events `topic` (a package) that `publisher` publishes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subscription {
    /// The publishing component.
    pub publisher: String,
    /// The package whose events these are.
    pub topic: String,
    /// The subscribing component.
    pub subscriber: String,
    /// The subscriber's handler interface, as it exports it.
    pub handler: String,
}

/// The grant for an import of `P/publish`: only a component that exports
/// some interface of `P` publishes `P`'s events.
pub(crate) fn grant_publish(import: &Interface, contract: &Contract) -> Option<Result<Grant, String>> {
    if import.id.interface != PUBLISH {
        return None;
    }
    let package = &import.id.package;
    if !contract.exports.iter().any(|e| e.id.package == *package && e.id.interface != HANDLER) {
        return Some(Err(format!(
            "a component publishes only the events of a package it serves, and this one exports no interface of {package}"
        )));
    }
    match import.funcs.as_slice() {
        [f] if f.name == PUBLISH && f.ty.params().len() == 1 && f.ty.results().len() == 0 => {
            Some(Ok(Grant::Publish { topic: package.clone() }))
        }
        _ => Some(Err(format!("{package}/publish must declare exactly `publish: func(event: T)`"))),
    }
}

/// Finds every subscription among the components of an app, and checks that
/// each handler accepts every event its publisher can publish.
pub fn subscriptions(contracts: &[(&str, &Contract, &Grants)]) -> Result<Vec<Subscription>, Vec<String>> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (subscriber, contract, _) in contracts {
        for export in contract.exports.iter().filter(|e| e.id.interface == HANDLER) {
            let topic = &export.id.package;
            let publisher = contracts.iter().find_map(|(name, c, grants)| {
                grants
                    .iter()
                    .any(|(_, g)| matches!(g, Grant::Publish { topic: t } if t == topic))
                    .then_some((*name, *c))
            });
            let Some((publisher, publisher_contract)) = publisher else {
                tracing::debug!(
                    subscriber,
                    "{subscriber} handles {topic} events, but no loaded component publishes them"
                );
                continue;
            };
            match check_handler(export, publisher_contract, topic) {
                Ok(()) => found.push(Subscription {
                    publisher: publisher.to_string(),
                    topic: topic.clone(),
                    subscriber: subscriber.to_string(),
                    handler: export.name.clone(),
                }),
                Err(why) => problems.push(format!(
                    "component `{subscriber}` cannot handle the {topic} events `{publisher}` publishes: {why}"
                )),
            }
        }
    }
    if problems.is_empty() { Ok(found) } else { Err(problems) }
}

/// A handler must be `handle: func(event: T) -> result<_, E>` (or return
/// nothing) with `T` accepting the publisher's event type.
pub fn check_handler(handler: &Interface, publisher: &Contract, topic: &str) -> Result<(), String> {
    let Some(handle) = handler.func("handle") else {
        return Err(format!("{} has no `handle` function", handler.name));
    };
    let params: Vec<_> = handle.ty.params().collect();
    let [(_, takes)] = params.as_slice() else {
        return Err("`handle` must take exactly one parameter, the event".into());
    };
    let publish = publisher
        .imports
        .iter()
        .find(|i| i.id.package == topic && i.id.interface == PUBLISH)
        .and_then(|i| i.func(PUBLISH))
        .ok_or_else(|| format!("the publisher imports no {topic}/publish"))?;
    let sent = publish.ty.params().next().map(|(_, t)| t).ok_or("publish takes no event")?;
    contract::accepts(takes, &sent)
}

/// Serves `P/publish` for one component: `publish(event)` appends to its outbox.
pub(crate) fn link_publish(linker: &mut Linker<InstanceState>, import: &Interface, topic: &str) -> Result<()> {
    let topic: Arc<str> = Arc::from(topic);
    linker.instance(&import.name)?.func_new(PUBLISH, move |mut store, _ty, params, _results| {
        let state = store.data_mut();
        state.publish(&topic, &params[0]).map_err(|e| wasmtime::format_err!("{e:#}"))
    })?;
    Ok(())
}

/// Writes one event to the outbox, in the current unit of work.
pub(crate) fn append(conn: &Connection, topic: &str, event: &Val) -> rusqlite::Result<()> {
    let case = match event {
        Val::Variant(case, _) | Val::Enum(case) => case.as_str(),
        _ => "event",
    };
    let payload = crate::values::to_wave(event);
    conn.prepare_cached("INSERT INTO _moat_outbox (topic, event, payload, published_us) VALUES (?1, ?2, ?3, ?4)")?
        .execute(rusqlite::params![topic, case, payload, now_us()])?;
    Ok(())
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

pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
