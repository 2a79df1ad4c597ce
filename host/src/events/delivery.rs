//! Applying one subscription's events to its subscriber, wherever they come
//! from (a local outbox, or JetStream for a publisher on another host): the
//! cursor, retries with backoff, dead letters, and latency.
//!
//! The cursor lives in the subscriber's database and only moves in the unit
//! of work that applies the events it passes, so a crash at any moment
//! leaves cursor and effects agreeing: delivery resumes right after the last
//! event that took effect. A copy is kept in memory (the route is its only
//! writer).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use rusqlite::{Connection, OpenFlags};

use super::dead_letters;
use crate::component::Component;
use crate::ledger::{self, OutboxEvent, now_us};
use crate::wiring::Subscription;

/// One route's delivery into its subscriber.
pub struct Delivery {
    /// A read-only connection to the subscriber's database, opened when
    /// status first asks: counting its dead letters never waits for the
    /// subscriber's unit of work. Declared first, so it closes first.
    reader: Mutex<Option<Connection>>,
    /// The subscription.
    pub sub: Subscription,
    /// The subscribing component.
    pub subscriber: Arc<Component>,
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
    /// Why the route last failed, and when (ms since the Unix epoch).
    last_error: Option<(String, i64)>,
    /// Events applied, retried and dead-lettered on this route.
    applied: u64,
    retried: u64,
    dead_lettered: u64,
}

struct Failing {
    seq: i64,
    attempts: u32,
    retry_at: Instant,
}

/// What one pass over a route did.
pub enum Step {
    /// Nothing to deliver.
    Idle,
    /// Some events took effect (or were dead-lettered).
    Delivered(usize),
    /// An event failed; it is retried at this time.
    Waiting(Instant),
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
    /// Why the route last failed, if it has, and when (ms since the Unix epoch).
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_error_ms: Option<i64>,
    /// Events applied, retried and dead-lettered since the host started.
    #[serde(default)]
    pub applied: u64,
    #[serde(default)]
    pub retried: u64,
    #[serde(default)]
    pub dead_lettered: u64,
    /// Dead letters of this route waiting in the subscriber's database, to
    /// be retried (`moat dlq --retry`) or left; `None` if it could not be read.
    #[serde(default)]
    pub dead_letters: Option<u64>,
    /// How long the oldest event not yet applied has waited, in seconds (0
    /// when caught up; `None` where it cannot be read, as for a publisher
    /// on another host).
    #[serde(default)]
    pub lag_seconds: Option<f64>,
    /// Time from publish to applied, median and 99th percentile, in
    /// milliseconds, over the last deliveries (none yet: `None`).
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

impl Delivery {
    /// Delivery of `sub` into `subscriber`.
    pub fn new(sub: Subscription, subscriber: Arc<Component>) -> Delivery {
        Delivery { reader: Mutex::default(), sub, subscriber, state: Mutex::default(), latencies: Mutex::default() }
    }

    fn lock_state(&self) -> MutexGuard<'_, RouteState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The subscriber's cursor: from memory, or read once from its database.
    pub fn cursor(&self) -> Result<i64> {
        if let Some(c) = self.lock_state().cursor {
            return Ok(c);
        }
        let (publisher, topic) = (&self.sub.publisher, &self.sub.topic);
        let cursor = self.subscriber.read_db(|c| ledger::cursor(c, publisher, topic))?;
        self.lock_state().cursor = Some(cursor);
        Ok(cursor)
    }

    /// Whether an event keeps failing on this route (it is retrying).
    pub fn failing(&self) -> bool {
        self.lock_state().failing.is_some()
    }

    /// When a failed event is due again, if it is not yet.
    pub fn not_before(&self) -> Option<Instant> {
        self.lock_state().failing.as_ref().map(|f| f.retry_at).filter(|at| Instant::now() < *at)
    }

    /// Moves the cursor back to `to` (for replay).
    pub fn rewind(&self, to: i64) -> Result<()> {
        let (publisher, topic) = (&self.sub.publisher, &self.sub.topic);
        self.subscriber.with_db(|c| ledger::set_cursor(c, publisher, topic, to))?;
        let mut state = self.lock_state();
        state.cursor = Some(to);
        state.failing = None;
        Ok(())
    }

    /// Records a failure of the route itself (its outbox could not be read,
    /// its worker panicked), for status.
    pub fn record_error(&self, error: &str) {
        self.lock_state().last_error = Some((ledger::bounded(error).to_string(), ledger::now_ms()));
    }

    /// Dead letters of this route waiting in the subscriber's database (for
    /// `moat dlq --retry`), and the newest one's error and time, read apart
    /// from its unit of work; `None` if the database cannot be read.
    fn dead_letters_waiting(&self) -> Option<(u64, Option<(String, i64)>)> {
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if reader.is_none() {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let c = Connection::open_with_flags(self.subscriber.db_path(), flags).ok()?;
            c.busy_timeout(Duration::from_millis(100)).ok()?;
            *reader = Some(c);
        }
        let c = reader.as_ref()?;
        ledger::dead_letters_waiting(c, &self.sub.publisher, &self.sub.topic).ok()
    }

    /// Where this subscription stands, given the publisher's head.
    pub fn status(&self, head: i64) -> RouteStatus {
        let waiting = self.dead_letters_waiting();
        let cursor = self.lock_state().cursor;
        let cursor = match cursor {
            Some(c) => c,
            None => self.cursor().unwrap_or(0),
        };
        let state = self.lock_state();
        let latencies = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        let last_error = state.last_error.clone().or_else(|| waiting.as_ref().and_then(|(_, newest)| newest.clone()));
        RouteStatus {
            subscription: self.sub.clone(),
            cursor,
            head,
            failing_attempts: state.failing.as_ref().map(|f| f.attempts),
            // What this process saw fail last, or else the newest dead
            // letter's error (a host started since still shows why).
            last_error: last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_ms: last_error.as_ref().map(|(_, at)| *at),
            applied: state.applied,
            retried: state.retried,
            dead_lettered: state.dead_lettered,
            dead_letters: waiting.as_ref().map(|(n, _)| *n),
            lag_seconds: None,
            latency_p50_ms: latencies.quantile(0.5),
            latency_p99_ms: latencies.quantile(0.99),
        }
    }

    /// Applies a batch of events that follow the cursor, in order. A failure
    /// is retried with backoff (the caller offers the batch again once
    /// `not_before` passes) and, after the last attempt, dead-lettered. A
    /// failure of the subscriber itself (it cannot be instantiated, its
    /// database is full) is retried with backoff for as long as it lasts.
    pub fn apply(&self, batch: &[OutboxEvent]) -> Result<Step> {
        let settings = &self.subscriber.spec().events;
        let (subscriber, publisher, topic) = (self.subscriber.name(), &self.sub.publisher, &self.sub.topic);
        let (first, last) = (batch.first().map_or(0, |e| e.seq), batch.last().map_or(0, |e| e.seq));
        tracing::debug!(target: "moat::delivery", subscriber, publisher, first, last, "batch start");
        let handled = match self.subscriber.handle_events(publisher, topic, batch) {
            Ok(handled) => handled,
            Err(e) => {
                let why = format!("{e:#}");
                let Some(first) = batch.first() else { return Ok(Step::Idle) };
                let retry_at = self.retry(first.seq, &why, None);
                tracing::warn!(subscriber, publisher, "delivering events failed, retrying: {why}");
                return Ok(Step::Waiting(retry_at));
            }
        };
        tracing::debug!(target: "moat::delivery", subscriber, publisher, first, applied = handled.applied, "batch committed");
        if handled.applied > 0 {
            let now = now_us();
            let oldest_ms = (now - batch[0].published_us) as f64 / 1000.0;
            tracing::info!(subscriber, publisher, topic, count = handled.applied, first, oldest_ms, "delivered");
            let mut latencies = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
            for event in &batch[..handled.applied] {
                latencies.record(now - event.published_us);
            }
        }
        {
            let mut state = self.lock_state();
            state.applied += handled.applied as u64;
            if let Some(through) = handled.through {
                state.cursor = Some(through);
            }
            if handled.failed.is_none() {
                state.failing = None;
                return Ok(Step::Delivered(handled.applied));
            }
        }
        let (seq, error) = handled.failed.expect("checked above");
        let attempts = {
            let state = self.lock_state();
            match &state.failing {
                Some(f) if f.seq == seq => f.attempts.saturating_add(1),
                _ => 1,
            }
        };
        if attempts >= settings.max_attempts {
            let event = batch.iter().find(|e| e.seq == seq).expect("the failed event is in the batch");
            if let Err(e) = dead_letters::bury(&self.subscriber, publisher, event, &error, attempts) {
                let why = format!("moving event #{seq} to the dead letters failed: {e:#}");
                let retry_at = self.retry(seq, &why, Some(attempts - 1));
                return Ok(Step::Waiting(retry_at));
            }
            tracing::warn!(subscriber, publisher, seq, attempts, "dead-lettered {} event: {error}", event.event);
            let mut state = self.lock_state();
            state.cursor = Some(seq);
            state.failing = None;
            state.dead_lettered += 1;
            state.last_error = Some((format!("#{seq} dead-lettered: {}", ledger::bounded(&error)), ledger::now_ms()));
            return Ok(Step::Delivered(handled.applied + 1));
        }
        let retry_at = self.retry(seq, &error, Some(attempts));
        tracing::info!(subscriber, publisher, seq, attempts, "handler failed, retrying: {error}");
        Ok(if handled.applied > 0 { Step::Delivered(handled.applied) } else { Step::Waiting(retry_at) })
    }

    /// Schedules the next attempt at `seq`: the `attempts`-th failure of the
    /// event, or (`None`) a failure that was not the event's, retried each
    /// second without counting against it.
    fn retry(&self, seq: i64, error: &str, attempts: Option<u32>) -> Instant {
        let settings = &self.subscriber.spec().events;
        let mut state = self.lock_state();
        let (attempts, backoff) = match attempts {
            Some(n) => {
                let exponent = n.saturating_sub(1).min(20);
                let backoff = Duration::from_millis(settings.retry_backoff_ms.saturating_mul(1 << exponent));
                (n, backoff.min(Duration::from_secs(60)))
            }
            None => {
                let kept = state.failing.as_ref().filter(|f| f.seq == seq).map_or(0, |f| f.attempts);
                (kept, Duration::from_secs(1))
            }
        };
        let retry_at = Instant::now() + backoff.max(Duration::from_millis(1));
        state.failing = Some(Failing { seq, attempts, retry_at });
        state.retried += 1;
        state.last_error = Some((ledger::bounded(error).to_string(), ledger::now_ms()));
        retry_at
    }
}
