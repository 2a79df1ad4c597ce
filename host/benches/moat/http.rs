//! The HTTP rows: moat's gateway (`moat up --http`) against a native axum +
//! rusqlite handler doing the same SQL with the same JSON in and out. Both
//! servers run on the same kind of runtime (two workers, the blocking SQL
//! on tokio's blocking pool) and are driven by the same load generator:
//! `CONNECTIONS` keep-alive HTTP/1.1 connections, each sending its next
//! request when the last answer arrived.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rusqlite::Connection;
use serde_json::{Value, json};

use moat::App;
use moat::http::Gateway;
use moat::manifest::HttpSettings;

use super::{ROUNDS, median, native, quantile};

/// Concurrent keep-alive connections of the load generator.
pub const CONNECTIONS: usize = 4;

/// A server on a free loopback port, serving until the runtime is dropped.
pub struct Server {
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// `app`'s HTTP gateway, as `moat up --http` serves it.
pub fn gateway(app: App) -> Server {
    let runtime = runtime();
    let addr = runtime.block_on(async {
        let gateway =
            Gateway::bind(Arc::new(app), &HttpSettings::default(), Some("127.0.0.1:0".parse().unwrap())).await.unwrap();
        let addr = gateway.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(gateway.listener, gateway.router).await });
        addr
    });
    Server { addr, _runtime: runtime }
}

/// The native baseline: the same routes, the same JSON, the same SQL on
/// one rusqlite connection per database.
pub fn native_server(catalog: Connection, orders: Connection) -> Server {
    let catalog = Arc::new(Mutex::new(catalog));
    let orders = Arc::new(Mutex::new(orders));
    let router = axum::Router::new()
        .route(
            "/product/catalog/get-product",
            post(move |Json(args): Json<Value>| {
                let catalog = catalog.clone();
                async move {
                    let id = args["product-id"].as_str().unwrap_or_default().to_string();
                    let found = tokio::task::spawn_blocking(move || native::get_product(&catalog.lock().unwrap(), &id))
                        .await
                        .unwrap();
                    match found {
                        Some(p) => (
                            StatusCode::OK,
                            Json(json!({"product-id": p.product_id, "name": p.name, "price": p.price, "stock": p.stock})),
                        ),
                        None => (StatusCode::NOT_FOUND, Json(json!({"title": "not found"}))),
                    }
                }
            }),
        )
        .route(
            "/order/orders/place-order",
            post(move |Json(args): Json<Value>| {
                let orders = orders.clone();
                async move {
                    let order = tokio::task::spawn_blocking(move || {
                        let id = args["order-id"].as_str().unwrap_or_default();
                        let lines: Vec<(String, u32)> = args["items"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|l| {
                                (l["product-id"].as_str().unwrap_or_default().to_string(), l["quantity"].as_u64().unwrap_or(0) as u32)
                            })
                            .collect();
                        let lines: Vec<(&str, u32)> = lines.iter().map(|(p, q)| (p.as_str(), *q)).collect();
                        let items = native::place_order(&orders.lock().unwrap(), id, &lines);
                        let total: i64 = items.iter().map(|(_, q, _, u)| i64::from(*q) * u).sum();
                        json!({
                            "order-id": id, "customer-id": "C1", "status": "pending", "total": total,
                            "items": items.iter().map(|(p, q, n, u)| json!({"product-id": p, "quantity": q, "product-name": n, "unit-price": u})).collect::<Vec<_>>(),
                        })
                    })
                    .await
                    .unwrap();
                    (StatusCode::OK, Json(order))
                }
            }),
        );
    let runtime = runtime();
    let addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    });
    Server { addr, _runtime: runtime }
}

/// Requests per second and each request's latency in µs, for `total`
/// requests spread over `CONNECTIONS` keep-alive connections; `body(i)` is
/// request `i`'s body, and every answer must be 200.
pub fn load(addr: SocketAddr, path: &str, total: usize, body: &(dyn Fn(usize) -> String + Sync)) -> (f64, Vec<i64>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let started = Instant::now();
        let mut clients = Vec::new();
        for c in 0..CONNECTIONS {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            let bodies: Vec<String> = (c..total).step_by(CONNECTIONS).map(body).collect();
            let path = path.to_string();
            clients.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(bodies.len());
                for b in bodies {
                    let request = Request::post(&path)
                        .header("host", "bench")
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(b)))
                        .unwrap();
                    let t = Instant::now();
                    let response = sender.send_request(request).await.unwrap();
                    let status = response.status();
                    let answer = response.into_body().collect().await.unwrap().to_bytes();
                    latencies.push(t.elapsed().as_micros() as i64);
                    assert_eq!(status, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&answer));
                }
                latencies
            }));
        }
        let mut latencies = Vec::with_capacity(total);
        for c in clients {
            latencies.extend(c.await.unwrap());
        }
        (total as f64 / started.elapsed().as_secs_f64(), latencies)
    })
}

/// One measured figure of an HTTP row: requests/s (median of rounds) and
/// p50 / p99 in ms over every measured request.
pub struct Measured {
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Drives `moat` and `native` alike, interleaved, `ROUNDS` times after a
/// warm-up round of a quarter the size; `body(i)` must be fresh for every
/// `i` (request numbers never repeat across rounds).
pub fn compare(
    moat: SocketAddr,
    native: SocketAddr,
    path: &str,
    per_round: usize,
    body: &(dyn Fn(usize) -> String + Sync),
) -> (Measured, Measured) {
    let mut next = 0;
    let mut take = |n: usize| {
        let start = next;
        next += n;
        start
    };
    for addr in [moat, native] {
        let start = take(per_round / 4);
        load(addr, path, per_round / 4, &|i| body(start + i));
    }
    let (mut m_rate, mut n_rate, mut m_lat, mut n_lat) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = take(per_round);
        let (rate, lat) = load(native, path, per_round, &|i| body(start + i));
        n_rate.push(rate);
        n_lat.extend(lat);
        let start = take(per_round);
        let (rate, lat) = load(moat, path, per_round, &|i| body(start + i));
        m_rate.push(rate);
        m_lat.extend(lat);
    }
    let measured = |rates: Vec<f64>, lat: Vec<i64>| Measured {
        per_second: median(rates),
        p50_ms: quantile(lat.clone(), 0.5) / 1000.0,
        p99_ms: quantile(lat, 0.99) / 1000.0,
    };
    (measured(m_rate, m_lat), measured(n_rate, n_lat))
}

/// The native databases of the HTTP rows: a catalog and order's tables
/// with its replica, `n` products each.
pub fn native_databases(dir: &Path, n: usize) -> (Connection, Connection) {
    (native::catalog(&dir.join("native-catalog.db"), n), native::orders(&dir.join("native-orders.db"), n))
}
