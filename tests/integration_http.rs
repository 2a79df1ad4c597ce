//! The HTTP gateway, with a plain HTTP/1.1 client: the shop end to end,
//! every status a call can produce, every WIT type's JSON round trip through
//! a real component, idempotency keys across a SIGKILL, and the generated
//! OpenAPI document checked by tools no one here wrote (openapi-spec-validator,
//! schemathesis; `make test` installs them into `target/http-venv`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use moat::values::json;
use proptest::strategy::{BoxedStrategy, Strategy};
use serde_json::{Value as Json, json};
use wasmtime::component::Val;
use wasmtime::component::types::Type;

use crate::common::*;

/// What came back.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Json {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one request and reads the whole reply (`Connection: close`).
fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(request(addr, method, path, headers, body).as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse(&raw)
}

fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    request
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().into(), v.trim().into())).collect();
    let chunked = text.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Reply { status, headers, body: if chunked { unchunk(body) } else { body.to_string() } }
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

fn post(addr: &str, path: &str, body: Json) -> Reply {
    send(addr, "POST", path, &[], &body.to_string())
}

/// `moat up --http 127.0.0.1:0` for `app`, and the gateway's address.
fn up(app: &TestApp) -> (Host, String) {
    let host = Host::start_args(&app.manifest(), &app.data(), &["--http", "127.0.0.1:0"]);
    let http = host.http.clone().expect("moat up says where the HTTP gateway listens");
    (host, http)
}

#[test]
fn the_shop_runs_over_http_with_json_and_status_codes_from_the_types() {
    let app = TestApp::with_manifest(&format!(
        "[components.product]\npath = {:?}\n\n[components.order]\npath = {:?}\n\n\
         [http.errors]\nnot-found = 404\nalready-exists = 409\ninsufficient-stock = 409\n",
        guest("product"),
        guest("order")
    ));
    let (_host, http) = up(&app);
    let mouse = json!({"product-id": "PROD001", "name": "Wireless Mouse", "price": 2599, "stock": 150});
    let created = post(&http, "/product/catalog/create-product", json!({"product": mouse}));
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(created.json(), mouse);
    post(
        &http,
        "/product/catalog/create-product",
        json!({"product": {"product-id": "PROD005", "name": "Mechanical Keyboard", "price": 7999, "stock": 40}}),
    );
    let placed = post(
        &http,
        "/order/orders/place-order",
        json!({"order-id": "ORD12345", "customer-id": "CUST987", "items": [
            {"product-id": "PROD001", "quantity": 2}, {"product-id": "PROD005", "quantity": 1}
        ]}),
    );
    assert_eq!(placed.status, 200, "{}", placed.body);
    assert_eq!(placed.json()["total"], 13197);
    assert_eq!(placed.json()["status"], "pending");
    let got = post(&http, "/order/orders/get-order", json!({"order-id": "ORD12345"}));
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["items"][0]["product-name"], "Wireless Mouse");
    let listed = post(&http, "/product/catalog/list-products", json!({}));
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json().as_array().unwrap().len(), 2);
    // No body at all for a function without parameters.
    assert_eq!(send(&http, "POST", "/product/catalog/list-products", &[], "").status, 200);

    // Statuses from the types: option none → 404; err → its mapped status,
    // with the error value; an unmapped case → 422.
    let none = post(&http, "/product/catalog/get-product", json!({"product-id": "NOPE"}));
    assert_eq!(none.status, 404, "{}", none.body);
    assert_eq!(none.header("content-type"), Some("application/problem+json"));
    let exists = post(&http, "/product/catalog/create-product", json!({"product": mouse}));
    assert_eq!(exists.status, 409, "{}", exists.body);
    assert_eq!(exists.json()["error"], json!({"already-exists": "PROD001"}));
    let invalid = post(
        &http,
        "/product/catalog/create-product",
        json!({"product": {"product-id": "", "name": "x", "price": 1, "stock": 1}}),
    );
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    assert!(invalid.json()["error"]["invalid"].is_string());

    // Bad input: 400, a problem naming the field and the WIT type, nothing written.
    let before = snapshot(&app, "product");
    for (body, path, expected) in [
        (r#"{"product": {"product-id": "P", "name": "n", "price": -5, "stock": 1}}"#, "/product/price", "u64"),
        (r#"{"product": {"product-id": "P", "name": "n", "price": 5}}"#, "/product/stock", "u32"),
        (
            r#"{"product": {"product-id": "P", "name": "n", "price": 5, "stock": 1, "color": "red"}}"#,
            "/product/color",
            "no such field",
        ),
        (r#"{"product": {"product-id": 7, "name": "n", "price": 5, "stock": 1}}"#, "/product/product-id", "string"),
        (r#"{"product": {"product-id": "P", "name": "n", "price": 5, "stock": 4294967296}}"#, "/product/stock", "u32"),
        (r#"{"item": {}}"#, "/item", "no such argument"),
    ] {
        let bad = send(&http, "POST", "/product/catalog/create-product", &[], body);
        assert_eq!(bad.status, 400, "{body}: {}", bad.body);
        assert_eq!(bad.header("content-type"), Some("application/problem+json"));
        let errors = bad.json()["errors"].as_array().unwrap().clone();
        let error =
            errors.iter().find(|e| e["path"] == path).unwrap_or_else(|| panic!("no error at {path}: {}", bad.body));
        assert!(error["expected"].as_str().unwrap().contains(expected), "{}", bad.body);
    }
    for (path, body) in [
        ("/product/catalog/create-product", "{not json"),
        ("/product/catalog/create-product", "[1, 2]"),
        ("/nobody/catalog/get-product", "{}"),
        ("/product/catalog/get-prodcut", "{}"),
        ("/product/handler/handle", "{}"),
        ("/product/schema/migrate", "{}"),
    ] {
        let bad = send(&http, "POST", path, &[], body);
        assert_eq!(bad.status, 400, "{path} {body}: {}", bad.body);
        assert_eq!(bad.header("content-type"), Some("application/problem+json"), "{path}");
    }
    assert_eq!(snapshot(&app, "product"), before, "bad input wrote something");
    assert_eq!(send(&http, "GET", "/nowhere", &[], "").status, 404);
    let health = send(&http, "GET", "/healthz", &[], "");
    assert_eq!((health.status, health.json()), (200, json!({"status": "ok"})));
    assert_eq!(send(&http, "GET", "/readyz", &[], "").status, 200);
}

#[test]
fn a_request_past_its_deadline_is_504_and_a_trap_500_both_rolled_back() {
    let app = TestApp::with_manifest(&format!(
        "[components.probe]\npath = {:?}\nlimits.call_timeout_ms = 500\n",
        guest("probe")
    ));
    let (_host, http) = up(&app);
    let functions = send(&http, "GET", "/openapi.json", &[], "").json();
    let path = functions["paths"]
        .as_object()
        .unwrap()
        .keys()
        .find(|p| p.ends_with("/sleep"))
        .cloned()
        .expect("probe exports sleep");
    let slow = post(&http, &path, json!({"ms": 5000}));
    assert_eq!(slow.status, 504, "{}", slow.body);
    assert!(slow.json()["detail"].as_str().unwrap().contains("deadline"), "{}", slow.body);
    let trapped = post(&http, &path.replace("/sleep", "/write-then-trap"), json!({"sql": "CREATE TABLE t (x)"}));
    assert_eq!(trapped.status, 500, "{}", trapped.body);
    assert!(trapped.json()["detail"].as_str().unwrap().contains("rolled back"), "{}", trapped.body);
    let written =
        post(&http, &path.replace("/sleep", "/write-then-sleep"), json!({"sql": "CREATE TABLE u (x)", "ms": 5000}));
    assert_eq!(written.status, 504, "{}", written.body);
    assert!(tables(&app.db("probe")).is_empty(), "a failed call left a table");
}

#[test]
fn an_idempotency_key_runs_a_call_once_even_when_the_host_dies_before_the_reply() {
    let app = TestApp::shop();
    app.call_ok("product", PROD001);
    let body = json!({"order-id": "ORD1", "customer-id": "C", "items": [{"product-id": "PROD001", "quantity": 1}]})
        .to_string();
    let (host, http) = up(&app);
    // The request goes out; once the order is committed the host is killed,
    // and the reply (if it was written) is never read: as if it were lost.
    let mut stream = TcpStream::connect(&http).unwrap();
    let key = [("Idempotency-Key", "order-ORD1")];
    stream.write_all(request(&http, "POST", "/order/orders/place-order", &key, &body).as_bytes()).unwrap();
    let start = std::time::Instant::now();
    let committed = |app: &TestApp| {
        app.data().join("order.db").exists()
            && app.db("order").query_row("SELECT count(*) FROM orders", [], |r| r.get::<_, i64>(0)).unwrap_or(0) == 1
    };
    while !committed(&app) {
        assert!(start.elapsed() < Duration::from_secs(10), "the order never committed");
        std::thread::sleep(Duration::from_millis(1));
    }
    host.kill();
    drop(stream);

    // The retry, with the same key, on the restarted host: the recorded
    // response, the order there once.
    let (_host, http) = up(&app);
    let retry = send(&http, "POST", "/order/orders/place-order", &key, &body);
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.json()["order-id"], "ORD1");
    assert_eq!(count(&app.db("order"), "orders"), 1);
    // Without the key, the same body is a new call: the order exists.
    let again = send(&http, "POST", "/order/orders/place-order", &[], &body);
    assert_eq!(again.status, 422, "{}", again.body);
    assert_eq!(again.json()["error"], json!({"already-exists": "ORD1"}));
    // The key with another body: 422, nothing runs.
    let other = body.replace("\"quantity\":1", "\"quantity\":2");
    let reused = send(&http, "POST", "/order/orders/place-order", &key, &other);
    assert_eq!(reused.status, 422, "{}", reused.body);
    assert_eq!(reused.json()["title"], "Idempotency-Key reused");
    assert_eq!(count(&app.db("order"), "orders"), 1);
}

/// Any value of a WIT type, NaN, infinities, 64-bit extremes and empty
/// lists included.
fn arbitrary(ty: &Type) -> BoxedStrategy<Val> {
    use proptest::prelude::*;
    match ty {
        Type::Bool => any::<bool>().prop_map(Val::Bool).boxed(),
        Type::S8 => any::<i8>().prop_map(Val::S8).boxed(),
        Type::U8 => any::<u8>().prop_map(Val::U8).boxed(),
        Type::S16 => any::<i16>().prop_map(Val::S16).boxed(),
        Type::U16 => any::<u16>().prop_map(Val::U16).boxed(),
        Type::S32 => any::<i32>().prop_map(Val::S32).boxed(),
        Type::U32 => any::<u32>().prop_map(Val::U32).boxed(),
        Type::S64 => prop_oneof![any::<i64>(), -(1i64 << 53)..=(1i64 << 53), Just(i64::MIN), Just(i64::MAX)]
            .prop_map(Val::S64)
            .boxed(),
        Type::U64 => {
            prop_oneof![any::<u64>(), (1u64 << 53) - 2..=(1u64 << 53) + 2, Just(u64::MAX)].prop_map(Val::U64).boxed()
        }
        Type::Float32 => proptest::num::f32::ANY.prop_map(Val::Float32).boxed(),
        Type::Float64 => proptest::num::f64::ANY.prop_map(Val::Float64).boxed(),
        Type::Char => any::<char>().prop_map(Val::Char).boxed(),
        Type::String => any::<String>().prop_map(Val::String).boxed(),
        Type::List(l) => proptest::collection::vec(arbitrary(&l.ty()), 0..4).prop_map(Val::List).boxed(),
        Type::Tuple(t) => t.types().map(|t| arbitrary(&t)).collect::<Vec<_>>().prop_map(Val::Tuple).boxed(),
        Type::Record(r) => {
            let names: Vec<String> = r.fields().map(|f| f.name.to_string()).collect();
            let values: Vec<_> = r.fields().map(|f| arbitrary(&f.ty)).collect();
            values.prop_map(move |vs| Val::Record(names.iter().cloned().zip(vs).collect())).boxed()
        }
        Type::Variant(v) => {
            let cases: Vec<BoxedStrategy<Val>> = v
                .cases()
                .map(|c| {
                    let name = c.name.to_string();
                    match c.ty {
                        None => Just(Val::Variant(name, None)).boxed(),
                        Some(ty) => {
                            arbitrary(&ty).prop_map(move |p| Val::Variant(name.clone(), Some(Box::new(p)))).boxed()
                        }
                    }
                })
                .collect();
            proptest::strategy::Union::new(cases).boxed()
        }
        Type::Enum(e) => {
            let names: Vec<String> = e.names().map(str::to_string).collect();
            proptest::sample::select(names).prop_map(Val::Enum).boxed()
        }
        Type::Flags(f) => {
            let names: Vec<String> = f.names().map(str::to_string).collect();
            let n = names.len();
            proptest::sample::subsequence(names, 0..=n).prop_map(Val::Flags).boxed()
        }
        Type::Option(o) => proptest::option::of(arbitrary(&o.ty())).prop_map(|v| Val::Option(v.map(Box::new))).boxed(),
        Type::Result(r) => {
            let side = |ty: Option<Type>| match ty {
                None => Just(None).boxed(),
                Some(ty) => arbitrary(&ty).prop_map(|v| Some(Box::new(v))).boxed(),
            };
            prop_oneof![side(r.ok()).prop_map(|v| Val::Result(Ok(v))), side(r.err()).prop_map(|v| Val::Result(Err(v)))]
                .boxed()
        }
        other => panic!("no values of {other:?} in the kinds component"),
    }
}

#[test]
fn every_wit_type_goes_to_json_and_back_unchanged_in_process_and_through_the_gateway() {
    use proptest::strategy::ValueTree;
    let app = TestApp::new(&[("kinds", "kinds")]);
    let plan = app.plan();
    let (_host, http) = up(&app);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let part = plan.parts().iter().find(|p| p.name == "kinds").unwrap();
    let echo = part.contract.public_exports().next().unwrap().clone();
    let (mut cases, mut functions) = (0, 0);
    for f in &echo.funcs {
        let params: Vec<(String, Type)> = f.ty.params().map(|(n, t)| (n.to_string(), t)).collect();
        if params.len() != 1 {
            continue;
        }
        functions += 1;
        let ty = &params[0].1;
        let strategy = arbitrary(ty);
        for _ in 0..64 {
            let value = strategy.new_tree(&mut runner).unwrap().current();
            // In process: value → JSON → value → JSON.
            let written = json::to_json(ty, &value);
            let read = json::from_json(ty, &written)
                .unwrap_or_else(|e| panic!("{}: {written} did not read back: {e}", f.name));
            assert_eq!(format!("{read:?}"), format!("{value:?}"), "{}: {written}", f.name);
            assert_eq!(json::to_json(ty, &read), written, "{}", f.name);
            // Through the gateway and the component: the echo comes back as sent.
            let reply = post(&http, &format!("/kinds/echo/{}", f.name), json!({"x": written.clone()}));
            match (&value, reply.status) {
                (Val::Option(None), 404) => {}
                (Val::Result(Ok(None)), 204) => {}
                (Val::Result(Ok(_)), 200) => assert_eq!(json!({"ok": reply.json()}), written, "{}", f.name),
                (Val::Result(Err(_)), 422) => assert_eq!(json!({"err": reply.json()["error"]}), written, "{}", f.name),
                (Val::Option(Some(inner)), 200) if !matches!(inner.as_ref(), Val::Option(_)) => {
                    assert_eq!(reply.json(), written, "{}", f.name)
                }
                (Val::Option(Some(_)), 200) => assert_eq!(json!({"some": reply.json()}), written, "{}", f.name),
                (_, 200) => assert_eq!(reply.json(), written, "{}", f.name),
                (_, status) => panic!("{}({written}): {status} {}", f.name, reply.body),
            }
            cases += 1;
        }
    }
    assert!(functions >= 24, "only {functions} echo functions");
    println!("JSON round trip: {functions} WIT types, {cases} values, each in process and through the gateway");
}

/// The peer tools' venv (`make http-tools`).
fn http_tool(name: &str) -> std::path::PathBuf {
    let tool = target_dir().join("http-venv/bin").join(name);
    assert!(tool.exists(), "{} is missing: `make http-tools` installs it (make test does)", tool.display());
    tool
}

#[test]
fn the_openapi_document_validates_and_schemathesis_finds_no_undocumented_failure() {
    let app = TestApp::with_manifest(&format!(
        "[components.product]\npath = {:?}\n\n[components.order]\npath = {:?}\n\n[components.kinds]\npath = {:?}\n\n\
         [http]\nwit = [{:?}]\n\n[http.errors]\nnot-found = 404\nalready-exists = 409\ninsufficient-stock = 409\n",
        guest("product"),
        guest("order"),
        guest("kinds"),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit").canonicalize().unwrap(),
    ));
    let (_host, http) = up(&app);
    let document = send(&http, "GET", "/openapi.json", &[], "");
    assert_eq!(document.status, 200);
    let doc: Json = document.json();
    assert_eq!(doc["openapi"], "3.1.0");
    // The WIT's doc comments describe the operations.
    let get_product = &doc["paths"]["/product/catalog/get-product"]["post"];
    assert_eq!(get_product["summary"], "product: Returns the product with this identifier, if there is one");
    let description = get_product["description"].as_str().unwrap();
    assert!(description.contains("`catalog`: The product catalog"), "{description}");
    // `moat openapi` prints the same document without a running host.
    let printed = app.moat(&["openapi"]);
    assert_eq!(printed.code, 0, "{}", printed.stderr);
    let printed: Json = serde_json::from_str(&printed.stdout).unwrap();
    assert_eq!(printed["paths"], doc["paths"]);

    let file = app.dir.path().join("openapi.json");
    std::fs::write(&file, &document.body).unwrap();
    let validated = std::process::Command::new(http_tool("openapi-spec-validator")).arg(&file).output().unwrap();
    assert!(
        validated.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    // Schemathesis generates requests from the document, valid and not, and
    // checks every answer: no 5xx, and each status, content type and body
    // as documented.
    let run = std::process::Command::new(http_tool("schemathesis"))
        .args(["run", &format!("http://{http}/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "25", "--seed", "1", "--workers", "2"])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(app.dir.path()) // its .schemathesis cache stays in the test's directory
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    let summary: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("passed") || l.contains("failed") || l.contains("Operations") || l.contains("cases"))
        .collect();
    println!("schemathesis: {}", summary.join(" | "));
    assert!(run.status.success(), "schemathesis found failures:\n{out}\n{}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn the_cli_takes_and_prints_the_same_json_and_event_payloads_are_json_too() {
    let app = TestApp::shop();
    let product = json!({"product-id": "PROD001", "name": "Wireless Mouse", "price": 2599, "stock": 150});
    let args = json!({"product": product}).to_string();
    let created = app.moat(&["--json", "call", "product", "create-product", "--args-json", &args]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    assert_eq!(serde_json::from_str::<Json>(&created.stdout).unwrap(), json!({"ok": product}));

    // Bad arguments: the field path and the WIT type, nothing written.
    let bad = json!({"product": {"product-id": "P2", "name": "n", "price": -5, "stock": 1}}).to_string();
    let refused = app.moat(&["call", "product", "create-product", "--args-json", &bad]);
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("/product/price: expected u64, found a number (-5)"), "{}", refused.stderr);
    let wave_too = app.moat(&["call", "product", r#"get-product("PROD001")"#, "--args-json", "{}"]);
    assert_eq!(wave_too.code, 2);
    assert!(wave_too.stderr.contains("name the function alone (`get-product`)"), "{}", wave_too.stderr);

    // Through a running host, the same.
    let host = app.up();
    let got =
        app.moat(&["--json", "call", "product", "catalog.get-product", "--args-json", r#"{"product-id": "PROD001"}"#]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(serde_json::from_str::<Json>(&got.stdout).unwrap(), product);
    app.moat(&["call", "product", "set-price", "--args-json", r#"{"product-id": "PROD001", "price": 2799}"#]);
    drop(host);

    // Event payloads in `moat events --json`: JSON, not WAVE in a string.
    let events = app.moat(&["--json", "events", "--component", "product"]);
    assert_eq!(events.code, 0, "{}", events.stderr);
    let events: Json = serde_json::from_str(&events.stdout).unwrap();
    let last = events.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "price-updated", "{last}");
    assert_eq!(last["payload"]["price-updated"]["new-price"], 2799, "{last}");
}
