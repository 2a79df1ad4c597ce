//! A call under a request id takes effect once: retried by the CLI, through
//! a running host, or by a component whose own call committed before it
//! failed. (Across hosts: `integration_nats` and, under partitions,
//! `integration_partition`.)

use std::time::{Duration, SystemTime};

use crate::common::*;

const ADJUST: &str = r#"adjust-stock("PROD001", 1)"#;

fn stock(app: &TestApp) -> i64 {
    app.db("product").query_row("SELECT stock FROM products WHERE product_id = 'PROD001'", [], |r| r.get(0)).unwrap()
}

#[test]
fn the_cli_retrying_under_a_request_id_applies_the_call_once() {
    let app = TestApp::shop();
    app.call_ok("product", PROD001);

    let first = app.moat(&["call", "--request-id", "r-1", "product", ADJUST]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(!first.stderr.contains("committed before"), "{}", first.stderr);
    // The retry (the first one's answer lost, say): the recorded result,
    // nothing run again, and stderr says so.
    let retry = app.moat(&["call", "--request-id", "r-1", "product", ADJUST]);
    assert_eq!(retry.code, 0, "{}", retry.stderr);
    assert_eq!(retry.stdout, first.stdout);
    assert!(
        retry.stderr.contains("request id `r-1` committed before: this is its recorded result, and nothing ran again"),
        "{}",
        retry.stderr
    );
    assert_eq!(stock(&app), 151);

    // The id reused for another call: refused, nothing runs.
    let reused = app.moat(&["call", "--request-id", "r-1", "product", r#"adjust-stock("PROD001", 5)"#]);
    assert_ne!(reused.code, 0);
    assert!(reused.stderr.contains("request id `r-1` was already used for another call"), "{}", reused.stderr);
    assert!(reused.stderr.contains("use a new id for a new call"), "{}", reused.stderr);
    assert_eq!(stock(&app), 151);

    // A call that returned `err` took no effect: under its id it runs again.
    let missing = r#"adjust-stock("NOPE", 1)"#;
    assert_eq!(app.moat(&["call", "--request-id", "r-2", "product", missing]).code, 1);
    app.call_ok("product", r#"create-product({product-id: "NOPE", name: "n", price: 1, stock: 0})"#);
    let now_there = app.moat(&["call", "--request-id", "r-2", "product", missing]);
    assert_eq!(now_there.code, 0, "{}", now_there.stderr);
    assert!(now_there.stdout.contains("stock: 1"), "{}", now_there.stdout);
}

#[test]
fn through_a_running_host_a_retried_request_id_replays_and_a_reused_one_is_refused() {
    let app = TestApp::shop();
    app.call_ok("product", PROD001);
    let host = app.up();
    let first = host.client.call_once("product", ADJUST, false, Some("h-1".into())).unwrap();
    assert!(!first.replayed);
    let retry = host.client.call_once("product", ADJUST, false, Some("h-1".into())).unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.wave, first.wave);
    let err = format!(
        "{:#}",
        host.client.call_once("product", r#"get-product("PROD001")"#, false, Some("h-1".into())).unwrap_err()
    );
    assert!(err.contains("request id `h-1` was already used for another call"), "{err}");
    // The CLI, pointed at the running host, goes through it: same record.
    let cli = app.moat(&["call", "--request-id", "h-1", "product", ADJUST]);
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    assert!(cli.stderr.contains("committed before"), "{}", cli.stderr);
    drop(host);
    assert_eq!(stock(&app), 151);
}

#[test]
fn a_component_retried_after_its_call_committed_does_not_apply_that_call_twice() {
    let app = TestApp::new(&[("product", "product"), ("relay", "relay")]);
    app.call_ok("product", PROD001);
    // relay adjusts the stock through the host, then traps (until a time
    // two seconds away): product's unit committed, relay's rolled back.
    let until = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() + 2000;
    let call = format!(r#"adjust-then-trap("PROD001", 1, {until})"#);
    let failed = app.moat(&["call", "--request-id", "n-1", "relay", &call]);
    assert_ne!(failed.code, 0, "the call was meant to trap (did it take over 2 s?): {}", failed.stdout);
    assert!(failed.stderr.contains("trapping after adjust-stock committed"), "{}", failed.stderr);
    assert_eq!(stock(&app), 151, "product's own unit of work committed");

    // Retried under the same id: relay runs again, and its call to product,
    // under the id derived from relay's (`n-1/1`), gets product's recorded
    // result instead of adjusting again.
    std::thread::sleep(Duration::from_millis(2100));
    let retried = app.moat(&["call", "--request-id", "n-1", "relay", &call]);
    assert_eq!(retried.code, 0, "{}", retried.stderr);
    assert!(retried.stdout.contains("stock: 151"), "{}", retried.stdout);
    assert_eq!(stock(&app), 151, "the retry adjusted the stock again");
    let ids: Vec<String> = checks::column(&app.db("product"), "SELECT id FROM _moat_request ORDER BY id");
    assert_eq!(ids, ["n-1/1"]);
    let ids: Vec<String> = checks::column(&app.db("relay"), "SELECT id FROM _moat_request ORDER BY id");
    assert_eq!(ids, ["n-1"]);
}
