//! The exported interfaces of product 1.1, over the shared `products` and
//! `stock` modules. Its own file so that test builds of 1.1 (a failing
//! migration, a trap at start) differ from the real one only in what they
//! test.

use crate::bindings::exports::shop::order::handler;
use crate::bindings::exports::shop::product::catalog::{self, CatalogError};
use crate::bindings::shop::order::events::OrderEvent;
use crate::bindings::shop::product::types::{Money, Product as Item};
use crate::{Product, products, stock};
use moat_sdk::sql::{self, text};

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

    fn search_products(query: String) -> Vec<Item> {
        let pattern =
            format!("%{}%", query.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        sql::query(
            "SELECT product_id, name, price, stock FROM products
             WHERE name_folded LIKE ? ESCAPE '\\' ORDER BY name_folded, product_id",
            &[text(&pattern)],
        )
        .unwrap_or_else(|e| panic!("searching products: {e:?}"))
        .iter()
        .map(products::to_product)
        .collect()
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
