//! The host's own tables in every component's database, and every statement
//! the host runs on them. Nothing else in the host writes SQL on `_moat_*`
//! tables.
//!
//! Every statement names its table schema-qualified (`main."_moat_outbox"`),
//! so no object a component creates can stand in for one of them, and runs
//! on the host's own handle of the connection (`db::Db::host`), or on a
//! read-only connection of the host's, never through the component's
//! statement cache.
//!
//! | table | holds |
//! |---|---|
//! | `_moat_meta` | key → value: the schema version `migrate` returned, relay and stream positions, the last pruned event per topic |
//! | `_moat_outbox` | events this component published, in sequence order |
//! | `_moat_cursor` | per publisher and topic, the last event this component has (applied or dead-lettered) |
//! | `_moat_dead_letter` | events this component's handler failed `max_attempts` times |
//! | `_moat_request` | calls made with a request id (from another host, an idempotency key, `--request-id`) that committed, with their results: a retry returns the result instead of running again |
//!
//! Outbox sequence numbers are never reused: the outbox has no
//! `AUTOINCREMENT` (whose counter would sit in `sqlite_sequence`, which a
//! component's own DDL writes), so pruning always keeps the newest event.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// Every object the host keeps in a component's database.
pub const HOST_OBJECTS: &[&str] = &[
    "_moat_meta",
    "_moat_outbox",
    "_moat_outbox_by_topic",
    "_moat_cursor",
    "_moat_dead_letter",
    "_moat_request",
    "_moat_request_by_time",
];

/// Longest error text kept with a dead letter: the rest is cut, so that no
/// handler's error can fill its own database, or the host's memory.
pub const MAX_ERROR: usize = 4096;

const TABLES: &str = r#"
    CREATE TABLE IF NOT EXISTS main."_moat_meta" (key TEXT PRIMARY KEY, value ANY) STRICT;
    CREATE TABLE IF NOT EXISTS main."_moat_outbox" (
        seq          INTEGER PRIMARY KEY,
        topic        TEXT NOT NULL,
        event        TEXT NOT NULL,
        payload      TEXT NOT NULL,
        published_us INTEGER NOT NULL,
        trace        TEXT
    );
    CREATE INDEX IF NOT EXISTS main."_moat_outbox_by_topic" ON "_moat_outbox" (topic, seq);
    CREATE TABLE IF NOT EXISTS main."_moat_cursor" (
        publisher TEXT NOT NULL,
        topic     TEXT NOT NULL,
        seq       INTEGER NOT NULL,
        PRIMARY KEY (publisher, topic)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS main."_moat_dead_letter" (
        id        INTEGER PRIMARY KEY,
        publisher TEXT NOT NULL,
        topic     TEXT NOT NULL,
        seq       INTEGER NOT NULL,
        event     TEXT NOT NULL,
        payload   TEXT NOT NULL,
        error     TEXT NOT NULL,
        attempts  INTEGER NOT NULL,
        failed_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS main."_moat_request" (
        id           TEXT PRIMARY KEY,
        fingerprint  TEXT NOT NULL,
        result       TEXT NOT NULL,
        committed_ms INTEGER NOT NULL,
        attempt      TEXT,
        deadline_ms  INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Pruning deletes the records past retention without reading the rest.
    CREATE INDEX IF NOT EXISTS main."_moat_request_by_time" ON "_moat_request" (committed_ms);"#;

/// Creates the host's tables, and upgrades those an earlier moat made.
pub fn ensure_tables(c: &Connection) -> rusqlite::Result<()> {
    let autoincrement: bool = c.query_row(
        r#"SELECT count(*) > 0 FROM main.sqlite_schema
           WHERE name IN ('_moat_outbox', '_moat_dead_letter') AND instr(upper(sql), 'AUTOINCREMENT') > 0"#,
        [],
        |r| r.get(0),
    )?;
    if autoincrement {
        upgrade_from_autoincrement(c)?;
    }
    c.execute_batch(TABLES)?;
    // moat before traces kept no trace context with its events.
    let traced: bool = c.query_row(
        r#"SELECT count(*) > 0 FROM pragma_table_info('_moat_outbox', 'main') WHERE name = 'trace'"#,
        [],
        |r| r.get(0),
    )?;
    if !traced {
        c.execute_batch(r#"ALTER TABLE main."_moat_outbox" ADD COLUMN trace TEXT"#)?;
    }
    Ok(())
}

/// Moves tables made with `AUTOINCREMENT` (moat before 0.2) to the current
/// layout, in one transaction, keeping every row and the outbox's sequence.
fn upgrade_from_autoincrement(c: &Connection) -> rusqlite::Result<()> {
    let last_seq: i64 = c
        .query_row(r#"SELECT seq FROM main.sqlite_sequence WHERE name = '_moat_outbox'"#, [], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    c.execute_batch(
        r#"BEGIN IMMEDIATE;
           ALTER TABLE main."_moat_outbox" RENAME TO "_moat_outbox_old";
           ALTER TABLE main."_moat_dead_letter" RENAME TO "_moat_dead_letter_old";"#,
    )?;
    c.execute_batch(TABLES)?;
    c.execute_batch(
        r#"INSERT INTO main."_moat_outbox" (seq, topic, event, payload, published_us)
             SELECT seq, topic, event, payload, published_us FROM main."_moat_outbox_old";
           INSERT INTO main."_moat_dead_letter" SELECT * FROM main."_moat_dead_letter_old";
           DROP TABLE main."_moat_outbox_old";
           DROP TABLE main."_moat_dead_letter_old";
           DELETE FROM main.sqlite_sequence WHERE substr(name, 1, 5) = '_moat';"#,
    )?;
    // Keep the sequence going where it was: an empty topic marks its end,
    // and no route reads that topic.
    c.execute(
        r#"INSERT INTO main."_moat_outbox" (seq, topic, event, payload, published_us)
           SELECT ?1, '', '', '', 0 WHERE ?1 > coalesce((SELECT max(seq) FROM main."_moat_outbox"), 0)"#,
        [last_seq],
    )?;
    c.execute_batch("COMMIT")
}

/// What a component's DDL left that reaches the host's tables, if anything:
/// an object under a reserved name (from a rename), an index or trigger on a
/// host table, a foreign key to one, or any TEMP object.
pub fn guest_trespass(c: &Connection) -> rusqlite::Result<Option<String>> {
    let hosts = HOST_OBJECTS.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    c.prepare_cached(&format!(
        r#"SELECT type || ' ' || name FROM main.sqlite_schema
             WHERE (lower(substr(name, 1, 5)) = '_moat' OR lower(substr(tbl_name, 1, 5)) = '_moat')
               AND name NOT IN ({hosts})
               AND NOT (substr(name, 1, 17) = 'sqlite_autoindex_' AND tbl_name IN ({hosts}))
           UNION ALL
           SELECT 'TEMP ' || type || ' ' || name FROM temp.sqlite_schema
           UNION ALL
           SELECT 'a foreign key of table ' || s.name FROM main.sqlite_schema AS s, pragma_foreign_key_list(s.name) AS f
             WHERE s.type = 'table' AND lower(substr(f."table", 1, 5)) = '_moat'
           LIMIT 1"#
    ))?
    .query_row([], |r| r.get(0))
    .optional()
}

// ---- Meta -------------------------------------------------------------------

fn meta<T: rusqlite::types::FromSql>(c: &Connection, key: &str) -> rusqlite::Result<Option<T>> {
    c.prepare_cached(r#"SELECT value FROM main."_moat_meta" WHERE key = ?1"#)?.query_row([key], |r| r.get(0)).optional()
}

fn set_meta(c: &Connection, key: &str, value: impl rusqlite::ToSql) -> rusqlite::Result<()> {
    c.prepare_cached(
        r#"INSERT INTO main."_moat_meta" (key, value) VALUES (?1, ?2)
           ON CONFLICT (key) DO UPDATE SET value = excluded.value"#,
    )?
    .execute(params![key, value])
    .map(drop)
}

/// The schema version the component's `migrate` last returned (`MAJOR.MINOR`).
pub fn schema_version(c: &Connection) -> rusqlite::Result<Option<String>> {
    meta(c, "schema_version")
}

pub fn set_schema_version(c: &Connection, version: &str) -> rusqlite::Result<()> {
    set_meta(c, "schema_version", version)
}

/// The last event of `topic` JetStream has acknowledged (relay position).
pub fn relayed(c: &Connection, topic: &str) -> rusqlite::Result<i64> {
    Ok(meta(c, &format!("relayed:{topic}"))?.unwrap_or(0))
}

pub fn set_relayed(c: &Connection, topic: &str, seq: i64) -> rusqlite::Result<()> {
    set_meta(c, &format!("relayed:{topic}"), seq)
}

/// The JetStream stream sequence of the last message applied from `publisher`'s `topic`.
pub fn stream_position(c: &Connection, publisher: &str, topic: &str) -> rusqlite::Result<u64> {
    Ok(meta::<i64>(c, &format!("stream:{publisher}/{topic}"))?.unwrap_or(0).max(0) as u64)
}

pub fn set_stream_position(c: &Connection, publisher: &str, topic: &str, position: u64) -> rusqlite::Result<()> {
    set_meta(c, &format!("stream:{publisher}/{topic}"), position as i64)
}

/// The last event of `topic` pruned from the outbox, if any was.
pub fn pruned(c: &Connection, topic: &str) -> rusqlite::Result<Option<i64>> {
    meta(c, &format!("pruned:{topic}"))
}

// ---- Outbox -------------------------------------------------------------------

/// One event as the outbox keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// Its position in the publisher's outbox: increasing, never reused.
    pub seq: i64,
    /// The publishing package: `shop:product`.
    pub topic: String,
    /// The variant case: `price-updated`.
    pub event: String,
    /// The event in WAVE.
    pub payload: String,
    /// When it was published, in microseconds since the Unix epoch.
    pub published_us: i64,
    /// The W3C `traceparent` of the span that published it, if traces were
    /// exported then: the parent of the span that applies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

fn outbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEvent> {
    Ok(OutboxEvent {
        seq: r.get(0)?,
        topic: r.get(1)?,
        event: r.get(2)?,
        payload: r.get(3)?,
        published_us: r.get(4)?,
        trace: r.get(5)?,
    })
}

/// Appends one event, in the current unit of work.
pub fn append(
    c: &Connection,
    topic: &str,
    event: &str,
    payload: &str,
    published_us: i64,
    trace: Option<&str>,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        r#"INSERT INTO main."_moat_outbox" (topic, event, payload, published_us, trace) VALUES (?1, ?2, ?3, ?4, ?5)"#,
    )?
    .execute(params![topic, event, payload, published_us, trace])
    .map(drop)
}

/// Events of `topic` after `after`, oldest first, at most `limit`. (Every
/// event a route delivers passes here: the topic is the one asked for, not
/// read back from each row.)
pub fn outbox_after(c: &Connection, topic: &str, after: i64, limit: u32) -> rusqlite::Result<Vec<OutboxEvent>> {
    c.prepare_cached(
        r#"SELECT seq, event, payload, published_us, trace FROM main."_moat_outbox"
           WHERE topic = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"#,
    )?
    .query_map(params![topic, after, limit], |r| {
        Ok(OutboxEvent {
            seq: r.get(0)?,
            topic: topic.to_string(),
            event: r.get(1)?,
            payload: r.get(2)?,
            published_us: r.get(3)?,
            trace: r.get(4)?,
        })
    })?
    .collect()
}

/// Events of every topic after `after`, oldest first, at most `limit`: for `moat events`.
pub fn history(c: &Connection, after: i64, limit: u32) -> rusqlite::Result<Vec<OutboxEvent>> {
    c.prepare_cached(
        r#"SELECT seq, topic, event, payload, published_us, trace FROM main."_moat_outbox"
           WHERE seq > ?1 AND topic <> '' ORDER BY seq LIMIT ?2"#,
    )?
    .query_map(params![after, limit], outbox_row)?
    .collect()
}

/// The last event published on `topic` (0: none yet).
pub fn outbox_head(c: &Connection, topic: &str) -> rusqlite::Result<i64> {
    let head: Option<i64> = c
        .prepare_cached(r#"SELECT max(seq) FROM main."_moat_outbox" WHERE topic = ?1"#)?
        .query_row([topic], |r| r.get(0))?;
    Ok(head.unwrap_or(0))
}

/// When the first event of `topic` after `after` was published (µs since
/// the Unix epoch), if there is one.
pub fn published_after(c: &Connection, topic: &str, after: i64) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached(
        r#"SELECT published_us FROM main."_moat_outbox" WHERE topic = ?1 AND seq > ?2 ORDER BY seq LIMIT 1"#,
    )?
    .query_row(params![topic, after], |r| r.get(0))
    .optional()
}

/// The oldest event of `topic` still kept.
pub fn outbox_first(c: &Connection, topic: &str) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached(r#"SELECT min(seq) FROM main."_moat_outbox" WHERE topic = ?1"#)?.query_row([topic], |r| r.get(0))
}

/// Whether the component's database has an outbox yet (one made by an
/// older host, or never started, may not).
pub fn has_outbox(c: &Connection) -> rusqlite::Result<bool> {
    c.query_row(r#"SELECT count(*) > 0 FROM main.sqlite_schema WHERE name = '_moat_outbox'"#, [], |r| r.get(0))
}

/// Deletes events of `topic` up to `upto` published before `before_us`,
/// except the newest event of the whole outbox (so sequence numbers never go
/// back), and records the last one deleted. Returns it.
///
/// Events are appended in the order they are published, so what can go is
/// the oldest: the walk starts at the oldest kept and stops at the first
/// still within retention. It reads what it deletes and one row more, so a
/// prune with nothing to delete costs one row however much the outbox keeps
/// (a `max(seq)` over the rows matching `published_us` read them all, on
/// every settle: a third of the instructions of delivering an event).
pub fn prune(c: &Connection, topic: &str, upto: i64, before_us: i64) -> rusqlite::Result<Option<i64>> {
    let newest: Option<i64> =
        c.prepare_cached(r#"SELECT max(seq) FROM main."_moat_outbox""#)?.query_row([], |r| r.get(0))?;
    let Some(newest) = newest else { return Ok(None) };
    let mut oldest_first = c.prepare_cached(
        r#"SELECT seq, published_us FROM main."_moat_outbox" WHERE topic = ?1 AND seq <= ?2 AND seq < ?3 ORDER BY seq"#,
    )?;
    let mut rows = oldest_first.query(params![topic, upto, newest])?;
    let mut last = None;
    while let Some(row) = rows.next()? {
        if row.get::<_, i64>(1)? >= before_us {
            break;
        }
        last = Some(row.get::<_, i64>(0)?);
    }
    drop(rows);
    if let Some(last) = last {
        c.prepare_cached(r#"DELETE FROM main."_moat_outbox" WHERE topic = ?1 AND seq <= ?2"#)?
            .execute(params![topic, last])?;
        set_meta(c, &format!("pruned:{topic}"), last)?;
    }
    Ok(last)
}

// ---- Cursors ------------------------------------------------------------------

/// How far this component has read `publisher`'s `topic` (0: nothing yet).
pub fn cursor(c: &Connection, publisher: &str, topic: &str) -> rusqlite::Result<i64> {
    Ok(c.prepare_cached(r#"SELECT seq FROM main."_moat_cursor" WHERE publisher = ?1 AND topic = ?2"#)?
        .query_row([publisher, topic], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Moves the cursor, in the current unit of work.
pub fn set_cursor(c: &Connection, publisher: &str, topic: &str, seq: i64) -> rusqlite::Result<()> {
    c.prepare_cached(
        r#"INSERT INTO main."_moat_cursor" (publisher, topic, seq) VALUES (?1, ?2, ?3)
           ON CONFLICT (publisher, topic) DO UPDATE SET seq = excluded.seq"#,
    )?
    .execute(params![publisher, topic, seq])
    .map(drop)
}

// ---- Requests ------------------------------------------------------------------

/// A call made with a request id that committed.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// What was called, with what: a call reusing the id must match it.
    pub fingerprint: String,
    /// Its result, in WAVE ("" for a function without one).
    pub result: String,
    /// When it committed, in milliseconds since the Unix epoch.
    pub committed_ms: i64,
    /// The caller's attempt that committed it, if the caller named it.
    pub attempt: Option<String>,
    /// Its caller's deadline (ms since the Unix epoch, by the caller's clock
    /// when it is on another host): it committed before it.
    pub deadline_ms: i64,
}

/// The record of the call made with request id `id`, if it committed.
pub fn request(c: &Connection, id: &str) -> rusqlite::Result<Option<RequestRecord>> {
    c.prepare_cached(
        r#"SELECT fingerprint, result, committed_ms, attempt, deadline_ms FROM main."_moat_request" WHERE id = ?1"#,
    )?
    .query_row([id], |r| {
        Ok(RequestRecord {
            fingerprint: r.get(0)?,
            result: r.get(1)?,
            committed_ms: r.get(2)?,
            attempt: r.get(3)?,
            deadline_ms: r.get(4)?,
        })
    })
    .optional()
}

/// Records a call made with a request id, in its own unit of work.
pub fn record_request(c: &Connection, id: &str, record: &RequestRecord) -> rusqlite::Result<()> {
    c.prepare_cached(
        r#"INSERT INTO main."_moat_request" (id, fingerprint, result, committed_ms, attempt, deadline_ms)
           VALUES (?1, ?2, ?3, ?4, ?5, ?6)"#,
    )?
    .execute(params![id, record.fingerprint, record.result, record.committed_ms, record.attempt, record.deadline_ms])
    .map(drop)
}

/// Forgets records that committed before `before_ms`.
pub fn prune_requests(c: &Connection, before_ms: i64) -> rusqlite::Result<usize> {
    c.prepare_cached(r#"DELETE FROM main."_moat_request" WHERE committed_ms < ?1"#)?.execute([before_ms])
}

// ---- Dead letters ---------------------------------------------------------------

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
    /// Why the handler failed, the last time (at most [`MAX_ERROR`] bytes).
    pub error: String,
    /// How many times it was tried.
    pub attempts: i64,
    /// When it was given up on, in milliseconds since the Unix epoch.
    pub failed_ms: i64,
}

fn dead_letter_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
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
}

/// Moves a failed event to the dead letters and its cursor past it, in the
/// current unit of work.
pub fn bury(
    c: &Connection,
    publisher: &str,
    event: &OutboxEvent,
    error: &str,
    attempts: u32,
    now_ms: i64,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        r#"INSERT INTO main."_moat_dead_letter" (publisher, topic, seq, event, payload, error, attempts, failed_ms)
           VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"#,
    )?
    .execute(params![
        publisher,
        event.topic,
        event.seq,
        event.event,
        event.payload,
        bounded(error),
        attempts,
        now_ms
    ])?;
    set_cursor(c, publisher, &event.topic, event.seq)
}

/// How many dead letters of `publisher`'s `topic` wait, and the error and
/// time (ms since the Unix epoch) of the newest.
pub fn dead_letters_waiting(
    c: &Connection,
    publisher: &str,
    topic: &str,
) -> rusqlite::Result<(u64, Option<(String, i64)>)> {
    // The newest letter's row, with the count beside it; no row: none wait.
    let newest = c
        .prepare_cached(
            r#"SELECT count(*) OVER (), error, failed_ms FROM main."_moat_dead_letter"
               WHERE publisher = ?1 AND topic = ?2 ORDER BY id DESC LIMIT 1"#,
        )?
        .query_row([publisher, topic], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(match newest {
        Some((n, error, at)) => (n.max(0) as u64, Some((error, at))),
        None => (0, None),
    })
}

/// Every dead letter, oldest first.
pub fn dead_letters(c: &Connection) -> rusqlite::Result<Vec<DeadLetter>> {
    c.prepare_cached(
        r#"SELECT id, publisher, topic, seq, event, payload, error, attempts, failed_ms
           FROM main."_moat_dead_letter" ORDER BY id"#,
    )?
    .query_map([], dead_letter_row)?
    .collect()
}

/// The sequences of `publisher`'s `topic` that are dead letters here.
pub fn dead_letter_seqs(c: &Connection, publisher: &str, topic: &str) -> rusqlite::Result<BTreeSet<i64>> {
    c.prepare_cached(r#"SELECT seq FROM main."_moat_dead_letter" WHERE publisher = ?1 AND topic = ?2"#)?
        .query_map([publisher, topic], |r| r.get(0))?
        .collect()
}

/// Takes a dead letter out, in the current unit of work: `None` if it is
/// not there (already redriven). Redriving takes it in the unit that
/// handles it, so two redrives of one letter apply it once.
pub fn take_dead_letter(c: &Connection, id: i64) -> rusqlite::Result<Option<DeadLetter>> {
    c.prepare_cached(
        r#"DELETE FROM main."_moat_dead_letter" WHERE id = ?1
           RETURNING id, publisher, topic, seq, event, payload, error, attempts, failed_ms"#,
    )?
    .query_row([id], dead_letter_row)
    .optional()
}

/// Records that redriving a dead letter failed again.
pub fn dead_letter_failed_again(c: &Connection, id: i64, error: &str, now_ms: i64) -> rusqlite::Result<()> {
    c.prepare_cached(
        r#"UPDATE main."_moat_dead_letter" SET error = ?1, attempts = attempts + 1, failed_ms = ?2 WHERE id = ?3"#,
    )?
    .execute(params![bounded(error), now_ms, id])
    .map(drop)
}

/// `text`, cut to [`MAX_ERROR`] bytes on a character boundary.
pub fn bounded(text: &str) -> &str {
    if text.len() <= MAX_ERROR {
        return text;
    }
    let mut end = MAX_ERROR;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Microseconds since the Unix epoch: how outbox rows are stamped.
pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    now_us() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An outbox holding `times.len()` events of `topic`, published at those
    /// times (µs), then one event of another topic, the newest of all.
    fn outbox(times: &[i64]) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        ensure_tables(&c).unwrap();
        for (i, at) in times.iter().enumerate() {
            append(&c, "t", "e", &format!("e{i}"), *at, None).unwrap();
        }
        append(&c, "other", "e", "last", 1_000_000, None).unwrap();
        c
    }

    fn kept(c: &Connection) -> Vec<i64> {
        c.prepare("SELECT seq FROM main.\"_moat_outbox\" WHERE topic = 't' ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn prune_deletes_the_oldest_events_past_retention_that_every_subscriber_has() {
        let c = outbox(&[10, 20, 30, 40, 50]);
        // Nothing is older than 10: nothing goes.
        assert_eq!(prune(&c, "t", 5, 10).unwrap(), None);
        assert_eq!(kept(&c), [1, 2, 3, 4, 5]);
        // Older than 35, but the subscribers have only read up to 2.
        assert_eq!(prune(&c, "t", 2, 35).unwrap(), Some(2));
        assert_eq!(kept(&c), [3, 4, 5]);
        assert_eq!(pruned(&c, "t").unwrap(), Some(2));
        // Read up to 5; older than 45 are 3 and 4.
        assert_eq!(prune(&c, "t", 5, 45).unwrap(), Some(4));
        assert_eq!(kept(&c), [5]);
        assert_eq!(prune(&c, "t", 5, 45).unwrap(), None);
    }

    #[test]
    fn prune_keeps_the_newest_event_of_the_outbox_so_sequence_numbers_never_go_back() {
        let c = Connection::open_in_memory().unwrap();
        ensure_tables(&c).unwrap();
        for at in [10, 20] {
            append(&c, "t", "e", "x", at, None).unwrap();
        }
        assert_eq!(prune(&c, "t", 2, 1_000).unwrap(), Some(1));
        assert_eq!(kept(&c), [2]);
        // An empty outbox has nothing to prune.
        c.execute_batch("DELETE FROM main.\"_moat_outbox\"").unwrap();
        assert_eq!(prune(&c, "t", 9, 1_000).unwrap(), None);
    }

    #[test]
    fn an_outbox_made_before_traces_gains_their_column_and_keeps_its_events() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            r#"CREATE TABLE main."_moat_outbox" (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, event TEXT NOT NULL,
                   payload TEXT NOT NULL, published_us INTEGER NOT NULL);
               INSERT INTO main."_moat_outbox" VALUES (1, 't', 'e', 'old', 5);"#,
        )
        .unwrap();
        ensure_tables(&c).unwrap();
        ensure_tables(&c).unwrap();
        append(&c, "t", "e", "new", 6, Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")).unwrap();
        let events = outbox_after(&c, "t", 0, 10).unwrap();
        let shown: Vec<(&str, Option<&str>)> =
            events.iter().map(|e| (e.payload.as_str(), e.trace.as_deref())).collect();
        assert_eq!(shown, [("old", None), ("new", Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))]);
    }

    #[test]
    fn pruning_request_records_reads_only_those_past_retention() {
        let c = Connection::open_in_memory().unwrap();
        ensure_tables(&c).unwrap();
        let plan: Vec<String> = c
            .prepare(r#"EXPLAIN QUERY PLAN DELETE FROM main."_moat_request" WHERE committed_ms < 1"#)
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|p| p.contains("_moat_request_by_time")), "{plan:?}");
        let record = |ms| RequestRecord {
            fingerprint: "f".into(),
            result: "r".into(),
            committed_ms: ms,
            attempt: None,
            deadline_ms: ms,
        };
        record_request(&c, "old", &record(10)).unwrap();
        record_request(&c, "new", &record(20)).unwrap();
        assert_eq!(prune_requests(&c, 15).unwrap(), 1);
        assert!(request(&c, "old").unwrap().is_none() && request(&c, "new").unwrap().is_some());
    }
}
