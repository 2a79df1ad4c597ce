//! Helpers shared by the integration tests: a throwaway app directory with a
//! manifest, the `moat` binary, the library, and a look inside the databases.

#![allow(dead_code, reason = "each test module uses a different subset")]

pub mod checks;
pub mod nats;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use moat::control::client::Client;
use moat::{App, Manifest, Plan, Runtime};
use tempfile::TempDir;

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// A built component, by crate name. Components are built by `make`, not by
/// the tests, so a missing one says how to build it.
pub fn guest(name: &str) -> PathBuf {
    let path = target_dir().join("wasm32-wasip2/guest").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing: run `make test-components` (or `make test`)", path.display());
    path.canonicalize().unwrap()
}

/// The compile cache the tests share, so each component compiles once per run.
pub fn cache_dir() -> PathBuf {
    target_dir().join("moat-test-cache")
}

/// A throwaway app: a directory with a `moat.toml` and a data directory.
pub struct TestApp {
    pub dir: TempDir,
}

impl TestApp {
    /// An app of the given components: `(name, crate)` pairs.
    pub fn new(components: &[(&str, &str)]) -> TestApp {
        let mut toml = String::new();
        for (name, krate) in components {
            toml.push_str(&format!("[components.{name}]\npath = {:?}\n\n", guest(krate)));
        }
        TestApp::with_manifest(&toml)
    }

    /// The shop: product and order.
    pub fn shop() -> TestApp {
        TestApp::new(&[("product", "product"), ("order", "order")])
    }

    /// An app with this manifest text.
    pub fn with_manifest(toml: &str) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("moat.toml"), toml).unwrap();
        TestApp { dir }
    }

    pub fn manifest(&self) -> PathBuf {
        self.dir.path().join("moat.toml")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs the `moat` binary against this app.
    pub fn moat(&self, args: &[&str]) -> Run {
        self.moat_env(args, &[])
    }

    /// Runs the `moat` binary against this app with extra environment.
    pub fn moat_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        Run::from(cmd.output().unwrap())
    }

    /// The `moat` command against this app, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
        cmd.arg("--manifest").arg(self.manifest()).arg("--data").arg(self.data()).args(args);
        cmd.env("MOAT_CACHE_DIR", cache_dir()).env_remove("RUST_LOG").env_remove("MOAT_TOKEN");
        cmd
    }

    /// `moat call COMPONENT CALL`, which must succeed; returns stdout.
    pub fn call_ok(&self, component: &str, call: &str) -> String {
        let run = self.moat(&["call", component, call]);
        assert_eq!(run.code, 0, "moat call {component} {call}\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
        run.stdout.trim().to_string()
    }

    /// Loads the app in-process with the library.
    pub fn open(&self) -> App {
        self.plan().open().unwrap()
    }

    /// Compiles and checks the app without opening its data.
    pub fn plan(&self) -> Plan {
        self.try_plan().unwrap()
    }

    pub fn try_plan(&self) -> anyhow::Result<Plan> {
        Plan::new(Manifest::load(&self.manifest())?, Runtime::new(Some(cache_dir()))?, &self.data())
    }

    /// A read-only connection to a component's database.
    pub fn db(&self, component: &str) -> rusqlite::Connection {
        let path = self.data().join(format!("{component}.db"));
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
    }

    /// Whether the data directory has anything in it.
    pub fn data_is_untouched(&self) -> bool {
        !self.data().exists() || std::fs::read_dir(self.data()).unwrap().next().is_none()
    }
}

impl TestApp {
    /// Starts `moat up` on a free loopback port and waits until it serves.
    pub fn up(&self) -> Host {
        Host::start(&self.manifest(), &self.data())
    }
}

impl Host {
    /// Starts `moat up` for a manifest and data directory.
    pub fn start(manifest: &Path, data: &Path) -> Host {
        Host::start_with(manifest, data, &[], false).0
    }

    /// Starts `moat up ARGS...` (`--http 127.0.0.1:0`, say).
    pub fn start_args(manifest: &Path, data: &Path, args: &[&str]) -> Host {
        Host::spawn_up(Command::new(env!("CARGO_BIN_EXE_moat")), manifest, data, &[], false, args).0
    }

    /// Starts `moat up` with extra environment; with `log`, its stderr (the
    /// log) comes back line by line, as it is written.
    pub fn start_with(
        manifest: &Path,
        data: &Path,
        env: &[(&str, &str)],
        log: bool,
    ) -> (Host, Option<std::sync::mpsc::Receiver<String>>) {
        Host::spawn(Command::new(env!("CARGO_BIN_EXE_moat")), manifest, data, env, log)
    }

    fn spawn(
        command: Command,
        manifest: &Path,
        data: &Path,
        env: &[(&str, &str)],
        log: bool,
    ) -> (Host, Option<std::sync::mpsc::Receiver<String>>) {
        Host::spawn_up(command, manifest, data, env, log, &[])
    }

    /// Starts `moat up` inside a network namespace (`ip netns exec`, which
    /// execs it: the child is the host itself).
    pub fn start_in_netns(netns: &str, manifest: &Path, data: &Path) -> Host {
        let mut ip = Command::new("ip");
        ip.args(["netns", "exec", netns, env!("CARGO_BIN_EXE_moat")]);
        Host::spawn(ip, manifest, data, &[], false).0
    }

    fn spawn_up(
        mut command: Command,
        manifest: &Path,
        data: &Path,
        env: &[(&str, &str)],
        log: bool,
        args: &[&str],
    ) -> (Host, Option<std::sync::mpsc::Receiver<String>>) {
        let mut child = command
            .arg("--manifest")
            .arg(manifest)
            .arg("--data")
            .arg(data)
            .arg("up")
            .args(args)
            .env("MOAT_CACHE_DIR", cache_dir())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(if log { Stdio::piped() } else { Stdio::inherit() })
            .spawn()
            .unwrap();
        let lines = child.stderr.take().map(|stderr| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .split(" at ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("moat up did not say where it listens: {line:?}"))
            .to_string();
        // `...; HTTP gateway at http://IP:PORT`, if it serves one.
        let http = line
            .split("HTTP gateway at http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string);
        (Host { client: Client::new(&addr, moat::data_dir::token(data)), addr, http, child }, lines)
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the host with SIGKILL and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The host's resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

/// A running `moat up`, stopped (SIGKILL) when dropped if not stopped before.
pub struct Host {
    pub addr: String,
    /// The HTTP gateway's address (`127.0.0.1:PORT`), if it serves one.
    pub http: Option<String>,
    pub client: Client,
    child: Child,
}

impl Host {
    /// Sends a signal to the host process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Stops the host with SIGTERM and returns its exit code.
    pub fn stop(mut self) -> i32 {
        self.signal(libc::SIGTERM);
        self.child.wait().unwrap().code().unwrap_or(-1)
    }

    /// Stops the host with SIGTERM; its exit code and how long it took to exit.
    pub fn stop_timed(mut self) -> (i32, std::time::Duration) {
        let start = std::time::Instant::now();
        self.signal(libc::SIGTERM);
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        (code, start.elapsed())
    }

    /// Calls through the control API, waiting for the events it publishes;
    /// returns the result in WAVE.
    pub fn call(&self, component: &str, call: &str) -> anyhow::Result<String> {
        Ok(self.client.call(component, call, true)?.wave.unwrap_or_default())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a run of `moat` did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Calls a function written in WAVE and returns the result in WAVE.
pub fn call(app: &App, component: &str, wave: &str) -> anyhow::Result<String> {
    let results = app.call_wave(component, wave)?;
    Ok(results.first().map(moat::values::to_wave).unwrap_or_default())
}

/// The component's own tables in a database (SQLite's and the host's
/// `_moat_*` left out), sorted.
pub fn tables(db: &rusqlite::Connection) -> Vec<String> {
    let mut stmt = db
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite%' AND substr(name, 1, 6) != '_moat_' ORDER BY name",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// The number of rows in a table.
pub fn count(db: &rusqlite::Connection, table: &str) -> i64 {
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

/// Everything in a component's database: its schema and every row of every
/// table, the host's included, for comparing before and after.
pub fn snapshot(app: &TestApp, component: &str) -> Vec<String> {
    let db = app.db(component);
    let column = |sql: &str| -> Vec<String> {
        db.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let mut out = column("SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master ORDER BY name");
    for t in column("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") {
        out.extend(dump(&db, &t).into_iter().map(|row| format!("{t}: {row}")));
    }
    out
}

/// Every row of a table as text, for comparing before and after.
pub fn dump(db: &rusqlite::Connection, table: &str) -> Vec<String> {
    let mut stmt = db.prepare(&format!("SELECT * FROM {table} ORDER BY 1")).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| Ok((0..n).map(|i| show(r.get_ref(i).unwrap())).collect::<Vec<_>>().join("|")))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn show(v: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => format!("blob{b:?}"),
    }
}

/// The shop's seed calls, as in the demo.
pub const PROD001: &str = r#"create-product({product-id: "PROD001", name: "Wireless Mouse", price: 2599, stock: 150})"#;
pub const PROD005: &str =
    r#"create-product({product-id: "PROD005", name: "Mechanical Keyboard", price: 7999, stock: 40})"#;
pub const ORD12345: &str = r#"place-order("ORD12345", "CUST987", [{product-id: "PROD001", quantity: 2}, {product-id: "PROD005", quantity: 1}])"#;
