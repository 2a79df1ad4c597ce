//! A contract as its WIT writes it: signatures with the names of their
//! types (`get-product: func(product-id: product-id) -> option<product>`)
//! and each named type in full.
//!
//! Wasmtime's types are structural; the names are in the component binary
//! (a component keeps the names of the types its interfaces export), read
//! here with wit-parser's decoder. For any build, in any language, with no
//! WIT sources at hand.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use wit_parser::decoding::DecodedWasm;
use wit_parser::{Resolve, Type, TypeDefKind, TypeId, WorldItem};

use super::id::{InterfaceId, is_public};

/// A component's public contract as its WIT would write it.
pub struct Named {
    /// Each contract interface it exports, with its functions' signatures
    /// (`get-product: func(product-id: product-id) -> option<product>`).
    pub interfaces: Vec<(String, Vec<String>)>,
    /// The named types those use, each defined in full.
    pub types: Vec<String>,
}

/// Reads the contract of the component at `source` with its WIT type
/// names, only `function` if given.
pub fn read(source: &Path, function: Option<&str>) -> Result<Named> {
    let bytes = std::fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
    let (resolve, world) = match wit_parser::decoding::decode(&bytes)
        .with_context(|| format!("cannot read the WIT types of {}", source.display()))?
    {
        DecodedWasm::Component(resolve, world) => (resolve, world),
        DecodedWasm::WitPackage(..) => bail!("{} is a WIT package, not a component", source.display()),
    };
    let printer = Printer { resolve: &resolve };
    let mut used = BTreeSet::new();
    let mut interfaces = Vec::new();
    for (_, item) in &resolve.worlds[world].exports {
        let WorldItem::Interface { id, .. } = item else { continue };
        let Some(name) = resolve.id_of(*id) else { continue };
        if !is_public(&InterfaceId::parse(&name)) {
            continue;
        }
        let signatures: Vec<String> = resolve.interfaces[*id]
            .functions
            .values()
            .filter(|f| function.is_none_or(|wanted| f.name == wanted))
            .map(|f| {
                let params: Vec<String> =
                    f.params.iter().map(|p| format!("{}: {}", p.name, printer.name(&p.ty, &mut used))).collect();
                let result =
                    f.result.as_ref().map(|r| format!(" -> {}", printer.name(r, &mut used))).unwrap_or_default();
                format!("{}: func({}){result}", f.name, params.join(", "))
            })
            .collect();
        if !signatures.is_empty() {
            interfaces.push((name, signatures));
        }
    }
    // Each named type used, in full, and the named types those use.
    let mut shown = BTreeSet::new();
    let mut types = Vec::new();
    while let Some(id) = used.iter().find(|id| !shown.contains(*id)).copied() {
        shown.insert(id);
        types.push(printer.definition(id, &mut used));
    }
    Ok(Named { interfaces, types })
}

/// Writes WIT types as their WIT source would.
struct Printer<'a> {
    resolve: &'a Resolve,
}

impl Printer<'_> {
    /// A type where it is used: its name if it has one (noted in `used`),
    /// or its structure.
    fn name(&self, ty: &Type, used: &mut BTreeSet<TypeId>) -> String {
        let Type::Id(id) = ty else { return primitive(ty).to_string() };
        let def = &self.resolve.types[*id];
        if let Some(name) = &def.name {
            used.insert(self.origin(*id));
            return name.clone();
        }
        self.structure(&def.kind, used)
    }

    /// The type a `use` of it refers to: `use types.{order-id}` makes a
    /// type of the same name that is only the original under another roof.
    fn origin(&self, mut id: TypeId) -> TypeId {
        loop {
            let def = &self.resolve.types[id];
            match def.kind {
                TypeDefKind::Type(Type::Id(original)) if self.resolve.types[original].name == def.name => id = original,
                _ => return id,
            }
        }
    }

    fn structure(&self, kind: &TypeDefKind, used: &mut BTreeSet<TypeId>) -> String {
        let mut n = |t: &Type| self.name(t, used);
        match kind {
            TypeDefKind::List(t) => format!("list<{}>", n(t)),
            TypeDefKind::FixedLengthList(t, len) => format!("list<{}, {len}>", n(t)),
            TypeDefKind::Map(k, v) => format!("map<{}, {}>", n(k), n(v)),
            TypeDefKind::Option(t) => format!("option<{}>", n(t)),
            TypeDefKind::Result(r) => match (&r.ok, &r.err) {
                (None, None) => "result".into(),
                (Some(ok), None) => format!("result<{}>", n(ok)),
                (None, Some(err)) => format!("result<_, {}>", n(err)),
                (Some(ok), Some(err)) => format!("result<{}, {}>", n(ok), n(err)),
            },
            TypeDefKind::Tuple(t) => format!("tuple<{}>", t.types.iter().map(n).collect::<Vec<_>>().join(", ")),
            TypeDefKind::Future(t) => format!("future<{}>", t.as_ref().map(n).unwrap_or_default()),
            TypeDefKind::Stream(t) => format!("stream<{}>", t.as_ref().map(n).unwrap_or_default()),
            TypeDefKind::Type(t) => n(t),
            TypeDefKind::Handle(_) => "handle".into(),
            TypeDefKind::Resource => "resource".into(),
            TypeDefKind::Record(_)
            | TypeDefKind::Variant(_)
            | TypeDefKind::Enum(_)
            | TypeDefKind::Flags(_)
            | TypeDefKind::Unknown => "(anonymous)".into(),
        }
    }

    /// A named type's definition, on one line.
    fn definition(&self, id: TypeId, used: &mut BTreeSet<TypeId>) -> String {
        let def = &self.resolve.types[id];
        let name = def.name.clone().unwrap_or_default();
        let mut n = |t: &Type| self.name(t, used);
        match &def.kind {
            TypeDefKind::Record(r) => format!(
                "record {name} {{ {} }}",
                r.fields.iter().map(|f| format!("{}: {}", f.name, n(&f.ty))).collect::<Vec<_>>().join(", ")
            ),
            TypeDefKind::Variant(v) => format!(
                "variant {name} {{ {} }}",
                v.cases
                    .iter()
                    .map(|c| match &c.ty {
                        Some(t) => format!("{}({})", c.name, n(t)),
                        None => c.name.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            TypeDefKind::Enum(e) => {
                format!("enum {name} {{ {} }}", e.cases.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "))
            }
            TypeDefKind::Flags(f) => {
                format!("flags {name} {{ {} }}", f.flags.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "))
            }
            TypeDefKind::Resource => format!("resource {name}"),
            other => format!("type {name} = {}", self.structure(other, used)),
        }
    }
}

fn primitive(ty: &Type) -> &'static str {
    match ty {
        Type::Bool => "bool",
        Type::U8 => "u8",
        Type::U16 => "u16",
        Type::U32 => "u32",
        Type::U64 => "u64",
        Type::S8 => "s8",
        Type::S16 => "s16",
        Type::S32 => "s32",
        Type::S64 => "s64",
        Type::F32 => "f32",
        Type::F64 => "f64",
        Type::Char => "char",
        Type::String => "string",
        Type::ErrorContext => "error-context",
        Type::Id(_) => "type",
    }
}

impl Named {
    /// The signature of `function` of the interface named `interface`.
    pub fn signature(&self, interface: &str, function: &str) -> Option<&str> {
        let (_, signatures) = self.interfaces.iter().find(|(name, _)| name == interface)?;
        signatures.iter().map(String::as_str).find(|s| s.split(':').next() == Some(function))
    }
}
