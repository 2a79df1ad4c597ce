//! `moat describe COMPONENT [FUNCTION]`: the contract a component serves,
//! written with the WIT names of its types, and each type in full
//! (`contract::named`, read from the build itself).

use std::fmt::Write as _;

use anyhow::{Result, bail};

use super::context::{Context, Exit};
use crate::contract::named;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  moat describe order\n  moat describe order place-order")]
pub struct Args {
    /// The component, as named in moat.toml.
    component: String,

    /// Only this function (and the types it uses).
    function: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<Exit> {
    ctx.here_only("describe", "reads the components' files on this machine")?;
    let plan = ctx.plan()?;
    let part = plan.part(&args.component)?;
    let named = named::read(&part.compiled.source, args.function.as_deref())?;
    let found = !named.interfaces.is_empty();
    let mut out = String::new();
    for (name, signatures) in &named.interfaces {
        let _ = writeln!(out, "{name}");
        for signature in signatures {
            let _ = writeln!(out, "  {signature};");
        }
        out.push('\n');
    }
    if !found {
        match &args.function {
            Some(f) => {
                bail!(
                    "`{}` serves no function `{f}`: `moat describe {}` lists what it serves",
                    args.component,
                    args.component
                )
            }
            None => bail!("`{}` serves no contract interface: nothing can call it", args.component),
        }
    }
    if ctx.json {
        let interfaces: Vec<_> = named
            .interfaces
            .iter()
            .map(|(name, functions)| serde_json::json!({ "name": name, "functions": functions }))
            .collect();
        let json = serde_json::json!({ "component": args.component, "interfaces": interfaces, "types": named.types });
        println!("{json}");
        return Ok(Exit::Ok);
    }
    if !named.types.is_empty() {
        let _ = writeln!(out, "types:");
        for definition in &named.types {
            let _ = writeln!(out, "  {definition}");
        }
    }
    print!("{out}");
    Ok(Exit::Ok)
}
