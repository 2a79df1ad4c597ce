//! Capability: components on other hosts, reached through NATS JetStream.
//!
//! The same components, the same WIT and the same guarantees as in one
//! process; only the carrier changes.
//!
//! - **Events** ([`relay`], [`consume`]). Each host relays its publishers'
//!   outboxes to the stream `MOAT_EVENTS`, subject
//!   `moat.events.<publisher>.<topic>.<case>`, message id `<publisher>/<topic>/<seq>`
//!   so JetStream drops a resend; an outbox row counts as relayed only once
//!   JetStream acknowledged it. A subscriber on another host reads through a
//!   durable pull consumer with explicit acks and applies with the same
//!   per-publisher cursor as in-process delivery, so redeliveries (JetStream's
//!   dedup window is only minutes) are skipped: exactly once, in order.
//! - **Calls** ([`calls`]). An import served by a component on another host
//!   is forwarded as a NATS request to `moat.call.<component>`, arguments and
//!   results in [`codec`], with the caller's deadline: a timeout or a missing
//!   peer is an error to the caller, never a hang.
//! - **Peers** ([`peers`]). Each host records in JetStream key-value buckets
//!   which build of each of its components it runs, so a swap on one host
//!   checks consumers on the others against what they really run.

mod calls;
pub mod codec;
mod consume;
pub mod peers;
mod relay;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::component::Component;
use crate::events::delivery::Delivery;
use crate::events::{Signal, Subscription};
use crate::manifest::NatsSettings;

pub use calls::RemoteComponent;

/// The stream every host relays events to.
pub const STREAM: &str = "MOAT_EVENTS";

/// A host's connection to NATS, and the tasks that carry its events and
/// calls. Dropping it stops them.
pub struct Nats {
    settings: NatsSettings,
    client: async_nats::Client,
    js: jetstream::Context,
    runtime: tokio::runtime::Runtime,
    stop: watch::Sender<bool>,
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
    /// Connects to NATS and makes sure the event stream exists. A server
    /// that is down now is retried in the background; what needs it waits
    /// or fails with a clear error meanwhile.
    pub fn connect(settings: &NatsSettings) -> Result<Arc<Nats>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("moat-nats")
            .enable_all()
            .build()?;
        let url = settings.url.clone();
        let host = settings.host.clone();
        let client = runtime
            .block_on(async {
                async_nats::ConnectOptions::new()
                    .name(format!("moat host {host}"))
                    .retry_on_initial_connect()
                    .connection_timeout(Duration::from_secs(2))
                    .event_callback(|event| async move { tracing::info!("nats: {event}") })
                    .connect(&url)
                    .await
            })
            .with_context(|| format!("connecting to NATS at {url}"))?;
        let js = {
            let _inside = runtime.enter();
            jetstream::new(client.clone())
        };
        let (stop, _) = watch::channel(false);
        let nats = Arc::new(Nats {
            settings: settings.clone(),
            client,
            js,
            runtime,
            stop,
            tasks: Mutex::default(),
            relays: Mutex::default(),
            consumers: Mutex::default(),
        });
        // Best effort now; every task makes sure again before it works.
        let ensured =
            nats.run(|n| async move { tokio::time::timeout(Duration::from_secs(2), n.ensure_stream()).await });
        if !matches!(ensured, Ok(Ok(()))) {
            tracing::warn!("NATS at {} does not answer yet; events and calls across hosts wait for it", settings.url);
        }
        Ok(nats)
    }

    /// This host's name.
    pub fn host(&self) -> &str {
        &self.settings.host
    }

    /// Runs `f` on the NATS runtime and waits for it, from synchronous code
    /// (a component call, the dispatcher, the CLI).
    pub(crate) fn run<T, F>(self: &Arc<Self>, f: impl FnOnce(Arc<Nats>) -> F + Send + 'static) -> T
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let me = self.clone();
        self.runtime.spawn(async move {
            let _ = tx.send(f(me).await);
        });
        rx.recv().expect("the NATS runtime outlives its callers")
    }

    /// Starts relaying this host's events, consuming others' events for its
    /// subscribers, and serving its components' calls.
    pub fn start(self: &Arc<Self>, wiring: Wiring) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for (publisher, topics) in wiring.publishers {
            for topic in topics {
                let progress = Arc::new(relay::Progress::default());
                self.relays
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((publisher.name().to_string(), topic.clone()), progress.clone());
                let task = relay::run(
                    self.clone(),
                    publisher.clone(),
                    topic,
                    progress,
                    wiring.signal.clone(),
                    self.stop.subscribe(),
                );
                tasks.push(self.runtime.spawn(task));
            }
        }
        for sub in wiring.incoming {
            let subscriber = wiring.components[&sub.subscriber].clone();
            let consumer = Arc::new(consume::Consumer::new(Delivery::new(sub, subscriber)));
            self.consumers.lock().unwrap_or_else(|p| p.into_inner()).push(consumer.clone());
            tasks.push(self.runtime.spawn(consume::run(self.clone(), consumer, self.stop.subscribe())));
        }
        for component in wiring.components.values() {
            tasks.push(self.runtime.spawn(calls::serve(self.clone(), component.clone(), self.stop.subscribe())));
        }
        let components: Vec<Arc<Component>> = wiring.components.values().cloned().collect();
        let me = self.clone();
        tasks.push(self.runtime.spawn(async move { peers::announce_all(&me, &components).await }));
    }

    /// Waits until every local event is in JetStream (or `limit` passes):
    /// what a one-shot command does before it exits.
    pub fn flush_relays(self: &Arc<Self>, limit: Duration) -> bool {
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

    /// Creates the event stream if it does not exist.
    async fn ensure_stream(&self) -> Result<()> {
        self.js
            .get_or_create_stream(jetstream::stream::Config {
                name: STREAM.to_string(),
                subjects: vec!["moat.events.>".to_string()],
                storage: jetstream::stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                max_age: Duration::from_secs(7 * 24 * 3600),
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("creating the JetStream stream {STREAM}: {e}"))?;
        Ok(())
    }

    /// Where NATS, the stream, the relays and the consumers stand.
    pub fn status(self: &Arc<Self>) -> NatsStatus {
        let relays = self
            .relays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((publisher, topic), p)| RelayStatus {
                publisher: publisher.clone(),
                topic: topic.clone(),
                relayed: p.relayed(),
                head: p.head(),
            })
            .collect();
        let consumers: Vec<Arc<consume::Consumer>> = self.consumers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (stream, peers, consumers) = self.run(move |n| async move {
            let stream = async {
                let mut s = n.js.get_stream(STREAM).await.ok()?;
                let info = s.info().await.ok()?;
                Some(StreamStatus {
                    messages: info.state.messages,
                    bytes: info.state.bytes,
                    first_seq: info.state.first_sequence,
                    last_seq: info.state.last_sequence,
                })
            };
            let stream = tokio::time::timeout(Duration::from_secs(2), stream).await.ok().flatten();
            let peers = tokio::time::timeout(Duration::from_secs(2), peers::list(&n))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let mut out = Vec::new();
            for c in &consumers {
                out.push(
                    tokio::time::timeout(Duration::from_secs(2), c.status(&n))
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| c.offline_status()),
                );
            }
            (stream, peers, out)
        });
        NatsStatus {
            url: self.settings.url.clone(),
            host: self.settings.host.clone(),
            connected: self.client.connection_state() == async_nats::connection::State::Connected,
            stream,
            peers,
            relays,
            consumers,
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
        }
    }
}

/// NATS as `moat status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NatsStatus {
    /// The server.
    pub url: String,
    /// This host's name.
    pub host: String,
    /// Whether the connection is up now.
    pub connected: bool,
    /// The event stream, if it could be read.
    pub stream: Option<StreamStatus>,
    /// The components each host says it runs.
    pub peers: Vec<peers::Peer>,
    /// Each local publisher's relay to JetStream.
    pub relays: Vec<RelayStatus>,
    /// Each consumer of another host's events.
    pub consumers: Vec<ConsumerStatus>,
}

/// The event stream's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamStatus {
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// How far a publisher's outbox is in JetStream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayStatus {
    pub publisher: String,
    pub topic: String,
    /// The last outbox event JetStream acknowledged.
    pub relayed: i64,
    /// The last outbox event.
    pub head: i64,
}

/// How far a local subscriber is through another host's events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerStatus {
    pub subscriber: String,
    pub publisher: String,
    pub topic: String,
    /// The subscriber's cursor on the publisher.
    pub cursor: i64,
    /// Messages JetStream holds for it and has not delivered, and delivered
    /// but not acknowledged (`None`: NATS could not be asked).
    pub pending: Option<u64>,
    pub ack_pending: Option<u64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

/// A subject token for a topic or name: NATS subjects split on `.`.
pub(crate) fn token(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ':' { c } else { '_' }).collect()
}
