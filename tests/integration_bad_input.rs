//! Bad input at the edges: each gets a clear message saying what was wrong
//! and what to do, exit code 2, and an untouched data directory.

use crate::common::*;

/// Runs `moat call` and checks the failure: exit 2, every `needle` in
/// stderr, nothing on stdout, no data written.
fn refused(app: &TestApp, component: &str, call: &str, needles: &[&str]) {
    let run = app.moat(&["call", component, call]);
    assert_eq!(run.code, 2, "{call}: stdout {} stderr {}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    for needle in needles {
        assert!(run.stderr.contains(needle), "{call}: expected {needle:?} in:\n{}", run.stderr);
    }
    assert!(app.data_is_untouched(), "{call}: the data directory was written");
}

#[test]
fn manifest_errors_name_the_file_line_and_field() {
    let product = guest("product");
    let app = TestApp::with_manifest(&format!("[components.product]\npath = {product:?}\npaht = \"typo\"\n"));
    refused(
        &app,
        "product",
        "list-products()",
        &["moat.toml is not a valid manifest", "line 3", "unknown field `paht`"],
    );

    let app = TestApp::with_manifest("[components.product\npath = 1\n");
    refused(&app, "product", "list-products()", &["moat.toml is not a valid manifest", "line 1"]);

    let app =
        TestApp::with_manifest(&format!("[components.a]\npath = {product:?}\n[components.a]\npath = {product:?}\n"));
    refused(&app, "a", "list-products()", &["duplicate key"]);

    let app = TestApp::with_manifest("");
    refused(&app, "a", "list-products()", &["no components"]);
}

#[test]
fn a_missing_manifest_says_how_to_point_at_one() {
    let app = TestApp::shop();
    std::fs::remove_file(app.manifest()).unwrap();
    refused(&app, "product", "list-products()", &["cannot read the manifest", "--manifest PATH"]);
}

#[test]
fn missing_and_corrupt_component_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(guest("product")).unwrap();
    let files = [
        ("missing.wasm", None, vec!["cannot read the component file", "check its path in the manifest"]),
        ("empty.wasm", Some(Vec::new()), vec!["is empty"]),
        ("text.wasm", Some(b"this is not wasm".to_vec()), vec!["is not a WebAssembly component"]),
        ("truncated.wasm", Some(real[..real.len() / 2].to_vec()), vec!["is not a valid WebAssembly component"]),
        (
            "core.wasm",
            Some(b"\0asm\x01\0\0\0".to_vec()),
            vec!["is a core WebAssembly module, not a component", "wasm32-wasip2"],
        ),
    ];
    for (name, bytes, needles) in files {
        let path = dir.path().join(name);
        if let Some(bytes) = bytes {
            std::fs::write(&path, bytes).unwrap();
        }
        let app = TestApp::with_manifest(&format!("[components.product]\npath = {path:?}\n"));
        let mut needles = needles;
        needles.push("loading component `product`");
        refused(&app, "product", "list-products()", &needles);
    }
}

#[test]
fn unknown_components_and_functions_suggest_the_name_meant_or_list_what_exists() {
    let app = TestApp::shop();
    refused(
        &app,
        "prodct",
        "list-products()",
        &["no component `prodct`", "it has: order, product", "did you mean `product`?"],
    );
    // A typo gets the one function meant, with its signature, not all eight.
    let typo = app.moat(&["call", "product", r#"get-prodct("PROD001")"#]);
    assert_eq!(typo.code, 2);
    assert!(typo.stderr.contains("has no function `get-prodct`; did you mean `get-product`?"), "{}", typo.stderr);
    assert!(
        typo.stderr.contains("catalog.get-product: func(product-id: product-id) -> option<product>"),
        "{}",
        typo.stderr
    );
    assert!(!typo.stderr.contains("set-price"), "{}", typo.stderr);
    refused(&app, "order", "list_orders()", &["did you mean `list-orders`?"]);
    // A name nothing resembles gets the list.
    refused(
        &app,
        "product",
        "shipping-quote()",
        &[
            "component `product` has no function `shipping-quote`",
            "catalog.get-product: func(product-id: product-id) -> option<product>",
            "set-price",
        ],
    );
    refused(&app, "product", "get-product", &["is not a call", "FUNCTION(ARGS)"]);
}

#[test]
fn flags_a_command_cannot_honour_are_refused_and_errors_are_json_under_json() {
    let app = TestApp::shop();
    for command in [&["events"][..], &["components"], &["openapi"], &["up"]] {
        let args: Vec<&str> = [&["--host", "127.0.0.1:1"][..], command].concat();
        let run = app.moat(&args);
        assert_eq!(run.code, 2, "{command:?}: {}", run.stderr);
        assert!(run.stderr.contains("drop --host"), "{command:?}: {}", run.stderr);
    }
    assert!(app.data_is_untouched());

    let run = app.moat(&["--json", "call", "prodct", "list-products()"]);
    assert_eq!(run.code, 2);
    let error: serde_json::Value =
        serde_json::from_str(run.stderr.trim()).unwrap_or_else(|e| panic!("{e}: {}", run.stderr));
    assert!(error["error"].as_str().unwrap().contains("did you mean `product`?"), "{error}");
    assert_eq!(error["exit"], 2);
}

#[test]
fn arguments_that_do_not_parse_or_do_not_fit_are_refused() {
    let app = TestApp::shop();
    refused(
        &app,
        "product",
        r#"get-product("PROD001)"#,
        &[
            "cannot read the arguments as WAVE",
            "expected: get-product: func(product-id: product-id) -> option<product>\n    type product-id = string",
        ],
    );
    // Each misfit names the argument, field or element, what it should be,
    // and how to write it.
    refused(
        &app,
        "product",
        "get-product(42)",
        &["the arguments do not fit `get-product`: product-id: expected string, found `42`", "^^"],
    );
    refused(
        &app,
        "product",
        "get-product(PROD001)",
        &["product-id: expected string, found `PROD001` (a string is written in double quotes: \"PROD001\")"],
    );
    refused(&app, "product", r#"get-product("a", "b")"#, &["1 argument(s) expected, 2 given"]);
    refused(
        &app,
        "product",
        r#"set-price("PROD001", -5)"#,
        &["price: expected u64, found `-5` (a u64 cannot be negative)"],
    );
    refused(
        &app,
        "product",
        r#"create-product({product-id: "X", name: "Y", price: 1})"#,
        &["product: the field `stock` (u32) is missing"],
    );
    refused(
        &app,
        "product",
        r#"create-product({product-id: "X", nmae: "Y", price: 1, stock: 1})"#,
        &["product: no field `nmae`; did you mean `name`?; the fields are product-id, name, price, stock"],
    );
    refused(
        &app,
        "order",
        r#"place-order("O1", "C1", [{product-id: "P", quantity: 1}, {product-id: "P", quantity: 99999999999}])"#,
        &["items[1].quantity: expected u32, found `99999999999` (out of range for u32)"],
    );
}

#[test]
fn components_calling_each_other_in_a_cycle_are_refused() {
    let ping = guest("ping");
    let app = TestApp::with_manifest(&format!("[components.a]\npath = {ping:?}\n\n[components.b]\npath = {ping:?}\n"));
    refused(&app, "a", "ping(1)", &["components call each other in a cycle: a -> b -> a", "through events instead"]);
}

#[test]
fn huge_arguments_are_handled_or_refused_with_a_limit() {
    let app = TestApp::shop();
    // As big as a command line takes: an ordinary argument.
    let big = format!("get-product({:?})", "x".repeat(100_000));
    assert_eq!(app.call_ok("product", &big), "none");
    // Past the limit, through the control API (no command line is that long).
    let host = app.up();
    let huge = format!("get-product({:?})", "x".repeat(2 << 20));
    let err = format!("{:#}", host.client.call("product", &huge, false).unwrap_err());
    assert!(err.contains("the call is 2097167 bytes long; the limit is 1048576"), "{err}");
    refused(
        &TestApp::shop(),
        "product",
        r#"set-price("PROD001", 99999999999999999999999)"#,
        &["the arguments do not fit `set-price`"],
    );
}

#[test]
fn bad_limits_in_the_manifest_are_refused() {
    let product = guest("product");
    let app = TestApp::with_manifest(&format!("[components.product]\npath = {product:?}\nlimits.memory_mib = 0\n"));
    refused(&app, "product", "list-products()", &["[components.product.limits]", "must be above 0"]);
    let app = TestApp::with_manifest(&format!(
        "[components.product]\npath = {product:?}\nsqlite.synchronous = \"sometimes\"\n"
    ));
    refused(
        &app,
        "product",
        "list-products()",
        &["unknown variant `sometimes`", "expected one of `off`, `normal`, `full`, `extra`"],
    );
}

#[test]
fn a_swap_to_another_components_build_says_so_in_one_line_and_to_the_running_build_does_nothing() {
    let app = TestApp::shop();
    assert_eq!(app.moat(&["call", "product", "list-products()"]).code, 0);
    let before = snapshot(&app, "product");

    let order = guest("order");
    let wrong = app.moat(&["swap", "product", order.to_str().unwrap()]);
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains(
            "`product` serves shop:product, and the new build serves shop:order/orders@1.0.0 instead, as `order` does: it looks like a build of `order`"
        ),
        "{}",
        wrong.stderr
    );
    assert_eq!(wrong.stderr.lines().count(), 2, "one refusal, said once:\n{}", wrong.stderr);

    let product = guest("product");
    let same = app.moat(&["swap", "product", product.to_str().unwrap()]);
    assert_eq!(same.code, 0, "{}", same.stderr);
    assert!(
        same.stdout.contains("already runs this build") && same.stdout.contains("nothing swapped"),
        "{}",
        same.stdout
    );
    assert_eq!(snapshot(&app, "product"), before, "a swap that changed nothing wrote something");
    assert!(!app.data().join("deployed.toml").exists(), "a swap that changed nothing was recorded");

    let missing = app.moat(&["swap", "product", "nowhere/product.wasm"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("does not exist: check the path"), "{}", missing.stderr);
    assert!(!missing.stderr.contains("make build"), "{}", missing.stderr);
}

#[test]
fn describe_shows_the_contract_with_wit_type_names_from_the_build_itself() {
    let app = TestApp::shop();
    let run = app.moat(&["describe", "order", "place-order"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "place-order: func(order-id: order-id, customer-id: customer-id, items: list<order-line>) -> result<order, order-error>;"
        ),
        "{}",
        run.stdout
    );
    for definition in [
        "type order-id = string",
        "record order-line { product-id: product-id, quantity: u32 }",
        "enum order-status { pending, submitted, confirmed, rejected, cancelled }",
        "variant order-error { already-exists(order-id), not-found(order-id), no-items,",
    ] {
        assert!(run.stdout.contains(definition), "{definition}:\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("submit-order"), "only the function asked for:\n{}", run.stdout);
    // Handlers and the host's interfaces are not part of the contract.
    let all = app.moat(&["describe", "product"]);
    assert!(all.stdout.contains("shop:product/catalog@1.0.0") && !all.stdout.contains("handler"), "{}", all.stdout);
    // moat components writes the same names.
    let listed = app.moat(&["components"]);
    assert!(
        listed.stdout.contains("get-product: func(product-id: product-id) -> option<product>"),
        "{}",
        listed.stdout
    );
    let typo = app.moat(&["describe", "order", "place-ordr"]);
    assert_eq!(typo.code, 2);
    assert!(typo.stderr.contains("serves no function `place-ordr`"), "{}", typo.stderr);

    // A build in another language, with no WIT sources at hand: the names
    // come from the component.
    let python = TestApp::new(&[("product", "py_product")]);
    let run = python.moat(&["describe", "product", "search-products"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("search-products: func(text: string) -> list<product>;"), "{}", run.stdout);
    assert!(python.data_is_untouched(), "describe wrote to the data directory");
}

#[test]
fn a_slow_compile_says_what_it_compiles_and_how_long_it_took() {
    // The Python build is 18 MB and takes seconds to compile.
    let app = TestApp::new(&[("product", "py_product")]);
    let run = app.moat(&["--no-cache", "components"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("moat: compiling ") && run.stderr.contains("py_product.wasm (18."), "{}", run.stderr);
    assert!(run.stderr.contains("moat: compiled ") && run.stderr.contains(" s\n"), "{}", run.stderr);
    assert!(!run.stderr.contains("later starts use the cache"), "--no-cache caches nothing:\n{}", run.stderr);
}
