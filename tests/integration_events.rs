//! Events: typed, published through a transactional outbox, applied exactly
//! once and in order; the shop's replica and stock saga built on them.

use std::time::Duration;

use crate::common::*;

const PENDING_ITEMS: &str = r#"items: [{product-id: "PROD001", quantity: 2, product-name: "Wireless Mouse", unit-price: 2799}, {product-id: "PROD005", quantity: 1, product-name: "Mechanical Keyboard", unit-price: 7999}]"#;

#[test]
fn a_price_change_reaches_a_pending_order_but_not_a_submitted_one() {
    let app = TestApp::shop();
    app.call_ok("product", PROD001);
    app.call_ok("product", PROD005);
    app.call_ok("order", ORD12345);

    app.call_ok("product", r#"set-price("PROD001", 2799)"#);
    let order = app.call_ok("order", r#"get-order("ORD12345")"#);
    assert!(order.contains(PENDING_ITEMS), "{order}");
    assert!(order.contains("status: pending, total: 13597"), "{order}");

    let submitted = app.call_ok("order", r#"submit-order("ORD12345")"#);
    assert!(submitted.contains("status: submitted"), "{submitted}");
    // `moat call` settled the saga before exiting: product reserved the stock.
    let order = app.call_ok("order", r#"get-order("ORD12345")"#);
    assert!(order.contains("status: confirmed"), "{order}");

    app.call_ok("product", r#"set-price("PROD001", 9999)"#);
    app.call_ok("product", r#"rename-product("PROD001", "Renamed Mouse")"#);
    let order = app.call_ok("order", r#"get-order("ORD12345")"#);
    assert!(order.contains(PENDING_ITEMS), "a submitted order followed a later change: {order}");

    // The replica follows the catalog all the same.
    assert_eq!(
        dump(&app.db("order"), "product_replica"),
        [r#""PROD001"|"Renamed Mouse"|9999"#, r#""PROD005"|"Mechanical Keyboard"|7999"#]
    );
}

#[test]
fn orders_are_placed_from_the_replica_without_asking_product() {
    let app = TestApp::shop();
    let open = app.open();
    call(&open, "product", PROD001).unwrap();
    open.settle(Duration::from_secs(10)).unwrap();
    drop(open);

    // Product's database is gone from under it: if order asked product, it
    // would find no such product.
    std::fs::remove_file(app.data().join("product.db")).unwrap();
    let open = app.open();
    let placed =
        call(&open, "order", r#"place-order("ORD1", "CUST1", [{product-id: "PROD001", quantity: 1}])"#).unwrap();
    assert!(placed.contains(r#"product-name: "Wireless Mouse", unit-price: 2599"#), "{placed}");
    // A product the replica never heard of is asked of the catalog.
    let unknown =
        call(&open, "order", r#"place-order("ORD2", "CUST1", [{product-id: "PROD005", quantity: 1}])"#).unwrap();
    assert_eq!(unknown, r#"err(unknown-product("PROD005"))"#);
}

#[test]
fn the_saga_confirms_or_rejects_and_stock_only_moves_for_confirmed_orders() {
    let app = TestApp::shop();
    app.call_ok("product", PROD001);
    app.call_ok("product", PROD005);
    let place = |id: &str, mouse: u32, keyboard: u32| {
        app.call_ok(
            "order",
            &format!(r#"place-order("{id}", "CUST987", [{{product-id: "PROD001", quantity: {mouse}}}, {{product-id: "PROD005", quantity: {keyboard}}}])"#),
        );
        app.call_ok("order", &format!(r#"submit-order("{id}")"#));
        app.call_ok("order", &format!(r#"get-order("{id}")"#))
    };
    let stock = || dump(&app.db("product"), "products");

    assert!(place("ORD1", 2, 1).contains("status: confirmed"));
    assert_eq!(stock(), [r#""PROD001"|"Wireless Mouse"|2599|148"#, r#""PROD005"|"Mechanical Keyboard"|7999|39"#]);

    // Too many keyboards: rejected, and no stock moves, not even the mice.
    assert!(place("ORD2", 1, 40).contains("status: rejected"));
    assert_eq!(stock(), [r#""PROD001"|"Wireless Mouse"|2599|148"#, r#""PROD005"|"Mechanical Keyboard"|7999|39"#]);

    // Exactly all that is left: confirmed, down to zero.
    assert!(place("ORD3", 148, 39).contains("status: confirmed"));
    assert_eq!(stock(), [r#""PROD001"|"Wireless Mouse"|2599|0"#, r#""PROD005"|"Mechanical Keyboard"|7999|0"#]);

    // Cancelling a confirmed order releases its stock, once.
    assert!(app.call_ok("order", r#"cancel-order("ORD1")"#).contains("status: cancelled"));
    assert_eq!(stock(), [r#""PROD001"|"Wireless Mouse"|2599|2"#, r#""PROD005"|"Mechanical Keyboard"|7999|1"#]);
    let again = app.moat(&["call", "order", r#"cancel-order("ORD1")"#]);
    assert_eq!(again.stdout.trim(), "err(wrong-status(cancelled))");
    assert_eq!(stock(), [r#""PROD001"|"Wireless Mouse"|2599|2"#, r#""PROD005"|"Mechanical Keyboard"|7999|1"#]);

    // Invariant: stock on hand plus what confirmed orders hold is what was added.
    let held: i64 = app
        .db("order")
        .query_row(
            "SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o USING (order_id) WHERE o.status = 'confirmed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let on_hand: i64 = app.db("product").query_row("SELECT sum(stock) FROM products", [], |r| r.get(0)).unwrap();
    assert_eq!(on_hand + held, 150 + 40);
}

/// An app of product and the listener, with quick retries.
fn listened(max_attempts: u32) -> TestApp {
    TestApp::with_manifest(&format!(
        "[components.product]\npath = {:?}\n\n[components.listener]\npath = {:?}\nevents.max_attempts = {max_attempts}\nevents.retry_backoff_ms = 1\n",
        guest("product"),
        guest("listener")
    ))
}

fn create(id: &str) -> String {
    format!(r#"create-product({{product-id: "{id}", name: "Thing", price: 100, stock: 1}})"#)
}

#[test]
fn a_handler_that_fails_twice_then_succeeds_is_applied_once() {
    let app = listened(5);
    app.call_ok("product", &create("FAIL2-A"));
    app.call_ok("product", &create("OK-B"));
    assert_eq!(app.call_ok("listener", "seen()"), r#"["created FAIL2-A", "created OK-B"]"#);
    assert_eq!(app.moat(&["dlq", "listener"]).stdout.trim(), "no dead letters in `listener`");
}

/// A failure in the middle of a batch: the events before it take effect
/// once (the batch is rolled back and they are applied again without it),
/// and it and the events after it follow once it succeeds.
#[test]
fn an_event_failing_inside_a_batch_leaves_the_others_applied_once_in_order() {
    let app = listened(5);
    let open = app.open();
    for id in ["OK-A", "OK-B", "FAIL2-C", "OK-D"] {
        call(&open, "product", &create(id)).unwrap();
    }
    // All four are waiting: one settle delivers them as one batch.
    let settled = open.settle(Duration::from_secs(10)).unwrap();
    assert!(settled.complete, "{settled:?}");
    assert_eq!(
        call(&open, "listener", "seen()").unwrap(),
        r#"["created OK-A", "created OK-B", "created FAIL2-C", "created OK-D"]"#
    );
    let status = open.status();
    let route = status.subscriptions.iter().find(|r| r.subscription.subscriber == "listener").unwrap();
    assert_eq!((route.applied, route.retried, route.dead_lettered), (4, 2, 0), "{route:?}");
    let seen: i64 = app.db("listener").query_row("SELECT count(*) FROM seen", [], |r| r.get(0)).unwrap();
    assert_eq!(seen, 4);
}

/// A handler that fails when an event it applied a moment ago is applied
/// again (after a later event of the batch failed) is not deterministic:
/// that step applies nothing and is retried like a failure of the
/// subscriber, and each event still takes effect once.
#[test]
fn a_handler_failing_only_when_an_event_is_applied_again_still_applies_each_once() {
    let app = listened(3);
    let open = app.open();
    for id in ["FLAKY-A", "FAILX-B", "OK-C"] {
        call(&open, "product", &create(id)).unwrap();
    }
    // The first step: FAILX-B fails, FLAKY-A fails when applied again.
    let settled = open.settle(Duration::from_millis(300)).unwrap();
    assert!(!settled.complete, "{settled:?}");
    let status = open.status();
    let route = status.subscriptions.iter().find(|r| r.subscription.subscriber == "listener").unwrap();
    let error = route.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("does not do the same twice") && error.contains("failing attempt 2 of FLAKY-A"),
        "{route:?}"
    );
    assert_eq!((route.applied, route.failing_attempts), (0, Some(0)), "{route:?}");

    // Retried: FLAKY-A applied once, FAILX-B dead-lettered after its 3 attempts, OK-C applied.
    assert!(open.settle(Duration::from_secs(20)).unwrap().complete);
    assert_eq!(call(&open, "listener", "seen()").unwrap(), r#"["created FLAKY-A", "created OK-C"]"#);
    let letters: Vec<(String, i64)> = app
        .db("listener")
        .prepare("SELECT event, attempts FROM _moat_dead_letter")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(letters, [("created".to_string(), 3)]);
}

#[test]
fn a_handler_that_always_fails_is_dead_lettered_later_events_flow_and_redrive_applies_it_once() {
    let app = listened(3);
    app.call_ok("product", &create("FAILX-A"));
    app.call_ok("product", &create("TRAP-B"));
    app.call_ok("product", &create("OK-C"));
    assert_eq!(app.call_ok("listener", "seen()"), r#"["created OK-C"]"#);

    let listed = app.moat(&["--json", "dlq", "listener"]);
    let letters: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0]["event"], "created");
    assert_eq!(letters[0]["attempts"], 3);
    assert_eq!(letters[0]["error"], "failing FAILX-A until fixed, as asked");
    assert!(letters[1]["error"].as_str().unwrap().contains("panicked"), "{letters:?}");
    // Status counts them on their route, and says why the route last failed.
    let waiting = || {
        let status: serde_json::Value = serde_json::from_str(&app.moat(&["--json", "status"]).stdout).unwrap();
        let route = status["status"]["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["subscription"]["subscriber"] == "listener")
            .cloned();
        route.expect("the listener's route")["dead_letters"].as_u64()
    };
    assert_eq!(waiting(), Some(2));
    let shown = app.moat(&["status"]).stdout;
    assert!(shown.contains("dead letters") && shown.contains("last failed"), "{shown}");

    // Redriving before the fix fails again and keeps the letter.
    let id = letters[0]["id"].to_string();
    let early = app.moat(&["dlq", "listener", "--retry", &id]);
    assert_eq!(early.code, 1, "{}", early.stderr);
    assert!(early.stdout.contains("failed again"), "{}", early.stdout);

    app.call_ok("listener", "fix()");
    let redriven = app.moat(&["dlq", "listener", "--all"]);
    assert_eq!(redriven.code, 0, "{} {}", redriven.stdout, redriven.stderr);
    assert_eq!(app.call_ok("listener", "seen()"), r#"["created OK-C", "created FAILX-A", "created TRAP-B"]"#);
    assert_eq!(app.moat(&["dlq", "listener"]).stdout.trim(), "no dead letters in `listener`");
    assert_eq!(waiting(), Some(0));

    let gone = app.moat(&["dlq", "listener", "--retry", &id]);
    assert_eq!(gone.code, 2);
    assert!(gone.stderr.contains(&format!("has no dead letter {id}")), "{}", gone.stderr);
    assert_eq!(app.call_ok("listener", "seen()"), r#"["created OK-C", "created FAILX-A", "created TRAP-B"]"#);
}

#[test]
fn a_call_that_fails_after_publishing_publishes_nothing() {
    let app = TestApp::new(&[("probe", "probe")]);
    let open = app.open();
    let outbox = || count(&app.db("probe"), "_moat_outbox");
    assert_eq!(
        call(&open, "probe", r#"publish-then-fail("lost")"#).unwrap(),
        r#"err("failing after publishing, as asked")"#
    );
    assert!(call(&open, "probe", r#"publish-then-trap("lost")"#).is_err());
    assert_eq!(outbox(), 0);
    call(&open, "probe", r#"publish("kept", 3)"#).unwrap();
    assert_eq!(outbox(), 3);
    assert_eq!(
        dump(&app.db("probe"), "_moat_outbox")
            .iter()
            .map(|r| r.split('|').nth(3).unwrap().to_string())
            .collect::<Vec<_>>(),
        [r#""note(\"kept\")""#; 3]
    );
}

#[test]
fn pending_events_survive_the_process_and_are_applied_exactly_once() {
    let app = listened(5);
    for id in ["A", "B", "C"] {
        let run = app.moat(&["call", "--no-wait", "product", &create(id)]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let listed = app.moat(&["events"]);
    assert_eq!(listed.stdout.matches("[listener: pending]").count(), 3, "{}", listed.stdout);
    // Status tells how long the oldest of them has waited.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let status: serde_json::Value = serde_json::from_str(&app.moat(&["--json", "status"]).stdout).unwrap();
    let route = &status["status"]["subscriptions"][0];
    assert_eq!(route["head"].as_i64().unwrap() - route["cursor"].as_i64().unwrap(), 3, "{route}");
    let waited = route["lag_seconds"].as_f64().unwrap();
    assert!((1.1..60.0).contains(&waited), "the oldest pending event waited {waited} s");

    // The next process delivers what the earlier ones left, once.
    assert_eq!(app.call_ok("listener", "seen()"), r#"["created A", "created B", "created C"]"#);
    for _ in 0..3 {
        app.call_ok("listener", "seen()");
    }
    assert_eq!(app.call_ok("listener", "seen()"), r#"["created A", "created B", "created C"]"#);
    let listed = app.moat(&["events", "--component", "product"]);
    assert_eq!(listed.stdout.matches("[listener: applied]").count(), 3, "{}", listed.stdout);
    assert!(
        listed
            .stdout
            .contains(r#"product #1 shop:product created({product-id: "A", name: "Thing", price: 100, stock: 1})"#),
        "{}",
        listed.stdout
    );
}

#[test]
fn replay_rebuilds_a_subscribers_replica_from_the_kept_events() {
    let app = TestApp::shop();
    app.call_ok("product", PROD001);
    app.call_ok("product", PROD005);
    app.call_ok("product", r#"set-price("PROD001", 2799)"#);
    app.call_ok("product", r#"rename-product("PROD005", "Clicky Keyboard")"#);
    let replica = dump(&app.db("order"), "product_replica");

    // Disaster strikes order's replica (from outside: order itself never
    // loses it).
    {
        let db = rusqlite::Connection::open(app.data().join("order.db")).unwrap();
        db.execute("DELETE FROM product_replica", []).unwrap();
    }
    let run = app.moat(&["replay", "order", "--from", "product"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("replaying shop:product events to `order` from #1"), "{}", run.stdout);
    assert_eq!(dump(&app.db("order"), "product_replica"), replica);

    let wrong = app.moat(&["replay", "product", "--from", "product"]);
    assert_eq!(wrong.code, 2);
    assert!(wrong.stderr.contains("`product` does not handle events `product` publishes"), "{}", wrong.stderr);
}

#[test]
fn a_subscriber_without_a_publisher_loads_and_hears_nothing() {
    let app = TestApp::new(&[("probe", "probe"), ("listener", "listener")]);
    assert!(app.plan().subscriptions().is_empty());
    assert_eq!(app.call_ok("listener", "seen()"), "[]");
}
