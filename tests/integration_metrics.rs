//! `GET /metrics`: what a running host reports, checked by Prometheus's own
//! tools: `promtool check metrics` on the text, and a real `prometheus`
//! server that scrapes the host and answers a query about it.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// `GET path` on `addr`; the body.
fn get(addr: &str, path: &str) -> String {
    match request(addr, path) {
        Ok(body) => body,
        Err(head) => panic!("GET {path}: {head}"),
    }
}

/// `GET path` on `addr`: the body of a `200`, or else the response's head.
fn request(addr: &str, path: &str) -> Result<String, String> {
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: moat\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") {
        Ok(body.to_string())
    } else {
        Err(head.to_string())
    }
}

fn tool(name: &str) -> String {
    let found = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().unwrap();
    assert!(found.status.success(), "{name} is missing: `make test-tools` installs it (Debian package prometheus)");
    String::from_utf8_lossy(&found.stdout).trim().to_string()
}

/// A `prometheus` server, stopped on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn metrics_pass_promtool_and_a_real_prometheus_scrapes_and_answers_for_them() {
    let app = TestApp::shop();
    let host = Host::start_args(&app.manifest(), &app.data(), &["--http", "127.0.0.1:0"]);
    let http = host.http.clone().expect("moat up says where the HTTP gateway listens");
    app.call_ok(
        "product",
        r#"create-product({product-id: "PROD001", name: "Wireless Mouse", price: 2599, stock: 150})"#,
    );
    app.call_ok("product", r#"get-product("PROD001")"#);
    app.call_ok("product", r#"get-product("PROD001")"#);
    assert_eq!(app.moat(&["call", "product", r#"set-price("NOPE", 1)"#]).code, 1);
    app.call_ok("order", r#"place-order("ORD1", "C1", [{product-id: "PROD001", quantity: 2}])"#);
    // Every event delivered, so the route figures are settled.
    let started = Instant::now();
    while !host.client.status().unwrap().subscriptions.iter().all(|s| s.cursor >= s.head) {
        assert!(started.elapsed() < Duration::from_secs(30), "events were not delivered within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }

    host.client.swap("product", Some(guest("product_v2")), false).unwrap();
    assert!(host.client.swap("product", Some(guest("order")), false).is_err());

    let text = get(&http, "/metrics");
    for line in [
        r#"moat_calls_total{component="product",interface="shop:product/catalog@1.0.0",function="get-product",outcome="ok"} 2"#,
        r#"moat_calls_total{component="product",interface="shop:product/catalog@1.0.0",function="set-price",outcome="err"} 1"#,
        // order's call to product, through the host, counted at product.
        r#"moat_calls_total{component="order",interface="shop:order/orders@1.0.0",function="place-order",outcome="ok"} 1"#,
        r#"moat_call_duration_seconds_count{component="product",interface="shop:product/catalog@1.0.0",function="get-product"} 2"#,
        r#"moat_route_lag_events{publisher="product",subscriber="order",topic="shop:product"} 0"#,
        r#"moat_route_lag_seconds{publisher="product",subscriber="order",topic="shop:product"} 0"#,
        r#"moat_route_events_applied_total{publisher="product",subscriber="order",topic="shop:product"} 1"#,
        r#"moat_events_published_total{publisher="order",topic="shop:order"} 1"#,
        r#"moat_instance_restarts_total{component="product"} 0"#,
        r#"moat_swaps_total{component="product",outcome="ok"} 1"#,
        r#"moat_swaps_total{component="product",outcome="refused"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing: {line}\n{text}");
    }
    assert!(text.contains("moat_database_size_bytes{component=\"order\"} "), "{text}");
    let value = |series: &str| {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok()).unwrap_or_default()
    };
    // product ran statements (create, reads, the stock it reserved) and
    // read or changed rows with them; no dead letters wait.
    assert!(value(r#"moat_store_statements_total{component="product"}"#) >= 4.0, "{text}");
    assert!(value(r#"moat_store_rows_total{component="product"}"#) >= 3.0, "{text}");
    assert!(
        text.lines()
            .any(|l| l == r#"moat_route_dead_letters{publisher="product",subscriber="order",topic="shop:product"} 0"#),
        "{text}"
    );
    // The control API serves the same.
    let control = host.client.metrics().unwrap();
    assert!(control.contains(r#"function="get-product",outcome="ok"} 2"#), "{control}");

    // promtool reads the text as Prometheus does and lints the names.
    let mut check = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real Prometheus scrapes the host every second; one series read back
    // through its query API.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: moat\n    static_configs:\n      - targets: ['{http}']\n"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let web = format!("127.0.0.1:{port}");
    let _prometheus = Prometheus(
        Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let query = "/api/v1/query?query=moat_calls_total%7Bfunction%3D%22get-product%22%2Coutcome%3D%22ok%22%7D";
    let started = Instant::now();
    let answer = loop {
        // Until it is up and ready, Prometheus refuses connections, then
        // answers 503.
        let answer = request(&web, query);
        match answer {
            Ok(answer) if answer.contains("\"result\":[{") => break answer,
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "prometheus did not report the series within 60 s: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let series = &json["data"]["result"][0];
    assert_eq!(series["metric"]["component"], "product", "{answer}");
    assert_eq!(series["metric"]["job"], "moat", "{answer}");
    assert_eq!(series["value"][1], "2", "{answer}");
    println!("prometheus scraped the host and answered after {:.1} s: {answer}", started.elapsed().as_secs_f64());
}
