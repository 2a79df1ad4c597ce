//! A compact binary encoding of component values, for calls between hosts.
//!
//! The writer needs no type: a `Val` carries its shape. The reader decodes
//! against the receiving side's own type, so records and tuples travel
//! without field names, integers as LEB128 varints, while variant, enum and
//! flag cases travel by name: a receiver that knows more cases than the
//! sender (a newer minor version) still reads every value correctly.
//!
//! | value | bytes |
//! |---|---|
//! | `bool`, `u8`, `s8` | one byte |
//! | other integers, `char` | varint (zigzag for signed) |
//! | `f32`, `f64` | little-endian |
//! | `string` | varint length, UTF-8 |
//! | `list<T>` | varint count, each element |
//! | record, tuple | each field, in order |
//! | variant, enum | case name (as a string), then the payload if the case has one |
//! | `option<T>` | 0, or 1 and the value |
//! | `result<T, E>` | 0 and the ok payload, or 1 and the err payload (each if typed) |
//! | flags | varint count, each name |

use anyhow::{Result, anyhow, bail};
use wasmtime::component::Val;
use wasmtime::component::types::Type;

/// Appends the encoding of `val` to `out`.
pub fn encode(val: &Val, out: &mut Vec<u8>) -> Result<()> {
    match val {
        Val::Bool(b) => out.push(u8::from(*b)),
        Val::U8(n) => out.push(*n),
        Val::S8(n) => out.push(*n as u8),
        Val::U16(n) => varint(u64::from(*n), out),
        Val::U32(n) => varint(u64::from(*n), out),
        Val::U64(n) => varint(*n, out),
        Val::S16(n) => varint(zigzag(i64::from(*n)), out),
        Val::S32(n) => varint(zigzag(i64::from(*n)), out),
        Val::S64(n) => varint(zigzag(*n), out),
        Val::Float32(f) => out.extend_from_slice(&f.to_le_bytes()),
        Val::Float64(f) => out.extend_from_slice(&f.to_le_bytes()),
        Val::Char(c) => varint(u64::from(u32::from(*c)), out),
        Val::String(s) => string(s, out),
        Val::List(items) => {
            varint(items.len() as u64, out);
            for item in items {
                encode(item, out)?;
            }
        }
        Val::Record(fields) => {
            for (_, v) in fields {
                encode(v, out)?;
            }
        }
        Val::Tuple(items) => {
            for item in items {
                encode(item, out)?;
            }
        }
        Val::Variant(case, payload) => {
            string(case, out);
            if let Some(p) = payload {
                encode(p, out)?;
            }
        }
        Val::Enum(case) => string(case, out),
        Val::Option(o) => match o {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                encode(v, out)?;
            }
        },
        Val::Result(r) => {
            let (tag, payload) = match r {
                Ok(p) => (0, p),
                Err(p) => (1, p),
            };
            out.push(tag);
            if let Some(p) = payload {
                encode(p, out)?;
            }
        }
        Val::Flags(names) => {
            varint(names.len() as u64, out);
            for n in names {
                string(n, out);
            }
        }
        other => bail!("{other:?} cannot cross between hosts"),
    }
    Ok(())
}

/// Reads one value of type `ty` from the front of `input`.
pub fn decode(ty: &Type, input: &mut &[u8]) -> Result<Val> {
    Ok(match ty {
        Type::Bool => Val::Bool(byte(input)? != 0),
        Type::U8 => Val::U8(byte(input)?),
        Type::S8 => Val::S8(byte(input)? as i8),
        Type::U16 => Val::U16(u16::try_from(read_varint(input)?)?),
        Type::U32 => Val::U32(u32::try_from(read_varint(input)?)?),
        Type::U64 => Val::U64(read_varint(input)?),
        Type::S16 => Val::S16(i16::try_from(unzigzag(read_varint(input)?))?),
        Type::S32 => Val::S32(i32::try_from(unzigzag(read_varint(input)?))?),
        Type::S64 => Val::S64(unzigzag(read_varint(input)?)),
        Type::Float32 => Val::Float32(f32::from_le_bytes(take(input, 4)?.try_into()?)),
        Type::Float64 => Val::Float64(f64::from_le_bytes(take(input, 8)?.try_into()?)),
        Type::Char => {
            Val::Char(char::from_u32(u32::try_from(read_varint(input)?)?).ok_or_else(|| anyhow!("not a char"))?)
        }
        Type::String => Val::String(read_string(input)?),
        Type::List(l) => {
            let n = read_varint(input)?;
            // Every element takes at least a byte: a count beyond what is
            // left is a lie, not an allocation to make.
            if n > input.len() as u64 {
                bail!("a list of {n} elements in {} bytes", input.len());
            }
            let elem = l.ty();
            (0..n).map(|_| decode(&elem, input)).collect::<Result<_>>().map(Val::List)?
        }
        Type::Record(r) => {
            Val::Record(r.fields().map(|f| Ok((f.name.to_string(), decode(&f.ty, input)?))).collect::<Result<_>>()?)
        }
        Type::Tuple(t) => Val::Tuple(t.types().map(|ty| decode(&ty, input)).collect::<Result<_>>()?),
        Type::Variant(v) => {
            let name = read_string(input)?;
            let case = v.cases().find(|c| c.name == name).ok_or_else(|| anyhow!("unknown variant case `{name}`"))?;
            let payload = case.ty.map(|t| decode(&t, input)).transpose()?.map(Box::new);
            Val::Variant(name, payload)
        }
        Type::Enum(e) => {
            let name = read_string(input)?;
            if !e.names().any(|n| n == name) {
                bail!("unknown enum case `{name}`");
            }
            Val::Enum(name)
        }
        Type::Option(o) => match byte(input)? {
            0 => Val::Option(None),
            1 => Val::Option(Some(Box::new(decode(&o.ty(), input)?))),
            t => bail!("option tag {t}"),
        },
        Type::Result(r) => match byte(input)? {
            0 => Val::Result(Ok(r.ok().map(|t| decode(&t, input)).transpose()?.map(Box::new))),
            1 => Val::Result(Err(r.err().map(|t| decode(&t, input)).transpose()?.map(Box::new))),
            t => bail!("result tag {t}"),
        },
        Type::Flags(f) => {
            let n = read_varint(input)?;
            if n > input.len() as u64 {
                bail!("{n} flags in {} bytes", input.len());
            }
            let mut names = Vec::new();
            for _ in 0..n {
                let name = read_string(input)?;
                if !f.names().any(|m| m == name) {
                    bail!("unknown flag `{name}`");
                }
                names.push(name);
            }
            Val::Flags(names)
        }
        other => bail!("values of type {} cannot cross between hosts", crate::contract::describe(other)),
    })
}

/// Encodes a list of values (a call's arguments or results).
pub fn encode_all(vals: &[Val]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for v in vals {
        encode(v, &mut out)?;
    }
    Ok(out)
}

/// Decodes a list of values of the given types; all input must be used.
pub fn decode_all<'a>(types: impl IntoIterator<Item = &'a Type>, mut input: &[u8]) -> Result<Vec<Val>> {
    let vals = types.into_iter().map(|t| decode(t, &mut input)).collect::<Result<Vec<_>>>()?;
    if !input.is_empty() {
        bail!("{} bytes left over after the values", input.len());
    }
    Ok(vals)
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn read_varint(input: &mut &[u8]) -> Result<u64> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = byte(input)?;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(n);
        }
    }
    bail!("a varint longer than 64 bits")
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

fn string(s: &str, out: &mut Vec<u8>) {
    varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

fn read_string(input: &mut &[u8]) -> Result<String> {
    let n = usize::try_from(read_varint(input)?)?;
    Ok(String::from_utf8(take(input, n)?.to_vec())?)
}

fn byte(input: &mut &[u8]) -> Result<u8> {
    Ok(take(input, 1)?[0])
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if input.len() < n {
        bail!("the value ends early");
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_round_trip() {
        for n in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            varint(n, &mut out);
            assert_eq!(read_varint(&mut out.as_slice()).unwrap(), n);
        }
        for n in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(n)), n);
        }
        assert!(read_varint(&mut [0xff; 11].as_slice()).is_err());
        assert!(read_varint(&mut [0x80].as_slice()).is_err());
    }
}
