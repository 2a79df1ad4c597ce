//! `moat replay COMPONENT --from PUBLISHER`

use anyhow::{Result, bail};

use super::{Context, Exit, settle};

#[derive(clap::Args)]
pub struct Args {
    /// The subscribing component whose copy to rebuild.
    component: String,

    /// The publishing component whose kept events to deliver again.
    #[arg(long, value_name = "PUBLISHER")]
    from: String,
}

pub fn run(ctx: &Context, args: Args) -> Result<Exit> {
    if let Some(host) = ctx.remote()? {
        for r in host.replay(&args.component, &args.from)? {
            print(&r.topic, &args.component, r.from_seq, r.pruned_through);
        }
        return Ok(Exit::Ok);
    }
    let app = ctx.open()?;
    app.require(&args.component)?;
    app.require(&args.from)?;
    let replays = app.events().replay(&args.component, &args.from)?;
    if replays.is_empty() {
        bail!("`{}` does not handle events `{}` publishes", args.component, args.from);
    }
    for (sub, from, pruned) in &replays {
        print(&sub.topic, &sub.subscriber, *from, *pruned);
    }
    settle(&app)?;
    Ok(Exit::Ok)
}

fn print(topic: &str, subscriber: &str, from: i64, pruned: Option<i64>) {
    match pruned {
        Some(p) => println!(
            "replaying {topic} events to `{subscriber}` from #{from}; #{p} and earlier were pruned after the retention window"
        ),
        None => println!("replaying {topic} events to `{subscriber}` from #{from}"),
    }
}
