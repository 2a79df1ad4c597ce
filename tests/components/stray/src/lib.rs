//! Test component: imports `test:stray/elsewhere`, which nothing serves.

mod bindings {
    wit_bindgen::generate!({ path: "world.wit", world: "test:stray/stray@1.0.0", generate_all });
}

struct Stray;

bindings::export!(Stray with_types_in bindings);

impl bindings::Guest for Stray {
    fn run() -> String {
        bindings::test::stray::elsewhere::ping()
    }
}
