//! Capability: `moat:platform/store`, a component's own SQLite database.
//!
//! Each component gets one [`Db`]: one connection to one file, which nothing
//! else in the host hands to any other component. On top of that, a SQLite
//! authorizer checks every statement the component prepares, so that its SQL
//! reaches only its own tables:
//!
//! - `ATTACH`/`DETACH` are refused (and `SQLITE_LIMIT_ATTACHED` is 0), so no
//!   other file can be opened, `VACUUM INTO` included;
//! - transaction control is refused: the host owns the unit of work;
//! - PRAGMAs are refused except read-only introspection of the component's
//!   own tables;
//! - the host-reserved `_moat_*` tables and writes to `sqlite_*` are refused;
//! - `load_extension` is refused (and extension loading is off).
//!
//! A refusal is `error::denied` with the reason, never a trap. The host's own
//! statements (its bookkeeping tables) run with the sandbox lifted; that is
//! the only difference between host and guest SQL.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, ToSql};

use crate::manifest::{Limits, SqliteSettings};

use crate::platform::moat::platform::store::{self, Error, Value};

/// The version of a component's tables, as its `migrate` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaVersion {
    /// Incompatible changes.
    pub major: u32,
    /// Additive changes.
    pub minor: u32,
}

impl std::fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl std::str::FromStr for SchemaVersion {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let (major, minor) = s.split_once('.').with_context(|| format!("schema version {s:?} is not MAJOR.MINOR"))?;
        Ok(SchemaVersion { major: major.parse()?, minor: minor.parse()? })
    }
}

/// Prefix of the tables the host keeps in every component database.
pub const RESERVED_PREFIX: &str = "_moat_";

/// PRAGMAs a component may run: they only read the layout of its own tables.
const READ_ONLY_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "index_info",
    "index_xinfo",
    "index_list",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

/// One component's database: a connection, the sandbox around it, and the
/// state of the current unit of work.
pub struct Db {
    conn: Connection,
    /// While set, statements are the host's own and the sandbox is lifted.
    host_mode: Arc<AtomicBool>,
    /// Why the authorizer last refused something, to put in the error.
    denial: Arc<Mutex<Option<String>>>,
    /// Whether a transaction is open (they are opened lazily, on first use).
    in_tx: bool,
    max_rows: u64,
    max_bytes: u64,
    max_statement: u32,
    /// When the current call must end, in ms since the Unix epoch (0: no
    /// call running). SQLite checks it while a statement runs, so a runaway
    /// query ends too, not only runaway wasm.
    deadline_ms: Arc<AtomicU64>,
}

impl Db {
    /// Opens (creating if needed) the database at `path` with the given
    /// settings, installs the sandbox, and creates the host's own tables.
    pub fn open(path: &Path, settings: &SqliteSettings, limits: &Limits) -> Result<Db> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_EXRESCODE;
        let mut conn = Connection::open_with_flags(path, flags)
            .with_context(|| format!("opening the database {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", settings.journal_mode.pragma())?;
        conn.pragma_update(None, "synchronous", settings.synchronous.pragma())?;
        conn.pragma_update(None, "foreign_keys", "on")?;
        conn.set_prepared_statement_cache_capacity(128);
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, limits.statement_length.max(4096) as i32)?;
        // No single string or blob larger than a query may return: a
        // `zeroblob(1e9)` fails instead of allocating a gigabyte.
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, limits.query_bytes.clamp(1 << 20, i32::MAX as u64) as i32)?;
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let max_pages = (limits.database_mib << 20) / (page_size.max(512) as u64);
        conn.pragma_update(None, "max_page_count", i64::try_from(max_pages).unwrap_or(i64::MAX))?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {RESERVED_PREFIX}meta (key TEXT PRIMARY KEY, value ANY) STRICT"
        ))?;

        let deadline_ms = Arc::new(AtomicU64::new(0));
        let deadline = deadline_ms.clone();
        conn.progress_handler(
            10_000,
            Some(move || {
                let d = deadline.load(Ordering::Relaxed);
                d != 0 && crate::events::now_ms() as u64 > d
            }),
        )?;

        let host_mode = Arc::new(AtomicBool::new(false));
        let denial = Arc::new(Mutex::new(None));
        let (mode, why) = (host_mode.clone(), denial.clone());
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            if mode.load(Ordering::Relaxed) {
                return Authorization::Allow;
            }
            match authorize(&ctx) {
                Ok(()) => Authorization::Allow,
                Err(reason) => {
                    *why.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                    Authorization::Deny
                }
            }
        }))?;
        Ok(Db {
            conn,
            host_mode,
            denial,
            in_tx: false,
            max_rows: limits.query_rows,
            max_bytes: limits.query_bytes,
            max_statement: limits.statement_length,
            deadline_ms,
        })
    }

    /// Sets the deadline of the call about to run (`None`: no call running).
    pub fn set_deadline(&self, after: Option<std::time::Duration>) {
        let at = after.map_or(0, |d| crate::events::now_ms() as u64 + d.as_millis() as u64);
        self.deadline_ms.store(at, Ordering::Relaxed);
    }

    /// Runs `f` with the sandbox lifted, for the host's own bookkeeping, inside
    /// the current unit of work (opening it if needed).
    pub fn host<R>(&mut self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        self.begin()?;
        Ok(self.as_host(f)?)
    }

    /// Opens the unit of work's transaction if it is not open yet.
    fn begin(&mut self) -> rusqlite::Result<()> {
        if !self.in_tx {
            self.as_host(|c| run(c, "BEGIN IMMEDIATE"))?;
            self.in_tx = true;
        }
        Ok(())
    }

    /// Runs `f` with the sandbox lifted.
    fn as_host<R>(&self, f: impl FnOnce(&Connection) -> R) -> R {
        self.host_mode.store(true, Ordering::Relaxed);
        let result = f(&self.conn);
        self.host_mode.store(false, Ordering::Relaxed);
        result
    }

    /// Commits the unit of work, if it touched the database.
    pub fn commit(&mut self) -> Result<()> {
        if self.in_tx {
            self.in_tx = false;
            if let Err(e) = self.as_host(|c| run(c, "COMMIT")) {
                // A failed COMMIT can leave the transaction open: end it.
                let _ = self.as_host(|c| run(c, "ROLLBACK"));
                return Err(e).context("committing the unit of work");
            }
        }
        Ok(())
    }

    /// Rolls the unit of work back, if it touched the database.
    pub fn rollback(&mut self) {
        if self.in_tx {
            self.in_tx = false;
            if let Err(e) = self.as_host(|c| run(c, "ROLLBACK")) {
                tracing::error!("rolling back a unit of work failed: {e}");
            }
        }
    }

    /// Runs `f` with the sandbox lifted, outside any unit of work: for the
    /// host's reads between calls.
    pub fn host_read<R>(&mut self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        debug_assert!(!self.in_tx, "host_read inside a unit of work");
        Ok(self.as_host(f)?)
    }

    /// Marks a point in the unit of work to roll back to: one per event
    /// handled, so a failing handler undoes only its own writes.
    pub fn savepoint(&mut self) -> Result<()> {
        self.host(|c| run(c, "SAVEPOINT moat_step"))
    }

    /// Keeps what was done since the savepoint.
    pub fn release(&mut self) -> Result<()> {
        self.host(|c| run(c, "RELEASE moat_step"))
    }

    /// Undoes what was done since the savepoint, and drops it.
    pub fn rollback_to_savepoint(&mut self) -> Result<()> {
        self.host(|c| {
            run(c, "ROLLBACK TO moat_step")?;
            run(c, "RELEASE moat_step")
        })
    }

    /// The schema version the component's `migrate` last returned, if any.
    pub fn schema_version(&mut self) -> Result<Option<SchemaVersion>> {
        let text: Option<String> = self.host(|c| {
            c.query_row(&format!("SELECT value FROM {RESERVED_PREFIX}meta WHERE key = 'schema_version'"), [], |r| {
                r.get(0)
            })
            .optional()
        })?;
        text.map(|t| t.parse()).transpose()
    }

    /// Records the schema version, in the current unit of work.
    pub fn set_schema_version(&mut self, version: SchemaVersion) -> Result<()> {
        self.host(|c| {
            c.execute(
                &format!("INSERT INTO {RESERVED_PREFIX}meta (key, value) VALUES ('schema_version', ?1) ON CONFLICT (key) DO UPDATE SET value = ?1"),
                [version.to_string()],
            )
        })?;
        Ok(())
    }

    fn guest_statement(&mut self, sql: &str) -> Result<rusqlite::CachedStatement<'_>, Error> {
        if sql.len() > self.max_statement as usize {
            return Err(Error::Limit(format!(
                "the statement is {} bytes long; the limit is {} (limits.statement_length)",
                sql.len(),
                self.max_statement
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
        // The transaction opens at the first statement that writes. Reads
        // before it run on their own: nothing else writes this database (one
        // host per data directory, one unit of work at a time per
        // component), so they see what they would inside it, and a call that
        // only reads costs what a plain read costs.
        self.denial.lock().unwrap_or_else(|p| p.into_inner()).take();
        let stmt = self.conn.prepare_cached(sql).map_err(|e| {
            let denial = self.denial.lock().unwrap_or_else(|p| p.into_inner()).take();
            classify(e, denial)
        })?;
        if !self.in_tx && !stmt.readonly() {
            self.host_mode.store(true, Ordering::Relaxed);
            let begun = run(&self.conn, "BEGIN IMMEDIATE");
            self.host_mode.store(false, Ordering::Relaxed);
            begun.map_err(|e| Error::Other(format!("opening the unit of work: {e}")))?;
            self.in_tx = true;
        }
        Ok(stmt)
    }
}

impl store::Host for Db {
    fn execute(&mut self, sql: String, params: Vec<Value>) -> Result<u64, Error> {
        let mut stmt = self.guest_statement(&sql)?;
        if stmt.column_count() > 0 {
            return Err(Error::Invalid("this statement returns rows: run it with `query`".into()));
        }
        let changed =
            stmt.execute(rusqlite::params_from_iter(params.iter().map(Param))).map_err(|e| classify(e, None))?;
        Ok(changed as u64)
    }

    fn query(&mut self, sql: String, params: Vec<Value>) -> Result<Vec<Vec<Value>>, Error> {
        let (max_rows, max_bytes) = (self.max_rows, self.max_bytes);
        let mut stmt = self.guest_statement(&sql)?;
        let width = stmt.column_count();
        let mut rows =
            stmt.query(rusqlite::params_from_iter(params.iter().map(Param))).map_err(|e| classify(e, None))?;
        let (mut out, mut bytes) = (Vec::new(), 0u64);
        while let Some(row) = rows.next().map_err(|e| classify(e, None))? {
            if out.len() as u64 >= max_rows {
                return Err(Error::Limit(format!(
                    "the query returns more than {max_rows} rows (limits.query_rows): page through it with LIMIT"
                )));
            }
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                let value = row.get_ref(i).map_err(|e| classify(e, None))?;
                bytes += match value {
                    ValueRef::Text(t) | ValueRef::Blob(t) => t.len() as u64,
                    _ => 8,
                };
                values.push(to_value(value));
            }
            if bytes > max_bytes {
                return Err(Error::Limit(format!(
                    "the query returns more than {max_bytes} bytes (limits.query_bytes): select fewer columns or page with LIMIT"
                )));
            }
            out.push(values);
        }
        Ok(out)
    }
}

/// The sandbox's rule, one action at a time. `Err` carries the reason.
fn authorize(ctx: &AuthContext<'_>) -> Result<(), String> {
    if let Some(db) = ctx.database_name
        && db != "main"
        && db != "temp"
    {
        return Err(format!("database `{db}` is not this component's"));
    }
    let reserved = |table: &str| {
        let t = table.to_ascii_lowercase();
        t.starts_with(RESERVED_PREFIX)
    };
    // DDL writes the schema table itself; that is the only way a component
    // reaches it, as `PRAGMA writable_schema` is refused. Every other
    // `sqlite_*` table (`sqlite_sequence`, the `ANALYZE` statistics) is
    // SQLite's own bookkeeping and stays out of reach.
    let internal = |table: &str| {
        let t = table.to_ascii_lowercase();
        t.starts_with("sqlite_")
            && !matches!(t.as_str(), "sqlite_master" | "sqlite_schema" | "sqlite_temp_master" | "sqlite_temp_schema")
    };
    match ctx.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            Err("ATTACH and DETACH are refused: a component reaches only its own database".into())
        }
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Err(
            "transaction control is refused: every call is already one unit of work that the host commits or rolls back"
                .into(),
        ),
        AuthAction::Pragma { pragma_name, .. } => {
            if READ_ONLY_PRAGMAS.contains(&pragma_name.to_ascii_lowercase().as_str()) {
                Ok(())
            } else {
                Err(format!("PRAGMA {pragma_name} is refused: the host owns the database's settings"))
            }
        }
        AuthAction::Function { function_name } if function_name.eq_ignore_ascii_case("load_extension") => {
            Err("load_extension is refused: components cannot load native code".into())
        }
        AuthAction::CreateVtable { .. } | AuthAction::DropVtable { .. } => {
            Err("virtual tables are refused".into())
        }
        AuthAction::Read { table_name, .. } if reserved(table_name) => {
            Err(format!("table {table_name} is reserved for the host"))
        }
        AuthAction::Read { .. } => Ok(()),
        AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::CreateTable { table_name }
        | AuthAction::CreateTempTable { table_name }
        | AuthAction::DropTable { table_name }
        | AuthAction::DropTempTable { table_name }
        | AuthAction::AlterTable { table_name, .. }
        | AuthAction::Analyze { table_name }
        | AuthAction::CreateIndex { table_name, .. }
        | AuthAction::CreateTempIndex { table_name, .. }
        | AuthAction::DropIndex { table_name, .. }
        | AuthAction::DropTempIndex { table_name, .. }
        | AuthAction::CreateTrigger { table_name, .. }
        | AuthAction::CreateTempTrigger { table_name, .. }
        | AuthAction::DropTrigger { table_name, .. }
        | AuthAction::DropTempTrigger { table_name, .. } => {
            if reserved(table_name) {
                Err(format!("table {table_name} is reserved for the host"))
            } else if internal(table_name) {
                Err(format!("table {table_name} belongs to SQLite and cannot be changed"))
            } else {
                Ok(())
            }
        }
        AuthAction::Unknown { code, .. } => Err(format!("SQLite action {code} is not allowed")),
        _ => Ok(()),
    }
}

/// Runs one of the host's fixed statements, prepared once.
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
/// `denial` is the sandbox's reason, if it refused something while the
/// statement was prepared: SQLite reports some refusals (functions) as
/// ordinary errors.
fn classify(e: rusqlite::Error, denial: Option<String>) -> Error {
    use rusqlite::ErrorCode;
    if let Some(reason) = denial {
        return Error::Denied(reason);
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
