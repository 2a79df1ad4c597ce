//! A value written as WAVE: the same text as `wasm_wave::to_string`, made
//! cheaply.
//!
//! Every event is stored as WAVE, so writing it is on the path of every
//! publish. `wasm_wave`'s writer formats each character of a string through
//! `core::fmt` (`write!("{}", ch.escape_debug())`): about 15,000
//! instructions for an order's `placed` event, 6 % of a whole
//! `place-order`. Here a string with nothing to escape is copied whole, and
//! the rest is escaped character by character exactly as `wasm_wave` does.
//! The tests hold the output to `wasm_wave`'s, value kind by value kind and
//! over strings of every kind of character.

use std::fmt::Write as _;

use wasmtime::component::Val;

/// `val` in WAVE, appended to `out`; `Err` names a kind WAVE cannot write
/// (a resource, stream, future, error context or map), where `wasm_wave`
/// would panic.
pub fn write(out: &mut String, val: &Val) -> Result<(), &'static str> {
    match val {
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::S8(n) => number(out, n),
        Val::U8(n) => number(out, n),
        Val::S16(n) => number(out, n),
        Val::U16(n) => number(out, n),
        Val::S32(n) => number(out, n),
        Val::U32(n) => number(out, n),
        Val::S64(n) => number(out, n),
        Val::U64(n) => number(out, n),
        // Display writes "NaN"; WAVE's is "nan".
        Val::Float32(f) if f.is_nan() => out.push_str("nan"),
        Val::Float64(f) if f.is_nan() => out.push_str("nan"),
        Val::Float32(f) => number(out, f),
        Val::Float64(f) => number(out, f),
        Val::Char(c) => {
            out.push('\'');
            escaped(out, *c);
            out.push('\'');
        }
        Val::String(s) => {
            out.push('"');
            if s.bytes().all(|b| matches!(b, b' '..=b'~') && !matches!(b, b'\\' | b'"' | b'\'')) {
                out.push_str(s);
            } else {
                s.chars().for_each(|c| escaped(out, c));
            }
            out.push('"');
        }
        Val::List(items) | Val::FixedLengthList(items) => sequence(out, "[", items, "]")?,
        Val::Tuple(items) => sequence(out, "(", items, ")")?,
        Val::Record(fields) => {
            out.push('{');
            let mut first = true;
            // A field whose value is `none` is left out, as wasm_wave does.
            for (name, value) in fields.iter().filter(|(_, v)| !matches!(v, Val::Option(None))) {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                out.push_str(name);
                out.push_str(": ");
                write(out, value)?;
            }
            if first {
                out.push(':');
            }
            out.push('}');
        }
        Val::Variant(case, payload) => {
            label(out, case);
            self::payload(out, payload.as_deref())?;
        }
        Val::Enum(case) => label(out, case),
        Val::Option(None) => out.push_str("none"),
        Val::Option(Some(value)) => {
            out.push_str("some");
            self::payload(out, Some(value))?;
        }
        Val::Result(Ok(value)) => {
            out.push_str("ok");
            self::payload(out, value.as_deref())?;
        }
        Val::Result(Err(value)) => {
            out.push_str("err");
            self::payload(out, value.as_deref())?;
        }
        Val::Flags(names) => {
            out.push('{');
            out.push_str(&names.join(", "));
            out.push('}');
        }
        Val::Resource(_) => return Err("a resource"),
        Val::Future(_) => return Err("a future"),
        Val::Stream(_) => return Err("a stream"),
        Val::ErrorContext(_) => return Err("an error context"),
        Val::Map(_) => return Err("a map"),
    }
    Ok(())
}

fn number(out: &mut String, n: impl std::fmt::Display) {
    let _ = write!(out, "{n}");
}

fn sequence(out: &mut String, open: &str, items: &[Val], close: &str) -> Result<(), &'static str> {
    out.push_str(open);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write(out, item)?;
    }
    out.push_str(close);
    Ok(())
}

fn payload(out: &mut String, payload: Option<&Val>) -> Result<(), &'static str> {
    if let Some(value) = payload {
        out.push('(');
        write(out, value)?;
        out.push(')');
    }
    Ok(())
}

/// A case name, marked with `%` where it is also a WAVE keyword.
fn label(out: &mut String, name: &str) {
    if matches!(name, "true" | "false" | "some" | "none" | "ok" | "err" | "inf" | "nan") {
        out.push('%');
    }
    out.push_str(name);
}

/// One character of a string or char, escaped as wasm_wave escapes it.
fn escaped(out: &mut String, c: char) {
    if matches!(c, '\\' | '"' | '\'' | '\t' | '\r' | '\n') {
        out.extend(c.escape_default());
    } else if c.is_control() {
        out.extend(c.escape_unicode());
    } else {
        out.extend(c.escape_debug());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(val: &Val) -> String {
        let mut out = String::new();
        write(&mut out, val).unwrap();
        out
    }

    fn same(val: Val) {
        assert_eq!(ours(&val), wasm_wave::to_string(&val).unwrap(), "{val:?}");
    }

    fn boxed(v: Val) -> Option<Box<Val>> {
        Some(Box::new(v))
    }

    #[test]
    fn every_kind_is_written_as_wasm_wave_writes_it() {
        let scalars = [
            Val::Bool(true),
            Val::Bool(false),
            Val::S8(-128),
            Val::U8(255),
            Val::S16(-32768),
            Val::U16(65535),
            Val::S32(i32::MIN),
            Val::U32(u32::MAX),
            Val::S64(i64::MIN),
            Val::U64(u64::MAX),
            Val::Float32(1.5),
            Val::Float32(1.0),
            Val::Float32(-0.0),
            Val::Float32(f32::NAN),
            Val::Float32(f32::INFINITY),
            Val::Float32(f32::MIN_POSITIVE),
            Val::Float64(f64::NEG_INFINITY),
            Val::Float64(-f64::NAN),
            Val::Float64(1e300),
            Val::Float64(0.1),
            Val::Char('a'),
            Val::Char('\''),
            Val::Char('"'),
            Val::Char('\u{0}'),
            Val::Char('\u{301}'),
            Val::Char('😀'),
            Val::String(String::new()),
            Val::String("Wireless Mouse".into()),
            Val::String("say \"hi\"\n\tit's C:\\".into()),
        ];
        for v in scalars.iter().cloned() {
            same(v);
        }
        let record = |fields: Vec<(&str, Val)>| Val::Record(fields.into_iter().map(|(n, v)| (n.into(), v)).collect());
        let composites = [
            Val::List(vec![]),
            Val::List(scalars.to_vec()),
            Val::FixedLengthList(vec![Val::U8(1), Val::U8(2)]),
            Val::Tuple(vec![Val::String("a".into()), Val::S32(-1)]),
            record(vec![]),
            record(vec![("a", Val::Option(None))]),
            record(vec![("a", Val::Option(None)), ("b", Val::U32(1)), ("c", Val::Option(None)), ("d", Val::U32(2))]),
            record(vec![("true", Val::Option(boxed(Val::Bool(false)))), ("product-id", Val::String("P1".into()))]),
            Val::Variant("placed".into(), boxed(record(vec![("order-id", Val::String("O1".into()))]))),
            Val::Variant("none".into(), None),
            Val::Variant("nan".into(), boxed(Val::Float64(f64::NAN))),
            Val::Enum("pending".into()),
            Val::Enum("ok".into()),
            Val::Enum("inf".into()),
            Val::Option(None),
            Val::Option(boxed(Val::Option(boxed(Val::Option(None))))),
            Val::Result(Ok(None)),
            Val::Result(Err(None)),
            Val::Result(Ok(boxed(Val::List(vec![Val::Char('x')])))),
            Val::Result(Err(boxed(Val::Variant("unknown-product".into(), boxed(Val::String("P9".into())))))),
            Val::Flags(vec![]),
            Val::Flags(vec!["read".into(), "write".into()]),
        ];
        for v in composites.iter().cloned() {
            same(v);
        }
        same(Val::List(composites.to_vec()));
    }

    #[test]
    fn strings_of_every_kind_of_character_are_escaped_as_wasm_wave_escapes_them() {
        // All of ASCII, and characters Rust escapes for different reasons:
        // controls (C0, DEL, C1), a combining mark, format characters, a
        // line separator, private use, a noncharacter, unassigned, astral.
        let mut palette: Vec<char> = (0u8..128).map(char::from).collect();
        palette.extend([
            'é',
            '\u{85}',
            '\u{a0}',
            '\u{ad}',
            '\u{301}',
            '\u{200b}',
            '\u{200d}',
            '\u{2028}',
            '\u{feff}',
            '\u{e000}',
            '\u{fffe}',
            '\u{378}',
            '😀',
            '\u{1f3fb}',
            '\u{10ffff}',
            '中',
        ]);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = (seed % 12) as usize;
            let s: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    palette[(seed % palette.len() as u64) as usize]
                })
                .collect();
            same(Val::String(s));
        }
        for c in palette {
            same(Val::Char(c));
            same(Val::String(c.to_string()));
        }
    }

    #[test]
    fn what_wave_cannot_write_is_named_not_a_panic() {
        let mut out = String::new();
        let map = Val::Map(vec![(Val::U8(1), Val::U8(2))]);
        assert_eq!(write(&mut out, &Val::List(vec![map])), Err("a map"));
    }
}
