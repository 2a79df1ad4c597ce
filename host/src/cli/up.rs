//! `moat up [--listen ADDR]`

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use anyhow::{Result, bail};

use super::context::{Context, Exit};
use crate::control::server::{self, Listen};

#[derive(clap::Args)]
pub struct Args {
    /// Where the control API listens [default: the socket moat.sock in the
    /// data directory, which only its owner can use]. `unix:PATH` for another
    /// socket; `127.0.0.1:PORT` (loopback only; port 0 picks a free one) for
    /// TCP, where requests must carry the token the host writes to
    /// moat.token in the data directory.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<Exit> {
    let listen = match args.listen.as_deref() {
        None => Listen::Socket,
        Some(addr) => match addr.strip_prefix("unix:") {
            Some(path) => Listen::Unix(path.into()),
            None => Listen::Tcp(resolve(addr)?),
        },
    };
    let app = Arc::new(ctx.plan()?.open_now()?);
    let data_dir = app.data_dir().to_path_buf();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // A host outlives whoever reads its stdout: it never fails on a closed pipe.
    let say = |line: String| {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    runtime.block_on(server::serve(app, listen, |addr| {
        say(format!("moat: serving {} at {addr} (Ctrl-C to stop)", data_dir.display()));
    }))?;
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
