//! The product service, version 1.1 (`shop:product/catalog@1.1.0`):
//! everything 1.0 does, plus `search-products`.
//!
//! Its schema 1.1 adds a generated column `name_folded` (the lowercased
//! name) and an index on it. The change is additive: a generated column
//! needs nothing from writers, so 1.0 can still serve a 1.1 database, and a
//! swap back to 1.0 works.
//!
//! Layout: this file holds the migration to 1.1; `service` wires the exported
//! interfaces (and the new search) to the same `products` and `stock`
//! modules as 1.0 (shared source, `../product/src`).

mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit/moat-platform", "../../wit/shop-product-1.1", "../../wit/shop-order", "world.wit"],
        world: "component:product-v2/product",
        with: {
            "moat:platform/store@0.1.0": moat_sdk::store,
            "moat:platform/log@0.1.0": moat_sdk::log::raw,
        },
        generate_all,
    });
}

#[path = "../../product/src/products.rs"]
mod products;
mod service;
#[path = "../../product/src/stock.rs"]
mod stock;

use bindings::exports::moat::platform::schema::{self, SchemaVersion};
use moat_sdk::sql;

struct Product;

bindings::export!(Product with_types_in bindings);

/// The schema this build creates or upgrades to.
const SCHEMA: SchemaVersion = SchemaVersion { major: 1, minor: 1 };

/// From 1.0 to 1.1: additive only.
const UPGRADE_1_1: &str = "
    ALTER TABLE products ADD COLUMN name_folded TEXT GENERATED ALWAYS AS (lower(name)) VIRTUAL;
    CREATE INDEX products_by_name_folded ON products (name_folded)";

impl schema::Guest for Product {
    fn migrate(found: Option<SchemaVersion>) -> Result<SchemaVersion, String> {
        let upgrade = |from: &str| {
            sql::execute_batch(UPGRADE_1_1).map_err(|e| format!("upgrading the product tables {from} to 1.1: {e:?}"))
        };
        match found {
            None => {
                sql::execute_batch(products::TABLES_1_0).map_err(|e| format!("creating the product tables: {e:?}"))?;
                upgrade("from new")?;
                Ok(SCHEMA)
            }
            Some(SchemaVersion { major: 1, minor: 0 }) => {
                upgrade("from 1.0")?;
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
