//! Test component: does what a test asks, reports what happened.
//!
//! Besides its `test:probe/probe` interface it exports two things that are
//! not contracts: a plain-named interface `init` (like the `exports.init`
//! componentize-py leaves) and a root-level function `run`. Each inserts a
//! mark into the table `probe_marks`, so a test can tell whether it ran.

mod bindings {
    wit_bindgen::generate!({
        path: ["../../../wit/moat-platform", "world.wit"],
        world: "test:probe/prober",
        with: {
            "moat:platform/store@0.1.0": moat_sdk::store,
            "moat:platform/log@0.1.0": moat_sdk::log::raw,
        },
        generate_all,
    });
}

use bindings::exports::test::probe::probe::Guest;
use bindings::test::probe::events::ProbeEvent;
use bindings::test::probe::publish::publish;
use moat_sdk::store::{self, Value};
use std::io::Write as _;
use std::time::Duration;

struct Probe;

bindings::export!(Probe with_types_in bindings);

impl Guest for Probe {
    fn execute(sql: String) -> Result<u64, String> {
        store::execute(&sql, &[]).map_err(|e| format!("{e:?}"))
    }

    fn query(sql: String) -> Result<Vec<Vec<String>>, String> {
        let rows = store::query(&sql, &[]).map_err(|e| format!("{e:?}"))?;
        Ok(rows.into_iter().map(|row| row.into_iter().map(text).collect()).collect())
    }

    fn write_then_trap(sql: String) {
        store::execute(&sql, &[]).expect("the write itself works");
        panic!("trapping after the write, as asked");
    }

    fn write_then_fail(sql: String) -> Result<(), String> {
        store::execute(&sql, &[]).expect("the write itself works");
        Err("failing after the write, as asked".into())
    }

    fn read_file(path: String) -> Result<String, String> {
        std::fs::read_to_string(&path).map_err(|e| e.to_string())
    }

    fn spin() {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn hog_memory(mib: u32) -> u32 {
        let mut kept = Vec::new();
        for _ in 0..mib {
            kept.push(vec![1u8; 1 << 20]);
        }
        std::hint::black_box(&kept);
        kept.len() as u32
    }

    fn recurse(depth: u32) -> u32 {
        fn down(n: u32) -> u32 {
            if n == 0 { 0 } else { 1 + std::hint::black_box(down(n - 1)) }
        }
        down(depth)
    }

    fn huge_string(mib: u32) -> String {
        "x".repeat((mib as usize) << 20)
    }

    fn connect(addr: String) -> Result<(), String> {
        std::net::TcpStream::connect(&addr).map(drop).map_err(|e| e.to_string())
    }

    fn environment() -> Vec<String> {
        std::env::vars().map(|(k, v)| format!("{k}={v}")).chain(std::env::args()).collect()
    }

    fn clocks() -> (u64, u64) {
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x ^ i);
        }
        ((wall.as_nanos() % 1_000_000) as u64, start.elapsed().as_nanos() as u64)
    }

    fn publish(note: String, count: u32) {
        for _ in 0..count {
            publish(&ProbeEvent::Note(note.clone()));
        }
    }

    fn publish_numbered(prefix: String, count: u32) {
        for i in 0..count {
            publish(&ProbeEvent::Note(format!("{prefix}-{i}")));
        }
    }

    fn publish_then_fail(note: String) -> Result<(), String> {
        publish(&ProbeEvent::Note(note));
        Err("failing after publishing, as asked".into())
    }

    fn publish_then_trap(note: String) {
        publish(&ProbeEvent::Note(note));
        panic!("trapping after publishing, as asked");
    }

    fn sleep(ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    fn block() {
        // One `subscribe-duration(u64::MAX)` and a wait on it per turn: about
        // 584 years each, and another if the host cuts one short.
        loop {
            std::thread::sleep(Duration::from_nanos(u64::MAX));
        }
    }

    fn write_then_sleep(sql: String, ms: u64) {
        store::execute(&sql, &[]).expect("the write itself works");
        std::thread::sleep(Duration::from_millis(ms));
    }

    fn log_flood(lines: u32, bytes_per_line: u32) {
        for i in 0..lines {
            moat_sdk::log::info(&flood_line(i, bytes_per_line));
        }
    }

    fn print_flood(lines: u32, bytes_per_line: u32) {
        for i in 0..lines {
            println!("{}", flood_line(i, bytes_per_line));
        }
    }

    fn log_line(text: String) {
        moat_sdk::log::info(&text);
    }

    fn print_raw(text: String) {
        let mut out = std::io::stdout().lock();
        // Best effort: a host that refuses the bytes is what a test looks at.
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }

    fn fail_with(bytes: u32) -> Result<(), String> {
        Err("x".repeat(bytes as usize))
    }
}

/// The plain-named `init` export: not a contract.
impl bindings::exports::init::Guest for Probe {
    fn init() {
        mark("init");
    }
}

/// The root-level `run` export: not a contract.
impl bindings::Guest for Probe {
    fn run() {
        mark("run");
    }
}

/// Records that a plain-named export ran, creating the table on demand.
fn mark(note: &str) {
    store::execute("CREATE TABLE IF NOT EXISTS probe_marks (note TEXT NOT NULL)", &[]).expect("creating probe_marks");
    store::execute("INSERT INTO probe_marks (note) VALUES (?)", &[Value::Text(note.into())]).expect("marking");
}

/// Line `i` of a flood: "<i>:" then `x` up to exactly `len` bytes (the
/// number cut short if `len` is smaller than it).
fn flood_line(i: u32, len: u32) -> String {
    let len = len as usize;
    let mut line = format!("{i}:");
    line.truncate(len);
    line.extend(std::iter::repeat_n('x', len - line.len()));
    line
}

fn text(v: Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(n) => n.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Text(s) => s,
        Value::Blob(b) => format!("blob({} bytes)", b.len()),
    }
}
