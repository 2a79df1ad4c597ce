//! `moat events [--component C] [--follow]`

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use super::context::{Context, Exit};
use wasmtime::component::Val;
use wasmtime::component::types::Type;

use crate::capability::publish::PUBLISH;
use crate::data_dir::db_path;
use crate::events::history::{self, Published};
use crate::values;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  moat events\n  moat events --component product --last 10\n  moat --json events --follow"
)]
pub struct Args {
    /// Only the events this component published.
    #[arg(long, value_name = "COMPONENT")]
    component: Option<String>,

    /// After listing, keep printing events as they are published (Ctrl-C to stop).
    #[arg(long)]
    follow: bool,

    /// List at most this many events per publisher: the latest ones.
    #[arg(long, default_value_t = 100, value_name = "N")]
    last: usize,
}

pub fn run(ctx: &Context, args: Args) -> Result<Exit> {
    // Read-only and lock-free: works beside a running host.
    ctx.here_only("events", "reads the outboxes in this machine's data directory")?;
    let plan = ctx.plan()?;
    let data_dir = plan.data_dir().to_path_buf();
    let subscriptions = plan.subscriptions().to_vec();
    let mut publishers: Vec<String> = subscriptions.iter().map(|s| s.publisher.clone()).collect();
    for part in plan.parts() {
        if part.grants.iter().any(|(_, g)| matches!(g, crate::capability::Grant::Publish { .. })) {
            publishers.push(part.name.clone());
        }
    }
    publishers.sort();
    publishers.dedup();
    if let Some(only) = &args.component {
        plan.part(only)?;
        publishers.retain(|p| p == only);
    }
    let db = |name: &str| db_path(&data_dir, name);

    let mut seen: BTreeMap<String, i64> = BTreeMap::new();
    let mut listed = Vec::new();
    for publisher in &publishers {
        let all = history::read(&db, &subscriptions, publisher, 0, u32::MAX)?;
        let skip = all.len().saturating_sub(args.last);
        seen.insert(publisher.clone(), all.last().map_or(0, |e| e.seq));
        listed.extend(all.into_iter().skip(skip));
    }
    // Payloads as JSON, read with the type each publisher publishes.
    let types: BTreeMap<(String, String), Type> = plan
        .parts()
        .iter()
        .flat_map(|p| {
            p.contract.imports.iter().filter(|i| i.id.interface == PUBLISH).filter_map(|i| {
                let ty = i.funcs.iter().find(|f| f.name == PUBLISH)?.ty.params().next()?.1;
                Some(((p.name.clone(), i.id.package.clone()), ty))
            })
        })
        .collect();
    let json = |e: &Published| -> serde_json::Value {
        let mut out = serde_json::to_value(e).unwrap_or_default();
        let payload = types
            .get(&(e.publisher.clone(), e.topic.clone()))
            .and_then(|ty| wasm_wave::from_str::<Val>(ty, &e.payload).ok().map(|v| values::json::to_json(ty, &v)));
        if let Some(payload) = payload {
            out["payload"] = payload;
        }
        out
    };
    if ctx.json && !args.follow {
        println!("{}", serde_json::Value::Array(listed.iter().map(json).collect()));
        return Ok(Exit::Ok);
    }
    if listed.is_empty() && !args.follow {
        println!("no events yet");
    }
    for event in &listed {
        print(ctx, event, &json)?;
    }
    if !args.follow {
        return Ok(Exit::Ok);
    }
    // Until Ctrl-C.
    loop {
        std::thread::sleep(Duration::from_millis(250));
        for publisher in &publishers {
            let after = seen[publisher];
            for event in history::read(&db, &subscriptions, publisher, after, 1000)? {
                seen.insert(publisher.clone(), event.seq);
                print(ctx, &event, &json)?;
            }
        }
    }
}

fn print(ctx: &Context, e: &Published, json: &impl Fn(&Published) -> serde_json::Value) -> Result<()> {
    if ctx.json {
        println!("{}", json(e));
        return Ok(());
    }
    let delivery: Vec<String> = e.delivery.iter().map(|(s, d)| format!("{s}: {}", d.word())).collect();
    let delivery = if delivery.is_empty() { "no subscribers".to_string() } else { delivery.join(", ") };
    println!("{} #{} {} {}  [{}]", e.publisher, e.seq, e.topic, e.payload, delivery);
    Ok(())
}
