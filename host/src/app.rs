//! An app: the components a manifest names, wired together.
//!
//! Loading happens in two steps so that bad input never touches data:
//! [`Plan::new`] reads the manifest, compiles every component and checks that
//! each import is granted, each call has a provider, with no cycles, and
//! each event handler takes what its publisher publishes;
//! [`Plan::open`] then locks the data directory, opens each database and
//! starts the components, providers before their callers.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasmtime::component::Val;
use wasmtime::component::types::ComponentFunc;

use crate::calls::Provider;
use crate::component::{CallError, Component, ComponentStatus, Version};
use crate::contract::{self, Contract};
use crate::engine::{Compiled, Runtime};
use crate::events::{self, Dispatcher, RouteStatus, Settled, Signal, Subscription};
use crate::linker::{self, Grant, Grants};
use crate::manifest::{ComponentSpec, Manifest};
use crate::remote::{self, Nats, RemoteComponent};
use crate::swap::Deployments;

/// The components of a manifest, compiled and checked, not yet running.
pub struct Plan {
    runtime: Runtime,
    manifest: Manifest,
    /// In start order: every component after the components it calls.
    parts: Vec<Part>,
    /// Who handles whose events.
    subscriptions: Vec<Subscription>,
    /// The data directory it was planned for.
    data_dir: PathBuf,
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

/// An exported function, found by the name a user gave.
#[derive(Clone)]
pub struct FunctionRef {
    /// The component.
    pub component: String,
    /// The exported interface's full name ("" for a root function).
    pub export: String,
    /// The function's name.
    pub func: String,
    /// Its type, to read arguments against.
    pub ty: ComponentFunc,
}

impl FunctionRef {
    /// `catalog.get-product`: the short form users type.
    pub fn display_name(&self) -> String {
        let iface = contract::InterfaceId::parse(&self.export);
        if self.export.is_empty() { self.func.clone() } else { format!("{}.{}", iface.interface, self.func) }
    }
}

impl Plan {
    /// Compiles every component of `manifest` and checks the wiring. Reads
    /// (never writes) `data_dir` for builds swapped in since the manifest
    /// named its own.
    pub fn new(manifest: Manifest, runtime: Runtime, data_dir: &Path) -> Result<Plan> {
        let deployments = Deployments::load(data_dir)?;
        let mut compiled = BTreeMap::new();
        let mut contracts = BTreeMap::new();
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
            let ty = c.component.component_type();
            contracts.insert(name.clone(), Contract::of(runtime.engine(), &ty));
            compiled.insert(name.clone(), c);
        }

        let mut grants = BTreeMap::new();
        let mut refusals = Vec::new();
        for (name, spec) in &manifest.components {
            match linker::grant(name, &contracts[name], spec.strict, &contracts) {
                Ok(g) => {
                    grants.insert(name.clone(), g);
                }
                Err(e) => refusals.push(format!("{e:#}")),
            }
        }
        if !refusals.is_empty() {
            bail!("{}", refusals.join("\n"));
        }

        let named: Vec<(&str, &Contract, &Grants)> =
            grants.iter().map(|(name, g)| (name.as_str(), &contracts[name], g)).collect();
        let subscriptions =
            events::subscriptions(&named).map_err(|problems| anyhow::anyhow!("{}", problems.join("\n")))?;

        let order = start_order(&grants)?;
        let parts = order
            .into_iter()
            .map(|name| Part {
                remote: (!manifest.is_local(&manifest.components[&name]))
                    .then(|| manifest.components[&name].host.clone().unwrap_or_default()),
                swapped: swapped.remove(&name),
                spec: manifest.components[&name].clone(),
                compiled: compiled.remove(&name).expect("compiled every component"),
                contract: contracts.remove(&name).expect("read every contract"),
                grants: grants.remove(&name).expect("granted every component"),
                name,
            })
            .collect();
        Ok(Plan { runtime, manifest, parts, subscriptions, data_dir: data_dir.to_path_buf() })
    }

    /// The data directory it was planned for.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Who handles whose events.
    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    /// The components, in start order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Finds the function a user named: `get-product`, `catalog.get-product`
    /// or `shop:product/catalog@1.0.0#get-product`.
    pub fn function(&self, component: &str, name: &str) -> Result<FunctionRef> {
        let Some(part) = self.parts.iter().find(|p| p.name == component) else {
            let names: Vec<&str> = self.manifest.components.keys().map(String::as_str).collect();
            bail!("no component `{component}` in {}; it has: {}", self.manifest.path.display(), names.join(", "));
        };
        find_function(component, &part.contract, name)
    }

    /// Locks the data directory (waiting for another one-shot moat to finish
    /// with it), opens every component's database there and starts them.
    pub fn open(self) -> Result<App> {
        self.open_with(Wait::Yes)
    }

    /// Like [`Plan::open`], but refuses at once if another process holds
    /// the data directory: what a long-running host wants.
    pub fn open_now(self) -> Result<App> {
        self.open_with(Wait::No)
    }

    fn open_with(self, wait: Wait) -> Result<App> {
        let data_dir = self.data_dir.clone();
        let data_dir = data_dir.as_path();
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let lock = DataLock::acquire(data_dir, wait)?;
        let engine = self.runtime.engine().clone();
        let signal = Arc::new(Signal::default());
        let nats = self.manifest.nats.as_ref().map(Nats::connect).transpose()?;
        let mut components: BTreeMap<String, Arc<Component>> = BTreeMap::new();
        let mut remotes: BTreeMap<String, Remote> = BTreeMap::new();
        for part in self.parts {
            if part.remote.is_some() {
                let nats = nats.clone().expect("a remote component implies [nats]");
                let timeout = Duration::from_millis(part.spec.limits.call_timeout_ms);
                let remote =
                    Remote { contract: part.contract, client: RemoteComponent::new(nats, &part.name, timeout) };
                remotes.insert(part.name, remote);
                continue;
            }
            let linker = linker::build(&engine, &part.grants, |provider| match components.get(provider) {
                Some(c) => Provider::Local(c.clone()),
                None => Provider::Remote(
                    remotes[provider].client.with_timeout(Duration::from_millis(part.spec.limits.call_timeout_ms)),
                ),
            })?;
            let pre = linker
                .instantiate_pre(&part.compiled.component)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("linking component `{}`", part.name))?;
            let version = Version { compiled: part.compiled, contract: part.contract, grants: part.grants, pre };
            let db_path = db_path(data_dir, &part.name);
            let component = Component::start(&engine, &part.name, part.spec, &db_path, version, signal.clone())?;
            components.insert(part.name, Arc::new(component));
        }
        // Local publishers to local subscribers go through the dispatcher;
        // events from other hosts come through JetStream.
        let (local, incoming): (Vec<Subscription>, Vec<Subscription>) = self
            .subscriptions
            .iter()
            .filter(|s| components.contains_key(&s.subscriber))
            .cloned()
            .partition(|s| components.contains_key(&s.publisher));
        let dispatcher = Dispatcher::new(&local, &components, signal.clone(), nats.is_some())?;
        if let Some(nats) = &nats {
            let publishers = components
                .values()
                .map(|c| (c.clone(), publish_topics(&c.version().grants)))
                .filter(|(_, topics)| !topics.is_empty())
                .collect();
            nats.start(remote::Wiring { components: components.clone(), publishers, incoming, signal });
        }
        Ok(App {
            dispatcher,
            nats,
            remotes,
            runtime: self.runtime,
            manifest: self.manifest,
            data_dir: data_dir.to_path_buf(),
            components,
            swapping: Mutex::new(()),
            _lock: lock,
        })
    }
}

/// A component on another host, as this one knows it.
pub(crate) struct Remote {
    /// Its contract, from the build the manifest names.
    pub contract: Contract,
    /// How to call it.
    pub client: RemoteComponent,
}

/// The topics a component's grants let it publish.
fn publish_topics(grants: &Grants) -> Vec<String> {
    grants
        .iter()
        .filter_map(|(_, g)| match g {
            Grant::Publish { topic } => Some(topic.clone()),
            _ => None,
        })
        .collect()
}

/// A running app.
pub struct App {
    /// Before the components: its outbox readers close first (see `Route`).
    dispatcher: Dispatcher,
    /// The connection to other hosts, when the app spans hosts. Before the
    /// components: its tasks stop first.
    nats: Option<Arc<Nats>>,
    /// Components that run on other hosts.
    remotes: BTreeMap<String, Remote>,
    pub(crate) runtime: Runtime,
    manifest: Manifest,
    data_dir: PathBuf,
    components: BTreeMap<String, Arc<Component>>,
    /// Held during a swap: one at a time.
    pub(crate) swapping: Mutex<()>,
    _lock: DataLock,
}

impl App {
    /// Calls a function as one unit of work of its component, here or on
    /// the host that runs it.
    pub fn call(&self, f: &FunctionRef, params: &[Val]) -> Result<Vec<Val>, CallError> {
        if let Some(remote) = self.remotes.get(&f.component) {
            let results: Vec<_> = f.ty.results().collect();
            let id = contract::InterfaceId::parse(&f.export);
            return remote.client.call(&id, &f.func, params, &results).map_err(|source| CallError::Host {
                component: f.component.clone(),
                function: crate::component::qualified(&f.export, &f.func),
                source,
            });
        }
        let component = self.components.get(&f.component).expect("a FunctionRef names a loaded component");
        component.call(&f.export, &f.func, params)
    }

    /// Finds the function a user named, as [`Plan::function`] does.
    pub fn function(&self, component: &str, name: &str) -> Result<FunctionRef> {
        if let Some(remote) = self.remotes.get(component) {
            return find_function(component, &remote.contract, name);
        }
        let Some(c) = self.components.get(component) else {
            let names: Vec<&str> = self.manifest.components.keys().map(String::as_str).collect();
            bail!("no component `{component}` in {}; it has: {}", self.manifest.path.display(), names.join(", "));
        };
        find_function(component, &c.version().contract, name)
    }

    /// Calls a function written in WAVE, `get-product("PROD001")`.
    pub fn call_wave(&self, component: &str, call: &str) -> Result<Vec<Val>> {
        let (name, args) = crate::values::split_call(call)?;
        let f = self.function(component, name)?;
        let params = crate::values::parse_args(name, args, &f.ty)?;
        Ok(self.call(&f, &params)?)
    }

    /// A component by name.
    pub fn component(&self, name: &str) -> Option<&Arc<Component>> {
        self.components.get(name)
    }

    /// A component by name, or an error listing the components.
    pub fn require(&self, name: &str) -> Result<&Arc<Component>> {
        self.components.get(name).with_context(|| {
            let names: Vec<&str> = self.components.keys().map(String::as_str).collect();
            format!("no component `{name}` in {}; it has: {}", self.manifest.path.display(), names.join(", "))
        })
    }

    /// Every component, by name.
    pub fn components(&self) -> impl Iterator<Item = &Arc<Component>> {
        self.components.values()
    }

    pub(crate) fn component_map(&self) -> BTreeMap<String, Arc<Component>> {
        self.components.clone()
    }

    /// SHA-256 of the build the manifest names for `name`.
    pub(crate) fn manifest_digest(&self, name: &str) -> Result<String> {
        let spec = &self.manifest.components[name];
        file_digest(&self.manifest.wasm_path(spec))
    }

    /// Where every component and subscription stands.
    pub fn status(&self) -> Result<Status> {
        Ok(Status {
            data_dir: self.data_dir.clone(),
            components: self.components().map(|c| c.status()).collect(),
            subscriptions: self.dispatcher.status()?,
            nats: self.nats.as_ref().map(|n| n.status()),
        })
    }

    /// The event dispatcher.
    pub fn events(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// Delivers every pending event (and those they cause), retries
    /// included, for at most `limit`. Across hosts, waits until this host's
    /// events are in JetStream; other hosts apply them on their own time.
    pub fn settle(&self, limit: Duration) -> Result<Settled> {
        let mut settled = self.dispatcher.settle(limit)?;
        if let Some(nats) = &self.nats {
            // A healthy NATS takes milliseconds; an absent one should not hold
            // a command for long: the outbox keeps the events for later.
            if !nats.flush_relays(limit.min(Duration::from_secs(5))) {
                tracing::warn!(
                    "NATS has not taken this host's latest events yet; they wait in the outbox and are relayed when it answers"
                );
                settled.complete = false;
            }
        }
        Ok(settled)
    }

    /// The connection to other hosts, if the app spans hosts.
    pub fn nats(&self) -> Option<&Arc<Nats>> {
        self.nats.as_ref()
    }

    pub(crate) fn remotes(&self) -> &BTreeMap<String, Remote> {
        &self.remotes
    }

    /// Who serves calls to `name`, for a caller with this deadline.
    pub(crate) fn provider(&self, name: &str, timeout: Duration) -> Provider {
        match self.components.get(name) {
            Some(c) => Provider::Local(c.clone()),
            None => Provider::Remote(self.remotes[name].client.with_timeout(timeout)),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

/// Where a component's database lives in a data directory.
pub fn db_path(data_dir: &Path, component: &str) -> PathBuf {
    data_dir.join(format!("{component}.db"))
}

/// Finds an exported function by the name a user gave it.
fn find_function(component: &str, contract: &Contract, name: &str) -> Result<FunctionRef> {
    let (iface, func) = match name.rsplit_once('#').or_else(|| name.rsplit_once('.')) {
        Some((i, f)) => (Some(i), f),
        None => (None, name),
    };
    let mut found = Vec::new();
    for export in &contract.exports {
        let matches_iface = match iface {
            Some(i) => export.name == i || export.id.interface == i || export.id.unversioned() == i,
            // Unqualified names search the component's own contracts, not
            // what the platform asks of it (`migrate`).
            None => export.id.package != "moat:platform",
        };
        if let Some(f) = export.func(func).filter(|_| matches_iface) {
            found.push(FunctionRef {
                component: component.to_string(),
                export: export.name.clone(),
                func: f.name.clone(),
                ty: f.ty.clone(),
            });
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("component `{component}` has no function `{name}`; it exports:\n{}", listing(contract)),
        _ => {
            let names: Vec<String> = found.iter().map(|f| format!("{}#{}", f.export, f.func)).collect();
            bail!("`{name}` is ambiguous in `{component}`; name one of: {}", names.join(", "))
        }
    }
}

/// Every exported function, one per line, with its signature.
fn listing(contract: &Contract) -> String {
    let mut lines = Vec::new();
    for export in &contract.exports {
        for f in &export.funcs {
            let prefix = if export.name.is_empty() { String::new() } else { format!("{}.", export.id.interface) };
            lines.push(format!("  {prefix}{}", contract::signature(&f.name, &f.ty)));
        }
    }
    lines.join("\n")
}

/// SHA-256 of a file, hex.
fn file_digest(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(crate::engine::sha256(&bytes))
}

/// Where an app stands, for `moat status`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Each component.
    pub components: Vec<ComponentStatus>,
    /// Each subscription, with how far behind it is.
    pub subscriptions: Vec<RouteStatus>,
    /// NATS, when the app spans hosts.
    pub nats: Option<remote::NatsStatus>,
}

/// Orders components so that every provider starts before its callers, or
/// refuses a cycle of calls, naming it.
pub(crate) fn start_order(grants: &BTreeMap<String, Grants>) -> Result<Vec<String>> {
    let calls = |name: &str| -> Vec<String> {
        grants[name]
            .iter()
            .filter_map(|(_, g)| match g {
                Grant::Call { provider, .. } => Some(provider.clone()),
                _ => None,
            })
            .collect()
    };
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        calls: &dyn Fn(&str) -> Vec<String>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = path.iter().position(|p| p == name).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(name.to_string());
                bail!(
                    "components call each other in a cycle: {}. Calls between components must not loop; \
                     let one side learn of the other through events instead",
                    cycle.join(" -> ")
                );
            }
            None => {}
        }
        marks.insert(name.to_string(), Mark::Visiting);
        path.push(name.to_string());
        for provider in calls(name) {
            visit(&provider, calls, marks, path, order)?;
        }
        path.pop();
        marks.insert(name.to_string(), Mark::Done);
        order.push(name.to_string());
        Ok(())
    }
    let (mut marks, mut order) = (BTreeMap::new(), Vec::new());
    for name in grants.keys() {
        visit(name, &calls, &mut marks, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// Whether another process holds the data directory's lock.
pub fn data_dir_in_use(dir: &Path) -> bool {
    let Ok(file) = File::options().write(true).open(dir.join("moat.lock")) else { return false };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// An exclusive lock on a data directory: one host per directory, so two
/// processes never write one database.
struct DataLock {
    _file: File,
}

/// Whether to wait for a data directory another process holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    Yes,
    No,
}

impl DataLock {
    const WAIT: Duration = Duration::from_secs(30);

    fn acquire(dir: &Path, wait: Wait) -> Result<DataLock> {
        let path = dir.join("moat.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let start = Instant::now();
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(DataLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if wait == Wait::No {
                        let host = std::fs::read_to_string(dir.join(crate::control::ADDR_FILE)).ok();
                        bail!(
                            "the data directory {} is in use by another moat process{}; stop it first, or use another --data directory",
                            dir.display(),
                            host.map(|a| format!(" (a host serving at {})", a.trim())).unwrap_or_default()
                        );
                    }
                    if start.elapsed() > Self::WAIT {
                        bail!(
                            "another moat process has held the data directory {} for {}s; stop it, or use another --data directory",
                            dir.display(),
                            Self::WAIT.as_secs()
                        );
                    }
                    if !said {
                        tracing::warn!("waiting for another moat process using {}", dir.display());
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
        }
    }
}
