//! The order service: owns orders (`shop:order/orders@1.0.0`).
//!
//! Layout: `schema` creates the tables; `Orders` implements the exported
//! interface; names and prices come from `shop:product/catalog`, called
//! through the host, and are copied into each order item.

mod bindings {
    wit_bindgen::generate!({
        path: [
            "../../wit/moat-platform",
            "../../wit/shop-product",
            "../../wit/shop-order",
            "world.wit",
        ],
        world: "component:order/order",
        with: {
            "moat:platform/store@0.1.0": moat_sdk::store,
            "moat:platform/log@0.1.0": moat_sdk::log::raw,
        },
        generate_all,
    });
}

use bindings::exports::moat::platform::schema;
use bindings::exports::shop::order::orders::{
    self, Order, OrderError, OrderItem, OrderLine, OrderStatus,
};
use bindings::shop::product::catalog;
use moat_sdk::sql::{self, int, text};

struct Orders;

bindings::export!(Orders with_types_in bindings);

/// The schema version this build creates and serves.
const SCHEMA_VERSION: u32 = 1;

impl schema::Guest for Orders {
    fn migrate(found: u32) -> Result<u32, String> {
        match found {
            0 => {
                sql::execute_batch(
                    "CREATE TABLE orders (
                        order_id    TEXT PRIMARY KEY,
                        customer_id TEXT NOT NULL,
                        status      TEXT NOT NULL
                    );
                    CREATE TABLE order_items (
                        order_id     TEXT NOT NULL REFERENCES orders (order_id),
                        line         INTEGER NOT NULL,
                        product_id   TEXT NOT NULL,
                        quantity     INTEGER NOT NULL CHECK (quantity > 0),
                        product_name TEXT NOT NULL,
                        unit_price   INTEGER NOT NULL CHECK (unit_price >= 0),
                        PRIMARY KEY (order_id, line)
                    )",
                )
                .map_err(|e| format!("creating the order tables: {e:?}"))?;
                Ok(SCHEMA_VERSION)
            }
            SCHEMA_VERSION => Ok(SCHEMA_VERSION),
            newer => Err(format!(
                "the database has order schema {newer}, newer than this build's {SCHEMA_VERSION}"
            )),
        }
    }
}

impl orders::Guest for Orders {
    fn place_order(
        order_id: String,
        customer_id: String,
        lines: Vec<OrderLine>,
    ) -> Result<Order, OrderError> {
        if order_id.trim().is_empty() {
            return Err(OrderError::Invalid("order-id must not be empty".into()));
        }
        if customer_id.trim().is_empty() {
            return Err(OrderError::Invalid("customer-id must not be empty".into()));
        }
        if lines.is_empty() {
            return Err(OrderError::NoItems);
        }
        if load(&order_id).is_some() {
            return Err(OrderError::AlreadyExists(order_id));
        }
        // Validate every line before writing anything.
        let mut items = Vec::with_capacity(lines.len());
        for line in lines {
            if line.quantity == 0 {
                return Err(OrderError::InvalidQuantity(line.product_id));
            }
            let product = catalog::get_product(&line.product_id)
                .ok_or_else(|| OrderError::UnknownProduct(line.product_id.clone()))?;
            items.push(OrderItem {
                product_id: line.product_id,
                quantity: line.quantity,
                product_name: product.name,
                unit_price: product.price,
            });
        }
        sql::execute(
            "INSERT INTO orders (order_id, customer_id, status) VALUES (?, ?, ?)",
            &[text(&order_id), text(&customer_id), text(status_name(OrderStatus::Pending))],
        )
        .unwrap_or_else(|e| panic!("inserting order {order_id}: {e:?}"));
        for (line, item) in items.iter().enumerate() {
            sql::execute(
                "INSERT INTO order_items (order_id, line, product_id, quantity, product_name, unit_price)
                 VALUES (?, ?, ?, ?, ?, ?)",
                &[
                    text(&order_id),
                    int(line as i64),
                    text(&item.product_id),
                    int(item.quantity),
                    text(&item.product_name),
                    int(item.unit_price as i64),
                ],
            )
            .unwrap_or_else(|e| panic!("inserting order {order_id} line {line}: {e:?}"));
        }
        Ok(Order {
            total: total(&items),
            order_id,
            customer_id,
            items,
            status: OrderStatus::Pending,
        })
    }

    fn get_order(order_id: String) -> Option<Order> {
        load(&order_id)
    }

    fn list_orders() -> Vec<Order> {
        sql::query("SELECT order_id FROM orders ORDER BY order_id", &[])
            .unwrap_or_else(|e| panic!("listing orders: {e:?}"))
            .iter()
            .filter_map(|row| load(&row.text(0)))
            .collect()
    }
}

fn load(order_id: &str) -> Option<Order> {
    let head = sql::query_one(
        "SELECT customer_id, status FROM orders WHERE order_id = ?",
        &[text(order_id)],
    )
    .unwrap_or_else(|e| panic!("reading order {order_id}: {e:?}"))?;
    let items: Vec<OrderItem> = sql::query(
        "SELECT product_id, quantity, product_name, unit_price FROM order_items
         WHERE order_id = ? ORDER BY line",
        &[text(order_id)],
    )
    .unwrap_or_else(|e| panic!("reading items of order {order_id}: {e:?}"))
    .iter()
    .map(|row| OrderItem {
        product_id: row.text(0),
        quantity: row.int(1) as u32,
        product_name: row.text(2),
        unit_price: row.uint(3),
    })
    .collect();
    Some(Order {
        order_id: order_id.to_string(),
        customer_id: head.text(0),
        total: total(&items),
        items,
        status: parse_status(&head.text(1)),
    })
}

fn total(items: &[OrderItem]) -> u64 {
    items.iter().map(|i| u64::from(i.quantity) * i.unit_price).sum()
}

fn status_name(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "pending",
        OrderStatus::Submitted => "submitted",
        OrderStatus::Confirmed => "confirmed",
        OrderStatus::Rejected => "rejected",
        OrderStatus::Cancelled => "cancelled",
    }
}

fn parse_status(name: &str) -> OrderStatus {
    match name {
        "pending" => OrderStatus::Pending,
        "submitted" => OrderStatus::Submitted,
        "confirmed" => OrderStatus::Confirmed,
        "rejected" => OrderStatus::Rejected,
        "cancelled" => OrderStatus::Cancelled,
        other => panic!("unknown order status {other:?} in the database"),
    }
}
