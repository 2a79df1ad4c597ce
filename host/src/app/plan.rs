//! Loading an app, before anything runs: read the manifest, compile every
//! component (through the cache), and wire them (`wiring::check`). Nothing
//! here touches the data directory but to read which builds were swapped in,
//! so bad input never touches data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::invoke::{FunctionRef, Invocation, find_function};
use crate::capability::Grants;
use crate::contract::Contract;
use crate::data_dir::Deployments;
use crate::engine::{Compiled, Runtime};
use crate::manifest::{ComponentSpec, Manifest};
use crate::wiring::{self, Member, Subscription, Wiring};

/// The components of a manifest, compiled and wired, not yet running.
pub struct Plan {
    pub(super) runtime: Runtime,
    pub(super) manifest: Manifest,
    /// In start order: every component after the components it calls.
    pub(super) parts: Vec<Part>,
    pub(super) wiring: Wiring,
    /// The data directory it was planned for.
    pub(super) data_dir: PathBuf,
}

/// One component of a plan.
pub struct Part {
    /// Its name in the manifest.
    pub name: String,
    /// The host it runs on, if not this one: then only its contract is
    /// used here, and it is reached through NATS.
    pub remote: Option<String>,
    /// The swapped-in build it runs instead of the manifest's, if any.
    pub swapped: Option<PathBuf>,
    /// Its manifest table.
    pub spec: ComponentSpec,
    /// Its compiled code.
    pub compiled: Compiled,
    /// What it imports and exports.
    pub contract: Contract,
    /// How each import is served.
    pub grants: Grants,
}

impl Plan {
    /// Compiles every component of `manifest` and wires them. Reads (never
    /// writes) `data_dir` for builds swapped in since the manifest named its own.
    pub fn new(manifest: Manifest, runtime: Runtime, data_dir: &Path) -> Result<Plan> {
        let deployments = Deployments::load(data_dir)?;
        let mut compiled = BTreeMap::new();
        let mut members = BTreeMap::new();
        let mut swapped = BTreeMap::new();
        for (name, spec) in &manifest.components {
            let mut path = manifest.wasm_path(spec);
            if deployments.0.contains_key(name)
                && manifest.is_local(spec)
                && let Some(build) = deployments.build_for(data_dir, name, &file_digest(&path).unwrap_or_default())
            {
                swapped.insert(name.clone(), build.clone());
                path = build;
            }
            let c = runtime
                .load(&path)
                .with_context(|| format!("loading component `{name}` ({})", manifest.path.display()))?;
            let contract = Contract::of(runtime.engine(), &c.component.component_type()).read_from(&c.source);
            members.insert(name.clone(), Member { contract, strict: spec.strict });
            compiled.insert(name.clone(), c);
        }
        let wiring = wiring::check(&members).map_err(|refusals| anyhow::anyhow!("{}", wiring::render(&refusals)))?;
        let parts = wiring
            .start_order
            .iter()
            .map(|name| {
                let spec = manifest.components[name].clone();
                Part {
                    remote: (!manifest.is_local(&spec)).then(|| spec.host.clone().unwrap_or_default()),
                    swapped: swapped.remove(name),
                    compiled: compiled.remove(name).expect("compiled every component"),
                    contract: members.remove(name).expect("read every contract").contract,
                    grants: wiring.grants[name].clone(),
                    name: name.clone(),
                    spec,
                }
            })
            .collect();
        Ok(Plan { runtime, manifest, parts, wiring, data_dir: data_dir.to_path_buf() })
    }

    /// The data directory it was planned for.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Who handles whose events.
    pub fn subscriptions(&self) -> &[Subscription] {
        &self.wiring.subscriptions
    }

    /// The owner of each package.
    pub fn owners(&self) -> &BTreeMap<String, String> {
        &self.wiring.owners
    }

    /// The components, in start order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Finds the public function a user named: `get-product`,
    /// `catalog.get-product` or `shop:product/catalog@1.0.0#get-product`.
    pub fn function(&self, component: &str, name: &str) -> Result<FunctionRef> {
        find_function(component, &self.part(component)?.contract, name)
    }

    /// Reads a call written in WAVE, `get-product("PROD001")`.
    pub fn invocation(&self, component: &str, call: &str) -> Result<Invocation> {
        Invocation::wave(component, &self.part(component)?.contract, call)
    }

    /// Reads `function` with its arguments as a JSON object by name.
    pub fn invocation_json(&self, component: &str, function: &str, args: &serde_json::Value) -> Result<Invocation> {
        Invocation::json(component, &self.part(component)?.contract, function, args)
    }

    /// A component by name, or an error listing the components.
    pub fn part(&self, component: &str) -> Result<&Part> {
        match self.parts.iter().find(|p| p.name == component) {
            Some(part) => Ok(part),
            None => {
                let names: Vec<&str> = self.manifest.components.keys().map(String::as_str).collect();
                let hint = crate::suggest::did_you_mean(component, names.iter().copied());
                bail!(
                    "no component `{component}` in {}; it has: {}{hint}",
                    self.manifest.path.display(),
                    names.join(", ")
                )
            }
        }
    }
}

/// SHA-256 of a file, hex.
pub(super) fn file_digest(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(crate::engine::sha256(&bytes))
}
