//! What a component imports and exports, read from its compiled type, and
//! whether one side's functions fit the other's.
//!
//! The host is generic: it knows no shop types. Everything it needs to wire
//! components together (which interface a component serves, which it uses,
//! whether the types of a caller and a callee agree) comes from here.
//!
//! Layout: `id`, an interface's name and whether it is public; `named`, a
//! contract written with its WIT type names (for people); here, the
//! contract as Wasmtime types it and the checks that one side fits another.

mod id;
pub mod named;

pub use id::{HANDLER, InterfaceId, is_public};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::types::{self, ComponentFunc, ComponentItem, Type};

/// A component's imports and exports.
#[derive(Clone)]
pub struct Contract {
    /// Imported interfaces, in the component's order.
    pub imports: Vec<Interface>,
    /// Exported interfaces, in the component's order. Functions exported at
    /// the root of the world are gathered in one interface named "".
    pub exports: Vec<Interface>,
    /// The `.wasm` file it was read from, if there is one: where the names
    /// of its types are read, when an error shows a signature.
    pub source: Option<PathBuf>,
}

/// One imported or exported interface.
#[derive(Clone)]
pub struct Interface {
    /// The full name as the component spells it: `shop:product/catalog@1.0.0`.
    pub name: String,
    /// `name` split into its parts.
    pub id: InterfaceId,
    /// Its functions, in declaration order.
    pub funcs: Vec<Function>,
}

/// One function of an interface.
#[derive(Clone)]
pub struct Function {
    /// Its name: `get-product`.
    pub name: String,
    /// Its type.
    pub ty: ComponentFunc,
}

impl Contract {
    /// Reads a component's imports and exports from its compiled type.
    pub fn of(engine: &Engine, ty: &types::Component) -> Contract {
        let imports = ty.imports(engine).filter_map(|(name, item)| interface(engine, name, &item.ty)).collect();
        let mut exports: Vec<Interface> =
            ty.exports(engine).filter_map(|(name, item)| interface(engine, name, &item.ty)).collect();
        let root: Vec<Function> = ty
            .exports(engine)
            .filter_map(|(name, item)| match item.ty {
                ComponentItem::ComponentFunc(ty) => Some(Function { name: name.to_string(), ty }),
                _ => None,
            })
            .collect();
        if !root.is_empty() {
            exports.push(Interface { name: String::new(), id: InterfaceId::parse(""), funcs: root });
        }
        Contract { imports, exports, source: None }
    }

    /// Notes the `.wasm` file this contract was read from.
    pub fn read_from(mut self, source: &Path) -> Contract {
        self.source = Some(source.to_path_buf());
        self
    }

    /// `function`'s signature and, if the build can be read for them, the
    /// named types it uses, each in full: what an argument error shows.
    pub fn expected(&self, interface: &str, function: &str, ty: &ComponentFunc) -> String {
        let named = self.source.as_deref().and_then(|source| named::read(source, Some(function)).ok());
        match named.as_ref().and_then(|n| Some((n, n.signature(interface, function)?))) {
            Some((n, signature)) => {
                let mut out = signature.to_string();
                for definition in &n.types {
                    out.push_str("\n    ");
                    out.push_str(definition);
                }
                out
            }
            None => signature(function, ty),
        }
    }

    /// The signature of `function` in `interface`, with its WIT type names
    /// if the build can be read for them, else by structure.
    pub fn display_signature(&self, interface: &Interface, function: &Function) -> String {
        self.source
            .as_deref()
            .and_then(|source| named::read(source, Some(&function.name)).ok())
            .and_then(|n| n.signature(&interface.name, &function.name).map(str::to_string))
            .unwrap_or_else(|| signature(&function.name, &function.ty))
    }

    /// The exported interfaces anyone may call (see [`is_public`]).
    pub fn public_exports(&self) -> impl Iterator<Item = &Interface> {
        self.exports.iter().filter(|e| is_public(&e.id))
    }

    /// The packages this component claims by exporting their interfaces
    /// (public ones): it owns each, if no other component claims it too.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        let mut seen = Vec::new();
        self.public_exports().map(|e| e.id.package.as_str()).filter(move |p| {
            let new = !seen.contains(p);
            if new {
                seen.push(*p);
            }
            new
        })
    }

    /// The exported interface with this name, exactly.
    pub fn export(&self, name: &str) -> Option<&Interface> {
        self.exports.iter().find(|i| i.name == name)
    }

    /// The exported interface of this package and name, whatever its version.
    pub fn export_like(&self, package: &str, interface: &str) -> Option<&Interface> {
        self.exports.iter().find(|i| i.id.package == package && i.id.interface == interface)
    }

    /// The version of the contract this component serves: the version of its
    /// first exported versioned interface outside `moat:platform`.
    pub fn version(&self) -> Option<&semver::Version> {
        self.exports.iter().filter(|i| i.id.package != "moat:platform").find_map(|i| i.id.version.as_ref())
    }
}

impl Interface {
    /// The function with this name.
    pub fn func(&self, name: &str) -> Option<&Function> {
        self.funcs.iter().find(|f| f.name == name)
    }
}

fn interface(engine: &Engine, name: &str, item: &ComponentItem) -> Option<Interface> {
    let ComponentItem::ComponentInstance(instance) = item else { return None };
    let funcs = instance
        .exports(engine)
        .filter_map(|(fname, e)| match e.ty {
            ComponentItem::ComponentFunc(ty) => Some(Function { name: fname.to_string(), ty }),
            _ => None,
        })
        .collect();
    Some(Interface { name: name.to_string(), id: InterfaceId::parse(name), funcs })
}

/// Checks that a provider's function can serve a caller that imports
/// `wanted`: every argument the caller sends is one the provider accepts,
/// and every result the provider returns is one the caller accepts. So a
/// newer provider may add cases to the variants it takes, never to those it
/// returns. Returns what does not fit, in words.
pub fn func_fits(wanted: &ComponentFunc, provided: &ComponentFunc) -> Result<(), String> {
    let (wp, pp): (Vec<_>, Vec<_>) = (wanted.params().collect(), provided.params().collect());
    if wp.len() != pp.len() {
        return Err(format!("takes {} parameters where {} are expected", pp.len(), wp.len()));
    }
    for ((wn, wt), (_, pt)) in wp.iter().zip(&pp) {
        accepts(pt, wt).map_err(|d| format!("parameter `{wn}`: {d}"))?;
    }
    let (wr, pr): (Vec<_>, Vec<_>) = (wanted.results().collect(), provided.results().collect());
    if wr.len() != pr.len() {
        return Err(format!("returns {} results where {} are expected", pr.len(), wr.len()));
    }
    for (w, p) in wr.iter().zip(&pr) {
        accepts(w, p).map_err(|d| format!("result: {d}"))?;
    }
    Ok(())
}

/// Checks that every value of type `sent` is a value the `receiver` type can
/// take: the same shape, where the receiver may know more variant and enum
/// cases and flags than the sender uses (values cross by case name, so the
/// order of cases does not matter). Says where the first difference is.
pub fn accepts(receiver: &Type, sent: &Type) -> Result<(), String> {
    let mismatch = || Err(format!("expected {}, found {}", describe(receiver), describe(sent)));
    match (receiver, sent) {
        (Type::List(a), Type::List(b)) => accepts(&a.ty(), &b.ty()).map_err(|d| format!("list element: {d}")),
        (Type::Option(a), Type::Option(b)) => accepts(&a.ty(), &b.ty()).map_err(|d| format!("option: {d}")),
        (Type::Result(a), Type::Result(b)) => {
            opt_accepts(a.ok(), b.ok()).map_err(|d| format!("result ok: {d}"))?;
            opt_accepts(a.err(), b.err()).map_err(|d| format!("result err: {d}"))
        }
        (Type::Record(a), Type::Record(b)) => {
            let (af, bf): (Vec<_>, Vec<_>) = (a.fields().collect(), b.fields().collect());
            let names = |f: &[types::Field<'_>]| f.iter().map(|f| f.name.to_string()).collect::<Vec<_>>();
            if names(&af) != names(&bf) {
                return Err(format!(
                    "record fields differ: expected ({}), found ({})",
                    names(&af).join(", "),
                    names(&bf).join(", ")
                ));
            }
            for (x, y) in af.iter().zip(&bf) {
                accepts(&x.ty, &y.ty).map_err(|d| format!("field `{}`: {d}", x.name))?;
            }
            Ok(())
        }
        (Type::Tuple(a), Type::Tuple(b)) => {
            let (at, bt): (Vec<_>, Vec<_>) = (a.types().collect(), b.types().collect());
            if at.len() != bt.len() {
                return mismatch();
            }
            for (i, (x, y)) in at.iter().zip(&bt).enumerate() {
                accepts(x, y).map_err(|d| format!("tuple element {i}: {d}"))?;
            }
            Ok(())
        }
        (Type::Variant(a), Type::Variant(b)) => {
            for case in b.cases() {
                let Some(known) = a.cases().find(|c| c.name == case.name) else {
                    return Err(format!("variant case `{}` is not known to the receiver", case.name));
                };
                opt_accepts(known.ty, case.ty).map_err(|d| format!("case `{}`: {d}", case.name))?;
            }
            Ok(())
        }
        (Type::Enum(a), Type::Enum(b)) => match b.names().find(|n| !a.names().any(|m| m == *n)) {
            Some(n) => Err(format!("enum case `{n}` is not known to the receiver")),
            None => Ok(()),
        },
        (Type::Flags(a), Type::Flags(b)) => match b.names().find(|n| !a.names().any(|m| m == *n)) {
            Some(n) => Err(format!("flag `{n}` is not known to the receiver")),
            None => Ok(()),
        },
        (Type::Own(_), _) | (Type::Borrow(_), _) | (Type::Future(_), _) | (Type::Stream(_), _) => {
            Err(format!("{} cannot cross between components through moat", describe(receiver)))
        }
        (a, b) if std::mem::discriminant(a) == std::mem::discriminant(b) && is_primitive(a) => Ok(()),
        _ => mismatch(),
    }
}

fn opt_accepts(receiver: Option<Type>, sent: Option<Type>) -> Result<(), String> {
    match (receiver, sent) {
        (None, None) => Ok(()),
        (Some(r), Some(s)) => accepts(&r, &s),
        (Some(r), None) => Err(format!("expected {}, found no payload", describe(&r))),
        (None, Some(s)) => Err(format!("expected no payload, found {}", describe(&s))),
    }
}

fn is_primitive(ty: &Type) -> bool {
    matches!(
        ty,
        Type::Bool
            | Type::S8
            | Type::U8
            | Type::S16
            | Type::U16
            | Type::S32
            | Type::U32
            | Type::S64
            | Type::U64
            | Type::Float32
            | Type::Float64
            | Type::Char
            | Type::String
            | Type::ErrorContext
    )
}

/// A type in WIT-like words: `record { product-id: string, price: u64 }`.
pub fn describe(ty: &Type) -> String {
    let mut out = String::new();
    write_type(&mut out, ty, usize::MAX);
    out
}

/// A function's signature in WIT-like words, short: `get-product(product-id: string) -> option<record {...}>`.
pub fn signature(name: &str, ty: &ComponentFunc) -> String {
    let params: Vec<String> = ty.params().map(|(n, t)| format!("{n}: {}", short(&t))).collect();
    let mut out = format!("{name}({})", params.join(", "));
    if let Some(result) = ty.results().next() {
        let _ = write!(out, " -> {}", short(&result));
    }
    out
}

/// Like `describe`, but records inside records are elided to `record {…}`.
fn short(ty: &Type) -> String {
    let mut out = String::new();
    write_type(&mut out, ty, 1);
    out
}

/// Writes `ty`, expanding records `depth` levels deep.
fn write_type(out: &mut String, ty: &Type, depth: usize) {
    let nested = |out: &mut String, t: &Type| write_type(out, t, depth);
    match ty {
        Type::Bool => out.push_str("bool"),
        Type::S8 => out.push_str("s8"),
        Type::U8 => out.push_str("u8"),
        Type::S16 => out.push_str("s16"),
        Type::U16 => out.push_str("u16"),
        Type::S32 => out.push_str("s32"),
        Type::U32 => out.push_str("u32"),
        Type::S64 => out.push_str("s64"),
        Type::U64 => out.push_str("u64"),
        Type::Float32 => out.push_str("f32"),
        Type::Float64 => out.push_str("f64"),
        Type::Char => out.push_str("char"),
        Type::String => out.push_str("string"),
        Type::List(l) => {
            out.push_str("list<");
            nested(out, &l.ty());
            out.push('>');
        }
        Type::Option(o) => {
            out.push_str("option<");
            nested(out, &o.ty());
            out.push('>');
        }
        Type::Result(r) => {
            out.push_str("result");
            match (r.ok(), r.err()) {
                (None, None) => {}
                (ok, err) => {
                    out.push('<');
                    match ok {
                        Some(t) => nested(out, &t),
                        None => out.push('_'),
                    }
                    if let Some(e) = err {
                        out.push_str(", ");
                        nested(out, &e);
                    }
                    out.push('>');
                }
            }
        }
        Type::Record(_) if depth == 0 => out.push_str("record {…}"),
        Type::Record(r) => {
            out.push_str("record { ");
            for (i, f) in r.fields().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{}: ", f.name);
                write_type(out, &f.ty, depth - 1);
            }
            out.push_str(" }");
        }
        Type::Tuple(t) => {
            out.push_str("tuple<");
            for (i, e) in t.types().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                nested(out, &e);
            }
            out.push('>');
        }
        Type::Variant(v) => {
            out.push_str("variant { ");
            for (i, c) in v.cases().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(c.name);
                if let Some(t) = &c.ty {
                    out.push('(');
                    nested(out, t);
                    out.push(')');
                }
            }
            out.push_str(" }");
        }
        Type::Enum(e) => {
            let names: Vec<&str> = e.names().collect();
            let _ = write!(out, "enum {{ {} }}", names.join(", "));
        }
        Type::Flags(f) => {
            let names: Vec<&str> = f.names().collect();
            let _ = write!(out, "flags {{ {} }}", names.join(", "));
        }
        Type::Own(_) => out.push_str("own<resource>"),
        Type::Borrow(_) => out.push_str("borrow<resource>"),
        Type::Future(_) => out.push_str("future"),
        Type::Stream(_) => out.push_str("stream"),
        Type::ErrorContext => out.push_str("error-context"),
        Type::Map(m) => {
            out.push_str("map<");
            nested(out, &m.key());
            out.push_str(", ");
            nested(out, &m.value());
            out.push('>');
        }
        Type::FixedLengthList(l) => {
            out.push_str("list<");
            nested(out, &l.ty());
            let _ = write!(out, ", {}>", l.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_matching() {
        let have = InterfaceId::parse("shop:product/catalog@1.1.0");
        assert!(have.serves(&InterfaceId::parse("shop:product/catalog@1.0.0")));
        assert!(!have.serves(&InterfaceId::parse("shop:product/catalog@1.2.0")));
        assert!(!have.serves(&InterfaceId::parse("shop:product/catalog@2.0.0")));
        assert!(!have.serves(&InterfaceId::parse("shop:product/events@1.0.0")));
        let zero = InterfaceId::parse("moat:platform/store@0.1.3");
        assert!(zero.serves(&InterfaceId::parse("moat:platform/store@0.1.0")));
        assert!(!zero.serves(&InterfaceId::parse("moat:platform/store@0.2.0")));
    }
}
