//! The shop's invariants once events have settled: the checker the crash,
//! SIGTERM and multi-host tests share (like a queue checker: what was
//! acknowledged is there, nothing was applied twice, copies agree with the
//! truth).

use rusqlite::Connection;
use rusqlite::types::FromSql;

/// One column of a query, every row.
pub fn column<T: FromSql>(db: &Connection, sql: &str) -> Vec<T> {
    db.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// Every acknowledged order is stored.
pub fn acknowledged_orders_exist(order: &Connection, acked: &[String]) {
    let stored: Vec<String> = column(order, "SELECT order_id FROM orders");
    for o in acked {
        assert!(stored.contains(o), "acknowledged order {o} was lost");
    }
}

/// Order's replica of the catalog equals product's truth: ids, names, prices.
pub fn replica_is_truth(product: &Connection, order: &Connection) {
    let truth: Vec<String> =
        column(product, "SELECT product_id || '|' || name || '|' || price FROM products ORDER BY 1");
    let replica: Vec<String> =
        column(order, "SELECT product_id || '|' || name || '|' || price FROM product_replica ORDER BY 1");
    assert_eq!(replica, truth, "order's replica is not product's truth");
}

/// Pending orders' items follow the replica's prices.
pub fn pending_items_follow_the_replica(order: &Connection) {
    let stale: Vec<i64> = column(
        order,
        "SELECT count(*) FROM order_items i JOIN orders o USING (order_id) JOIN product_replica r USING (product_id)
         WHERE o.status = 'pending' AND i.unit_price != r.price",
    );
    assert_eq!(stale, [0], "pending order items that did not follow a price change");
}

/// No submitted order still waits for product's answer.
pub fn every_submission_answered(order: &Connection) {
    let waiting: Vec<String> = column(order, "SELECT order_id FROM orders WHERE status = 'submitted'");
    assert!(waiting.is_empty(), "orders still wait for an answer: {waiting:?}");
}

/// Stock on hand plus what confirmed orders hold is what was added (and
/// product's reservations agree with order's statuses).
pub fn stock_adds_up(product: &Connection, order: &Connection, added: i64) {
    let on_hand: i64 = product.query_row("SELECT coalesce(sum(stock), 0) FROM products", [], |r| r.get(0)).unwrap();
    let held: i64 = order
        .query_row(
            "SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o USING (order_id) WHERE o.status = 'confirmed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(on_hand + held, added, "stock on hand {on_hand} + held by confirmed orders {held}");
    let confirmed: Vec<String> = column(order, "SELECT order_id FROM orders WHERE status = 'confirmed' ORDER BY 1");
    let reserved: Vec<String> =
        column(product, "SELECT order_id FROM reservations WHERE status = 'reserved' ORDER BY 1");
    assert_eq!(confirmed, reserved, "confirmed orders vs product's reservations");
}

/// Every product event was applied by the listener exactly once, in
/// publication order. Returns how many.
pub fn every_event_applied_once_in_order(product: &Connection, listener: &Connection) -> usize {
    let published: Vec<String> = column::<String>(
        product,
        "SELECT event || ' ' || substr(payload, instr(payload, '\"') + 1, instr(substr(payload, instr(payload, '\"') + 1), '\"') - 1)
         FROM _moat_outbox ORDER BY seq",
    );
    let applied: Vec<String> = column(listener, "SELECT event FROM seen ORDER BY n");
    assert_eq!(applied.len(), published.len(), "events applied vs published");
    assert_eq!(applied, published, "events applied out of order, or not the ones published");
    published.len()
}
