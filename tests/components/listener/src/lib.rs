//! Test component: a subscriber to product events that records every event
//! it handles (so a test can count them: exactly once, in order) and fails
//! on demand, by product id:
//! - `FAIL2-...`: returns `err` on the first two attempts, then succeeds;
//! - `FAILX-...`: returns `err` until `fix()` is called;
//! - `TRAP-...`: traps until `fix()` is called;
//! - `SLOW-...`: takes 3 ms (a WASI sleep), so that a batch of them takes a
//!   while: long enough for a test to kill the host in the middle of one.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../../wit/moat-platform", "../../../wit/shop-product", "world.wit"],
        world: "test:listener/listener",
        with: {
            "moat:platform/store@0.1.0": moat_sdk::store,
            "moat:platform/log@0.1.0": moat_sdk::log::raw,
        },
        generate_all,
    });
}

use std::cell::RefCell;
use std::collections::HashMap;

use bindings::exports::moat::platform::schema::{self, SchemaVersion};
use bindings::exports::shop::product::handler;
use bindings::exports::test::listener::control;
use bindings::shop::product::events::ProductEvent;
use moat_sdk::sql::{self, text};

struct Listener;

bindings::export!(Listener with_types_in bindings);

thread_local! {
    /// Attempts per product id, in this instance's memory: an `err` does not
    /// replace the instance, so this counts retries.
    static ATTEMPTS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

impl schema::Guest for Listener {
    fn migrate(found: Option<SchemaVersion>) -> Result<SchemaVersion, String> {
        if found.is_none() {
            sql::execute_batch(
                "CREATE TABLE seen (n INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL);
                 CREATE TABLE flags (name TEXT PRIMARY KEY)",
            )
            .map_err(|e| format!("{e:?}"))?;
        }
        Ok(SchemaVersion { major: 1, minor: 0 })
    }
}

impl handler::Guest for Listener {
    fn handle(event: ProductEvent) -> Result<(), String> {
        let (case, id) = match &event {
            ProductEvent::Created(p) => ("created", p.product_id.clone()),
            ProductEvent::PriceUpdated(u) => ("price-updated", u.product_id.clone()),
            ProductEvent::Renamed(r) => ("renamed", r.product_id.clone()),
            ProductEvent::StockChanged(s) => ("stock-changed", s.product_id.clone()),
            ProductEvent::StockReserved(o) => ("stock-reserved", o.clone()),
            ProductEvent::StockRejected(r) => ("stock-rejected", r.order_id.clone()),
            ProductEvent::StockReleased(o) => ("stock-released", o.clone()),
        };
        // Write first, so that a failure must be rolled back to leave no trace.
        sql::execute("INSERT INTO seen (event) VALUES (?)", &[text(&format!("{case} {id}"))])
            .map_err(|e| format!("{e:?}"))?;
        let attempt = ATTEMPTS.with(|a| {
            let mut a = a.borrow_mut();
            let n = a.entry(id.clone()).or_default();
            *n += 1;
            *n
        });
        if id.starts_with("FAIL2-") && attempt <= 2 {
            return Err(format!("failing attempt {attempt} of {id}, as asked"));
        }
        // Not deterministic: applied once, it fails when applied again.
        if id.starts_with("FLAKY-") && attempt == 2 {
            return Err(format!("failing attempt 2 of {id}, as asked"));
        }
        if id.starts_with("FAILX-") && !fixed() {
            return Err(format!("failing {id} until fixed, as asked"));
        }
        if id.starts_with("SLOW-") {
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        if id.starts_with("TRAP-") && !fixed() {
            panic!("trapping on {id} until fixed, as asked");
        }
        Ok(())
    }
}

impl control::Guest for Listener {
    fn fix() {
        sql::execute("INSERT OR IGNORE INTO flags (name) VALUES ('fixed')", &[]).expect("setting the flag");
    }

    fn seen() -> Vec<String> {
        sql::query("SELECT event FROM seen ORDER BY n", &[]).expect("reading seen").iter().map(|r| r.text(0)).collect()
    }
}

fn fixed() -> bool {
    sql::query_one("SELECT 1 FROM flags WHERE name = 'fixed'", &[]).expect("reading flags").is_some()
}
