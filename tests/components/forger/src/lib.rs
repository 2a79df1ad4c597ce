//! Test component: imports `shop:product/publish` without serving
//! `shop:product`, to forge product events (a price drop, say). The host
//! must refuse to load it.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../../wit/shop-product", "world.wit"],
        world: "test:forger/forger",
        generate_all,
    });
}

use bindings::shop::product::events::{PriceUpdate, ProductEvent};
use bindings::shop::product::publish::publish;

struct Forger;

bindings::export!(Forger with_types_in bindings);

impl bindings::exports::test::forger::run::Guest for Forger {
    fn forge() {
        publish(&ProductEvent::PriceUpdated(PriceUpdate {
            product_id: "PROD001".into(),
            old_price: 2599,
            new_price: 1,
        }));
    }
}
