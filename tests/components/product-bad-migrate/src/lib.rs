//! Test component: product 1.1 in every export, except that its migration
//! alters the tables and writes rows, then fails. A swap to it must be
//! refused with the old version still serving and the database exactly as
//! it was.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../../wit/moat-platform", "../../../wit/shop-product-1.1", "../../../wit/shop-order", "world.wit"],
        world: "test:product-bad-migrate/product",
        with: {
            "moat:platform/store@0.1.0": moat_sdk::store,
            "moat:platform/log@0.1.0": moat_sdk::log::raw,
        },
        generate_all,
    });
}

#[path = "../../../../components/product/src/products.rs"]
#[allow(dead_code, reason = "shared with the real product builds")]
mod products;
#[path = "../../../../components/product-v2/src/service.rs"]
mod service;
#[path = "../../../../components/product/src/stock.rs"]
mod stock;

use bindings::exports::moat::platform::schema::{self, SchemaVersion};
use moat_sdk::sql;

struct Product;

bindings::export!(Product with_types_in bindings);

impl schema::Guest for Product {
    fn migrate(_found: Option<SchemaVersion>) -> Result<SchemaVersion, String> {
        sql::execute_batch(
            "ALTER TABLE products ADD COLUMN half_done TEXT NOT NULL DEFAULT 'x';
             CREATE TABLE leftovers (n INTEGER);
             INSERT INTO leftovers VALUES (1);
             UPDATE products SET price = 0",
        )
        .map_err(|e| format!("{e:?}"))?;
        Err("the migration failed halfway, as asked".into())
    }
}
