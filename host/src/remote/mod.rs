//! Capability: components on other hosts, reached through NATS JetStream.
//!
//! The same components, the same WIT and the same guarantees as in one
//! process; only the carrier changes.
//!
//! - **Events** ([`relay`], [`consume`]). Each host relays its publishers'
//!   outboxes to the stream `MOAT_EVENTS_<namespace>`, subject
//!   `moat.<namespace>.events.<publisher>.<topic>.<case>`, message id `<publisher>/<topic>/<seq>`
//!   so JetStream drops a resend; an outbox row counts as relayed only once
//!   JetStream acknowledged it. A subscriber on another host reads through a
//!   durable pull consumer with explicit acks and applies with the same
//!   per-publisher cursor as in-process delivery, so redeliveries (JetStream's
//!   dedup window is only minutes) are skipped: exactly once, in order.
//! - **Calls** ([`calls`]). An import served by a component on another host
//!   is forwarded as a NATS request to `moat.<namespace>.call.<component>`, arguments and
//!   results in [`codec`], with the caller's deadline: a timeout or a missing
//!   peer is an error to the caller, never a hang.
//! - **Peers** ([`peers`]). Each host records in JetStream key-value buckets
//!   which build of each of its components it runs, so a swap on one host
//!   checks consumers on the others against what they really run.

mod calls;
pub mod codec;
mod connection;
mod consume;
mod link;
pub mod peers;
mod relay;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::capability::publish::Signal;
use crate::component::Component;
use crate::events::{Delivery, Subscription};
use crate::manifest::NatsSettings;

pub use calls::{RemoteComponent, Reused, Unknown, new_request_id};
pub use connection::Connection;
pub use consume::ConsumerStatus;
pub use link::Link;
pub use relay::RelayStatus;

/// A host's connection to NATS, and the tasks that carry its events and
/// calls. Dropping it stops them.
pub struct Nats {
    conn: Arc<Connection>,
    /// What this host last saw of NATS and the other hosts.
    link: Arc<link::Link>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// What the relays and consumers report, for `moat status`.
    relays: Mutex<BTreeMap<(String, String), Arc<relay::Progress>>>,
    consumers: Mutex<Vec<Arc<consume::Consumer>>>,
}

/// What runs where, handed to [`Nats::start`].
pub struct Wiring {
    /// This host's components, by name.
    pub components: BTreeMap<String, Arc<Component>>,
    /// Each local publisher and the topics it publishes.
    pub publishers: Vec<(Arc<Component>, Vec<String>)>,
    /// Subscriptions of local components to publishers on other hosts.
    pub incoming: Vec<Subscription>,
    /// Told of every local commit that published.
    pub signal: Arc<Signal>,
}

impl Nats {
    /// Connects to NATS and makes sure the event stream exists (best effort:
    /// every task makes sure again before it works).
    pub fn connect(settings: &NatsSettings) -> Result<Arc<Nats>> {
        let conn = Connection::connect(settings)?;
        let ensured =
            conn.run(|c| async move { tokio::time::timeout(Duration::from_secs(2), c.ensure_stream()).await });
        if !matches!(ensured, Ok(Ok(()))) {
            tracing::warn!("NATS at {} does not answer yet; events and calls across hosts wait for it", settings.url);
        }
        let link = link::Link::new(Duration::from_millis(settings.ping_interval_ms.max(100)));
        let tasks = vec![conn.spawn(link::run(conn.clone(), link.clone(), conn.stopping()))];
        Ok(Arc::new(Nats {
            conn,
            link,
            tasks: Mutex::new(tasks),
            relays: Mutex::default(),
            consumers: Mutex::default(),
        }))
    }

    /// The connection.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }

    /// This host's name.
    pub fn host(&self) -> &str {
        self.conn.host()
    }

    /// Runs `f` on the NATS runtime and waits for it.
    pub fn run<T, F>(&self, f: impl FnOnce(Arc<Connection>) -> F + Send + 'static) -> T
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.conn.run(f)
    }

    /// Starts relaying this host's events, consuming others' events for its
    /// subscribers, and serving its components' calls.
    pub fn start(&self, wiring: Wiring) {
        let conn = &self.conn;
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for (publisher, topics) in wiring.publishers {
            for topic in topics {
                let progress = Arc::new(relay::Progress::default());
                self.relays
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((publisher.name().to_string(), topic.clone()), progress.clone());
                let task = relay::run(
                    conn.clone(),
                    publisher.clone(),
                    topic,
                    progress,
                    wiring.signal.clone(),
                    self.link.clone(),
                    conn.stopping(),
                );
                tasks.push(conn.spawn(task));
            }
        }
        for sub in wiring.incoming {
            let subscriber = wiring.components[&sub.subscriber].clone();
            let consumer = Arc::new(consume::Consumer::new(Delivery::new(sub, subscriber)));
            self.consumers.lock().unwrap_or_else(|p| p.into_inner()).push(consumer.clone());
            tasks.push(conn.spawn(consume::run(conn.clone(), consumer, conn.stopping())));
        }
        for component in wiring.components.values() {
            tasks.push(conn.spawn(calls::serve(conn.clone(), component.clone(), conn.stopping())));
        }
        let components: Vec<Arc<Component>> = wiring.components.values().cloned().collect();
        let me = conn.clone();
        tasks.push(conn.spawn(async move { peers::announce_all(&me, &components).await }));
    }

    /// Waits until every local event is in JetStream (or `limit` passes):
    /// what a one-shot command does before it exits.
    pub fn flush_relays(&self, limit: Duration) -> bool {
        let relays: Vec<Arc<relay::Progress>> =
            self.relays.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let start = std::time::Instant::now();
        loop {
            if relays.iter().all(|r| r.caught_up()) {
                return true;
            }
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether this host reaches NATS and `host` now, and when it last heard `host`.
    pub fn host_reachable(&self, host: &str) -> (Option<i64>, bool) {
        self.link.heard(host)
    }

    /// Where NATS, the stream, the relays and the consumers stand.
    pub fn status(&self) -> NatsStatus {
        let relays = self
            .relays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((publisher, topic), p)| p.status(publisher, topic))
            .collect();
        let consumers: Vec<Arc<consume::Consumer>> = self.consumers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let connected =
            self.link.up() && self.conn.client.connection_state() == async_nats::connection::State::Connected;
        // Cut off, the server cannot say where the stream and consumers
        // stand: say what this host knows, at once, rather than wait for it.
        let asked = if connected { ASKED } else { Duration::ZERO };
        let (stream, peers, consumers) = self.conn.run(move |c| async move {
            let stream = async {
                let mut s = c.js.get_stream(c.events_stream()).await.ok()?;
                let info = s.info().await.ok()?;
                Some(StreamStatus {
                    messages: info.state.messages,
                    bytes: info.state.bytes,
                    first_seq: info.state.first_sequence,
                    last_seq: info.state.last_sequence,
                })
            };
            // Asked together, so a server slow to answer costs `asked` once.
            let stream = async { tokio::time::timeout(asked, stream).await.ok().flatten() };
            let peers = async {
                tokio::time::timeout(asked, peers::list(&c)).await.ok().and_then(Result::ok).unwrap_or_default()
            };
            let consumers = futures::future::join_all(consumers.iter().map(|consumer| {
                let c = &c;
                async move {
                    tokio::time::timeout(asked, consumer.status(c))
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| consumer.offline_status())
                }
            }));
            futures::join!(stream, peers, consumers)
        });
        NatsStatus {
            namespace: self.conn.settings.namespace().to_string(),
            stream_name: self.conn.events_stream(),
            url: self.conn.settings.url.clone(),
            host: self.conn.settings.host.clone(),
            connected,
            unreachable_since_ms: self.link.down_since_ms(),
            round_trip_ms: self.link.round_trip().map(|d| d.as_secs_f64() * 1e3),
            remotes: Vec::new(),
            stream,
            peers,
            relays,
            consumers,
        }
    }
}

/// How long `moat status` waits for the server's answers.
const ASKED: Duration = Duration::from_secs(1);

impl Drop for Nats {
    fn drop(&mut self) {
        self.conn.stop();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
        }
    }
}

/// NATS as `moat status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NatsStatus {
    /// The app's namespace on the server.
    #[serde(default)]
    pub namespace: String,
    /// The stream events travel in.
    #[serde(default)]
    pub stream_name: String,
    /// The server.
    pub url: String,
    /// This host's name.
    pub host: String,
    /// Whether this host reaches the server now: a round trip succeeded
    /// within the last two ping intervals.
    pub connected: bool,
    /// Since when it cannot (ms since the Unix epoch), if it cannot.
    #[serde(default)]
    pub unreachable_since_ms: Option<i64>,
    /// The last round trip's time.
    #[serde(default)]
    pub round_trip_ms: Option<f64>,
    /// Each component on another host, and whether its host is heard.
    #[serde(default)]
    pub remotes: Vec<RemoteStatus>,
    /// The event stream, if it could be read.
    pub stream: Option<StreamStatus>,
    /// The components each host says it runs.
    pub peers: Vec<peers::Peer>,
    /// Each local publisher's relay to JetStream.
    pub relays: Vec<RelayStatus>,
    /// Each consumer of another host's events.
    pub consumers: Vec<ConsumerStatus>,
}

/// A component on another host, as this host last heard of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteStatus {
    pub component: String,
    /// The host the manifest says runs it.
    pub host: String,
    /// When that host was last heard (its heartbeat), in ms since the Unix epoch.
    pub last_heard_ms: Option<i64>,
    /// Heard within three ping intervals, and this host reaches NATS.
    pub reachable: bool,
}

/// The event stream's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamStatus {
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}
