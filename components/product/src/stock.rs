//! Stock reservations: the product service's answers to order events.
//! All or nothing per order, never below zero, each order answered once.

use std::collections::BTreeMap;

use crate::bindings::shop::order::events::OrderEvent;
use crate::bindings::shop::order::types::OrderLine;
use crate::bindings::shop::product::events::{ProductEvent, StockLevel, StockRejection};
use crate::bindings::shop::product::publish::publish;
use crate::products::{exec, find};
use moat_sdk::sql::{self, int, text};

/// Applies one order event.
pub fn handle(event: OrderEvent) {
    match event {
        OrderEvent::Submitted(order) => reserve(&order.order_id, &order.lines),
        OrderEvent::Cancelled(order_id) => release(&order_id),
        OrderEvent::Placed(_) => {}
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
