//! `make bench`: the cost of the boundary. Every row is measured in this run
//! against a native baseline measured in the same run: the same SQL done
//! directly with rusqlite (`native.rs`), same SQLite settings, no Wasm. Each
//! figure is the median of several rounds, moat and native interleaved so
//! that a busy neighbour on the machine slows both alike.
//!
//! Prints one table and writes it to docs/BENCHMARKS.md with the command,
//! the date and the machine.

mod http;
mod instructions;
mod native;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moat::{App, Manifest, Plan, Runtime};
use wasmtime::component::Val;

/// Rounds per measurement; the median is reported.
const ROUNDS: usize = 7;

fn main() {
    // Spawned as a native baseline process by the start and memory rows.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--native-start") {
        return native_start(Path::new(&args[i + 1]));
    }
    if let Some(i) = args.iter().position(|a| a == "--native-memory") {
        return native_memory(Path::new(&args[i + 1]));
    }

    let guests = workspace().join("target/wasm32-wasip2/guest");
    assert!(guests.join("relay.wasm").exists(), "build the components first: make bench does");
    if args.iter().any(|a| a == "--instructions") {
        return instructions::run();
    }
    if let Some(i) = args.iter().position(|a| a == "--instructions-run") {
        return instructions::child(&guests, &args[i + 1], &args[i + 2], args[i + 3].parse().unwrap());
    }
    // MOAT_BENCH_ROWS=call,events runs only those rows (for profiling).
    let only: Option<Vec<String>> =
        std::env::var("MOAT_BENCH_ROWS").ok().map(|v| v.split(',').map(str::to_string).collect());
    let mut rows = Vec::new();
    let started = Instant::now();
    for (name, row) in [
        ("call", call as fn(&Path) -> Row),
        ("cross-component call", cross_call),
        ("unit of work", unit_of_work),
        ("two components in parallel", parallel),
        ("events", events),
        ("event latency", event_latency),
        ("start", start),
        ("swap", swap),
        ("memory", memory),
        ("events across hosts", events_across_hosts),
        ("call across hosts", call_across_hosts),
        ("HTTP get-product", http_get_product),
        ("HTTP place-order", http_place_order),
    ] {
        if only.as_ref().is_some_and(|o| !o.iter().any(|r| r == name)) {
            continue;
        }
        eprintln!("bench: {name}...");
        let row = row(&guests);
        eprintln!("  {}", row.line());
        rows.push(row);
    }
    // Last: it turns on the export of traces, for the rest of the process.
    if only.as_ref().is_none_or(|o| o.iter().any(|r| r == "observed")) {
        eprintln!("bench: observed...");
        for row in observed(&guests) {
            eprintln!("  {}", row.line());
            rows.push(row);
        }
    }
    let mut report = report(&rows, started.elapsed());
    println!("{report}");
    if only.is_some() {
        return;
    }
    let path = workspace().join("docs/BENCHMARKS.md");
    // The instruction counts come from `make bench-instructions`: kept.
    if let Some(kept) = std::fs::read_to_string(&path).ok().as_deref().and_then(instructions::section) {
        report = instructions::with_section(&report, kept);
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, report).unwrap();
    eprintln!("bench: wrote {}", path.display());
}

/// One row of the table.
struct Row {
    name: &'static str,
    what: String,
    moat: String,
    native: String,
    ratio: f64,
    aim: &'static str,
    met: bool,
    note: String,
}

impl Row {
    fn line(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.2} | {} | {} |",
            self.name,
            self.what,
            self.moat,
            self.native,
            self.ratio,
            self.aim,
            if self.aim == "report" {
                ""
            } else if self.met {
                "met"
            } else {
                "missed"
            }
        )
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn quantile(mut xs: Vec<i64>, q: f64) -> f64 {
    xs.sort_unstable();
    xs[((xs.len() - 1) as f64 * q).round() as usize] as f64
}

/// Times `per` operations of `moat` and of `native`, interleaved, `ROUNDS`
/// times after a warm-up; returns the median seconds per operation of each.
fn per_op(per: usize, mut moat: impl FnMut(usize), mut native: impl FnMut(usize)) -> (f64, f64) {
    for i in 0..per / 4 {
        moat(i);
        native(i);
    }
    let (mut m, mut n) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let base = (round + 1) * per;
        let t = Instant::now();
        for i in 0..per {
            native(base + i);
        }
        n.push(t.elapsed().as_secs_f64() / per as f64);
        let t = Instant::now();
        for i in 0..per {
            moat(base + i);
        }
        m.push(t.elapsed().as_secs_f64() / per as f64);
    }
    (median(m), median(n))
}

fn us(seconds: f64) -> String {
    format!("{:.2} µs", seconds * 1e6)
}

/// A throwaway app of the given components, opened in this process.
fn app(dir: &Path, guests: &Path, components: &[(&str, &str)], cache: Option<PathBuf>) -> App {
    let mut toml = String::new();
    for (name, file) in components {
        toml.push_str(&format!("[components.{name}]\npath = {:?}\n", guests.join(format!("{file}.wasm"))));
    }
    let path = dir.join("moat.toml");
    std::fs::write(&path, &toml).unwrap();
    let manifest = Manifest::load(&path).unwrap();
    Plan::new(manifest, Runtime::new(cache).unwrap(), &dir.join("data")).unwrap().open().unwrap()
}

fn cache() -> Option<PathBuf> {
    Some(workspace().join("target/moat-bench-cache"))
}

fn seed_products(app: &App, n: usize) {
    for i in 0..n {
        app.call_wave(
            "product",
            &format!(r#"create-product({{product-id: "P{i:04}", name: "Product {i}", price: 1000, stock: 100}})"#),
        )
        .unwrap();
    }
    app.settle(Duration::from_secs(60)).unwrap();
}

fn call(guests: &Path) -> Row {
    let (m, n) = point_reads(guests, &[("product", "product")], "product");
    Row {
        name: "call",
        what: "`get-product` through the host vs a native point read".into(),
        moat: us(m),
        native: us(n),
        ratio: m / n,
        aim: "≤ 1.3 (stretch 1.2)",
        met: m / n <= 1.3,
        note: String::new(),
    }
}

fn cross_call(guests: &Path) -> Row {
    let (m, n) = point_reads(guests, &[("product", "product"), ("relay", "relay")], "relay");
    Row {
        name: "cross-component call",
        what: "relay → host → product `get-product` vs a native point read".into(),
        moat: us(m),
        native: us(n),
        ratio: m / n,
        aim: "≤ 1.5",
        met: m / n <= 1.5,
        note: String::new(),
    }
}

/// `get-product` of 1,000 products through `via` (product itself, or the
/// relay in front of it) against the same point read natively: seconds
/// per call of each.
fn point_reads(guests: &Path, components: &[(&str, &str)], via: &str) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), guests, components, cache());
    seed_products(&app, 1000);
    let f = app.function(via, "get-product").unwrap();
    let conn = native::catalog(&dir.path().join("native.db"), 1000);
    let ids: Vec<String> = (0..1000).map(|i| format!("P{i:04}")).collect();
    per_op(
        4000,
        |i| {
            let r = app.call(&f, &[Val::String(ids[i * 7 % 1000].clone())]).unwrap();
            assert!(matches!(r[0], Val::Option(Some(_))));
        },
        |i| assert!(native::get_product(&conn, &ids[i * 7 % 1000]).is_some()),
    )
}

/// The call and unit-of-work rows again, observed: first with a Prometheus
/// scrape of the app every 100 ms (ten times a brisk scrape interval), then
/// with every call's spans exported over OTLP to a receiver in this process.
/// Each is against the same rows unobserved, measured just before in the
/// same app (traces, once on, stay on for the process: so this runs last).
fn observed(guests: &Path) -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let app = Arc::new(app(dir.path(), guests, &[("product", "product"), ("order", "order")], cache()));
    seed_products(&app, 1000);
    let get = app.function("product", "get-product").unwrap();
    let place = app.function("order", "place-order").unwrap();
    let ids: Vec<String> = (0..1000).map(|i| format!("P{i:04}")).collect();
    let call = |i: usize| {
        let r = app.call(&get, &[Val::String(ids[i * 7 % 1000].clone())]).unwrap();
        assert!(matches!(r[0], Val::Option(Some(_))));
    };
    let unit = |prefix: &str, i: usize| {
        let line = |p: usize, q: u32| {
            Val::Record(vec![("product-id".into(), Val::String(format!("P{p:04}"))), ("quantity".into(), Val::U32(q))])
        };
        let params = [
            Val::String(format!("{prefix}{i}")),
            Val::String("C1".into()),
            Val::List(vec![line(i % 1000, 1), line((i + 1) % 1000, 1)]),
        ];
        assert!(matches!(app.call(&place, &params).unwrap()[0], Val::Result(Ok(_))));
    };

    // Metrics: scraped while the calls run, against no scrape, interleaved.
    // The scraper scrapes only while `scraping` says so: during the scraped
    // side of each round.
    let (stop, scraping, scrapes) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let scraper = {
        let (app, stop, scraping, scrapes) = (app.clone(), stop.clone(), scraping.clone(), scrapes.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if scraping.load(Ordering::Relaxed) {
                    assert!(moat::metrics::render(&app).contains("moat_calls_total"));
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let (scraped, plain) = per_op(
        4000,
        |i| {
            scraping.store(true, Ordering::Relaxed);
            call(i)
        },
        |i| {
            scraping.store(false, Ordering::Relaxed);
            call(i)
        },
    );
    stop.store(true, Ordering::Relaxed);
    scraper.join().unwrap();
    let mut i = 0;
    let (plain_unit, _) = per_op(
        1000,
        |_| {
            i += 1;
            unit("A", i)
        },
        |_| {},
    );

    // Traces: exported to an OTLP/HTTP receiver that reads and drops them.
    let receiver = otlp_sink();
    // SAFETY: set before the exporter reads them, while no other thread of
    // this bench reads the environment.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.0);
        std::env::set_var("OTEL_BSP_MAX_QUEUE_SIZE", "65536");
    }
    let exporting = moat::trace::init().unwrap().expect("traces exported");
    let (traced, _) = per_op(4000, call, |_| {});
    let mut i = 0;
    let (traced_unit, _) = per_op(
        1000,
        |_| {
            i += 1;
            unit("B", i)
        },
        |_| {},
    );
    drop(exporting);
    let exported = receiver.1.load(Ordering::Relaxed);
    assert!(exported > 0, "the receiver got no spans");
    vec![
        Row {
            name: "call, metrics scraped",
            what: format!(
                "`get-product` while `/metrics` is rendered every 100 ms ({} scrapes) vs the same calls unscraped, interleaved, {ROUNDS} rounds",
                scrapes.load(Ordering::Relaxed)
            ),
            moat: us(scraped),
            native: format!("{} (unscraped)", us(plain)),
            ratio: scraped / plain,
            aim: "≤ 1.05",
            met: scraped / plain <= 1.05,
            note: String::new(),
        },
        Row {
            name: "call, traced",
            what: format!(
                "`get-product` with its span exported over OTLP/HTTP to a local receiver ({exported} bytes received) vs untraced, {ROUNDS} rounds each"
            ),
            moat: us(traced),
            native: format!("{} (untraced)", us(plain)),
            ratio: traced / plain,
            aim: "report",
            met: true,
            note: String::new(),
        },
        Row {
            name: "unit of work, traced",
            what: "`place-order` with its 2 spans (call, publish) exported vs untraced, same app, 7 rounds each".into(),
            moat: us(traced_unit),
            native: format!("{} (untraced)", us(plain_unit)),
            ratio: traced_unit / plain_unit,
            aim: "report",
            met: true,
            note: String::new(),
        },
    ]
}

/// An OTLP/HTTP receiver that reads every request and answers 200: its
/// endpoint and the bytes it received.
fn otlp_sink() -> (String, Arc<AtomicU64>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(AtomicU64::new(0));
    let counted = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let (mut line, mut length) = (String::new(), 0usize);
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        reader.read_line(&mut line).unwrap();
                        if line.trim_end().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    counted.fetch_add(length as u64, Ordering::Relaxed);
                    writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
                }
            });
        }
    });
    (endpoint, received)
}

fn unit_of_work(guests: &Path) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), guests, &[("product", "product"), ("order", "order")], cache());
    seed_products(&app, 100);
    let f = app.function("order", "place-order").unwrap();
    let conn = native::orders(&dir.path().join("native.db"), 100);
    let line = |p: usize, q: u32| {
        Val::Record(vec![("product-id".into(), Val::String(format!("P{p:04}"))), ("quantity".into(), Val::U32(q))])
    };
    let (m, n) = per_op(
        1000,
        |i| {
            let params = [
                Val::String(format!("M{i}")),
                Val::String("C1".into()),
                Val::List(vec![line(i % 100, 2), line((i + 1) % 100, 1)]),
            ];
            let r = app.call(&f, &params).unwrap();
            assert!(matches!(r[0], Val::Result(Ok(_))));
        },
        |i| {
            native::place_order(
                &conn,
                &format!("N{i}"),
                &[(&format!("P{:04}", i % 100), 2), (&format!("P{:04}", (i + 1) % 100), 1)],
            );
        },
    );
    Row {
        name: "unit of work",
        what: "`place-order`: a transaction, 2 replica reads, 3 rows, 1 outbox event, vs the same SQL natively".into(),
        moat: format!("{} ({:.0} orders/s)", us(m), 1.0 / m),
        native: format!("{} ({:.0} orders/s)", us(n), 1.0 / n),
        ratio: m / n,
        aim: "≤ 1.25",
        met: m / n <= 1.25,
        note: String::new(),
    }
}

/// Throughput scaling: each of two operations alone for a while, then both
/// at once on two threads; the sum of the fractions of its solo rate each
/// kept (2.0: perfect). Medians over `ROUNDS`.
fn scaling(window: Duration, a: &(dyn Fn(usize) + Sync), b: &(dyn Fn(usize) + Sync)) -> f64 {
    let rate = |op: &(dyn Fn(usize) + Sync), stop: &AtomicBool| {
        let (t, mut n) = (Instant::now(), 0);
        while !stop.load(Ordering::Relaxed) {
            op(n);
            n += 1;
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    let timed = |f: &mut dyn FnMut(&AtomicBool)| {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(window);
                stop.store(true, Ordering::Relaxed);
            });
            f(&stop);
        });
    };
    let mut sums = Vec::new();
    for _ in 0..ROUNDS {
        let (mut solo_a, mut solo_b, mut both) = (0.0, 0.0, (0.0, 0.0));
        timed(&mut |stop| solo_a = rate(a, stop));
        timed(&mut |stop| solo_b = rate(b, stop));
        timed(&mut |stop| {
            both = std::thread::scope(|s| {
                let other = s.spawn(|| rate(b, stop));
                let mine = rate(a, stop);
                (mine, other.join().unwrap())
            })
        });
        sums.push(both.0 / solo_a + both.1 / solo_b);
    }
    median(sums)
}

fn parallel(guests: &Path) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), guests, &[("product", "product"), ("order", "order")], cache());
    seed_products(&app, 100);
    let place = app.function("order", "place-order").unwrap();
    for i in 0..100 {
        let line =
            Val::Record(vec![("product-id".into(), Val::String(format!("P{i:04}"))), ("quantity".into(), Val::U32(1))]);
        let params = [Val::String(format!("O{i:04}")), Val::String("C1".into()), Val::List(vec![line])];
        app.call(&place, &params).unwrap();
    }
    let (get_product, get_order) =
        (app.function("product", "get-product").unwrap(), app.function("order", "get-order").unwrap());
    let window = Duration::from_millis(500);
    let moat = scaling(
        window,
        &|i| {
            assert!(matches!(
                app.call(&get_product, &[Val::String(format!("P{:04}", i % 100))]).unwrap()[0],
                Val::Option(Some(_))
            ))
        },
        &|i| {
            assert!(matches!(
                app.call(&get_order, &[Val::String(format!("O{:04}", i % 100))]).unwrap()[0],
                Val::Option(Some(_))
            ))
        },
    );
    // Natively: the same point reads, on two databases, one connection each.
    let (a, b) = (
        Mutex::new(native::catalog(&dir.path().join("native-a.db"), 100)),
        Mutex::new(native::catalog(&dir.path().join("native-b.db"), 100)),
    );
    let native = scaling(
        window,
        &|i| assert!(native::get_product(&a.lock().unwrap(), &format!("P{:04}", i % 100)).is_some()),
        &|i| assert!(native::get_product(&b.lock().unwrap(), &format!("P{:04}", i % 100)).is_some()),
    );
    Row {
        name: "two components in parallel",
        what: format!(
            "`get-product` and `get-order` on two threads at once: the sum of the share of its solo rate each keeps (2.00 is perfect), {} ms windows, medians of {ROUNDS} rounds; native: two point reads on two databases",
            window.as_millis()
        ),
        moat: format!("{moat:.2}×"),
        native: format!("{native:.2}×"),
        ratio: moat / native,
        aim: "≥ 1.7×",
        met: moat >= 1.7,
        note: String::new(),
    }
}

/// Runs the dispatcher of `app` on a thread of its own, as `moat up` does.
struct Delivering {
    app: Arc<App>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Delivering {
    fn start(app: &Arc<App>) -> Delivering {
        let a = app.clone();
        let thread = std::thread::spawn(move || a.events().run());
        Delivering { app: app.clone(), thread: Some(thread) }
    }
}

impl Drop for Delivering {
    fn drop(&mut self) {
        self.app.events().stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn caught_up(app: &App) -> bool {
    app.status().subscriptions.iter().all(|s| s.cursor >= s.head)
}

fn events(guests: &Path) -> Row {
    const BATCH: usize = 1000;
    const CALLS: usize = 100;
    let (mut m, mut n) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (moat, native) = events_in_one_process(guests, &format!("r{round}"), BATCH, CALLS);
        m.push(moat);
        n.push(native);
    }
    let (m, n) = (median(m), median(n));
    Row {
        name: "events",
        what: format!(
            "publish → applied in the subscriber, exactly once, batched ({} events, {BATCH} per publishing call), delivery on its own thread as it is published, both sides",
            BATCH * CALLS
        ),
        moat: format!("{m:.0} events/s"),
        native: format!("{n:.0} events/s"),
        ratio: m / n,
        aim: "≥ 250,000/s and ≥ 0.5",
        met: m >= 250_000.0 && m / n >= 0.5,
        note: String::new(),
    }
}

/// Publishes `calls` batches of `batch` events from the probe to the tally in
/// one process (delivery on its own thread, as `moat up` does), checks that
/// each took effect exactly once, then does the same natively. Returns the
/// events per second of each.
fn events_in_one_process(guests: &Path, prefix: &str, batch: usize, calls: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let app = Arc::new(app(dir.path(), guests, &[("probe", "probe"), ("tally", "tally")], cache()));
    let f = app.function("probe", "publish-numbered").unwrap();
    let delivering = Delivering::start(&app);
    let t = Instant::now();
    for c in 0..calls {
        app.call(&f, &[Val::String(format!("{prefix}c{c}")), Val::U32(batch as u32)]).unwrap();
    }
    while !caught_up(&app) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let moat = (batch * calls) as f64 / t.elapsed().as_secs_f64();
    drop(delivering);
    let totals = app.call_wave("tally", "totals()").unwrap();
    assert_eq!(moat::values::to_wave(&totals[0]), format!("({}, {})", batch * calls, batch * calls), "exactly once");

    // Natively the same way: applied on another thread while published.
    (moat, native::pipelined(dir.path(), prefix, batch, calls))
}

fn event_latency(guests: &Path) -> Row {
    const RATE: u64 = 10_000;
    let duration = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let app = Arc::new(app(dir.path(), guests, &[("probe", "probe"), ("tally", "tally")], cache()));
    let f = app.function("probe", "publish-numbered").unwrap();
    let delivering = Delivering::start(&app);
    let t = Instant::now();
    native::pace(RATE, duration, |i| {
        app.call(&f, &[Val::String(format!("s{i}")), Val::U32(1)]).unwrap();
    });
    let achieved = (RATE * duration.as_secs()) as f64 / t.elapsed().as_secs_f64();
    while !caught_up(&app) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = app.status();
    let route = &status.subscriptions[0];
    let (p50, p99) = (route.latency_p50_ms.unwrap(), route.latency_p99_ms.unwrap());
    drop(delivering);

    // The same window on both sides: moat's route keeps the latencies of
    // its last 16,384 deliveries, so the native side counts its last 16,384.
    let mut latencies = native::steady_latencies(dir.path(), RATE, duration);
    latencies.drain(..latencies.len().saturating_sub(16_384));
    let (n50, n99) = (quantile(latencies.clone(), 0.5) / 1000.0, quantile(latencies, 0.99) / 1000.0);
    Row {
        name: "event latency",
        what: format!(
            "publish → applied at a steady {RATE} events/s for {}s (achieved {achieved:.0}/s), p50 / p99 of the last 16,384 events on each side, 1 run",
            duration.as_secs()
        ),
        moat: format!("{p50:.2} / {p99:.2} ms"),
        native: format!("{n50:.2} / {n99:.2} ms"),
        ratio: p99 / n99.max(0.001),
        aim: "p99 ≤ 10 ms",
        met: p99 <= 10.0,
        note: "ratio of the p99s".into(),
    }
}

/// Runs `moat call` once with the release binary; returns seconds.
fn time_moat_call(manifest: &Path, data: &Path, cache: &Path) -> f64 {
    // Both sides read the same row (P0001), which both seeded.
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("--manifest")
        .arg(manifest)
        .arg("--data")
        .arg(data)
        .arg("--cache-dir")
        .arg(cache)
        .args(["call", "product", r#"get-product("P0001")"#])
        .output()
        .unwrap();
    let elapsed = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.starts_with(b"some("), "the read found no row: {}", String::from_utf8_lossy(&out.stdout));
    elapsed
}

fn start(guests: &Path) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("moat.toml");
    std::fs::write(&manifest, format!("[components.product]\npath = {:?}\n", guests.join("product.wasm"))).unwrap();
    let data = dir.path().join("data");
    let warm_cache = dir.path().join("cache");
    // The same 10 products on both sides, so both reads find one.
    {
        let manifest = Manifest::load(&manifest).unwrap();
        let app = Plan::new(manifest, Runtime::new(Some(warm_cache.clone())).unwrap(), &data).unwrap().open().unwrap();
        seed_products(&app, 10);
    }
    time_moat_call(&manifest, &data, &warm_cache);
    let native_db = dir.path().join("native.db");
    drop(native::catalog(&native_db, 10));
    let me = std::env::current_exe().unwrap();
    let (mut warm, mut cold, mut nat) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let t = Instant::now();
        assert!(Command::new(&me).arg("--native-start").arg(&native_db).status().unwrap().success());
        nat.push(t.elapsed().as_secs_f64());
        warm.push(time_moat_call(&manifest, &data, &warm_cache));
        cold.push(time_moat_call(&manifest, &data, &dir.path().join(format!("cold-{round}"))));
    }
    let (w, c, n) = (median(warm), median(cold), median(nat));
    Row {
        name: "start",
        what: "`moat call` process: start, load, first call answered; compile cache warm (cold) vs a native process doing the same read".into(),
        moat: format!("{:.1} ms ({:.1} ms cold)", w * 1e3, c * 1e3),
        native: format!("{:.1} ms", n * 1e3),
        ratio: w / n,
        aim: "warm ≤ 50 ms",
        met: w <= 0.050,
        note: String::new(),
    }
}

fn native_start(db: &Path) {
    let conn = native::open(db);
    assert!(native::get_product(&conn, "P0001").is_some());
    println!("some(...)");
}

fn swap(guests: &Path) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let app = Arc::new(app(dir.path(), guests, &[("product", "product"), ("order", "order")], cache()));
    seed_products(&app, 100);
    let (v1, v2) = (guests.join("product.wasm"), guests.join("product_v2.wasm"));

    // A steady load of calls on product while it is swapped back and forth.
    let stop = Arc::new(AtomicBool::new(false));
    let (failed, completions) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(Vec::<Instant>::new())));
    let load = {
        let (app, stop, failed, completions) = (app.clone(), stop.clone(), failed.clone(), completions.clone());
        std::thread::spawn(move || {
            let f = app.function("product", "get-product").unwrap();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                match app.call(&f, &[Val::String(format!("P{:04}", i % 100))]) {
                    Ok(_) => completions.lock().unwrap().push(Instant::now()),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (mut total, mut switch, mut at) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..10 {
        let to = if i % 2 == 0 { &v2 } else { &v1 };
        at.push(Instant::now());
        let report = app.swap("product", to).unwrap();
        total.push(report.total_ms);
        switch.push(report.switch_ms);
        std::thread::sleep(Duration::from_millis(150));
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();

    // Throughput in 10 ms windows: the windows that hold a swap, against all.
    let done = completions.lock().unwrap();
    let first = done[0];
    let mut windows = vec![0u32; (done.last().unwrap().duration_since(first).as_millis() / 10 + 1) as usize];
    for t in done.iter() {
        windows[(t.duration_since(first).as_millis() / 10) as usize] += 1;
    }
    let typical = median(windows.iter().map(|&w| f64::from(w)).collect());
    let during = at
        .iter()
        .map(|t| windows[(t.saturating_duration_since(first).as_millis() / 10) as usize] as f64)
        .fold(f64::MAX, f64::min);

    // The cold figure: a runtime without a compile cache.
    let cold_dir = tempfile::tempdir().unwrap();
    let cold_app = app_cold(cold_dir.path(), guests);
    let cold = cold_app.swap("product", &v2).unwrap().total_ms;

    // Native: the alternative to a swap is restarting the service process.
    let native_db = dir.path().join("native.db");
    drop(native::catalog(&native_db, 10));
    let me = std::env::current_exe().unwrap();
    let restart = median(
        (0..ROUNDS)
            .map(|_| {
                let t = Instant::now();
                assert!(Command::new(&me).arg("--native-start").arg(&native_db).status().unwrap().success());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    let (total, switch) = (median(total), median(switch));
    let failed = failed.load(Ordering::Relaxed);
    Row {
        name: "swap",
        what: "product 1.0 ⇄ 1.1 under a steady load of calls, cache warm: request → new version serving (callers held); cold compile; calls failed; throughput in the 10 ms window of a swap vs typical; medians of 10 swaps, native a median of 7 restarts".into(),
        moat: format!(
            "{total:.1} ms ({switch:.2} ms held); cold {cold:.0} ms; {failed} failed; {during:.0} vs {typical:.0} calls/10 ms"
        ),
        native: format!("{restart:.1} ms (restart a native process)"),
        ratio: total / restart,
        aim: "≤ 20 ms, 0 failed",
        met: total <= 20.0 && failed == 0,
        note: String::new(),
    }
}

fn app_cold(dir: &Path, guests: &Path) -> App {
    let a = app(dir, guests, &[("product", "product"), ("order", "order")], None);
    seed_products(&a, 10);
    a
}

/// Peak resident memory of a process, from /proc, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn memory(guests: &Path) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("moat.toml");
    std::fs::write(
        &manifest,
        format!(
            "[components.product]\npath = {:?}\n[components.order]\npath = {:?}\n",
            guests.join("product.wasm"),
            guests.join("order.wasm")
        ),
    )
    .unwrap();
    let mut host = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("--manifest")
        .arg(&manifest)
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--cache-dir")
        .arg(cache().unwrap())
        .args(["up", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(host.stdout.take().unwrap()), &mut line).unwrap();
    let addr = line.split(" at ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let client = moat::control::client::Client::new(&addr, moat::data_dir::token(&dir.path().join("data")));
    for p in 0..10 {
        client
            .call(
                "product",
                &format!(r#"create-product({{product-id: "P{p}", name: "Product {p}", price: 1000, stock: 100000}})"#),
                false,
            )
            .unwrap();
    }
    for o in 0..1000 {
        client
            .call("order", &format!(r#"place-order("O{o}", "C1", [{{product-id: "P{}", quantity: 1}}, {{product-id: "P{}", quantity: 2}}])"#, o % 10, (o + 3) % 10), false)
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let moat_kib = peak_rss_kib(host.id());
    unsafe_kill(host.id());
    host.wait().unwrap();

    let me = std::env::current_exe().unwrap();
    let out = Command::new(&me).arg("--native-memory").arg(dir.path()).output().unwrap();
    let native_kib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Row {
        name: "memory",
        what: "peak RSS of `moat up` with product and order loaded and 1,000 orders placed, vs a native process doing the same SQL, 1 run each".into(),
        moat: format!("{:.1} MiB", moat_kib as f64 / 1024.0),
        native: format!("{:.1} MiB", native_kib as f64 / 1024.0),
        ratio: moat_kib as f64 / native_kib as f64,
        aim: "≤ 64 MiB",
        met: moat_kib <= 64 * 1024,
        note: String::new(),
    }
}

fn unsafe_kill(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

fn native_memory(dir: &Path) {
    let conn = native::orders(&dir.join("native-memory.db"), 10);
    for o in 0..1000 {
        native::place_order(
            &conn,
            &format!("O{o}"),
            &[(&format!("P{:04}", o % 10), 1), (&format!("P{:04}", (o + 3) % 10), 2)],
        );
    }
    println!("{}", peak_rss_kib(std::process::id()));
}

/// A NATS server with JetStream for the cross-host rows, on a free port.
struct NatsServer {
    child: std::process::Child,
    url: String,
    _store: tempfile::TempDir,
}

impl NatsServer {
    fn start() -> Option<NatsServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let store = tempfile::tempdir().ok()?;
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t.elapsed() > Duration::from_secs(10) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(NatsServer { child, url: format!("nats://127.0.0.1:{port}"), _store: store })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two apps in this process, hosts `a` and `b` of one app, joined by NATS:
/// `on_a` run on a, `on_b` on b.
fn two_hosts(dir: &Path, guests: &Path, nats: &NatsServer, on_a: &[(&str, &str)], on_b: &[(&str, &str)]) -> (App, App) {
    let open = |host: &str| {
        let mut toml = format!("[nats]\nurl = \"{}\"\nhost = \"{host}\"\n", nats.url);
        for (runs_on, components) in [("a", on_a), ("b", on_b)] {
            for (name, file) in components {
                toml.push_str(&format!("[components.{name}]\npath = {:?}\n", guests.join(format!("{file}.wasm"))));
                if runs_on != host {
                    toml.push_str(&format!("host = \"{runs_on}\"\n"));
                }
            }
        }
        let path = dir.join(format!("{host}.toml"));
        std::fs::write(&path, toml).unwrap();
        Plan::new(Manifest::load(&path).unwrap(), Runtime::new(cache()).unwrap(), &dir.join(format!("data-{host}")))
            .unwrap()
            .open()
            .unwrap()
    };
    (open("a"), open("b"))
}

fn not_measured(name: &'static str, what: &str) -> Row {
    Row {
        name,
        what: what.into(),
        moat: "not measured: no nats-server on this machine".into(),
        native: "-".into(),
        ratio: f64::NAN,
        aim: "report",
        met: false,
        note: String::new(),
    }
}

fn events_across_hosts(guests: &Path) -> Row {
    const BATCH: usize = 1000;
    const CALLS: usize = 50;
    let what = format!(
        "publish on host a → JetStream (acks) → applied on host b, exactly once ({} events), vs native in one process; moat in one process alongside; 1 run each",
        BATCH * CALLS
    );
    let Some(nats) = NatsServer::start() else { return not_measured("events across hosts", &what) };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_hosts(dir.path(), guests, &nats, &[("probe", "probe")], &[("tally", "tally")]);
    let (a, b) = (Arc::new(a), Arc::new(b));
    let _delivering = Delivering::start(&b);
    let f = a.function("probe", "publish-numbered").unwrap();
    let t = Instant::now();
    for c in 0..CALLS {
        a.call(&f, &[Val::String(format!("x{c}")), Val::U32(BATCH as u32)]).unwrap();
    }
    let totals = b.function("tally", "totals").unwrap();
    loop {
        let got = moat::values::to_wave(&b.call(&totals, &[]).unwrap()[0]);
        if got == format!("({}, {})", BATCH * CALLS, BATCH * CALLS) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "events across hosts did not arrive: {got}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let across = (BATCH * CALLS) as f64 / t.elapsed().as_secs_f64();

    // The same in one process, and natively, for the comparison.
    let (in_process, native) = events_in_one_process(guests, "x", BATCH, CALLS);
    Row {
        name: "events across hosts",
        what,
        moat: format!("{across:.0} events/s (in one process: {in_process:.0}/s)"),
        native: format!("{native:.0} events/s"),
        ratio: across / native,
        aim: "report",
        met: true,
        note: String::new(),
    }
}

fn call_across_hosts(guests: &Path) -> Row {
    const CALLS: usize = 2000;
    let what = "relay on host b → NATS request-reply → product `get-product` on host a, p50 / p99, vs the same hop in one process, vs a native point read; 2,000 calls, 1 run each".to_string();
    let Some(nats) = NatsServer::start() else { return not_measured("call across hosts", &what) };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_hosts(dir.path(), guests, &nats, &[("product", "product")], &[("relay", "relay")]);
    seed_products(&a, 100);
    let latencies = |app: &App| -> (f64, f64) {
        let f = app.function("relay", "get-product").unwrap();
        let mut samples = Vec::with_capacity(CALLS);
        for i in 0..CALLS + CALLS / 10 {
            let t = Instant::now();
            let r = app.call(&f, &[Val::String(format!("P{:04}", i % 100))]).unwrap();
            assert!(matches!(r[0], Val::Option(Some(_))));
            if i >= CALLS / 10 {
                samples.push(t.elapsed().as_nanos() as i64);
            }
        }
        (quantile(samples.clone(), 0.5) / 1e6, quantile(samples, 0.99) / 1e6)
    };
    let (x50, x99) = latencies(&b);
    let local_dir = tempfile::tempdir().unwrap();
    let local = app(local_dir.path(), guests, &[("product", "product"), ("relay", "relay")], cache());
    seed_products(&local, 100);
    let (l50, l99) = latencies(&local);
    let conn = native::catalog(&local_dir.path().join("native.db"), 100);
    let mut samples = Vec::new();
    for i in 0..CALLS {
        let t = Instant::now();
        assert!(native::get_product(&conn, &format!("P{:04}", i % 100)).is_some());
        samples.push(t.elapsed().as_nanos() as i64);
    }
    let (n50, n99) = (quantile(samples.clone(), 0.5) / 1e6, quantile(samples, 0.99) / 1e6);
    Row {
        name: "call across hosts",
        what,
        moat: format!("{x50:.3} / {x99:.3} ms (in one process: {l50:.3} / {l99:.3} ms)"),
        native: format!("{n50:.3} / {n99:.3} ms"),
        ratio: x50 / n50,
        aim: "report",
        met: true,
        note: "ratio of the medians".into(),
    }
}

/// `get-product` over HTTP: the gateway in front of product, against axum +
/// rusqlite doing the same point read.
fn http_get_product(guests: &Path) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), guests, &[("product", "product")], cache());
    seed_products(&app, 1000);
    let moat = http::gateway(app);
    let (catalog, orders) = http::native_databases(dir.path(), 1000);
    let native = http::native_server(catalog, orders);
    let body = |i: usize| format!(r#"{{"product-id": "P{:04}"}}"#, i * 7 % 1000);
    let (m, n) = http::compare(moat.addr, native.addr, "/product/catalog/get-product", 4000, &body);
    http_row("HTTP get-product", "`POST /product/catalog/get-product`", m, n, "≥ 0.7× native requests/s")
}

/// `place-order` over HTTP: a unit of work behind the gateway, against
/// axum + rusqlite doing the same transaction.
fn http_place_order(guests: &Path) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path(), guests, &[("product", "product"), ("order", "order")], cache());
    seed_products(&app, 100);
    let moat = http::gateway(app);
    let (catalog, orders) = http::native_databases(dir.path(), 100);
    let native = http::native_server(catalog, orders);
    let body = |i: usize| {
        format!(
            r#"{{"order-id": "H{i}", "customer-id": "C1", "items": [{{"product-id": "P{:04}", "quantity": 2}}, {{"product-id": "P{:04}", "quantity": 1}}]}}"#,
            i % 100,
            (i + 1) % 100
        )
    };
    let (m, n) = http::compare(moat.addr, native.addr, "/order/orders/place-order", 1000, &body);
    http_row("HTTP place-order", "`POST /order/orders/place-order` (2 lines, 1 event)", m, n, "report")
}

fn http_row(name: &'static str, what: &str, m: http::Measured, n: http::Measured, aim: &'static str) -> Row {
    let show =
        |x: &http::Measured| format!("{:.0} req/s, p50 / p99 {:.2} / {:.2} ms", x.per_second, x.p50_ms, x.p99_ms);
    let ratio = m.per_second / n.per_second;
    Row {
        name,
        what: format!(
            "{what} with JSON, {} keep-alive connections, vs axum + rusqlite doing the same SQL, requests/s a median of {ROUNDS} interleaved rounds, latencies over all of them",
            http::CONNECTIONS
        ),
        moat: show(&m),
        native: show(&n),
        ratio,
        aim,
        met: aim == "report" || ratio >= 0.7,
        note: "requests/s ratio (moat / native: higher is better here)".into(),
    }
}

fn report(rows: &[Row], took: Duration) -> String {
    let mut out = String::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string())))
        .unwrap_or_default();
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(workspace())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Command: `make bench`. Date: {date}. Commit: {commit}. Machine: {cpu}, {cores} cores, {mem} of memory. Took {:.0} s.\n",
        took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "Every row is measured in the same run as its native baseline: the same SQL done directly with rusqlite in plain Rust, with the same SQLite settings (WAL, synchronous=NORMAL), no Wasm. Figures are medians of {ROUNDS} rounds unless the row says otherwise; the ratio is moat / native (lower is better).\n"
    );
    let _ = writeln!(out, "| row | what | moat | native | ratio | aim | |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(out, "{}", r.line());
    }
    let mut notes: Vec<String> =
        rows.iter().filter(|r| !r.note.is_empty()).map(|r| format!("- {}: {}", r.name, r.note)).collect();
    if rows.iter().any(|r| ["call", "cross-component call", "unit of work"].contains(&r.name) && !r.met) {
        notes.push(
            "- call, cross-component call, unit of work: what the host adds to the SQL is the component boundary itself. \
             The host knows no shop types, so each call goes through Wasmtime's dynamic `Val` API (arguments lowered and \
             results lifted by type, with the guest's `cabi_realloc` and post-return called for every string and list), \
             and each statement is a guest → host → guest round trip through `moat:platform/store`. Counted with \
             callgrind (`make bench-instructions`, below), a `get-product` of about 29,600 instructions spends about \
             5,500 in SQLite's step (native pays it too), 7,000 lowering the store's rows into the guest \
             (`list<list<value>>`, one `cabi_realloc` call into the guest per string and list), 2,800 lifting the result \
             record into `Val`s (a `String` per field name), 2,700 in malloc and free, 4,500 in the guest's own code, \
             and the rest spread thin: no single cost dominates. A forwarded call adds about 15,000 more (the \
             arguments and results of the hop lifted to `Val`s and lowered again). A `place-order` of about \
             189,800 instructions against native's 98,000 runs 75,700 in SQLite's step against 66,800 (the outbox's \
             `(topic, seq)` index, the host's `BEGIN`/`COMMIT`), and spends most of the rest crossing the boundary: \
             its arguments and result, and about eight guest → host → guest round trips (queries, inserts, the \
             publish), each several thousand instructions beyond what SQLite does. \
             A read-only call runs without a transaction, and statements and host SQL are prepared once."
                .into(),
        );
    }
    if rows.iter().any(|r| r.name == "events" && !r.met) {
        notes.push(
            "- events: each event crosses the boundary once to be published and once to be applied, and is \
             written and read as WAVE text. Counted with callgrind (`make bench-instructions`), an event costs \
             about 40,400 instructions against native's 17,400. The route's thread, which sets the pace, spends \
             about 25,400 (native's consumer: 8,800): 19,000 applying it (the handler called through Wasmtime's \
             `Val` API, its upsert a guest → host round trip of 6,700 of which SQLite's step is most, and 2,600 \
             parsing the WAVE with the handler's type) and 5,500 reading it from the outbox through the \
             `(topic, seq)` index. The publishing thread spends 14,900 (native: 8,600), 9,900 of it the outbox \
             insert with that index. A batch takes no savepoint per event (a failing handler rolls its batch back \
             and the events before it are applied again), and WAVE is written without formatting each character. \
             What is left is the boundary itself, as for a call."
                .into(),
        );
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\n{}", notes.join("\n"));
    }
    out
}
