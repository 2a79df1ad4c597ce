//! `moat up [--listen ADDR]`

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, Result};

use super::context::{Context, Exit};
use crate::control::{DEFAULT_LISTEN, server};

#[derive(clap::Args)]
pub struct Args {
    /// Where the control API listens: loopback only. Port 0 picks a free one.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: String,
}

pub fn run(ctx: &Context, args: Args) -> Result<Exit> {
    let listen: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen {}: expected IP:PORT, like {DEFAULT_LISTEN} or 127.0.0.1:0", args.listen))?;
    let app = Arc::new(ctx.plan()?.open_now()?);
    let data_dir = app.data_dir().to_path_buf();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // A host outlives whoever reads its stdout: it never fails on a closed pipe.
    let say = |line: String| {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    runtime.block_on(server::serve(app, listen, |addr| {
        say(format!("moat: serving {} on http://{addr} (Ctrl-C to stop)", data_dir.display()));
    }))?;
    say("moat: stopped".into());
    Ok(Exit::Ok)
}
