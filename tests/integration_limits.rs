//! Time and space: the call's deadline holds wherever the component is (in
//! wasm, inside WASI, inside one SQL step, while starting), routes cannot
//! starve each other, the host stops on a signal within a deadline, and
//! every resource a component can consume is capped with an error that
//! names the limit.
//!
//! Timings are asserted only where a bound is the point, and then with room
//! to spare: these machines are shared.

use std::time::{Duration, Instant};

use crate::common::*;

/// What a bound allows on top of the deadline itself, on a busy machine.
const SLACK: Duration = Duration::from_secs(2);

fn probe(limits: &str) -> TestApp {
    TestApp::with_manifest(&format!(
        "[components.product]\npath = {:?}\n\n[components.probe]\npath = {:?}\n{limits}\n",
        guest("product"),
        guest("probe")
    ))
}

#[test]
fn the_deadline_holds_inside_wasi_and_a_blocked_component_holds_nothing() {
    let app = probe("limits.call_timeout_ms = 1000");
    let open = app.open();
    for attempt in ["sleep(6000)", "block()", r#"write-then-sleep("CREATE TABLE t (x)", 60000)"#] {
        let start = Instant::now();
        let err = format!("{:#}", call(&open, "probe", attempt).unwrap_err());
        let took = start.elapsed();
        assert!(err.contains("ran past its deadline of 1000 ms (limits.call_timeout_ms)"), "{attempt}: {err}");
        assert!(took < Duration::from_millis(1000) + SLACK, "{attempt} took {took:?} against a 1000 ms deadline");
        println!("{attempt}: failed after {took:.0?} against a 1000 ms deadline");
    }
    assert!(tables(&app.db("probe")).is_empty(), "a write before the sleep was kept");
    drop(open);

    // One-shot: a blocked call ends, and the next call gets the data directory.
    let start = Instant::now();
    let blocked = app.moat(&["call", "probe", "block()"]);
    assert_eq!(blocked.code, 2, "{}", blocked.stderr);
    assert!(blocked.stderr.contains("ran past its deadline"), "{}", blocked.stderr);
    assert!(start.elapsed() < Duration::from_millis(1000) + SLACK + SLACK, "took {:?}", start.elapsed());
    assert_eq!(app.call_ok("probe", r#"query("SELECT 1")"#), r#"ok([["1"]])"#);
}

#[test]
fn one_sql_step_cannot_outlast_the_deadline() {
    let app = probe("limits.call_timeout_ms = 1000");
    let open = app.open();
    // The built-in instr takes about ten seconds on this; the host's is linear.
    let start = Instant::now();
    let found = call(
        &open,
        "probe",
        r#"query("SELECT instr(replace(hex(zeroblob(1000000)), '0', 'a') || 'b', replace(hex(zeroblob(100000)), '0', 'a') || 'b')")"#,
    )
    .unwrap();
    assert_eq!(found, r#"ok([["1800001"]])"#);
    assert!(start.elapsed() < Duration::from_millis(1000) + SLACK, "instr took {:?}", start.elapsed());
    println!("instr over 2 MB: answered in {:.0?} (deadline 1000 ms)", start.elapsed());
    // A LIKE that backtracks on a long subject (2 MB against a pattern of
    // 9,800 characters) ends at the deadline.
    let start = Instant::now();
    let like = call(
        &open,
        "probe",
        r#"query("SELECT replace(hex(zeroblob(1000000)), '0', 'a') LIKE ('%' || replace(hex(zeroblob(4900)), '0', 'a') || 'b')")"#,
    )
    .unwrap();
    assert!(like.contains("Limit") && like.contains("deadline (limits.call_timeout_ms)"), "{like}");
    assert!(start.elapsed() < Duration::from_millis(1000) + SLACK, "LIKE took {:?}", start.elapsed());
    println!("backtracking LIKE: ended after {:.0?} against a 1000 ms deadline", start.elapsed());
}

#[test]
fn a_migration_past_the_deadline_fails_the_load_at_the_deadline() {
    let app = TestApp::with_manifest(&format!(
        "[components.slow]\npath = {:?}\nlimits.call_timeout_ms = 300\n",
        guest("slow_start")
    ));
    let start = Instant::now();
    let run = app.moat(&["call", "slow", "ping()"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("failed to migrate its database") && run.stderr.contains("ran past its deadline of 300 ms"),
        "{}",
        run.stderr
    );
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "the load waited for the whole migration: {:?}",
        start.elapsed()
    );
}

#[test]
fn a_stuck_route_does_not_hold_up_another_and_the_host_stops_on_sigterm_within_the_deadline() {
    let app = TestApp::with_manifest(&format!(
        "[components.probe]\npath = {:?}\n\n[components.tally]\npath = {:?}\n\n\
         [components.hostile]\npath = {:?}\nlimits.call_timeout_ms = 2000\nevents.max_attempts = 100\nevents.retry_backoff_ms = 1\n",
        guest("probe"),
        guest("tally"),
        guest("hostile"),
    ));
    let host = app.up();
    // The hostile route is stuck on an event that blocks until its deadline,
    // again and again; the tally's route, on the same publisher, goes on.
    host.call("probe", r#"publish("block", 1)"#).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..20 {
        host.call("probe", &format!(r#"publish("ok:{i}", 1)"#)).unwrap();
    }
    let start = Instant::now();
    while host.call("tally", "totals()").unwrap() != "(21, 21)" {
        assert!(start.elapsed() < Duration::from_secs(10), "the healthy route stalled behind the stuck one");
        std::thread::sleep(Duration::from_millis(20));
    }
    let healthy_after = start.elapsed();
    let status = host.client.status().unwrap();
    let stuck = status.subscriptions.iter().find(|s| s.subscription.subscriber == "hostile").unwrap();
    let tally = status.subscriptions.iter().find(|s| s.subscription.subscriber == "tally").unwrap();
    assert!(stuck.cursor < stuck.head, "{stuck:?}");
    assert!(host.call("hostile", "inspect.applied()").unwrap() == "[]", "the stuck route got past its event");

    // SIGTERM with a handler mid-call: the host exits within the handler's
    // deadline and a second.
    std::thread::sleep(Duration::from_millis(300));
    let (code, took) = host.stop_timed();
    assert_eq!(code, 0);
    assert!(took < Duration::from_millis(2000 + 1000) + SLACK, "stopping took {took:?}");
    println!(
        "route tally with route hostile stuck: 20 events applied {healthy_after:.0?} after publishing, latency p50 {:?} ms, p99 {:?} ms; \
         SIGTERM with a handler blocked (deadline 2000 ms): exited in {took:.0?}",
        tally.latency_p50_ms, tally.latency_p99_ms
    );
}

#[test]
fn temporary_storage_results_and_logs_are_capped_with_errors_naming_the_limit() {
    let app = probe("limits.temp_mib = 8\nlimits.call_timeout_ms = 5000\nlimits.log_bytes_per_call = 100000");
    let open = app.open();
    let sorted = call(
        &open,
        "probe",
        r#"query("SELECT x FROM (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 200000) SELECT randomblob(1000) AS x FROM c) ORDER BY x")"#,
    )
    .unwrap();
    assert!(sorted.contains("more than 8 MiB of temporary storage") && sorted.contains("limits.temp_mib"), "{sorted}");
    // Empty values count too: 2,000 columns of '' over 10,000 rows.
    let columns = vec!["''"; 2000].join(", ");
    let wide = call(
        &open,
        "probe",
        &format!(r#"query("SELECT {columns} FROM (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 10000) SELECT n FROM c)")"#),
    )
    .unwrap();
    assert!(wide.contains("limits.query_bytes, counting 16 bytes per value"), "{}", &wide[..wide.len().min(300)]);
    assert_eq!(call(&open, "probe", r#"query("SELECT 1")"#).unwrap(), r#"ok([["1"]])"#);
    drop(open);

    // A log flood and a forged line, through the CLI's log.
    let flood = app.moat_env(&["call", "probe", "log-flood(100000, 1000)"], &[("RUST_LOG", "info"), ("NO_COLOR", "1")]);
    assert_eq!(flood.code, 0, "{}", flood.stderr);
    assert!(flood.stderr.len() < 1_000_000, "{} bytes of log got through", flood.stderr.len());
    assert!(flood.stderr.contains("limits.log_bytes_per_call"), "no word of the dropped log");
    let forged = "done\n2026-11-28T00:00:00.000000Z ERROR moat: the host was compromised\x1b[31m";
    let run = app.moat_env(&["call", "probe", &format!("log-line({forged:?})")], &[("RUST_LOG", "info")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stderr.lines().any(|l| l.starts_with("2026-11-28T00:00:00")),
        "a guest forged a host line:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains(r"done\n2026-11-28T00:00:00.000000Z ERROR moat"), "{}", run.stderr);
    assert!(
        !run.stderr.contains('\u{1b}'.to_string().as_str()) || !run.stderr.contains("\u{1b}[31m"),
        "{}",
        run.stderr
    );
    let long = app.moat_env(&["call", "probe", "print-flood(1, 60000)"], &[("RUST_LOG", "info")]);
    assert!(
        long.stderr.contains("cut: 60000 bytes, limits.log_line_bytes is 16384"),
        "{}",
        &long.stderr[..long.stderr.len().min(500)]
    );
}
