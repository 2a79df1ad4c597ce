//! Values at the edge: reading a call written in WAVE (the value syntax of
//! `wasmtime run --invoke`) against a function's type, and writing results as
//! WAVE or JSON.

use anyhow::{Result, anyhow, bail};
use serde_json::{Map, Number, Value as Json};
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

/// A value as JSON: records are objects, variants `{"case": payload}` (or
/// the case name alone), options `null` or the value, results
/// `{"ok": ...}` / `{"err": ...}`, flags a list of names.
pub fn to_json(val: &Val) -> Json {
    match val {
        Val::Bool(b) => Json::Bool(*b),
        Val::S8(n) => Json::from(*n),
        Val::U8(n) => Json::from(*n),
        Val::S16(n) => Json::from(*n),
        Val::U16(n) => Json::from(*n),
        Val::S32(n) => Json::from(*n),
        Val::U32(n) => Json::from(*n),
        Val::S64(n) => Json::from(*n),
        Val::U64(n) => Json::from(*n),
        Val::Float32(f) => Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number),
        Val::Float64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Val::Char(c) => Json::String(c.to_string()),
        Val::String(s) => Json::String(s.clone()),
        Val::List(items) | Val::Tuple(items) => Json::Array(items.iter().map(to_json).collect()),
        Val::Record(fields) => Json::Object(fields.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        Val::Variant(case, payload) => match payload {
            None => Json::String(case.clone()),
            Some(p) => Json::Object(Map::from_iter([(case.clone(), to_json(p))])),
        },
        Val::Enum(case) => Json::String(case.clone()),
        Val::Option(o) => o.as_deref().map_or(Json::Null, to_json),
        Val::Result(r) => {
            let (key, payload) = match r {
                Ok(v) => ("ok", v),
                Err(v) => ("err", v),
            };
            Json::Object(Map::from_iter([(key.to_string(), payload.as_deref().map_or(Json::Null, to_json))]))
        }
        Val::Flags(names) => Json::Array(names.iter().cloned().map(Json::String).collect()),
        other => Json::String(format!("{other:?}")),
    }
}
