//! Delivery: moving events from each publisher's outbox to each subscriber,
//! exactly once and in order.
//!
//! A route is one subscription. Its cursor lives in the subscriber's
//! database and only moves in the transaction that applies the events it
//! passes, so a crash at any moment leaves cursor and effects agreeing: on
//! restart delivery resumes right after the last event that took effect.
//! The dispatcher keeps a copy of each cursor in memory (it is the only
//! writer) and reads outboxes through connections of its own, so reading
//! never waits for a publisher's calls.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{OutboxEvent, Signal, Subscription, now_us};
use crate::component::{Component, set_cursor};

/// Delivers every subscription of an app.
pub struct Dispatcher {
    /// Replaced as a whole when a swap changes who subscribes to what.
    routes: RwLock<Vec<Arc<Route>>>,
    signal: Arc<Signal>,
    last_prune: Mutex<Instant>,
    /// Events also go to JetStream: prune none that is not there yet.
    relaying: bool,
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
    /// Held for a whole step, so that two threads (the dispatcher and a
    /// settling request) never deliver one route at once.
    delivering: Mutex<()>,
}

/// Applying one subscription's events to its subscriber, wherever they come
/// from (a local outbox, or JetStream for a publisher on another host): the
/// cursor, retries with backoff, dead letters, and latency.
pub(crate) struct Delivery {
    pub(crate) sub: Subscription,
    pub(crate) subscriber: Arc<Component>,
    state: Mutex<RouteState>,
    /// Publish-to-applied times of the latest deliveries, in microseconds.
    latencies: Mutex<Latencies>,
}

/// The last `Latencies::KEPT` publish-to-applied times of a route.
#[derive(Default)]
struct Latencies {
    samples: Vec<u32>,
    next: usize,
}

impl Latencies {
    const KEPT: usize = 16_384;

    fn record(&mut self, micros: i64) {
        let v = micros.clamp(0, u32::MAX as i64) as u32;
        if self.samples.len() < Self::KEPT {
            self.samples.push(v);
        } else {
            self.samples[self.next] = v;
            self.next = (self.next + 1) % Self::KEPT;
        }
    }

    /// The `q` quantile (0..=1), in milliseconds.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let i = ((sorted.len() - 1) as f64 * q).round() as usize;
        Some(f64::from(sorted[i]) / 1000.0)
    }
}

#[derive(Default)]
struct RouteState {
    /// The subscriber's cursor, once read.
    cursor: Option<i64>,
    /// The event that keeps failing, if one does.
    failing: Option<Failing>,
}

struct Failing {
    seq: i64,
    attempts: u32,
    retry_at: Instant,
}

/// What one pass over a route did.
pub(crate) enum Step {
    /// Nothing to deliver.
    Idle,
    /// Some events took effect (or were dead-lettered).
    Delivered(usize),
    /// An event failed; it is retried at this time.
    Waiting(Instant),
}

/// What a settle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Events that took effect or were dead-lettered.
    pub delivered: usize,
    /// False if the time ran out with events still pending.
    pub complete: bool,
}

/// Where one subscription stands, for `moat status` and `moat events`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RouteStatus {
    /// The subscription.
    pub subscription: Subscription,
    /// The last event the subscriber has (applied or dead-lettered).
    pub cursor: i64,
    /// The last event the publisher has published on this topic.
    pub head: i64,
    /// Attempts at the event that keeps failing, if one does.
    pub failing_attempts: Option<u32>,
    /// Time from publish to applied, median and 99th percentile, in
    /// milliseconds, over the last deliveries (none yet: `None`).
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

impl Dispatcher {
    /// Builds a route for each subscription.
    pub fn new(
        subscriptions: &[Subscription],
        components: &BTreeMap<String, Arc<Component>>,
        signal: Arc<Signal>,
        relaying: bool,
    ) -> Result<Dispatcher> {
        let dispatcher =
            Dispatcher { routes: RwLock::default(), signal, last_prune: Mutex::new(Instant::now()), relaying };
        dispatcher.update(subscriptions, components)?;
        Ok(dispatcher)
    }

    /// Follows a change of who subscribes to what (after a swap): keeps the
    /// routes that remain, with their state, and adds the new ones.
    pub fn update(&self, subscriptions: &[Subscription], components: &BTreeMap<String, Arc<Component>>) -> Result<()> {
        let current = self.routes();
        let mut routes = Vec::new();
        for sub in subscriptions {
            let same = |r: &&Arc<Route>| {
                let d = &r.delivery.sub;
                d.publisher == sub.publisher && d.topic == sub.topic && d.subscriber == sub.subscriber
            };
            if let Some(route) = current.iter().find(same) {
                routes.push(route.clone());
                continue;
            }
            let publisher = components[&sub.publisher].clone();
            let reader = Connection::open_with_flags(
                publisher.db_path(),
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("opening {} to read its outbox", publisher.db_path().display()))?;
            routes.push(Arc::new(Route {
                reader: Mutex::new(reader),
                publisher,
                delivery: Delivery::new(sub.clone(), components[&sub.subscriber].clone()),
                delivering: Mutex::new(()),
            }));
        }
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
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

    /// Wakes the dispatcher (to see a stop request, say).
    pub fn wake(&self) {
        self.signal.notify();
    }

    /// Delivers until nothing is pending: every event applied or
    /// dead-lettered, retries included. Gives up after `limit`, leaving the
    /// rest for later (nothing is lost: the outbox keeps it).
    pub fn settle(&self, limit: Duration) -> Result<Settled> {
        let start = Instant::now();
        let mut settled = Settled::default();
        loop {
            let (delivered, next_retry) = self.pass()?;
            settled.delivered += delivered;
            if delivered > 0 {
                continue;
            }
            match next_retry {
                None => {
                    settled.complete = true;
                    self.prune()?;
                    return Ok(settled);
                }
                Some(at) if at.duration_since(start) > limit => return Ok(settled),
                Some(at) => std::thread::sleep(at.saturating_duration_since(Instant::now())),
            }
        }
    }

    /// Delivers continuously until `stop` is set: woken by every commit that
    /// published, by retries falling due, and once a second regardless.
    pub fn run(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let seen = self.signal.generation();
            let wait = match self.pass() {
                Ok((delivered, _)) if delivered > 0 => continue,
                Ok((_, Some(at))) => at.saturating_duration_since(Instant::now()).min(Duration::from_secs(1)),
                Ok((_, None)) => Duration::from_secs(1),
                Err(e) => {
                    tracing::error!("delivering events: {e:#}");
                    Duration::from_secs(1)
                }
            };
            if let Err(e) = self.prune_now_and_then() {
                tracing::error!("pruning delivered events: {e:#}");
            }
            self.signal.wait(seen, wait);
        }
    }

    /// One pass over every route: the events delivered, and the earliest
    /// time a failed event is due again.
    fn pass(&self) -> Result<(usize, Option<Instant>)> {
        let (mut delivered, mut next) = (0, None::<Instant>);
        for route in &self.routes() {
            match route.step()? {
                Step::Idle => {}
                Step::Delivered(n) => delivered += n,
                Step::Waiting(at) => next = Some(next.map_or(at, |n| n.min(at))),
            }
        }
        Ok((delivered, next))
    }

    /// Where each subscription stands.
    pub fn status(&self) -> Result<Vec<RouteStatus>> {
        self.routes().iter().map(|route| route.delivery.status(route.head()?)).collect()
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
            let first: Option<i64> = route
                .read(|c| c.query_row("SELECT min(seq) FROM _moat_outbox WHERE topic = ?1", [&topic], |r| r.get(0)))?;
            let pruned: Option<i64> = route.read(|c| {
                c.query_row("SELECT value FROM _moat_meta WHERE key = ?1", [format!("pruned:{topic}")], |r| r.get(0))
                    .optional()
            })?;
            let from = first.unwrap_or_else(|| pruned.unwrap_or(0) + 1);
            route.delivery.rewind(from - 1)?;
            replays.push((route.delivery.sub.clone(), from, pruned));
        }
        Ok(replays)
    }

    fn prune_now_and_then(&self) -> Result<()> {
        let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() < Duration::from_secs(10) {
            return Ok(());
        }
        *last = Instant::now();
        drop(last);
        self.prune()
    }

    /// Deletes events every subscriber has, once they are older than the
    /// publisher's retention; records the last pruned sequence for `replay`.
    fn prune(&self) -> Result<()> {
        let routes = self.routes();
        let mut upto: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for route in &routes {
            let cursor = route.delivery.cursor()?;
            let key = (route.delivery.sub.publisher.as_str(), route.delivery.sub.topic.as_str());
            upto.entry(key).and_modify(|c| *c = (*c).min(cursor)).or_insert(cursor);
        }
        for ((publisher, topic), cursor) in upto {
            let route = routes.iter().find(|r| r.delivery.sub.publisher == publisher).expect("a route per key");
            let retention = route.publisher.spec().events.retention_secs;
            let before = now_us() - (retention.min(i64::MAX as u64 / 1_000_000) as i64) * 1_000_000;
            let relaying = self.relaying;
            route.publisher.with_db(|c| {
                let relayed: i64 = if relaying {
                    c.query_row("SELECT value FROM _moat_meta WHERE key = ?1", [format!("relayed:{topic}")], |r| r.get(0))
                        .optional()?
                        .unwrap_or(0)
                } else {
                    i64::MAX
                };
                let cursor = cursor.min(relayed);
                let last: Option<i64> = c.query_row(
                    "SELECT max(seq) FROM _moat_outbox WHERE topic = ?1 AND seq <= ?2 AND published_us < ?3",
                    rusqlite::params![topic, cursor, before],
                    |r| r.get(0),
                )?;
                if let Some(last) = last {
                    c.execute("DELETE FROM _moat_outbox WHERE topic = ?1 AND seq <= ?2", rusqlite::params![topic, last])?;
                    c.execute(
                        "INSERT INTO _moat_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        rusqlite::params![format!("pruned:{topic}"), last],
                    )?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

impl Route {
    fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// The publisher's last event on this topic.
    fn head(&self) -> Result<i64> {
        let topic = &self.delivery.sub.topic;
        let head: Option<i64> =
            self.read(|c| c.query_row("SELECT max(seq) FROM _moat_outbox WHERE topic = ?1", [topic], |r| r.get(0)))?;
        Ok(head.unwrap_or(0))
    }

    /// Reads the events after the cursor from the outbox and applies them.
    fn step(&self) -> Result<Step> {
        let _delivering = self.delivering.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = self.delivery.not_before() {
            return Ok(Step::Waiting(at));
        }
        let cursor = self.delivery.cursor()?;
        let batch_size = self.delivery.subscriber.spec().events.batch;
        let topic = &self.delivery.sub.topic;
        let batch: Vec<OutboxEvent> = self.read(|c| {
            c.prepare_cached(
                "SELECT seq, event, payload, published_us FROM _moat_outbox
                 WHERE topic = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?
            .query_map(rusqlite::params![topic, cursor, batch_size], |r| {
                Ok(OutboxEvent {
                    seq: r.get(0)?,
                    topic: topic.clone(),
                    event: r.get(1)?,
                    payload: r.get(2)?,
                    published_us: r.get(3)?,
                })
            })?
            .collect()
        })?;
        if batch.is_empty() {
            return Ok(Step::Idle);
        }
        self.delivery.apply(&batch)
    }
}

impl Delivery {
    pub(crate) fn new(sub: Subscription, subscriber: Arc<Component>) -> Delivery {
        Delivery { sub, subscriber, state: Mutex::default(), latencies: Mutex::default() }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, RouteState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The subscriber's cursor: from memory, or read once from its database.
    pub(crate) fn cursor(&self) -> Result<i64> {
        if let Some(c) = self.lock_state().cursor {
            return Ok(c);
        }
        let (publisher, topic) = (&self.sub.publisher, &self.sub.topic);
        let cursor = self.subscriber.with_db(|c| {
            c.query_row("SELECT seq FROM _moat_cursor WHERE publisher = ?1 AND topic = ?2", [publisher, topic], |r| {
                r.get(0)
            })
            .optional()
            .map(|c| c.unwrap_or(0))
        })?;
        self.lock_state().cursor = Some(cursor);
        Ok(cursor)
    }

    /// When a failed event is due again, if it is not yet.
    pub(crate) fn not_before(&self) -> Option<Instant> {
        self.lock_state().failing.as_ref().map(|f| f.retry_at).filter(|at| Instant::now() < *at)
    }

    /// Moves the cursor back to `to` (for replay).
    fn rewind(&self, to: i64) -> Result<()> {
        let (publisher, topic) = (&self.sub.publisher, &self.sub.topic);
        self.subscriber.with_db(|c| set_cursor(c, publisher, topic, to))?;
        *self.lock_state() = RouteState { cursor: Some(to), failing: None };
        Ok(())
    }

    /// Where this subscription stands, given the publisher's head.
    pub(crate) fn status(&self, head: i64) -> Result<RouteStatus> {
        let cursor = self.cursor()?;
        let failing_attempts = self.lock_state().failing.as_ref().map(|f| f.attempts);
        let latencies = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        Ok(RouteStatus {
            subscription: self.sub.clone(),
            cursor,
            head,
            failing_attempts,
            latency_p50_ms: latencies.quantile(0.5),
            latency_p99_ms: latencies.quantile(0.99),
        })
    }

    /// Applies a batch of events that follow the cursor, in order. A failure
    /// is retried with backoff (the caller offers the batch again once
    /// `not_before` passes) and, after the last attempt, dead-lettered.
    pub(crate) fn apply(&self, batch: &[OutboxEvent]) -> Result<Step> {
        let settings = &self.subscriber.spec().events;
        let topic = &self.sub.topic;
        let handled = self.subscriber.handle_events(&self.sub.publisher, topic, batch)?;
        if handled.applied > 0 {
            let now = now_us();
            let mut latencies = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
            for event in &batch[..handled.applied] {
                latencies.record(now - event.published_us);
            }
        }
        let mut state = self.lock_state();
        if let Some(through) = handled.through {
            state.cursor = Some(through);
        }
        let Some((seq, error)) = handled.failed else {
            state.failing = None;
            return Ok(Step::Delivered(handled.applied));
        };
        let attempts = match &state.failing {
            Some(f) if f.seq == seq => f.attempts + 1,
            _ => 1,
        };
        let (subscriber, publisher) = (self.subscriber.name(), &self.sub.publisher);
        if attempts >= settings.max_attempts {
            let event = batch.iter().find(|e| e.seq == seq).expect("the failed event is in the batch");
            super::dead_letters::bury(&self.subscriber, publisher, event, &error, attempts)?;
            tracing::warn!(subscriber, publisher, seq, attempts, "dead-lettered {} event: {error}", event.event);
            state.cursor = Some(seq);
            state.failing = None;
            return Ok(Step::Delivered(handled.applied + 1));
        }
        let backoff = Duration::from_millis(settings.retry_backoff_ms.saturating_mul(1 << (attempts - 1).min(20)))
            .min(Duration::from_secs(60));
        let retry_at = Instant::now() + backoff;
        tracing::info!(subscriber, publisher, seq, attempts, "handler failed, retrying in {backoff:?}: {error}");
        state.failing = Some(Failing { seq, attempts, retry_at });
        Ok(if handled.applied > 0 { Step::Delivered(handled.applied) } else { Step::Waiting(retry_at) })
    }
}
