//! Consuming another host's events for a local subscriber: a durable pull
//! consumer with explicit acks, applied through the same [`Delivery`] as
//! local events (one transaction per batch, cursor included, retries, dead
//! letters).
//!
//! A message is acknowledged once the cursor has passed it, never before:
//! a crash between applying and acknowledging only causes a redelivery,
//! which the cursor skips. The subscriber's database, not JetStream, is the
//! truth: at each start the consumer is made anew from the stream position
//! recorded beside the cursor (`_moat_meta`, `stream:<publisher>/<topic>`),
//! so a database restored from a backup, or wiped, is fed again from where
//! it stands. Messages arrive in publication order; each names
//! the event before it (`Moat-Prev`), and one whose predecessor the cursor
//! has not reached waits for it rather than skipping it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use tokio::sync::watch;

use super::connection::Connection;
use super::relay::subjects;
use crate::events::{Delivery, OutboxEvent, Step};
use crate::ledger;

/// How far a local subscriber is through another host's events.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

/// One subscription fed from JetStream.
pub struct Consumer {
    delivery: Arc<Delivery>,
    durable: String,
}

impl Consumer {
    pub(super) fn new(delivery: Delivery) -> Consumer {
        let sub = &delivery.sub;
        let durable = format!("moat_{}_{}_{}", sub.subscriber, sub.publisher, sub.topic)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
            .collect();
        Consumer { delivery: Arc::new(delivery), durable }
    }

    fn config(&self, nats: &Connection, after: u64) -> pull::Config {
        let deliver_policy = match after {
            0 => jetstream::consumer::DeliverPolicy::All,
            n => jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: n + 1 },
        };
        pull::Config {
            durable_name: Some(self.durable.clone()),
            filter_subject: subjects(nats, &self.delivery.sub.publisher, &self.delivery.sub.topic),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            deliver_policy,
            ack_wait: Duration::from_secs(10),
            max_ack_pending: 20_000,
            ..Default::default()
        }
    }

    /// The stream sequence of the last message applied, as recorded.
    fn recorded_position(&self) -> Result<u64> {
        let sub = &self.delivery.sub;
        self.delivery.subscriber.read_db(|c| ledger::stream_position(c, &sub.publisher, &sub.topic))
    }

    fn record_position(&self, position: u64) -> Result<()> {
        let sub = &self.delivery.sub;
        self.delivery.subscriber.with_db(|c| ledger::set_stream_position(c, &sub.publisher, &sub.topic, position))
    }

    pub(super) async fn status(&self, nats: &Connection) -> Option<ConsumerStatus> {
        let stream = nats.js.get_stream(nats.events_stream()).await.ok()?;
        let mut consumer: jetstream::consumer::PullConsumer = stream.get_consumer(&self.durable).await.ok()?;
        let info = consumer.info().await.ok()?;
        let mut status = self.offline_status();
        status.pending = Some(info.num_pending);
        status.ack_pending = Some(info.num_ack_pending as u64);
        Some(status)
    }

    pub(super) fn offline_status(&self) -> ConsumerStatus {
        let d = &self.delivery;
        let route = Some(d.status(0));
        ConsumerStatus {
            subscriber: d.sub.subscriber.clone(),
            publisher: d.sub.publisher.clone(),
            topic: d.sub.topic.clone(),
            cursor: route.as_ref().map_or(0, |r| r.cursor),
            pending: None,
            ack_pending: None,
            latency_p50_ms: route.as_ref().and_then(|r| r.latency_p50_ms),
            latency_p99_ms: route.as_ref().and_then(|r| r.latency_p99_ms),
        }
    }
}

pub(super) async fn run(nats: Arc<Connection>, consumer: Arc<Consumer>, mut stop: watch::Receiver<bool>) {
    let mut failing = false;
    loop {
        let outcome = tokio::select! {
            r = consume(&nats, &consumer) => r,
            _ = stop.changed() => return,
        };
        if let Err(e) = outcome
            && !failing
        {
            let sub = &consumer.delivery.sub;
            tracing::warn!(
                subscriber = sub.subscriber,
                publisher = sub.publisher,
                "consuming events from JetStream failed, retrying: {e:#}"
            );
            failing = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Fetches and applies until something fails.
async fn consume(nats: &Connection, consumer: &Arc<Consumer>) -> Result<()> {
    nats.ensure_stream().await?;
    let stream = nats.js.get_stream(nats.events_stream()).await.map_err(|e| anyhow!("{e}"))?;
    let after = {
        let c = consumer.clone();
        tokio::task::spawn_blocking(move || c.recorded_position()).await??
    };
    // Made anew from the database's position, whatever JetStream remembers.
    let _ = stream.delete_consumer(&consumer.durable).await;
    let pull: jetstream::consumer::PullConsumer = stream
        .create_consumer(consumer.config(nats, after))
        .await
        .map_err(|e| anyhow!("creating the JetStream consumer {}: {e}", consumer.durable))?;
    let delivery = &consumer.delivery;
    let batch_size = delivery.subscriber.spec().events.batch as usize;
    // Fetched, not yet applied, by sequence.
    let mut pending: BTreeMap<i64, (OutboxEvent, i64, jetstream::Message)> = BTreeMap::new();
    // While an earlier event is missing, keep fetching past the batch: it
    // comes later in the stream (a resend after an outage). If it does not
    // come (a delivery lost with the connection, which JetStream would
    // redeliver only after ack_wait), start over from the recorded position.
    let mut gapped = false;
    let mut gapped_since: Option<std::time::Instant> = None;
    loop {
        let room = if gapped {
            (batch_size * 50).saturating_sub(pending.len())
        } else {
            batch_size.saturating_sub(pending.len())
        };
        // Fetch only when what was fetched is applied (or an event is
        // missing): a fetch while messages are still owed to an earlier one
        // can sit on the server until the client gives up (seconds), and a
        // batch that yields its subscriber comes back for the rest anyway.
        if room > 0 && (pending.is_empty() || gapped) {
            let wait = Duration::from_millis(500);
            let mut messages = pull
                .fetch()
                .max_messages(room)
                .expires(wait)
                .messages()
                .await
                .map_err(|e| anyhow!("fetching from JetStream: {e}"))?;
            // Bounded on this side too: a fetch the server forgot ends here.
            let fetched = async {
                while let Some(message) = messages.next().await {
                    let message = message.map_err(|e| anyhow!("fetching from JetStream: {e}"))?;
                    let (event, prev) = parse(&message, &delivery.sub.topic)?;
                    pending.insert(event.seq, (event, prev, message));
                }
                Ok::<(), anyhow::Error>(())
            };
            if let Ok(result) = tokio::time::timeout(wait + Duration::from_secs(1), fetched).await {
                result?;
            }
        }
        let cursor = {
            let d = delivery.clone();
            tokio::task::spawn_blocking(move || d.cursor()).await??
        };
        // Redeliveries of what already took effect: acknowledge and drop.
        while let Some(entry) = pending.first_entry() {
            if *entry.key() > cursor {
                break;
            }
            let (_, _, message) = entry.remove();
            message.ack().await.map_err(|e| anyhow!("acknowledging: {e}"))?;
        }
        // The run that follows the cursor without a gap.
        let mut expected = cursor;
        let mut run = Vec::new();
        for (seq, (event, prev, _)) in &pending {
            if *prev > expected {
                tracing::debug!(seq, prev, expected, "an earlier event has not arrived yet; waiting for it");
                break;
            }
            run.push(event.clone());
            expected = *seq;
            if run.len() == batch_size {
                break;
            }
        }
        gapped = run.is_empty() && !pending.is_empty();
        if gapped {
            let since = *gapped_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > Duration::from_secs(2) {
                return Err(anyhow!(
                    "the event after #{expected} has not arrived; reading the stream again from the recorded position"
                ));
            }
        } else {
            gapped_since = None;
        }
        if run.is_empty() {
            continue;
        }
        if let Some(at) = delivery.not_before() {
            tokio::time::sleep_until(at.into()).await;
        }
        let d = delivery.clone();
        let step = tokio::task::spawn_blocking(move || d.apply(&run)).await??;
        if let Step::Waiting(at) = step {
            tokio::time::sleep_until(at.into()).await;
        }
        let d = delivery.clone();
        let cursor = tokio::task::spawn_blocking(move || d.cursor()).await??;
        let mut position = None;
        while let Some(entry) = pending.first_entry() {
            if *entry.key() > cursor {
                break;
            }
            let (_, _, message) = entry.remove();
            position = message.info().ok().map(|i| i.stream_sequence).or(position);
            message.ack().await.map_err(|e| anyhow!("acknowledging: {e}"))?;
        }
        if let Some(position) = position {
            let c = consumer.clone();
            tokio::task::spawn_blocking(move || c.record_position(position)).await??;
        }
    }
}

/// The event a message carries, and the sequence of the one before it.
fn parse(message: &jetstream::Message, topic: &str) -> Result<(OutboxEvent, i64)> {
    let header = |name: &str| -> Result<String> {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
            .with_context(|| format!("a message on {} has no {name} header", message.subject))
    };
    let number = |name: &str| -> Result<i64> { header(name)?.parse().with_context(|| format!("header {name}")) };
    let event = OutboxEvent {
        seq: number("Moat-Seq")?,
        topic: topic.to_string(),
        event: header("Moat-Event")?,
        payload: String::from_utf8(message.payload.to_vec()).context("an event that is not UTF-8")?,
        published_us: number("Moat-Published-Us")?,
        trace: header("traceparent").ok(),
    };
    Ok((event, number("Moat-Prev")?))
}
