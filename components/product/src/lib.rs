//! The product service: owns the catalog (`shop:product/catalog@1.0.0`),
//! publishes product events, and reserves stock for submitted orders.
//!
//! Layout: this file wires the exported interfaces to
//! - `products`: the catalog's operations on its own tables, publishing what changed;
//! - `stock`: reservations, answering order events (all or nothing, released on cancel).
//!
//! Both modules are shared with `product-v2`, the next version.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit/moat-platform", "../../wit/shop-product", "../../wit/shop-order", "world.wit"],
        world: "component:product/product",
        with: {
            "moat:platform/store@0.1.0": moat_sdk::store,
            "moat:platform/log@0.1.0": moat_sdk::log::raw,
        },
        generate_all,
    });
}

mod products;
mod stock;

use bindings::exports::moat::platform::schema::{self, SchemaVersion};
use bindings::exports::shop::order::handler;
use bindings::exports::shop::product::catalog::{self, CatalogError};
use bindings::shop::order::events::OrderEvent;
use bindings::shop::product::types::{Money, Product as Item};

struct Product;

bindings::export!(Product with_types_in bindings);

/// The schema this build creates; it serves any 1.x (later minors only add).
const SCHEMA: SchemaVersion = SchemaVersion { major: 1, minor: 0 };

impl schema::Guest for Product {
    fn migrate(found: Option<SchemaVersion>) -> Result<SchemaVersion, String> {
        match found {
            None => {
                moat_sdk::sql::execute_batch(products::TABLES_1_0)
                    .map_err(|e| format!("creating the product tables: {e:?}"))?;
                Ok(SCHEMA)
            }
            Some(v) if v.major == SCHEMA.major => Ok(v),
            Some(v) => Err(format!(
                "the database has product schema {}.{}, which this build (schema {}.x) cannot serve",
                v.major, v.minor, SCHEMA.major
            )),
        }
    }
}

impl catalog::Guest for Product {
    fn create_product(product: Item) -> Result<Item, CatalogError> {
        products::create(product)
    }

    fn get_product(product_id: String) -> Option<Item> {
        products::get(product_id)
    }

    fn list_products() -> Vec<Item> {
        products::list()
    }

    fn set_price(product_id: String, price: Money) -> Result<Item, CatalogError> {
        products::set_price(product_id, price)
    }

    fn rename_product(product_id: String, name: String) -> Result<Item, CatalogError> {
        products::rename(product_id, name)
    }

    fn adjust_stock(product_id: String, delta: i32) -> Result<Item, CatalogError> {
        products::adjust_stock(product_id, delta)
    }
}

impl handler::Guest for Product {
    fn handle(event: OrderEvent) -> Result<(), String> {
        stock::handle(event);
        Ok(())
    }
}
