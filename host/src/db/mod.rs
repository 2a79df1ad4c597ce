//! The store's connection: one component's SQLite database, the sandbox
//! around the component's statements, and the host's own path beside them.
//!
//! Layout:
//! - `mod.rs` (here): [`Db`], the connection and the unit of work's
//!   transaction.
//! - `sandbox`: the rules every guest statement is judged by.
//!
//! How the wall holds:
//! 1. **Each guest statement is judged when it is prepared, as the guest.**
//!    SQLite authorizes a statement when it compiles it, so the host and the
//!    guest never share a compiled statement: the guest's statements are
//!    prepared and cached on a handle of their own (`Db::guest`), the host's
//!    on another (`Db::host`), over the same connection. A guest text that
//!    equals one of the host's (`COMMIT`, the cursor upsert) is compiled
//!    afresh and refused. Statements that change the schema are never
//!    cached, so each run is judged again.
//! 2. **Host statements cannot be redirected.** They live in `ledger`, name
//!    their tables schema-qualified (`main."_moat_outbox"`), and no guest
//!    object carries a reserved name: the authorizer refuses creating one,
//!    and after every statement that changed the schema the host checks
//!    that none appeared by another path (a rename, a foreign key to a host
//!    table), undoing the statement if one did.
//! 3. **A trigger's body is the guest's**, even when a host statement fires
//!    it: the authorizer judges every action a trigger or view runs.
//! 4. **The unit of work is what the host thinks it is.** The host opens the
//!    transaction (at the first write) and ends it. If SQLite ends it on its
//!    own (a full disk at `database_mib`, an interrupt), the host notices
//!    (autocommit is back on) and fails the whole unit: every later
//!    statement and the commit fail, and no savepoint starts a transaction
//!    of its own.
//! 5. **Bounds.** Statement length, result rows and bytes (with a per-value
//!    overhead, so empty columns count too), string and blob size, the
//!    database's size, and the call's deadline, checked by SQLite's progress
//!    handler while a statement runs.

mod functions;
pub mod sandbox;
mod vfs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rusqlite::limits::Limit;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Connection, OpenFlags, ToSql};

use crate::deadline::{self, Deadline};
use crate::ledger;
use crate::manifest::{Limits, SqliteSettings};
use crate::platform::moat::platform::store::{Error, Value};
use sandbox::Sandbox;
use vfs::{TempBudget, Vfs};

/// The longest LIKE or GLOB pattern a statement may use.
pub const LIKE_PATTERN_LENGTH: usize = 10_000;

/// Bytes a value costs against `limits.query_bytes` on top of its own length:
/// what the host spends to hold it, so a result of many empty values is
/// bounded too.
pub const VALUE_OVERHEAD: u64 = 16;

/// One component's database.
pub struct Db {
    /// The component's statements. A second handle on the connection with a
    /// statement cache of its own; declared first, so that its statements
    /// are finalized before the connection closes.
    guest: Connection,
    /// The host's statements, and the connection's owner.
    host: Connection,
    /// The connection's VFS: after the connection, which uses it to the end.
    _vfs: Vfs,
    /// What its temporary files may hold.
    temp: Arc<TempBudget>,
    /// Interrupts a statement still running at the call's deadline.
    _watch: Arc<SqlWatch>,
    sandbox: Arc<Sandbox>,
    tx: Tx,
    limits: GuestLimits,
    path: PathBuf,
    counts: StoreCounts,
}

/// The guest's statements on a database since it opened, and the rows they
/// returned or changed: for metrics, and for the span of a unit of work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub statements: u64,
    pub rows: u64,
}

impl std::ops::Sub for StoreCounts {
    type Output = StoreCounts;
    fn sub(self, before: StoreCounts) -> StoreCounts {
        StoreCounts { statements: self.statements - before.statements, rows: self.rows - before.rows }
    }
}

/// The unit of work's transaction, as the host knows it.
#[derive(Debug)]
enum Tx {
    /// No transaction: nothing written yet in this unit.
    Idle,
    /// Open, by the host.
    Open,
    /// SQLite ended it on its own; the unit must fail.
    Broken(String),
}

struct GuestLimits {
    rows: u64,
    bytes: u64,
    statement: u32,
}

impl Db {
    /// Opens (creating if needed) the database at `path`, installs the
    /// sandbox, and creates or upgrades the host's own tables.
    pub fn open(path: &Path, settings: &SqliteSettings, limits: &Limits) -> Result<Db> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_EXRESCODE;
        let temp = TempBudget::new(limits.temp_mib.saturating_mul(1 << 20));
        let vfs = Vfs::register(temp.clone())?;
        let mut host = Connection::open_with_flags_and_vfs(path, flags, vfs.name())
            .with_context(|| format!("opening the database {}", path.display()))?;
        host.busy_timeout(std::time::Duration::from_secs(5))?;
        host.pragma_update(None, "journal_mode", settings.journal_mode.pragma())?;
        host.pragma_update(None, "synchronous", settings.synchronous.pragma())?;
        host.pragma_update(None, "foreign_keys", "on")?;
        // Defensive mode: no corrupting the file through SQL even where a
        // PRAGMA slipped through; schema functions must be innocuous.
        host.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        host.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
        host.set_prepared_statement_cache_capacity(32);
        host.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        host.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, limits.statement_length.max(4096) as i32)?;
        // No single string or blob larger than a query may return: a
        // `zeroblob(1e9)` fails instead of allocating a gigabyte.
        host.set_limit(Limit::SQLITE_LIMIT_LENGTH, limits.query_bytes.clamp(1 << 20, i32::MAX as u64) as i32)?;
        let page_size: i64 = host.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let max_pages = (limits.database_mib << 20) / (page_size.max(512) as u64);
        host.pragma_update(None, "max_page_count", i64::try_from(max_pages).unwrap_or(i64::MAX))?;

        let sandbox = Arc::new(Sandbox::default());
        let watched = sandbox.clone();
        host.progress_handler(10_000, Some(move || watched.deadline.passed()))?;
        let judge = sandbox.clone();
        host.authorizer(Some(move |ctx: rusqlite::hooks::AuthContext<'_>| judge.authorize(&ctx)))?;
        // LIKE and GLOB patterns beyond this are refused outright, and the
        // functions whose one call could outlast the deadline are replaced.
        host.set_limit(Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, LIKE_PATTERN_LENGTH as i32)?;
        let max_length = limits.query_bytes.clamp(1 << 20, i32::MAX as u64) as usize;
        functions::install(&host, &sandbox, LIKE_PATTERN_LENGTH, max_length)?;

        // SAFETY: `guest` is a second, non-owning handle on `host`'s
        // connection. It is declared before `host` in `Db`, so it (and every
        // statement it cached) is dropped before `host` closes the
        // connection; both are only used through `&mut Db`, one at a time.
        let guest = unsafe { Connection::from_handle(host.handle()) }?;
        guest.set_prepared_statement_cache_capacity(128);

        let watch = Arc::new(SqlWatch { sandbox: sandbox.clone(), interrupt: host.get_interrupt_handle() });
        let watched: Arc<dyn deadline::Watched> = watch.clone();
        deadline::watch(Arc::downgrade(&watched));
        let mut db = Db {
            guest,
            host,
            _vfs: vfs,
            temp,
            _watch: watch,
            sandbox,
            tx: Tx::Idle,
            limits: GuestLimits {
                rows: limits.query_rows,
                bytes: limits.query_bytes,
                statement: limits.statement_length,
            },
            path: path.to_path_buf(),
            counts: StoreCounts::default(),
        };
        db.host_read(ledger::ensure_tables)
            .with_context(|| format!("preparing the host's tables in {}", path.display()))?;
        Ok(db)
    }

    /// The guest's statements and rows so far.
    pub fn counts(&self) -> StoreCounts {
        self.counts
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The call's deadline, as SQLite's progress handler reads it.
    pub fn deadline(&self) -> &deadline::Slot {
        &self.sandbox.deadline
    }

    /// Arms (or clears) the deadline for the statements that follow.
    pub fn set_deadline(&self, deadline: Option<Deadline>) {
        self.sandbox.deadline.set(deadline);
    }

    // ---- The unit of work -------------------------------------------------

    /// Whether a unit of work has written anything yet.
    pub fn in_unit(&self) -> bool {
        !matches!(self.tx, Tx::Idle)
    }

    /// Whether the unit of work has a transaction that would commit (open,
    /// and not ended by SQLite on its own).
    pub fn is_open(&self) -> bool {
        matches!(self.tx, Tx::Open)
    }

    /// Opens the unit of work's transaction if it is not open yet.
    fn begin(&mut self) -> Result<(), UnitBroken> {
        match &self.tx {
            Tx::Open => Ok(()),
            Tx::Broken(why) => Err(UnitBroken(why.clone())),
            Tx::Idle => {
                self.sandbox.as_host(|| run(&self.host, "BEGIN IMMEDIATE")).map_err(|e| UnitBroken(e.to_string()))?;
                self.tx = Tx::Open;
                Ok(())
            }
        }
    }

    /// Notices SQLite ending the transaction on its own.
    fn check_tx(&mut self, cause: impl FnOnce() -> String) {
        if matches!(self.tx, Tx::Open) && self.host.is_autocommit() {
            let why = cause();
            tracing::debug!(db = %self.path.display(), "SQLite ended the unit of work's transaction: {why}");
            self.tx = Tx::Broken(why);
        }
    }

    /// Commits the unit of work, if it wrote anything. Fails, with nothing
    /// committed, if SQLite had ended the transaction on its own.
    pub fn commit(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.tx, Tx::Idle) {
            Tx::Idle => Ok(()),
            Tx::Broken(why) => bail!("the unit of work was rolled back by SQLite: {why}"),
            Tx::Open => {
                if let Err(e) = self.sandbox.as_host(|| run(&self.host, "COMMIT")) {
                    // A failed COMMIT can leave the transaction open: end it.
                    if !self.host.is_autocommit() {
                        let _ = self.sandbox.as_host(|| run(&self.host, "ROLLBACK"));
                    }
                    return Err(e).context("committing the unit of work");
                }
                Ok(())
            }
        }
    }

    /// Rolls the unit of work back, whatever it did.
    pub fn rollback(&mut self) {
        let was = std::mem::replace(&mut self.tx, Tx::Idle);
        if !self.host.is_autocommit()
            && let Err(e) = self.sandbox.as_host(|| run(&self.host, "ROLLBACK"))
        {
            tracing::error!(db = %self.path.display(), "rolling back a unit of work failed: {e}");
        }
        if let Tx::Broken(why) = was {
            tracing::debug!(db = %self.path.display(), "unit of work ended after SQLite rolled it back: {why}");
        }
    }

    /// Fails if SQLite ended the unit of work's transaction on its own (a
    /// full disk at `database_mib`, an interrupt): nothing of the unit stays,
    /// so whatever ran last did not take effect. `cause` says where.
    pub fn ensure_intact(&mut self, cause: impl FnOnce() -> String) -> Result<(), UnitBroken> {
        self.check_tx(cause);
        match &self.tx {
            Tx::Broken(why) => Err(UnitBroken(why.clone())),
            _ => Ok(()),
        }
    }

    // ---- The host's path ---------------------------------------------------

    /// Runs host bookkeeping (`ledger`) inside the current unit of work,
    /// opening it if needed. The sandbox is lifted for the host's own
    /// statements, and what the component sees of the connection
    /// (`last_insert_rowid()`) is as it left it.
    pub fn host<R>(&mut self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        self.begin()?;
        // SAFETY: the handle is live for as long as `self.host` is.
        let handle = unsafe { self.host.handle() };
        let rowid = self.host.last_insert_rowid();
        let result = self.sandbox.as_host(|| f(&self.host));
        // SAFETY: as above; this only sets the connection's last rowid.
        unsafe { rusqlite::ffi::sqlite3_set_last_insert_rowid(handle, rowid) };
        self.check_tx(|| match &result {
            Err(e) => e.to_string(),
            Ok(_) => "ended during the host's bookkeeping".into(),
        });
        Ok(result?)
    }

    /// Runs host reads (or its own setup) outside any unit of work.
    pub fn host_read<R>(&mut self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        if self.in_unit() {
            bail!("host bookkeeping outside a unit of work was asked for inside one (a host bug)");
        }
        Ok(self.sandbox.as_host(|| f(&self.host))?)
    }

    // ---- The guest's path --------------------------------------------------

    /// `store.execute`: one statement that returns no rows.
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        let changed = self.guest_statement(sql, |stmt, _| {
            if stmt.column_count() > 0 {
                return Err(Error::Invalid("this statement returns rows: run it with `query`".into()));
            }
            Ok(stmt.execute(rusqlite::params_from_iter(params.iter().map(Param))).map(|n| n as u64))
        })?;
        self.counts.rows += changed;
        Ok(changed)
    }

    /// `store.query`: one statement's rows, within the row and byte limits.
    pub fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, Error> {
        let (max_rows, max_bytes) = (self.limits.rows, self.limits.bytes);
        self.guest_statement(sql, |stmt, _| {
            let width = stmt.column_count();
            let mut rows = match stmt.query(rusqlite::params_from_iter(params.iter().map(Param))) {
                Ok(rows) => rows,
                Err(e) => return Ok(Err(e)),
            };
            let (mut out, mut bytes) = (Vec::new(), 0u64);
            loop {
                let row = match rows.next() {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(e) => return Ok(Err(e)),
                };
                if out.len() as u64 >= max_rows {
                    return Err(Error::Limit(format!(
                        "the query returns more than {max_rows} rows (limits.query_rows): page through it with LIMIT"
                    )));
                }
                let mut values = Vec::with_capacity(width);
                for i in 0..width {
                    let value = row.get_ref(i).map_err(|e| Error::Other(e.to_string()))?;
                    bytes += VALUE_OVERHEAD
                        + match value {
                            ValueRef::Text(t) | ValueRef::Blob(t) => t.len() as u64,
                            _ => 0,
                        };
                    if bytes > max_bytes {
                        return Err(Error::Limit(format!(
                            "the query returns more than {max_bytes} bytes (limits.query_bytes, counting {VALUE_OVERHEAD} bytes per value): select fewer columns or page with LIMIT"
                        )));
                    }
                    values.push(to_value(value));
                }
                out.push(values);
            }
            Ok(Ok(out))
        })
        .inspect(|rows| self.counts.rows += rows.len() as u64)
    }

    /// Prepares one guest statement (judged as the guest), opens the unit of
    /// work before it writes, runs it with `f`, and checks what it did.
    /// `f` returns SQLite's outcome inside its own: `Err` for the host's
    /// refusals (limits), `Ok(Err)` for SQLite's errors.
    fn guest_statement<R>(
        &mut self,
        sql: &str,
        f: impl FnOnce(&mut CachedStatement<'_>, &Sandbox) -> Result<rusqlite::Result<R>, Error>,
    ) -> Result<R, Error> {
        if let Tx::Broken(why) = &self.tx {
            return Err(Error::Other(format!(
                "the unit of work was already rolled back by SQLite ({why}); this call will fail, and nothing it wrote is kept"
            )));
        }
        if sql.len() > self.limits.statement as usize {
            return Err(Error::Limit(format!(
                "the statement is {} bytes long; the limit is {} (limits.statement_length)",
                sql.len(),
                self.limits.statement
            )));
        }
        // SQLite's authorizer never sees VACUUM; refuse it by name. (It would
        // fail inside the unit of work's transaction anyway, and VACUUM INTO
        // needs an ATTACH, which is refused and limited to none.)
        if first_keyword(sql).eq_ignore_ascii_case("vacuum") {
            return Err(Error::Denied(
                "VACUUM is refused: the host maintains the database, and VACUUM INTO would copy it elsewhere".into(),
            ));
        }
        self.counts.statements += 1;
        let sandbox = self.sandbox.clone();
        sandbox.start_statement();
        let temp = self.temp.clone();
        temp.take_exceeded();
        let mut stmt = self.guest.prepare_cached(sql).map_err(|e| classify(e, sandbox.take_denial(), &temp))?;
        let changes_schema = sandbox.changes_schema();
        // The transaction opens at the first statement that writes. Reads
        // before it run on their own: nothing else writes this database (one
        // host per data directory, one unit of work at a time per
        // component), so they see what they would inside it, and a call that
        // only reads costs what a plain read costs.
        if !stmt.readonly() {
            if let Tx::Idle = self.tx {
                let begun = sandbox.as_host(|| run(&self.host, "BEGIN IMMEDIATE"));
                begun.map_err(|e| Error::Other(format!("opening the unit of work: {e}")))?;
                self.tx = Tx::Open;
            }
            if changes_schema {
                sandbox.as_host(|| run(&self.host, "SAVEPOINT moat_ddl")).map_err(|e| Error::Other(e.to_string()))?;
            }
        }
        // A cached statement recompiled because the schema changed is judged
        // again from scratch.
        sandbox.start_statement();
        let outcome = f(&mut stmt, &sandbox);
        let outcome = match outcome {
            Ok(Ok(r)) => Ok(r),
            // Whatever failed once the deadline had passed failed because of it.
            Ok(Err(_)) if sandbox.deadline.passed() => {
                Err(Error::Limit("the statement ran past the call's deadline (limits.call_timeout_ms)".into()))
            }
            Ok(Err(e)) => Err(classify(e, sandbox.take_denial(), &temp)),
            Err(e) => Err(e),
        };
        if changes_schema {
            // Never cached: the next run is compiled, and judged, again.
            stmt.discard();
        } else {
            drop(stmt);
        }
        if let (Err(e), true) = (&outcome, matches!(self.tx, Tx::Open) && self.host.is_autocommit()) {
            self.tx = Tx::Broken(describe(e));
            return Err(Error::Other(format!(
                "{}; SQLite rolled the unit of work back, so this call will fail and nothing it wrote is kept",
                describe(e)
            )));
        }
        if changes_schema && matches!(self.tx, Tx::Open) {
            let trespass = match &outcome {
                Ok(_) => {
                    sandbox.as_host(|| ledger::guest_trespass(&self.host)).map_err(|e| Error::Other(e.to_string()))?
                }
                Err(_) => None,
            };
            let undo = if trespass.is_some() || outcome.is_err() {
                "ROLLBACK TO moat_ddl; RELEASE moat_ddl"
            } else {
                "RELEASE moat_ddl"
            };
            sandbox.as_host(|| self.host.execute_batch(undo)).map_err(|e| Error::Other(e.to_string()))?;
            if let Some(what) = trespass {
                return Err(Error::Denied(format!("{what} would reach the host's tables; the statement was undone")));
            }
        }
        outcome
    }
}

/// Interrupts SQL still running past the deadline: SQLite's progress
/// handler only runs between steps of a statement; this reaches the steps
/// that check for an interrupt inside them.
struct SqlWatch {
    sandbox: Arc<Sandbox>,
    interrupt: rusqlite::InterruptHandle,
}

impl deadline::Watched for SqlWatch {
    fn overdue(&self) -> bool {
        self.sandbox.deadline.passed()
    }

    fn interrupt(&self) {
        self.interrupt.interrupt();
    }
}

/// SQLite ended the unit of work's transaction on its own.
#[derive(Debug, thiserror::Error)]
#[error("the unit of work was rolled back by SQLite: {0}")]
pub struct UnitBroken(pub String);

fn describe(e: &Error) -> String {
    match e {
        Error::Invalid(s) | Error::Constraint(s) | Error::Denied(s) | Error::Limit(s) | Error::Other(s) => s.clone(),
    }
}

/// Runs one of the host's fixed statements, prepared once on the host's handle.
fn run(c: &Connection, sql: &str) -> rusqlite::Result<()> {
    c.prepare_cached(sql)?.execute([]).map(drop)
}

/// The first word of a statement, past white space and comments.
fn first_keyword(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    let end = rest.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(rest.len());
    &rest[..end]
}

/// Turns a rusqlite error into the WIT error the component can act on.
/// `denial` is the sandbox's reason, if it refused something: SQLite reports
/// some refusals (functions) as ordinary errors.
fn classify(e: rusqlite::Error, denial: Option<String>, temp: &TempBudget) -> Error {
    use rusqlite::ErrorCode;
    if let Some(reason) = denial {
        return Error::Denied(reason);
    }
    if temp.take_exceeded() {
        return Error::Limit(format!(
            "the statement needed more than {} MiB of temporary storage for sorting or grouping (limits.temp_mib): sort less at once, or use an index",
            temp.limit() >> 20
        ));
    }
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            let text = msg.clone().unwrap_or_else(|| f.to_string());
            match f.code {
                ErrorCode::AuthorizationForStatementDenied => Error::Denied(text),
                ErrorCode::ConstraintViolation => Error::Constraint(text),
                ErrorCode::TooBig => Error::Limit(format!("{text} (limits.query_bytes or limits.statement_length)")),
                ErrorCode::DiskFull => Error::Limit(format!("{text}: the database reached limits.database_mib")),
                ErrorCode::OperationInterrupted => {
                    Error::Limit("the statement ran past the call's deadline (limits.call_timeout_ms)".into())
                }
                ErrorCode::Unknown | ErrorCode::ApiMisuse | ErrorCode::ParameterOutOfRange => Error::Invalid(text),
                _ => Error::Other(text),
            }
        }
        rusqlite::Error::SqlInputError { msg, .. } => Error::Invalid(msg.clone()),
        rusqlite::Error::MultipleStatement => {
            Error::Invalid("more than one statement: run one statement per call".into())
        }
        rusqlite::Error::InvalidParameterCount(given, wanted) => {
            Error::Invalid(format!("the statement has {wanted} parameters but {given} were given"))
        }
        rusqlite::Error::ExecuteReturnedResults => {
            Error::Invalid("this statement returns rows: run it with `query`".into())
        }
        _ => Error::Other(e.to_string()),
    }
}

/// A WIT value bound as a statement parameter.
struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Integer(n) => ValueRef::Integer(*n),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn to_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Integer(n),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::first_keyword;

    #[test]
    fn first_keyword_skips_space_and_comments() {
        assert_eq!(first_keyword("  vacuum"), "vacuum");
        assert_eq!(first_keyword("/* hi */ -- there\n\tVACUUM INTO 'x'"), "VACUUM");
        assert_eq!(first_keyword("SELECT 1"), "SELECT");
        assert_eq!(first_keyword("/* unterminated"), "");
    }
}
