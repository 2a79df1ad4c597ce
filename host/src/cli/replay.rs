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
    let app = ctx.open()?;
    app.require(&args.component)?;
    app.require(&args.from)?;
    let replays = app.events().replay(&args.component, &args.from)?;
    if replays.is_empty() {
        bail!("`{}` does not handle events `{}` publishes", args.component, args.from);
    }
    for (sub, from, pruned) in &replays {
        match pruned {
            Some(p) => println!(
                "replaying {} events to `{}` from #{from}; #{p} and earlier were pruned after the retention window",
                sub.topic, sub.subscriber
            ),
            None => println!("replaying {} events to `{}` from #{from}", sub.topic, sub.subscriber),
        }
    }
    settle(&app)?;
    Ok(Exit::Ok)
}
