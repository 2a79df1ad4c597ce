//! The native baselines: the same SQL as the components run, done directly
//! with rusqlite in plain Rust, with the same SQLite settings (WAL,
//! `synchronous = NORMAL`, foreign keys on), no Wasm and no host.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

/// Opens a database the way the host opens a component's.
pub fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.pragma_update(None, "synchronous", "normal").unwrap();
    conn.pragma_update(None, "foreign_keys", "on").unwrap();
    conn.set_prepared_statement_cache_capacity(128);
    conn
}

/// A product row, as the component returns it.
#[allow(dead_code, reason = "read to be fair to the component, which builds the same")]
pub struct Product {
    pub product_id: String,
    pub name: String,
    pub price: i64,
    pub stock: i64,
}

/// The catalog: product's tables, seeded with `n` products `P0000`...
pub fn catalog(path: &Path, n: usize) -> Connection {
    let conn = open(path);
    conn.execute_batch(
        "CREATE TABLE products (
            product_id TEXT PRIMARY KEY, name TEXT NOT NULL,
            price INTEGER NOT NULL CHECK (price >= 0), stock INTEGER NOT NULL CHECK (stock >= 0))",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..n {
        tx.execute(
            "INSERT INTO products VALUES (?1, ?2, 1000, 100)",
            params![format!("P{i:04}"), format!("Product {i}")],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    conn
}

/// `get-product`: one point read.
pub fn get_product(conn: &Connection, id: &str) -> Option<Product> {
    conn.prepare_cached("SELECT product_id, name, price, stock FROM products WHERE product_id = ?")
        .unwrap()
        .query_row([id], |r| Ok(Product { product_id: r.get(0)?, name: r.get(1)?, price: r.get(2)?, stock: r.get(3)? }))
        .optional()
        .unwrap()
}

/// Order's tables with a replica of `n` products.
pub fn orders(path: &Path, n: usize) -> Connection {
    let conn = open(path);
    conn.execute_batch(
        "CREATE TABLE orders (order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL);
         CREATE TABLE order_items (
            order_id TEXT NOT NULL REFERENCES orders (order_id), line INTEGER NOT NULL, product_id TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity > 0), product_name TEXT NOT NULL,
            unit_price INTEGER NOT NULL CHECK (unit_price >= 0), PRIMARY KEY (order_id, line));
         CREATE INDEX order_items_by_product ON order_items (product_id);
         CREATE TABLE product_replica (product_id TEXT PRIMARY KEY, name TEXT NOT NULL, price INTEGER NOT NULL);
         CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, event TEXT NOT NULL,
            payload TEXT NOT NULL, published_us INTEGER NOT NULL)",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..n {
        tx.execute(
            "INSERT INTO product_replica VALUES (?1, ?2, 1000)",
            params![format!("P{i:04}"), format!("Product {i}")],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    conn
}

/// `place-order` with two lines: the same statements the order component
/// runs, and its `placed` event written to the outbox, in one transaction.
/// Returns the items: product, quantity, the name and price copied.
pub fn place_order(conn: &Connection, order_id: &str, lines: &[(&str, u32)]) -> Vec<(String, u32, String, i64)> {
    let tx = conn.unchecked_transaction().unwrap();
    let exists: Option<String> = tx
        .prepare_cached("SELECT customer_id, status FROM orders WHERE order_id = ?")
        .unwrap()
        .query_row([order_id], |r| r.get(0))
        .optional()
        .unwrap();
    assert!(exists.is_none());
    let mut items = Vec::new();
    for (product, quantity) in lines {
        let (name, price): (String, i64) = tx
            .prepare_cached("SELECT name, price FROM product_replica WHERE product_id = ?")
            .unwrap()
            .query_row([product], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        items.push((product.to_string(), *quantity, name, price));
    }
    tx.prepare_cached("INSERT INTO orders (order_id, customer_id, status) VALUES (?, ?, ?)")
        .unwrap()
        .execute(params![order_id, "C1", "pending"])
        .unwrap();
    for (line, (product, quantity, name, price)) in items.iter().enumerate() {
        tx.prepare_cached(
            "INSERT INTO order_items (order_id, line, product_id, quantity, product_name, unit_price) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .unwrap()
        .execute(params![order_id, line as i64, product, quantity, name, price])
        .unwrap();
    }
    let payload = format!(
        "placed({{order-id: {order_id:?}, customer-id: \"C1\", items: [{}], status: pending, total: {}}})",
        items
            .iter()
            .map(|(p, q, n, u)| format!("{{product-id: {p:?}, quantity: {q}, product-name: {n:?}, unit-price: {u}}}"))
            .collect::<Vec<_>>()
            .join(", "),
        items.iter().map(|(_, q, _, u)| i64::from(*q) * u).sum::<i64>()
    );
    tx.prepare_cached("INSERT INTO outbox (topic, event, payload, published_us) VALUES (?, ?, ?, ?)")
        .unwrap()
        .execute(params!["shop:order", "placed", payload, 0])
        .unwrap();
    tx.commit().unwrap();
    items
}

/// A publisher's outbox and a subscriber's replica, natively.
pub struct Pipeline {
    publisher: Connection,
    subscriber: Connection,
    cursor: i64,
}

impl Pipeline {
    pub fn new(dir: &Path) -> Pipeline {
        let publisher = open(&dir.join("native-pub.db"));
        publisher
            .execute_batch(
                "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, event TEXT NOT NULL,
                    payload TEXT NOT NULL, published_us INTEGER NOT NULL)",
            )
            .unwrap();
        let subscriber = open(&dir.join("native-sub.db"));
        subscriber
            .execute_batch(
                "CREATE TABLE notes (note TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
                 CREATE TABLE cursor (publisher TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
            )
            .unwrap();
        Pipeline { publisher, subscriber, cursor: 0 }
    }

    /// Publishes `count` notes in one transaction.
    pub fn publish(&self, prefix: &str, count: usize) {
        let tx = self.publisher.unchecked_transaction().unwrap();
        for i in 0..count {
            tx.prepare_cached("INSERT INTO outbox (topic, event, payload, published_us) VALUES (?, ?, ?, ?)")
                .unwrap()
                .execute(params!["test:probe", "note", format!("note(\"{prefix}-{i}\")"), now_us()])
                .unwrap();
        }
        tx.commit().unwrap();
    }

    /// Applies everything published so far, `batch` events per transaction
    /// with the cursor; returns the publish-to-applied times, in µs.
    pub fn drain(&mut self, batch: usize) -> Vec<i64> {
        let mut latencies = Vec::new();
        loop {
            let events: Vec<(i64, String, i64)> = self
                .publisher
                .prepare_cached("SELECT seq, payload, published_us FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?")
                .unwrap()
                .query_map(params![self.cursor, batch as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let Some(last) = events.last().map(|e| e.0) else { return latencies };
            let tx = self.subscriber.unchecked_transaction().unwrap();
            for (_, payload, _) in &events {
                let note = payload.trim_start_matches("note(\"").trim_end_matches("\")");
                tx.prepare_cached(
                    "INSERT INTO notes (note, n) VALUES (?, 1) ON CONFLICT (note) DO UPDATE SET n = n + 1",
                )
                .unwrap()
                .execute([note])
                .unwrap();
            }
            tx.prepare_cached(
                "INSERT INTO cursor (publisher, seq) VALUES ('pub', ?1) ON CONFLICT (publisher) DO UPDATE SET seq = ?1",
            )
            .unwrap()
            .execute([last])
            .unwrap();
            tx.commit().unwrap();
            let now = now_us();
            latencies.extend(events.iter().map(|e| now - e.2));
            self.cursor = last;
        }
    }
}

/// The native event pipeline run as moat runs it: the publisher commits
/// `calls` batches of `batch` events while a consumer thread applies what
/// is new, `batch` per transaction, as soon as it is woken. Returns events
/// per second, from the first publish to the last applied.
pub fn pipelined(dir: &Path, prefix: &str, batch: usize, calls: usize) -> f64 {
    let Pipeline { publisher, subscriber, .. } = Pipeline::new(dir);
    let (tx, rx) = mpsc::channel::<()>();
    let pub_path = publisher.path().unwrap().to_string();
    let started = Instant::now();
    let consumer = std::thread::spawn(move || {
        let mut consumer = Pipeline { publisher: open(Path::new(&pub_path)), subscriber, cursor: 0 };
        let mut applied = 0;
        while rx.recv().is_ok() {
            while rx.try_recv().is_ok() {}
            applied += consumer.drain(batch).len();
        }
        applied + consumer.drain(batch).len()
    });
    let producer = Pipeline { publisher, subscriber: Connection::open_in_memory().unwrap(), cursor: 0 };
    for c in 0..calls {
        producer.publish(&format!("{prefix}c{c}"), batch);
        let _ = tx.send(());
    }
    drop(tx);
    let applied = consumer.join().unwrap();
    assert_eq!(applied, batch * calls, "every event applied once");
    applied as f64 / started.elapsed().as_secs_f64()
}

/// The native event pipeline at a steady rate: a publisher thread commits
/// one event at a time and wakes a consumer thread, which applies what is
/// new in one transaction. Returns the publish-to-applied times, in µs.
pub fn steady_latencies(dir: &Path, per_second: u64, duration: Duration) -> Vec<i64> {
    let pipeline = Pipeline::new(dir);
    let Pipeline { publisher, subscriber, .. } = pipeline;
    let (tx, rx) = mpsc::channel::<()>();
    let consumer = {
        let pub_path = publisher.path().unwrap().to_string();
        std::thread::spawn(move || {
            let mut consumer = Pipeline { publisher: open(Path::new(&pub_path)), subscriber, cursor: 0 };
            let mut latencies = Vec::new();
            while rx.recv().is_ok() {
                while rx.try_recv().is_ok() {}
                latencies.extend(consumer.drain(1000));
            }
            latencies.extend(consumer.drain(1000));
            latencies
        })
    };
    let producer = Pipeline { publisher, subscriber: Connection::open_in_memory().unwrap(), cursor: 0 };
    pace(per_second, duration, |i| {
        producer.publish(&format!("steady-{i}"), 1);
        let _ = tx.send(());
    });
    drop(tx);
    consumer.join().unwrap()
}

/// Calls `f(i)` `per_second` times a second for `duration`, catching up
/// when behind.
pub fn pace(per_second: u64, duration: Duration, mut f: impl FnMut(u64)) {
    let start = Instant::now();
    let total = per_second * duration.as_millis() as u64 / 1000;
    let mut done = 0;
    while done < total {
        let due = (start.elapsed().as_micros() as u64 * per_second / 1_000_000).min(total);
        while done < due {
            f(done);
            done += 1;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}
