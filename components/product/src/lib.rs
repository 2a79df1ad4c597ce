//! The product service: owns the catalog (`shop:product/catalog@1.0.0`),
//! publishes product events, and reserves stock for submitted orders.
//!
//! Layout: `schema` creates the tables; `catalog` implements the exported
//! interface and publishes what changed; `handler` answers order events
//! (reserve all or nothing, release on cancel).

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

use std::collections::BTreeMap;

use bindings::exports::moat::platform::schema::{self, SchemaVersion};
use bindings::exports::shop::order::handler;
use bindings::exports::shop::product::catalog::{self, CatalogError};
use bindings::shop::order::events::OrderEvent;
use bindings::shop::order::types::OrderLine;
use bindings::shop::product::events::{PriceUpdate, ProductEvent, Rename, StockLevel, StockRejection};
use bindings::shop::product::publish::publish;
use bindings::shop::product::types::{Money, Product as Item};
use moat_sdk::sql::{self, int, text, Row};
use moat_sdk::SqlError;

struct Product;

bindings::export!(Product with_types_in bindings);

/// The schema this build creates; it serves any 1.x (later minors only add).
const SCHEMA: SchemaVersion = SchemaVersion { major: 1, minor: 0 };

impl schema::Guest for Product {
    fn migrate(found: Option<SchemaVersion>) -> Result<SchemaVersion, String> {
        match found {
            None => {
                sql::execute_batch(
                    "CREATE TABLE products (
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
                    )",
                )
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

    fn get_product(product_id: String) -> Option<Item> {
        find(&product_id).unwrap_or_else(|e| panic!("reading product {product_id}: {e:?}"))
    }

    fn list_products() -> Vec<Item> {
        sql::query("SELECT product_id, name, price, stock FROM products ORDER BY product_id", &[])
            .unwrap_or_else(|e| panic!("listing products: {e:?}"))
            .iter()
            .map(to_product)
            .collect()
    }

    fn set_price(product_id: String, price: Money) -> Result<Item, CatalogError> {
        let old = existing(&product_id)?;
        let updated = update(&product_id, "UPDATE products SET price = ? WHERE product_id = ?", int(money(price)?))?;
        if old.price != price {
            publish(&ProductEvent::PriceUpdated(PriceUpdate { product_id, old_price: old.price, new_price: price }));
        }
        Ok(updated)
    }

    fn rename_product(product_id: String, name: String) -> Result<Item, CatalogError> {
        check_name(&name)?;
        let old = existing(&product_id)?;
        let updated = update(&product_id, "UPDATE products SET name = ? WHERE product_id = ?", text(&name))?;
        if old.name != name {
            publish(&ProductEvent::Renamed(Rename { product_id, old_name: old.name, new_name: name }));
        }
        Ok(updated)
    }

    fn adjust_stock(product_id: String, delta: i32) -> Result<Item, CatalogError> {
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
}

impl handler::Guest for Product {
    fn handle(event: OrderEvent) -> Result<(), String> {
        match event {
            OrderEvent::Submitted(order) => reserve(&order.order_id, &order.lines),
            OrderEvent::Cancelled(order_id) => release(&order_id),
        }
        Ok(())
    }
}

/// Reserves stock for every line of an order, or for none: publishes
/// `stock-reserved` or `stock-rejected`. Stock never goes below zero.
fn reserve(order_id: &str, lines: &[OrderLine]) {
    if reservation_status(order_id).is_some() {
        return; // answered already
    }
    let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
    for line in lines {
        *wanted.entry(line.product_id.as_str()).or_default() += u64::from(line.quantity);
    }
    let mut shortfalls = Vec::new();
    for (&product_id, &quantity) in &wanted {
        match find(product_id).unwrap_or_else(|e| panic!("reading product {product_id}: {e:?}")) {
            None => shortfalls.push(format!("{product_id} is not in the catalog")),
            Some(p) if u64::from(p.stock) < quantity => {
                shortfalls.push(format!("{product_id}: {quantity} wanted, {} in stock", p.stock))
            }
            Some(_) => {}
        }
    }
    if lines.is_empty() {
        shortfalls.push("the order has no lines".into());
    }
    let status = if shortfalls.is_empty() { "reserved" } else { "rejected" };
    exec("INSERT INTO reservations (order_id, status) VALUES (?, ?)", &[text(order_id), text(status)]);
    if !shortfalls.is_empty() {
        publish(&ProductEvent::StockRejected(StockRejection {
            order_id: order_id.to_string(),
            reason: shortfalls.join("; "),
        }));
        return;
    }
    for (&product_id, &quantity) in &wanted {
        exec(
            "INSERT INTO reservation_lines (order_id, product_id, quantity) VALUES (?, ?, ?)",
            &[text(order_id), text(product_id), int(quantity as i64)],
        );
        let stock = move_stock(product_id, -(quantity as i64));
        publish(&ProductEvent::StockChanged(StockLevel { product_id: product_id.to_string(), stock }));
    }
    publish(&ProductEvent::StockReserved(order_id.to_string()));
}

/// Puts back the stock a reserved order held, once.
fn release(order_id: &str) {
    if reservation_status(order_id).as_deref() != Some("reserved") {
        return;
    }
    let lines = sql::query(
        "SELECT product_id, quantity FROM reservation_lines WHERE order_id = ? ORDER BY product_id",
        &[text(order_id)],
    )
    .unwrap_or_else(|e| panic!("reading the reservation of {order_id}: {e:?}"));
    for line in &lines {
        let product_id = line.text(0);
        let stock = move_stock(&product_id, line.int(1));
        publish(&ProductEvent::StockChanged(StockLevel { product_id, stock }));
    }
    exec("UPDATE reservations SET status = 'released' WHERE order_id = ?", &[text(order_id)]);
    publish(&ProductEvent::StockReleased(order_id.to_string()));
}

fn reservation_status(order_id: &str) -> Option<String> {
    sql::query_one("SELECT status FROM reservations WHERE order_id = ?", &[text(order_id)])
        .unwrap_or_else(|e| panic!("reading the reservation of {order_id}: {e:?}"))
        .map(|row| row.text(0))
}

/// Adds `delta` to a product's stock and returns the new level.
fn move_stock(product_id: &str, delta: i64) -> u32 {
    exec("UPDATE products SET stock = stock + ? WHERE product_id = ?", &[int(delta), text(product_id)]);
    find(product_id).ok().flatten().expect("the product was just updated").stock
}

fn exec(statement: &str, params: &[moat_sdk::Value]) {
    sql::execute(statement, params).unwrap_or_else(|e| panic!("{statement}: {e:?}"));
}

fn find(product_id: &str) -> Result<Option<Item>, SqlError> {
    Ok(sql::query_one(
        "SELECT product_id, name, price, stock FROM products WHERE product_id = ?",
        &[text(product_id)],
    )?
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

fn to_product(row: &Row) -> Item {
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
