//! `moat status`

use anyhow::Result;

use super::context::{Context, Exit, Target, shown};
use crate::app::Status;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  moat status\n  moat --json status\n  moat status --watch")]
pub struct Args {
    /// Keep showing it, refreshed every second, until Ctrl-C (with --json:
    /// one object per line). Needs a running host.
    #[arg(long)]
    watch: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<Exit> {
    let target = ctx.target()?;
    if args.watch {
        let Target::Host(host) = target else {
            anyhow::bail!(
                "`moat status --watch` follows a running host, and none serves this data directory: start one with `moat up`"
            );
        };
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
        // `moat status --watch | head`: end quietly when the reader goes, as
        // other tools that print forever do, rather than fail on the pipe.
        // SAFETY: restores the default action of a signal; no handler runs.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
        loop {
            let status = host.status()?;
            if ctx.json {
                println!("{}", serde_json::json!({ "host": host.addr(), "status": status }));
            } else {
                if terminal {
                    // Clear the screen and go home, so each refresh replaces the last.
                    print!("\x1b[2J\x1b[H");
                }
                print(&status, Some(host.addr()));
                println!();
            }
            std::io::Write::flush(&mut std::io::stdout())?;
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    let (status, host) = match target {
        Target::Host(host) => (host.status()?, Some(host.addr().to_string())),
        Target::Here(app) => (app.status(), None),
    };
    if ctx.json {
        println!("{}", serde_json::to_string(&serde_json::json!({ "host": host, "status": status }))?);
        return Ok(Exit::Ok);
    }
    print(&status, host.as_deref());
    Ok(Exit::Ok)
}

fn print(status: &Status, host: Option<&str>) {
    print_local(status, host);
    if let Some(nats) = &status.nats {
        print_nats(nats);
    }
}

fn print_nats(n: &crate::remote::NatsStatus) {
    println!();
    let state = match (n.connected, n.unreachable_since_ms) {
        (true, _) => format!("connected (round trip {:.1} ms)", n.round_trip_ms.unwrap_or(0.0)),
        (false, Some(since)) => format!("UNREACHABLE for {:.1} s", (crate::ledger::now_ms() - since) as f64 / 1000.0),
        (false, None) => "NOT CONNECTED".into(),
    };
    println!("nats {} as host `{}` of app `{}`: {state}", n.url, n.host, n.namespace);
    for r in &n.remotes {
        let heard = r.last_heard_ms.map_or("never heard".to_string(), |at| {
            format!("last heard {:.1} s ago", (crate::ledger::now_ms() - at) as f64 / 1000.0)
        });
        println!(
            "  remote `{}` on host `{}`: {} ({heard})",
            r.component,
            r.host,
            if r.reachable { "reachable" } else { "UNREACHABLE" }
        );
    }
    match &n.stream {
        Some(s) => println!(
            "  stream {}: {} messages, {} bytes, seq {}..{}",
            n.stream_name, s.messages, s.bytes, s.first_seq, s.last_seq
        ),
        None => println!("  stream {}: cannot be read now", n.stream_name),
    }
    for p in &n.peers {
        println!(
            "  peer: `{}` on host `{}`, version {}, sha256 {}",
            p.component,
            p.host,
            p.version.as_deref().unwrap_or("-"),
            &p.sha256[..12.min(p.sha256.len())]
        );
    }
    for r in &n.relays {
        println!(
            "  relay {} ({}) -> JetStream: #{} of #{} (lag {})",
            r.publisher,
            r.topic,
            r.relayed,
            r.head,
            (r.head - r.relayed).max(0)
        );
    }
    for c in &n.consumers {
        let pending = c.pending.map_or("?".to_string(), |p| p.to_string());
        let latency = match (c.latency_p50_ms, c.latency_p99_ms) {
            (Some(a), Some(b)) => format!(", p50/p99 {a:.2}/{b:.2} ms"),
            _ => String::new(),
        };
        println!(
            "  consumer JetStream -> {} ({} from {}): cursor #{}, {pending} pending{latency}",
            c.subscriber, c.topic, c.publisher, c.cursor
        );
    }
}

fn print_local(status: &Status, host: Option<&str>) {
    match host {
        Some(addr) => println!("data {}  (host at {addr})", shown(&status.data_dir)),
        None => println!("data {}  (no host running: opened here; counts are this process's)", shown(&status.data_dir)),
    }
    println!();
    let mut components =
        table(&["component", "version", "schema", "sha256", "uptime", "calls", "failures", "restarts"], 4);
    for c in &status.components {
        components.add_row(vec![
            c.name.clone(),
            c.version.clone().unwrap_or_else(|| "-".into()),
            c.schema.clone().unwrap_or_else(|| "-".into()),
            c.sha256[..12].to_string(),
            format!("{:.1}s", c.uptime_secs),
            c.calls.to_string(),
            c.failures.to_string(),
            c.restarts.to_string(),
        ]);
    }
    print_table(&components);
    if !status.subscriptions.is_empty() {
        println!();
        let mut routes = table(&["events", "cursor", "head", "lag", "dead letters", "p50/p99 ms", ""], 1);
        for s in &status.subscriptions {
            let sub = &s.subscription;
            let failing = match (s.failing_attempts, &s.last_error) {
                (Some(n), Some(why)) => format!("failing, attempt {n}: {why}"),
                (Some(n), None) => format!("retrying, attempt {n}"),
                (None, Some(why)) => {
                    let ago = s.last_error_ms.map(|at| (crate::ledger::now_ms() - at).max(0) / 1000);
                    match ago {
                        Some(secs) => format!("last failed {secs}s ago: {why}"),
                        None => format!("last failed: {why}"),
                    }
                }
                (None, None) => String::new(),
            };
            let latency = match (s.latency_p50_ms, s.latency_p99_ms) {
                (Some(a), Some(b)) => format!("{a:.2}/{b:.2}"),
                _ => "-".into(),
            };
            routes.add_row(vec![
                format!("{} -> {} ({})", sub.publisher, sub.subscriber, sub.topic),
                s.cursor.to_string(),
                s.head.to_string(),
                match (s.head - s.cursor).max(0) {
                    0 => "0".to_string(),
                    n => match s.lag_seconds {
                        Some(secs) => format!("{n} ({secs:.1} s)"),
                        None => n.to_string(),
                    },
                },
                s.dead_letters.map_or("-".into(), |n| n.to_string()),
                latency,
                failing,
            ]);
        }
        print_table(&routes);
    }
}

fn print_table(table: &comfy_table::Table) {
    for line in table.to_string().lines() {
        println!("{}", line.trim_end());
    }
}

/// A table sized to its content, without borders; the columns from
/// `numbers_from` on (but the last, free text) are right-aligned numbers.
fn table(header: &[&str], numbers_from: usize) -> comfy_table::Table {
    use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    let last = header.len() - 1;
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if i >= numbers_from && (i < last || !header[last].is_empty()) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}
