//! Capability: swapping one component's version while the app runs.
//!
//! A swap, in order:
//! 1. compiles the new build (through the compile cache) and reads its contract;
//! 2. checks it against everyone else as they are now: its own imports must be
//!    granted; every interface a running consumer calls must still be
//!    exported, semver-compatible, with functions that fit; every event
//!    subscription must survive and type-check; calls must stay acyclic.
//!    A mismatch refuses the swap, naming the consumer, the interface and
//!    the difference;
//! 3. links and pre-instantiates it;
//! 4. holding only this component ([`Component::swap`]): instantiates it on
//!    the component's database, runs its migration in one transaction, and
//!    switches. Calls already running finish on the old version; other
//!    components never pause. Any failure puts the old version back on the
//!    untouched database;
//! 5. records the deployment in the data directory (`deployed.toml` and a
//!    copy of the build in `builds/`), so a restart keeps the swapped
//!    version and `--rollback` can go back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::app::{App, start_order};
use crate::component::Version;
use crate::contract::{self, Contract};
use crate::engine::write_atomically;
use crate::events::{self, Subscription};
use crate::linker::{self, Grant, Grants};

/// What a swap did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwapReport {
    /// The component.
    pub component: String,
    /// The contract version before and after.
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    /// SHA-256 of the build before and after.
    pub from_sha256: String,
    pub to_sha256: String,
    /// The schema version the migration left.
    pub schema: Option<String>,
    /// Whether the build had to be compiled (false: the cache had it).
    pub compiled: bool,
    /// Milliseconds from the request to the new version serving.
    pub total_ms: f64,
    /// Milliseconds the component was held (instantiate, migrate, switch):
    /// the only time its callers waited.
    pub switch_ms: f64,
}

impl App {
    /// Swaps `name` to the build at `wasm`. On refusal or failure the old
    /// version keeps serving and the database is unchanged; the error says why.
    pub fn swap(&self, name: &str, wasm: &Path) -> Result<SwapReport> {
        let _one_at_a_time = self.swapping.lock().unwrap_or_else(|p| p.into_inner());
        let start = Instant::now();
        let component = self.require(name)?.clone();
        let old = component.version();
        let refused = |why: String| {
            anyhow::anyhow!(
                "swap of `{name}` to {} refused; version {} keeps serving:\n{why}",
                wasm.display(),
                old.contract.version().map_or("-".to_string(), |v| v.to_string())
            )
        };

        let compiled = self.runtime.load(wasm).map_err(|e| refused(format!("  - {e:#}")))?;
        let contract = Contract::of(self.runtime.engine(), &compiled.component.component_type());

        // The app as it is now, on every host, and as it would be.
        let (now_contracts, now_grants) = self.wiring();
        let mut contracts = now_contracts.clone();
        contracts.insert(name.to_string(), contract.clone());
        let grants = linker::grant(name, &contract, component.spec().strict, &contracts)
            .map_err(|e| refused(format!("  - {e:#}")))?;
        let mut all_grants = now_grants.clone();
        all_grants.insert(name.to_string(), grants.clone());

        let mut problems = consumer_problems(name, &contract, &now_grants);
        let before = new_subscriptions(&now_contracts, &now_grants).unwrap_or_default();
        let subscriptions = match new_subscriptions(&contracts, &all_grants) {
            Ok(subs) => {
                for lost in before.iter().filter(|s| !subs.iter().any(|n| same_route(s, n))) {
                    problems.push(if lost.subscriber == name {
                        format!(
                            "`{name}` handles the {} events `{}` publishes, and the new build does not: they would go unheard",
                            lost.topic, lost.publisher
                        )
                    } else {
                        format!(
                            "`{}` handles the {} events `{name}` publishes, and the new build does not publish them",
                            lost.subscriber, lost.topic
                        )
                    });
                }
                subs
            }
            Err(p) => {
                problems.extend(p);
                Vec::new()
            }
        };
        if let Err(e) = start_order(&all_grants) {
            problems.push(format!("{e:#}"));
        }
        if !problems.is_empty() {
            let lines: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
            return Err(refused(lines.join("\n")));
        }

        let timeout = std::time::Duration::from_millis(component.spec().limits.call_timeout_ms);
        let linker = linker::build(self.runtime.engine(), &grants, |p| self.provider(p, timeout))?;
        let pre = linker
            .instantiate_pre(&compiled.component)
            .map_err(anyhow::Error::from)
            .map_err(|e| refused(format!("  - linking: {e:#}")))?;
        let compiled_now = compiled.compiled_now;
        let to_sha256 = compiled.digest.clone();
        let to_version = contract.version().map(|v| v.to_string());
        let switch = Instant::now();
        let schema = component.swap(Version { compiled, contract, grants, pre }).with_context(|| {
            format!(
                "swap of `{name}` to {} failed; the old version keeps serving and its database is unchanged",
                wasm.display()
            )
        })?;
        let switch_ms = switch.elapsed().as_secs_f64() * 1e3;
        let local: Vec<Subscription> = subscriptions
            .into_iter()
            .filter(|s| self.component(&s.subscriber).is_some() && self.component(&s.publisher).is_some())
            .collect();
        self.events().update(&local, &self.component_map())?;
        if let Some(nats) = self.nats() {
            let c = component.clone();
            if let Err(e) = nats.run(move |n| async move { crate::remote::peers::announce(&n, &c).await }) {
                tracing::warn!(component = name, "the swap is live, but announcing it to other hosts failed: {e:#}");
            }
        }
        let recorded = self.manifest_digest(name).and_then(|manifest| {
            Deployments::record(
                self.data_dir(),
                name,
                (&old.compiled.source, &old.compiled.digest),
                (wasm, &to_sha256),
                &manifest,
            )
        });
        if let Err(e) = recorded {
            tracing::warn!(component = name, "the swap is live, but recording it for the next start failed: {e:#}");
        }
        Ok(SwapReport {
            component: name.to_string(),
            from_version: old.contract.version().map(|v| v.to_string()),
            to_version,
            from_sha256: old.compiled.digest.clone(),
            to_sha256,
            schema: schema.map(|s| s.to_string()),
            compiled: compiled_now,
            total_ms: start.elapsed().as_secs_f64() * 1e3,
            switch_ms,
        })
    }

    /// Swaps `name` back to the build it ran before its last swap.
    pub fn rollback(&self, name: &str) -> Result<SwapReport> {
        self.require(name)?;
        let Some(previous) = Deployments::load(self.data_dir())?.0.remove(name).and_then(|d| d.previous) else {
            bail!(
                "`{name}` has not been swapped in {}: there is no previous version to go back to",
                self.data_dir().display()
            );
        };
        self.swap(name, &self.data_dir().join(previous))
    }
}

impl App {
    /// Every component's contract and grants as they run now, on this host
    /// and on the others (as their hosts announced them, else as the
    /// manifest names them).
    fn wiring(&self) -> (BTreeMap<String, Contract>, BTreeMap<String, Grants>) {
        let mut contracts: BTreeMap<String, Contract> =
            self.components().map(|c| (c.name().to_string(), c.version().contract.clone())).collect();
        for (name, remote) in self.remotes() {
            contracts.insert(name.clone(), self.announced_contract(name).unwrap_or_else(|| remote.contract.clone()));
        }
        let mut grants: BTreeMap<String, Grants> =
            self.components().map(|c| (c.name().to_string(), c.version().grants.clone())).collect();
        for name in self.remotes().keys() {
            let strict = self.manifest().components[name].strict;
            match linker::grant(name, &contracts[name], strict, &contracts) {
                Ok(g) => {
                    grants.insert(name.clone(), g);
                }
                Err(e) => tracing::warn!(component = name.as_str(), "cannot tell what it imports now: {e:#}"),
            }
        }
        (contracts, grants)
    }

    /// The contract of the build another host announced for `name`.
    fn announced_contract(&self, name: &str) -> Option<Contract> {
        let nats = self.nats()?;
        let n = name.to_string();
        let build = nats.run(move |nats| async move {
            tokio::time::timeout(std::time::Duration::from_secs(2), crate::remote::peers::build_of(&nats, &n)).await
        });
        let (sha, bytes) = build.ok()?.ok()??;
        let compiled = self.runtime.load_bytes(Path::new(&format!("{name} (announced build {sha})")), &bytes).ok()?;
        Some(Contract::of(self.runtime.engine(), &compiled.component.component_type()))
    }
}

/// What running consumers call of `name` that `contract` would not serve.
fn consumer_problems(name: &str, contract: &Contract, grants: &BTreeMap<String, Grants>) -> Vec<String> {
    let mut problems = Vec::new();
    for (consumer, consumer_grants) in grants.iter().filter(|(c, _)| c.as_str() != name) {
        for (import, grant) in consumer_grants {
            if !matches!(grant, Grant::Call { provider, .. } if provider == name) {
                continue;
            }
            let Some(export) = contract.exports.iter().find(|e| e.id.serves(&import.id)) else {
                let offered: Vec<&str> = contract
                    .exports
                    .iter()
                    .filter(|e| e.id.unversioned() == import.id.unversioned())
                    .map(|e| e.name.as_str())
                    .collect();
                problems.push(format!(
                    "`{}` imports {}, which the new build does not export{}",
                    consumer,
                    import.name,
                    if offered.is_empty() {
                        String::new()
                    } else {
                        format!(" in a compatible version (it exports {}; a consumer needs the same major, at least its minor)", offered.join(", "))
                    }
                ));
                continue;
            };
            for f in &import.funcs {
                match export.func(&f.name) {
                    None => problems.push(format!(
                        "`{}` calls `{}` of {}, and the new build's {} has no such function",
                        consumer, f.name, import.name, export.name
                    )),
                    Some(p) => {
                        if let Err(d) = contract::func_fits(&f.ty, &p.ty) {
                            problems.push(format!(
                                "`{}` calls `{}` of {}, and the new build's differs: {d}",
                                consumer, f.name, import.name
                            ));
                        }
                    }
                }
            }
        }
    }
    problems
}

fn new_subscriptions(
    contracts: &BTreeMap<String, Contract>,
    grants: &BTreeMap<String, Grants>,
) -> Result<Vec<Subscription>, Vec<String>> {
    let named: Vec<(&str, &Contract, &Grants)> = grants.iter().map(|(n, g)| (n.as_str(), &contracts[n], g)).collect();
    events::subscriptions(&named)
}

fn same_route(a: &Subscription, b: &Subscription) -> bool {
    a.publisher == b.publisher && a.topic == b.topic && a.subscriber == b.subscriber
}

/// The record of swapped-in builds in a data directory: `deployed.toml`,
/// and copies of the builds in `builds/`, named by their SHA-256.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Deployments(pub BTreeMap<String, Deployed>);

/// One swapped-in component.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployed {
    /// The build serving, relative to the data directory.
    pub wasm: PathBuf,
    /// The build before the swap, relative to the data directory.
    pub previous: Option<PathBuf>,
    /// SHA-256 of the manifest's build when the swap happened: if the
    /// manifest names another build since, the manifest wins.
    pub manifest_sha256: String,
}

impl Deployments {
    const FILE: &str = "deployed.toml";

    /// Reads the record; an absent file is an empty record.
    pub fn load(data_dir: &Path) -> Result<Deployments> {
        let path = data_dir.join(Self::FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Deployments::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The build to run for `name`, if a swap replaced the manifest's
    /// (whose SHA-256 is `manifest_sha256`).
    pub fn build_for(&self, data_dir: &Path, name: &str, manifest_sha256: &str) -> Option<PathBuf> {
        let d = self.0.get(name)?;
        (d.manifest_sha256 == manifest_sha256).then(|| data_dir.join(&d.wasm))
    }

    /// Records that `name` now runs `current` (a build's file and SHA-256)
    /// in place of `previous`, keeping a copy of each under `builds/`.
    fn record(
        data_dir: &Path,
        name: &str,
        previous: (&Path, &str),
        current: (&Path, &str),
        manifest_sha256: &str,
    ) -> Result<()> {
        let keep = |(path, digest): (&Path, &str)| -> Result<PathBuf> {
            let relative = PathBuf::from("builds").join(format!("{digest}.wasm"));
            let target = data_dir.join(&relative);
            if !target.exists() {
                let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                write_atomically(&target, &bytes)?;
            }
            Ok(relative)
        };
        let mut all = Deployments::load(data_dir)?;
        let deployed = Deployed {
            wasm: keep(current)?,
            previous: Some(keep(previous)?),
            manifest_sha256: manifest_sha256.to_string(),
        };
        all.0.insert(name.to_string(), deployed);
        write_atomically(&data_dir.join(Self::FILE), toml::to_string(&all)?.as_bytes())
    }
}
