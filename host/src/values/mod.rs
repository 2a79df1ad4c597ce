//! Values at the edge: reading a call written in WAVE (the value syntax of
//! `wasmtime run --invoke`) against a function's type, and writing results as
//! WAVE (`wave`); `json`, the one JSON mapping of every WIT type.

pub mod json;
mod wave;

use anyhow::{Result, anyhow, bail};
use serde_json::Value as Json;
use wasm_wave::ast::{Node, NodeType};
use wasm_wave::lex::Span;
use wasm_wave::untyped::UntypedFuncCall;
use wasmtime::component::Val;
use wasmtime::component::types::{ComponentFunc, Type};

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
/// parameters; an error ends with what was `expected` (the signature).
pub fn parse_args(func_name: &str, args: &str, ty: &ComponentFunc, expected: impl Fn() -> String) -> Result<Vec<Val>> {
    // The WAVE parser reads `name(args)` with a plain name; the user's name
    // may be qualified (`catalog.get-product`), so give it a stand-in.
    let source = format!("f{args}");
    let point = |span: std::ops::Range<usize>| -> String {
        let (start, end) = (span.start.saturating_sub(1), span.end.saturating_sub(1).max(span.start));
        let shown = args.get(..200).unwrap_or(args);
        let caret = " ".repeat(start.min(shown.len())) + &"^".repeat((end - start).clamp(1, 40));
        format!("\n  {func_name}{shown}\n  {}{caret}", " ".repeat(func_name.len()))
    };
    let call = UntypedFuncCall::parse(&source).map_err(|e| {
        anyhow!("cannot read the arguments as WAVE: {}{}\n  expected: {}", detail(&e), point(e.span()), expected())
    })?;
    let types: Vec<_> = ty.params().map(|(_, t)| t).collect();
    call.to_wasm_params::<Val>(types.iter()).map_err(|e| {
        // Say which argument, field or element did not fit, and what it
        // should be, where the parser only knows that something did not.
        let names: Vec<&str> = ty.params().map(|(n, _)| n).collect();
        match call.params_node().and_then(|params| diagnose(&source, params, &names, &types)) {
            Some((why, span)) => {
                anyhow!("the arguments do not fit `{func_name}`: {why}{}\n  expected: {}", point(span), expected())
            }
            None => anyhow!(
                "the arguments do not fit `{func_name}`: {}{}\n  expected: {}",
                detail(&e),
                point(e.span()),
                expected()
            ),
        }
    })
}

/// The first argument (or field, element, payload) that does not fit its
/// type, as "PATH: expected TYPE, found TEXT" with a hint, and where it is.
fn diagnose(src: &str, params: &Node, names: &[&str], types: &[Type]) -> Option<(String, Span)> {
    let args: Vec<&Node> = params.as_tuple().ok()?.collect();
    if args.len() > types.len() {
        let extra = args[types.len()];
        return Some((format!("{} argument(s) expected, {} given", types.len(), args.len()), extra.span()));
    }
    args.iter().zip(names.iter().zip(types)).find_map(|(node, (name, ty))| misfit(src, node, ty, name))
}

fn misfit(src: &str, node: &Node, ty: &Type, path: &str) -> Option<(String, Span)> {
    if node.to_wasm_value::<Val>(ty, src).is_ok() {
        return None;
    }
    let text = |n: &Node| src.get(n.span()).unwrap_or_default().to_string();
    match (ty, node.ty()) {
        (Type::Record(r), NodeType::Record) => {
            let given: Vec<(&str, &Node)> = node.as_record(src).ok()?.collect();
            let fields: Vec<_> = r.fields().collect();
            for (name, n) in &given {
                if !fields.iter().any(|f| f.name == *name) {
                    let hint = crate::suggest::did_you_mean(name, fields.iter().map(|f| f.name));
                    let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                    return Some((
                        format!("{path}: no field `{name}`{hint}; the fields are {}", names.join(", ")),
                        n.span(),
                    ));
                }
            }
            for f in &fields {
                if !matches!(f.ty, Type::Option(_)) && !given.iter().any(|(name, _)| *name == f.name) {
                    return Some((
                        format!("{path}: the field `{}` ({}) is missing", f.name, crate::contract::describe(&f.ty)),
                        node.span(),
                    ));
                }
            }
            given.iter().find_map(|(name, n)| {
                let ty = &fields.iter().find(|f| f.name == *name)?.ty;
                misfit(src, n, ty, &format!("{path}.{name}"))
            })
        }
        (Type::List(l), NodeType::List) => {
            node.as_list().ok()?.enumerate().find_map(|(i, n)| misfit(src, n, &l.ty(), &format!("{path}[{i}]")))
        }
        (Type::Tuple(t), NodeType::Tuple) if node.as_tuple().ok()?.len() == t.types().len() => node
            .as_tuple()
            .ok()?
            .zip(t.types())
            .enumerate()
            .find_map(|(i, (n, ty))| misfit(src, n, &ty, &format!("{path}.{i}"))),
        (Type::Option(o), NodeType::OptionSome) => misfit(src, node.as_option().ok()??, &o.ty(), path),
        (Type::Variant(v), NodeType::Label | NodeType::VariantWithPayload) => {
            let (label, payload) = node.as_variant(src).ok()?;
            let cases: Vec<_> = v.cases().collect();
            match cases.iter().find(|c| c.name == label) {
                None => {
                    let hint = crate::suggest::did_you_mean(label, cases.iter().map(|c| c.name));
                    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
                    Some((format!("{path}: no case `{label}`{hint}; the cases are {}", names.join(", ")), node.span()))
                }
                Some(case) => match (&case.ty, payload) {
                    (Some(ty), Some(payload)) => misfit(src, payload, ty, &format!("{path}.{label}")),
                    _ => None,
                },
            }
        }
        (Type::Enum(e), NodeType::Label) => {
            let label = text(node);
            let hint = crate::suggest::did_you_mean(&label, e.names());
            Some((
                format!("{path}: `{label}` is not one of {}{hint}", e.names().collect::<Vec<_>>().join(", ")),
                node.span(),
            ))
        }
        _ => {
            let found = text(node);
            let hint = match (ty, node.ty()) {
                (Type::String, NodeType::Label) => format!(" (a string is written in double quotes: \"{found}\")"),
                (Type::U8 | Type::U16 | Type::U32 | Type::U64, NodeType::Number) if found.starts_with('-') => {
                    format!(" (a {} cannot be negative)", crate::contract::describe(ty))
                }
                (_, NodeType::Number) if is_integer(ty) && found.parse::<i128>().is_ok() => {
                    format!(" (out of range for {})", crate::contract::describe(ty))
                }
                (_, NodeType::Number) if is_integer(ty) => " (a whole number)".to_string(),
                _ => String::new(),
            };
            Some((format!("{path}: expected {}, found `{found}`{hint}", crate::contract::describe(ty)), node.span()))
        }
    }
}

fn is_integer(ty: &Type) -> bool {
    matches!(ty, Type::U8 | Type::U16 | Type::U32 | Type::U64 | Type::S8 | Type::S16 | Type::S32 | Type::S64)
}

fn detail(e: &wasm_wave::parser::ParserError) -> String {
    match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.kind().to_string(),
    }
}

/// A value in WAVE, for showing it (as `wasm_wave::to_string` writes it;
/// see `wave`); what WAVE cannot write is shown as `<unprintable: …>`.
pub fn to_wave(val: &Val) -> String {
    try_to_wave(val).unwrap_or_else(|e| format!("<unprintable: {e}>"))
}

/// A value in WAVE, for storing it: an error where WAVE cannot write it (a
/// resource, stream, future, error context or map).
pub fn try_to_wave(val: &Val) -> Result<String> {
    // Room for a typical event without growing the string again and again.
    let mut out = String::with_capacity(256);
    wave::write(&mut out, val).map_err(|kind| anyhow!("WAVE cannot write {kind}"))?;
    Ok(out)
}

/// A function's result as JSON (`json`), or `null` if it returns nothing.
pub fn result_json(func: &ComponentFunc, results: &[Val]) -> Json {
    match (func.results().next(), results.first()) {
        (Some(ty), Some(val)) => json::to_json(&ty, val),
        _ => Json::Null,
    }
}
