//! The order service: owns orders (`shop:order/orders@1.0.0`).
//!
//! Layout: `schema` creates the tables; `orders` implements the exported
//! interface; `handler` applies product events to the service's replica of
//! the catalog (names and prices), to the items of pending orders, and to
//! submitted orders awaiting stock.
//!
//! The replica lets orders be placed and shown without asking the product
//! service. A product the replica has not heard of yet is looked up through
//! `shop:product/catalog`, called through the host.

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

use bindings::exports::moat::platform::schema::{self, SchemaVersion};
use bindings::exports::shop::order::orders::{self, OrderError};
use bindings::exports::shop::product::handler;
use bindings::shop::order::events::{OrderEvent, SubmittedOrder};
use bindings::shop::order::publish::publish;
use bindings::shop::order::types::{Order, OrderItem, OrderLine, OrderStatus};
use bindings::shop::product::catalog;
use bindings::shop::product::events::ProductEvent;
use moat_sdk::sql::{self, int, text};

struct Orders;

bindings::export!(Orders with_types_in bindings);

/// The schema this build creates; it serves any 1.x (later minors only add).
const SCHEMA: SchemaVersion = SchemaVersion { major: 1, minor: 0 };

impl schema::Guest for Orders {
    fn migrate(found: Option<SchemaVersion>) -> Result<SchemaVersion, String> {
        match found {
            None => {
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
                    );
                    CREATE INDEX order_items_by_product ON order_items (product_id);
                    CREATE TABLE product_replica (
                        product_id TEXT PRIMARY KEY,
                        name       TEXT NOT NULL,
                        price      INTEGER NOT NULL
                    )",
                )
                .map_err(|e| format!("creating the order tables: {e:?}"))?;
                Ok(SCHEMA)
            }
            Some(v) if v.major == SCHEMA.major => Ok(v),
            Some(v) => Err(format!(
                "the database has order schema {}.{}, which this build (schema {}.x) cannot serve",
                v.major, v.minor, SCHEMA.major
            )),
        }
    }
}

impl orders::Guest for Orders {
    fn place_order(order_id: String, customer_id: String, lines: Vec<OrderLine>) -> Result<Order, OrderError> {
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
            let (name, price) =
                product_info(&line.product_id).ok_or_else(|| OrderError::UnknownProduct(line.product_id.clone()))?;
            items.push(OrderItem {
                product_id: line.product_id,
                quantity: line.quantity,
                product_name: name,
                unit_price: price,
            });
        }
        exec(
            "INSERT INTO orders (order_id, customer_id, status) VALUES (?, ?, ?)",
            &[text(&order_id), text(&customer_id), text(status_name(OrderStatus::Pending))],
        );
        for (line, item) in items.iter().enumerate() {
            exec(
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
            );
        }
        let order = Order { total: total(&items), order_id, customer_id, items, status: OrderStatus::Pending };
        publish(&OrderEvent::Placed(order.clone()));
        Ok(order)
    }

    fn submit_order(order_id: String) -> Result<Order, OrderError> {
        let order = load(&order_id).ok_or_else(|| OrderError::NotFound(order_id.clone()))?;
        if order.status != OrderStatus::Pending {
            return Err(OrderError::WrongStatus(order.status));
        }
        set_status(&order_id, OrderStatus::Submitted);
        publish(&OrderEvent::Submitted(SubmittedOrder {
            order_id: order_id.clone(),
            customer_id: order.customer_id.clone(),
            lines: order
                .items
                .iter()
                .map(|i| OrderLine { product_id: i.product_id.clone(), quantity: i.quantity })
                .collect(),
        }));
        Ok(Order { status: OrderStatus::Submitted, ..order })
    }

    fn cancel_order(order_id: String) -> Result<Order, OrderError> {
        let order = load(&order_id).ok_or_else(|| OrderError::NotFound(order_id.clone()))?;
        match order.status {
            OrderStatus::Pending | OrderStatus::Rejected => {}
            OrderStatus::Confirmed => publish(&OrderEvent::Cancelled(order_id.clone())),
            status @ (OrderStatus::Submitted | OrderStatus::Cancelled) => return Err(OrderError::WrongStatus(status)),
        }
        set_status(&order_id, OrderStatus::Cancelled);
        Ok(Order { status: OrderStatus::Cancelled, ..order })
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

impl handler::Guest for Orders {
    fn handle(event: ProductEvent) -> Result<(), String> {
        match event {
            ProductEvent::Created(p) => exec(
                "INSERT INTO product_replica (product_id, name, price) VALUES (?, ?, ?)
                 ON CONFLICT (product_id) DO UPDATE SET name = excluded.name, price = excluded.price",
                &[text(&p.product_id), text(&p.name), int(p.price as i64)],
            ),
            ProductEvent::PriceUpdated(u) => {
                exec(
                    "UPDATE product_replica SET price = ? WHERE product_id = ?",
                    &[int(u.new_price as i64), text(&u.product_id)],
                );
                // Pending orders follow the catalog; submitted ones keep their price.
                exec(
                    "UPDATE order_items SET unit_price = ? WHERE product_id = ?
                     AND order_id IN (SELECT order_id FROM orders WHERE status = 'pending')",
                    &[int(u.new_price as i64), text(&u.product_id)],
                );
            }
            ProductEvent::Renamed(r) => {
                exec(
                    "UPDATE product_replica SET name = ? WHERE product_id = ?",
                    &[text(&r.new_name), text(&r.product_id)],
                );
                exec(
                    "UPDATE order_items SET product_name = ? WHERE product_id = ?
                     AND order_id IN (SELECT order_id FROM orders WHERE status = 'pending')",
                    &[text(&r.new_name), text(&r.product_id)],
                );
            }
            ProductEvent::StockReserved(order_id) => answer(&order_id, OrderStatus::Confirmed),
            ProductEvent::StockRejected(r) => answer(&r.order_id, OrderStatus::Rejected),
            ProductEvent::StockChanged(_) | ProductEvent::StockReleased(_) => {}
        }
        Ok(())
    }
}

/// Records the product service's answer to a submitted order.
fn answer(order_id: &str, status: OrderStatus) {
    exec(
        "UPDATE orders SET status = ? WHERE order_id = ? AND status = 'submitted'",
        &[text(status_name(status)), text(order_id)],
    );
}

/// A product's name and price: from the replica, or else from the catalog.
fn product_info(product_id: &str) -> Option<(String, u64)> {
    let replica = sql::query_one("SELECT name, price FROM product_replica WHERE product_id = ?", &[text(product_id)])
        .unwrap_or_else(|e| panic!("reading the replica of {product_id}: {e:?}"));
    match replica {
        Some(row) => Some((row.text(0), row.uint(1))),
        None => catalog::get_product(product_id).map(|p| (p.name, p.price)),
    }
}

fn set_status(order_id: &str, status: OrderStatus) {
    exec("UPDATE orders SET status = ? WHERE order_id = ?", &[text(status_name(status)), text(order_id)]);
}

fn exec(statement: &str, params: &[moat_sdk::Value]) {
    sql::execute(statement, params).unwrap_or_else(|e| panic!("{statement}: {e:?}"));
}

fn load(order_id: &str) -> Option<Order> {
    let head = sql::query_one("SELECT customer_id, status FROM orders WHERE order_id = ?", &[text(order_id)])
        .unwrap_or_else(|e| panic!("reading order {order_id}: {e:?}"))?;
    let items: Vec<OrderItem> = sql::query(
        "SELECT product_id, quantity, product_name, unit_price FROM order_items WHERE order_id = ? ORDER BY line",
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
