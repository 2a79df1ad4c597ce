//! The operator's plane belongs to the operator: the control API answers
//! only the data directory's owner (a socket only they can open, or a token
//! only they can read), the compile cache is trusted only when it is their
//! own, a command finds the host that is there (and ignores one that is
//! gone), and a swap compiles outside the serving host and gives its memory
//! back.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

/// A child process killed when dropped, test failed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Sends a raw HTTP request; the status code.
fn http_status(addr: &str, request: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn the_control_api_answers_only_the_data_directorys_owner() {
    let app = TestApp::shop();
    let host = app.up();
    assert!(host.addr.starts_with("unix:"), "{}", host.addr);
    assert_eq!(mode(&app.data()), 0o700, "the data directory is not its owner's alone");
    assert_eq!(mode(&app.data().join("moat.sock")), 0o600, "the socket is not its owner's alone");
    app.call_ok("product", PROD001);
    drop(host);

    // Over TCP, a request needs the token the host wrote for its owner.
    let mut up = Killed(app.command(&["up", "--listen", "localhost:0"]).stdout(Stdio::piped()).spawn().unwrap());
    let mut line = String::new();
    BufReader::new(up.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split(" at ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let token_file = app.data().join("moat.token");
    assert_eq!(mode(&token_file), 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap();
    let get = |auth: &str| format!("GET /v1/status HTTP/1.1\r\nHost: moat\r\nConnection: close\r\n{auth}\r\n");
    assert_eq!(http_status(&addr, &get("")), 401);
    assert_eq!(http_status(&addr, &get("Authorization: Bearer not-the-token\r\n")), 401);
    assert_eq!(http_status(&addr, &get(&format!("Authorization: Bearer {token}\r\n"))), 200);
    // The CLI reads the token from the data directory.
    let status = app.moat(&["--host", &addr, "status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let elsewhere = tempfile::tempdir().unwrap();
    let refused: Run = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["--manifest"])
        .arg(app.manifest())
        .arg("--data")
        .arg(elsewhere.path())
        .args(["--host", &addr, "status"])
        .env("MOAT_TOKEN", "wrong")
        .output()
        .unwrap()
        .into();
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("token"), "{}", refused.stderr);
    up.0.kill().unwrap();
    up.0.wait().unwrap();
}

#[test]
fn the_compile_cache_is_trusted_only_when_it_is_the_users_own() {
    let app = TestApp::new(&[("probe", "probe")]);
    let cache = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let run = app.moat_env(&["call", "probe", r#"query("SELECT 1")"#], &[("MOAT_CACHE_DIR", cache_dir)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("not using the compile cache") && run.stderr.contains("others can write to it"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0, "moat wrote to a cache others can write");

    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let run = app.moat_env(&["call", "probe", r#"query("SELECT 1")"#], &[("MOAT_CACHE_DIR", cache_dir)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("not using the compile cache"), "{}", run.stderr);
    assert!(std::fs::read_dir(cache.path()).unwrap().count() > 0, "the user's own cache was not used");
}

#[test]
fn a_command_goes_through_a_host_that_came_up_while_it_waited_and_ignores_one_that_is_gone() {
    let app = TestApp::with_manifest(&format!("[components.slow]\npath = {:?}\n", guest("slow_start")));
    // The host holds the data directory while its component migrates (1.5 s)
    // and only then says where it listens.
    let mut up = Killed(app.command(&["up"]).stdout(Stdio::piped()).spawn().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let run = app.moat(&["call", "slow", "ping()"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), r#""pong""#);
    assert!(start.elapsed() < Duration::from_secs(15), "the call waited for the lock instead of the host");
    let mut line = String::new();
    BufReader::new(up.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let status = app.moat(&["--json", "status"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["status"]["components"][0]["calls"], 1, "the call did not go through the host: {status}");
    drop(up);

    // A killed host leaves its address file behind: the lock says it is gone.
    std::fs::write(app.data().join("moat.addr"), "unix:/nonexistent/moat.sock").unwrap();
    let run = app.moat(&["call", "slow", "ping()"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_swap_compiles_outside_the_host_and_rolling_back_gives_its_memory_back() {
    let app = TestApp::shop();
    let host = app.up();
    host.call("product", PROD001).unwrap();
    host.call("order", ORD12345.replace("PROD005", "PROD001").as_str()).unwrap();
    let before = host.rss_kib();
    // An 18 MB component written in Python (componentize-py), loaded as it
    // is: its WASI imports are linked inert.
    let python = guest("py_product");
    let swapped = host.client.swap("product", Some(python), false).unwrap();
    assert_eq!(swapped.to_version.as_deref(), Some("1.1.0"));
    assert!(host.call("product", r#"get-product("PROD001")"#).unwrap().contains("Wireless Mouse"));
    let during = host.rss_kib();
    host.client.swap("product", None, true).unwrap();
    let after = host.rss_kib();
    // Again: what stays after the first round (allocator arenas, type
    // tables) must not grow with every round.
    host.client.swap("product", Some(guest("py_product")), false).unwrap();
    host.client.swap("product", None, true).unwrap();
    let again = host.rss_kib();
    println!(
        "moat up RSS: {before} KiB before the swap, {during} KiB serving the Python build, {after} KiB after rolling back, {again} KiB after a second round"
    );
    assert!(host.call("product", r#"get-product("PROD001")"#).unwrap().contains("Wireless Mouse"));
    assert!(after < before + 64 * 1024, "rolling back kept {} KiB", after.saturating_sub(before));
    assert!(again < after + 16 * 1024, "each round keeps more: {after} KiB, then {again} KiB");
}
