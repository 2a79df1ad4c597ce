//! Reading what was published and who has it, straight from the database
//! files, read-only: `moat events` works beside a running host and never
//! takes the data directory's lock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use super::Subscription;

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
    limit: usize,
) -> Result<Vec<Published>> {
    let Some(conn) = open(&db(publisher))? else { return Ok(Vec::new()) };
    let mut events: Vec<Published> = conn
        .prepare(
            "SELECT seq, topic, event, payload, published_us FROM _moat_outbox
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?
        .query_map(rusqlite::params![after, limit as i64], |r| {
            Ok(Published {
                publisher: publisher.to_string(),
                seq: r.get(0)?,
                topic: r.get(1)?,
                event: r.get(2)?,
                payload: r.get(3)?,
                published_us: r.get(4)?,
                delivery: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()
        .with_context(|| format!("reading the outbox of `{publisher}`"))?;

    // Each subscriber's cursor and dead letters, per topic.
    let mut state: BTreeMap<(&str, &str), (i64, BTreeSet<i64>)> = BTreeMap::new();
    for sub in subscriptions.iter().filter(|s| s.publisher == publisher) {
        let (cursor, dead) = match open(&db(&sub.subscriber))? {
            None => (0, BTreeSet::new()),
            Some(c) => {
                let cursor: Option<i64> = c
                    .query_row(
                        "SELECT seq FROM _moat_cursor WHERE publisher = ?1 AND topic = ?2",
                        [publisher, sub.topic.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?;
                let dead = c
                    .prepare("SELECT seq FROM _moat_dead_letter WHERE publisher = ?1 AND topic = ?2")?
                    .query_map([publisher, sub.topic.as_str()], |r| r.get(0))?
                    .collect::<rusqlite::Result<BTreeSet<i64>>>()?;
                (cursor.unwrap_or(0), dead)
            }
        };
        state.insert((sub.subscriber.as_str(), sub.topic.as_str()), (cursor, dead));
    }
    for event in &mut events {
        for ((subscriber, topic), (cursor, dead)) in &state {
            if *topic != event.topic {
                continue;
            }
            let delivery = if dead.contains(&event.seq) {
                Delivery::DeadLettered
            } else if *cursor >= event.seq {
                Delivery::Applied
            } else {
                Delivery::Pending
            };
            event.delivery.push((subscriber.to_string(), delivery));
        }
    }
    Ok(events)
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
    let has_outbox: bool =
        conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE name = '_moat_outbox'", [], |r| r.get(0))?;
    Ok(has_outbox.then_some(conn))
}
