//! Test component: exports `test:ping/ping` and imports it too. Loaded
//! twice under two names, each would call the other: a cycle the host must
//! refuse at load, naming it.

mod bindings {
    wit_bindgen::generate!({ path: "world.wit", world: "test:ping/ping-pong@1.0.0", generate_all });
}

struct Ping;

bindings::export!(Ping with_types_in bindings);

impl bindings::exports::test::ping::ping::Guest for Ping {
    fn ping(n: u32) -> u32 {
        if n == 0 { 0 } else { 1 + bindings::test::ping::ping::ping(n - 1) }
    }
}
