//! Dead letters: events a subscriber failed to handle `max_attempts` times.
//! They wait in the subscriber's own `_moat_dead_letter` table, with the last
//! error, until someone redrives them (after fixing the cause) with
//! `moat dlq COMPONENT --retry ID` or `--all`.

use anyhow::Result;

use crate::component::{Component, Redrive};
use crate::ledger::{self, DeadLetter, OutboxEvent};

/// Moves a failed event to the subscriber's dead letters and moves its
/// cursor past it, in one unit of work. The error is kept to
/// `ledger::MAX_ERROR` bytes.
pub(crate) fn bury(
    subscriber: &Component,
    publisher: &str,
    event: &OutboxEvent,
    error: &str,
    attempts: u32,
) -> Result<()> {
    subscriber.with_db(|c| ledger::bury(c, publisher, event, error, attempts, ledger::now_ms()))
}

/// A component's dead letters, oldest first.
pub fn list(component: &Component) -> Result<Vec<DeadLetter>> {
    component.read_db(ledger::dead_letters)
}

/// Handles a dead letter again: on success it is gone and its effects are
/// committed together; on failure it stays, with the new error. Two
/// redrives of one letter at once apply it once: the second finds it
/// [`Redrive::Gone`].
pub fn retry(component: &Component, id: i64) -> Result<Redrive> {
    component.redrive(id)
}
