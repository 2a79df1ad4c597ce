//! The dispatcher: moves events from each local publisher's outbox to each
//! local subscriber.
//!
//! Routes are independent: each has a worker thread of its own (under
//! `moat up`), and a one-shot settle drives them side by side. A slow,
//! failing or stuck route (its handler bounded by the component's deadline)
//! delays no other. A worker that panics (a host bug) is logged, shown in
//! `moat status` with the reason, and resumes.
//!
//! Each route reads the publisher's outbox through a read-only connection of
//! its own, so reading never waits for the publisher's calls.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};

use super::delivery::{Delivery, RouteStatus, Step};
use crate::capability::publish::Signal;
use crate::component::Component;
use crate::ledger::{self, now_us};
use crate::wiring::Subscription;

/// How often delivered events past their retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Delivers every local subscription of an app.
pub struct Dispatcher {
    /// Replaced as a whole when a swap changes who subscribes to what.
    routes: RwLock<Vec<Arc<Route>>>,
    signal: Arc<Signal>,
    last_prune: Mutex<Instant>,
    /// Events also go to JetStream: prune none that is not there yet.
    relaying: bool,
    /// Set when the host stops: workers and settles end their step and return.
    stopping: AtomicBool,
    /// Every component of this host, for pruning what they keep for the host.
    components: RwLock<Vec<Arc<Component>>>,
}

/// A subscription whose publisher runs in this host: events come from its
/// outbox.
struct Route {
    /// A read-only connection to the publisher's database. Declared before
    /// the components so that it closes first, and the publisher's own
    /// connection, closing last, checkpoints and removes the WAL.
    reader: Mutex<Connection>,
    publisher: Arc<Component>,
    delivery: Delivery,
    /// Held for a whole step, so that two threads (the worker and a
    /// settling request) never deliver one route at once.
    delivering: Mutex<()>,
    /// Set when a swap removed the route: its worker ends.
    removed: AtomicBool,
}

/// What a settle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Events that took effect or were dead-lettered.
    pub delivered: usize,
    /// False if the time ran out with events still pending.
    pub complete: bool,
}

impl Dispatcher {
    /// Builds a route for each subscription.
    pub fn new(
        subscriptions: &[Subscription],
        components: &BTreeMap<String, Arc<Component>>,
        signal: Arc<Signal>,
        relaying: bool,
    ) -> Result<Dispatcher> {
        let dispatcher = Dispatcher {
            routes: RwLock::default(),
            signal,
            last_prune: Mutex::new(Instant::now()),
            relaying,
            stopping: AtomicBool::new(false),
            components: RwLock::default(),
        };
        dispatcher.update(subscriptions, components)?;
        Ok(dispatcher)
    }

    /// Follows a change of who subscribes to what (after a swap): keeps the
    /// routes that remain, with their state, adds the new ones and stops the
    /// workers of the ones gone.
    pub fn update(&self, subscriptions: &[Subscription], components: &BTreeMap<String, Arc<Component>>) -> Result<()> {
        let current = self.routes();
        let mut routes = Vec::new();
        for sub in subscriptions {
            if let Some(route) = current.iter().find(|r| r.delivery.sub.same_route(sub)) {
                routes.push(route.clone());
                continue;
            }
            let publisher = components[&sub.publisher].clone();
            let reader = Connection::open_with_flags(
                publisher.db_path(),
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("opening {} to read its outbox", publisher.db_path().display()))?;
            reader.busy_timeout(Duration::from_secs(5))?;
            routes.push(Arc::new(Route {
                reader: Mutex::new(reader),
                publisher,
                delivery: Delivery::new(sub.clone(), components[&sub.subscriber].clone()),
                delivering: Mutex::new(()),
                removed: AtomicBool::new(false),
            }));
        }
        for gone in current.iter().filter(|r| !routes.iter().any(|n| Arc::ptr_eq(n, r))) {
            gone.removed.store(true, Ordering::Relaxed);
        }
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
        *self.components.write().unwrap_or_else(|p| p.into_inner()) = components.values().cloned().collect();
        self.signal.notify();
        Ok(())
    }

    fn routes(&self) -> Vec<Arc<Route>> {
        self.routes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The subscriptions it delivers.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.routes().iter().map(|r| r.delivery.sub.clone()).collect()
    }

    /// Wakes every route.
    pub fn wake(&self) {
        self.signal.notify();
    }

    /// Stops delivering: each route finishes the step it is in (bounded by
    /// its subscriber's deadline) and [`Dispatcher::run`] and every settle
    /// return.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.signal.notify();
    }

    /// Delivers until nothing is pending: every event applied or
    /// dead-lettered, retries included, every route at once. Gives up after
    /// `limit`, leaving the rest for later (nothing is lost: the outbox
    /// keeps it).
    pub fn settle(&self, limit: Duration) -> Result<Settled> {
        let until = Instant::now() + limit;
        let routes = self.routes();
        let outcomes: Vec<Result<Settled>> = std::thread::scope(|s| {
            let stop = &self.stopping;
            let workers: Vec<_> = routes.iter().map(|route| s.spawn(move || route.settle(until, stop))).collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|_| Err(anyhow::anyhow!("delivering a route panicked"))))
                .collect()
        });
        let mut settled = Settled { delivered: 0, complete: true };
        let mut first_error = None;
        for (route, outcome) in routes.iter().zip(outcomes) {
            match outcome {
                Ok(s) => {
                    settled.delivered += s.delivered;
                    settled.complete &= s.complete;
                }
                Err(e) => {
                    route.delivery.record_error(&format!("{e:#}"));
                    settled.complete = false;
                    first_error.get_or_insert(e);
                }
            }
        }
        if settled.complete {
            self.prune()?;
        }
        match first_error {
            Some(e) if settled.delivered == 0 => Err(e),
            _ => Ok(settled),
        }
    }

    /// Waits (without delivering: the routes' workers do) until every route
    /// that is not failing has applied what its publisher had published when
    /// asked, or `limit` passes, or the host stops. What a call through a
    /// running host waits for before it answers. `false` if something is
    /// still pending (a route is failing, or time ran out).
    pub fn catch_up(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        let targets: Vec<(Arc<Route>, i64)> =
            self.routes().into_iter().filter_map(|r| r.head().ok().map(|h| (r, h))).collect();
        loop {
            let mut pending = false;
            let mut failing = false;
            for (route, head) in &targets {
                if route.delivery.cursor().unwrap_or(0) >= *head {
                    continue;
                }
                if route.delivery.failing() {
                    failing = true;
                } else {
                    pending = true;
                }
            }
            if !pending {
                return !failing;
            }
            if Instant::now() >= until || self.stopping.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Delivers continuously until [`Dispatcher::stop`]: a worker per route,
    /// woken by every commit that published, by its retries falling due, and
    /// once a second regardless; routes added by a swap get workers too.
    pub fn run(&self) {
        let stop = &self.stopping;
        std::thread::scope(|scope| {
            let mut workers: Vec<(Arc<Route>, std::thread::ScopedJoinHandle<'_, ()>)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let seen = self.signal.generation();
                workers.retain(|(route, worker)| !(route.removed.load(Ordering::Relaxed) && worker.is_finished()));
                for route in self.routes() {
                    if workers.iter().any(|(r, _)| Arc::ptr_eq(r, &route)) {
                        continue;
                    }
                    let worker_route = route.clone();
                    let spawned = std::thread::Builder::new()
                        .name(format!("moat-route-{}", route.name()))
                        .spawn_scoped(scope, move || worker_route.work(&self.signal, stop));
                    match spawned {
                        Ok(worker) => workers.push((route, worker)),
                        Err(e) => tracing::error!(route = route.name(), "cannot start the route's worker: {e}"),
                    }
                }
                if let Err(e) = self.prune_now_and_then() {
                    tracing::error!("pruning delivered events: {e:#}");
                }
                self.signal.wait(seen, Duration::from_secs(1));
            }
            // Wake every worker to see the stop; the scope joins them.
            self.signal.notify();
        });
    }

    /// Where each subscription stands.
    pub fn status(&self) -> Vec<RouteStatus> {
        self.routes()
            .iter()
            .map(|route| {
                let head = route.head().unwrap_or_else(|e| {
                    route.delivery.record_error(&format!("reading the outbox: {e:#}"));
                    0
                });
                let mut status = route.delivery.status(head);
                // How long the oldest event not yet applied has waited.
                status.lag_seconds = if status.cursor >= status.head {
                    Some(0.0)
                } else {
                    let topic = &route.delivery.sub.topic;
                    let oldest = route.read(|c| ledger::published_after(c, topic, status.cursor)).ok().flatten();
                    oldest.map(|us| (ledger::now_us() - us).max(0) as f64 / 1e6)
                };
                status
            })
            .collect()
    }

    /// Rewinds `subscriber`'s cursor on `publisher` to the oldest event still
    /// kept, so the next settle delivers every kept event again. Returns the
    /// first sequence to be redelivered and the last pruned, if any was.
    pub fn replay(&self, subscriber: &str, publisher: &str) -> Result<Vec<(Subscription, i64, Option<i64>)>> {
        let mut replays = Vec::new();
        for route in self
            .routes()
            .iter()
            .filter(|r| r.delivery.sub.subscriber == subscriber && r.delivery.sub.publisher == publisher)
        {
            let _delivering = route.delivering.lock().unwrap_or_else(|p| p.into_inner());
            let topic = route.delivery.sub.topic.clone();
            let first = route.read(|c| ledger::outbox_first(c, &topic))?;
            let pruned = route.read(|c| ledger::pruned(c, &topic))?;
            let from = first.unwrap_or_else(|| pruned.unwrap_or(0) + 1);
            route.delivery.rewind(from - 1)?;
            replays.push((route.delivery.sub.clone(), from, pruned));
        }
        self.signal.notify();
        Ok(replays)
    }

    fn prune_now_and_then(&self) -> Result<()> {
        let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() < PRUNE_EVERY {
            return Ok(());
        }
        *last = Instant::now();
        drop(last);
        self.prune()
    }

    /// Deletes events every subscriber has, once they are older than the
    /// publisher's retention, and records of calls past their retention.
    fn prune(&self) -> Result<()> {
        for component in self.components.read().unwrap_or_else(|p| p.into_inner()).iter() {
            let retention = component.spec().requests.retention_secs.min(i64::MAX as u64 / 1000) as i64;
            let before = ledger::now_ms() - retention * 1000;
            component.with_db(|c| ledger::prune_requests(c, before).map(drop))?;
        }
        let routes = self.routes();
        let mut upto: BTreeMap<(&str, &str), (i64, &Arc<Component>)> = BTreeMap::new();
        for route in &routes {
            let cursor = route.delivery.cursor()?;
            let key = (route.delivery.sub.publisher.as_str(), route.delivery.sub.topic.as_str());
            upto.entry(key).and_modify(|(c, _)| *c = (*c).min(cursor)).or_insert((cursor, &route.publisher));
        }
        for ((_, topic), (cursor, publisher)) in upto {
            let retention = publisher.spec().events.retention_secs;
            let before = now_us() - (retention.min(i64::MAX as u64 / 1_000_000) as i64) * 1_000_000;
            let relaying = self.relaying;
            publisher.with_db(|c| {
                let cursor = if relaying { cursor.min(ledger::relayed(c, topic)?) } else { cursor };
                ledger::prune(c, topic, cursor, before).map(drop)
            })?;
        }
        Ok(())
    }
}

impl Route {
    fn name(&self) -> String {
        let sub = &self.delivery.sub;
        format!("{}-{}", sub.publisher, sub.subscriber)
    }

    fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// The publisher's last event on this topic.
    fn head(&self) -> Result<i64> {
        self.read(|c| ledger::outbox_head(c, &self.delivery.sub.topic))
    }

    /// Reads the events after the cursor from the outbox and applies them.
    fn step(&self) -> Result<Step> {
        let _delivering = self.delivering.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = self.delivery.not_before() {
            return Ok(Step::Waiting(at));
        }
        let cursor = self.delivery.cursor()?;
        let batch_size = self.delivery.subscriber.spec().events.batch;
        let batch = self.read(|c| ledger::outbox_after(c, &self.delivery.sub.topic, cursor, batch_size))?;
        if batch.is_empty() {
            return Ok(Step::Idle);
        }
        self.delivery.apply(&batch)
    }

    /// One step, a panic in it turned into an error.
    fn guarded_step(&self) -> Result<Step> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.step())) {
            Ok(step) => step,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                Err(anyhow::anyhow!("the route's worker panicked (a host bug): {what}"))
            }
        }
    }

    /// Drives the route to idle, or until `until` or a stop.
    fn settle(&self, until: Instant, stop: &AtomicBool) -> Result<Settled> {
        let mut settled = Settled::default();
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(settled);
            }
            match self.guarded_step()? {
                Step::Delivered(n) => settled.delivered += n,
                Step::Idle => {
                    settled.complete = true;
                    return Ok(settled);
                }
                Step::Waiting(at) if at > until => return Ok(settled),
                Step::Waiting(at) => {
                    // In short naps, to see a stop.
                    while Instant::now() < at && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(at.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
                    }
                }
            }
        }
    }

    /// The route's worker under `moat up`.
    fn work(&self, signal: &Signal, stop: &AtomicBool) {
        let mut failing = false;
        while !stop.load(Ordering::Relaxed) && !self.removed.load(Ordering::Relaxed) {
            let seen = signal.generation();
            let wait = match self.guarded_step() {
                Ok(Step::Delivered(_)) => {
                    failing = false;
                    continue;
                }
                Ok(Step::Waiting(at)) => at.saturating_duration_since(Instant::now()).min(Duration::from_secs(1)),
                Ok(Step::Idle) => {
                    failing = false;
                    Duration::from_secs(1)
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    if !failing {
                        tracing::error!(route = self.name(), "delivering events: {why}");
                        failing = true;
                    }
                    self.delivery.record_error(&why);
                    Duration::from_secs(1)
                }
            };
            signal.wait(seen, wait);
        }
    }
}
