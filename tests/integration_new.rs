//! `moat new`: a component made outside this repository, built with one
//! cargo command, loaded next to the shop, hearing order's events.

use std::process::Command;

use crate::common::*;

fn moat_in(dir: &std::path::Path, args: &[&str]) -> Run {
    let repo_manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../moat.toml");
    Run::from(
        Command::new(env!("CARGO_BIN_EXE_moat"))
            .current_dir(dir)
            .arg("--manifest")
            .arg(repo_manifest)
            .args(args)
            .env_remove("MOAT_HOST")
            .output()
            .unwrap(),
    )
}

#[test]
fn a_new_component_outside_the_repository_builds_loads_and_hears_order_events() {
    let outside = tempfile::tempdir().unwrap();
    let made = moat_in(outside.path(), &["new", "component", "shipping", "--subscribes", "shop:order", "--publishes"]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let crate_dir = outside.path().join("shipping");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "wit/world.wit",
        "wit/shipping/shipping.wit",
        "wit/deps/moat-platform/store.wit",
        "wit/deps/shop-order/handler.wit",
        "moat-sdk/src/lib.rs",
        "README.md",
    ] {
        assert!(crate_dir.join(file).is_file(), "{file} is missing");
    }

    // One cargo command, with the crate's own workspace (a shared target
    // directory only saves compiling wit-bindgen twice).
    let target = target_dir().join("scaffold");
    let build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&crate_dir)
        .args(["build", "--target", "wasm32-wasip2", "--release"])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(build.status.success(), "cargo build failed:\n{}", String::from_utf8_lossy(&build.stderr));
    let wasm = target.join("wasm32-wasip2/release/shipping.wasm");

    let app = TestApp::with_manifest(&format!(
        "[components.product]\npath = {:?}\n\n[components.order]\npath = {:?}\n\n[components.shipping]\npath = {wasm:?}\n",
        guest("product"),
        guest("order"),
    ));
    app.call_ok("product", r#"create-product({product-id: "P1", name: "Mouse", price: 100, stock: 5})"#);
    app.call_ok("order", r#"place-order("O1", "C1", [{product-id: "P1", quantity: 1}])"#);
    app.call_ok("order", r#"submit-order("O1")"#);
    let notes = app.call_ok("shipping", "list-notes()");
    assert!(notes.contains("shop:order: OrderEvent::Placed(Order { order-id: \\\"O1\\\""), "{notes}");
    assert!(notes.contains("shop:order: OrderEvent::Submitted("), "{notes}");
    assert!(app.call_ok("shipping", r#"add-note("hello")"#).contains(r#"text: "hello""#));
    let empty = app.moat(&["call", "shipping", r#"add-note("")"#]);
    assert_eq!(empty.code, 1, "{}", empty.stderr);
    let described = app.moat(&["describe", "shipping"]);
    assert!(described.stdout.contains("add-note: func(text: string) -> result<note, string>;"), "{}", described.stdout);

    // The same name again, a bad name, an unknown package: refused, nothing written.
    let again = moat_in(outside.path(), &["new", "component", "shipping"]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("exists already"), "{}", again.stderr);
    let bad = moat_in(outside.path(), &["new", "component", "Order_History"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("is not a WIT identifier"), "{}", bad.stderr);
    let unknown = moat_in(outside.path(), &["new", "component", "audit", "--subscribes", "shop:ordr"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("no WIT package shop:ordr") && unknown.stderr.contains("did you mean `shop:order`?"),
        "{}",
        unknown.stderr
    );
    assert!(!outside.path().join("audit").exists() && !outside.path().join("Order_History").exists());

    let app_made = moat_in(outside.path(), &["new", "app", "store"]);
    assert_eq!(app_made.code, 0, "{}", app_made.stderr);
    assert!(outside.path().join("store/moat.toml").is_file() && outside.path().join("store/wit").is_dir());
}
