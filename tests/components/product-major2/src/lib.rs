//! Test component: exports `shop:product/catalog@2.0.0`, a major version
//! 1.x consumers cannot use. A swap to it must be refused, naming the
//! consumer and the interface.

mod bindings {
    wit_bindgen::generate!({ path: "world.wit", world: "shop:product/product-major2@2.0.0", generate_all });
}

use bindings::exports::shop::product::catalog::Guest;
use bindings::shop::product::types::Product as Item;

struct Product;

bindings::export!(Product with_types_in bindings);

impl Guest for Product {
    fn get_product(_product_id: String) -> Option<Item> {
        None
    }
}
