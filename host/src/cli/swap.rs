//! `moat swap COMPONENT PATH.wasm` / `moat swap COMPONENT --rollback`

use std::path::PathBuf;

use anyhow::{Result, bail};

use super::context::{Context, Exit, Target};
use crate::app::SwapReport;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  moat swap product target/wasm32-wasip2/guest/product_v2.wasm\n  moat swap product --rollback          # back to the build before the last swap"
)]
pub struct Args {
    /// The component to swap.
    component: String,

    /// The new build (a .wasm component); or --rollback instead.
    #[arg(required_unless_present = "rollback")]
    wasm: Option<PathBuf>,

    /// Go back to the build that served before the last swap.
    #[arg(long, conflicts_with = "wasm")]
    rollback: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<Exit> {
    let wasm = match args.wasm {
        Some(w) => {
            if !w.exists() {
                bail!("{} does not exist: check the path, or build the component first", w.display());
            }
            Some(std::path::absolute(&w)?)
        }
        None => None,
    };
    let report = match ctx.target()? {
        Target::Host(host) => host.swap(&args.component, wasm, args.rollback)?,
        // No host runs: swap in this process; the record in the data
        // directory makes the next start run the new build.
        Target::Here(app) => match wasm {
            Some(w) => app.swap(&args.component, &w)?,
            None => app.rollback(&args.component)?,
        },
    };
    print(ctx, &report)?;
    Ok(Exit::Ok)
}

fn print(ctx: &Context, r: &SwapReport) -> Result<()> {
    if ctx.json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let v = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    if r.unchanged {
        println!(
            "`{}` already runs this build ({} {}): nothing swapped",
            r.component,
            v(&r.from_version),
            &r.from_sha256[..12]
        );
        return Ok(());
    }
    println!(
        "swapped `{}`: {} ({}) -> {} ({}), schema {}",
        r.component,
        v(&r.from_version),
        &r.from_sha256[..12],
        v(&r.to_version),
        &r.to_sha256[..12],
        v(&r.schema)
    );
    println!(
        "  {:.1} ms in all ({}), callers waited {:.1} ms",
        r.total_ms,
        if r.compiled { "compiled" } else { "compile cache warm" },
        r.switch_ms
    );
    Ok(())
}
