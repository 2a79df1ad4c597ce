//! OpenTelemetry traces, checked at a real OTLP/HTTP receiver: a small
//! server in the test that decodes what `moat up` exports with the
//! OpenTelemetry protobuf definitions (`opentelemetry-proto`), and asserts
//! the shape of one trace, from a request through a forwarded call, the
//! outbox and two handlers, on one host and across two hosts over NATS.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;

use crate::common::nats::{NatsServer, drained};
use crate::common::*;

/// One span as the receiver got it.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    trace: String,
    span: String,
    parent: String,
    name: String,
    kind: SpanKind,
    attributes: BTreeMap<String, String>,
}

/// An OTLP/HTTP receiver on a free loopback port: `POST /v1/traces` with an
/// `ExportTraceServiceRequest` in protobuf, answered with an empty
/// (all-default) `ExportTraceServiceResponse`.
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let into = spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let into = into.clone();
                std::thread::spawn(move || serve(stream, &into));
            }
        });
        Receiver { endpoint, spans }
    }

    /// The spans of `trace` once every name in `names` has arrived (the
    /// exporter sends in batches, a moment after the spans end); any
    /// trace's, with `trace` empty.
    fn trace(&self, trace: &str, names: &[&str]) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let spans: Vec<Received> =
                self.spans.lock().unwrap().iter().filter(|s| trace.is_empty() || s.trace == trace).cloned().collect();
            if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
                return spans;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "within 30 s, trace {trace} got only: {:#?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Serves one connection: HTTP/1.1 requests, one after another.
fn serve(stream: TcpStream, into: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        assert_eq!(path, "/v1/traces", "the exporter posts traces to /v1/traces");
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP protobuf trace export");
        let mut spans = into.lock().unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Received {
                    service: service.clone(),
                    trace: hex(&span.trace_id),
                    span: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(a.value.as_ref().and_then(|v| v.value.as_ref()))))
                        .collect(),
                    name: span.name,
                });
            }
        }
        drop(spans);
        writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    }
}

/// The spans as an indented tree under `root`, for a person to read
/// (`--nocapture` shows it).
fn tree(spans: &[Received], root: &str) -> String {
    fn walk(spans: &[Received], parent: &str, depth: usize, out: &mut String) {
        for s in spans.iter().filter(|s| s.parent == parent) {
            let kind = format!("{:?}", s.kind);
            out.push_str(&format!(
                "{:indent$}{:<w$} {:<9} {}\n",
                "",
                s.name,
                kind,
                s.service,
                indent = depth * 2,
                w = 52 - depth * 2
            ));
            walk(spans, &s.span, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(spans, root, 0, &mut out);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Exports to `receiver` as `service`, sending batches every 100 ms.
fn exporting<'a>(receiver: &'a Receiver, service: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_SERVICE_NAME", service),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]
}

/// The trace a script's `TRACEPARENT` starts: its trace id and the span id
/// the first moat spans hang under.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const ROOT: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE}-{ROOT}-01")
}

/// Checks the trace of an order placed (pricing from product, since its
/// replica lacks the product) and then submitted: every span once, under
/// the right parent, of the right kind; `across_hosts`: order and product
/// run on two hosts, and the call between them has a client span.
fn assert_shop_trace(spans: &[Received], across_hosts: bool) {
    let one = |name: &str| -> &Received {
        let found: Vec<&Received> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one span {name:?} in {spans:#?}");
        found[0]
    };
    let under = |child: &str, parent: &str, kind: SpanKind| {
        let (c, p) = (one(child), one(parent));
        assert_eq!(c.parent, p.span, "{child:?} is a child of {parent:?}: {spans:#?}");
        assert_eq!(c.kind, kind, "{child:?} is {kind:?}");
    };

    let place = one("order orders.place-order");
    assert_eq!((place.parent.as_str(), place.kind), (ROOT, SpanKind::Server), "place-order continues TRACEPARENT");
    assert_eq!(place.attributes["moat.outcome"], "ok");
    assert!(place.attributes["moat.store.statements"].parse::<u32>().unwrap() >= 3, "{place:?}");
    if across_hosts {
        under("call product catalog.get-product", "order orders.place-order", SpanKind::Client);
        // A request resent after a second without an answer is served (and
        // answered from its record) again: each serving is under the call.
        let client = one("call product catalog.get-product");
        let served: Vec<&Received> = spans.iter().filter(|s| s.name == "product catalog.get-product").collect();
        assert!(!served.is_empty(), "{spans:#?}");
        for s in &served {
            assert_eq!((s.parent.as_str(), s.kind), (client.span.as_str(), SpanKind::Server), "{spans:#?}");
        }
        assert_eq!(one("order orders.place-order").service, "moat-b");
        assert!(served.iter().all(|s| s.service == "moat-a"));
    } else {
        under("product catalog.get-product", "order orders.place-order", SpanKind::Server);
    }
    under("publish shop:order placed", "order orders.place-order", SpanKind::Producer);
    under("product handle shop:order placed", "publish shop:order placed", SpanKind::Consumer);

    let submit = one("order orders.submit-order");
    assert_eq!(submit.parent, ROOT);
    under("publish shop:order submitted", "order orders.submit-order", SpanKind::Producer);
    under("product handle shop:order submitted", "publish shop:order submitted", SpanKind::Consumer);
    under("publish shop:product stock-reserved", "product handle shop:order submitted", SpanKind::Producer);
    under("order handle shop:product stock-reserved", "publish shop:product stock-reserved", SpanKind::Consumer);
    let handled = one("product handle shop:order submitted");
    assert_eq!(handled.attributes["moat.publisher"], "order");
    if across_hosts {
        assert_eq!(handled.service, "moat-a", "product's handler runs on host a");
        assert_eq!(one("order handle shop:product stock-reserved").service, "moat-b");
    }
}

const NAMES: &[&str] = &[
    "order orders.place-order",
    "product catalog.get-product",
    "publish shop:order placed",
    "product handle shop:order placed",
    "order orders.submit-order",
    "publish shop:order submitted",
    "product handle shop:order submitted",
    "publish shop:product stock-reserved",
    "order handle shop:product stock-reserved",
];

const PRODUCT: &str = r#"create-product({product-id: "PROD001", name: "Wireless Mouse", price: 2599, stock: 150})"#;
const PLACE: &str = r#"place-order("ORD1", "C1", [{product-id: "PROD001", quantity: 2}])"#;

/// Order's replica as if product's `created` had not reached it yet, so
/// placing an order asks product for the price.
fn forget_replica(order_db: &std::path::Path) {
    let db = rusqlite::Connection::open(order_db).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(db.execute("DELETE FROM product_replica", []).unwrap(), 1);
}

#[test]
fn one_trace_follows_an_order_through_a_call_the_outbox_and_both_handlers() {
    let receiver = Receiver::start();
    let app = TestApp::shop();
    let (host, _) = Host::start_with(&app.manifest(), &app.data(), &exporting(&receiver, "moat"), false);
    // Answered once its events are applied: order's replica has PROD001.
    host.call("product", PRODUCT).unwrap();
    forget_replica(&app.data().join("order.db"));

    // A script's trace continues into the host: the CLI sends TRACEPARENT on.
    let traced = [("TRACEPARENT", traceparent())];
    let traced: Vec<(&str, &str)> = traced.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for call in [PLACE, r#"submit-order("ORD1")"#] {
        let run = app.moat_env(&["call", "order", call], &traced);
        assert_eq!(run.code, 0, "{call}: {}", run.stderr);
    }
    let spans = receiver.trace(TRACE, NAMES);
    eprintln!("trace {TRACE}, one host:\n{}", tree(&spans, ROOT));
    assert_shop_trace(&spans, false);
    assert!(spans.iter().all(|s| s.service == "moat"), "OTEL_SERVICE_NAME names the host");

    // The trace context was kept with each event in the outbox.
    let order = app.db("order");
    let traced: i64 = order
        .query_row(r#"SELECT count(*) FROM _moat_outbox WHERE trace LIKE '00-' || ?1 || '-%'"#, [TRACE], |r| r.get(0))
        .unwrap();
    assert_eq!(traced, 2, "placed and submitted carry the trace");

    // A swap is a trace of its own, with the migration under it.
    let swapped = app.moat(&["swap", "product", guest("product_v2").to_str().unwrap()]);
    assert_eq!(swapped.code, 0, "{}", swapped.stderr);
    let spans = receiver.trace("", &["swap product"]);
    let swap = spans.iter().find(|s| s.name == "swap product").unwrap();
    assert_eq!(swap.attributes["moat.outcome"], "ok");
    // (The host's start migrated too: a root span of its own.)
    let migrate = receiver.trace(&swap.trace, &["product migrate"]).into_iter().find(|s| s.name == "product migrate");
    let migrate = migrate.unwrap();
    assert_eq!(migrate.parent, swap.span, "the swap's migration runs under the swap");
    assert_eq!(migrate.attributes["moat.schema.from"], "1.0");
}

#[test]
fn the_trace_crosses_hosts_through_nats_requests_and_event_headers() {
    let receiver = Receiver::start();
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    for host in ["a", "b"] {
        let placed = |on: &str| if on == host { String::new() } else { format!("host = \"{on}\"\n") };
        let toml = format!(
            "[nats]\nurl = \"{}\"\nhost = \"{host}\"\n\n[components.product]\npath = {:?}\n{}\n[components.order]\npath = {:?}\n{}",
            nats.url(),
            guest("product"),
            placed("a"),
            guest("order"),
            placed("b"),
        );
        std::fs::write(dir.path().join(format!("{host}.toml")), toml).unwrap();
    }
    let manifest = |h: &str| dir.path().join(format!("{h}.toml"));
    let data = |h: &str| dir.path().join(format!("data-{h}"));
    let (a, _) = Host::start_with(&manifest("a"), &data("a"), &exporting(&receiver, "moat-a"), false);
    let (b, _) = Host::start_with(&manifest("b"), &data("b"), &exporting(&receiver, "moat-b"), false);
    a.call("product", PRODUCT).unwrap();
    drained(&[&a, &b]);
    let started = Instant::now();
    while rusqlite::Connection::open(data("b").join("order.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM product_replica", [], |r| r.get::<_, i64>(0))
        .unwrap()
        == 0
    {
        assert!(started.elapsed() < Duration::from_secs(30), "order's replica never got PROD001");
        std::thread::sleep(Duration::from_millis(50));
    }
    forget_replica(&data("b").join("order.db"));

    for call in [PLACE, r#"submit-order("ORD1")"#] {
        let run = Command::new(env!("CARGO_BIN_EXE_moat"))
            .arg("--manifest")
            .arg(manifest("b"))
            .arg("--data")
            .arg(data("b"))
            .args(["call", "order", call])
            .env("TRACEPARENT", traceparent())
            .env("MOAT_CACHE_DIR", cache_dir())
            .output()
            .unwrap();
        assert!(run.status.success(), "{call}: {}", String::from_utf8_lossy(&run.stderr));
    }
    let mut names = NAMES.to_vec();
    names.push("call product catalog.get-product");
    let spans = receiver.trace(TRACE, &names);
    eprintln!("trace {TRACE}, two hosts:\n{}", tree(&spans, ROOT));
    assert_shop_trace(&spans, true);
}
