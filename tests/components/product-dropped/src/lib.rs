//! Test component: claims `shop:product@1.2.0` but drops `get-product`
//! (which order imports) and publishes events with a case order's handler
//! does not know. A swap to it must be refused, naming both.

mod bindings {
    wit_bindgen::generate!({ path: "world.wit", world: "shop:product/product-dropped@1.2.0", generate_all });
}

use bindings::exports::shop::product::catalog::Guest;
use bindings::shop::product::events::ProductEvent;
use bindings::shop::product::publish::publish;
use bindings::shop::product::types::Product as Item;

struct Product;

bindings::export!(Product with_types_in bindings);

impl Guest for Product {
    fn list_products() -> Vec<Item> {
        publish(&ProductEvent::Discontinued("PROD001".into()));
        Vec::new()
    }
}
