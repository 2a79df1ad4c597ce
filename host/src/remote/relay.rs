//! Relaying one local publisher's outbox (one topic) to JetStream, a
//! subject per event type: `moat.<namespace>.events.<publisher>.<topic>.<case>`.
//!
//! Rows go out in sequence order, a window at a time; the position
//! (`_moat_meta` key `relayed:<topic>`, in the publisher's own database)
//! moves only once JetStream has acknowledged every row up to it. After a
//! failure the window is sent again from its start: JetStream's dedup (by
//! message id) drops what had arrived, and each message names the event
//! before it (`Moat-Prev`) so that a consumer never applies past a gap.
//! An event published under a span carries it as a W3C `traceparent`
//! header: the subscriber's host applies it under that trace.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use async_nats::HeaderMap;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::watch;

use super::connection::{self, token};
use super::link::Link;
use crate::capability::publish::Signal;
use crate::component::Component;
use crate::ledger;

/// Events sent before waiting for their acknowledgements.
const WINDOW: usize = 500;

/// A relay's position, for status and for one-shot commands waiting on it.
#[derive(Default)]
pub struct Progress {
    relayed: AtomicI64,
    head: AtomicI64,
}

/// How far a publisher's outbox is in JetStream.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RelayStatus {
    pub publisher: String,
    pub topic: String,
    /// The last outbox event JetStream acknowledged.
    pub relayed: i64,
    /// The last outbox event.
    pub head: i64,
}

impl Progress {
    /// For `moat status`.
    pub fn status(&self, publisher: &str, topic: &str) -> RelayStatus {
        RelayStatus {
            publisher: publisher.to_string(),
            topic: topic.to_string(),
            relayed: self.relayed(),
            head: self.head(),
        }
    }

    pub fn relayed(&self) -> i64 {
        self.relayed.load(Ordering::Relaxed)
    }

    pub fn head(&self) -> i64 {
        self.head.load(Ordering::Relaxed)
    }

    pub fn caught_up(&self) -> bool {
        self.relayed() >= self.head()
    }
}

/// The subjects of a publisher's events on a topic: one per event type
/// (variant case), `moat.<namespace>.events.<publisher>.<topic>.<case>`.
pub fn subjects(nats: &connection::Connection, publisher: &str, topic: &str) -> String {
    nats.subject(&format!("events.{}.{}.>", token(publisher), token(topic)))
}

pub(super) async fn run(
    nats: Arc<connection::Connection>,
    publisher: Arc<Component>,
    topic: String,
    progress: Arc<Progress>,
    signal: Arc<Signal>,
    link: Arc<Link>,
    mut stop: watch::Receiver<bool>,
) {
    let mut relay = match Relay::open(&nats, &publisher, &topic) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(publisher = publisher.name(), topic, "cannot relay events: {e:#}");
            return;
        }
    };
    // After a failure, one event at a time until JetStream acknowledges again,
    // then the window opens up: no window of resends piles into a connection
    // that answers nothing. Waits between failures double, up to 5 s, and
    // end early when the link comes back up.
    let (mut window, mut backoff) = (WINDOW, Duration::ZERO);
    loop {
        let woken = signal.notified();
        match relay.once(&nats, &publisher, &progress, window).await {
            Ok(n) if n > 0 => {
                window = (window * 4).min(WINDOW);
                backoff = Duration::ZERO;
            }
            Ok(_) => {
                if !backoff.is_zero() {
                    tracing::info!(publisher = publisher.name(), topic, "relaying events to JetStream again");
                    backoff = Duration::ZERO;
                }
                tokio::select! {
                    _ = woken => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => return,
                }
            }
            Err(e) => {
                if backoff.is_zero() {
                    tracing::warn!(
                        publisher = publisher.name(),
                        topic,
                        "relaying events to JetStream failed, retrying: {e:#}"
                    );
                }
                window = 1;
                backoff = (backoff * 2).clamp(Duration::from_millis(250), Duration::from_secs(5));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = link.restored() => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

struct Relay {
    topic: String,
    /// `moat.events.<publisher>.<topic>.`, before the case.
    subject_prefix: String,
    db: PathBuf,
    reader: Option<Connection>,
    /// The last sequence JetStream acknowledged, once read.
    relayed: Option<i64>,
}

impl Relay {
    fn open(nats: &connection::Connection, publisher: &Component, topic: &str) -> Result<Relay> {
        Ok(Relay {
            topic: topic.to_string(),
            subject_prefix: nats.subject(&format!("events.{}.{}.", token(publisher.name()), token(topic))),
            db: publisher.db_path().to_path_buf(),
            reader: None,
            relayed: None,
        })
    }

    /// Relays what is new; returns how many events went out.
    async fn once(
        &mut self,
        nats: &connection::Connection,
        publisher: &Arc<Component>,
        progress: &Progress,
        window: usize,
    ) -> Result<usize> {
        let relayed = match self.relayed {
            Some(r) => r,
            None => {
                let (p, topic) = (publisher.clone(), self.topic.clone());
                let r = tokio::task::spawn_blocking(move || p.read_db(|c| ledger::relayed(c, &topic))).await??;
                progress.relayed.store(r, Ordering::Relaxed);
                self.relayed = Some(r);
                r
            }
        };
        if self.reader.is_none() {
            self.reader = Some(
                Connection::open_with_flags(
                    &self.db,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .with_context(|| format!("opening {}", self.db.display()))?,
            );
        }
        let reader = self.reader.as_ref().expect("opened above");
        let head = ledger::outbox_head(reader, &self.topic)?;
        progress.head.store(head.max(relayed), Ordering::Relaxed);
        let rows = ledger::outbox_after(reader, &self.topic, relayed, window as u32)?;
        let Some(last) = rows.last().map(|r| r.seq) else { return Ok(0) };

        let mut acks = Vec::with_capacity(rows.len());
        let mut prev = relayed;
        for row in &rows {
            let (seq, event, payload, published_us) = (&row.seq, &row.event, &row.payload, &row.published_us);
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("{}/{}/{seq}", publisher.name(), self.topic).as_str());
            headers.insert("Moat-Seq", seq.to_string().as_str());
            headers.insert("Moat-Prev", prev.to_string().as_str());
            headers.insert("Moat-Event", event.as_str());
            headers.insert("Moat-Published-Us", published_us.to_string().as_str());
            if let Some(traceparent) = &row.trace {
                headers.insert("traceparent", traceparent.as_str());
            }
            let ack = nats
                .js
                .publish_with_headers(
                    format!("{}{}", self.subject_prefix, token(event)),
                    headers,
                    payload.clone().into(),
                )
                .await
                .map_err(|e| anyhow!("publishing to JetStream: {e}"))?;
            acks.push(ack);
            prev = *seq;
        }
        for ack in acks {
            ack.await.map_err(|e| anyhow!("JetStream did not acknowledge: {e}"))?;
        }

        // Everything up to `last` is in JetStream: move the position.
        let (p, topic) = (publisher.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || p.with_db(|c| ledger::set_relayed(c, &topic, last))).await??;
        self.relayed = Some(last);
        progress.relayed.store(last, Ordering::Relaxed);
        Ok(rows.len())
    }
}
