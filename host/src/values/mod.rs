//! Values at the edge: reading a call written in WAVE (the value syntax of
//! `wasmtime run --invoke`) against a function's type, and writing results as
//! WAVE; `json`, the one JSON mapping of every WIT type.

pub mod json;

use anyhow::{Result, anyhow, bail};
use serde_json::Value as Json;
use wasm_wave::untyped::UntypedFuncCall;
use wasmtime::component::Val;
use wasmtime::component::types::ComponentFunc;

use crate::contract;

/// Longest call text accepted on the command line.
pub const MAX_CALL_LEN: usize = 1 << 20;

/// Splits `name(args)` into the function name and the text from `(` on.
pub fn split_call(call: &str) -> Result<(&str, &str)> {
    if call.len() > MAX_CALL_LEN {
        bail!("the call is {} bytes long; the limit is {MAX_CALL_LEN}", call.len());
    }
    let call = call.trim();
    let Some(open) = call.find('(') else {
        bail!("`{call}` is not a call: write it as FUNCTION(ARGS) in WAVE, for example 'get-product(\"PROD001\")'");
    };
    let name = call[..open].trim();
    if name.is_empty() {
        bail!("`{call}` names no function: write it as FUNCTION(ARGS)");
    }
    Ok((name, &call[open..]))
}

/// Reads the arguments `args` (the text from `(` on) against `ty`'s
/// parameters.
pub fn parse_args(func_name: &str, args: &str, ty: &ComponentFunc) -> Result<Vec<Val>> {
    // The WAVE parser reads `name(args)` with a plain name; the user's name
    // may be qualified (`catalog.get-product`), so give it a stand-in.
    let source = format!("f{args}");
    let signature = contract::signature(func_name, ty);
    let point = |span: std::ops::Range<usize>| -> String {
        let (start, end) = (span.start.saturating_sub(1), span.end.saturating_sub(1).max(span.start));
        let shown = args.get(..200).unwrap_or(args);
        let caret = " ".repeat(start.min(shown.len())) + &"^".repeat((end - start).clamp(1, 40));
        format!("\n  {func_name}{shown}\n  {}{caret}", " ".repeat(func_name.len()))
    };
    let call = UntypedFuncCall::parse(&source).map_err(|e| {
        anyhow!("cannot read the arguments as WAVE: {}{}\n  expected: {signature}", detail(&e), point(e.span()))
    })?;
    let types: Vec<_> = ty.params().map(|(_, t)| t).collect();
    call.to_wasm_params::<Val>(types.iter()).map_err(|e| {
        anyhow!("the arguments do not fit `{func_name}`: {}{}\n  expected: {signature}", detail(&e), point(e.span()))
    })
}

fn detail(e: &wasm_wave::parser::ParserError) -> String {
    match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.kind().to_string(),
    }
}

/// A value in WAVE.
pub fn to_wave(val: &Val) -> String {
    wasm_wave::to_string(val).unwrap_or_else(|e| format!("<unprintable: {e}>"))
}

/// A function's result as JSON (`json`), or `null` if it returns nothing.
pub fn result_json(func: &ComponentFunc, results: &[Val]) -> Json {
    match (func.results().next(), results.first()) {
        (Some(ty), Some(val)) => json::to_json(&ty, val),
        _ => Json::Null,
    }
}
