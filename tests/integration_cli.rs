//! The CLI as a person reads it: help and error texts compared with stored
//! snapshots (`tests/snapshots/`), so a change of wording is deliberate,
//! and tables that fit what they hold. `MOAT_BLESS=1` rewrites the
//! snapshots from the current output; review the diff before committing.

use crate::common::*;

/// Runs `moat ARGS` against `app` and renders what a person sees: the exit
/// code, stdout and stderr, with the paths of this run replaced by names.
fn seen(app: &TestApp, args: &[&str]) -> String {
    // Help wraps at the terminal's width, or at COLUMNS: fixed here.
    let mut command = app.command(args);
    command.env("COLUMNS", "100");
    if args.contains(&"--help") {
        // Help shows the values of the environment variables it reads.
        command.env_remove("MOAT_CACHE_DIR");
    }
    let run = Run::from(command.output().unwrap());
    let guests = guest("product").parent().unwrap().to_string_lossy().into_owned();
    let dir = app.dir.path().canonicalize().unwrap().to_string_lossy().into_owned();
    let cache = cache_dir().to_string_lossy().into_owned();
    let clean = |s: &str| {
        s.replace(&guests, "$GUESTS")
            .replace(&dir, "$APP")
            .replace(&app.dir.path().to_string_lossy().into_owned(), "$APP")
            .replace(&cache, "$CACHE")
    };
    format!(
        "$ moat {}\nexit {}\n--- stdout\n{}--- stderr\n{}",
        clean(&args.join(" ")),
        run.code,
        clean(&run.stdout),
        clean(&run.stderr)
    )
}

fn check(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/snapshots").join(format!("{name}.txt"));
    if std::env::var_os("MOAT_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run the test with MOAT_BLESS=1 to write it", path.display()));
    assert!(
        expected == actual,
        "{name}: the output changed (MOAT_BLESS=1 rewrites {} if the change is meant)\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn help_and_error_texts_match_their_snapshots() {
    let app = TestApp::shop();
    let order = guest("order").to_string_lossy().into_owned();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("help", vec!["--help"]),
        ("help-call", vec!["call", "--help"]),
        ("help-swap", vec!["swap", "--help"]),
        ("function-typo", vec!["call", "product", r#"get-prodcut("PROD001")"#]),
        (
            "negative-price",
            vec!["call", "product", r#"create-product({product-id: "P1", name: "x", price: -5, stock: 1})"#],
        ),
        ("missing-field", vec!["call", "product", r#"create-product({product-id: "P1", name: "x", price: 5})"#]),
        ("unquoted-string", vec!["call", "product", "get-product(PROD001)"]),
        ("component-typo", vec!["call", "prodcut", "list-products()"]),
        ("host-ignored", vec!["--host", "127.0.0.1:1", "events"]),
        ("swap-wrong-build", vec!["swap", "product", &order]),
        ("json-error", vec!["--json", "call", "order", "list_orders()"]),
    ];
    for (name, args) in cases {
        check(name, &seen(&app, &args));
    }
}

#[test]
fn status_tables_fit_a_long_component_name() {
    let app = TestApp::new(&[("product", "product"), ("order-management-service", "order")]);
    let run = app.moat(&["status"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let header = lines.iter().find(|l| l.starts_with("component")).unwrap();
    let row = lines.iter().find(|l| l.starts_with("order-management-service")).unwrap();
    // The next column starts at the same place in the header and the row.
    assert_eq!(header.find("version"), row.find("1.0.0"), "\n{header}\n{row}");
    let route = lines.iter().find(|l| l.starts_with("product -> order-management-service")).unwrap();
    let routes = lines.iter().find(|l| l.starts_with("events")).unwrap();
    assert_eq!(
        routes.find("cursor").map(|i| i + "cursor".len()),
        route.find(" 0 ").map(|i| i + 2),
        "\n{routes}\n{route}"
    );
    assert!(run.stdout.lines().all(|l| l == l.trim_end()), "trailing spaces:\n{}", run.stdout);
}

#[test]
fn logs_are_one_json_object_per_line_on_request_and_plain_text_without_colour_otherwise() {
    let app = TestApp::shop();
    let env = [("RUST_LOG", "info")];
    let run = app.moat_env(&["--log-format", "json", "call", "product", "list-products()"], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<serde_json::Value> =
        run.stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    // One line per request: component, function, outcome, duration.
    let call = lines.iter().find(|l| l["fields"]["message"] == "call").expect("a line for the call");
    assert_eq!(call["level"], "INFO");
    assert_eq!(call["fields"]["component"], "product");
    assert_eq!(call["fields"]["function"], "shop:product/catalog@1.0.0.list-products");
    assert_eq!(call["fields"]["outcome"], "ok");
    assert!(call["fields"]["ms"].as_f64().is_some(), "{call}");

    // One line per delivered batch, and no colour codes into a pipe.
    app.call_ok("product", r#"create-product({product-id: "P1", name: "Mouse", price: 100, stock: 5})"#);
    let run = app.moat_env(&["call", "order", r#"place-order("O1", "C1", [{product-id: "P1", quantity: 1}])"#], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("delivered subscriber=\"product\" publisher=\"order\" topic=\"shop:order\" count=1"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains('\u{1b}'), "colour codes in a pipe:\n{}", run.stderr);
    let bad = app.moat(&["--log-format", "xml", "status"]);
    assert_eq!(bad.code, 2);
}

#[test]
fn status_watch_follows_a_running_host_until_stopped() {
    let app = TestApp::shop();
    let refused = app.moat(&["status", "--watch"]);
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("start one with `moat up`"), "{}", refused.stderr);

    let host = app.up();
    let mut watch = app.command(&["--json", "status", "--watch"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    app.call_ok("product", r#"list-products()"#);
    let calls = |v: &serde_json::Value| {
        v["status"]["components"].as_array().unwrap().iter().find(|c| c["name"] == "product").unwrap()["calls"]
            .as_u64()
            .unwrap()
    };
    // A later refresh shows the call (one a second: within a few).
    let seen = (0..20)
        .map(|_| calls(&serde_json::from_str::<serde_json::Value>(&lines.next().unwrap().unwrap()).unwrap()))
        .find(|n| *n > calls(&first));
    assert_eq!(seen, Some(calls(&first) + 1), "a refresh shows the call made after the first");
    // The reader goes: the watcher ends (a closed pipe, not a panic).
    drop(lines);
    let status = watch.wait().unwrap();
    assert!(!status.success());
    drop(host);
}
