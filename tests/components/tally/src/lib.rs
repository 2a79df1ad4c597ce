//! Bench and test component: subscribes to the probe's events and keeps a
//! count per note, an upsert per event, as a replica would.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../../wit/moat-platform", "../probe/world.wit", "world.wit"],
        world: "test:tally/tally",
        with: {
            "moat:platform/store@0.1.0": moat_sdk::store,
            "moat:platform/log@0.1.0": moat_sdk::log::raw,
        },
        generate_all,
    });
}

use bindings::exports::moat::platform::schema::{self, SchemaVersion};
use bindings::exports::test::probe::handler;
use bindings::exports::test::tally::counts;
use bindings::test::probe::events::ProbeEvent;
use moat_sdk::sql::{self, text};

struct Tally;

bindings::export!(Tally with_types_in bindings);

impl schema::Guest for Tally {
    fn migrate(found: Option<SchemaVersion>) -> Result<SchemaVersion, String> {
        if found.is_none() {
            sql::execute("CREATE TABLE notes (note TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID", &[])
                .map_err(|e| format!("{e:?}"))?;
        }
        Ok(SchemaVersion { major: 1, minor: 0 })
    }
}

impl handler::Guest for Tally {
    fn handle(event: ProbeEvent) -> Result<(), String> {
        let ProbeEvent::Note(note) = event;
        sql::execute(
            "INSERT INTO notes (note, n) VALUES (?, 1) ON CONFLICT (note) DO UPDATE SET n = n + 1",
            &[text(&note)],
        )
        .map_err(|e| format!("{e:?}"))?;
        Ok(())
    }
}

impl counts::Guest for Tally {
    fn totals() -> (u64, u64) {
        let row = sql::query_one("SELECT coalesce(sum(n), 0), count(*) FROM notes", &[])
            .expect("reading the tally")
            .expect("one row");
        (row.uint(0), row.uint(1))
    }
}
