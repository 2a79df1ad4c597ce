//! `moat dlq COMPONENT [--retry ID | --all]`

use anyhow::{Result, bail};

use super::{Context, Exit, settle};
use crate::events::dead_letters;

#[derive(clap::Args)]
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
    if let Some(host) = ctx.remote()? {
        if args.retry.is_none() && !args.all {
            print_letters(ctx, &args.component, &host.dead_letters(&args.component)?)?;
            return Ok(Exit::Ok);
        }
        let retried = host.retry(&args.component, args.retry)?;
        for r in &retried {
            match &r.failed {
                None => println!("{}: handled", r.id),
                Some(why) => println!("{}: failed again: {why}", r.id),
            }
        }
        return Ok(if retried.iter().any(|r| r.failed.is_some()) { Exit::ReturnedErr } else { Exit::Ok });
    }
    let app = ctx.open()?;
    let component = app.require(&args.component)?;
    let letters = dead_letters::list(component)?;

    if args.retry.is_none() && !args.all {
        print_letters(ctx, &args.component, &letters)?;
        return Ok(Exit::Ok);
    }

    let chosen: Vec<_> = match args.retry {
        Some(id) => match letters.iter().find(|l| l.id == id) {
            Some(l) => vec![l.clone()],
            None => {
                let ids: Vec<String> = letters.iter().map(|l| l.id.to_string()).collect();
                bail!(
                    "`{}` has no dead letter {id}; it has: {}",
                    args.component,
                    if ids.is_empty() { "none".to_string() } else { ids.join(", ") }
                );
            }
        },
        None => letters,
    };
    let mut failed = 0;
    for letter in &chosen {
        match dead_letters::retry(component, letter)? {
            Ok(()) => println!("{}: handled", letter.id),
            Err(why) => {
                failed += 1;
                println!("{}: failed again: {why}", letter.id);
            }
        }
    }
    settle(&app)?;
    Ok(if failed > 0 { Exit::ReturnedErr } else { Exit::Ok })
}

fn print_letters(ctx: &Context, component: &str, letters: &[dead_letters::DeadLetter]) -> Result<()> {
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
