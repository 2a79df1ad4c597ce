//! Whether this host can reach NATS, and the other hosts of the app, as last
//! actually observed (not as the client library last heard).
//!
//! Every ping interval each host publishes a heartbeat on
//! `moat.<namespace>.heartbeat.<host>` and listens to everyone's. Its own
//! coming back is a round trip through the server: the link is up while one
//! came back within two intervals. (A flush is not a round trip: it ends
//! once the bytes are in the socket, which a dead connection takes for
//! seconds.) The heartbeat says whether its sender's link is up, so a host
//! that still sends but no longer hears (a one-way partition) counts as
//! unreachable for the others too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::connection::{Connection, token};
use crate::ledger::now_ms;

/// What this host last saw of NATS and the other hosts.
pub struct Link {
    interval: Duration,
    /// When the link was made (ms since the Unix epoch): unreachable since
    /// then if nothing ever came back.
    since_ms: i64,
    /// When this host's heartbeat last came back, and how long it took.
    last_ok: Mutex<Option<(i64, Duration)>>,
    /// When each other host was last heard with its link up.
    heard: Mutex<BTreeMap<String, i64>>,
    /// Woken when the link comes back up: whoever backs off from a dead
    /// connection (the relays) tries again at once.
    restored: tokio::sync::Notify,
}

/// One heartbeat.
#[derive(Serialize, Deserialize)]
struct Beat {
    host: String,
    sent_ms: i64,
    /// Whether its sender's own heartbeats were coming back.
    up: bool,
}

impl Link {
    pub fn new(interval: Duration) -> Arc<Link> {
        Arc::new(Link {
            interval,
            since_ms: now_ms(),
            last_ok: Mutex::new(None),
            heard: Mutex::default(),
            restored: tokio::sync::Notify::new(),
        })
    }

    /// How long without a round trip before the link counts as down.
    fn stale_after(&self) -> i64 {
        (self.interval * 2).as_millis() as i64 + 200
    }

    fn last_ok(&self) -> Option<(i64, Duration)> {
        *self.last_ok.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a heartbeat came back within two intervals.
    pub fn up(&self) -> bool {
        self.last_ok().is_some_and(|(at, _)| now_ms() - at < self.stale_after())
    }

    /// Waits until the link comes back up.
    pub async fn restored(&self) {
        self.restored.notified().await
    }

    /// The last round trip's time.
    pub fn round_trip(&self) -> Option<Duration> {
        self.last_ok().map(|(_, rtt)| rtt)
    }

    /// Since when this host cannot reach the server (the last round trip,
    /// or the link's start), if it cannot.
    pub fn down_since_ms(&self) -> Option<i64> {
        if self.up() {
            return None;
        }
        Some(self.last_ok().map_or(self.since_ms, |(at, _)| at))
    }

    /// When `host` was last heard with its link up, and whether that is
    /// recent enough to call it reachable (three intervals, and this host's
    /// own link up).
    pub fn heard(&self, host: &str) -> (Option<i64>, bool) {
        let last = self.heard.lock().unwrap_or_else(|p| p.into_inner()).get(host).copied();
        let fresh = last.is_some_and(|at| now_ms() - at < (self.interval * 3).as_millis() as i64);
        (last, fresh && self.up())
    }
}

/// Every interval, this host's heartbeat; and every heartbeat heard: this
/// host's own (a round trip), and the others'. One task, subscribed before
/// the first beat goes out, so that beat already comes back.
pub(super) async fn run(nats: Arc<Connection>, link: Arc<Link>, mut stop: watch::Receiver<bool>) {
    let (all, own) = (nats.subject("heartbeat.*"), nats.subject(&format!("heartbeat.{}", token(nats.host()))));
    loop {
        let mut beats = match nats.client.subscribe(all.clone()).await {
            Ok(s) => s,
            Err(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(link.interval) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        let mut tick = tokio::time::interval(link.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let beat = Beat { host: nats.host().to_string(), sent_ms: now_ms(), up: link.up() };
                    if let Ok(body) = serde_json::to_vec(&beat) {
                        // Bounded: a client whose buffer is full (cut off)
                        // must not stop this task hearing the others.
                        let _ = tokio::time::timeout(link.interval, nats.client.publish(own.clone(), body.into())).await;
                    }
                }
                message = beats.next() => {
                    let Some(message) = message else { break };
                    link.heard_beat(nats.host(), &message.payload);
                }
                _ = stop.changed() => return,
            }
        }
    }
}

impl Link {
    fn heard_beat(&self, me: &str, payload: &[u8]) {
        let Ok(beat) = serde_json::from_slice::<Beat>(payload) else { return };
        let now = now_ms();
        if beat.host == me {
            let rtt = Duration::from_millis((now - beat.sent_ms).max(0) as u64);
            let was_up = self.up();
            *self.last_ok.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, rtt));
            if !was_up {
                self.restored.notify_waiters();
            }
        } else if beat.up {
            self.heard.lock().unwrap_or_else(|p| p.into_inner()).insert(beat.host, now);
        }
    }
}
