//! The running app: opening the data directory and starting the
//! components ([`Plan::open`]), then calling into them, delivering their
//! events and reporting where they stand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasmtime::component::Val;

use super::invoke::{FunctionRef, Invocation, find_function};
use super::plan::Plan;
use crate::capability::calls::{Answer, CallOptions, Callee};
use crate::capability::publish::Signal;
use crate::component::{CallError, Component, ComponentStatus, Version};
use crate::contract::Contract;
use crate::data_dir::{self, Acquired, DataLock};
use crate::engine::Runtime;
use crate::events::{Dispatcher, RouteStatus, Settled, Subscription};
use crate::manifest::Manifest;
use crate::remote::{self, Nats, RemoteComponent};
use crate::wiring::Wiring;
use crate::{capability, linker};

/// A host came up and serves the data directory while a one-shot command
/// waited for it: the command should go through that host.
#[derive(Debug, thiserror::Error)]
#[error("a moat host now serves the data directory, at {0}")]
pub struct ServedElsewhere(pub String, pub Option<String>);

impl Plan {
    /// Locks the data directory (waiting for another one-shot moat to finish
    /// with it), opens every component's database there and starts them.
    /// If a host comes up meanwhile, fails with [`ServedElsewhere`].
    pub fn open(self) -> Result<App> {
        self.open_with(true)
    }

    /// Like [`Plan::open`], but refuses at once if another process holds
    /// the data directory: what a long-running host wants.
    pub fn open_now(self) -> Result<App> {
        self.open_with(false)
    }

    fn open_with(self, wait: bool) -> Result<App> {
        let data_dir = self.data_dir.clone();
        data_dir::create(&data_dir)?;
        let lock = match DataLock::acquire(&data_dir, wait)? {
            Acquired::Locked(lock) => lock,
            Acquired::Served(addr, token) => bail!(ServedElsewhere(addr, token)),
        };
        let engine = self.runtime.engine().clone();
        let signal = Arc::new(Signal::default());
        let nats = self.manifest.nats.as_ref().map(Nats::connect).transpose()?;
        let mut components: BTreeMap<String, Arc<Component>> = BTreeMap::new();
        let mut remotes: BTreeMap<String, Remote> = BTreeMap::new();
        for part in self.parts {
            if part.remote.is_some() {
                let nats = nats.clone().expect("a remote component implies [nats]");
                let client = RemoteComponent::new(nats.connection().clone(), &part.name);
                remotes.insert(part.name, Remote { contract: part.contract, client });
                continue;
            }
            let linker = linker::build(&engine, &part.grants, |provider| callee(&components, &remotes, provider))?;
            let pre = linker
                .instantiate_pre(&part.compiled.component)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("linking component `{}`", part.name))?;
            let version = Version::new(part.compiled, part.contract, part.grants, pre);
            let db_path = data_dir::db_path(&data_dir, &part.name);
            let component = Component::start(&engine, &part.name, part.spec, &db_path, version, signal.clone())?;
            components.insert(part.name, Arc::new(component));
        }
        // Local publishers to local subscribers go through the dispatcher;
        // events from other hosts come through JetStream.
        let (local, incoming) = split_subscriptions(&self.wiring.subscriptions, &components);
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
            data_dir,
            components,
            wiring: Mutex::new(self.wiring),
            swapping: Mutex::new(()),
            swaps: Mutex::default(),
            _lock: lock,
        })
    }
}

/// Who serves calls to `provider`: the component here, or its host through NATS.
fn callee(
    components: &BTreeMap<String, Arc<Component>>,
    remotes: &BTreeMap<String, Remote>,
    provider: &str,
) -> Arc<dyn Callee> {
    match components.get(provider) {
        Some(c) => c.clone(),
        None => Arc::new(remotes[provider].client.clone()),
    }
}

/// Subscriptions between local components, and those of local subscribers
/// to publishers on other hosts.
pub(super) fn split_subscriptions(
    all: &[Subscription],
    components: &BTreeMap<String, Arc<Component>>,
) -> (Vec<Subscription>, Vec<Subscription>) {
    all.iter()
        .filter(|s| components.contains_key(&s.subscriber))
        .cloned()
        .partition(|s| components.contains_key(&s.publisher))
}

/// A component on another host, as this one knows it.
pub(crate) struct Remote {
    /// Its contract, from the build the manifest names.
    pub contract: Contract,
    /// How to call it.
    pub client: RemoteComponent,
}

/// The topics a component's grants let it publish.
fn publish_topics(grants: &capability::Grants) -> Vec<String> {
    grants
        .iter()
        .filter_map(|(_, g)| match g {
            capability::Grant::Publish { topic } => Some(topic.clone()),
            _ => None,
        })
        .collect()
}

/// A running app.
pub struct App {
    /// Before the components: its outbox readers close first.
    pub(super) dispatcher: Dispatcher,
    /// The connection to other hosts, when the app spans hosts. Before the
    /// components: its tasks stop first.
    nats: Option<Arc<Nats>>,
    /// Components that run on other hosts.
    pub(super) remotes: BTreeMap<String, Remote>,
    pub(crate) runtime: Runtime,
    pub(super) manifest: Manifest,
    data_dir: PathBuf,
    pub(super) components: BTreeMap<String, Arc<Component>>,
    /// The app as wired now: what a swap is checked against.
    pub(super) wiring: Mutex<Wiring>,
    /// Held during a swap: one at a time.
    pub(super) swapping: Mutex<()>,
    /// Swaps by component and outcome: how many, and their seconds summed.
    pub(super) swaps: Mutex<BTreeMap<(String, &'static str), SwapCount>>,
    _lock: DataLock,
}

impl App {
    /// Reads a call written in WAVE, `get-product("PROD001")`, against the
    /// contract `component` serves now.
    pub fn invocation(&self, component: &str, call: &str) -> Result<Invocation> {
        self.with_contract(component, |c| Invocation::wave(component, c, call))?
    }

    /// Reads a function and its arguments in JSON, as [`Plan::invocation_json`] does.
    pub fn invocation_json(&self, component: &str, function: &str, args: &serde_json::Value) -> Result<Invocation> {
        self.with_contract(component, |c| Invocation::json(component, c, function, args))?
    }

    /// Runs an invocation as one unit of work of its component, here or on
    /// the host that runs it.
    pub fn invoke(&self, invocation: &Invocation) -> Result<Vec<Val>, CallError> {
        self.call(&invocation.function, &invocation.params)
    }

    /// Runs an invocation with options (a request id: at most once).
    pub fn invoke_with(&self, invocation: &Invocation, options: &CallOptions) -> Result<Answer, CallError> {
        self.call_with(&invocation.function, &invocation.params, options)
    }

    /// Calls a public function as one unit of work of its component, here
    /// or on the host that runs it.
    pub fn call(&self, f: &FunctionRef, params: &[Val]) -> Result<Vec<Val>, CallError> {
        self.call_with(f, params, &CallOptions::default()).map(|a| a.results)
    }

    /// Like [`App::call`], with options.
    pub fn call_with(&self, f: &FunctionRef, params: &[Val], options: &CallOptions) -> Result<Answer, CallError> {
        if let Some(remote) = self.remotes.get(&f.component) {
            return match remote.client.call_import(&f.interface(), &f.func, &f.ty, params, options) {
                Ok(answer) => Ok(answer),
                Err(source) => {
                    let function = crate::component::qualified(&f.export, &f.func);
                    Err(remote_error(&f.component, function, source, options))
                }
            };
        }
        let component = self.components.get(&f.component).expect("a FunctionRef names a loaded component");
        component.call_with(&f.export, &f.func, params, options)
    }

    /// Finds the public function a user named, as [`Plan::function`] does.
    pub fn function(&self, component: &str, name: &str) -> Result<FunctionRef> {
        self.with_contract(component, |c| find_function(component, c, name))?
    }

    /// Calls a function written in WAVE, `get-product("PROD001")`.
    pub fn call_wave(&self, component: &str, call: &str) -> Result<Vec<Val>> {
        let invocation = self.invocation(component, call)?;
        Ok(self.invoke(&invocation)?)
    }

    /// Every component's contract as it serves it now, here or on its
    /// host, by name.
    pub fn contracts(&self) -> Vec<(String, Contract)> {
        self.manifest
            .components
            .keys()
            .filter_map(|name| Some((name.clone(), self.with_contract(name, Contract::clone).ok()?)))
            .collect()
    }

    /// The contract `component` serves now, here or on its host.
    /// (Borrowed, not cloned: the HTTP gateway looks a function up on every
    /// request.)
    fn with_contract<R>(&self, component: &str, f: impl FnOnce(&Contract) -> R) -> Result<R> {
        if let Some(remote) = self.remotes.get(component) {
            return Ok(f(&remote.contract));
        }
        Ok(f(&self.require(component)?.version().contract))
    }

    /// A component by name.
    pub fn component(&self, name: &str) -> Option<&Arc<Component>> {
        self.components.get(name)
    }

    /// A component of this host by name, or an error listing the components.
    pub fn require(&self, name: &str) -> Result<&Arc<Component>> {
        if self.remotes.contains_key(name) {
            bail!("component `{name}` runs on another host (see {}): ask that host", self.manifest.path.display());
        }
        self.components.get(name).with_context(|| {
            let names: Vec<&str> = self.manifest.components.keys().map(String::as_str).collect();
            let hint = crate::suggest::did_you_mean(name, names.iter().copied());
            format!("no component `{name}` in {}; it has: {}{hint}", self.manifest.path.display(), names.join(", "))
        })
    }

    /// Every component of this host, by name.
    pub fn components(&self) -> impl Iterator<Item = &Arc<Component>> {
        self.components.values()
    }

    /// Where every component and subscription stands.
    pub fn status(&self) -> Status {
        Status {
            data_dir: self.data_dir.clone(),
            components: self.components().map(|c| c.status()).collect(),
            subscriptions: self.dispatcher.status(),
            nats: self.nats.as_ref().map(|n| {
                let mut status = n.status();
                status.remotes = self
                    .remotes
                    .keys()
                    .map(|name| {
                        let host = self.manifest.components[name].host.clone().unwrap_or_default();
                        let (last_heard_ms, reachable) = n.host_reachable(&host);
                        crate::remote::RemoteStatus { component: name.clone(), host, last_heard_ms, reachable }
                    })
                    .collect();
                status
            }),
        }
    }

    /// Swaps by component and outcome (`ok`, `unchanged`, `refused`,
    /// `failed`): how many, and how long they took in all, in seconds.
    pub fn swap_counts(&self) -> Vec<SwapCount> {
        self.swaps.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
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

    /// Under a running host: waits until the routes that are not failing have
    /// applied what was published so far, and this host's events are in
    /// JetStream (each within `limit`). `false` if something is still pending.
    pub fn catch_up(&self, limit: Duration) -> bool {
        let mut done = self.dispatcher.catch_up(limit);
        if let Some(nats) = &self.nats {
            done &= nats.flush_relays(limit.min(Duration::from_secs(5)));
        }
        done
    }

    /// The connection to other hosts, if the app spans hosts.
    pub fn nats(&self) -> Option<&Arc<Nats>> {
        self.nats.as_ref()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Who serves calls to `provider` now.
    pub(super) fn callee(&self, provider: &str) -> Arc<dyn Callee> {
        callee(&self.components, &self.remotes, provider)
    }
}

/// Swaps of one component that ended one way.
#[derive(Debug, Clone, Default)]
pub struct SwapCount {
    pub component: String,
    /// `ok`, `unchanged`, `refused` or `failed`.
    pub outcome: &'static str,
    pub swaps: u64,
    /// Their durations summed, from the request to serving or refusal.
    pub seconds: f64,
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

/// A call to another host's component that failed, as a [`CallError`]: the
/// cases a caller acts on (outcome unknown, request id reused) kept apart.
fn remote_error(component: &str, function: String, source: anyhow::Error, options: &CallOptions) -> CallError {
    let component = component.to_string();
    let source = match source.downcast::<remote::Unknown>() {
        Ok(unknown) => {
            return CallError::Unknown { component, function, request: unknown.request, message: unknown.message };
        }
        Err(source) => source,
    };
    if source.is::<remote::Reused>() {
        let request = options.request.clone().unwrap_or_default();
        return CallError::Reused { request, component, function };
    }
    CallError::Host { component, function, error: source }
}
