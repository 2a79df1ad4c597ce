//! `moat describe COMPONENT [FUNCTION]`: the contract a component serves,
//! written with the WIT names of its types, and each type in full.
//!
//! The names come from the component itself (a component's binary keeps
//! the names of the types its interfaces export), so this works for any
//! build, in any language, without its WIT sources.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::{Context as _, Result, bail};
use wit_parser::decoding::DecodedWasm;
use wit_parser::{Resolve, Type, TypeDefKind, TypeId, WorldItem};

use super::context::{Context, Exit};
use crate::contract;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  moat describe order\n  moat describe order place-order")]
pub struct Args {
    /// The component, as named in moat.toml.
    component: String,

    /// Only this function (and the types it uses).
    function: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<Exit> {
    ctx.here_only("describe", "reads the components' files on this machine")?;
    let plan = ctx.plan()?;
    let part = plan.parts().iter().find(|p| p.name == args.component);
    let Some(part) = part else {
        let names: Vec<&str> = plan.parts().iter().map(|p| p.name.as_str()).collect();
        let hint = crate::suggest::did_you_mean(&args.component, names.iter().copied());
        bail!(
            "no component `{}` in {}; it has: {}{hint}",
            args.component,
            plan.manifest().path.display(),
            names.join(", ")
        );
    };
    let bytes = std::fs::read(&part.compiled.source)
        .with_context(|| format!("cannot read {}", part.compiled.source.display()))?;
    let (resolve, world) = match wit_parser::decoding::decode(&bytes)
        .with_context(|| format!("cannot read the WIT types of {}", part.compiled.source.display()))?
    {
        DecodedWasm::Component(resolve, world) => (resolve, world),
        DecodedWasm::WitPackage(..) => bail!("{} is a WIT package, not a component", part.compiled.source.display()),
    };
    let printer = Printer { resolve: &resolve };
    let mut out = String::new();
    let mut used = BTreeSet::new();
    let mut found = false;
    let mut listed = Vec::new();
    for (_, item) in &resolve.worlds[world].exports {
        let WorldItem::Interface { id, .. } = item else { continue };
        let Some(name) = resolve.id_of(*id) else { continue };
        if !contract::is_public(&contract::InterfaceId::parse(&name)) {
            continue;
        }
        let interface = &resolve.interfaces[*id];
        let functions: Vec<_> = interface
            .functions
            .values()
            .filter(|f| args.function.as_deref().is_none_or(|wanted| f.name == wanted))
            .collect();
        if functions.is_empty() {
            continue;
        }
        found = true;
        let _ = writeln!(out, "{name}");
        let mut signatures = Vec::new();
        for f in functions {
            let params: Vec<String> =
                f.params.iter().map(|p| format!("{}: {}", p.name, printer.name(&p.ty, &mut used))).collect();
            let result = f.result.as_ref().map(|r| format!(" -> {}", printer.name(r, &mut used))).unwrap_or_default();
            let signature = format!("{}: func({}){result}", f.name, params.join(", "));
            let _ = writeln!(out, "  {signature};");
            signatures.push(signature);
        }
        out.push('\n');
        listed.push(serde_json::json!({ "name": name, "functions": signatures }));
    }
    if !found {
        match &args.function {
            Some(f) => {
                bail!(
                    "`{}` serves no function `{f}`: `moat describe {}` lists what it serves",
                    args.component,
                    args.component
                )
            }
            None => bail!("`{}` serves no contract interface: nothing can call it", args.component),
        }
    }
    // Each named type used, in full, and the named types those use.
    let mut shown = BTreeSet::new();
    let mut types = String::new();
    while let Some(id) = used.iter().find(|id| !shown.contains(*id)).copied() {
        shown.insert(id);
        let _ = writeln!(types, "  {}", printer.definition(id, &mut used));
    }
    if ctx.json {
        let json = serde_json::json!({
            "component": args.component,
            "interfaces": listed,
            "types": types.lines().map(str::trim).collect::<Vec<_>>(),
        });
        println!("{json}");
        return Ok(Exit::Ok);
    }
    if !types.is_empty() {
        let _ = write!(out, "types:\n{types}");
    }
    print!("{out}");
    Ok(Exit::Ok)
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
