//! `moat up [--listen ADDR] [--http ADDR]`

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use anyhow::{Result, bail};

use super::context::{Context, Exit};
use crate::control::server::{self, Listen};
use crate::http::Gateway;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  moat up                                # control API on moat.sock in the data directory\n  moat up --http 127.0.0.1:8080          # and every contract over HTTP with JSON\n  moat up --listen 127.0.0.1:7311        # control API over TCP (token in moat.token)\n\nWhile it runs, moat call, swap, status, dlq and replay go through it. Ctrl-C or SIGTERM stops it."
)]
pub struct Args {
    /// Where the control API listens [default: the socket moat.sock in the
    /// data directory, which only its owner can use]. `unix:PATH` for another
    /// socket; `127.0.0.1:PORT` (loopback only; port 0 picks a free one) for
    /// TCP, where requests must carry the token the host writes to
    /// moat.token in the data directory.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,

    /// Serve every contract function over HTTP with JSON at this address
    /// (`127.0.0.1:8080`; port 0 picks a free one), with its OpenAPI
    /// description at /openapi.json. An `[http]` table in moat.toml serves
    /// it too, at its `listen` address.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<Exit> {
    ctx.here_only("up", "starts a host here (--listen says where it listens)")?;
    if ctx.json {
        anyhow::bail!(
            "`moat up` prints no data to format: drop --json (`moat --json status` reports on a running host)"
        );
    }
    let listen = match args.listen.as_deref() {
        None => Listen::Socket,
        Some(addr) => match addr.strip_prefix("unix:") {
            Some(path) => Listen::Unix(path.into()),
            None => Listen::Tcp(resolve(addr)?),
        },
    };
    let http = match args.http.as_deref() {
        Some(addr) => Some(addr.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| {
            anyhow::anyhow!("--http {addr}: expected HOST:PORT, like 127.0.0.1:8080 (port 0 picks a free one)")
        })?),
        None => None,
    };
    let app = Arc::new(ctx.plan()?.open_now()?);
    let settings = app.manifest().http.clone();
    let data_dir = app.data_dir().to_path_buf();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // A host outlives whoever reads its stdout: it never fails on a closed pipe.
    let say = |line: String| {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    runtime.block_on(async {
        let gateway = match (http, settings) {
            (None, None) => None,
            (addr, settings) => Some(Gateway::bind(app.clone(), &settings.unwrap_or_default(), addr).await?),
        };
        let gateway_addr = gateway.as_ref().map(Gateway::local_addr).transpose()?;
        server::serve(app, listen, gateway, |addr| {
            let http = gateway_addr.map(|a| format!("; HTTP gateway at http://{a}")).unwrap_or_default();
            say(format!("moat: serving {} at {addr} (Ctrl-C to stop){http}", data_dir.display()));
        })
        .await
    })?;
    say("moat: stopped".into());
    Ok(Exit::Ok)
}

/// `127.0.0.1:0`, `[::1]:7311` or `localhost:0`, as one loopback address.
fn resolve(addr: &str) -> Result<SocketAddr> {
    let Ok(mut all) = addr.to_socket_addrs() else {
        bail!("--listen {addr}: expected unix:PATH or HOST:PORT on loopback, like 127.0.0.1:0 or localhost:7311");
    };
    match all.find(|a| a.ip().is_loopback()) {
        Some(a) => Ok(a),
        None => {
            bail!("--listen {addr}: the control API serves on loopback only, like 127.0.0.1:PORT or localhost:PORT")
        }
    }
}
