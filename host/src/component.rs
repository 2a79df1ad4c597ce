//! One running component: its instance, its database, and the unit of work
//! every call runs in.
//!
//! A component's instance and database sit behind one mutex, so its units of
//! work run one at a time. That is SQLite's own model (one writer at a time),
//! it keeps a unit of work's transaction on the one connection that owns it,
//! and it lets a call run on the caller's thread with no hand-off. Calls
//! between components lock callee after caller; the load refuses cycles, so
//! two components never wait on each other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rusqlite::Connection;
use wasmtime::component::types::Type;
use wasmtime::component::{Func, Instance, InstancePre, ResourceTable, Val};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::contract::{Contract, InterfaceId};
use crate::engine::{Compiled, EPOCH_TICK};
use crate::events::{self, OutboxEvent, Signal};
use crate::linker::Grants;
use crate::log::GuestLog;
use crate::manifest::{ComponentSpec, Limits};
use crate::store::{Db, SchemaVersion};

/// The data of one instance's Wasmtime store: what its imports reach.
pub struct InstanceState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// The component's own database (`moat:platform/store`).
    pub(crate) db: Db,
    /// The component's log (`moat:platform/log`).
    pub(crate) log: GuestLog,
    /// Events published in the current unit of work, and the most allowed.
    published: u32,
    max_events: u32,
}

impl InstanceState {
    /// `P/publish.publish(event)`: appends to the outbox, in the unit of work.
    pub(crate) fn publish(&mut self, topic: &str, event: &Val) -> Result<()> {
        self.published += 1;
        if self.published > self.max_events {
            bail!("it published more than {} events in one unit of work (limits.events_per_call)", self.max_events);
        }
        self.db.host(|c| events::append(c, topic, event))
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
}

/// A component's counters, for `moat status`.
#[derive(Default)]
pub struct Stats {
    /// Calls run: from the CLI, the control API and other components (event
    /// deliveries are counted per subscription, in the dispatcher).
    pub calls: AtomicU64,
    /// Calls that trapped or could not commit.
    pub failures: AtomicU64,
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
    /// Calls that failed (trapped or could not commit) since the host started.
    pub failures: u64,
}

/// Why a call failed. (A function that returns `err` has not failed: its
/// result is returned, and its unit of work rolled back.)
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The component trapped or hit a limit; its unit of work was rolled
    /// back and its instance replaced.
    #[error("component `{component}` failed in `{function}`: {reason}; its unit of work was rolled back")]
    Trap { component: String, function: String, reason: String },
    /// The host could not run or commit the unit of work.
    #[error("component `{component}`, `{function}`: {source:#}")]
    Host { component: String, function: String, source: anyhow::Error },
}

/// A loaded component.
pub struct Component {
    name: Arc<str>,
    spec: ComponentSpec,
    db_path: PathBuf,
    engine: Engine,
    slot: Mutex<Slot>,
    /// Told whenever a unit of work of this component commits events.
    signal: Arc<Signal>,
    stats: Stats,
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

/// What the mutex guards: the current version and its live instance.
struct Slot {
    version: Arc<Version>,
    /// When `version` started serving.
    since: Instant,
    /// The schema version its migration left.
    schema: Option<SchemaVersion>,
    /// `None` only while an instance is being replaced.
    live: Option<Live>,
    /// The instance trapped: replace it before the next call.
    broken: bool,
}

/// An instance and the store it lives in.
struct Live {
    store: Store<InstanceState>,
    instance: Instance,
    /// Exported functions by interface name, then function name.
    funcs: HashMap<String, HashMap<String, Func>>,
}

impl Component {
    /// Opens the component's database, instantiates `version` and runs its
    /// schema migration. On error nothing of the migration is kept.
    pub fn start(
        engine: &Engine,
        name: &str,
        spec: ComponentSpec,
        db_path: &Path,
        version: Version,
        signal: Arc<Signal>,
    ) -> Result<Component> {
        let name: Arc<str> = Arc::from(name);
        let mut db = Db::open(db_path, &spec.sqlite, &spec.limits)?;
        db.host_read(|c| c.execute_batch(events::TABLES))?;
        let version = Arc::new(version);
        let mut live = instantiate(engine, &name, &spec.limits, &version, db)
            .map_err(|(e, _)| e)
            .with_context(|| format!("starting component `{name}`"))?;
        let schema = migrate(&mut live, &name, &version, &spec.limits)?;
        Ok(Component {
            name,
            spec,
            db_path: db_path.to_path_buf(),
            engine: engine.clone(),
            slot: Mutex::new(Slot { version, since: Instant::now(), schema, live: Some(live), broken: false }),
            signal,
            stats: Stats::default(),
        })
    }

    /// Switches to `new`: instantiates it on this component's database and
    /// runs its migration, while holding the component, so calls already
    /// running finish on the old version and later ones run on the new.
    /// On any failure the old version keeps serving and the database is as
    /// it was. Returns the schema version the migration left.
    pub fn swap(&self, new: Version) -> Result<Option<SchemaVersion>> {
        let new = Arc::new(new);
        let mut slot = self.lock();
        let old = slot.live.take().expect("a slot always has an instance between calls");
        let db = old.store.into_data().db;
        let failure = match instantiate(&self.engine, &self.name, &self.spec.limits, &new, db) {
            Ok(mut live) => match migrate(&mut live, &self.name, &new, &self.spec.limits) {
                Ok(schema) => {
                    slot.version = new;
                    slot.live = Some(live);
                    slot.since = Instant::now();
                    slot.schema = schema;
                    slot.broken = false;
                    return Ok(schema);
                }
                Err(e) => (e, live.store.into_data().db),
            },
            Err(failed) => failed,
        };
        // Put the old version back on the untouched database.
        let (error, db) = failure;
        match instantiate(&self.engine, &self.name, &self.spec.limits, &slot.version, db) {
            Ok(live) => {
                slot.live = Some(live);
                slot.broken = false;
                Err(error)
            }
            Err((e, _)) => Err(error.context(format!("and the old version could not be restarted: {e:#}"))),
        }
    }

    /// Where this component stands.
    pub fn status(&self) -> ComponentStatus {
        let slot = self.lock();
        ComponentStatus {
            name: self.name.to_string(),
            version: slot.version.contract.version().map(|v| v.to_string()),
            schema: slot.schema.map(|s| s.to_string()),
            sha256: slot.version.compiled.digest.clone(),
            source: slot.version.compiled.source.clone(),
            uptime_secs: slot.since.elapsed().as_secs_f64(),
            calls: self.stats.calls.load(Ordering::Relaxed),
            failures: self.stats.failures.load(Ordering::Relaxed),
        }
    }

    /// Calls a function of the exported interface that serves `import` (a
    /// caller's import, `shop:product/catalog@1.0.0`): whichever version is
    /// serving now, say `shop:product/catalog@1.1.0`.
    pub fn call_import(&self, import: &InterfaceId, func: &str, params: &[Val]) -> Result<Vec<Val>, CallError> {
        let export = {
            let slot = self.lock();
            match slot.version.contract.exports.iter().find(|e| e.id.serves(import)) {
                Some(e) => e.name.clone(),
                None => {
                    return Err(self.host_error(&import.to_string(), func, anyhow::anyhow!("no longer exported")));
                }
            }
        };
        self.call(&export, func, params)
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
        self.lock().version.clone()
    }

    /// Runs `func` of the exported interface `export` ("" for a function at
    /// the root of the world) as one unit of work: commits if it returns
    /// (and returns `ok`, when it returns a `result`), rolls back otherwise.
    pub fn call(&self, export: &str, func: &str, params: &[Val]) -> Result<Vec<Val>, CallError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.run_call(export, func, params);
        if result.is_err() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn run_call(&self, export: &str, func: &str, params: &[Val]) -> Result<Vec<Val>, CallError> {
        let mut slot = self.lock();
        let live =
            slot.live(&self.engine, &self.name, &self.spec.limits).map_err(|e| self.host_error(export, func, e))?;
        let outcome = live.run(export, func, params, &self.spec.limits);
        match outcome {
            Ok(results) => {
                let state = live.store.data_mut();
                if returned_err(&results) {
                    state.db.rollback();
                } else {
                    state.db.commit().map_err(|e| self.host_error(export, func, e))?;
                    if state.published > 0 {
                        self.signal.notify();
                    }
                }
                Ok(results)
            }
            Err(failure) => {
                live.store.data_mut().db.rollback();
                if let Failure::Trapped(_) = failure {
                    slot.broken = true;
                }
                Err(failure.into_error(&self.name, qualified(export, func)))
            }
        }
    }

    /// Applies a batch of `publisher`'s events to this component's handler of
    /// `topic`, in one unit of work that also advances the cursor: each event
    /// in a savepoint of its own, stopping at the first that fails.
    pub fn handle_events(&self, publisher: &str, topic: &str, batch: &[OutboxEvent]) -> Result<Handled> {
        let mut slot = self.lock();
        let version = slot.version.clone();
        let (handler, ty) = handler_for(&version.contract, topic)?;
        let handler = handler.as_str();
        let live = slot.live(&self.engine, &self.name, &self.spec.limits)?;
        let mut handled = Handled { applied: 0, through: None, failed: None };
        let mut trapped = false;
        let mut published = false;
        for event in batch {
            live.store.data_mut().db.savepoint()?;
            match live.handle(handler, &ty, &event.payload, &self.spec.limits) {
                Ok(()) => {
                    let state = live.store.data_mut();
                    state.db.release()?;
                    published |= state.published > 0;
                    handled.applied += 1;
                    handled.through = Some(event.seq);
                }
                Err(rejected) => {
                    live.store.data_mut().db.rollback_to_savepoint()?;
                    trapped = rejected.trapped;
                    handled.failed = Some((event.seq, rejected.why));
                    break;
                }
            }
        }
        let db = &mut live.store.data_mut().db;
        if let Some(seq) = handled.through {
            db.host(|c| set_cursor(c, publisher, topic, seq))?;
        }
        let committed = db.commit();
        if trapped {
            slot.broken = true;
        }
        committed?;
        if published {
            self.signal.notify();
        }
        Ok(handled)
    }

    /// Runs host bookkeeping on this component's database as a unit of work
    /// of its own: committed if `f` returns `Ok`, rolled back otherwise.
    pub fn with_db<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        let mut slot = self.lock();
        let live = slot.live(&self.engine, &self.name, &self.spec.limits)?;
        let db = &mut live.store.data_mut().db;
        match db.host(f) {
            Ok(r) => {
                db.commit()?;
                Ok(r)
            }
            Err(e) => {
                db.rollback();
                Err(e)
            }
        }
    }

    /// Redrives one dead letter: handles it again in a unit of work that also
    /// removes it from the dead letters. `Ok(Err(why))` if the handler failed again.
    pub fn redrive(&self, topic: &str, id: i64, payload: &str) -> Result<Result<(), String>> {
        let mut slot = self.lock();
        let version = slot.version.clone();
        let (handler, ty) = handler_for(&version.contract, topic)?;
        let live = slot.live(&self.engine, &self.name, &self.spec.limits)?;
        let result = match live.handle(&handler, &ty, payload, &self.spec.limits) {
            Ok(()) => {
                let state = live.store.data_mut();
                state.db.host(|c| c.execute("DELETE FROM _moat_dead_letter WHERE id = ?1", [id]))?;
                state.db.commit()?;
                if state.published > 0 {
                    self.signal.notify();
                }
                return Ok(Ok(()));
            }
            Err(rejected) => {
                slot.broken |= rejected.trapped;
                Err(rejected.why)
            }
        };
        if let Some(live) = slot.live.as_mut() {
            live.store.data_mut().db.rollback();
        }
        Ok(result)
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|poisoned| {
            // A panic while holding the component is a host bug. Undo the
            // unit of work it may have left open, replace the instance, and
            // keep serving.
            let mut slot = poisoned.into_inner();
            if let Some(live) = slot.live.as_mut() {
                live.store.data_mut().db.rollback();
            }
            slot.broken = true;
            self.slot.clear_poison();
            slot
        })
    }

    fn host_error(&self, export: &str, func: &str, source: anyhow::Error) -> CallError {
        CallError::Host { component: self.name.to_string(), function: qualified(export, func), source }
    }
}

impl Slot {
    /// The live instance, replacing a broken one first.
    fn live(&mut self, engine: &Engine, name: &Arc<str>, limits: &Limits) -> Result<&mut Live> {
        if self.broken {
            let old = self.live.take().expect("a slot always has an instance between calls");
            let db = old.store.into_data().db;
            match instantiate(engine, name, limits, &self.version, db) {
                Ok(live) => {
                    self.live = Some(live);
                    self.broken = false;
                    tracing::info!(component = %name, "replaced the instance after a trap");
                }
                Err((e, _db)) => {
                    // Without a database the component cannot serve again;
                    // instantiating a version that instantiated before only
                    // fails when the host itself is out of resources.
                    return Err(e.context("replacing the instance after a trap"));
                }
            }
        }
        Ok(self.live.as_mut().expect("a slot always has an instance between calls"))
    }
}

/// How running a function failed.
pub(crate) enum Failure {
    /// The function does not exist.
    Missing,
    /// The guest trapped (including limits); the instance must be replaced.
    Trapped(String),
}

impl Failure {
    fn into_error(self, component: &str, function: String) -> CallError {
        match self {
            Failure::Missing => CallError::Host {
                component: component.to_string(),
                source: anyhow::anyhow!("no such function"),
                function,
            },
            Failure::Trapped(reason) => CallError::Trap { component: component.to_string(), function, reason },
        }
    }
}

/// Why an event did not take effect.
struct Rejected {
    why: String,
    /// The handler trapped: its instance must be replaced.
    trapped: bool,
}

impl Live {
    /// Handles one event within the open unit of work: reads its WAVE with
    /// the handler's type and runs `handle`. Does not commit or roll back.
    fn handle(&mut self, handler: &str, ty: &Type, payload: &str, limits: &Limits) -> Result<(), Rejected> {
        let value = wasm_wave::from_str::<Val>(ty, payload)
            .map_err(|e| Rejected { why: format!("the event does not fit the handler's type: {e}"), trapped: false })?;
        let why = match self.run(handler, "handle", &[value], limits) {
            Ok(results) if !returned_err(&results) => return Ok(()),
            Ok(results) => match results.first() {
                Some(Val::Result(Err(Some(e)))) => match &**e {
                    Val::String(s) => s.clone(),
                    other => crate::values::to_wave(other),
                },
                _ => "the handler returned err".to_string(),
            },
            Err(Failure::Trapped(reason)) => return Err(Rejected { why: reason, trapped: true }),
            Err(Failure::Missing) => format!("`{handler}` has no `handle` function"),
        };
        Err(Rejected { why, trapped: false })
    }

    /// Calls one exported function within the open unit of work. Does not
    /// commit or roll back: the caller decides.
    fn run(&mut self, export: &str, func: &str, params: &[Val], limits: &Limits) -> Result<Vec<Val>, Failure> {
        let f = self.func(export, func).ok_or(Failure::Missing)?;
        self.store.data_mut().published = 0;
        self.store.data().db.set_deadline(Some(std::time::Duration::from_millis(limits.call_timeout_ms)));
        let mut results = vec![Val::Bool(false); f.ty(&self.store).results().len()];
        self.store.set_epoch_deadline(deadline_ticks(limits));
        let outcome = f.call(&mut self.store, params, &mut results);
        self.store.data().db.set_deadline(None);
        match outcome {
            Ok(()) => Ok(results),
            Err(e) => Err(Failure::Trapped(describe_trap(&e, limits))),
        }
    }

    fn func(&mut self, export: &str, func: &str) -> Option<Func> {
        if let Some(f) = self.funcs.get(export).and_then(|m| m.get(func)) {
            return Some(*f);
        }
        let iface = if export.is_empty() {
            None
        } else {
            Some(self.instance.get_export_index(&mut self.store, None, export)?)
        };
        let index = self.instance.get_export_index(&mut self.store, iface.as_ref(), func)?;
        let f = self.instance.get_func(&mut self.store, index)?;
        self.funcs.entry(export.to_string()).or_default().insert(func.to_string(), f);
        Some(f)
    }
}

/// Instantiates `version` with `db` as its database. On failure the
/// database is handed back.
#[expect(clippy::result_large_err, reason = "the database must come back on failure; a rare path, not a hot one")]
fn instantiate(
    engine: &Engine,
    name: &Arc<str>,
    limits: &Limits,
    version: &Version,
    db: Db,
) -> Result<Live, (anyhow::Error, Db)> {
    let state = InstanceState {
        wasi: crate::wasi::context(name),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new()
            .memory_size(usize::try_from(limits.memory_mib << 20).unwrap_or(usize::MAX))
            .memories(4)
            .instances(limits.instances as usize)
            .tables(limits.tables as usize)
            .table_elements(1 << 20)
            .trap_on_grow_failure(true)
            .build(),
        db,
        log: GuestLog::new(name.clone()),
        published: 0,
        max_events: limits.events_per_call,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(deadline_ticks(limits));
    match version.pre.instantiate(&mut store) {
        Ok(instance) => Ok(Live { store, instance, funcs: HashMap::new() }),
        Err(e) => {
            let reason = describe_trap(&e, limits);
            Err((anyhow::anyhow!("instantiating `{name}` failed: {reason}"), store.into_data().db))
        }
    }
}

/// Runs the component's `moat:platform/schema.migrate`, if it exports one,
/// in a unit of work of its own; returns the schema version it leaves.
fn migrate(live: &mut Live, name: &str, version: &Version, limits: &Limits) -> Result<Option<SchemaVersion>> {
    let Some(schema) = version.contract.export_like("moat:platform", "schema") else { return Ok(None) };
    let schema = schema.name.clone();
    let found = live.store.data_mut().db.schema_version()?;
    let shown = found.map_or("none (a new database)".to_string(), |v| v.to_string());
    let arg = Val::Option(found.map(|v| {
        Box::new(Val::Record(vec![("major".into(), Val::U32(v.major)), ("minor".into(), Val::U32(v.minor))]))
    }));
    let results = match live.run(&schema, "migrate", &[arg], limits) {
        Ok(results) => results,
        Err(failure) => {
            live.store.data_mut().db.rollback();
            let why = match failure {
                Failure::Missing => "it exports no `migrate` function".to_string(),
                Failure::Trapped(reason) => reason,
            };
            bail!(
                "component `{name}` failed to migrate its database from schema {shown}: {why}; the database is unchanged"
            );
        }
    };
    let db = &mut live.store.data_mut().db;
    let outcome = match results.first() {
        Some(Val::Result(Ok(Some(v)))) => match &**v {
            Val::Record(fields) => match fields.as_slice() {
                [(_, Val::U32(major)), (_, Val::U32(minor))] => Ok(SchemaVersion { major: *major, minor: *minor }),
                _ => Err(None),
            },
            _ => Err(None),
        },
        Some(Val::Result(Err(Some(why)))) => Err(Some(match &**why {
            Val::String(s) => s.clone(),
            other => crate::values::to_wave(other),
        })),
        _ => Err(None),
    };
    match outcome {
        Ok(to) => {
            if found != Some(to) {
                db.set_schema_version(to)?;
                tracing::info!(component = name, from = %shown, to = %to, "migrated the database");
            }
            db.commit()?;
            Ok(Some(to))
        }
        Err(Some(why)) => {
            db.rollback();
            bail!(
                "component `{name}` refused to migrate its database from schema {shown}: {why}; the database is unchanged"
            )
        }
        Err(None) => {
            db.rollback();
            bail!("component `{name}`: `migrate` must return result<schema-version, string>")
        }
    }
}

/// The handler export of `topic`'s events, and the event type it takes.
fn handler_for(contract: &Contract, topic: &str) -> Result<(String, Type)> {
    let handler = contract
        .export_like(topic, events::HANDLER)
        .with_context(|| format!("this version does not handle {topic} events"))?;
    let ty = handler
        .func("handle")
        .and_then(|f| f.ty.params().next().map(|(_, t)| t))
        .with_context(|| format!("{} has no `handle` function", handler.name))?;
    Ok((handler.name.clone(), ty))
}

/// Records how far a subscriber has read a publisher's events.
pub(crate) fn set_cursor(c: &Connection, publisher: &str, topic: &str, seq: i64) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "INSERT INTO _moat_cursor (publisher, topic, seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (publisher, topic) DO UPDATE SET seq = excluded.seq",
    )?
    .execute(rusqlite::params![publisher, topic, seq])
}

fn deadline_ticks(limits: &Limits) -> u64 {
    limits.call_timeout_ms.div_ceil(EPOCH_TICK.as_millis() as u64) + 1
}

/// Whether a function's result is a `result` that is `err`.
pub(crate) fn returned_err(results: &[Val]) -> bool {
    matches!(results.first(), Some(Val::Result(Err(_))))
}

/// `interface.function`, or just `function` at the root.
pub(crate) fn qualified(export: &str, func: &str) -> String {
    if export.is_empty() { func.to_string() } else { format!("{export}.{func}") }
}

/// What a trap means, in words that say which limit was hit.
fn describe_trap(e: &wasmtime::Error, limits: &Limits) -> String {
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => {
                format!("it ran past its deadline of {} ms (limits.call_timeout_ms)", limits.call_timeout_ms)
            }
            Trap::StackOverflow => "it overflowed its stack (recursion too deep)".to_string(),
            Trap::UnreachableCodeReached => {
                "it panicked or aborted (wasm `unreachable`; a panic message, if any, is in the log)".to_string()
            }
            other => format!("it trapped: {other}"),
        };
    }
    let text = format!("{e:#}");
    if text.contains("forcing trap when growing memory") {
        return format!("it tried to grow its memory past {} MiB (limits.memory_mib)", limits.memory_mib);
    }
    text
}
