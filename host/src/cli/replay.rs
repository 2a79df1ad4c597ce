//! `moat replay COMPONENT --from PUBLISHER`

use anyhow::{Result, bail};

use super::context::{Context, Exit, Target, settle};
use crate::control::Replayed;

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  moat replay order --from product   # rebuild order's copy of product's data from the kept events"
)]
pub struct Args {
    /// The subscribing component whose copy to rebuild.
    component: String,

    /// The publishing component whose kept events to deliver again.
    #[arg(long, value_name = "PUBLISHER")]
    from: String,
}

pub fn run(ctx: &Context, args: Args) -> Result<Exit> {
    let replays = match ctx.target()? {
        Target::Host(host) => host.replay(&args.component, &args.from)?,
        Target::Here(app) => {
            app.require(&args.component)?;
            app.require(&args.from)?;
            let replays = app.events().replay(&args.component, &args.from)?;
            if replays.is_empty() {
                bail!("`{}` does not handle events `{}` publishes", args.component, args.from);
            }
            settle(&app);
            replays
                .into_iter()
                .map(|(sub, from_seq, pruned_through)| Replayed { topic: sub.topic, from_seq, pruned_through })
                .collect()
        }
    };
    if ctx.json {
        println!("{}", serde_json::to_string(&replays)?);
        return Ok(Exit::Ok);
    }
    for r in &replays {
        match r.pruned_through {
            Some(p) => println!(
                "replaying {} events to `{}` from #{}; #{p} and earlier were pruned after the retention window",
                r.topic, args.component, r.from_seq
            ),
            None => println!("replaying {} events to `{}` from #{}", r.topic, args.component, r.from_seq),
        }
    }
    Ok(Exit::Ok)
}
