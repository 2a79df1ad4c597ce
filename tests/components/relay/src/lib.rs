//! Bench component: forwards `get-product` to the catalog through the host,
//! so the cost of one hop between components can be measured alone.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../../wit/shop-product", "world.wit"],
        world: "test:relay/relayer",
        generate_all,
    });
}

use bindings::shop::product::catalog;
use bindings::shop::product::types::Product;

struct Relay;

bindings::export!(Relay with_types_in bindings);

impl bindings::exports::test::relay::relay::Guest for Relay {
    fn get_product(product_id: String) -> Option<Product> {
        catalog::get_product(&product_id)
    }
}
