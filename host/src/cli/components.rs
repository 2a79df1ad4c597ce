//! `moat components`

use anyhow::Result;
use serde_json::json;

use super::context::{Context, Exit, shown};
use crate::capability::Grants;
use crate::contract::signature;
use crate::data_dir::db_path;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  moat components\n  moat --json components")]
pub struct Args {}

pub fn run(ctx: &Context, _args: Args) -> Result<Exit> {
    ctx.here_only("components", "reads the manifest and the components' files on this machine")?;
    let plan = ctx.plan()?;
    let data_dir = plan.data_dir().to_path_buf();
    let mut listed = Vec::new();
    for part in plan.parts() {
        let version = part.contract.version().map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let db = db_path(&data_dir, &part.name);
        let imports: Vec<(String, String)> = part.grants.iter().map(|(i, g)| (i.name.clone(), g.describe())).collect();
        // Only contract interfaces: what anyone may call. Written with the
        // WIT type names the build carries, or by structure if it cannot
        // be read that way.
        let named = crate::contract::named::read(&part.compiled.source, None).ok();
        let exports: Vec<(String, Vec<String>)> = part
            .contract
            .public_exports()
            .map(|e| {
                let by_name = named.as_ref().and_then(|n| n.interfaces.iter().find(|(i, _)| *i == e.name));
                match by_name {
                    Some((_, signatures)) => (e.name.clone(), signatures.clone()),
                    None => (e.name.clone(), e.funcs.iter().map(|f| signature(&f.name, &f.ty)).collect()),
                }
            })
            .collect();
        let owns: Vec<&str> =
            plan.owners().iter().filter(|(_, owner)| **owner == part.name).map(|(p, _)| p.as_str()).collect();
        let hears: Vec<String> = plan
            .subscriptions()
            .iter()
            .filter(|s| s.subscriber == part.name)
            .map(|s| format!("{} events from `{}`", s.topic, s.publisher))
            .collect();
        if ctx.json {
            listed.push(json!({
                "name": part.name,
                "version": version,
                "host": part.remote,
                "source": part.compiled.source,
                "sha256": part.compiled.digest,
                "database": db,
                "owns": owns,
                "subscribes": plan.subscriptions().iter().filter(|s| s.subscriber == part.name).collect::<Vec<_>>(),
                "imports": imports.iter().map(|(i, g)| json!({"interface": i, "served_by": g})).collect::<Vec<_>>(),
                "exports": exports.iter().map(|(e, f)| json!({"interface": e, "functions": f})).collect::<Vec<_>>(),
            }));
            continue;
        }
        match &part.remote {
            Some(host) => println!("{}  {version}  (runs on host `{host}`, reached through NATS)", part.name),
            None => println!("{}  {version}", part.name),
        }
        println!("  source    {} (sha256 {})", shown(&part.compiled.source), &part.compiled.digest[..12]);
        println!("  database  {}", shown(&db));
        if !owns.is_empty() {
            println!("  owns      {} (serves its contract, publishes its events)", owns.join(", "));
        }
        for h in &hears {
            println!("  hears     {h}");
        }
        println!("  exports");
        for (name, funcs) in &exports {
            println!("    {name}");
            for f in funcs {
                println!("      {f}");
            }
        }
        println!("  imports");
        for (package, interfaces, grant) in grouped(&part.grants) {
            println!("    {package}  {{{}}}  ({grant})", interfaces.join(", "));
        }
    }
    if ctx.json {
        println!("{}", serde_json::Value::Array(listed));
    }
    Ok(Exit::Ok)
}

/// Imports grouped by package, version and grant, for reading:
/// `wasi:cli@0.2.6 {environment, exit, stdin}`.
fn grouped(grants: &Grants) -> Vec<(String, Vec<String>, String)> {
    let mut groups: Vec<(String, Vec<String>, String)> = Vec::new();
    for (import, grant) in grants {
        let version = import.id.version.as_ref().map(|v| format!("@{v}")).unwrap_or_default();
        let package = format!("{}{version}", import.id.package);
        let grant = grant.describe();
        match groups.iter_mut().find(|(p, _, g)| *p == package && *g == grant) {
            Some((_, interfaces, _)) => interfaces.push(import.id.interface.clone()),
            None => groups.push((package, vec![import.id.interface.clone()], grant)),
        }
    }
    groups
}
