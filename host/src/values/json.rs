//! The one JSON mapping of WIT values, used wherever JSON appears: the HTTP
//! gateway's bodies, `--json` output, `moat call --args-json`, event
//! payloads. It is reversible: a value written and read back is the same
//! value, and JSON written here reads back and writes again unchanged.
//!
//! | WIT | JSON |
//! |---|---|
//! | `bool` | `true`, `false` |
//! | `s8` … `u32` | a number |
//! | `s64`, `u64` | a number up to ±(2^53 − 1), which every JSON reader holds exactly; a string of digits beyond (`"18446744073709551615"`). Read: a number, or a string for any value |
//! | `f32`, `f64` | a number (an `f32` written as the `f64` of the same value, so it reads back exactly); `"NaN"`, `"Infinity"`, `"-Infinity"` as strings |
//! | `char` | a string of one character |
//! | `string` | a string |
//! | `list<u8>` | a base64 string (RFC 4648, padded) |
//! | `list<T>`, `tuple<…>`, fixed-length lists | an array |
//! | `map<K, V>` | an array of `[key, value]` pairs |
//! | `record` | an object with the WIT field names. Read: a missing `option` field is `none` |
//! | `variant` | `"case"` for a case without payload, `{"case": payload}` otherwise |
//! | `enum` | `"case"` |
//! | `flags` | an array of the names of the flags set, in declaration order |
//! | `option<T>` | `null`, or `T`; when `T` is itself an option, `null` or `{"some": T}` |
//! | `result<T, E>` | `{"ok": T}` or `{"err": E}`; a side without a payload holds `null` |
//!
//! Resources, futures and streams have no JSON form: contracts pass data.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Number, Value as Json};
use wasmtime::component::Val;
use wasmtime::component::types::{ComponentFunc, Type};

use crate::contract;

/// The largest integer every JSON reader holds exactly (JavaScript's
/// `Number.MAX_SAFE_INTEGER`).
pub const SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Where a JSON input did not fit the type, and what was expected there.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize)]
#[error("{}: expected {expected}, found {found}", if path.is_empty() { "the value" } else { path.as_str() })]
pub struct JsonError {
    /// A JSON Pointer (RFC 6901) to the offending value, `""` for the whole.
    pub path: String,
    /// The WIT type expected there, written as in WIT.
    pub expected: String,
    /// What was there instead.
    pub found: String,
}

/// A value of type `ty` as JSON.
pub fn to_json(ty: &Type, val: &Val) -> Json {
    match (ty, val) {
        (_, Val::Bool(b)) => Json::Bool(*b),
        (_, Val::S8(n)) => Json::from(*n),
        (_, Val::U8(n)) => Json::from(*n),
        (_, Val::S16(n)) => Json::from(*n),
        (_, Val::U16(n)) => Json::from(*n),
        (_, Val::S32(n)) => Json::from(*n),
        (_, Val::U32(n)) => Json::from(*n),
        (_, Val::S64(n)) if n.unsigned_abs() <= SAFE_INTEGER => Json::from(*n),
        (_, Val::S64(n)) => Json::String(n.to_string()),
        (_, Val::U64(n)) if *n <= SAFE_INTEGER => Json::from(*n),
        (_, Val::U64(n)) => Json::String(n.to_string()),
        // As the f64 of the same value: it reads back exactly (a shorter
        // decimal would be rounded twice, to f64 and then to f32).
        (_, Val::Float32(f)) => float(f64::from(*f)),
        (_, Val::Float64(f)) => float(*f),
        (_, Val::Char(c)) => Json::String(c.to_string()),
        (_, Val::String(s)) => Json::String(s.clone()),
        (Type::List(l), Val::List(items)) if l.ty() == Type::U8 => {
            let bytes: Vec<u8> = items.iter().map(|v| if let Val::U8(b) = v { *b } else { 0 }).collect();
            Json::String(BASE64.encode(bytes))
        }
        (Type::List(l), Val::List(items)) => Json::Array(items.iter().map(|v| to_json(&l.ty(), v)).collect()),
        (Type::FixedLengthList(l), Val::FixedLengthList(items)) => {
            Json::Array(items.iter().map(|v| to_json(&l.ty(), v)).collect())
        }
        (Type::Tuple(t), Val::Tuple(items)) => Json::Array(t.types().zip(items).map(|(t, v)| to_json(&t, v)).collect()),
        (Type::Map(m), Val::Map(pairs)) => Json::Array(
            pairs.iter().map(|(k, v)| Json::Array(vec![to_json(&m.key(), k), to_json(&m.value(), v)])).collect(),
        ),
        (Type::Record(r), Val::Record(fields)) => {
            Json::Object(r.fields().zip(fields).map(|(f, (name, v))| (name.clone(), to_json(&f.ty, v))).collect())
        }
        (_, Val::Variant(case, None) | Val::Enum(case)) => Json::String(case.clone()),
        (Type::Variant(t), Val::Variant(case, Some(payload))) => {
            match t.cases().find(|c| c.name == case).and_then(|c| c.ty) {
                Some(ty) => object(case, to_json(&ty, payload)),
                None => object(case, Json::Null),
            }
        }
        (_, Val::Option(None)) => Json::Null,
        (Type::Option(o), Val::Option(Some(v))) => match o.ty() {
            inner @ Type::Option(_) => object("some", to_json(&inner, v)),
            inner => to_json(&inner, v),
        },
        (Type::Result(r), Val::Result(Ok(v))) => object("ok", side(r.ok(), v.as_deref())),
        (Type::Result(r), Val::Result(Err(v))) => object("err", side(r.err(), v.as_deref())),
        (_, Val::Flags(names)) => Json::Array(names.iter().cloned().map(Json::String).collect()),
        // A value that does not match its type (the host never makes one),
        // or one without a JSON form.
        _ => Json::Null,
    }
}

fn side(ty: Option<Type>, val: Option<&Val>) -> Json {
    match (ty, val) {
        (Some(ty), Some(v)) => to_json(&ty, v),
        _ => Json::Null,
    }
}

fn float(f: f64) -> Json {
    if f.is_nan() {
        Json::String("NaN".into())
    } else if f.is_infinite() {
        Json::String(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        Number::from_f64(f).map_or(Json::Null, Json::Number)
    }
}

fn object(key: &str, value: Json) -> Json {
    Json::Object(Map::from_iter([(key.to_string(), value)]))
}

/// Reads a function's arguments from a JSON object of them by name: a
/// missing `option` argument is `none`; every argument that does not fit,
/// and every name that is not an argument, is an error.
pub fn arguments(func: &ComponentFunc, args: &Json) -> Result<Vec<Val>, Vec<JsonError>> {
    let params: Vec<(String, Type)> = func.params().map(|(n, t)| (n.to_string(), t)).collect();
    let Json::Object(object) = args else {
        return Err(vec![JsonError {
            path: String::new(),
            expected: "an object of the arguments by name".into(),
            found: describe(args),
        }]);
    };
    let mut errors = Vec::new();
    let mut values = Vec::with_capacity(params.len());
    for (name, ty) in &params {
        let mut path = String::new();
        push(&mut path, name);
        match (object.get(name), ty) {
            (Some(v), ty) => match read(ty, v, &mut path) {
                Ok(v) => values.push(v),
                Err(e) => errors.push(e),
            },
            (None, Type::Option(_)) => values.push(Val::Option(None)),
            (None, ty) => errors.push(JsonError { path, expected: contract::describe(ty), found: "nothing".into() }),
        }
    }
    for extra in object.keys().filter(|k| !params.iter().any(|(n, _)| n == *k)) {
        let mut path = String::new();
        push(&mut path, extra);
        let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        let expected = if names.is_empty() {
            "no argument (it takes none)".to_string()
        } else {
            format!("no such argument (the arguments are {})", names.join(", "))
        };
        errors.push(JsonError { path, expected, found: describe(&object[extra]) });
    }
    if errors.is_empty() { Ok(values) } else { Err(errors) }
}

/// Reads a value of type `ty` from JSON.
pub fn from_json(ty: &Type, json: &Json) -> Result<Val, JsonError> {
    read(ty, json, &mut String::new())
}

fn read(ty: &Type, json: &Json, path: &mut String) -> Result<Val, JsonError> {
    let wrong =
        |path: &str| JsonError { path: path.to_string(), expected: contract::describe(ty), found: describe(json) };
    Ok(match ty {
        Type::Bool => Val::Bool(json.as_bool().ok_or_else(|| wrong(path))?),
        Type::S8 => Val::S8(int(json).and_then(|n| i8::try_from(n).ok()).ok_or_else(|| wrong(path))?),
        Type::U8 => Val::U8(int(json).and_then(|n| u8::try_from(n).ok()).ok_or_else(|| wrong(path))?),
        Type::S16 => Val::S16(int(json).and_then(|n| i16::try_from(n).ok()).ok_or_else(|| wrong(path))?),
        Type::U16 => Val::U16(int(json).and_then(|n| u16::try_from(n).ok()).ok_or_else(|| wrong(path))?),
        Type::S32 => Val::S32(int(json).and_then(|n| i32::try_from(n).ok()).ok_or_else(|| wrong(path))?),
        Type::U32 => Val::U32(int(json).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| wrong(path))?),
        Type::S64 => Val::S64(wide(json).and_then(|n| i64::try_from(n).ok()).ok_or_else(|| wrong(path))?),
        Type::U64 => Val::U64(wide(json).and_then(|n| u64::try_from(n).ok()).ok_or_else(|| wrong(path))?),
        Type::Float32 => {
            let f = real(json).ok_or_else(|| wrong(path))?;
            let narrow = f as f32;
            if f.is_finite() && !narrow.is_finite() {
                return Err(wrong(path));
            }
            Val::Float32(narrow)
        }
        Type::Float64 => Val::Float64(real(json).ok_or_else(|| wrong(path))?),
        Type::Char => {
            let s = json.as_str().ok_or_else(|| wrong(path))?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(wrong(path)),
            }
        }
        Type::String => Val::String(json.as_str().ok_or_else(|| wrong(path))?.to_string()),
        Type::List(list) => {
            let item = list.ty();
            match (json, &item) {
                (Json::String(s), Type::U8) => {
                    Val::List(BASE64.decode(s).map_err(|_| wrong(path))?.into_iter().map(Val::U8).collect())
                }
                (Json::Array(items), _) => Val::List(read_items(&item, items, path)?),
                _ => return Err(wrong(path)),
            }
        }
        Type::FixedLengthList(list) => {
            let items = json.as_array().filter(|a| a.len() == list.len() as usize).ok_or_else(|| wrong(path))?;
            Val::FixedLengthList(read_items(&list.ty(), items, path)?)
        }
        Type::Map(map) => {
            let pairs = json.as_array().ok_or_else(|| wrong(path))?;
            let mut out = Vec::with_capacity(pairs.len());
            for (i, pair) in pairs.iter().enumerate() {
                let at = path.len();
                push(path, &i.to_string());
                let kv = pair.as_array().filter(|p| p.len() == 2).ok_or_else(|| JsonError {
                    path: path.clone(),
                    expected: "a [key, value] pair".into(),
                    found: describe(pair),
                })?;
                let key = nested(&map.key(), &kv[0], path, "0")?;
                let value = nested(&map.value(), &kv[1], path, "1")?;
                path.truncate(at);
                out.push((key, value));
            }
            Val::Map(out)
        }
        Type::Tuple(tuple) => {
            let types: Vec<Type> = tuple.types().collect();
            let items = json.as_array().filter(|a| a.len() == types.len()).ok_or_else(|| wrong(path))?;
            let mut out = Vec::with_capacity(items.len());
            for (i, (ty, item)) in types.iter().zip(items).enumerate() {
                out.push(nested(ty, item, path, &i.to_string())?);
            }
            Val::Tuple(out)
        }
        Type::Record(record) => {
            let object = json.as_object().ok_or_else(|| wrong(path))?;
            let mut out = Vec::new();
            for field in record.fields() {
                let value = match (object.get(field.name), &field.ty) {
                    (Some(v), ty) => nested(ty, v, path, field.name)?,
                    (None, Type::Option(_)) => Val::Option(None),
                    (None, ty) => {
                        let at = path.len();
                        push(path, field.name);
                        let e =
                            JsonError { path: path.clone(), expected: contract::describe(ty), found: "nothing".into() };
                        path.truncate(at);
                        return Err(e);
                    }
                };
                out.push((field.name.to_string(), value));
            }
            if let Some(extra) = object.keys().find(|k| !record.fields().any(|f| f.name == k.as_str())) {
                let fields: Vec<&str> = record.fields().map(|f| f.name).collect();
                let at = path.len();
                push(path, extra);
                let e = JsonError {
                    path: path.clone(),
                    expected: format!("no such field (the fields are {})", fields.join(", ")),
                    found: describe(&object[extra]),
                };
                path.truncate(at);
                return Err(e);
            }
            Val::Record(out)
        }
        Type::Variant(variant) => {
            let (case, payload) = one_case(json).ok_or_else(|| wrong(path))?;
            let found = variant.cases().find(|c| c.name == case).ok_or_else(|| wrong(path))?;
            match (found.ty, payload) {
                (None, None | Some(Json::Null)) => Val::Variant(case.to_string(), None),
                (Some(ty), Some(p)) => Val::Variant(case.to_string(), Some(Box::new(nested(&ty, p, path, case)?))),
                _ => return Err(wrong(path)),
            }
        }
        Type::Enum(e) => {
            let name = json.as_str().filter(|s| e.names().any(|n| n == *s)).ok_or_else(|| wrong(path))?;
            Val::Enum(name.to_string())
        }
        Type::Option(option) => {
            let inner = option.ty();
            match (json, &inner) {
                (Json::Null, _) => Val::Option(None),
                (json, Type::Option(_)) => {
                    let some = json.as_object().filter(|o| o.len() == 1).and_then(|o| o.get("some"));
                    let some = some.ok_or_else(|| wrong(path))?;
                    Val::Option(Some(Box::new(nested(&inner, some, path, "some")?)))
                }
                (json, _) => Val::Option(Some(Box::new(read(&inner, json, path)?))),
            }
        }
        Type::Result(result) => {
            let (case, payload) = one_case(json).ok_or_else(|| wrong(path))?;
            let side = match case {
                "ok" => result.ok(),
                "err" => result.err(),
                _ => return Err(wrong(path)),
            };
            let value = match (side, payload) {
                (None, None | Some(Json::Null)) => None,
                (Some(ty), Some(p)) => Some(Box::new(nested(&ty, p, path, case)?)),
                _ => return Err(wrong(path)),
            };
            Val::Result(if case == "ok" { Ok(value) } else { Err(value) })
        }
        Type::Flags(flags) => {
            let names = json.as_array().ok_or_else(|| wrong(path))?;
            let mut set = Vec::new();
            for name in names {
                let name = name.as_str().ok_or_else(|| wrong(path))?;
                if !flags.names().any(|n| n == name) || set.iter().any(|s: &String| s == name) {
                    return Err(wrong(path));
                }
                set.push(name.to_string());
            }
            // Declaration order, whatever order they came in.
            let order: Vec<&str> = flags.names().collect();
            set.sort_by_key(|s| order.iter().position(|n| n == s));
            Val::Flags(set)
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err(wrong(path));
        }
    })
}

/// Reads a value one step down `path`.
fn nested(ty: &Type, json: &Json, path: &mut String, step: &str) -> Result<Val, JsonError> {
    let at = path.len();
    push(path, step);
    let out = read(ty, json, path);
    path.truncate(at);
    out
}

fn read_items(ty: &Type, items: &[Json], path: &mut String) -> Result<Vec<Val>, JsonError> {
    items.iter().enumerate().map(|(i, item)| nested(ty, item, path, &i.to_string())).collect()
}

/// Appends a JSON Pointer step (`~` and `/` escaped).
fn push(path: &mut String, step: &str) {
    path.push('/');
    path.push_str(&step.replace('~', "~0").replace('/', "~1"));
}

/// `"case"` or `{"case": payload}`.
fn one_case(json: &Json) -> Option<(&str, Option<&Json>)> {
    match json {
        Json::String(s) => Some((s, None)),
        Json::Object(o) if o.len() == 1 => o.iter().next().map(|(k, v)| (k.as_str(), Some(v))),
        _ => None,
    }
}

/// An integer written as a number (never `1.0`).
fn int(json: &Json) -> Option<i64> {
    json.as_i64()
}

/// A 64-bit integer: a number, or a string of digits.
fn wide(json: &Json) -> Option<i128> {
    match json {
        Json::Number(n) => n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)),
        Json::String(s) if !s.is_empty() && s.trim() == s && !s.starts_with('+') => s.parse().ok(),
        _ => None,
    }
}

fn real(json: &Json) -> Option<f64> {
    match json {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// What a JSON value is, for an error message.
fn describe(json: &Json) -> String {
    let shown = json.to_string();
    let shown = if shown.len() > 40 {
        format!(
            "{}…",
            &shown[..shown.char_indices().take_while(|(i, _)| *i < 40).last().map_or(0, |(i, c)| i + c.len_utf8())]
        )
    } else {
        shown
    };
    match json {
        Json::Null => "null".into(),
        Json::Bool(_) => format!("a boolean ({shown})"),
        Json::Number(_) => format!("a number ({shown})"),
        Json::String(_) => format!("a string ({shown})"),
        Json::Array(_) => format!("an array ({shown})"),
        Json::Object(_) => format!("an object ({shown})"),
    }
}
