//! One call-preparation path for every front door (the CLI, the control
//! API, calls from other hosts): find the function a user named among a
//! component's public exports, and read its arguments against its type.
//!
//! Only contract interfaces are public (`contract::is_public`): a
//! package's `handler` and `moat:platform/schema` are called by the host
//! alone, and exports outside any package (a toolchain's `init`) by no one.

use anyhow::{Result, bail};
use wasmtime::component::Val;
use wasmtime::component::types::ComponentFunc;

use crate::contract::{self, Contract, InterfaceId};
use crate::values;

/// An exported function, found by the name a user gave.
#[derive(Clone)]
pub struct FunctionRef {
    /// The component.
    pub component: String,
    /// The exported interface's full name.
    pub export: String,
    /// The function's name.
    pub func: String,
    /// Its type, to read arguments against.
    pub ty: ComponentFunc,
}

impl FunctionRef {
    /// `catalog.get-product`: the short form users type.
    pub fn display_name(&self) -> String {
        let iface = InterfaceId::parse(&self.export);
        if self.export.is_empty() { self.func.clone() } else { format!("{}.{}", iface.interface, self.func) }
    }

    /// The interface as a caller would import it.
    pub fn interface(&self) -> InterfaceId {
        InterfaceId::parse(&self.export)
    }
}

/// A call ready to run: the function and its arguments.
#[derive(Clone)]
pub struct Invocation {
    /// What to call.
    pub function: FunctionRef,
    /// With what.
    pub params: Vec<Val>,
}

impl Invocation {
    /// Reads `get-product("PROD001")` (WAVE) against `component`'s contract.
    pub fn wave(component: &str, contract: &Contract, call: &str) -> Result<Invocation> {
        let (name, args) = values::split_call(call)?;
        let function = find_function(component, contract, name)?;
        let expected = || contract.expected(&function.export, &function.func, &function.ty);
        let params = values::parse_args(name, args, &function.ty, expected)?;
        Ok(Invocation { function, params })
    }

    /// Reads `function` with its arguments in a JSON object by name
    /// (`values::json`) against `component`'s contract.
    pub fn json(component: &str, contract: &Contract, function: &str, args: &serde_json::Value) -> Result<Invocation> {
        let function = find_function(component, contract, function)?;
        let params = values::json::arguments(&function.ty, args).map_err(|errors| {
            let shown: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            anyhow::anyhow!(
                "the arguments of `{}` do not fit its signature {}:\n{}",
                function.display_name(),
                crate::contract::signature(&function.func, &function.ty),
                shown.join("\n")
            )
        })?;
        Ok(Invocation { function, params })
    }
}

/// Finds a public exported function by the name a user gave it:
/// `get-product`, `catalog.get-product` or `shop:product/catalog@1.0.0#get-product`.
pub fn find_function(component: &str, contract: &Contract, name: &str) -> Result<FunctionRef> {
    let (iface, func) = match name.rsplit_once('#').or_else(|| name.rsplit_once('.')) {
        Some((i, f)) => (Some(i), f),
        None => (None, name),
    };
    let names = |export: &contract::Interface| match iface {
        Some(i) => export.name == i || export.id.interface == i || export.id.unversioned() == i,
        None => true,
    };
    let mut found = Vec::new();
    let mut hidden = Vec::new();
    for export in &contract.exports {
        if let Some(f) = export.func(func).filter(|_| names(export)) {
            if contract::is_public(&export.id) {
                found.push(FunctionRef {
                    component: component.to_string(),
                    export: export.name.clone(),
                    func: f.name.clone(),
                    ty: f.ty.clone(),
                });
            } else {
                hidden.push(export);
            }
        }
    }
    match (found.len(), hidden.first()) {
        (1, _) => Ok(found.remove(0)),
        (0, Some(export)) => {
            let what = if export.id.interface == contract::HANDLER && export.id.package.contains(':') {
                format!(
                    "`{name}` is `{component}`'s handler of {} events: only the host calls it, to deliver them",
                    export.id.package
                )
            } else if export.id.package == "moat:platform" {
                format!("`{name}` is `{component}`'s {}: only the host calls it", export.id.interface)
            } else {
                format!("`{name}` is not part of any contract `{component}` serves")
            };
            bail!(
                "{what}. A component is called only through the contract interfaces it exports:\n{}",
                listing(contract)
            )
        }
        (0, None) => {
            let public: Vec<(&contract::Interface, &str)> = contract
                .public_exports()
                .flat_map(|export| export.funcs.iter().map(move |f| (export, f.name.as_str())))
                .collect();
            match crate::suggest::closest(func, public.iter().map(|(_, f)| *f)) {
                // A typo: the one function meant, not every signature.
                Some(meant) => {
                    let (export, f) = public.iter().find(|(_, f)| *f == meant).expect("a name from the list");
                    let f = export.func(f).expect("an exported function");
                    bail!(
                        "component `{component}` has no function `{name}`; did you mean `{meant}`?\n  {}.{}",
                        export.id.interface,
                        contract.display_signature(export, f)
                    )
                }
                None => bail!("component `{component}` has no function `{name}`; it exports:\n{}", listing(contract)),
            }
        }
        _ => {
            let names: Vec<String> = found.iter().map(|f| format!("{}#{}", f.export, f.func)).collect();
            bail!("`{name}` is ambiguous in `{component}`; name one of: {}", names.join(", "))
        }
    }
}

/// Every public exported function, one per line, with its signature (by
/// WIT type names where the build can be read for them).
pub fn listing(contract: &Contract) -> String {
    let named = contract.source.as_deref().and_then(|s| contract::named::read(s, None).ok());
    let mut lines = Vec::new();
    for export in contract.public_exports() {
        for f in &export.funcs {
            let signature = named
                .as_ref()
                .and_then(|n| n.signature(&export.name, &f.name).map(str::to_string))
                .unwrap_or_else(|| contract::signature(&f.name, &f.ty));
            lines.push(format!("  {}.{signature}", export.id.interface));
        }
    }
    if lines.is_empty() {
        return "  (nothing: it serves no contract interface)".into();
    }
    lines.join("\n")
}
