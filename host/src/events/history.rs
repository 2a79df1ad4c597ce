//! Reading what was published and who has it, straight from the database
//! files, read-only: `moat events` works beside a running host and never
//! takes the data directory's lock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::ledger;
use crate::wiring::Subscription;

/// One published event, with its delivery to each subscriber.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// The publishing component.
    pub publisher: String,
    /// Its position in the publisher's outbox.
    pub seq: i64,
    /// The publishing package.
    pub topic: String,
    /// The variant case.
    pub event: String,
    /// The event in WAVE.
    pub payload: String,
    /// When it was published, in microseconds since the Unix epoch.
    pub published_us: i64,
    /// Each subscriber and whether it has the event.
    pub delivery: Vec<(String, Delivery)>,
}

/// Whether a subscriber has an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// It took effect.
    Applied,
    /// Not yet.
    Pending,
    /// It failed every attempt and waits in the subscriber's dead letters.
    DeadLettered,
}

impl Delivery {
    /// One word for tables.
    pub fn word(self) -> &'static str {
        match self {
            Delivery::Applied => "applied",
            Delivery::Pending => "pending",
            Delivery::DeadLettered => "dead-lettered",
        }
    }
}

/// Reads the events `publisher` published after `after`, oldest first, at
/// most `limit`, with each subscriber's delivery state. `db` gives a
/// component's database file.
pub fn read(
    db: &dyn Fn(&str) -> std::path::PathBuf,
    subscriptions: &[Subscription],
    publisher: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<Published>> {
    let Some(conn) = open(&db(publisher))? else { return Ok(Vec::new()) };
    let events =
        ledger::history(&conn, after, limit).with_context(|| format!("reading the outbox of `{publisher}`"))?;

    // Each subscriber's cursor and dead letters, per topic.
    let mut state: BTreeMap<(&str, &str), (i64, BTreeSet<i64>)> = BTreeMap::new();
    for sub in subscriptions.iter().filter(|s| s.publisher == publisher) {
        let seen = match open(&db(&sub.subscriber))? {
            None => (0, BTreeSet::new()),
            Some(c) => {
                (ledger::cursor(&c, publisher, &sub.topic)?, ledger::dead_letter_seqs(&c, publisher, &sub.topic)?)
            }
        };
        state.insert((sub.subscriber.as_str(), sub.topic.as_str()), seen);
    }
    Ok(events
        .into_iter()
        .map(|event| {
            let delivery = state
                .iter()
                .filter(|((_, topic), _)| *topic == event.topic)
                .map(|((subscriber, _), (cursor, dead))| {
                    let d = if dead.contains(&event.seq) {
                        Delivery::DeadLettered
                    } else if *cursor >= event.seq {
                        Delivery::Applied
                    } else {
                        Delivery::Pending
                    };
                    (subscriber.to_string(), d)
                })
                .collect();
            Published {
                publisher: publisher.to_string(),
                seq: event.seq,
                topic: event.topic,
                event: event.event,
                payload: event.payload,
                published_us: event.published_us,
                delivery,
            }
        })
        .collect())
}

/// Opens a database read-only; `None` if it does not exist yet (or has no
/// outbox yet: a component that was never started).
fn open(path: &Path) -> Result<Option<Connection>> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(ledger::has_outbox(&conn)?.then_some(conn))
}
