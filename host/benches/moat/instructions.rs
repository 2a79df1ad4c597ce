//! `make bench-instructions`: instructions per operation, moat against
//! native, counted by callgrind, which repeats where wall time on two
//! shared cores does not.
//!
//! For each row and side the bench runs itself under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=*measured_SIDE*`
//! (`--instructions-run ROW SIDE N`): it opens the app, warms up, then runs
//! N operations inside `measured_moat` or `measured_native`, the only code
//! counted. Components are compiled inside valgrind, into a cache of its
//! own (`target/moat-callgrind-cache`): under valgrind the CPU reports
//! fewer features than natively, and Wasmtime rightly refuses code compiled
//! for more.
//!
//! The table goes into docs/BENCHMARKS.md between markers (`make bench`
//! keeps it), and `callgrind_annotate` of each moat run into
//! target/callgrind/ROW-moat.txt, to see where the instructions go.

use std::path::Path;
use std::process::Command;

use moat::App;
use wasmtime::component::Val;

use super::{app, native, seed_products, workspace};

/// Where the table starts and ends in docs/BENCHMARKS.md.
pub const BEGIN: &str = "<!-- instructions: make bench-instructions -->";
pub const END: &str = "<!-- /instructions -->";

/// Events per batch of the events row.
const EVENTS: u64 = 1000;

/// The rows: name, slug, operations counted (for events: batches of
/// `EVENTS` events, published by one call and applied by a settle, whose
/// route workers are counted too; reported per event). The traced rows count moat
/// exporting spans against moat untraced (in their "native" column): the
/// cost on the calling thread (spans are exported on a thread of their own,
/// which callgrind does not count here).
const ROWS: &[(&str, &str, u64)] = &[
    ("call", "call", 2000),
    ("cross-component call", "cross", 2000),
    ("unit of work", "unit", 500),
    ("events, per event", "events", 20),
    ("call, traced (vs untraced)", "call-traced", 2000),
    ("unit of work, traced (vs untraced)", "unit-traced", 500),
];

/// Runs every row under callgrind and writes the table.
pub fn run() {
    let me = std::env::current_exe().unwrap();
    let out = workspace().join("target/callgrind");
    std::fs::create_dir_all(&out).unwrap();
    let mut table = String::new();
    table.push_str(&format!("{BEGIN}\n## Instructions per operation (callgrind)\n\n"));
    table.push_str(
        "Command: `make bench-instructions`. Counted by `valgrind --tool=callgrind` inside the measured loop only, after a warm-up, same SQL on both sides; where the rest goes: `callgrind_annotate target/callgrind/ROW-moat.out`.\n\n",
    );
    table.push_str(
        "| row | operations | moat instructions/op | native (or untraced) instructions/op | ratio |\n|---|---|---|---|---|\n",
    );
    for (name, slug, n) in ROWS {
        let mut per = [0f64; 2];
        for (k, side) in ["moat", "native"].iter().enumerate() {
            let file = out.join(format!("{slug}-{side}.out"));
            // Both sides of a traced row run moat.
            let counted = if slug.ends_with("-traced") { "moat" } else { side };
            eprintln!("bench-instructions: {name}, {side} ({n} operations under callgrind)...");
            let mut valgrind = Command::new("valgrind");
            valgrind.args(["--tool=callgrind", "--collect-atstart=no", "--quiet"]);
            if *slug == "events" {
                // A settle delivers each route on a thread of its own.
                valgrind.arg("--toggle-collect=*dispatcher::Route::settle*");
            }
            let status = valgrind
                .arg(format!("--toggle-collect=*measured_{counted}*"))
                .arg(format!("--callgrind-out-file={}", file.display()))
                .arg(&me)
                .args(["--instructions-run", slug, side, &n.to_string()])
                .status()
                .expect("valgrind is installed (Debian package valgrind; make test-tools installs it)");
            assert!(status.success(), "callgrind run of {slug} {side} failed");
            let operations = if *slug == "events" { n * EVENTS } else { *n };
            per[k] = total_instructions(&file) as f64 / operations as f64;
            if *side == "moat" {
                let annotated = Command::new("callgrind_annotate").arg("--inclusive=yes").arg(&file).output().unwrap();
                std::fs::write(out.join(format!("{slug}-moat.txt")), annotated.stdout).unwrap();
            }
        }
        let shown = if *slug == "events" { format!("{} events", n * EVENTS) } else { n.to_string() };
        let line = format!("| {name} | {shown} | {:.0} | {:.0} | {:.2} |\n", per[0], per[1], per[0] / per[1]);
        eprint!("  {line}");
        table.push_str(&line);
    }
    table.push_str(END);
    let path = workspace().join("docs/BENCHMARKS.md");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, with_section(&current, &table)).unwrap();
    println!("{table}");
    eprintln!("bench-instructions: wrote {}", path.display());
}

/// `doc` with its instructions section replaced by `section` (or added).
pub fn with_section(doc: &str, section: &str) -> String {
    match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if e > b => format!("{}{section}{}", &doc[..b], &doc[e + END.len()..]),
        _ => format!("{}\n\n{section}\n", doc.trim_end()),
    }
}

/// The section of `doc` `make bench` keeps, if it has one.
pub fn section(doc: &str) -> Option<&str> {
    let (b, e) = (doc.find(BEGIN)?, doc.find(END)?);
    (e > b).then(|| &doc[b..e + END.len()])
}

/// The instructions (`Ir`) callgrind counted in a run.
fn total_instructions(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no totals in {}", file.display()))
}

/// Inside valgrind: one row, one side, `n` operations counted.
pub fn child(guests: &Path, slug: &str, side: &str, n: u64) {
    // A traced row: moat with spans exported, against moat without.
    let (slug, side, _exporting) = match (slug.strip_suffix("-traced"), side) {
        (Some(row), "moat") => {
            let (endpoint, _) = super::otlp_sink();
            // SAFETY: before any other thread of this process reads the environment.
            unsafe { std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint) };
            (row, "moat", moat::trace::init().unwrap())
        }
        (Some(row), _) => (row, "moat", None),
        (None, side) => (slug, side, None),
    };
    let dir = tempfile::tempdir().unwrap();
    if slug == "events" {
        return events(dir.path(), guests, side, n);
    }
    let components: &[(&str, &str)] = match slug {
        "call" => &[("product", "product")],
        "cross" => &[("product", "product"), ("relay", "relay")],
        _ => &[("product", "product"), ("order", "order")],
    };
    const PRODUCTS: usize = 200;
    let ids: Vec<String> = (0..PRODUCTS).map(|i| format!("P{i:04}")).collect();
    if side == "native" {
        let db = dir.path().join("native.db");
        if slug == "unit" {
            let conn = native::orders(&db, PRODUCTS);
            let mut i = 0;
            let mut op = || {
                i += 1;
                let (a, b) = (format!("P{:04}", i % PRODUCTS), format!("P{:04}", (i + 1) % PRODUCTS));
                native::place_order(&conn, &format!("N{i}"), &[(&a, 2), (&b, 1)]);
            };
            warm_then(&mut op, n, measured_native);
        } else {
            let conn = native::catalog(&db, PRODUCTS);
            let mut i = 0;
            let mut op = || {
                i += 1;
                assert!(native::get_product(&conn, &ids[i * 7 % PRODUCTS]).is_some());
            };
            warm_then(&mut op, n, measured_native);
        }
        return;
    }
    let app = open(dir.path(), guests, components);
    seed_products(&app, PRODUCTS);
    if slug == "unit" {
        let f = app.function("order", "place-order").unwrap();
        let line = |p: usize, q: u32| {
            Val::Record(vec![("product-id".into(), Val::String(format!("P{p:04}"))), ("quantity".into(), Val::U32(q))])
        };
        let mut i = 0;
        let mut op = || {
            i += 1;
            let params = [
                Val::String(format!("M{i}")),
                Val::String("C1".into()),
                Val::List(vec![line(i % PRODUCTS, 2), line((i + 1) % PRODUCTS, 1)]),
            ];
            assert!(matches!(app.call(&f, &params).unwrap()[0], Val::Result(Ok(_))));
        };
        warm_then(&mut op, n, measured_moat);
    } else {
        let via = if slug == "cross" { "relay" } else { "product" };
        let f = app.function(via, "get-product").unwrap();
        let mut i = 0;
        let mut op = || {
            i += 1;
            let r = app.call(&f, &[Val::String(ids[i * 7 % PRODUCTS].clone())]).unwrap();
            assert!(matches!(r[0], Val::Option(Some(_))));
        };
        warm_then(&mut op, n, measured_moat);
    }
}

/// `n` batches of `EVENTS` events: published by the probe's one call and
/// applied to the tally by a settle, against the same natively. No warm-up
/// on either side: the route threads are counted wherever a settle runs,
/// so a warm-up's batches would be counted as well (they were, until
/// 2026-11-28: a quarter more of the applying side). What a first batch
/// pays once is spread over `n` × `EVENTS` events.
fn events(dir: &Path, guests: &Path, side: &str, n: u64) {
    let mut batch = 0;
    if side == "native" {
        let mut pipeline = native::Pipeline::new(dir);
        let mut op = || {
            batch += 1;
            pipeline.publish(&format!("b{batch}"), EVENTS as usize);
            assert_eq!(pipeline.drain(EVENTS as usize).len(), EVENTS as usize);
        };
        return measured_native(&mut op, n);
    }
    let app = open(dir, guests, &[("probe", "probe"), ("tally", "tally")]);
    let f = app.function("probe", "publish-numbered").unwrap();
    let mut op = || {
        batch += 1;
        app.call(&f, &[Val::String(format!("b{batch}")), Val::U32(EVENTS as u32)]).unwrap();
        let settled = app.settle(std::time::Duration::from_secs(600)).unwrap();
        assert_eq!(settled.delivered, EVENTS as usize);
    };
    measured_moat(&mut op, n);
}

fn warm_then(op: &mut dyn FnMut(), n: u64, measured: fn(&mut dyn FnMut(), u64)) {
    for _ in 0..n / 4 {
        op();
    }
    measured(op, n);
}

/// The moat operations callgrind counts (by this function's name).
#[inline(never)]
fn measured_moat(op: &mut dyn FnMut(), n: u64) {
    // Unlike its twin below, so that the two are never merged into one symbol.
    std::hint::black_box("moat");
    for _ in 0..n {
        op();
    }
}

/// The native operations callgrind counts (by this function's name).
#[inline(never)]
fn measured_native(op: &mut dyn FnMut(), n: u64) {
    std::hint::black_box("native");
    for _ in 0..n {
        op();
    }
}

/// The bench's app, with the compile cache of code compiled under valgrind.
fn open(dir: &Path, guests: &Path, components: &[(&str, &str)]) -> App {
    app(dir, guests, components, Some(workspace().join("target/moat-callgrind-cache")))
}
