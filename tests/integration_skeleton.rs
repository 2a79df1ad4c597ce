//! The walking skeleton: product and order as separate components, each
//! writing only its own database, order calling product through the host,
//! driven by `moat call` as a shell script would.

use crate::common::*;

#[test]
fn demo_scenario_through_the_cli_writes_each_database_only_its_own_tables() {
    let app = TestApp::shop();
    app.call_ok("product", PROD001);
    app.call_ok("product", PROD005);
    let placed = app.call_ok("order", ORD12345);
    assert!(placed.starts_with("ok({order-id: \"ORD12345\""), "{placed}");

    // A later process sees what earlier ones wrote.
    let order = app.call_ok("order", r#"get-order("ORD12345")"#);
    assert_eq!(
        order,
        r#"some({order-id: "ORD12345", customer-id: "CUST987", items: [{product-id: "PROD001", quantity: 2, product-name: "Wireless Mouse", unit-price: 2599}, {product-id: "PROD005", quantity: 1, product-name: "Mechanical Keyboard", unit-price: 7999}], status: pending, total: 13197})"#
    );
    assert_eq!(
        app.call_ok("product", r#"get-product("PROD001")"#),
        r#"some({product-id: "PROD001", name: "Wireless Mouse", price: 2599, stock: 150})"#
    );

    // Each file holds its own component's tables and none of the other's.
    let product = app.db("product");
    assert_eq!(tables(&product), ["products", "reservation_lines", "reservations"]);
    assert_eq!(count(&product, "products"), 2);
    let orders = app.db("order");
    assert_eq!(tables(&orders), ["order_items", "orders", "product_replica"]);
    assert_eq!(count(&orders, "orders"), 1);
    assert_eq!(
        dump(&orders, "order_items"),
        [r#""ORD12345"|0|"PROD001"|2|"Wireless Mouse"|2599"#, r#""ORD12345"|1|"PROD005"|1|"Mechanical Keyboard"|7999"#,]
    );
}

#[test]
fn json_output_for_scripts() {
    let app = TestApp::shop();
    app.call_ok("product", PROD001);
    let run = app.moat(&["--json", "call", "product", r#"get-product("PROD001")"#]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"product-id": "PROD001", "name": "Wireless Mouse", "price": 2599, "stock": 150})
    );
}

#[test]
fn rejected_orders_return_a_typed_error_and_write_nothing_anywhere() {
    let app = TestApp::shop();
    app.call_ok("product", PROD001);
    app.call_ok("order", ORD12345.replace("PROD005", "PROD001").as_str());
    let before =
        (dump(&app.db("product"), "products"), dump(&app.db("order"), "orders"), dump(&app.db("order"), "order_items"));

    let cases = [
        (
            r#"place-order("ORD2", "CUST1", [{product-id: "PROD001", quantity: 1}, {product-id: "NOPE", quantity: 1}])"#,
            r#"err(unknown-product("NOPE"))"#,
        ),
        (
            r#"place-order("ORD2", "CUST1", [{product-id: "PROD001", quantity: 0}])"#,
            r#"err(invalid-quantity("PROD001"))"#,
        ),
        (r#"place-order("ORD2", "CUST1", [])"#, "err(no-items)"),
        (
            r#"place-order("ORD12345", "CUST1", [{product-id: "PROD001", quantity: 1}])"#,
            r#"err(already-exists("ORD12345"))"#,
        ),
        (
            r#"place-order("", "CUST1", [{product-id: "PROD001", quantity: 1}])"#,
            r#"err(invalid("order-id must not be empty"))"#,
        ),
    ];
    for (call, expected) in cases {
        let run = app.moat(&["call", "order", call]);
        assert_eq!(run.code, 1, "a returned err exits 1: {call}\n{}", run.stderr);
        assert_eq!(run.stdout.trim(), expected, "{call}");
    }

    let after =
        (dump(&app.db("product"), "products"), dump(&app.db("order"), "orders"), dump(&app.db("order"), "order_items"));
    assert_eq!(before, after, "refused orders changed a database");
}

#[test]
fn catalog_errors_are_typed_and_write_nothing() {
    let app = TestApp::shop();
    let open = app.open();
    call(&open, "product", PROD001).unwrap();
    assert_eq!(call(&open, "product", PROD001).unwrap(), r#"err(already-exists("PROD001"))"#);
    assert_eq!(call(&open, "product", r#"adjust-stock("PROD001", -151)"#).unwrap(), "err(insufficient-stock(150))");
    assert_eq!(call(&open, "product", r#"set-price("NOPE", 1)"#).unwrap(), r#"err(not-found("NOPE"))"#);
    assert_eq!(
        call(&open, "product", r#"rename-product("PROD001", " ")"#).unwrap(),
        r#"err(invalid("name must not be empty"))"#
    );
    assert_eq!(
        call(&open, "product", r#"adjust-stock("PROD001", -50)"#).unwrap(),
        r#"ok({product-id: "PROD001", name: "Wireless Mouse", price: 2599, stock: 100})"#
    );
    assert_eq!(
        call(&open, "product", "list-products()").unwrap(),
        r#"[{product-id: "PROD001", name: "Wireless Mouse", price: 2599, stock: 100}]"#
    );
}

#[test]
fn a_trap_rolls_the_unit_of_work_back_and_the_next_call_works() {
    let app = TestApp::new(&[("probe", "probe")]);
    let open = app.open();
    assert_eq!(call(&open, "probe", r#"execute("CREATE TABLE notes (note TEXT)")"#).unwrap(), "ok(0)");

    let trap = call(&open, "probe", r#"write-then-trap("INSERT INTO notes VALUES ('lost')")"#).unwrap_err();
    let message = format!("{trap:#}");
    assert!(message.contains("component `probe` failed in `test:probe/probe.write-then-trap`"), "{message}");
    assert!(message.contains("panicked"), "{message}");
    assert!(message.contains("rolled back"), "{message}");

    // The trapped instance was replaced; the write was not kept.
    assert_eq!(call(&open, "probe", r#"query("SELECT count(*) FROM notes")"#).unwrap(), r#"ok([["0"]])"#);

    // A function that returns err rolls back too, and is not a failure.
    assert_eq!(
        call(&open, "probe", r#"write-then-fail("INSERT INTO notes VALUES ('lost')")"#).unwrap(),
        r#"err("failing after the write, as asked")"#
    );
    assert_eq!(call(&open, "probe", r#"execute("INSERT INTO notes VALUES ('kept')")"#).unwrap(), "ok(1)");
    assert_eq!(call(&open, "probe", r#"query("SELECT note FROM notes")"#).unwrap(), r#"ok([["kept"]])"#);
}

#[test]
fn order_calls_product_through_the_host_and_never_sees_its_tables() {
    let app = TestApp::new(&[("product", "product"), ("order", "order"), ("probe", "probe")]);
    let open = app.open();
    call(&open, "product", PROD001).unwrap();
    call(&open, "product", PROD005).unwrap();
    call(&open, "order", ORD12345).unwrap();

    // A third component's store is its own database: product's and order's
    // tables do not exist there, under any name.
    for table in ["products", "orders", "main.products"] {
        let seen = call(&open, "probe", &format!(r#"query("SELECT * FROM {table}")"#)).unwrap();
        assert!(seen.contains("Invalid(\\\"no such table"), "{table}: {seen}");
    }
    assert_eq!(
        call(&open, "probe", r#"query("SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 6) != '_moat_' AND name NOT LIKE 'sqlite%'")"#).unwrap(),
        "ok([])"
    );
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = moat::Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let first = runtime.load(&guest("product")).unwrap();
    assert!(first.compiled_now);
    let second = moat::Runtime::new(Some(cache.path().to_path_buf())).unwrap().load(&guest("product")).unwrap();
    assert!(!second.compiled_now, "a second start compiled again");
    assert_eq!(first.digest, second.digest);
    let files: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().starts_with(&first.digest));
}
