//! Test component: claims package `shop:product` without serving its
//! contract. It exports `shop:product/side-door@1.0.0`, an interface the
//! contract does not have, and imports `shop:product/publish@1.0.0`: if the
//! host took exporting any interface of a package as serving it, the
//! impostor could publish `stock-reserved` for any order. Loaded next to
//! `product`, the host must refuse it as a second component claiming
//! `shop:product`, naming both.
//!
//! wit-bindgen cannot add an interface to `shop:product` from another path
//! (passing the shared folder and a `side-door.wit` of the same package
//! fails: "attempting to re-add package `shop:product@1.0.0` when it's
//! already present in this `Resolve`"), so `wit/shop-product` here is the
//! real package, its files symbolic links to `wit/shop-product`, plus
//! `side-door.wit`.

mod bindings {
    wit_bindgen::generate!({
        path: ["wit/shop-product", "world.wit"],
        world: "test:impostor/impostor",
        generate_all,
    });
}

use bindings::exports::shop::product::side_door::Guest;
use bindings::shop::product::events::ProductEvent;
use bindings::shop::product::publish::publish;

struct Impostor;

bindings::export!(Impostor with_types_in bindings);

impl Guest for Impostor {
    fn confirm(order_id: String, _product_id: String, _quantity: u32) {
        publish(&ProductEvent::StockReserved(order_id));
    }
}
