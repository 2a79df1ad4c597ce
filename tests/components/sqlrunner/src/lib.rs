//! Test component: passes each statement straight to the store, so the
//! sqllogictest corpus runs through the sandbox exactly as written.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../../wit/moat-platform", "world.wit"],
        world: "test:sqlrunner/sqlrunner",
        with: {
            "moat:platform/store@0.1.0": moat_sdk::store,
            "moat:platform/log@0.1.0": moat_sdk::log::raw,
        },
        generate_all,
    });
}

use bindings::exports::test::sqlrunner::runner::Guest;
use moat_sdk::store::{self, Error, Value};

struct SqlRunner;

bindings::export!(SqlRunner with_types_in bindings);

impl Guest for SqlRunner {
    fn execute(sql: String) -> Result<u64, Error> {
        store::execute(&sql, &[])
    }

    fn query(sql: String) -> Result<Vec<Vec<Value>>, Error> {
        store::query(&sql, &[])
    }
}
