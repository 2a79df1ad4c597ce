//! Whether this host can reach NATS, and the other hosts of the app, as last
//! actually observed (not as the client library last heard): a round trip to
//! the server every ping interval, and a heartbeat every host publishes and
//! the others hear. A host cut off by a silent partition (packets dropped,
//! the link up) says so within two intervals.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;

use super::connection::{Connection, token};
use crate::ledger::now_ms;

/// What this host last saw of NATS and the other hosts.
pub struct Link {
    interval: Duration,
    /// When a round trip to the server last succeeded, and how long it took.
    last_ok: Mutex<Option<(Instant, Duration)>>,
    /// Since when round trips fail (ms since the Unix epoch; 0: they do not).
    down_since_ms: AtomicI64,
    /// When each host was last heard, in ms since the Unix epoch.
    heard: Mutex<BTreeMap<String, i64>>,
}

impl Link {
    pub fn new(interval: Duration) -> Arc<Link> {
        Arc::new(Link {
            interval,
            last_ok: Mutex::new(None),
            down_since_ms: AtomicI64::new(0),
            heard: Mutex::default(),
        })
    }

    /// Whether the last round trip succeeded within two intervals.
    pub fn up(&self) -> bool {
        self.last_ok
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|(at, _)| at.elapsed() < self.interval * 2 + Duration::from_millis(200))
    }

    /// The last round trip's time.
    pub fn round_trip(&self) -> Option<Duration> {
        self.last_ok.lock().unwrap_or_else(|p| p.into_inner()).map(|(_, rtt)| rtt)
    }

    /// Since when this host cannot reach the server, if it cannot.
    pub fn down_since_ms(&self) -> Option<i64> {
        if self.up() {
            return None;
        }
        match self.down_since_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(at),
        }
    }

    /// When `host` was last heard, and whether that is recent enough to call
    /// it reachable (three intervals, and this host's own link up).
    pub fn heard(&self, host: &str) -> (Option<i64>, bool) {
        let last = self.heard.lock().unwrap_or_else(|p| p.into_inner()).get(host).copied();
        let fresh = last.is_some_and(|at| now_ms() - at < (self.interval * 3).as_millis() as i64);
        (last, fresh && self.up())
    }

    fn ok(&self, rtt: Duration) {
        *self.last_ok.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), rtt));
        self.down_since_ms.store(0, Ordering::Relaxed);
    }

    fn failed(&self) {
        let _ = self.down_since_ms.compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Every interval: a round trip to the server, and this host's heartbeat.
pub(super) async fn probe(nats: Arc<Connection>, link: Arc<Link>, mut stop: watch::Receiver<bool>) {
    let subject = nats.subject(&format!("heartbeat.{}", token(nats.host())));
    loop {
        let started = Instant::now();
        let _ = nats.client.publish(subject.clone(), nats.host().to_string().into()).await;
        match tokio::time::timeout(link.interval, nats.client.flush()).await {
            Ok(Ok(())) => link.ok(started.elapsed()),
            _ => link.failed(),
        }
        tokio::select! {
            _ = tokio::time::sleep(link.interval.saturating_sub(started.elapsed())) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Hears the other hosts' heartbeats.
pub(super) async fn listen(nats: Arc<Connection>, link: Arc<Link>, mut stop: watch::Receiver<bool>) {
    let subject = nats.subject("heartbeat.*");
    loop {
        let mut beats = match nats.client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(link.interval) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        loop {
            let beat = tokio::select! {
                b = beats.next() => b,
                _ = stop.changed() => return,
            };
            let Some(beat) = beat else { break };
            let host = String::from_utf8_lossy(&beat.payload).into_owned();
            link.heard.lock().unwrap_or_else(|p| p.into_inner()).insert(host, now_ms());
        }
    }
}
