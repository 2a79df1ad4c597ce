//! One running component: its instance, its database, and the unit of work
//! every call into it runs in.
//!
//! The instance and the database sit behind one lock, so a component's
//! units of work run one at a time. That is SQLite's own model (one writer
//! at a time), it keeps a unit of work's transaction on the one connection
//! that owns it, and it lets a call run on the caller's thread with no
//! hand-off. Calls between components lock callee after caller; the load
//! refuses cycles, so two components never wait on each other. Waiting for
//! the lock counts against the call's deadline.
//!
//! [`Component::unit`] is the one primitive: calls, event handlers, dead
//! letter redrives, migrations and the host's bookkeeping all run through it.
//! It commits what the unit did if it ends well and rolls it back otherwise;
//! a trap replaces the instance before the next unit.
//!
//! What `moat status` reads ([`Serving`]) is kept apart from the lock, so
//! a long call never makes status wait.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rusqlite::Connection;
use wasmtime::component::types::{ComponentFunc, Type};
use wasmtime::component::{Func, Instance, InstancePre, ResourceTable, Val};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capability::Grants;
use crate::capability::calls::{Answer, CallOptions, Callee};
use crate::capability::log::GuestLog;
use crate::capability::publish::{Outbox, Signal};
use crate::capability::schema::{Migrate, SchemaVersion};
use crate::contract::{self, Contract, InterfaceId};
use crate::db::{Db, StoreCounts};
use crate::deadline::{Deadline, Overrun};
use crate::engine::{Compiled, EPOCH_TICK};
use crate::ledger::{self, OutboxEvent};
use crate::manifest::{ComponentSpec, Limits};
use crate::trace::{self, Attribute, Kind, Span};

/// The data of one instance's Wasmtime store: each capability's slice.
pub struct InstanceState {
    /// `moat:platform/store`: the component's own database.
    pub(crate) db: Db,
    /// `moat:platform/log`, and stdout/stderr.
    pub(crate) log: GuestLog,
    /// `P/publish`: this unit of work's events.
    pub(crate) outbox: Outbox,
    /// When the running call must end (`None` between calls): WASI waits
    /// and forwarded calls end by then.
    pub(crate) deadline: Option<Deadline>,
    /// The running call's request id, if it has one, and how many calls it
    /// has made to other components: theirs are derived from it.
    request: Option<String>,
    nested: u32,
    /// The running call's span, if traces are exported: the parent of the
    /// calls it makes and the events it publishes.
    pub(crate) trace: Option<trace::Parent>,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl InstanceState {
    /// How the running call's next call to another component runs: within
    /// what is left of its deadline, and, if the running call has a request
    /// id, under `<id>/<n>` for its n-th call, the same on every retry of it.
    pub(crate) fn call_options(&mut self) -> CallOptions {
        self.nested += 1;
        let request = self.request.as_ref().map(|r| format!("{r}/{}", self.nested));
        CallOptions { deadline: self.deadline, request, attempt: None, trace: self.trace.clone() }
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// One build of a component, compiled and linked, ready to instantiate.
pub struct Version {
    /// The compiled code and where it came from.
    pub compiled: Compiled,
    /// Its imports and exports.
    pub contract: Contract,
    /// How each of its imports is served.
    pub grants: Grants,
    /// Linked against this host: instantiating from here takes microseconds.
    pub pre: InstancePre<InstanceState>,
    /// Its `moat:platform/schema.migrate`, if it keeps tables.
    migrate: Option<Migrate>,
}

impl Version {
    /// A build, linked.
    pub fn new(compiled: Compiled, contract: Contract, grants: Grants, pre: InstancePre<InstanceState>) -> Version {
        let migrate = Migrate::find(&pre);
        Version { compiled, contract, grants, pre, migrate }
    }
}

/// A component's counters, for `moat status`.
#[derive(Default)]
pub struct Stats {
    /// Calls run: from the CLI, the control API and other components (event
    /// deliveries are counted per subscription, by the dispatcher).
    pub calls: AtomicU64,
    /// Calls that trapped, hit a limit or could not commit.
    pub failures: AtomicU64,
    /// Instances replaced after a trap.
    pub restarts: AtomicU64,
    /// The component's own statements, and the rows they returned or changed.
    pub statements: AtomicU64,
    pub rows: AtomicU64,
    /// Each function called, by export and function name: calls by outcome
    /// and how long they took (for metrics). Nested, so that a call finds
    /// its entry by the names it has, allocating nothing.
    pub functions: parking_lot::Mutex<BTreeMap<String, BTreeMap<String, FunctionStats>>>,
}

/// How a call ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It returned, and committed.
    Ok,
    /// It returned `err`; rolled back.
    Err,
    /// It trapped or hit a limit other than its deadline; rolled back.
    Trap,
    /// It ran past its deadline; rolled back.
    Deadline,
    /// It was not one the caller may call, or its request id was reused.
    Refused,
    /// The host could not run or commit it.
    HostError,
}

impl Outcome {
    pub const ALL: [Outcome; 6] =
        [Outcome::Ok, Outcome::Err, Outcome::Trap, Outcome::Deadline, Outcome::Refused, Outcome::HostError];

    /// Its label value.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Err => "err",
            Outcome::Trap => "trap",
            Outcome::Deadline => "deadline",
            Outcome::Refused => "refused",
            Outcome::HostError => "host_error",
        }
    }
}

/// Upper bounds, in seconds, of the call duration histogram's buckets.
pub const DURATION_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// The calls of one function.
#[derive(Debug, Clone, Default)]
pub struct FunctionStats {
    /// Calls by outcome, in the order of `Outcome::ALL`.
    pub outcomes: [u64; 6],
    /// Calls whose duration fell in each bucket of `DURATION_BUCKETS` (not
    /// cumulative; beyond the last, only in `outcomes`).
    pub buckets: [u64; 14],
    /// Their durations, summed, in seconds.
    pub seconds: f64,
}

impl FunctionStats {
    fn record(&mut self, outcome: Outcome, seconds: f64) {
        self.outcomes[Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0)] += 1;
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.seconds += seconds;
    }
}

/// What `moat status` shows of a component.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ComponentStatus {
    /// Its name in the manifest.
    pub name: String,
    /// The version of the contract it exports.
    pub version: Option<String>,
    /// Its database's schema version.
    pub schema: Option<String>,
    /// SHA-256 of the build serving now.
    pub sha256: String,
    /// The `.wasm` it was loaded from.
    pub source: PathBuf,
    /// Seconds since this version started serving.
    pub uptime_secs: f64,
    /// Calls served since the host started.
    pub calls: u64,
    /// Calls that failed (trapped, hit a limit or could not commit).
    pub failures: u64,
    /// Instances replaced after a trap.
    #[serde(default)]
    pub restarts: u64,
    /// Its statements on its database since the host started, and the rows
    /// they returned or changed.
    #[serde(default)]
    pub statements: u64,
    #[serde(default)]
    pub rows: u64,
}

/// Why a call failed. (A function that returns `err` has not failed: its
/// result is returned, and its unit of work rolled back.)
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The component trapped or hit a limit (`overrun`: its deadline); its
    /// unit of work was rolled back and its instance replaced.
    #[error("component `{component}` failed in `{function}`: {reason}; its unit of work was rolled back")]
    Trap { component: String, function: String, reason: String, overrun: bool },
    /// The function is not one the caller may call.
    #[error("component `{component}` has no function `{function}` that can be called: {why}")]
    Refused { component: String, function: String, why: String },
    /// The request id was used before, for another call: nothing ran.
    #[error(
        "request id `{request}` was already used for another call of `{component}`, not `{function}` with these arguments; nothing ran: use a new id for a new call"
    )]
    Reused { request: String, component: String, function: String },
    /// The host could not run or commit the unit of work.
    /// (`error`, not `source`: the message has it already, and a source
    /// would say it twice.)
    #[error("component `{component}`, `{function}`: {error:#}")]
    Host { component: String, function: String, error: anyhow::Error },
    /// No answer came from the component's host before the deadline: the
    /// call did not take effect after it; whether it did before is unknown,
    /// and a retry with `request` applies it at most once.
    #[error("{message}")]
    Unknown { component: String, function: String, request: String, message: String },
}

impl CallError {
    /// Whether the call ran past its deadline.
    pub fn overrun(&self) -> bool {
        matches!(self, CallError::Trap { overrun: true, .. })
    }
}

/// How running a guest function failed, inside a unit of work.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The function does not exist.
    #[error("no such function")]
    Missing,
    /// The guest trapped (including limits); the instance will be replaced.
    #[error("{reason}")]
    Trapped { reason: String, overrun: bool },
}

/// What handling a batch of events did.
pub struct Handled {
    /// How many events took effect.
    pub applied: usize,
    /// The last event that took effect; the cursor now points at it.
    pub through: Option<i64>,
    /// The event that failed, and why; it and the rest of the batch did not.
    pub failed: Option<(i64, String)>,
}

/// What redriving a dead letter did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redrive {
    /// The handler took it; it is gone from the dead letters.
    Applied,
    /// The handler failed again; it stays, with this error.
    FailedAgain(String),
    /// It is not there: redriven already.
    Gone,
}

/// A loaded component.
pub struct Component {
    name: Arc<str>,
    spec: ComponentSpec,
    db_path: PathBuf,
    engine: Engine,
    /// The lock every unit of work holds.
    slot: parking_lot::Mutex<Slot>,
    /// What is serving, for status: never held across a call.
    serving: Mutex<Serving>,
    /// Told whenever a unit of work of this component commits events.
    signal: Arc<Signal>,
    stats: Stats,
}

struct Serving {
    version: Arc<Version>,
    since: Instant,
    schema: Option<SchemaVersion>,
}

/// What the lock guards.
struct Slot {
    /// The version the instance is (or is to be) of.
    version: Arc<Version>,
    /// The instance, and the database inside its store.
    live: Option<Live>,
    /// The database while there is no instance (one failed to start).
    idle: Option<Db>,
    /// The instance trapped: replace it before the next unit.
    broken: bool,
}

/// An instance and the store it lives in.
struct Live {
    store: Store<InstanceState>,
    instance: Instance,
    /// Exported functions by interface and function name, with how many
    /// results each returns.
    funcs: HashMap<String, HashMap<String, (Func, usize)>>,
}

impl Component {
    /// Opens the component's database, instantiates `version` and runs its
    /// schema migration, as one unit of work: on error nothing is kept.
    pub fn start(
        engine: &Engine,
        name: &str,
        spec: ComponentSpec,
        db_path: &Path,
        version: Version,
        signal: Arc<Signal>,
    ) -> Result<Component> {
        let name: Arc<str> = Arc::from(name);
        let db = Db::open(db_path, &spec.sqlite, &spec.limits)?;
        let version = Arc::new(version);
        let mut live = instantiate(engine, &name, &spec.limits, &version, db)
            .map_err(|(e, _)| e)
            .with_context(|| format!("starting component `{name}`"))?;
        let schema = match migrate(&mut live, &name, &version, &spec.limits, None) {
            Ok(schema) => schema,
            Err(e) => {
                live.store.data_mut().db.rollback();
                return Err(e);
            }
        };
        live.store.data_mut().db.commit().with_context(|| format!("starting component `{name}`"))?;
        Ok(Component {
            spec,
            db_path: db_path.to_path_buf(),
            engine: engine.clone(),
            slot: parking_lot::Mutex::new(Slot {
                version: version.clone(),
                live: Some(live),
                idle: None,
                broken: false,
            }),
            serving: Mutex::new(Serving { version, since: Instant::now(), schema }),
            signal,
            stats: Stats::default(),
            name,
        })
    }

    /// Switches to `new`: instantiates it on this component's database and
    /// runs its migration, in one unit of work, while holding the component:
    /// calls already running finish on the old version and later ones run
    /// on the new. On any failure the old version keeps serving and the
    /// database is as it was. Returns the schema version the migration left.
    /// The migration's span hangs under `trace` (the swap's).
    pub fn swap(&self, new: Version, trace: Option<&trace::Parent>) -> Result<Option<SchemaVersion>> {
        let new = Arc::new(new);
        let mut slot = self.slot.lock();
        let db = slot.take_db();
        let limits = &self.spec.limits;
        let failure = match instantiate(&self.engine, &self.name, limits, &new, db) {
            Ok(mut live) => match migrate(&mut live, &self.name, &new, limits, trace) {
                Ok(schema) => match live.store.data_mut().db.commit() {
                    Ok(()) => {
                        *slot = Slot { version: new.clone(), live: Some(live), idle: None, broken: false };
                        *self.lock_serving() = Serving { version: new, since: Instant::now(), schema };
                        return Ok(schema);
                    }
                    Err(e) => (e, live.store.into_data().db),
                },
                Err(e) => {
                    let mut db = live.store.into_data().db;
                    db.rollback();
                    (e, db)
                }
            },
            Err(failed) => failed,
        };
        // Put the old version back on the untouched database.
        let (error, db) = failure;
        slot.idle = Some(db);
        slot.broken = true;
        match slot.ensure_live(&self.engine, &self.name, limits) {
            Ok(_) => Err(error),
            Err(e) => Err(error.context(format!("and the old version could not be restarted: {e:#}"))),
        }
    }

    /// Each function called so far, by qualified name
    /// (`shop:product/catalog@1.0.0.get-product`), with its calls.
    pub fn function_stats(&self) -> Vec<(String, FunctionStats)> {
        let functions = self.stats.functions.lock();
        functions
            .iter()
            .flat_map(|(export, funcs)| funcs.iter().map(|(func, stats)| (qualified(export, func), stats.clone())))
            .collect()
    }

    /// Where this component stands.
    pub fn status(&self) -> ComponentStatus {
        let serving = self.lock_serving();
        ComponentStatus {
            name: self.name.to_string(),
            version: serving.version.contract.version().map(|v| v.to_string()),
            schema: serving.schema.map(|s| s.to_string()),
            sha256: serving.version.compiled.digest.clone(),
            source: serving.version.compiled.source.clone(),
            uptime_secs: serving.since.elapsed().as_secs_f64(),
            calls: self.stats.calls.load(Ordering::Relaxed),
            failures: self.stats.failures.load(Ordering::Relaxed),
            restarts: self.stats.restarts.load(Ordering::Relaxed),
            statements: self.stats.statements.load(Ordering::Relaxed),
            rows: self.stats.rows.load(Ordering::Relaxed),
        }
    }

    /// Its manifest settings.
    pub fn spec(&self) -> &ComponentSpec {
        &self.spec
    }

    /// The component's name in the manifest.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its database file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The version serving now.
    pub fn version(&self) -> Arc<Version> {
        self.lock_serving().version.clone()
    }

    /// Its own deadline for a call starting now.
    pub fn deadline(&self) -> Deadline {
        Deadline::after(Duration::from_millis(self.spec.limits.call_timeout_ms))
    }

    /// Runs `func` of the exported interface `export` as one unit of work:
    /// commits if it returns (and returns `ok`, when it returns a `result`),
    /// rolls back otherwise. Whether the function may be called from outside
    /// is the caller's to check (`app::Invocation` does).
    pub fn call(&self, export: &str, func: &str, params: &[Val]) -> Result<Vec<Val>, CallError> {
        self.call_with(export, func, params, &CallOptions::default()).map(|a| a.results)
    }

    /// Like [`Component::call`], with options: a deadline nearer than the
    /// component's own, and a request id. With an id, the call takes effect
    /// at most once: if a call with that id committed before, its recorded
    /// result comes back (replayed, with when it committed) and nothing runs.
    pub fn call_with(
        &self,
        export: &str,
        func: &str,
        params: &[Val],
        options: &CallOptions,
    ) -> Result<Answer, CallError> {
        let deadline = options.deadline.map_or(self.deadline(), |d| d.min(self.deadline()));
        self.call_until(Target::Export(export), func, params, deadline, options)
    }

    fn call_until(
        &self,
        target: Target<'_>,
        func: &str,
        params: &[Val],
        deadline: Deadline,
        options: &CallOptions,
    ) -> Result<Answer, CallError> {
        let request = options.request.as_deref();
        let started = std::time::Instant::now();
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let mut span = Span::start(
            || {
                let interface = match target {
                    Target::Export(e) => InterfaceId::parse(e).interface,
                    Target::Import(i) => i.interface.clone(),
                };
                format!("{} {interface}.{func}", self.name).into()
            },
            Kind::Server,
            options.trace.as_ref(),
            || {
                let mut attributes = vec![
                    Attribute::new("rpc.system", "moat"),
                    Attribute::new("rpc.service", target.to_string()),
                    Attribute::new("rpc.method", func.to_string()),
                    Attribute::new("moat.component", self.name.to_string()),
                ];
                if let Some(id) = request {
                    attributes.push(Attribute::new("moat.request_id", id.to_string()));
                }
                attributes
            },
        );
        let parent = span.context();
        // The export that serves an import, once found (an export target
        // is its own name): nothing is allocated for it on a call by export.
        let mut serving = None;
        let mut store = StoreCounts::default();
        let result = self.unit(deadline, |u| {
            u.trace = parent.clone();
            let counted = u.db().counts();
            let out = Self::run_call(u, target, func, params, options, &mut serving);
            store = u.db().counts() - counted;
            out
        });
        let export = match (target, &serving) {
            (Target::Export(e), _) => Cow::Borrowed(e),
            (Target::Import(_), Some(e)) => Cow::Borrowed(e.as_str()),
            (Target::Import(i), None) => Cow::Owned(i.to_string()),
        };
        let outcome = match &result {
            Ok(answer) if returned_err(&answer.results) => Outcome::Err,
            Ok(_) => Outcome::Ok,
            Err(e) if e.is::<Reused>() => Outcome::Refused,
            Err(e) => match e.downcast_ref::<Failure>() {
                Some(Failure::Missing) => Outcome::Refused,
                Some(Failure::Trapped { overrun: true, .. }) => Outcome::Deadline,
                Some(Failure::Trapped { .. }) => Outcome::Trap,
                None => Outcome::HostError,
            },
        };
        {
            let seconds = started.elapsed().as_secs_f64();
            let ids = parent.as_ref().map(trace::ids);
            tracing::info!(
                component = %self.name,
                function = %Qualified(&export, func),
                outcome = outcome.name(),
                ms = seconds * 1e3,
                trace_id = ids.as_ref().map(|i| i.0.as_str()),
                span_id = ids.as_ref().map(|i| i.1.as_str()),
                "call"
            );
            span.set(|| Attribute::new("moat.outcome", outcome.name()));
            span.set(|| Attribute::new("moat.store.statements", store.statements as i64));
            span.set(|| Attribute::new("moat.store.rows", store.rows as i64));
            if let Err(e) = &result {
                span.fail(|| format!("{e:#}"));
            }
            let mut functions = self.stats.functions.lock();
            match functions.get_mut(export.as_ref()).and_then(|funcs| funcs.get_mut(func)) {
                Some(stats) => stats.record(outcome, seconds),
                // Bounded: only names the component exports reach here.
                None => functions
                    .entry(export.to_string())
                    .or_default()
                    .entry(func.to_string())
                    .or_default()
                    .record(outcome, seconds),
            }
        }
        result.map_err(|e| {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            let (component, function) = (self.name.to_string(), qualified(&export, func));
            if e.is::<Reused>() {
                return CallError::Reused { request: request.unwrap_or_default().to_string(), component, function };
            }
            match e.downcast::<Failure>() {
                Ok(Failure::Missing) => CallError::Refused { component, function, why: "it does not export it".into() },
                Ok(Failure::Trapped { reason, overrun }) => CallError::Trap { component, function, reason, overrun },
                Err(error) => CallError::Host { component, function, error },
            }
        })
    }

    /// The body of a call's unit of work: finds the export, runs the
    /// function, and, under a request id, replays or records its result.
    fn run_call(
        u: &mut Unit<'_>,
        target: Target<'_>,
        func: &str,
        params: &[Val],
        options: &CallOptions,
        serving: &mut Option<String>,
    ) -> Result<Answer> {
        let request = options.request.as_deref();
        let export = match target {
            Target::Export(e) => e,
            Target::Import(import) => match u.version().contract.exports.iter().find(|e| e.id.serves(import)) {
                Some(e) => serving.insert(e.name.clone()).as_str(),
                None => bail!(Failure::Missing),
            },
        };
        u.answers_caller = true;
        let Some(id) = request else {
            let results = u.call(export, func, params)?;
            if returned_err(&results) {
                u.discard();
            }
            return Ok(Answer { results, replayed: None });
        };
        let fingerprint = fingerprint(export, func, params);
        if let Some(done) = u.db().host(|c| ledger::request(c, id))? {
            u.discard();
            if done.fingerprint != fingerprint {
                bail!(Reused);
            }
            let results = replay(&u.version().contract, export, func, &done.result)?;
            // Committed by this very attempt (an earlier resend of it):
            // its own result, not a replay.
            let attempt = options.attempt.as_ref().map(|a| &a.id);
            let own = done.attempt.is_some() && done.attempt.as_ref() == attempt;
            return Ok(Answer { results, replayed: (!own).then_some(done.committed_ms) });
        }
        u.request = Some(id.to_string());
        let results = u.call(export, func, params)?;
        if returned_err(&results) {
            // Nothing took effect: a retry with the id runs again.
            u.discard();
        } else {
            let result = results.first().map(crate::values::to_wave).unwrap_or_default();
            let record = ledger::RequestRecord {
                fingerprint,
                result,
                committed_ms: ledger::now_ms(),
                attempt: options.attempt.as_ref().map(|a| a.id.clone()),
                deadline_ms: options
                    .attempt
                    .as_ref()
                    .map_or_else(|| ledger::now_ms() + u.deadline.remaining().as_millis() as i64, |a| a.deadline_ms),
            };
            u.db().host(|c| ledger::record_request(c, id, &record))?;
        }
        Ok(Answer { results, replayed: None })
    }

    /// Runs `f` as one unit of work on this component: waits for the
    /// component (until `deadline`), replaces a trapped instance, and then
    /// commits what `f` did if it returns `Ok` (and did not `discard`), or
    /// rolls it back. A trap inside replaces the instance before the next unit.
    pub fn unit<R>(&self, deadline: Deadline, f: impl FnOnce(&mut Unit<'_>) -> Result<R>) -> Result<R> {
        let Some(mut slot) = self.slot.try_lock_until(deadline.instant()) else {
            bail!(Failure::Trapped {
                reason: format!(
                    "it was busy with other work until past the deadline of {} ms (limits.call_timeout_ms)",
                    self.spec.limits.call_timeout_ms
                ),
                overrun: true,
            });
        };
        let limits = &self.spec.limits;
        if slot.broken {
            self.stats.restarts.fetch_add(1, Ordering::Relaxed);
        }
        slot.ensure_live(&self.engine, &self.name, limits)?;
        // A panic below is a host bug: the guard rolls the unit back and
        // replaces the instance, so the component keeps serving.
        let guard = PanicGuard { slot: &mut slot };
        let version = guard.slot.version.clone();
        let live = guard.slot.live.as_mut().expect("ensured above");
        let state = live.store.data_mut();
        state.log.new_call();
        state.outbox.new_call();
        let counted = state.db.counts();
        let mut unit = Unit {
            live,
            version,
            limits,
            deadline,
            keep: true,
            trapped: false,
            request: None,
            answers_caller: false,
            trace: None,
        };
        let out = f(&mut unit);
        let (keep, trapped, answers_caller) = (unit.keep, unit.trapped, unit.answers_caller);
        let state = guard.slot.live.as_mut().expect("ensured above").store.data_mut();
        let store = state.db.counts() - counted;
        self.stats.statements.fetch_add(store.statements, Ordering::Relaxed);
        self.stats.rows.fetch_add(store.rows, Ordering::Relaxed);
        state.trace = None;
        state.log.end_call();
        state.deadline = None;
        state.db.set_deadline(None);
        let published = state.outbox.published() > 0;
        let result = match out {
            // A unit past its deadline never commits: whoever waits for it
            // has been told it failed, or will be.
            Ok(_) if keep && answers_caller && deadline.passed() && state.db.is_open() => {
                state.db.rollback();
                Err(anyhow!(Failure::Trapped {
                    reason: format!(
                        "it ran past its deadline of {} ms (limits.call_timeout_ms) before it could commit",
                        limits.call_timeout_ms
                    ),
                    overrun: true,
                }))
            }
            Ok(r) if keep => state.db.commit().map(|()| r),
            Ok(r) => {
                state.db.rollback();
                Ok(r)
            }
            Err(e) => {
                state.db.rollback();
                Err(e)
            }
        };
        if trapped {
            guard.slot.broken = true;
        }
        std::mem::forget(guard);
        // After a delivery batch, whoever waits longest goes next: a caller
        // behind a busy route is not overtaken by that route's next batch.
        // After a call, the next caller already running may take it (a
        // handoff costs a context switch per call; parking_lot still hands
        // over fairly every half millisecond or so, so no one starves).
        if answers_caller {
            drop(slot);
        } else {
            parking_lot::MutexGuard::unlock_fair(slot);
        }
        if result.is_ok() && keep && published {
            self.signal.notify();
        }
        result
    }

    /// Runs host bookkeeping (`ledger`) on this component's database as a
    /// unit of work of its own: committed if `f` returns `Ok`.
    pub fn with_db<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        self.unit(self.deadline(), |u| u.db().host(f))
    }

    /// Runs host reads on this component's database, outside any unit of work.
    pub fn read_db<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        let deadline = self.deadline();
        let Some(mut slot) = self.slot.try_lock_until(deadline.instant()) else {
            bail!("component `{}` was busy past {} ms", self.name, self.spec.limits.call_timeout_ms);
        };
        slot.db_mut().host_read(f)
    }

    /// Applies a batch of `publisher`'s events to this component's handler of
    /// `topic`, stopping at the first that fails: the events before it take
    /// effect, together with the cursor, and it and the rest do not.
    ///
    /// Handlers rarely fail, so a batch runs as one unit of work with no
    /// savepoint per event (a `SAVEPOINT`/`RELEASE` pair costs about what a
    /// handler's own upsert does). When an event fails, that unit rolls back
    /// whole and the events before it run again in a unit of their own: the
    /// same events on the same database, so they take effect as they did.
    /// Should one of them fail this time, the handler is not deterministic
    /// and nothing is applied: that is an `Err`, retried like a failure of
    /// the subscriber itself, so one step takes at most two passes.
    pub fn handle_events(&self, publisher: &str, topic: &str, batch: &[OutboxEvent]) -> Result<Handled> {
        let through = |applied: usize| applied.checked_sub(1).map(|last| batch[last].seq);
        let (at, why) = match self.apply_events(publisher, topic, batch)? {
            Pass::Applied(applied) => return Ok(Handled { applied, through: through(applied), failed: None }),
            Pass::Failed { at, why } => (at, why),
        };
        let failed = Some((batch[at].seq, why));
        if at == 0 {
            return Ok(Handled { applied: 0, through: None, failed });
        }
        match self.apply_events(publisher, topic, &batch[..at])? {
            // The failed event counts only once all before it took effect.
            Pass::Applied(applied) => {
                Ok(Handled { applied, through: through(applied), failed: if applied == at { failed } else { None } })
            }
            Pass::Failed { at: again, why } => bail!(
                "event #{} failed, and applying the events before it again, event #{} failed this time ({why}): the handler does not do the same twice",
                batch[at].seq,
                batch[again].seq
            ),
        }
    }

    /// One pass of [`Component::handle_events`]: `batch` in one unit of work
    /// with the cursor (or its first events, if applying them all would hold
    /// the component past `BATCH_SLICE`), or nothing if an event fails.
    fn apply_events(&self, publisher: &str, topic: &str, batch: &[OutboxEvent]) -> Result<Pass> {
        self.unit(self.deadline(), |u| {
            let (handler, ty) = handler_for(&u.version().contract, topic)?;
            let started = Instant::now();
            // Spans stay open until the pass ends: a pass rolled back says so
            // on each event it had applied.
            let mut spans: Vec<Span> = Vec::new();
            for (i, event) in batch.iter().enumerate() {
                // A long batch yields the component to its callers now and
                // then: what is applied commits, the rest comes next batch.
                if i > 0 && started.elapsed() > BATCH_SLICE {
                    break;
                }
                // Each event gets the whole of the component's deadline.
                u.deadline = self.deadline();
                let mut span = self.delivery_span(publisher, event);
                u.trace = span.context();
                let counted = u.db().counts();
                // A handler that returned `ok` after SQLite ended the unit's
                // transaction (a full disk) failed all the same.
                let outcome = u
                    .handle(&handler, &ty, &event.payload)
                    .and_then(|()| u.db().ensure_intact(|| "ended inside a handler".into()).map_err(|e| e.to_string()));
                let store = u.db().counts() - counted;
                span.set(|| Attribute::new("moat.store.statements", store.statements as i64));
                span.set(|| Attribute::new("moat.store.rows", store.rows as i64));
                if let Err(why) = outcome {
                    span.fail(|| why.clone());
                    for applied in &mut spans {
                        applied
                            .set(|| Attribute::new("moat.outcome", "rolled back: a later event of its batch failed"));
                    }
                    u.discard();
                    return Ok(Pass::Failed { at: i, why });
                }
                spans.push(span);
            }
            if let Some(last) = batch[..spans.len()].last() {
                u.db().host(|c| ledger::set_cursor(c, publisher, topic, last.seq))?;
            }
            Ok(Pass::Applied(spans.len()))
        })
    }

    /// The span of one event's delivery: a child of the span that published
    /// it, whose context the outbox row (or the NATS message) carries.
    fn delivery_span(&self, publisher: &str, event: &OutboxEvent) -> Span {
        let parent = trace::incoming(event.trace.as_deref());
        Span::start(
            || format!("{} handle {} {}", self.name, event.topic, event.event).into(),
            Kind::Consumer,
            parent.as_ref(),
            || {
                vec![
                    Attribute::new("messaging.system", "moat"),
                    Attribute::new("messaging.operation.type", "process"),
                    Attribute::new("messaging.destination.name", event.topic.clone()),
                    Attribute::new("moat.component", self.name.to_string()),
                    Attribute::new("moat.publisher", publisher.to_string()),
                    Attribute::new("moat.event", event.event.clone()),
                    Attribute::new("moat.event.seq", event.seq),
                ]
            },
        )
    }

    /// Redrives one dead letter: takes it out and handles it again in one
    /// unit of work, so it takes effect once even when two redrives race.
    pub fn redrive(&self, id: i64) -> Result<Redrive> {
        let outcome = self.unit(self.deadline(), |u| {
            let Some(letter) = u.db().host(|c| ledger::take_dead_letter(c, id))? else {
                u.discard();
                return Ok(Redrive::Gone);
            };
            let (handler, ty) = handler_for(&u.version().contract, &letter.topic)?;
            match u.handle(&handler, &ty, &letter.payload) {
                Ok(()) => Ok(Redrive::Applied),
                Err(why) => {
                    u.discard();
                    Ok(Redrive::FailedAgain(why))
                }
            }
        })?;
        if let Redrive::FailedAgain(why) = &outcome {
            self.with_db(|c| ledger::dead_letter_failed_again(c, id, why, ledger::now_ms()))?;
        }
        Ok(outcome)
    }

    fn lock_serving(&self) -> std::sync::MutexGuard<'_, Serving> {
        self.serving.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a call names: one of the component's exports, or the export that
/// serves a caller's import.
#[derive(Clone, Copy)]
enum Target<'a> {
    Export(&'a str),
    Import(&'a InterfaceId),
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Export(e) => f.write_str(e),
            Target::Import(i) => write!(f, "{i}"),
        }
    }
}

impl Callee for Component {
    fn call_import(
        &self,
        import: &InterfaceId,
        func: &str,
        _ty: &ComponentFunc,
        params: &[Val],
        options: &CallOptions,
    ) -> Result<Answer> {
        if !contract::is_public(import) {
            bail!("{import} is not a contract interface: only the host calls it");
        }
        let own = self.deadline();
        let deadline = options.deadline.map_or(own, |d| d.min(own));
        self.call_until(Target::Import(import), func, params, deadline, options).map_err(|e| {
            if e.overrun() { anyhow::Error::new(Overrun).context(e.to_string()) } else { anyhow::Error::new(e) }
        })
    }
}

/// Rolls back and marks the instance for replacement if a unit unwinds.
struct PanicGuard<'a, 'b> {
    slot: &'a mut parking_lot::MutexGuard<'b, Slot>,
}

impl Drop for PanicGuard<'_, '_> {
    fn drop(&mut self) {
        if let Some(live) = self.slot.live.as_mut() {
            live.store.data_mut().db.rollback();
        }
        self.slot.broken = true;
    }
}

/// One unit of work in progress: what [`Component::unit`]'s closure gets.
pub struct Unit<'a> {
    live: &'a mut Live,
    version: Arc<Version>,
    limits: &'a Limits,
    /// When the guest code run in this unit must end.
    pub deadline: Deadline,
    keep: bool,
    trapped: bool,
    /// The request id the guest code runs under, if any.
    request: Option<String>,
    /// Whether the unit may commit only before its deadline: a call's may,
    /// since its caller is told it failed once the deadline passes; a
    /// delivery batch's commits whenever it ends, nobody waits on it.
    answers_caller: bool,
    /// The span the guest code runs under, if traces are exported.
    pub trace: Option<trace::Parent>,
}

impl Unit<'_> {
    /// The version the unit runs on.
    pub fn version(&self) -> &Arc<Version> {
        &self.version
    }

    /// The component's database, for the host's bookkeeping in this unit.
    pub fn db(&mut self) -> &mut Db {
        &mut self.live.store.data_mut().db
    }

    /// Roll the unit back at its end instead of committing it.
    pub fn discard(&mut self) {
        self.keep = false;
    }

    /// Calls one exported function within the unit.
    pub fn call(&mut self, export: &str, func: &str, params: &[Val]) -> Result<Vec<Val>, Failure> {
        let (f, width) = self.live.func(export, func).ok_or(Failure::Missing)?;
        let mut results = vec![Val::Bool(false); width];
        let outcome = self.enter(|store| f.call(store, params, &mut results));
        match outcome {
            Ok(()) => Ok(results),
            Err(e) => {
                self.trapped = true;
                Err(describe_trap(&e, self.limits))
            }
        }
    }

    /// Handles one event within the unit: reads its WAVE with the handler's
    /// type and runs `handle`. `Err` says why it did not take effect.
    fn handle(&mut self, handler: &str, ty: &Type, payload: &str) -> Result<(), String> {
        let value = wasm_wave::from_str::<Val>(ty, payload)
            .map_err(|e| format!("the event does not fit the handler's type: {e}"))?;
        match self.call(handler, "handle", &[value]) {
            Ok(results) if !returned_err(&results) => Ok(()),
            Ok(results) => Err(match results.first() {
                Some(Val::Result(Err(Some(e)))) => match &**e {
                    Val::String(s) => ledger::bounded(s).to_string(),
                    other => ledger::bounded(&crate::values::to_wave(other)).to_string(),
                },
                _ => "the handler returned err".to_string(),
            }),
            Err(Failure::Trapped { reason, .. }) => Err(reason),
            Err(Failure::Missing) => Err(format!("`{handler}` has no `handle` function")),
        }
    }

    /// Runs guest code with the unit's deadline armed everywhere: wasm
    /// (epoch), SQL (progress handler) and WASI (bounded waits).
    fn enter<R>(&mut self, f: impl FnOnce(&mut Store<InstanceState>) -> R) -> R {
        let state = self.live.store.data_mut();
        state.request = self.request.clone();
        state.nested = 0;
        state.trace = self.trace.clone();
        arm(&mut self.live.store, self.deadline);
        let out = f(&mut self.live.store);
        disarm(&mut self.live.store);
        out
    }
}

impl Slot {
    /// The database, wherever it is now.
    fn db_mut(&mut self) -> &mut Db {
        match (&mut self.live, &mut self.idle) {
            (Some(live), _) => &mut live.store.data_mut().db,
            (None, Some(db)) => db,
            (None, None) => unreachable!("a slot always holds its database"),
        }
    }

    /// Takes the database out, dropping the instance.
    fn take_db(&mut self) -> Db {
        match (self.live.take(), self.idle.take()) {
            (Some(live), _) => live.store.into_data().db,
            (None, Some(db)) => db,
            (None, None) => unreachable!("a slot always holds its database"),
        }
    }

    /// The live instance, (re)made first if it trapped or failed to start.
    /// Making it is a unit of its own: what `_initialize` writes is kept
    /// only if it succeeds.
    fn ensure_live(&mut self, engine: &Engine, name: &Arc<str>, limits: &Limits) -> Result<&mut Live> {
        if self.broken || self.live.is_none() {
            let db = self.take_db();
            match instantiate(engine, name, limits, &self.version, db) {
                Ok(mut live) => {
                    if let Err(e) = live.store.data_mut().db.commit() {
                        self.idle = Some(live.store.into_data().db);
                        return Err(e.context(format!("replacing the instance of `{name}`")));
                    }
                    self.live = Some(live);
                    self.broken = false;
                    tracing::info!(component = %name, "replaced the instance after a trap");
                }
                Err((e, db)) => {
                    self.idle = Some(db);
                    return Err(e.context(format!("replacing the instance of `{name}` after a trap")));
                }
            }
        }
        Ok(self.live.as_mut().expect("made above"))
    }
}

impl Live {
    fn func(&mut self, export: &str, func: &str) -> Option<(Func, usize)> {
        // Looked up by borrowed names: a call allocates nothing to find it.
        if let Some(f) = self.funcs.get(export).and_then(|funcs| funcs.get(func)) {
            return Some(*f);
        }
        let iface = if export.is_empty() {
            None
        } else {
            Some(self.instance.get_export_index(&mut self.store, None, export)?)
        };
        let index = self.instance.get_export_index(&mut self.store, iface.as_ref(), func)?;
        let f = self.instance.get_func(&mut self.store, index)?;
        let width = f.ty(&self.store).results().len();
        self.funcs.entry(export.to_string()).or_default().insert(func.to_string(), (f, width));
        Some((f, width))
    }
}

/// Arms the deadline for guest code about to run.
fn arm(store: &mut Store<InstanceState>, deadline: Deadline) {
    let ticks = deadline.remaining().as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64 + 1;
    store.set_epoch_deadline(ticks);
    let state = store.data_mut();
    state.deadline = Some(deadline);
    state.db.set_deadline(Some(deadline));
}

fn disarm(store: &mut Store<InstanceState>) {
    let state = store.data_mut();
    state.deadline = None;
    state.db.set_deadline(None);
}

/// Instantiates `version` with `db` as its database, within the component's
/// deadline. What `_initialize` writes stays in the open unit of work: the
/// caller commits it or rolls it back. On failure the unit is rolled back
/// and the database handed back.
#[expect(clippy::result_large_err, reason = "the database must come back on failure; a rare path, not a hot one")]
fn instantiate(
    engine: &Engine,
    name: &Arc<str>,
    limits: &Limits,
    version: &Version,
    db: Db,
) -> Result<Live, (anyhow::Error, Db)> {
    let log = GuestLog::new(name.clone(), limits);
    let state = InstanceState {
        wasi: crate::capability::wasi::context(&log),
        table: crate::capability::wasi::table(),
        limits: StoreLimitsBuilder::new()
            .memory_size(usize::try_from(limits.memory_mib << 20).unwrap_or(usize::MAX))
            .memories(4)
            .instances(limits.instances as usize)
            .tables(limits.tables as usize)
            .table_elements(1 << 20)
            .trap_on_grow_failure(true)
            .build(),
        db,
        log,
        outbox: Outbox::new(limits.events_per_call),
        deadline: None,
        request: None,
        nested: 0,
        trace: None,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    arm(&mut store, Deadline::after(Duration::from_millis(limits.call_timeout_ms)));
    let instantiated = version.pre.instantiate(&mut store);
    disarm(&mut store);
    match instantiated {
        Ok(instance) => Ok(Live { store, instance, funcs: HashMap::new() }),
        Err(e) => {
            let reason = describe_trap(&e, limits);
            let mut db = store.into_data().db;
            db.rollback();
            Err((anyhow!("instantiating `{name}` failed: {reason}"), db))
        }
    }
}

/// Runs the component's `moat:platform/schema.migrate`, if it exports one,
/// within the open unit of work, and records the version it returns.
fn migrate(
    live: &mut Live,
    name: &str,
    version: &Version,
    limits: &Limits,
    trace: Option<&trace::Parent>,
) -> Result<Option<SchemaVersion>> {
    let Some(migrate) = &version.migrate else { return Ok(None) };
    let found =
        live.store.data_mut().db.host(ledger::schema_version)?.map(|v| v.parse::<SchemaVersion>()).transpose()?;
    let shown = found.map_or("none (a new database)".to_string(), |v| v.to_string());
    let mut span = Span::start(
        || format!("{name} migrate").into(),
        Kind::Internal,
        trace,
        || vec![Attribute::new("moat.component", name.to_string()), Attribute::new("moat.schema.from", shown.clone())],
    );
    live.store.data_mut().trace = span.context();
    arm(&mut live.store, Deadline::after(Duration::from_millis(limits.call_timeout_ms)));
    let outcome = migrate.call(&mut live.store, &live.instance, found);
    disarm(&mut live.store);
    live.store.data_mut().trace = None;
    match &outcome {
        Ok(Ok(to)) => span.set(|| Attribute::new("moat.schema.to", to.to_string())),
        Ok(Err(why)) => span.fail(|| ledger::bounded(why).to_string()),
        Err(e) => span.fail(|| format!("{e:#}")),
    }
    match outcome {
        Ok(Ok(to)) => {
            if found != Some(to) {
                live.store.data_mut().db.host(|c| ledger::set_schema_version(c, &to.to_string()))?;
                tracing::info!(component = name, from = %shown, to = %to, "migrated the database");
            }
            Ok(Some(to))
        }
        Ok(Err(why)) => bail!(
            "component `{name}` refused to migrate its database from schema {shown}: {}; the database is unchanged",
            ledger::bounded(&why)
        ),
        Err(e) => {
            let why = match describe_trap(&e, limits) {
                Failure::Trapped { reason, .. } => reason,
                Failure::Missing => "it exports no `migrate` function".into(),
            };
            bail!(
                "component `{name}` failed to migrate its database from schema {shown}: {why}; the database is unchanged"
            )
        }
    }
}

/// The handler export of `topic`'s events, and the event type it takes.
fn handler_for(contract: &Contract, topic: &str) -> Result<(String, Type)> {
    let handler = contract
        .export_like(topic, contract::HANDLER)
        .with_context(|| format!("this version does not handle {topic} events"))?;
    let ty = handler
        .func("handle")
        .and_then(|f| f.ty.params().next().map(|(_, t)| t))
        .with_context(|| format!("{} has no `handle` function", handler.name))?;
    Ok((handler.name.clone(), ty))
}

/// How long a batch of events may hold its subscriber before it commits
/// what it applied and lets a waiting call in.
const BATCH_SLICE: Duration = Duration::from_millis(100);

/// What one pass over a batch of events did.
enum Pass {
    /// The first this many events took effect.
    Applied(usize),
    /// The event at this index failed, and why: nothing took effect.
    Failed { at: usize, why: String },
}

/// A request id reused for another call.
#[derive(Debug, thiserror::Error)]
#[error("request id reused")]
struct Reused;

/// What a call with a request id is: its function and arguments, so a call
/// reusing the id can be told apart. Independent of the contract's version,
/// so a retry after a swap still matches.
fn fingerprint(export: &str, func: &str, params: &[Val]) -> String {
    let args: Vec<String> = params.iter().map(crate::values::to_wave).collect();
    let text = format!("{}#{func}({})", InterfaceId::parse(export).unversioned(), args.join(", "));
    crate::engine::sha256(text.as_bytes())
}

/// A recorded result, read back with the function's result type.
fn replay(contract: &Contract, export: &str, func: &str, wave: &str) -> Result<Vec<Val>> {
    let f = contract.export(export).and_then(|e| e.func(func)).ok_or(Failure::Missing)?;
    match f.ty.results().next() {
        None => Ok(Vec::new()),
        Some(ty) => {
            Ok(vec![wasm_wave::from_str::<Val>(&ty, wave).map_err(|e| anyhow!("reading a recorded result back: {e}"))?])
        }
    }
}

/// Whether a function's result is a `result` that is `err`.
pub fn returned_err(results: &[Val]) -> bool {
    matches!(results.first(), Some(Val::Result(Err(_))))
}

/// `interface.function`, or just `function` at the root.
pub fn qualified(export: &str, func: &str) -> String {
    Qualified(export, func).to_string()
}

/// [`qualified`], written only when shown (a log line that is filtered
/// out costs nothing).
struct Qualified<'a>(&'a str, &'a str);

impl std::fmt::Display for Qualified<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() { f.write_str(self.1) } else { write!(f, "{}.{}", self.0, self.1) }
    }
}

/// What a trap means, in words that say which limit was hit.
fn describe_trap(e: &wasmtime::Error, limits: &Limits) -> Failure {
    let deadline = || Failure::Trapped {
        reason: format!("it ran past its deadline of {} ms (limits.call_timeout_ms)", limits.call_timeout_ms),
        overrun: true,
    };
    if e.is::<Overrun>() {
        return deadline();
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        let reason = match trap {
            Trap::Interrupt => return deadline(),
            Trap::StackOverflow => "it overflowed its stack (recursion too deep)".to_string(),
            Trap::UnreachableCodeReached => {
                "it panicked or aborted (wasm `unreachable`; a panic message, if any, is in the log)".to_string()
            }
            other => format!("it trapped: {other}"),
        };
        return Failure::Trapped { reason, overrun: false };
    }
    let text = format!("{e:#}");
    if text.contains("forcing trap when growing memory") {
        return Failure::Trapped {
            reason: format!("it tried to grow its memory past {} MiB (limits.memory_mib)", limits.memory_mib),
            overrun: false,
        };
    }
    if text.contains(&Overrun.to_string()) {
        return deadline();
    }
    Failure::Trapped { reason: ledger::bounded(&text).to_string(), overrun: false }
}
