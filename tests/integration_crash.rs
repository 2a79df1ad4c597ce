//! Crashes, aimed where they hurt, then checked like a queue checker: every
//! acknowledged change is reflected, no event took effect twice or was lost,
//! the replica equals product's truth, and the stock invariant holds.
//!
//! - `moat up` SIGKILLed under a concurrent workload, at moments chosen
//!   inside work: while clients have calls in flight (counted when a client
//!   saw its connection drop), and right after the host logged the start of
//!   a delivery batch (counted when the subscriber's cursor shows the batch
//!   did not commit). At least 30 of each.
//! - One-shot `moat call` processes SIGKILLed at a moment drawn uniformly
//!   within the measured duration of a call (counted only when the process
//!   was still running).
//!
//! Every error a client sees must be explained by a kill; any other fails
//! the test with its text. Every wait has a deadline.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use moat::control::client::Client;

use crate::common::*;

/// A small deterministic generator, seeded from the clock and printed, so a
/// failing run can be repeated with `MOAT_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("MOAT_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        println!("crash test seed {seed} (set MOAT_CRASH_SEED to repeat)");
        Rng(seed)
    }

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

const PRODUCTS: usize = 4;
const STOCK: u32 = 20;

/// The shop plus the listener, seeded: `SLOW-0` .. `SLOW-3`, whose events the
/// listener takes 3 ms each to handle, so delivery batches take a while.
fn seeded_shop() -> TestApp {
    let app = TestApp::new(&[("product", "product"), ("order", "order"), ("listener", "listener")]);
    for p in 0..PRODUCTS {
        app.call_ok(
            "product",
            &format!(r#"create-product({{product-id: "SLOW-{p}", name: "Product {p}", price: 1000, stock: {STOCK}}})"#),
        );
    }
    app
}

/// What the workload had acknowledged.
#[derive(Default)]
struct Acked {
    orders: Vec<String>,
    /// Per product: the last price acknowledged, and later ones that were not.
    prices: BTreeMap<usize, (u64, Vec<u64>)>,
    calls: usize,
}

/// After everything settled: the checker's invariants over the databases.
fn check_invariants(app: &TestApp, acked: &Acked) -> usize {
    let product = app.db("product");
    let order = app.db("order");
    let listener = app.db("listener");
    checks::acknowledged_orders_exist(&order, &acked.orders);
    let prices: Vec<i64> = checks::column(&product, "SELECT price FROM products ORDER BY product_id");
    for (p, (last, later)) in &acked.prices {
        let now = prices[*p] as u64;
        assert!(
            now == *last || later.contains(&now),
            "SLOW-{p}: price {now}, last acknowledged {last}, unacknowledged after it {later:?}"
        );
    }
    checks::replica_is_truth(&product, &order);
    checks::pending_items_follow_the_replica(&order);
    checks::every_submission_answered(&order);
    checks::stock_adds_up(&product, &order, (PRODUCTS as i64) * i64::from(STOCK));
    let published = checks::every_event_applied_once_in_order(&product, &listener);
    let head = |db: &rusqlite::Connection| -> i64 {
        db.query_row("SELECT coalesce(max(seq), 0) FROM _moat_outbox", [], |r| r.get(0)).unwrap()
    };
    let cursor = |db: &rusqlite::Connection, publisher: &str| -> i64 {
        db.query_row("SELECT coalesce(max(seq), 0) FROM _moat_cursor WHERE publisher = ?1", [publisher], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(cursor(&order, "product"), head(&product));
    assert_eq!(cursor(&listener, "product"), head(&product));
    assert_eq!(cursor(&product, "order"), head(&order));
    published
}

/// One operation of the workload, for worker `t` at step `i`.
fn operation(
    rng: &mut Rng,
    t: usize,
    i: usize,
    placed: &[String],
) -> (&'static str, String, Option<(usize, u64)>, Option<String>) {
    match rng.below(10) {
        0..=3 => {
            // Each worker owns one product and only raises its price: the stored
            // price can be checked against the last one acknowledged.
            let price = 2000 + i as u64;
            ("product", format!(r#"set-price("SLOW-{t}", {price})"#), Some((t, price)), None)
        }
        4..=6 => {
            let lines: Vec<String> = (0..1 + rng.below(2))
                .map(|_| {
                    format!(r#"{{product-id: "SLOW-{}", quantity: {}}}"#, rng.below(PRODUCTS as u64), 1 + rng.below(4))
                })
                .collect();
            let id = format!("W{t}-{i}");
            ("order", format!(r#"place-order("{id}", "C{t}", [{}])"#, lines.join(", ")), None, Some(id))
        }
        7 | 8 if !placed.is_empty() => {
            let id = &placed[rng.below(placed.len() as u64) as usize];
            ("order", format!(r#"submit-order("{id}")"#), None, None)
        }
        _ if !placed.is_empty() => {
            let id = &placed[rng.below(placed.len() as u64) as usize];
            ("order", format!(r#"cancel-order("{id}")"#), None, None)
        }
        _ => ("product", format!(r#"get-product("SLOW-{t}")"#), None, None),
    }
}

#[test]
fn killing_moat_up_mid_call_and_mid_delivery_loses_nothing_and_applies_nothing_twice() {
    let app = seeded_shop();
    let env = [("RUST_LOG", "warn,moat::delivery=debug"), ("NO_COLOR", "1")];
    let start_host = || Host::start_with(&app.manifest(), &app.data(), &env, true);

    let client: Arc<RwLock<Option<Client>>> = Arc::default();
    let epoch = Arc::new(AtomicU64::new(0));
    let inflight = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acked::default()));
    // Calls whose connection dropped mid-call, by the kill (epoch) that dropped them.
    let dropped: Arc<Mutex<BTreeMap<u64, usize>>> = Arc::default();
    let unexpected: Arc<Mutex<Vec<String>>> = Arc::default();

    let (mut host, mut log) = start_host();
    *client.write().unwrap() = Some(host.client.clone());
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (client, epoch, inflight, stop, acked, dropped, unexpected) = (
                client.clone(),
                epoch.clone(),
                inflight.clone(),
                stop.clone(),
                acked.clone(),
                dropped.clone(),
                unexpected.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9 ^ ((t as u64 + 1) * 0x2545_f491));
                let mut placed = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    // The epoch is read before the client: a kill after this
                    // moment, of this client's host, is seen as one.
                    let before = epoch.load(Ordering::SeqCst);
                    let Some(c) = client.read().unwrap().clone() else {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    };
                    let (component, call, price, order) = operation(&mut rng, t, i, &placed);
                    inflight.fetch_add(1, Ordering::SeqCst);
                    let result = c.call(component, &call, false);
                    inflight.fetch_sub(1, Ordering::SeqCst);
                    match result {
                        Ok(r) => {
                            let mut acked = acked.lock().unwrap();
                            acked.calls += 1;
                            if r.returned_err {
                                continue;
                            }
                            if let Some((p, price)) = price {
                                acked.prices.insert(p, (price, Vec::new()));
                            }
                            if let Some(o) = order {
                                acked.orders.push(o.clone());
                                placed.push(o);
                            }
                        }
                        Err(e) => {
                            let now = epoch.load(Ordering::SeqCst);
                            let text = format!("{e:#}");
                            if now == before {
                                unexpected.lock().unwrap().push(format!("{call}: {text}"));
                                continue;
                            }
                            // Killed: the call may or may not have committed.
                            if let Some((p, price)) = price {
                                acked.lock().unwrap().prices.entry(p).or_insert((0, Vec::new())).1.push(price);
                            }
                            if let Some(o) = order {
                                placed.push(o);
                            }
                            let in_flight =
                                ["closed", "reset", "broken pipe", "incomplete", "canceled", "IncompleteMessage"]
                                    .iter()
                                    .any(|w| text.contains(w));
                            if in_flight {
                                *dropped.lock().unwrap().entry(now).or_default() += 1;
                            }
                        }
                    }
                }
            })
        })
        .collect();

    let mut rng = Rng::seeded();
    let (mut mid_call, mut mid_batch, mut kills) = (0, 0, 0);
    let started = Instant::now();
    while (mid_call < 30 || mid_batch < 30) && started.elapsed() < Duration::from_secs(150) {
        let aim_at_batch = mid_batch < 30 && (mid_call >= 30 || rng.below(2) == 0);
        // Let the workload run a while on the fresh host first.
        std::thread::sleep(Duration::from_millis(50 + rng.below(200)));
        let log_rx = log.take().unwrap();
        while log_rx.try_recv().is_ok() {}
        let mut batch_started = None;
        if aim_at_batch {
            // Right after the host says a delivery batch starts.
            let wait = Instant::now();
            while batch_started.is_none() && wait.elapsed() < Duration::from_secs(5) {
                if let Ok(line) = log_rx.recv_timeout(Duration::from_millis(100))
                    && line.contains("batch start")
                {
                    batch_started = Some(line);
                }
            }
        } else {
            // While calls are in flight, at a moment drawn within a call's span.
            let wait = Instant::now();
            while inflight.load(Ordering::SeqCst) == 0 && wait.elapsed() < Duration::from_secs(5) {
                std::hint::spin_loop();
            }
            std::thread::sleep(Duration::from_micros(rng.below(1500)));
        }
        *client.write().unwrap() = None;
        let this = epoch.fetch_add(1, Ordering::SeqCst) + 1;
        host.kill();
        kills += 1;
        // The subscriber's cursor tells whether the batch committed before the kill.
        if let Some(start) = batch_started {
            let field = |k: &str| {
                start
                    .split(k)
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_string()
            };
            let (subscriber, publisher, first) = (field("subscriber="), field("publisher="), field("first="));
            let first: i64 = first.parse().unwrap_or_else(|_| panic!("no batch in {start:?}"));
            let cursor: i64 = app
                .db(&subscriber)
                .query_row("SELECT coalesce(max(seq), 0) FROM _moat_cursor WHERE publisher = ?1", [&publisher], |r| {
                    r.get(0)
                })
                .unwrap();
            if cursor < first {
                mid_batch += 1;
            }
        }
        // Let the workers see their calls end before counting them.
        let wait = Instant::now();
        while inflight.load(Ordering::SeqCst) > 0 && wait.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if dropped.lock().unwrap().get(&this).is_some_and(|n| *n > 0) {
            mid_call += 1;
        }
        let (h, l) = start_host();
        host = h;
        log = l;
        *client.write().unwrap() = Some(host.client.clone());
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let unexpected = unexpected.lock().unwrap();
    assert!(unexpected.is_empty(), "calls failed with no kill to explain it; the first: {:?}", unexpected.first());
    assert!(mid_call >= 30, "only {mid_call} of {kills} kills interrupted a call in flight");
    assert!(mid_batch >= 30, "only {mid_batch} of {kills} kills landed inside a delivery batch");

    // Settle, stop cleanly, then check the files.
    let wait = Instant::now();
    loop {
        let status = host.client.status().unwrap();
        if status.subscriptions.iter().all(|s| s.cursor >= s.head) {
            break;
        }
        assert!(wait.elapsed() < Duration::from_secs(30), "events did not settle: {:?}", status.subscriptions);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(host.stop(), 0);
    let acked = acked.lock().unwrap();
    let published = check_invariants(&app, &acked);
    println!(
        "moat up killed {kills} times in {:.0?}: {mid_call} kills dropped a call in flight, {mid_batch} landed inside a delivery batch; \
         {} calls acknowledged ({} orders); {published} product events applied exactly once in order; 0 lost, 0 duplicated",
        started.elapsed(),
        acked.calls,
        acked.orders.len()
    );
}

#[test]
fn killed_one_shot_calls_lose_nothing_and_apply_nothing_twice() {
    let app = seeded_shop();
    let mut rng = Rng::seeded();
    let run = |call: &(&str, String)| {
        Command::new(env!("CARGO_BIN_EXE_moat"))
            .arg("--manifest")
            .arg(app.manifest())
            .arg("--data")
            .arg(app.data())
            .args(["call", call.0, &call.1])
            .env("MOAT_CACHE_DIR", cache_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // How long a call takes here, start to exit: kills are drawn within it.
    let mut spans: Vec<Duration> = (0..8)
        .map(|_| {
            let start = Instant::now();
            let out = run(&("product", r#"get-product("SLOW-0")"#.into())).wait_with_output().unwrap();
            assert!(out.status.success());
            start.elapsed()
        })
        .collect();
    spans.sort();
    let span = spans[spans.len() / 2];

    let mut acked = Acked::default();
    let mut placed = Vec::new();
    let (mut ops, mut killed, mut missed) = (0, 0, 0);
    let started = Instant::now();
    while (killed < 25 || ops < 80) && started.elapsed() < Duration::from_secs(90) {
        ops += 1;
        let (component, call, price, order) = operation(&mut rng, 0, ops, &placed);
        let mut child = run(&(component, call.clone()));
        let kill_at = (rng.below(2) == 0).then(|| Duration::from_micros(rng.below(span.as_micros() as u64)));
        let was_killed = match kill_at {
            Some(at) => {
                std::thread::sleep(at);
                match child.try_wait().unwrap() {
                    Some(_) => {
                        missed += 1;
                        false
                    }
                    None => {
                        child.kill().unwrap();
                        killed += 1;
                        true
                    }
                }
            }
            None => false,
        };
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if was_killed {
            if let Some((p, price)) = price {
                acked.prices.entry(p).or_insert((0, Vec::new())).1.push(price);
            }
            if let Some(o) = order {
                placed.push(o);
            }
            continue;
        }
        // Not killed: it must have answered, one way or the other.
        let code = out.status.code();
        assert!(
            code == Some(0) || code == Some(1),
            "{call} failed without being killed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        acked.calls += 1;
        if code == Some(0) && stdout.starts_with("ok(") {
            if let Some((p, price)) = price {
                acked.prices.insert(p, (price, Vec::new()));
            }
            if let Some(o) = order {
                acked.orders.push(o.clone());
                placed.push(o);
            }
        }
    }
    assert!(
        killed >= 25,
        "only {killed} calls were killed while running ({missed} kills came too late) in {ops} operations"
    );
    // The next process delivers whatever the killed ones left.
    app.call_ok("listener", "seen()");
    let published = check_invariants(&app, &acked);
    println!(
        "one-shot: {ops} calls, {killed} killed while running (at a moment within the {span:?} a call takes; {missed} more finished first), \
         {} orders acknowledged; {published} product events applied exactly once in order; 0 lost, 0 duplicated",
        acked.orders.len()
    );
}
