//! Beyond one machine: two `moat up` hosts, one holding product, the other
//! order (and the listener, which counts product events), each with its own
//! data directory, joined by a real NATS JetStream server that each test
//! starts on a free loopback port and stops and restarts at will.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::common::nats::{NatsServer, drained};
use crate::common::*;

/// Two hosts' manifests and data directories.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Host `a` runs product; host `b` runs order and the listener.
    fn new(nats: &NatsServer) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        for host in ["a", "b"] {
            let placed = |on: &str| if on == host { String::new() } else { format!("host = \"{on}\"\n") };
            let toml = format!(
                "[nats]\nurl = \"{}\"\nhost = \"{host}\"\n\n\
                 [components.product]\npath = {:?}\n{}\n\
                 [components.order]\npath = {:?}\n{}\n\
                 [components.listener]\npath = {:?}\n{}",
                nats.url(),
                guest("product"),
                placed("a"),
                guest("order"),
                placed("b"),
                guest("listener"),
                placed("b"),
            );
            std::fs::write(dir.path().join(format!("{host}.toml")), toml).unwrap();
        }
        Cluster { dir }
    }

    fn manifest(&self, host: &str) -> PathBuf {
        self.dir.path().join(format!("{host}.toml"))
    }

    fn data(&self, host: &str) -> PathBuf {
        self.dir.path().join(format!("data-{host}"))
    }

    fn up(&self, host: &str) -> Host {
        Host::start(&self.manifest(host), &self.data(host))
    }

    fn db(&self, host: &str, component: &str) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.data(host).join(format!("{component}.db")),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }
}

fn call(host: &Host, component: &str, call: &str) -> String {
    host.call(component, call).unwrap_or_else(|e| panic!("{component} {call}: {e:#}"))
}

#[test]
fn the_shop_runs_across_two_hosts() {
    let nats = NatsServer::start();
    let cluster = Cluster::new(&nats);
    let (a, b) = (cluster.up("a"), cluster.up("b"));

    // Calls from host b to product, which runs on host a, go through NATS.
    call(&b, "product", PROD001);
    call(&a, "product", PROD005);
    drained(&[&a, &b]);

    // Order (on b) prices from its replica, fed by product's events from a.
    call(&b, "order", ORD12345);
    call(&a, "product", r#"set-price("PROD001", 2799)"#);
    drained(&[&a, &b]);
    let order = call(&b, "order", r#"get-order("ORD12345")"#);
    assert!(order.contains(r#"product-name: "Wireless Mouse", unit-price: 2799"#), "{order}");

    // The saga across hosts: order-submitted goes to a, stock-reserved comes back.
    call(&b, "order", r#"submit-order("ORD12345")"#);
    call(&b, "order", r#"place-order("ORD2", "CUST1", [{product-id: "PROD005", quantity: 100}])"#);
    call(&b, "order", r#"submit-order("ORD2")"#);
    drained(&[&a, &b]);
    drained(&[&a, &b]);
    assert!(call(&b, "order", r#"get-order("ORD12345")"#).contains("status: confirmed"));
    assert!(call(&b, "order", r#"get-order("ORD2")"#).contains("status: rejected"));
    assert_eq!(
        call(&a, "product", "list-products()"),
        r#"[{product-id: "PROD001", name: "Wireless Mouse", price: 2799, stock: 148}, {product-id: "PROD005", name: "Mechanical Keyboard", price: 7999, stock: 39}]"#
    );

    // Each host holds only its own databases, and only it has them open.
    let files = |host: &str| -> Vec<String> {
        let mut f: Vec<String> = std::fs::read_dir(cluster.data(host))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".db"))
            .collect();
        f.sort();
        f
    };
    assert_eq!(files("a"), ["product.db"]);
    assert_eq!(files("b"), ["listener.db", "order.db"]);
    for (host, other) in [(&a, cluster.data("b")), (&b, cluster.data("a"))] {
        for fd in std::fs::read_dir(format!("/proc/{}/fd", host.pid())).unwrap() {
            if let Ok(target) = std::fs::read_link(fd.unwrap().path()) {
                assert!(!target.starts_with(&other), "host {} has {} open", host.pid(), target.display());
            }
        }
    }

    // The other host's status shows peers, the stream, relays and consumers.
    let status = b.client.status().unwrap().nats.unwrap();
    assert!(status.connected);
    assert!(status.peers.iter().any(|p| p.component == "product" && p.host == "a"), "{:?}", status.peers);
    assert!(status.stream.unwrap().messages > 0);
    assert!(status.consumers.iter().any(|c| c.subscriber == "order" && c.publisher == "product"));
}

/// A host's current client, or none while it is down, and how many times
/// it has been killed: a worker's error is explained only by a kill of its
/// own host during the call.
#[derive(Default)]
struct Slot {
    client: RwLock<Option<moat::control::client::Client>>,
    kills: AtomicU64,
    inflight: AtomicUsize,
}

/// A worker's outcome: every error it saw that nothing explains.
type Unexplained = Arc<Mutex<Vec<String>>>;

#[test]
fn with_nats_down_cross_host_calls_fail_clearly_and_nothing_is_lost_or_doubled() {
    let mut nats = NatsServer::start();
    let cluster = Cluster::new(&nats);
    let (a, b) = (cluster.up("a"), cluster.up("b"));
    call(&a, "product", PROD001);
    drained(&[&a, &b]);

    // Load: price changes on a, orders on b (from b's replica): all local,
    // so none may fail while NATS is down.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new((0u64, Vec::<String>::new())));
    let unexplained: Unexplained = Arc::default();
    let prices = {
        let (client, stop, acked, unexplained) = (a.client.clone(), stop.clone(), acked.clone(), unexplained.clone());
        std::thread::spawn(move || {
            for i in 3000.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                match client.call("product", &format!(r#"set-price("PROD001", {i})"#), false) {
                    Ok(r) if !r.returned_err => acked.lock().unwrap().0 = i,
                    other => unexplained.lock().unwrap().push(format!("set-price {i}: {other:?}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let orders = {
        let (client, stop, acked, unexplained) = (b.client.clone(), stop.clone(), acked.clone(), unexplained.clone());
        std::thread::spawn(move || {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let id = format!("N{i}");
                let call = format!(r#"place-order("{id}", "C", [{{product-id: "PROD001", quantity: 1}}])"#);
                match client.call("order", &call, false) {
                    Ok(r) if !r.returned_err => acked.lock().unwrap().1.push(id),
                    other => unexplained.lock().unwrap().push(format!("{call}: {other:?}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let down_at = Instant::now();
    nats.kill();
    std::thread::sleep(Duration::from_millis(300));
    // A call that needs the other host fails, and says why, without hanging.
    let started = Instant::now();
    let err = format!("{:#}", b.client.call("product", r#"get-product("PROD001")"#, false).unwrap_err());
    let failed_after = started.elapsed();
    assert!(failed_after < Duration::from_secs(10), "a cross-host call hung for {failed_after:?}");
    assert!(
        err.contains("component `product`")
            && (err.contains("did not answer") || err.contains("no host answers") || err.contains("NATS")),
        "{err}"
    );
    std::thread::sleep(Duration::from_secs(2));
    nats.restart();
    // Down from the kill until the restarted server accepted a connection.
    let outage = down_at.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    prices.join().unwrap();
    orders.join().unwrap();
    let unexplained = unexplained.lock().unwrap();
    assert!(unexplained.is_empty(), "local calls failed while NATS was down; the first: {:?}", unexplained.first());

    drained(&[&a, &b]);
    let (last_price, placed) = acked.lock().unwrap().clone();
    assert!(last_price > 3000 && !placed.is_empty());
    // Every acknowledged change is in, and b's replica caught up with a.
    let price: i64 = cluster
        .db("a", "product")
        .query_row("SELECT price FROM products WHERE product_id = 'PROD001'", [], |r| r.get(0))
        .unwrap();
    assert!(price as u64 >= last_price);
    let replica: i64 = cluster
        .db("b", "order")
        .query_row("SELECT price FROM product_replica WHERE product_id = 'PROD001'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(replica, price, "b's replica did not converge");
    checks::acknowledged_orders_exist(&cluster.db("b", "order"), &placed);
    // Every product event was applied on b exactly once, in order.
    let published =
        checks::every_event_applied_once_in_order(&cluster.db("a", "product"), &cluster.db("b", "listener"));
    // With NATS back, calls across hosts work again.
    assert!(call(&b, "product", r#"get-product("PROD001")"#).starts_with("some("));
    println!(
        "nats down {outage:.1?} (measured, kill to the restarted server accepting) under load: a cross-host call failed clearly after {failed_after:.1?}; \
         {} price changes and {} orders acknowledged, 0 local calls failed; {published} product events, all applied once on the other host",
        last_price - 2999,
        placed.len()
    );
}

#[test]
fn killing_either_host_under_load_loses_nothing_and_applies_nothing_twice() {
    let nats = NatsServer::start();
    let cluster = Cluster::new(&nats);
    let mut hosts = [Some(cluster.up("a")), Some(cluster.up("b"))];
    for p in 0..3 {
        call(
            hosts[0].as_ref().unwrap(),
            "product",
            &format!(r#"create-product({{product-id: "P{p}", name: "Product {p}", price: 1000, stock: 30}})"#),
        );
    }
    drained(&[hosts[0].as_ref().unwrap(), hosts[1].as_ref().unwrap()]);
    let slots: [Arc<Slot>; 2] = Default::default();
    for (slot, host) in slots.iter().zip(&hosts) {
        *slot.client.write().unwrap() = Some(host.as_ref().unwrap().client.clone());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new((Vec::<String>::new(), BTreeMap::<usize, u64>::new(), 0usize, 0usize)));
    let unexplained: Unexplained = Arc::default();
    // Two workers per host, so calls are in flight when a host dies: on a,
    // each owns one product and only raises its price; on b, orders are
    // placed and submitted.
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (slot, stop, acked, unexplained) =
                (slots[w / 2].clone(), stop.clone(), acked.clone(), unexplained.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let kills = slot.kills.load(Ordering::SeqCst);
                    let Some(client) = slot.client.read().unwrap().clone() else {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    };
                    let (component, call, price, order) = if w < 2 {
                        ("product", format!(r#"set-price("P{w}", {})"#, 2000 + i), Some((w, 2000 + i as u64)), None)
                    } else {
                        let id = format!("R{w}-{i}");
                        let call = format!(r#"place-order("{id}", "C", [{{product-id: "P{}", quantity: 1}}])"#, i % 3);
                        ("order", call, None, Some(id))
                    };
                    slot.inflight.fetch_add(1, Ordering::SeqCst);
                    let result = client.call(component, &call, false);
                    slot.inflight.fetch_sub(1, Ordering::SeqCst);
                    match result {
                        Ok(r) if !r.returned_err => {
                            let mut acked = acked.lock().unwrap();
                            acked.2 += 1;
                            if let Some((p, price)) = price {
                                acked.1.insert(p, price);
                            }
                            if let Some(id) = order {
                                acked.0.push(id.clone());
                                drop(acked);
                                // Submitting may fail with the host too (a kill
                                // since the client was fetched explains it); the
                                // saga only needs it not to fail otherwise.
                                if let Err(e) = client.call("order", &format!(r#"submit-order("{id}")"#), false)
                                    && slot.kills.load(Ordering::SeqCst) == kills
                                {
                                    unexplained.lock().unwrap().push(format!("submit {id}: {e:#}"));
                                }
                            }
                        }
                        Ok(r) => unexplained.lock().unwrap().push(format!("{call}: returned {:?}", r.wave)),
                        Err(e) if slot.kills.load(Ordering::SeqCst) != kills => {
                            // The host died under the call: a clear error, and
                            // the call may or may not have committed.
                            acked.lock().unwrap().3 += 1;
                            let _ = e;
                        }
                        Err(e) => unexplained.lock().unwrap().push(format!("{call}: {e:#}")),
                    }
                }
            })
        })
        .collect();

    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut kills, mut with_calls_in_flight) = (0, 0);
    for _ in 0..12 {
        std::thread::sleep(Duration::from_millis(100 + rand(300)));
        let victim = rand(2) as usize;
        let slot = &slots[victim];
        // Kill it with a call in flight, as most kills under load would be:
        // the moment is chosen, not left to where the sleep happened to end.
        let waiting = Instant::now();
        while slot.inflight.load(Ordering::SeqCst) == 0 && waiting.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_micros(200));
        }
        let in_flight = slot.inflight.load(Ordering::SeqCst);
        *slot.client.write().unwrap() = None;
        slot.kills.fetch_add(1, Ordering::SeqCst);
        hosts[victim].take().unwrap().kill();
        kills += 1;
        if in_flight > 0 {
            with_calls_in_flight += 1;
        }
        let host = cluster.up(if victim == 0 { "a" } else { "b" });
        *slot.client.write().unwrap() = Some(host.client.clone());
        hosts[victim] = Some(host);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let unexplained = unexplained.lock().unwrap();
    assert!(
        unexplained.is_empty(),
        "calls failed with no kill of their host to explain it; the first: {:?}",
        unexplained.first()
    );
    assert!(with_calls_in_flight >= 8, "only {with_calls_in_flight} of {kills} kills found calls in flight");
    let (a, b) = (hosts[0].take().unwrap(), hosts[1].take().unwrap());
    drained(&[&a, &b]);
    drained(&[&a, &b]);

    let (acked_orders, acked_prices, acked_calls, cut_off) = acked.lock().unwrap().clone();
    let (product, order, listener) =
        (cluster.db("a", "product"), cluster.db("b", "order"), cluster.db("b", "listener"));
    checks::acknowledged_orders_exist(&order, &acked_orders);
    for (p, price) in &acked_prices {
        let now: i64 = product
            .query_row("SELECT price FROM products WHERE product_id = ?1", [format!("P{p}")], |r| r.get(0))
            .unwrap();
        assert!(now as u64 >= *price, "P{p}: acknowledged {price}, stored {now}");
    }
    checks::replica_is_truth(&product, &order);
    checks::pending_items_follow_the_replica(&order);
    checks::every_submission_answered(&order);
    checks::stock_adds_up(&product, &order, 90);
    let published = checks::every_event_applied_once_in_order(&product, &listener);
    println!(
        "host kills: {kills} hosts SIGKILLed under 4 concurrent clients, {with_calls_in_flight} with calls in flight; \
         {acked_calls} calls acknowledged ({} orders), {cut_off} cut off by a kill with a clear error, 0 failed otherwise; \
         {published} product events applied once on the other host; 0 lost, 0 duplicated",
        acked_orders.len()
    );
}

#[test]
fn two_apps_on_one_nats_server_stay_apart() {
    let nats = NatsServer::start();
    // Each cluster's manifests sit in a directory of their own, whose name is
    // the app's default namespace.
    let (one, two) = (Cluster::new(&nats), Cluster::new(&nats));
    let (a1, b1) = (one.up("a"), one.up("b"));
    let (a2, b2) = (two.up("a"), two.up("b"));
    let create = |host: &Host, id: &str| {
        call(host, "product", &format!(r#"create-product({{product-id: "{id}", name: "{id}", price: 100, stock: 5}})"#))
    };
    create(&a1, "ONLY-IN-ONE");
    create(&a2, "ONLY-IN-TWO");
    drained(&[&a1, &b1]);
    drained(&[&a2, &b2]);
    assert_eq!(call(&b1, "listener", "seen()"), r#"["created ONLY-IN-ONE"]"#);
    assert_eq!(call(&b2, "listener", "seen()"), r#"["created ONLY-IN-TWO"]"#);
    // Calls stay within their app too.
    assert!(
        call(&b1, "order", r#"place-order("O1", "C", [{product-id: "ONLY-IN-TWO", quantity: 1}])"#)
            .contains("err(unknown-product")
    );
    let (n1, n2) = (a1.client.status().unwrap().nats.unwrap(), a2.client.status().unwrap().nats.unwrap());
    assert_ne!(n1.namespace, n2.namespace);
    assert_ne!(n1.stream_name, n2.stream_name);
}

#[test]
fn a_cross_host_call_retried_under_its_request_id_applies_once() {
    let nats = NatsServer::start();
    let cluster = Cluster::new(&nats);
    let (a, b) = (cluster.up("a"), cluster.up("b"));
    call(&a, "product", PROD001);
    let adjust = r#"adjust-stock("PROD001", 1)"#;
    // From b, to product on a, twice under one id: the second is a's record.
    let first = b.client.call_once("product", adjust, false, Some("x-1".into())).unwrap();
    assert!(!first.replayed);
    let retry = b.client.call_once("product", adjust, false, Some("x-1".into())).unwrap();
    assert!(retry.replayed, "a retry across hosts ran again: {retry:?}");
    assert_eq!(retry.wave, first.wave);
    // Reused for another call: refused on a, said so on b.
    let err = b.client.call_once("product", r#"adjust-stock("PROD001", 7)"#, false, Some("x-1".into())).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("request id `x-1` was already used for another call"), "{err}");
    assert!(call(&a, "product", r#"get-product("PROD001")"#).contains("stock: 151"));

    // Its host gone, a call is not delivered, and says nothing happened.
    a.kill();
    let err = format!("{:#}", b.client.call_once("product", adjust, false, Some("x-2".into())).unwrap_err());
    assert!(err.contains("nothing happened") || err.contains("whether it did before is unknown"), "{err}");
    assert!(!err.contains("did not answer within 5000 ms: component"), "the error says it twice: {err}");
}
