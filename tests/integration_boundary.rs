//! The boundary: a component gets its own database and nothing else. What it
//! imports and the host does not grant is refused at load, by name; what it
//! tries in SQL beyond its own tables is refused as an ordinary error; what
//! it tries through WASI reaches nothing; and a runaway component ends with
//! a clear error while the host and every other component keep serving.
//!
//! Each attack comes from `tests/components/probe` (see its README line) or
//! a component built to attempt one thing (`forger`, `stray`).

use crate::common::*;

/// Product (seeded) next to the probe, with a short deadline for the probe.
fn neighbours() -> (TestApp, moat::App) {
    let app = TestApp::with_manifest(&format!(
        "[components.product]\npath = {:?}\n\n[components.probe]\npath = {:?}\nlimits.call_timeout_ms = 300\n",
        guest("product"),
        guest("probe")
    ));
    let open = app.open();
    call(&open, "product", PROD001).unwrap();
    call(&open, "product", PROD005).unwrap();
    (app, open)
}

fn still_serving(open: &moat::App) {
    assert!(
        call(open, "product", r#"get-product("PROD001")"#).unwrap().starts_with("some("),
        "product stopped serving"
    );
    assert_eq!(call(open, "probe", r#"query("SELECT 1")"#).unwrap(), r#"ok([["1"]])"#, "the probe stopped serving");
}

#[test]
fn sql_beyond_the_components_own_tables_is_refused_as_an_error_the_component_can_handle() {
    let (app, open) = neighbours();
    let before = snapshot(&app, "product");
    let own_host_tables =
        || -> Vec<String> { snapshot(&app, "probe").into_iter().filter(|l| l.starts_with("_moat_")).collect() };
    let probe_before = own_host_tables();
    let product_db = app.data().join("product.db");
    let vacuum_target = app.dir.path().join("stolen.db");
    let attempts: Vec<(String, &str)> = vec![
        (format!("ATTACH DATABASE '{}' AS other", product_db.display()), "Denied(\\\"ATTACH and DETACH are refused"),
        ("ATTACH DATABASE 'product.db' AS other".into(), "Denied(\\\"ATTACH and DETACH are refused"),
        ("ATTACH DATABASE '../data/product.db' AS other".into(), "Denied(\\\"ATTACH and DETACH are refused"),
        (format!("ATTACH 'file:{}?mode=ro' AS other", product_db.display()), "Denied(\\\"ATTACH and DETACH are refused"),
        ("DETACH DATABASE main".into(), "Denied(\\\"ATTACH and DETACH are refused"),
        (format!("VACUUM INTO '{}'", vacuum_target.display()), "Denied(\\\"VACUUM is refused"),
        ("/* quietly */ vacuum".into(), "Denied(\\\"VACUUM is refused"),
        ("INSERT INTO _moat_outbox (topic, event, payload, published_us) VALUES ('shop:product', 'price-updated', 'x', 0)".into(), "Denied(\\\"table _moat_outbox is reserved for the host"),
        ("UPDATE _moat_cursor SET seq = 1000000".into(), "Denied(\\\"table _moat_cursor is reserved for the host"),
        ("DELETE FROM _moat_dead_letter".into(), "Denied(\\\"table _moat_dead_letter is reserved for the host"),
        ("DROP TABLE _MOAT_OUTBOX".into(), "Denied(\\\"_moat_outbox is reserved for the host"),
        ("CREATE TRIGGER swallow AFTER INSERT ON _moat_outbox BEGIN DELETE FROM _moat_outbox; END".into(), "Denied(\\\"_moat_outbox is reserved"),
        ("CREATE TEMP TABLE _moat_shadow (x)".into(), "Denied(\\\"TEMP objects are refused"),
        ("PRAGMA journal_mode = delete".into(), "Denied(\\\"PRAGMA journal_mode is refused"),
        ("PRAGMA main.synchronous = off".into(), "Denied(\\\"PRAGMA synchronous is refused"),
        ("PRAGMA writable_schema = on".into(), "Denied(\\\"PRAGMA writable_schema is refused"),
        ("PRAGMA foreign_keys = off".into(), "Denied(\\\"PRAGMA foreign_keys is refused"),
        ("PRAGMA max_page_count = 4294967294".into(), "Denied(\\\"PRAGMA max_page_count is refused"),
        ("BEGIN".into(), "Denied(\\\"transaction control is refused"),
        ("COMMIT".into(), "Denied(\\\"transaction control is refused"),
        ("ROLLBACK".into(), "Denied(\\\"transaction control is refused"),
        ("SAVEPOINT mine".into(), "Denied(\\\"transaction control is refused"),
        ("RELEASE moat_step".into(), "Denied(\\\"transaction control is refused"),
        (format!("SELECT '{}'", "x".repeat(200_000)), "Limit(\\\"the statement is 200009 bytes long; the limit is 100000"),
    ];
    for (sql, expected) in &attempts {
        let result = call(&open, "probe", &format!("execute({sql:?})")).unwrap();
        assert!(
            result.starts_with("err(") && result.contains(expected),
            "{sql}\n  expected {expected}\n  got {result}"
        );
        still_serving(&open);
    }
    assert!(!vacuum_target.exists(), "VACUUM INTO wrote a copy of the database");

    let queries: Vec<(&str, &str)> = vec![
        (
            "SELECT load_extension('/usr/lib/x86_64-linux-gnu/libsqlite3.so.0')",
            "Denied(\\\"function load_extension is refused",
        ),
        ("SELECT * FROM _moat_outbox", "Denied(\\\"table _moat_outbox is reserved"),
        ("SELECT seq FROM _moat_cursor", "Denied(\\\"table _moat_cursor is reserved"),
        ("SELECT * FROM other.sqlite_master", "Invalid(\\\"no such table: other.sqlite_master"),
        ("SELECT * FROM products", "Invalid(\\\"no such table: products"),
        ("SELECT zeroblob(100000000)", "Limit(\\\"string or blob too big"),
        (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
            "Limit(\\\"the statement ran past the call",
        ),
        (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 20000) SELECT x FROM c",
            "Limit(\\\"the query returns more than 10000 rows (limits.query_rows)",
        ),
        (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 9000) SELECT zeroblob(4000) FROM c",
            "Limit(\\\"the query returns more than 16777216 bytes (limits.query_bytes",
        ),
    ];
    for (sql, expected) in &queries {
        let result = call(&open, "probe", &format!("query({sql:?})")).unwrap();
        assert!(
            result.starts_with("err(") && result.contains(expected),
            "{sql}\n  expected {expected}\n  got {result}"
        );
        still_serving(&open);
    }

    // A view over a reserved table is refused when read.
    call(&open, "probe", r#"execute("CREATE VIEW peek AS SELECT * FROM sqlite_master")"#).unwrap();
    call(&open, "probe", r#"execute("CREATE TABLE mine (x)")"#).unwrap();
    assert!(call(&open, "probe", r#"query("SELECT name FROM peek WHERE name = 'mine'")"#).unwrap().contains("mine"));
    call(&open, "probe", r#"execute("CREATE VIEW sneak AS SELECT * FROM _moat_outbox")"#).unwrap();
    let sneak = call(&open, "probe", r#"query("SELECT * FROM sneak")"#).unwrap();
    assert!(sneak.contains("Denied(\\\"table _moat_outbox is reserved"), "{sneak}");

    assert_eq!(snapshot(&app, "product"), before, "the neighbour's database changed");
    assert_eq!(own_host_tables(), probe_before, "the probe changed its own host tables");
}

#[test]
fn wasi_reaches_nothing() {
    let (app, open) = neighbours();
    let product_db = app.data().join("product.db");
    for path in ["/etc/passwd", product_db.to_str().unwrap(), "product.db", "../data/product.db", "."] {
        let result = call(&open, "probe", &format!("read-file({path:?})")).unwrap();
        assert!(result.starts_with("err("), "{path}: {result}");
    }
    // A server of the test's own listens here, so a refusal can only come
    // from the sandbox; the probe still cannot reach it, by IPv4 or IPv6.
    let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = std::net::TcpListener::bind("[::1]:0").ok();
    let mut targets = vec![v4.local_addr().unwrap().to_string()];
    targets.extend(v6.as_ref().map(|l| l.local_addr().unwrap().to_string()));
    for addr in &targets {
        let result = call(&open, "probe", &format!("connect({addr:?})")).unwrap();
        assert!(result.starts_with("err("), "{addr}: {result}");
    }
    v4.set_nonblocking(true).unwrap();
    assert!(v4.accept().is_err(), "a connection reached the test's listener");
    assert_eq!(call(&open, "probe", "environment()").unwrap(), "[]");
    let clocks = call(&open, "probe", "clocks()").unwrap();
    let (wall_sub_ms, busy_ns): (u64, u64) = {
        let inner = clocks.trim_start_matches('(').trim_end_matches(')');
        let mut parts = inner.split(", ").map(|p| p.parse::<u64>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    assert_eq!(wall_sub_ms, 0, "the wall clock is finer than a millisecond");
    assert_eq!(busy_ns % 1_000_000, 0, "the monotonic clock is finer than a millisecond: {busy_ns}");
}

#[test]
fn runaway_components_end_with_a_clear_error_and_everyone_keeps_serving() {
    let (app, open) = neighbours();
    let before = snapshot(&app, "product");
    let cases = [
        ("spin()", "ran past its deadline of 300 ms (limits.call_timeout_ms)"),
        ("hog-memory(200)", "tried to grow its memory past 64 MiB (limits.memory_mib)"),
        ("recurse(100000000)", "overflowed its stack"),
        ("huge-string(100)", "tried to grow its memory past 64 MiB"),
    ];
    for (attempt, expected) in cases {
        let err = format!("{:#}", call(&open, "probe", attempt).unwrap_err());
        assert!(err.contains("component `probe` failed in") && err.contains(expected), "{attempt}: {err}");
        assert!(err.contains("rolled back"), "{err}");
        still_serving(&open);
    }
    // Within the limits, a large result is fine.
    assert_eq!(call(&open, "probe", "huge-string(8)").unwrap().len(), (8 << 20) + 2);
    assert_eq!(call(&open, "probe", "hog-memory(16)").unwrap(), "16");
    assert_eq!(snapshot(&app, "product"), before);
}

#[test]
fn a_component_cannot_publish_events_of_a_package_it_does_not_serve() {
    let app = TestApp::new(&[("product", "product"), ("order", "order"), ("forger", "forger")]);
    let err = format!("{:#}", app.try_plan().err().expect("the forger must be refused"));
    assert!(err.contains("component `forger` imports what the host does not grant"), "{err}");
    assert!(
        err.contains(
            "shop:product/publish@1.0.0: shop:product's events are published by `product`, which serves its contract"
        ),
        "{err}"
    );
}

#[test]
fn an_import_nobody_serves_is_refused_at_load_naming_it() {
    let app = TestApp::new(&[("stray", "stray")]);
    let run = app.moat(&["call", "stray", "run()"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("component `stray` imports what the host does not grant"), "{}", run.stderr);
    assert!(run.stderr.contains("test:stray/elsewhere@1.0.0: no loaded component exports it"), "{}", run.stderr);
    assert!(app.data_is_untouched());
}

#[test]
fn strict_components_may_not_import_wasi_beyond_io_and_cli() {
    let probe = guest("probe");
    let app = TestApp::with_manifest(&format!("[components.probe]\npath = {probe:?}\nstrict = true\n"));
    let err =
        format!("{:#}", app.try_plan().err().expect("a strict component importing wasi:filesystem must be refused"));
    assert!(err.contains("wasi:filesystem/types@0.2."), "{err}");
    assert!(err.contains("refused because the component is `strict`"), "{err}");
    assert!(err.contains("wasi:sockets/"), "{err}");
}

#[test]
fn too_many_events_in_one_unit_of_work_end_the_call_and_publish_nothing() {
    let app = TestApp::with_manifest(&format!(
        "[components.probe]\npath = {:?}\nlimits.events_per_call = 5\n",
        guest("probe")
    ));
    let open = app.open();
    call(&open, "probe", r#"publish("fits", 5)"#).unwrap();
    let err = format!("{:#}", call(&open, "probe", r#"publish("too many", 6)"#).unwrap_err());
    assert!(err.contains("it published more than 5 events in one unit of work (limits.events_per_call)"), "{err}");
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(count(&app.db("probe"), "_moat_outbox"), 5);
}
