//! Test component: a subscriber to the probe's events whose `handle` does
//! what the event's note says, so a test can aim a hostile handler at the
//! host's delivery:
//! - `ok:<anything>`: records the note in `applied` and returns `ok`;
//! - `huge:<n>`: returns `err` with a string of `n` bytes (40000000, say);
//! - `trap`: traps (a panic);
//! - `fill`: inserts rows of `randomblob(100000)` until the store refuses (the
//!   database reached `limits.database_mib`), then returns that error as
//!   `err`;
//! - `fill-ok`: the same, but ignores the error and returns `ok`: the host
//!   must still fail the unit of work, since SQLite may have ended the
//!   transaction on its own;
//! - `sleep:<ms>`: sleeps that long through WASI (`std::thread::sleep`);
//! - `block`: blocks forever through WASI (sleeps of `u64::MAX` ns, in a loop);
//! - `spin`: loops forever in wasm;
//! - `log-flood`: logs 100000 lines of 1000 bytes through `moat:platform/log`;
//! - anything else: returns `err` naming the note (a test's typo shows up
//!   in the dead letters, not as a silent success).
//!
//! Its `attack` interface runs whatever SQL a test asks, as a subscriber
//! whose database holds a real cursor on the probe's events.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../../wit/moat-platform", "../probe/world.wit", "world.wit"],
        world: "test:hostile/hostile",
        with: {
            "moat:platform/store@0.1.0": moat_sdk::store,
            "moat:platform/log@0.1.0": moat_sdk::log::raw,
        },
        generate_all,
    });
}

use std::time::Duration;

use bindings::exports::moat::platform::schema::{self, SchemaVersion};
use bindings::exports::test::hostile::{attack, inspect};
use bindings::exports::test::probe::handler;
use bindings::test::probe::events::ProbeEvent;
use moat_sdk::sql::{self, text};

struct Hostile;

bindings::export!(Hostile with_types_in bindings);

/// The size of each row `fill` inserts, in bytes.
const FILL_ROW_BYTES: u32 = 100_000;

impl schema::Guest for Hostile {
    fn migrate(found: Option<SchemaVersion>) -> Result<SchemaVersion, String> {
        if found.is_none() {
            sql::execute_batch(
                "CREATE TABLE applied (n INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT NOT NULL);
                 CREATE TABLE ballast (b BLOB NOT NULL)",
            )
            .map_err(|e| format!("{e:?}"))?;
        }
        Ok(SchemaVersion { major: 1, minor: 0 })
    }
}

impl handler::Guest for Hostile {
    fn handle(event: ProbeEvent) -> Result<(), String> {
        let ProbeEvent::Note(note) = event;
        if note.starts_with("ok:") {
            sql::execute("INSERT INTO applied (note) VALUES (?)", &[text(&note)]).map_err(|e| format!("{e:?}"))?;
            return Ok(());
        }
        if let Some(n) = note.strip_prefix("huge:") {
            let n: usize = n.parse().map_err(|_| format!("huge:<n> wants a byte count, not {n:?}"))?;
            return Err("x".repeat(n));
        }
        if let Some(ms) = note.strip_prefix("sleep:") {
            let ms: u64 = ms.parse().map_err(|_| format!("sleep:<ms> wants milliseconds, not {ms:?}"))?;
            std::thread::sleep(Duration::from_millis(ms));
            return Ok(());
        }
        match note.as_str() {
            "trap" => panic!("trapping in the handler, as asked"),
            "fill" => Err(fill()),
            "fill-ok" => {
                let _ = fill();
                Ok(())
            }
            "block" => loop {
                std::thread::sleep(Duration::from_nanos(u64::MAX));
            },
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "log-flood" => {
                let line = "x".repeat(1000);
                for _ in 0..100_000 {
                    moat_sdk::log::info(&line);
                }
                Ok(())
            }
            _ => Err(format!("the hostile handler does not know the note {note:?}")),
        }
    }
}

/// Inserts blobs until the store refuses one; returns the refusal, in words.
fn fill() -> String {
    loop {
        if let Err(e) = sql::execute("INSERT INTO ballast (b) VALUES (randomblob(?))", &[sql::int(FILL_ROW_BYTES)]) {
            return format!("{e:?}");
        }
    }
}

impl inspect::Guest for Hostile {
    fn applied() -> Vec<String> {
        sql::query("SELECT note FROM applied ORDER BY n", &[])
            .expect("reading applied")
            .iter()
            .map(|row| row.text(0))
            .collect()
    }
}

impl attack::Guest for Hostile {
    fn execute(sql: String, params: Vec<String>) -> Result<u64, String> {
        let params: Vec<_> = params.iter().map(|p| text(p)).collect();
        sql::execute(&sql, &params).map_err(|e| format!("{e:?}"))
    }

    fn query(sql: String) -> Result<Vec<Vec<String>>, String> {
        let rows = sql::query(&sql, &[]).map_err(|e| format!("{e:?}"))?;
        Ok(rows.into_iter().map(|row| row.0.into_iter().map(shown).collect()).collect())
    }

    fn script(statements: Vec<String>, fail: bool) -> Result<Vec<String>, String> {
        let outcomes: Vec<String> = statements
            .iter()
            .map(|s| match sql::execute(s, &[]) {
                Ok(n) => format!("ok {n}"),
                Err(e) => format!("{e:?}"),
            })
            .collect();
        if fail { Err(outcomes.join("\n")) } else { Ok(outcomes) }
    }
}

fn shown(v: moat_sdk::Value) -> String {
    use moat_sdk::Value;
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(n) => n.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Text(s) => s,
        Value::Blob(b) => format!("blob({} bytes)", b.len()),
    }
}
