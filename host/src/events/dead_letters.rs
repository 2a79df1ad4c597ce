//! Dead letters: events a subscriber failed to handle `max_attempts` times.
//! They wait in the subscriber's own `_moat_dead_letter` table, with the last
//! error, until someone redrives them (after fixing the cause) with
//! `moat dlq COMPONENT --retry ID` or `--all`.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::{HANDLER, OutboxEvent, now_ms};
use crate::component::{Component, set_cursor};

/// One dead letter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its id, for `--retry`.
    pub id: i64,
    /// The component that published the event.
    pub publisher: String,
    /// The publishing package.
    pub topic: String,
    /// The event's position in the publisher's outbox.
    pub seq: i64,
    /// The variant case.
    pub event: String,
    /// The event in WAVE.
    pub payload: String,
    /// Why the handler failed, the last time.
    pub error: String,
    /// How many times it was tried.
    pub attempts: i64,
    /// When it was given up on, in milliseconds since the Unix epoch.
    pub failed_ms: i64,
}

/// Moves a failed event to the subscriber's dead letters and moves its
/// cursor past it, in one unit of work.
pub(crate) fn bury(
    subscriber: &Component,
    publisher: &str,
    event: &OutboxEvent,
    error: &str,
    attempts: u32,
) -> Result<()> {
    subscriber.with_db(|c| {
        c.execute(
            "INSERT INTO _moat_dead_letter (publisher, topic, seq, event, payload, error, attempts, failed_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![publisher, event.topic, event.seq, event.event, event.payload, error, attempts, now_ms()],
        )?;
        set_cursor(c, publisher, &event.topic, event.seq)?;
        Ok(())
    })
}

/// A component's dead letters, oldest first.
pub fn list(component: &Component) -> Result<Vec<DeadLetter>> {
    component.with_db(|c| {
        c.prepare(
            "SELECT id, publisher, topic, seq, event, payload, error, attempts, failed_ms
             FROM _moat_dead_letter ORDER BY id",
        )?
        .query_map([], |r| {
            Ok(DeadLetter {
                id: r.get(0)?,
                publisher: r.get(1)?,
                topic: r.get(2)?,
                seq: r.get(3)?,
                event: r.get(4)?,
                payload: r.get(5)?,
                error: r.get(6)?,
                attempts: r.get(7)?,
                failed_ms: r.get(8)?,
            })
        })?
        .collect()
    })
}

/// Handles a dead letter again. On success it is gone and its effects are
/// committed together; on failure it stays, with the new error.
pub fn retry(component: &Component, letter: &DeadLetter) -> Result<Result<(), String>> {
    if component.version().contract.export_like(&letter.topic, HANDLER).is_none() {
        bail!("`{}` no longer handles {} events", component.name(), letter.topic);
    }
    let outcome = component.redrive(&letter.topic, letter.id, &letter.payload)?;
    if let Err(why) = &outcome {
        component.with_db(|c| {
            c.execute(
                "UPDATE _moat_dead_letter SET error = ?1, attempts = attempts + 1, failed_ms = ?2 WHERE id = ?3",
                rusqlite::params![why, now_ms(), letter.id],
            )
        })?;
    }
    Ok(outcome)
}
