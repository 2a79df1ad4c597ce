//! Test component: product 1.1 in every export, except that it traps while
//! being instantiated (a constructor, run by the component's start). A swap
//! to it must be refused with the old version still serving and the
//! database untouched.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../../wit/moat-platform", "../../../wit/shop-product-1.1", "../../../wit/shop-order", "world.wit"],
        world: "test:product-trap-init/product",
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

struct Product;

bindings::export!(Product with_types_in bindings);

impl schema::Guest for Product {
    fn migrate(found: Option<SchemaVersion>) -> Result<SchemaVersion, String> {
        Ok(found.unwrap_or(SchemaVersion { major: 1, minor: 1 }))
    }
}

/// Runs when the component is instantiated, before any call: the component
/// linker makes an exported `_initialize` part of instantiation.
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    core::arch::wasm32::unreachable()
}
