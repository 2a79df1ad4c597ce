//! A hostile component: the boundary as an attacker sees it. Each test is one
//! principle, tried the way an attacker would, with the real components
//! loaded next to the shop (`hostile` subscribes to the probe's events and
//! runs any SQL it is asked; `impostor`, `init-writer`: see
//! components/README.md).
//!
//! - Every guest statement is judged when it runs, as the guest: the host's
//!   own statement texts replayed by the guest are refused.
//! - Host statements cannot be redirected: no guest object, TEMP or renamed,
//!   carries a reserved name, and a trigger's body is the guest's.
//! - SQL functions and PRAGMAs are allowlists; host tables are not read.
//! - Events of a package come only from its owner.
//! - Only the host calls handlers, migrations and non-contract exports.
//! - One component's failure stays with it; a unit of work is what the host
//!   thinks it is; a dead letter is redriven exactly once.

use std::time::{Duration, Instant};

use crate::common::*;

/// The probe (a publisher), the hostile subscriber and the tally (a well
/// behaved one) next to the shop.
fn neighbourhood(hostile_extra: &str) -> TestApp {
    TestApp::with_manifest(&format!(
        "[components.product]\npath = {:?}\n\n[components.order]\npath = {:?}\n\n\
         [components.probe]\npath = {:?}\nlimits.call_timeout_ms = 1000\n\n\
         [components.tally]\npath = {:?}\n\n\
         [components.hostile]\npath = {:?}\nevents.max_attempts = 2\nevents.retry_backoff_ms = 1\nlimits.call_timeout_ms = 1000\n{hostile_extra}\n",
        guest("product"),
        guest("order"),
        guest("probe"),
        guest("tally"),
        guest("hostile"),
    ))
}

/// WAVE for a list of strings.
fn wave_list(items: &[&str]) -> String {
    format!("[{}]", items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "))
}

/// Every row of the host's own tables in a component's database.
fn host_rows(app: &TestApp, component: &str) -> Vec<String> {
    snapshot(app, component).into_iter().filter(|line| line.starts_with("_moat_")).collect()
}

fn seeded_shop(open: &moat::App) {
    call(open, "product", PROD001).unwrap();
    call(open, "product", PROD005).unwrap();
    open.settle(Duration::from_secs(10)).unwrap();
    call(open, "order", ORD12345).unwrap();
}

#[test]
fn the_hosts_statement_texts_replayed_by_a_component_are_judged_afresh_and_refused() {
    let app = neighbourhood("");
    let open = app.open();
    // The hostile subscriber has a real cursor on the probe, so the host has
    // run its cursor upsert on its connection.
    call(&open, "probe", r#"publish("ok:first", 1)"#).unwrap();
    open.settle(Duration::from_secs(10)).unwrap();
    let before = host_rows(&app, "hostile");
    assert!(before.iter().any(|r| r.starts_with("_moat_cursor: ")), "{before:?}");

    // The host's texts, exactly as it runs them (ledger.rs and db/mod.rs),
    // and as the previous host did.
    let cursor_upsert = "INSERT INTO main.\"_moat_cursor\" (publisher, topic, seq) VALUES (?1, ?2, ?3)\n           ON CONFLICT (publisher, topic) DO UPDATE SET seq = excluded.seq";
    let old_cursor_upsert = "INSERT INTO _moat_cursor (publisher, topic, seq) VALUES (?1, ?2, ?3)\n         ON CONFLICT (publisher, topic) DO UPDATE SET seq = excluded.seq";
    let outbox_insert =
        "INSERT INTO main.\"_moat_outbox\" (topic, event, payload, published_us) VALUES (?1, ?2, ?3, ?4)";
    for (sql, params) in [
        (cursor_upsert, vec!["probe", "test:probe", "999"]),
        (old_cursor_upsert, vec!["probe", "test:probe", "999"]),
        (outbox_insert, vec!["test:hostile", "forged", "forged", "0"]),
        ("BEGIN IMMEDIATE", vec![]),
        ("COMMIT", vec![]),
        ("ROLLBACK", vec![]),
        ("SAVEPOINT moat_step", vec![]),
        ("RELEASE moat_step", vec![]),
        ("ROLLBACK TO moat_step", vec![]),
        ("SAVEPOINT moat_ddl", vec![]),
    ] {
        let result = call(&open, "hostile", &format!("attack.execute({sql:?}, {})", wave_list(&params))).unwrap();
        assert!(result.starts_with("err(") && result.contains("Denied"), "{sql}: {result}");
    }
    // Commit in the middle of a unit of work, then fail: nothing may stay.
    let script = call(
        &open,
        "hostile",
        &format!(
            "attack.script({}, true)",
            wave_list(&[
                "INSERT INTO applied (note) VALUES ('smuggled')",
                "COMMIT",
                "INSERT INTO applied (note) VALUES ('after the commit')"
            ])
        ),
    )
    .unwrap();
    assert!(script.starts_with("err(") && script.contains("Denied"), "{script}");
    assert_eq!(call(&open, "hostile", "inspect.applied()").unwrap(), r#"["ok:first"]"#);
    assert_eq!(host_rows(&app, "hostile"), before, "the hostile component changed its own host tables");
}

#[test]
fn no_component_object_under_a_reserved_name_by_any_path_and_everyone_keeps_serving_under_moat_up() {
    let app = neighbourhood("");
    {
        let open = app.open();
        seeded_shop(&open);
    }
    let host = app.up();
    let attack = |sql: &str| host.call("hostile", &format!("attack.execute({sql:?}, [])")).unwrap();
    let query = |sql: &str| host.call("hostile", &format!("attack.query({sql:?})")).unwrap();
    let refused = |sql: &str, why: &str| {
        let result = attack(sql);
        assert!(result.starts_with("err(") && result.contains(why), "{sql}\n  expected {why}\n  got {result}");
    };
    refused("CREATE TEMP VIEW _moat_outbox AS SELECT 1 AS seq", "TEMP objects are refused");
    refused("CREATE TEMP TABLE scratch (x)", "TEMP objects are refused");
    refused("CREATE TABLE temp.scratch (x)", "TEMP objects are refused");
    refused("CREATE TABLE \"_moat_new\" (x)", "reserved for the host");
    refused("CREATE VIEW _Moat_View AS SELECT 1", "reserved for the host");
    refused("CREATE INDEX mine ON _moat_outbox (topic)", "reserved for the host");
    assert_eq!(attack("CREATE TABLE stash (x)"), "ok(0)");
    refused("ALTER TABLE stash RENAME TO _moat_outbox_shadow", "would reach the host");
    refused("ALTER TABLE stash RENAME TO \"_MOAT_x\"", "would reach the host");
    assert_eq!(query("SELECT count(*) FROM stash"), r#"ok([["0"]])"#, "the refused rename was not undone");
    refused("CREATE TABLE kid (a REFERENCES _moat_outbox (seq))", "would reach the host");
    refused("ALTER TABLE stash ADD COLUMN y REFERENCES _moat_cursor (seq)", "would reach the host");
    assert!(query("SELECT * FROM kid").contains("no such table"), "the refused table was not undone");
    // A trigger's body is the component's, whatever fires it.
    assert_eq!(
        attack(
            "CREATE TRIGGER spill AFTER INSERT ON stash BEGIN \
             INSERT INTO _moat_dead_letter (publisher, topic, seq, event, payload, error, attempts, failed_ms) \
             VALUES ('x', 'x', 1, 'x', 'x', 'x', 1, 0); END"
        ),
        "ok(0)"
    );
    refused("INSERT INTO stash VALUES (1)", "table _moat_dead_letter is reserved for the host");
    assert_eq!(attack("CREATE VIEW peek AS SELECT * FROM _moat_cursor"), "ok(0)");
    assert!(query("SELECT * FROM peek").contains("Denied"), "a view read a host table");

    // Everyone else, and the hostile component itself, keep working, and
    // nothing reached the host's tables.
    host.call("product", r#"set-price("PROD001", 3111)"#).unwrap();
    host.call("probe", r#"publish("ok:after", 1)"#).unwrap();
    let start = Instant::now();
    while !host.call("order", r#"get-order("ORD12345")"#).unwrap().contains("unit-price: 3111")
        || !host.call("hostile", "inspect.applied()").unwrap().contains("ok:after")
    {
        assert!(start.elapsed() < Duration::from_secs(20), "delivery stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = app.moat(&["call", "product", r#"get-product("PROD001")"#]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    drop(host);
    assert!(count(&app.db("hostile"), "_moat_dead_letter") == 0);
}

#[test]
fn functions_pragmas_and_catalogue_reads_reach_nothing_of_the_hosts() {
    let app = neighbourhood("");
    let open = app.open();
    call(&open, "probe", r#"publish("ok:x", 1)"#).unwrap();
    open.settle(Duration::from_secs(10)).unwrap();
    let query = |sql: &str| call(&open, "hostile", &format!("attack.query({sql:?})")).unwrap();
    for (sql, why) in [
        ("SELECT fts3_tokenizer('simple')", "function fts3_tokenizer is refused"),
        ("SELECT load_extension('/usr/lib/x86_64-linux-gnu/libsqlite3.so.0')", "function load_extension is refused"),
        ("SELECT total_changes()", "function total_changes is refused"),
        ("SELECT sqlite_compileoption_get(0)", "function sqlite_compileoption_get is refused"),
        ("SELECT sqlite_source_id()", "refused"),
        ("SELECT * FROM dbstat", "dbstat is refused"),
        ("SELECT name, pgsize FROM dbstat WHERE name = '_moat_outbox'", "dbstat is refused"),
        ("SELECT * FROM pragma_table_info('_moat_outbox')", "_moat_outbox is reserved"),
        ("PRAGMA table_info(_moat_cursor)", "_moat_cursor is reserved"),
        ("PRAGMA index_list('_moat_outbox')", "_moat_outbox is reserved"),
        ("PRAGMA database_list", "PRAGMA database_list is refused"),
        ("PRAGMA page_count", "PRAGMA page_count is refused"),
        ("SELECT * FROM pragma_database_list", "refused"),
        ("SELECT count(*) FROM _moat_outbox", "table _moat_outbox is reserved"),
        ("SELECT max(seq) FROM _MOAT_CURSOR", "table _moat_cursor is reserved"),
    ] {
        let result = query(sql);
        assert!(result.starts_with("err(") && result.contains(why), "{sql}\n  expected {why}\n  got {result}");
    }
    // The catalogue names the host's tables, but not what they hold or how
    // they are defined.
    assert_eq!(query("SELECT sql FROM sqlite_master WHERE name = '_moat_cursor'"), r#"ok([["NULL"]])"#);
    // What an application uses works.
    assert_eq!(
        query(r#"SELECT json_extract('{"a": [1, 2]}', '$.a[1]'), upper('x'), abs(-3), date('2026-11-28', '+1 day')"#),
        r#"ok([["2", "X", "3", "2026-11-29"]])"#
    );
    assert_eq!(query("SELECT count(*) FROM applied"), r#"ok([["1"]])"#);
}

#[test]
fn a_component_claiming_another_packages_contract_is_refused_at_load_and_at_swap_naming_both() {
    let app = TestApp::new(&[("product", "product"), ("order", "order"), ("impostor", "impostor")]);
    let err = format!("{:#}", app.try_plan().err().expect("the impostor must be refused"));
    assert!(err.contains("component `impostor` cannot be loaded: shop:product"), "{err}");
    assert!(err.contains("`product` (exports shop:product/catalog@1.0.0)"), "{err}");
    assert!(err.contains("`impostor` (exports shop:product/side-door@1.0.0)"), "{err}");
    assert!(app.data_is_untouched());

    // At swap: the probe cannot become a second owner of shop:product.
    let app = TestApp::new(&[("product", "product"), ("order", "order"), ("probe", "probe")]);
    let open = app.open();
    let refused = format!("{}", open.swap("probe", &guest("impostor")).unwrap_err());
    assert!(refused.contains("swap of `probe`"), "{refused}");
    assert!(
        refused.contains("shop:product: it is claimed by `probe` (exports shop:product/side-door@1.0.0) and `product`"),
        "{refused}"
    );
    assert_eq!(refused.matches("it is claimed by").count(), 1, "{refused}");
    assert!(call(&open, "probe", r#"query("SELECT 1")"#).unwrap().starts_with("ok("));
}

#[test]
fn only_the_host_calls_handlers_migrations_and_exports_outside_any_contract() {
    let app = TestApp::new(&[("product", "product"), ("order", "order"), ("probe", "probe")]);
    app.call_ok("product", PROD001);
    let forged = r#"handler.handle(submitted({order-id: "FAKE", customer-id: "C", lines: [{product-id: "PROD001", quantity: 100}]}))"#;
    for (component, attempt, why) in [
        ("product", forged, "handler of shop:order events: only the host calls it"),
        (
            "order",
            r#"handler.handle(price-updated({product-id: "PROD001", old-price: 1, new-price: 2}))"#,
            "only the host calls it",
        ),
        ("product", "schema.migrate(none)", "only the host calls it"),
        ("product", "migrate(none)", "only the host calls it"),
        ("probe", "init.init()", "is not part of any contract"),
        ("probe", "run()", "is not part of any contract"),
    ] {
        let run = app.moat(&["call", component, attempt]);
        assert_eq!(run.code, 2, "{component} {attempt}: {}", run.stdout);
        assert!(run.stderr.contains(why), "{component} {attempt}: expected {why:?} in\n{}", run.stderr);
    }
    let stock = dump(&app.db("product"), "products");
    assert_eq!(stock, [r#""PROD001"|"Wireless Mouse"|2599|150"#], "the forged event reserved stock");
    assert!(tables(&app.db("probe")).is_empty(), "a non-contract export ran");

    // The same through the control API.
    let host = app.up();
    let err = format!("{:#}", host.client.call("product", forged, true).unwrap_err());
    assert!(err.contains("only the host calls it"), "{err}");
    let err = format!("{:#}", host.client.call("probe", "run()", true).unwrap_err());
    assert!(err.contains("not part of any contract"), "{err}");
    drop(host);

    // `moat components` lists only contract interfaces as exports.
    let listed = app.moat(&["--json", "components"]);
    let components: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    for c in components.as_array().unwrap() {
        for e in c["exports"].as_array().unwrap() {
            let name = e["interface"].as_str().unwrap();
            assert!(name.contains(':') && !name.contains("handler") && !name.starts_with("moat:"), "{name}");
        }
    }
}

#[test]
fn a_hostile_handlers_failures_stay_on_its_own_route() {
    let app = neighbourhood("");
    {
        let open = app.open();
        seeded_shop(&open);
    }
    let host = app.up();
    // A 40 MB error, a trap, a handler stuck past its deadline, then a good one.
    for note in ["huge:40000000", "trap", "block", "ok:later"] {
        host.call("probe", &format!("publish({note:?}, 1)")).unwrap();
    }
    // Meanwhile every other route and call goes on.
    host.call("product", r#"set-price("PROD001", 2222)"#).unwrap();
    let start = Instant::now();
    loop {
        let order = host.call("order", r#"get-order("ORD12345")"#).unwrap();
        let tally = host.call("tally", "totals()").unwrap();
        if order.contains("unit-price: 2222") && tally == "(4, 4)" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "other routes stalled: {order} {tally}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The hostile route gets through its bad events to the good one.
    let start = Instant::now();
    while !host.call("hostile", "inspect.applied()").unwrap().contains("ok:later") {
        assert!(start.elapsed() < Duration::from_secs(30), "the hostile route never got past its bad events");
        std::thread::sleep(Duration::from_millis(50));
    }
    let letters = host.client.dead_letters("hostile").unwrap();
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert!(letters.iter().all(|l| l.error.len() <= 4096), "a dead letter's text is unbounded");
    assert!(letters[2].error.contains("ran past its deadline"), "{:?}", letters[2].error);
    let status = host.client.status().unwrap();
    let route = status.subscriptions.iter().find(|s| s.subscription.subscriber == "hostile").unwrap();
    assert_eq!(route.dead_lettered, 3, "{route:?}");
    assert!(route.last_error.is_some(), "{route:?}");
    drop(host);

    // A one-shot call whose events keep failing elsewhere still succeeds.
    let run = app.moat(&["call", "probe", r#"publish("trap", 1)"#]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = app.moat(&["call", "product", r#"get-product("PROD001")"#]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_unit_of_work_that_sqlite_ended_on_its_own_fails_whole() {
    let app = neighbourhood("");
    let open = app.open();
    // A write interrupted at the deadline inside a unit: SQLite rolls the
    // whole transaction back. Nothing before it, and nothing after it, may stay.
    let endless = "INSERT INTO applied (note) SELECT 'x' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c WHERE x < 0)";
    let err = call(
        &open,
        "hostile",
        &format!(
            "attack.script({}, false)",
            wave_list(&[
                "INSERT INTO applied (note) VALUES ('before')",
                endless,
                "INSERT INTO applied (note) VALUES ('after')"
            ])
        ),
    )
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("rolled back by SQLite"), "{err}");
    assert_eq!(call(&open, "hostile", "inspect.applied()").unwrap(), "[]");
    drop(open);

    // A handler that fills its database and says all is well: the database
    // stays within its limit, whole, and the route goes on.
    let app = neighbourhood("limits.database_mib = 1\n");
    let open = app.open();
    call(&open, "probe", r#"publish("fill-ok", 1)"#).unwrap();
    call(&open, "probe", r#"publish("ok:next", 1)"#).unwrap();
    open.settle(Duration::from_secs(20)).unwrap();
    assert!(call(&open, "hostile", "inspect.applied()").unwrap().contains("ok:next"));
    let db = app.db("hostile");
    let size: i64 = db
        .query_row("SELECT page_count * page_size FROM pragma_page_count, pragma_page_size", [], |r| r.get(0))
        .unwrap();
    assert!(size <= 1 << 20, "the database grew past limits.database_mib: {size}");
    let ok: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn a_build_that_writes_while_starting_and_then_traps_leaves_the_database_as_it_was() {
    let app = TestApp::shop();
    let open = app.open();
    seeded_shop(&open);
    let before = snapshot(&app, "product");
    let err = format!("{}", open.swap("product", &guest("init_writer")).unwrap_err());
    assert!(err.contains("instantiating `product` failed"), "{err}");
    assert_eq!(snapshot(&app, "product"), before);
    // The old version's next unit of work commits none of it.
    call(&open, "product", r#"set-price("PROD005", 8000)"#).unwrap();
    drop(open);
    let after = snapshot(&app, "product");
    assert!(!after.iter().any(|l| l.contains("init_marks")), "{after:?}");
    assert!(!after.iter().any(|l| l.contains("\"PROD001\"|\"Wireless Mouse\"|1|")), "{after:?}");
}

#[test]
fn a_dead_letter_redriven_twice_at_once_takes_effect_once() {
    let app = TestApp::with_manifest(&format!(
        "[components.product]\npath = {:?}\n\n[components.listener]\npath = {:?}\nevents.max_attempts = 1\nevents.retry_backoff_ms = 1\n",
        guest("product"),
        guest("listener")
    ));
    app.call_ok("product", r#"create-product({product-id: "FAILX-1", name: "Thing", price: 100, stock: 1})"#);
    app.call_ok("listener", "fix()");
    let host = app.up();
    let id = host.client.dead_letters("listener").unwrap()[0].id;
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| host.client.retry("listener", Some(id)));
        let b = s.spawn(|| host.client.retry("listener", Some(id)));
        (a.join().unwrap(), b.join().unwrap())
    });
    let outcomes: Vec<_> = a.into_iter().chain(b).flatten().collect();
    assert_eq!(outcomes.iter().filter(|r| r.failed.is_none() && !r.gone).count(), 1, "{outcomes:?}");
    assert_eq!(host.call("listener", "seen()").unwrap(), r#"["created FAILX-1"]"#);
}

#[test]
fn ordinary_sql_keeps_working_inside_the_sandbox() {
    let app = TestApp::new(&[("probe", "probe")]);
    let open = app.open();
    let execute = |sql: &str| {
        let r = call(&open, "probe", &format!("execute({sql:?})")).unwrap();
        assert!(r.starts_with("ok("), "{sql}: {r}");
    };
    let query = |sql: &str| call(&open, "probe", &format!("query({sql:?})")).unwrap();
    for sql in [
        "CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, price INTEGER) STRICT",
        "INSERT INTO a (name, price) VALUES ('x', 3), ('y', 5), ('z', 8)",
        "ALTER TABLE a RENAME TO b",
        "ALTER TABLE b RENAME COLUMN price TO cost",
        "ALTER TABLE b ADD COLUMN note TEXT",
        "CREATE TABLE kv (k TEXT PRIMARY KEY, v ANY) WITHOUT ROWID",
        "INSERT INTO kv VALUES ('a', json('{\"n\": 1}'))",
        "CREATE INDEX cheap ON b (cost) WHERE cost < 6",
        "CREATE INDEX by_upper ON b (upper(name))",
        "CREATE VIEW dear AS SELECT name FROM b WHERE cost > 4",
        "CREATE TABLE log (what TEXT)",
        "CREATE TRIGGER noted AFTER UPDATE ON b BEGIN INSERT INTO log VALUES ('updated ' || new.name); END",
        "UPDATE b SET cost = cost + 1 WHERE name = 'x'",
        "ANALYZE b",
        "REINDEX b",
        "PRAGMA user_version = 7",
        "DROP VIEW dear",
        "CREATE TABLE gone (id INTEGER PRIMARY KEY AUTOINCREMENT)",
        "INSERT INTO gone DEFAULT VALUES",
        "DROP TABLE gone",
    ] {
        execute(sql);
    }
    assert_eq!(query("SELECT what FROM log"), r#"ok([["updated x"]])"#);
    assert_eq!(
        query(
            "WITH t AS (SELECT name, cost, sum(cost) OVER (ORDER BY cost) AS running FROM b) SELECT name, running FROM t ORDER BY cost"
        ),
        r#"ok([["x", "4"], ["y", "9"], ["z", "17"]])"#
    );
    assert_eq!(query("SELECT v ->> '$.n' FROM kv"), r#"ok([["1"]])"#);
    assert_eq!(query("SELECT name FROM b WHERE upper(name) = 'Y'"), r#"ok([["y"]])"#);
    assert_eq!(query("PRAGMA user_version"), r#"ok([["7"]])"#);
    assert_eq!(
        query("SELECT name FROM pragma_table_info('b') ORDER BY cid"),
        r#"ok([["id"], ["name"], ["cost"], ["note"]])"#
    );
    assert_eq!(query("SELECT name FROM sqlite_sequence ORDER BY name"), r#"ok([["b"]])"#);
}
