//! Crashes: `moat` processes killed with SIGKILL at random moments (during
//! start, a call, or event delivery) under a stream of price changes, orders
//! and submissions. Afterwards, like a queue checker: every acknowledged
//! change is reflected, no event took effect twice or was lost, the replica
//! equals product's truth, and the stock invariant holds.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A small deterministic generator, seeded from the clock and printed, so a
/// failing run can be repeated with `MOAT_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

enum Op {
    SetPrice { product: usize, price: u64 },
    Place { order: String, lines: Vec<(usize, u32)> },
    Submit { order: String },
    Cancel { order: String },
}

const PRODUCTS: usize = 4;
const STOCK: u32 = 15;

#[test]
fn killed_processes_lose_nothing_and_apply_nothing_twice() {
    let seed = std::env::var("MOAT_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    println!("crash test seed {seed} (set MOAT_CRASH_SEED to repeat)");
    let mut rng = Rng(seed);

    let app = TestApp::new(&[("product", "product"), ("order", "order"), ("listener", "listener")]);
    for p in 0..PRODUCTS {
        app.call_ok(
            "product",
            &format!(r#"create-product({{product-id: "P{p}", name: "Product {p}", price: 1000, stock: {STOCK}}})"#),
        );
    }

    let (mut acked_prices, mut unacked_prices): (BTreeMap<usize, u64>, BTreeMap<usize, Vec<u64>>) = Default::default();
    let mut placed: Vec<String> = Vec::new(); // acknowledged, or possibly committed
    let mut acked_orders: Vec<String> = Vec::new();
    let (mut ops, mut kills, mut next_price) = (0, 0, 2000u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (kills < 25 || ops < 80) && Instant::now() < deadline {
        ops += 1;
        let op = match rng.below(10) {
            0..=3 => {
                next_price += 1;
                Op::SetPrice { product: rng.below(PRODUCTS as u64) as usize, price: next_price }
            }
            4..=6 => {
                let lines = (0..1 + rng.below(2))
                    .map(|_| (rng.below(PRODUCTS as u64) as usize, 1 + rng.below(6) as u32))
                    .collect();
                Op::Place { order: format!("O{ops}"), lines }
            }
            7 | 8 if !placed.is_empty() => {
                Op::Submit { order: placed[rng.below(placed.len() as u64) as usize].clone() }
            }
            _ if !placed.is_empty() => Op::Cancel { order: placed[rng.below(placed.len() as u64) as usize].clone() },
            _ => continue,
        };
        let call = match &op {
            Op::SetPrice { product, price } => ("product", format!(r#"set-price("P{product}", {price})"#)),
            Op::Place { order, lines } => {
                let lines: Vec<String> =
                    lines.iter().map(|(p, q)| format!(r#"{{product-id: "P{p}", quantity: {q}}}"#)).collect();
                ("order", format!(r#"place-order("{order}", "C1", [{}])"#, lines.join(", ")))
            }
            Op::Submit { order } => ("order", format!(r#"submit-order("{order}")"#)),
            Op::Cancel { order } => ("order", format!(r#"cancel-order("{order}")"#)),
        };

        let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
            .arg("--manifest")
            .arg(app.manifest())
            .arg("--data")
            .arg(app.data())
            .args(["call", call.0, &call.1])
            .env("MOAT_CACHE_DIR", cache_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Half the calls are killed somewhere between start and finish.
        let kill_after = (rng.below(2) == 0).then(|| Duration::from_micros(rng.below(40_000)));
        let acked = match kill_after {
            Some(after) => {
                std::thread::sleep(after);
                match child.try_wait().unwrap() {
                    Some(status) => status.success(),
                    None => {
                        child.kill().unwrap();
                        child.wait().unwrap();
                        kills += 1;
                        false
                    }
                }
            }
            None => child.wait().unwrap().success(),
        };
        let stdout = {
            use std::io::Read;
            let mut s = String::new();
            child.stdout.take().unwrap().read_to_string(&mut s).unwrap();
            s
        };
        let acked = acked && stdout.starts_with("ok(");
        match op {
            Op::SetPrice { product, price } if acked => {
                acked_prices.insert(product, price);
                unacked_prices.remove(&product);
            }
            Op::SetPrice { product, price } => unacked_prices.entry(product).or_default().push(price),
            Op::Place { order, .. } => {
                if acked {
                    acked_orders.push(order.clone());
                }
                placed.push(order);
            }
            Op::Submit { .. } | Op::Cancel { .. } => {}
        }
    }
    assert!(kills >= 20, "only {kills} processes were killed mid-run in {ops} operations");

    // Settle: the next process delivers whatever the killed ones left.
    let seen = app.call_ok("listener", "seen()");
    let product = app.db("product");
    let order = app.db("order");
    let listener = app.db("listener");

    // Every acknowledged change is reflected: orders, and prices (the last
    // acknowledged, or a later one that committed without its
    // acknowledgement reaching us).
    checks::acknowledged_orders_exist(&order, &acked_orders);
    let prices: Vec<i64> = checks::column(&product, "SELECT price FROM products ORDER BY product_id");
    for (p, acked) in &acked_prices {
        let now = prices[*p] as u64;
        let later = unacked_prices.get(p).cloned().unwrap_or_default();
        assert!(
            now == *acked || later.contains(&now),
            "P{p}: price {now}, last acknowledged {acked}, unacknowledged after it {later:?}"
        );
    }
    // Copies agree with the truth, every saga finished, stock adds up, and
    // every product event took effect exactly once, in order.
    checks::replica_is_truth(&product, &order);
    checks::pending_items_follow_the_replica(&order);
    checks::every_submission_answered(&order);
    checks::stock_adds_up(&product, &order, (PRODUCTS as i64) * i64::from(STOCK));
    let published = checks::every_event_applied_once_in_order(&product, &listener);
    let head = |db: &rusqlite::Connection| -> i64 {
        db.query_row("SELECT max(seq) FROM _moat_outbox", [], |r| r.get(0)).unwrap()
    };
    let cursor = |db: &rusqlite::Connection, publisher: &str| -> i64 {
        db.query_row("SELECT seq FROM _moat_cursor WHERE publisher = ?1", [publisher], |r| r.get(0)).unwrap()
    };
    assert_eq!(cursor(&order, "product"), head(&product));
    assert_eq!(cursor(&listener, "product"), head(&product));
    assert_eq!(cursor(&product, "order"), head(&order));
    assert!(seen.starts_with("[\"created P0\""), "{seen}");

    let orders: BTreeMap<String, String> = order
        .prepare("SELECT order_id, status FROM orders")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let statuses = orders.values().fold(BTreeMap::<&str, usize>::new(), |mut m, s| {
        *m.entry(s.as_str()).or_default() += 1;
        m
    });
    println!(
        "crash test: {ops} operations, {kills} processes killed mid-run, {} orders acknowledged ({} exist: {statuses:?}), \
         {} product events published and applied exactly once, {} order events; 0 lost, 0 duplicated",
        acked_orders.len(),
        orders.len(),
        published,
        count(&order, "_moat_outbox"),
    );
}
