//! The `moat` command line: global flags here, one file per subcommand.

mod call;
mod components;
mod context;
mod describe;
mod dlq;
mod events;
mod new;
mod openapi;
mod replay;
mod status;
mod swap;
mod up;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::engine;
use context::{Context, Exit};

/// Run microservices as WebAssembly components that own their data.
///
/// Each component gets its own SQLite database and nothing else; components
/// reach each other only through the WIT interfaces they export.
#[derive(Parser)]
#[command(name = "moat", version, max_term_width = 100, after_help = AFTER_HELP)]
pub struct Cli {
    /// The app's manifest.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "MOAT_MANIFEST",
        help_heading = "Global options",
        default_value = "moat.toml"
    )]
    manifest: PathBuf,

    /// The directory holding the components' databases [default: .moat beside the manifest].
    #[arg(long, global = true, value_name = "DIR", env = "MOAT_DATA", help_heading = "Global options")]
    data: Option<PathBuf>,

    /// Where compiled components are cached [default: $XDG_CACHE_HOME/moat or ~/.cache/moat].
    #[arg(long, global = true, value_name = "DIR", env = "MOAT_CACHE_DIR", help_heading = "Global options")]
    cache_dir: Option<PathBuf>,

    /// Compile every component afresh instead of using the compile cache.
    #[arg(long, global = true, help_heading = "Global options")]
    no_cache: bool,

    /// Print results as JSON instead of WAVE and text.
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,

    /// How the host's log is written on stderr: `text`, or `json` (one
    /// object per line, for a log collector).
    #[arg(long, global = true, value_name = "FORMAT", env = "MOAT_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], help_heading = "Global options")]
    log_format: String,

    /// Talk to the moat host at this address [default: the host serving the data directory, if one runs].
    #[arg(long, global = true, value_name = "ADDR", env = "MOAT_HOST", help_heading = "Global options")]
    host: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the app: deliver events continuously and answer the control API on loopback.
    Up(up::Args),
    /// Call a component's exported function, as one unit of work.
    Call(call::Args),
    /// Swap one component to another build while the rest keep running.
    Swap(swap::Args),
    /// Show each component's version, uptime and calls, and each subscription's lag.
    Status(status::Args),
    /// List the app's components: version, database, imports and exports.
    Components(components::Args),
    /// Show the contract a component serves, with its types by their WIT names.
    Describe(describe::Args),
    /// List published events and which subscribers have them.
    Events(events::Args),
    /// List a component's dead letters, or redrive them.
    Dlq(dlq::Args),
    /// Rebuild a subscriber's copy of a publisher's data from the kept events.
    Replay(replay::Args),
    /// Create a new app or component, outside this repository.
    New(new::Args),
    /// Print the HTTP gateway's OpenAPI 3.1 document (what `moat up --http` serves at /openapi.json).
    Openapi(openapi::Args),
    /// Compiles a component to a file, for a moat process that asked (its
    /// compiler runs in a process of its own).
    #[command(name = "__compile", hide = true)]
    Compile { wasm: PathBuf, out: PathBuf },
}

const AFTER_HELP: &str = "\
Examples:
  moat call product 'get-product(\"PROD001\")'
  moat call order place-order --args-json '{\"order-id\": \"ORD1\", \"customer-id\": \"C1\", \"items\": []}'
  moat up --http 127.0.0.1:8080
  moat swap product target/wasm32-wasip2/release/product_v2.wasm

Exit codes: 0 success; 1 the called function returned err (nothing was written);
2 bad input or a failure (the message is on stderr; as JSON with --json).
RUST_LOG=info (or debug) shows the host's log on stderr; NO_COLOR turns its colour off.";

/// Runs `moat` with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Colour only for a person at a terminal who did not say NO_COLOR.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let log = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_format == "json" {
        log.json().with_current_span(false).init();
    } else {
        log.with_ansi(colour).init();
    }
    let json = cli.json;
    // Spans go out while the command runs, and what is queued is flushed
    // when `_traces` drops, after it ends.
    let _traces = match crate::trace::init() {
        Ok(traces) => traces,
        Err(e) => {
            tracing::warn!("not exporting traces: {e:#}");
            None
        }
    };
    let exit = match run(cli) {
        Ok(exit) => exit,
        Err(e) => {
            report(&e, json);
            Exit::Failed
        }
    };
    ExitCode::from(exit as u8)
}

fn run(cli: Cli) -> Result<Exit> {
    let cache_dir = if cli.no_cache { None } else { cli.cache_dir.or_else(engine::default_cache_dir) };
    let ctx = Context { manifest: cli.manifest, data: cli.data, cache_dir, json: cli.json, host: cli.host };
    match cli.command {
        Command::Up(args) => up::run(&ctx, args),
        Command::Swap(args) => swap::run(&ctx, args),
        Command::Status(args) => status::run(&ctx, args),
        Command::Call(args) => call::run(&ctx, args),
        Command::Components(args) => components::run(&ctx, args),
        Command::Describe(args) => describe::run(&ctx, args),
        Command::Events(args) => events::run(&ctx, args),
        Command::Dlq(args) => dlq::run(&ctx, args),
        Command::Replay(args) => replay::run(&ctx, args),
        Command::New(args) => new::run(&ctx, args),
        Command::Openapi(args) => openapi::run(&ctx, args),
        Command::Compile { wasm, out } => {
            engine::Runtime::new(None)?.compile_to(&wasm, &out)?;
            Ok(Exit::Ok)
        }
    }
}

/// Prints an error and its causes, cargo style, or under `--json` as one
/// JSON object on one line: `{"error": MESSAGE, "causes": [...], "exit": 2}`.
fn report(e: &anyhow::Error, json: bool) {
    if json {
        let causes: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
        let object = serde_json::json!({ "error": e.to_string(), "causes": causes, "exit": Exit::Failed as u8 });
        eprintln!("{object}");
        return;
    }
    eprintln!("error: {e}");
    let causes: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
    if !causes.is_empty() {
        eprintln!("\nCaused by:");
        for c in causes {
            for (i, line) in c.lines().enumerate() {
                eprintln!("{}{line}", if i == 0 { "  - " } else { "    " });
            }
        }
    }
}
