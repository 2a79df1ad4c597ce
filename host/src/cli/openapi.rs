//! `moat openapi`: the HTTP gateway's OpenAPI 3.1 document, without a
//! running host.

use anyhow::Result;

use super::context::{Context, Exit};
use crate::http::{WitDocs, app_name, document};

#[derive(clap::Args)]
#[command(after_help = "Example:\n  moat openapi > openapi.json")]
pub struct Args {}

pub fn run(ctx: &Context, _args: Args) -> Result<Exit> {
    ctx.here_only("openapi", "reads the manifest and the components' files on this machine (a running host serves the same at /openapi.json)")?;
    let plan = ctx.plan()?;
    let contracts: Vec<_> = plan.parts().iter().map(|p| (p.name.clone(), p.contract.clone())).collect();
    let settings = plan.manifest().http.clone().unwrap_or_default();
    let doc = document(&app_name(plan.manifest()), &contracts, &settings, &WitDocs::for_manifest(plan.manifest()));
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(Exit::Ok)
}
