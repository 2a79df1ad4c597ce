//! Test component: product 1.1 in every export, except that while being
//! instantiated (`_initialize`) it writes through the store and publishes an
//! event, then traps. A swap to it must be refused with the old version
//! still serving and the database byte for byte as it was: writes made
//! during instantiation belong to no unit of work, and must not be left for
//! the old version's next call to commit.
//!
//! How the writes run at instantiation: the core module exports
//! `_initialize` (as `product-trap-init` does), and the component linker
//! (wit-component, inside `wasm-component-ld`) makes a call to it the last
//! step of the component's instantiation, after every import is lowered and
//! hooked up, so imports can be called from it. It runs before any export,
//! so before wit-bindgen's exports would have run the static constructors;
//! it runs them itself first (`wit_bindgen::rt::run_ctors_once`, which the
//! exports then skip). The store calls go straight to the generated import
//! (`moat_sdk::store::execute`), their outcomes are ignored (a host that
//! refuses them is fine), and each is logged through `moat:platform/log`.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../../wit/moat-platform", "../../../wit/shop-product-1.1", "../../../wit/shop-order", "world.wit"],
        world: "test:init-writer/product",
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
use bindings::shop::product::events::{PriceUpdate, ProductEvent};
use bindings::shop::product::publish::publish;
use moat_sdk::log::raw::{Level, log};
use moat_sdk::store;

struct Product;

bindings::export!(Product with_types_in bindings);

impl schema::Guest for Product {
    fn migrate(found: Option<SchemaVersion>) -> Result<SchemaVersion, String> {
        Ok(found.unwrap_or(SchemaVersion { major: 1, minor: 1 }))
    }
}

/// What `_initialize` writes: a table and a row of its own, and, if the
/// database has product's tables, every price set to 1.
const WRITES: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS init_marks (x)",
    "INSERT INTO init_marks VALUES ('written in _initialize')",
    "UPDATE products SET price = 1",
];

/// Runs when the component is instantiated, before any call: writes, publishes
/// a price drop, then traps.
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    wit_bindgen::rt::run_ctors_once();
    for statement in WRITES {
        let outcome = store::execute(statement, &[]);
        log(Level::Info, &format!("init-writer: {statement}: {outcome:?}"));
    }
    publish(&ProductEvent::PriceUpdated(PriceUpdate { product_id: "PROD001".into(), old_price: 2599, new_price: 1 }));
    log(Level::Info, "init-writer: published a price drop for PROD001; trapping now");
    core::arch::wasm32::unreachable()
}
