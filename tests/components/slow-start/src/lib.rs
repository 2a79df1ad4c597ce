//! Test component: its migration sleeps 1.5 s through WASI, so a host that
//! loads it holds the data directory a while before it serves: long enough
//! for a one-shot command to start waiting for it. With a deadline shorter
//! than that, the load must fail at the deadline.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../../wit/moat-platform", "world.wit"],
        world: "test:slow/slow-start",
        with: {
            "moat:platform/store@0.1.0": moat_sdk::store,
            "moat:platform/log@0.1.0": moat_sdk::log::raw,
        },
        generate_all,
    });
}

use bindings::exports::moat::platform::schema::{self, SchemaVersion};
use bindings::exports::test::slow::ping;

struct Slow;

bindings::export!(Slow with_types_in bindings);

impl schema::Guest for Slow {
    fn migrate(_found: Option<SchemaVersion>) -> Result<SchemaVersion, String> {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        Ok(SchemaVersion { major: 1, minor: 0 })
    }
}

impl ping::Guest for Slow {
    fn ping() -> String {
        "pong".into()
    }
}
