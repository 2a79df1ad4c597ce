//! `moat dlq COMPONENT [--retry ID | --all]`

use anyhow::{Result, bail};

use super::context::{Context, Exit, Target, settle};
use crate::component::Redrive;
use crate::control::Retried;
use crate::events::{DeadLetter, dead_letters};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  moat dlq order                 # list order's dead letters\n  moat dlq order --retry 3       # handle dead letter 3 again\n  moat dlq order --all"
)]
pub struct Args {
    /// The subscribing component whose dead letters to list or redrive.
    component: String,

    /// Handle this dead letter again (after fixing what made it fail).
    #[arg(long, value_name = "ID", conflicts_with = "all")]
    retry: Option<i64>,

    /// Handle every dead letter again, oldest first.
    #[arg(long)]
    all: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<Exit> {
    let listing = args.retry.is_none() && !args.all;
    let retried = match ctx.target()? {
        Target::Host(host) => {
            if listing {
                print_letters(ctx, &args.component, &host.dead_letters(&args.component)?)?;
                return Ok(Exit::Ok);
            }
            host.retry(&args.component, args.retry)?
        }
        Target::Here(app) => {
            let component = app.require(&args.component)?;
            let letters = dead_letters::list(component)?;
            if listing {
                print_letters(ctx, &args.component, &letters)?;
                return Ok(Exit::Ok);
            }
            let chosen: Vec<i64> = match args.retry {
                Some(id) if letters.iter().any(|l| l.id == id) => vec![id],
                Some(id) => {
                    let ids: Vec<String> = letters.iter().map(|l| l.id.to_string()).collect();
                    bail!(
                        "`{}` has no dead letter {id}; it has: {}",
                        args.component,
                        if ids.is_empty() { "none".to_string() } else { ids.join(", ") }
                    );
                }
                None => letters.iter().map(|l| l.id).collect(),
            };
            let mut retried = Vec::new();
            for id in chosen {
                let outcome = dead_letters::retry(component, id)?;
                retried.push(Retried {
                    id,
                    failed: match &outcome {
                        Redrive::FailedAgain(why) => Some(why.clone()),
                        _ => None,
                    },
                    gone: outcome == Redrive::Gone,
                });
            }
            settle(&app);
            retried
        }
    };
    if ctx.json {
        println!("{}", serde_json::to_string(&retried)?);
    } else {
        for r in &retried {
            match (&r.failed, r.gone) {
                (_, true) => println!("{}: already redriven (by another request)", r.id),
                (None, false) => println!("{}: handled", r.id),
                (Some(why), false) => println!("{}: failed again: {why}", r.id),
            }
        }
    }
    Ok(if retried.iter().any(|r| r.failed.is_some()) { Exit::ReturnedErr } else { Exit::Ok })
}

fn print_letters(ctx: &Context, component: &str, letters: &[DeadLetter]) -> Result<()> {
    if ctx.json {
        println!("{}", serde_json::to_string(letters)?);
    } else if letters.is_empty() {
        println!("no dead letters in `{component}`");
    } else {
        for l in letters {
            println!("{}  {} #{} {}  after {} attempts: {}", l.id, l.publisher, l.seq, l.payload, l.attempts, l.error);
        }
    }
    Ok(())
}
