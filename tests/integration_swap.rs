//! Swapping one component's version inside a running host (`moat up`):
//! zero failed calls, a compatibility gate, a migration that either happens
//! whole or not at all, and nobody else paused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

fn seed(host: &Host, products: usize) {
    for p in 0..products {
        host.call(
            "product",
            &format!(r#"create-product({{product-id: "P{p}", name: "Product {p}", price: 1000, stock: 1000}})"#),
        )
        .unwrap();
    }
}

/// Waits until every subscription has caught up with its publisher.
fn drained(host: &Host) {
    let start = Instant::now();
    loop {
        let status = host.client.status().unwrap();
        if status.subscriptions.iter().all(|s| s.cursor >= s.head) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "events did not drain: {:?}", status.subscriptions);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn swapping_product_under_load_fails_no_call_and_loses_no_event() {
    let app = TestApp::new(&[("product", "product"), ("order", "order"), ("listener", "listener")]);
    let host = app.up();
    seed(&host, 5);

    const THREADS: usize = 4;
    const CALLS: usize = 600;
    let (done, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
    let placed = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (client, done, failures, placed) =
                (host.client.clone(), done.clone(), failures.clone(), placed.clone());
            std::thread::spawn(move || {
                for i in 0..CALLS {
                    let p = (t + i) % 5;
                    let (component, call) = match i % 4 {
                        0 => ("product", format!(r#"get-product("P{p}")"#)),
                        1 => ("product", format!(r#"set-price("P{p}", {})"#, 1000 + t * 10_000 + i)),
                        2 => (
                            "order",
                            format!(r#"place-order("T{t}-{i}", "C{t}", [{{product-id: "P{p}", quantity: 1}}])"#),
                        ),
                        _ => ("order", format!(r#"get-order("T{t}-{}")"#, i - 1)),
                    };
                    match client.call(component, &call, false) {
                        Ok(r) if !r.returned_err => {
                            if i % 4 == 2 {
                                placed.lock().unwrap().push(format!("T{t}-{i}"));
                            }
                        }
                        Ok(r) => failures.lock().unwrap().push(format!("{call}: {:?}", r.wave)),
                        Err(e) => failures.lock().unwrap().push(format!("{call}: {e:#}")),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let waiting = Instant::now();
    while done.load(Ordering::Relaxed) < THREADS * CALLS / 3 {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "the load did not get going: {:?}",
            failures.lock().unwrap().first()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let order_before = host.client.status().unwrap().components.into_iter().find(|c| c.name == "order").unwrap();
    let report = host.client.swap("product", Some(guest("product_v2")), false).unwrap();
    let at_swap = done.load(Ordering::Relaxed);
    assert_eq!(report.to_version.as_deref(), Some("1.1.0"));
    assert_eq!(report.schema.as_deref(), Some("1.1"));
    for w in workers {
        w.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{} calls failed, the first: {:?}", failures.len(), failures.first());
    assert!(at_swap < THREADS * CALLS, "the swap happened after the load ended");

    // The new function answers; order never noticed.
    assert_eq!(
        host.call("product", r#"search-products("DUCT 3")"#).unwrap(),
        host.call("product", r#"get-product("P3")"#).unwrap().replacen("some(", "[", 1).replacen(')', "]", 1)
    );
    let status = host.client.status().unwrap();
    let product = status.components.iter().find(|c| c.name == "product").unwrap();
    let order = status.components.iter().find(|c| c.name == "order").unwrap();
    assert_eq!(product.version.as_deref(), Some("1.1.0"));
    assert_eq!(product.failures, 0);
    assert_eq!(order.sha256, order_before.sha256);
    assert!(order.uptime_secs > order_before.uptime_secs, "order was restarted");
    assert_eq!(order.failures, 0);

    // No event was lost: order's replica converged on product's truth, and
    // every placed order is there.
    drained(&host);
    checks::replica_is_truth(&app.db("product"), &app.db("order"));
    let placed = placed.lock().unwrap();
    assert_eq!(count(&app.db("order"), "orders"), placed.len() as i64);
    // Every product event, before and after the swap, applied exactly once, in order.
    let published = checks::every_event_applied_once_in_order(&app.db("product"), &app.db("listener"));
    println!(
        "swap under load: {} calls, 0 failed, swap at call {at_swap}; {published} product events applied exactly once in order across it: {report:?}",
        THREADS * CALLS
    );
}

#[test]
fn incompatible_builds_are_refused_and_the_old_version_keeps_serving() {
    let app = TestApp::shop();
    let host = app.up();
    seed(&host, 1);

    let major = format!("{:#}", host.client.swap("product", Some(guest("product_major2")), false).unwrap_err());
    assert!(major.contains("swap of `product`"), "{major}");
    assert!(major.contains("refused; version 1.0.0 keeps serving"), "{major}");
    assert!(
        major.contains("`order` imports shop:product/catalog@1.0.0: `product` exports shop:product/catalog@2.0.0, not a compatible version"),
        "{major}"
    );

    let dropped = format!("{:#}", host.client.swap("product", Some(guest("product_dropped")), false).unwrap_err());
    assert!(
        dropped.contains("`order` imports shop:product/catalog@1.0.0: `product` exports shop:product/catalog@1.2.0 but it does not fit; `product` has no function `get-product`"),
        "{dropped}"
    );
    assert!(dropped.contains("variant case `discontinued` is not known to the receiver"), "{dropped}");

    assert!(host.call("product", r#"get-product("P0")"#).unwrap().starts_with("some("));
    let status = host.client.status().unwrap();
    assert_eq!(status.components.iter().find(|c| c.name == "product").unwrap().version.as_deref(), Some("1.0.0"));
}

#[test]
fn a_failing_migration_or_a_trap_at_start_leaves_the_database_as_it_was() {
    let app = TestApp::shop();
    let host = app.up();
    seed(&host, 3);
    host.call("order", r#"place-order("O1", "C1", [{product-id: "P1", quantity: 2}])"#).unwrap();
    let before = snapshot(&app, "product");

    let migrate = format!("{:#}", host.client.swap("product", Some(guest("product_bad_migrate")), false).unwrap_err());
    assert!(migrate.contains("the old version keeps serving and its database is unchanged"), "{migrate}");
    assert!(
        migrate.contains("refused to migrate its database from schema 1.0: the migration failed halfway, as asked"),
        "{migrate}"
    );
    assert_eq!(snapshot(&app, "product"), before);

    let trap = format!("{:#}", host.client.swap("product", Some(guest("product_trap_init")), false).unwrap_err());
    assert!(trap.contains("instantiating `product` failed: it panicked or aborted"), "{trap}");
    assert_eq!(snapshot(&app, "product"), before);

    // Still serving, still the same version, and still writing.
    host.call("product", r#"set-price("P1", 1234)"#).unwrap();
    drained(&host);
    assert!(host.call("order", r#"get-order("O1")"#).unwrap().contains("unit-price: 1234"));
    let status = host.client.status().unwrap();
    assert_eq!(status.components.iter().find(|c| c.name == "product").unwrap().version.as_deref(), Some("1.0.0"));
}

#[test]
fn swapping_order_neither_restarts_nor_fails_product() {
    let app = TestApp::shop();
    let host = app.up();
    seed(&host, 2);
    let product_before = host.client.status().unwrap().components.into_iter().find(|c| c.name == "product").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let calls = {
        let (client, stop) = (host.client.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                match client.call("product", r#"get-product("P1")"#, false) {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..3 {
        host.client.swap("order", Some(guest("order")), false).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = calls.join().unwrap();
    assert_eq!(failed, 0);
    assert!(ok > 10, "only {ok} product calls ran around the swaps");

    let product = host.client.status().unwrap().components.into_iter().find(|c| c.name == "product").unwrap();
    assert!(product.uptime_secs > product_before.uptime_secs, "product was restarted");
    assert_eq!(product.failures, 0);
}

#[test]
fn sigterm_under_load_then_restart_loses_nothing_committed() {
    let app = TestApp::new(&[("product", "product"), ("order", "order"), ("listener", "listener")]);
    let host = app.up();
    seed(&host, 3);

    let acked = Arc::new(Mutex::new((Vec::new(), BTreeMap::new(), 0)));
    // Set just before SIGTERM: errors after it are the host going away.
    let stopping = Arc::new(AtomicBool::new(false));
    let unexplained = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (client, acked, stopping, unexplained) =
                (host.client.clone(), acked.clone(), stopping.clone(), unexplained.clone());
            std::thread::spawn(move || {
                // Each thread alone changes the price of its own product, always
                // upwards, so the stored price can be checked against the
                // last one acknowledged.
                for i in 0.. {
                    let (p, price) = (t, 2000 + i);
                    let result = if i % 2 == 0 {
                        client.call(
                            "order",
                            &format!(
                                r#"place-order("S{t}-{i}", "C", [{{product-id: "P{}", quantity: 1}}])"#,
                                (t + i) % 3
                            ),
                            false,
                        )
                    } else {
                        client.call("product", &format!(r#"set-price("P{p}", {price})"#), false)
                    };
                    match result {
                        Ok(r) if !r.returned_err => {
                            let mut acked = acked.lock().unwrap();
                            if i % 2 == 0 {
                                acked.0.push(format!("S{t}-{i}"));
                            } else {
                                acked.1.insert(p, price);
                                acked.2 += 1;
                            }
                        }
                        Ok(r) => unexplained.lock().unwrap().push(format!("returned {:?}", r.wave)),
                        Err(_) if stopping.load(Ordering::SeqCst) => return, // the host is going away
                        Err(e) => {
                            unexplained.lock().unwrap().push(format!("{e:#}"));
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    let waiting = Instant::now();
    while acked.lock().unwrap().0.len() < 150 {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "the load did not get going: {:?}",
            unexplained.lock().unwrap().first()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    stopping.store(true, Ordering::SeqCst);
    assert_eq!(host.stop(), 0, "moat up did not stop cleanly on SIGTERM");
    for w in workers {
        w.join().unwrap();
    }
    let unexplained = unexplained.lock().unwrap();
    assert!(unexplained.is_empty(), "calls failed before SIGTERM; the first: {:?}", unexplained.first());

    let host = app.up();
    drained(&host);
    let (orders, prices, price_changes) = acked.lock().unwrap().clone();
    checks::acknowledged_orders_exist(&app.db("order"), &orders);
    for (p, price) in &prices {
        let now: i64 = app
            .db("product")
            .query_row("SELECT price FROM products WHERE product_id = ?1", [format!("P{p}")], |r| r.get(0))
            .unwrap();
        // A later change may have committed as the host stopped, unacknowledged.
        assert!(now as usize >= *price, "P{p}: acknowledged price {price}, stored {now}");
    }
    checks::replica_is_truth(&app.db("product"), &app.db("order"));
    let published = checks::every_event_applied_once_in_order(&app.db("product"), &app.db("listener"));
    println!(
        "sigterm: {} orders and {} price changes acknowledged before SIGTERM; none lost, {published} events applied once",
        orders.len(),
        price_changes
    );
}

#[test]
fn one_host_per_data_directory_and_the_cli_goes_through_it() {
    let app = TestApp::shop();
    let host = app.up();
    seed(&host, 1);

    let second = app.moat(&["up", "--listen", "127.0.0.1:0"]);
    assert_eq!(second.code, 2);
    assert!(second.stderr.contains("is in use by another moat process"), "{}", second.stderr);
    assert!(second.stderr.contains(&format!("a host serving at {}", host.addr)), "{}", second.stderr);

    // One-shot commands find the host and go through it, instead of
    // waiting for the lock.
    let started = Instant::now();
    assert!(app.call_ok("product", r#"get-product("P0")"#).starts_with("some("));
    assert!(started.elapsed() < Duration::from_secs(20));
    let status = app.moat(&["status"]);
    assert!(status.stdout.contains(&format!("(host at {})", host.addr)), "{}", status.stdout);
    let explicit = app.moat(&["--host", &host.addr, "--json", "status"]);
    assert_eq!(explicit.code, 0, "{}", explicit.stderr);

    let bad = app.moat(&["up", "--listen", "0.0.0.0:0"]);
    assert_eq!(bad.code, 2);
}

#[test]
fn a_swap_survives_a_restart_and_rolls_back_onto_the_newer_schema() {
    let app = TestApp::shop();
    let host = app.up();
    seed(&host, 2);
    host.client.swap("product", Some(guest("product_v2")), false).unwrap();
    assert_eq!(host.stop(), 0);

    // The restarted host runs what was swapped in, not what moat.toml names.
    let host = app.up();
    let status = host.client.status().unwrap();
    assert_eq!(status.components.iter().find(|c| c.name == "product").unwrap().version.as_deref(), Some("1.1.0"));
    assert!(host.call("product", r#"search-products("product 1")"#).unwrap().contains("P1"));

    // Back to 1.0, which serves the additive 1.1 schema as it is.
    let back = host.client.swap("product", None, true).unwrap();
    assert_eq!(back.to_version.as_deref(), Some("1.0.0"));
    assert_eq!(back.schema.as_deref(), Some("1.1"));
    host.call("product", r#"create-product({product-id: "P9", name: "Late Addition", price: 5, stock: 5})"#).unwrap();
    let gone = format!("{:#}", host.client.call("product", r#"search-products("x")"#, false).unwrap_err());
    assert!(gone.contains("has no function `search-products`"), "{gone}");

    // Forward again: the generated column covers rows 1.0 wrote meanwhile.
    host.client.swap("product", Some(guest("product_v2")), false).unwrap();
    assert!(host.call("product", r#"search-products("late")"#).unwrap().contains("P9"));
}
