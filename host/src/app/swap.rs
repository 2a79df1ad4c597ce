//! Swapping one component's build while the app runs.
//!
//! A swap, in order:
//! 1. compiles the new build (through the compile cache) and reads its contract;
//! 2. wires the app as it would be (`wiring::check`, the same check as at
//!    load, over every component on every host as they run now): the new
//!    build's own imports, every consumer's imports re-granted against it,
//!    one owner per package, every subscription type-checked, no cycle.
//!    A subscription the new build would end is refused too. A refusal
//!    names the consumer, the interface and the difference;
//! 3. links and pre-instantiates it;
//! 4. holding only this component ([`Component::swap`]): instantiates it on
//!    the component's database, runs its migration, both in one unit of
//!    work, and switches. Calls already running finish on the old version;
//!    other components never pause. Any failure puts the old version back on
//!    the untouched database;
//! 5. records the deployment in the data directory (`data_dir::Deployments`),
//!    so a restart keeps the swapped version and `--rollback` can go back.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::plan::file_digest;
use super::running::{App, split_subscriptions};
use crate::component::Version;
use crate::contract::Contract;
use crate::data_dir::Deployments;
use crate::linker;
use crate::trace::{self, Attribute, Kind, Span};
use crate::wiring::{self, Member, Refusal, Subject};

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
    /// The build asked for is the one serving: nothing was swapped.
    #[serde(default)]
    pub unchanged: bool,
}

/// Why a swap did not happen. Either way the old version keeps serving on
/// an unchanged database.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The build does not fit the app (or is not a component at all), or
    /// there is nothing to swap: the request was wrong.
    #[error("{0}")]
    Refused(String),
    /// The swap was tried and failed: the new build trapped while starting,
    /// its migration failed, or the host could not do its part.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl App {
    /// Swaps `name` to the build at `wasm`.
    pub fn swap(&self, name: &str, wasm: &Path) -> Result<SwapReport, SwapError> {
        let start = Instant::now();
        let mut span = Span::start(
            || format!("swap {name}").into(),
            Kind::Internal,
            None,
            || {
                vec![
                    Attribute::new("moat.component", name.to_string()),
                    Attribute::new("moat.build", wasm.display().to_string()),
                ]
            },
        );
        let result = self.swap_now(name, wasm, span.context().as_ref());
        let outcome = match &result {
            Ok(r) if r.unchanged => "unchanged",
            Ok(_) => "ok",
            Err(SwapError::Refused(_)) => "refused",
            Err(SwapError::Failed(_)) => "failed",
        };
        span.set(|| Attribute::new("moat.outcome", outcome));
        if let Err(e) = &result {
            span.fail(|| e.to_string());
        }
        // Counted for a component of the app only: the label stays bounded.
        if self.components.contains_key(name) {
            let mut swaps = self.swaps.lock().unwrap_or_else(|p| p.into_inner());
            let entry = swaps.entry((name.to_string(), outcome)).or_insert_with(|| super::running::SwapCount {
                component: name.to_string(),
                outcome,
                ..Default::default()
            });
            entry.swaps += 1;
            entry.seconds += start.elapsed().as_secs_f64();
        }
        result
    }

    fn swap_now(&self, name: &str, wasm: &Path, trace: Option<&trace::Parent>) -> Result<SwapReport, SwapError> {
        let _one_at_a_time = self.swapping.lock().unwrap_or_else(|p| p.into_inner());
        let start = Instant::now();
        let component = self.require(name).map_err(|e| SwapError::Refused(format!("{e:#}")))?.clone();
        let old = component.version();
        let refused = |why: String| {
            SwapError::Refused(format!(
                "swap of `{name}` to {} refused; {} keeps serving:\n{why}",
                wasm.display(),
                old.contract.version().map_or("the running build".to_string(), |v| format!("version {v}"))
            ))
        };

        let compiled = self.runtime.load(wasm).map_err(|e| refused(format!("  - {e:#}")))?;
        if compiled.digest == old.compiled.digest {
            let version = old.contract.version().map(|v| v.to_string());
            return Ok(SwapReport {
                component: name.to_string(),
                from_version: version.clone(),
                to_version: version,
                from_sha256: old.compiled.digest.clone(),
                to_sha256: compiled.digest.clone(),
                schema: component.status().schema,
                compiled: compiled.compiled_now,
                total_ms: start.elapsed().as_secs_f64() * 1e3,
                switch_ms: 0.0,
                unchanged: true,
            });
        }
        let contract = Contract::of(self.runtime.engine(), &compiled.component.component_type()).read_from(wasm);
        // The app as it is now, on every host, and as it would be.
        let mut members = self.members();
        if let Some(refusal) = another_components_build(name, &old.contract, &contract, &members) {
            return Err(refused(format!("  - {refusal}")));
        }
        let before = self.wiring.lock().unwrap_or_else(|p| p.into_inner()).clone();
        members.insert(name.to_string(), Member { contract: contract.clone(), strict: component.spec().strict });
        let after = match wiring::check(&members) {
            Ok(after) => after,
            Err(refusals) => return Err(refused(render(name, &refusals))),
        };
        let lost: Vec<Refusal> = before
            .subscriptions
            .iter()
            .filter(|s| !after.subscriptions.iter().any(|n| n.same_route(s)))
            .map(|lost| Refusal {
                component: name.to_string(),
                subject: Subject::Consumers,
                why: if lost.subscriber == name {
                    format!(
                        "`{name}` handles the {} events `{}` publishes, and the new build does not: they would go unheard",
                        lost.topic, lost.publisher
                    )
                } else {
                    format!(
                        "`{}` handles the {} events `{name}` publishes, and the new build does not publish them",
                        lost.subscriber, lost.topic
                    )
                },
            })
            .collect();
        if !lost.is_empty() {
            return Err(refused(render(name, &lost)));
        }

        let grants = after.grants[name].clone();
        let linker = linker::build(self.runtime.engine(), &grants, |p| self.callee(p)).map_err(SwapError::Failed)?;
        let pre = linker
            .instantiate_pre(&compiled.component)
            .map_err(|e| refused(format!("  - linking: {:#}", anyhow::Error::from(e))))?;
        let (compiled_now, to_sha256) = (compiled.compiled_now, compiled.digest.clone());
        let to_version = contract.version().map(|v| v.to_string());
        let switch = Instant::now();
        let schema = component.swap(Version::new(compiled, contract, grants, pre), trace).map_err(|e| {
            SwapError::Failed(e.context(format!(
                "swap of `{name}` to {} failed; the old version keeps serving and its database is unchanged",
                wasm.display()
            )))
        })?;
        let switch_ms = switch.elapsed().as_secs_f64() * 1e3;
        // The old build's instance and code are gone; hand the memory they
        // used back to the system rather than keeping it in malloc's arenas.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory at the top of the heaps.
        unsafe {
            libc::malloc_trim(0);
        }

        let (local, _) = split_subscriptions(&after.subscriptions, &self.components);
        *self.wiring.lock().unwrap_or_else(|p| p.into_inner()) = after;
        if let Err(e) = self.dispatcher.update(&local, &self.components) {
            tracing::error!(component = name, "the swap is live, but rerouting its events failed: {e:#}");
        }
        if let Some(nats) = self.nats() {
            let c = component.clone();
            if let Err(e) = nats.run(move |n| async move { crate::remote::peers::announce(&n, &c).await }) {
                tracing::warn!(component = name, "the swap is live, but announcing it to other hosts failed: {e:#}");
            }
        }
        let recorded = file_digest(&self.manifest.wasm_path(&self.manifest.components[name])).and_then(|manifest| {
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
            unchanged: false,
        })
    }

    /// Swaps `name` back to the build it ran before its last swap.
    pub fn rollback(&self, name: &str) -> Result<SwapReport, SwapError> {
        self.require(name).map_err(|e| SwapError::Refused(format!("{e:#}")))?;
        let previous = Deployments::previous(self.data_dir(), name)
            .context("reading the record of swaps")
            .map_err(SwapError::Failed)?
            .ok_or_else(|| {
                SwapError::Refused(format!(
                    "`{name}` has not been swapped in {}: there is no previous version to go back to",
                    self.data_dir().display()
                ))
            })?;
        self.swap(name, &previous)
    }

    /// Every component as it runs now, on this host and on the others (as
    /// their hosts announced them, else as the manifest names them).
    fn members(&self) -> BTreeMap<String, Member> {
        let mut members: BTreeMap<String, Member> = self
            .components()
            .map(|c| (c.name().to_string(), Member { contract: c.version().contract.clone(), strict: c.spec().strict }))
            .collect();
        for (name, remote) in &self.remotes {
            let contract = self.announced_contract(name).unwrap_or_else(|| remote.contract.clone());
            members.insert(name.clone(), Member { contract, strict: self.manifest.components[name].strict });
        }
        members
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

/// Refusals of a swap of `name`, one line each, naming who is refused for what.
fn render(name: &str, refusals: &[Refusal]) -> String {
    let mut seen = Vec::new();
    refusals
        .iter()
        // Two owners of one package are one refusal, naming both.
        .filter(|r| match &r.subject {
            Subject::Package(p) => {
                let new = !seen.contains(p);
                seen.push(p.clone());
                new
            }
            _ => true,
        })
        .map(|r| match &r.subject {
            Subject::Import(i) if r.component == name => format!("  - the new build imports {i}: {}", r.why),
            Subject::Import(i) => format!("  - `{}` imports {i}: {}", r.component, r.why),
            Subject::Package(p) => format!("  - {p}: {}", r.why),
            Subject::Handler(h) => format!("  - `{}` handles events through {h}: {}", r.component, r.why),
            Subject::Calls | Subject::Consumers => format!("  - {}", r.why),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A build that serves exactly what another component of the app serves,
/// and none of what `name` serves, is that component's build (`order.wasm`
/// given for `product`): said in one line, instead of as every wiring
/// problem it would cause. (A build that claims only part of another's
/// package is an impostor, which the wiring check names with both owners.)
fn another_components_build(
    name: &str,
    old: &Contract,
    new: &Contract,
    members: &std::collections::BTreeMap<String, Member>,
) -> Option<String> {
    use std::collections::BTreeSet;
    let serves = |c: &Contract| -> BTreeSet<String> { c.public_exports().map(|e| e.name.clone()).collect() };
    let packages = |c: &Contract| -> BTreeSet<String> { c.public_exports().map(|e| e.id.package.clone()).collect() };
    let (was, would) = (packages(old), serves(new));
    if would.is_empty() || !was.is_disjoint(&packages(new)) {
        return None;
    }
    let (other, _) = members.iter().find(|(other, m)| other.as_str() != name && serves(&m.contract) == would)?;
    let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
    Some(format!(
        "`{name}` serves {}, and the new build serves {} instead, as `{other}` does: it looks like a build of `{other}`; swap to a build of `{name}`",
        list(&was),
        list(&would)
    ))
}
