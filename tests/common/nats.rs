//! A real `nats-server` with JetStream, owned by one test: on a free
//! loopback port, or inside a network namespace the test made.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Host;

pub struct NatsServer {
    /// Where hosts reach it: `127.0.0.1`, or its address in its namespace.
    ip: String,
    port: u16,
    netns: Option<String>,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// On a free loopback port.
    pub fn start() -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        NatsServer::start_at("127.0.0.1", port, None)
    }

    /// Inside network namespace `netns`, listening on all its addresses;
    /// hosts reach it at `ip`.
    pub fn start_in_netns(netns: &str, ip: &str) -> NatsServer {
        NatsServer::start_at(ip, 4222, Some(netns.to_string()))
    }

    fn start_at(ip: &str, port: u16, netns: Option<String>) -> NatsServer {
        let mut server = NatsServer { ip: ip.into(), port, netns, store: tempfile::tempdir().unwrap(), child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.ip, self.port)
    }

    /// Starts it again on the same port and store, and waits until it says
    /// it is ready (it may be in a namespace the test cannot connect into).
    pub fn restart(&mut self) {
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nats-server"]);
                c
            }
            None => Command::new("nats-server"),
        };
        let listen = if self.netns.is_some() { "0.0.0.0" } else { "127.0.0.1" };
        let mut child = command
            .args(["-js", "-a", listen, "-p", &self.port.to_string(), "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server must be installed (it is on this machine's kind)");
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready") {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        let start = Instant::now();
        rx.recv_timeout(Duration::from_secs(10)).expect("nats-server did not start within 10 s");
        if self.netns.is_none() {
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                assert!(start.elapsed() < Duration::from_secs(10), "nats-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until every event any of `hosts` published has been applied on the
/// others: relays caught up, consumers' cursors at the publishers' heads.
pub fn drained(hosts: &[&Host]) {
    let nats = |h: &Host| h.client.status().ok().and_then(|s| s.nats);
    let start = Instant::now();
    loop {
        let heads: BTreeMap<String, i64> = hosts
            .iter()
            .flat_map(|h| nats(h).map(|n| n.relays).unwrap_or_default())
            .map(|r| (r.publisher, r.head))
            .collect();
        let relays_done = hosts.iter().all(|h| nats(h).is_some_and(|n| n.relays.iter().all(|r| r.relayed >= r.head)));
        let consumers_done = hosts.iter().all(|h| {
            nats(h).is_some_and(|n| {
                n.consumers.iter().all(|c| heads.get(&c.publisher).is_none_or(|head| c.cursor >= *head))
            })
        });
        if relays_done && consumers_done {
            return;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let shown: Vec<String> = hosts.iter().map(|h| format!("{:#?}", nats(h))).collect();
            panic!("events did not drain across hosts:\n{}", shown.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
