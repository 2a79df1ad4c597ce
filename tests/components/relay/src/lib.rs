//! Forwards `get-product` to the catalog through the host, so the cost of one
//! hop between components can be measured alone (the benchmarks); and
//! `adjust-then-trap`, a caller that fails after its call to product
//! committed (the tests of request ids).

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

    fn adjust_then_trap(product_id: String, delta: i32, trap_until_ms: u64) -> Result<Product, String> {
        let adjusted = catalog::adjust_stock(&product_id, delta).map_err(|e| format!("{e:?}"))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        if (now.as_millis() as u64) < trap_until_ms {
            panic!("trapping after adjust-stock committed, as asked");
        }
        Ok(adjusted)
    }
}
