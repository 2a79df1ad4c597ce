//! The boundary: a component gets its own database and nothing else. What it
//! imports and the host does not grant is refused at load, by name; what it
//! tries in SQL beyond its own tables is refused as an ordinary error.

use crate::common::*;

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
fn strict_components_may_not_import_wasi_filesystem() {
    let probe = guest("probe");
    let app = TestApp::with_manifest(&format!("[components.probe]\npath = {probe:?}\nstrict = true\n"));
    let err = format!("{:#}", app.try_plan().err().expect("a strict component importing wasi:filesystem must be refused"));
    assert!(err.contains("wasi:filesystem/types@0.2."), "{err}");
    assert!(err.contains("refused because the component is `strict`"), "{err}");
}

#[test]
fn wasi_filesystem_is_linked_inert_by_default() {
    let app = TestApp::new(&[("probe", "probe")]);
    let open = app.open();
    for path in ["/etc/passwd", "product.db", "../data/probe.db", "."] {
        let result = call(&open, "probe", &format!("read-file({path:?})")).unwrap();
        assert!(result.starts_with("err("), "{path}: {result}");
    }
}

#[test]
fn sql_beyond_the_components_own_tables_is_denied_as_an_error() {
    let app = TestApp::new(&[("product", "product"), ("probe", "probe")]);
    let open = app.open();
    let product_db = app.data().join("product.db");
    let attempts = [
        format!("ATTACH DATABASE '{}' AS other", product_db.display()),
        "ATTACH DATABASE 'product.db' AS other".to_string(),
        "BEGIN".to_string(),
        "COMMIT".to_string(),
        "SAVEPOINT s".to_string(),
        "PRAGMA journal_mode = delete".to_string(),
        "PRAGMA writable_schema = on".to_string(),
        "INSERT INTO _moat_meta (key, value) VALUES ('schema_version', 99)".to_string(),
        "DROP TABLE _moat_meta".to_string(),
    ];
    for sql in attempts {
        let result = call(&open, "probe", &format!("execute({sql:?})")).unwrap();
        assert!(result.starts_with("err(\"Error::Denied("), "{sql}: {result}");
    }
    let read = call(&open, "probe", r#"query("SELECT * FROM _moat_meta")"#).unwrap();
    assert!(read.contains("Denied(\\\"table _moat_meta is reserved for the host"), "{read}");
    // The host's own record survived the attempts.
    assert_eq!(count(&app.db("probe"), "_moat_meta"), 0);
    assert_eq!(
        app.db("product").query_row("SELECT value FROM _moat_meta WHERE key = 'schema_version'", [], |r| r.get::<_, String>(0)).unwrap(),
        "1.0"
    );
}
