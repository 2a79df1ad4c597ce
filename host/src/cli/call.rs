//! `moat call COMPONENT 'FUNCTION(ARGS)'`, or
//! `moat call COMPONENT FUNCTION --args-json '{"name": value}'`

use anyhow::Result;

use super::context::{Context, Exit, Target, opened, settle};
use crate::capability::calls::CallOptions;
use crate::component::returned_err;
use crate::control::client::Client;
use crate::values;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  moat call product 'get-product(\"PROD001\")'\n  moat call product 'catalog.set-price(\"PROD001\", 2799)'\n  moat call order place-order --args-json '{\"order-id\": \"O1\", \"customer-id\": \"C1\", \"items\": []}'\n  moat --json call order 'list-orders()'\n  moat call order 'submit-order(\"O1\")' --request-id submit-O1   # at most once\n\nExit codes: 0 ok; 1 the function returned err (rolled back); 2 bad input or a failure."
)]
pub struct Args {
    /// The component, as named in moat.toml.
    component: String,

    /// The call, in WAVE: FUNCTION(ARGS), for example 'get-product("PROD001")'.
    /// FUNCTION may be qualified by its interface: 'catalog.get-product(...)'.
    /// With --args-json, the function's name alone.
    call: String,

    /// The arguments as a JSON object by name, in the JSON mapping the HTTP
    /// gateway uses: --args-json '{"product-id": "PROD001"}'.
    #[arg(long, value_name = "JSON")]
    args_json: Option<String>,

    /// Neither deliver pending events before the call nor those it published
    /// after it: they wait in the outbox for the next moat run.
    #[arg(long)]
    no_wait: bool,

    /// Run the call at most once under this id: if a call with it committed
    /// before (one that timed out, say), its recorded result is printed and
    /// nothing runs again.
    #[arg(long, value_name = "ID")]
    request_id: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<Exit> {
    if let Some(host) = ctx.remote()? {
        return through(ctx, &host, &args);
    }
    // Everything that can be wrong with the input is found before the data
    // directory is touched.
    let json = parse_json(&args)?;
    let plan = ctx.plan()?;
    let invocation = match &json {
        Some(json) => plan.invocation_json(&args.component, &args.call, json)?,
        None => plan.invocation(&args.component, &args.call)?,
    };
    let app = match opened(plan.open())? {
        Target::Here(app) => app,
        Target::Host(host) => return through(ctx, &host, &args),
    };
    // Deliver anything an earlier run left pending, then the call, then what
    // it published: a script sees a settled app before and after.
    if !args.no_wait {
        settle(&app);
    }
    let trace = crate::trace::incoming(crate::trace::environment().as_deref());
    let options = CallOptions { request: args.request_id.clone(), trace, ..CallOptions::default() };
    let answer = app.invoke_with(&invocation, &options);
    if !args.no_wait && answer.is_ok() {
        settle(&app);
    }
    let answer = answer?;
    if answer.replayed.is_some() {
        replayed(&args);
    }
    let results = answer.results;

    if let Some(result) = results.first() {
        if ctx.json {
            println!("{}", values::result_json(&invocation.function.ty, &results));
        } else {
            println!("{}", values::to_wave(result));
        }
    }
    Ok(if returned_err(&results) { Exit::ReturnedErr } else { Exit::Ok })
}

/// The call, through a running host.
fn through(ctx: &Context, host: &Client, args: &Args) -> Result<Exit> {
    let answer = match parse_json(args)? {
        Some(json) => host.call_json(&args.component, &args.call, json, !args.no_wait, args.request_id.clone())?,
        None => host.call_once(&args.component, &args.call, !args.no_wait, args.request_id.clone())?,
    };
    if answer.replayed {
        replayed(args);
    }
    let shown = if ctx.json { answer.json.map(|j| j.to_string()) } else { answer.wave };
    if let Some(shown) = shown {
        println!("{shown}");
    }
    Ok(if answer.returned_err { Exit::ReturnedErr } else { Exit::Ok })
}

/// `--args-json`, read.
fn parse_json(args: &Args) -> Result<Option<serde_json::Value>> {
    let Some(text) = &args.args_json else { return Ok(None) };
    if args.call.contains('(') {
        anyhow::bail!(
            "with --args-json, name the function alone (`{}`), and give its arguments in the JSON",
            args.call.split('(').next().unwrap_or_default()
        );
    }
    match serde_json::from_str(text) {
        Ok(json @ serde_json::Value::Object(_)) => Ok(Some(json)),
        Ok(_) => anyhow::bail!(
            "--args-json takes a JSON object of the arguments by name, like '{{\"product-id\": \"PROD001\"}}'"
        ),
        Err(e) => anyhow::bail!("--args-json is not JSON: {e}"),
    }
}

/// Says, on stderr, that the result printed is one recorded before.
fn replayed(args: &Args) {
    eprintln!(
        "request id `{}` committed before: this is its recorded result, and nothing ran again",
        args.request_id.as_deref().unwrap_or_default()
    );
}
