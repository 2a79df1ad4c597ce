//! The catalog's operations on the component's own `products` table, each
//! publishing what it changed. Shared by every version of the product
//! component.

use crate::bindings::exports::shop::product::catalog::CatalogError;
use crate::bindings::shop::product::events::{PriceUpdate, ProductEvent, Rename, StockLevel};
use crate::bindings::shop::product::publish::publish;
use crate::bindings::shop::product::types::{Money, Product as Item};
use moat_sdk::SqlError;
use moat_sdk::sql::{self, Row, int, text};

/// The tables of schema 1.0.
pub const TABLES_1_0: &str = "
    CREATE TABLE products (
        product_id TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        price      INTEGER NOT NULL CHECK (price >= 0),
        stock      INTEGER NOT NULL CHECK (stock >= 0)
    );
    CREATE TABLE reservations (
        order_id TEXT PRIMARY KEY,
        status   TEXT NOT NULL CHECK (status IN ('reserved', 'rejected', 'released'))
    );
    CREATE TABLE reservation_lines (
        order_id   TEXT NOT NULL REFERENCES reservations (order_id),
        product_id TEXT NOT NULL REFERENCES products (product_id),
        quantity   INTEGER NOT NULL CHECK (quantity > 0),
        PRIMARY KEY (order_id, product_id)
    )";

pub fn create(product: Item) -> Result<Item, CatalogError> {
    check_id(&product.product_id)?;
    check_name(&product.name)?;
    let price = money(product.price)?;
    let inserted = sql::execute(
        "INSERT INTO products (product_id, name, price, stock) VALUES (?, ?, ?, ?)
         ON CONFLICT (product_id) DO NOTHING",
        &[text(&product.product_id), text(&product.name), int(price), int(product.stock)],
    )
    .map_err(storage)?;
    if inserted == 0 {
        return Err(CatalogError::AlreadyExists(product.product_id));
    }
    publish(&ProductEvent::Created(product.clone()));
    Ok(product)
}

pub fn get(product_id: String) -> Option<Item> {
    find(&product_id).unwrap_or_else(|e| panic!("reading product {product_id}: {e:?}"))
}

pub fn list() -> Vec<Item> {
    sql::query("SELECT product_id, name, price, stock FROM products ORDER BY product_id", &[])
        .unwrap_or_else(|e| panic!("listing products: {e:?}"))
        .iter()
        .map(to_product)
        .collect()
}

pub fn set_price(product_id: String, price: Money) -> Result<Item, CatalogError> {
    let old = existing(&product_id)?;
    let updated = update(&product_id, "UPDATE products SET price = ? WHERE product_id = ?", int(money(price)?))?;
    if old.price != price {
        publish(&ProductEvent::PriceUpdated(PriceUpdate { product_id, old_price: old.price, new_price: price }));
    }
    Ok(updated)
}

pub fn rename(product_id: String, name: String) -> Result<Item, CatalogError> {
    check_name(&name)?;
    let old = existing(&product_id)?;
    let updated = update(&product_id, "UPDATE products SET name = ? WHERE product_id = ?", text(&name))?;
    if old.name != name {
        publish(&ProductEvent::Renamed(Rename { product_id, old_name: old.name, new_name: name }));
    }
    Ok(updated)
}

pub fn adjust_stock(product_id: String, delta: i32) -> Result<Item, CatalogError> {
    let current = existing(&product_id)?;
    let stock = i64::from(current.stock) + i64::from(delta);
    if stock < 0 {
        return Err(CatalogError::InsufficientStock(current.stock));
    }
    if stock > i64::from(u32::MAX) {
        return Err(CatalogError::Invalid(format!("stock would exceed {}", u32::MAX)));
    }
    let updated = update(&product_id, "UPDATE products SET stock = ? WHERE product_id = ?", int(stock))?;
    if delta != 0 {
        publish(&ProductEvent::StockChanged(StockLevel { product_id, stock: updated.stock }));
    }
    Ok(updated)
}

pub fn exec(statement: &str, params: &[moat_sdk::Value]) {
    sql::execute(statement, params).unwrap_or_else(|e| panic!("{statement}: {e:?}"));
}

pub fn find(product_id: &str) -> Result<Option<Item>, SqlError> {
    Ok(sql::query_one("SELECT product_id, name, price, stock FROM products WHERE product_id = ?", &[text(product_id)])?
        .as_ref()
        .map(to_product))
}

fn existing(product_id: &str) -> Result<Item, CatalogError> {
    find(product_id).map_err(storage)?.ok_or_else(|| CatalogError::NotFound(product_id.to_string()))
}

/// Sets one column of one product and returns the product as it now is.
fn update(product_id: &str, statement: &str, value: moat_sdk::Value) -> Result<Item, CatalogError> {
    let changed = sql::execute(statement, &[value, text(product_id)]).map_err(storage)?;
    if changed == 0 {
        return Err(CatalogError::NotFound(product_id.to_string()));
    }
    existing(product_id)
}

pub fn to_product(row: &Row) -> Item {
    Item {
        product_id: row.text(0),
        name: row.text(1),
        price: row.uint(2),
        stock: u32::try_from(row.int(3)).expect("stock fits u32 by the table's CHECK"),
    }
}

fn check_id(product_id: &str) -> Result<(), CatalogError> {
    if product_id.trim().is_empty() {
        return Err(CatalogError::Invalid("product-id must not be empty".into()));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), CatalogError> {
    if name.trim().is_empty() {
        return Err(CatalogError::Invalid("name must not be empty".into()));
    }
    Ok(())
}

fn money(amount: Money) -> Result<i64, CatalogError> {
    i64::try_from(amount).map_err(|_| CatalogError::Invalid(format!("price {amount} is too large")))
}

/// A store failure the catalog has no case for is a bug or a broken disk:
/// trap, so that the host rolls the unit of work back and reports it.
fn storage(e: SqlError) -> CatalogError {
    panic!("product database: {e:?}")
}
