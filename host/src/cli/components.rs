//! `moat components`

use anyhow::Result;
use serde_json::json;

use super::{Context, Exit, shown};
use crate::contract::signature;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(ctx: &Context, _args: Args) -> Result<Exit> {
    let plan = ctx.plan()?;
    let data_dir = ctx.data_dir(plan.manifest());
    let mut listed = Vec::new();
    for part in plan.parts() {
        let version = part.contract.version().map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let db = data_dir.join(format!("{}.db", part.name));
        let imports: Vec<(String, String)> =
            part.grants.iter().map(|(i, g)| (i.name.clone(), g.describe())).collect();
        let exports: Vec<(String, Vec<String>)> = part
            .contract
            .exports
            .iter()
            .map(|e| (e.name.clone(), e.funcs.iter().map(|f| signature(&f.name, &f.ty)).collect()))
            .collect();
        if ctx.json {
            listed.push(json!({
                "name": part.name,
                "version": version,
                "source": part.compiled.source,
                "sha256": part.compiled.digest,
                "database": db,
                "imports": imports.iter().map(|(i, g)| json!({"interface": i, "served_by": g})).collect::<Vec<_>>(),
                "exports": exports.iter().map(|(e, f)| json!({"interface": e, "functions": f})).collect::<Vec<_>>(),
            }));
            continue;
        }
        println!("{}  {version}", part.name);
        println!("  source    {} (sha256 {})", shown(&part.compiled.source), &part.compiled.digest[..12]);
        println!("  database  {}", shown(&db));
        println!("  exports");
        for (name, funcs) in &exports {
            println!("    {}", if name.is_empty() { "(world)" } else { name });
            for f in funcs {
                println!("      {f}");
            }
        }
        println!("  imports");
        for (name, grant) in &imports {
            println!("    {name}  ({grant})");
        }
    }
    if ctx.json {
        println!("{}", serde_json::Value::Array(listed));
    }
    Ok(Exit::Ok)
}
