//! The sandbox's rules: what a component's SQL may do, decided action by
//! action as SQLite prepares each statement (its authorizer).
//!
//! Deny by default. Statement kinds, PRAGMAs and SQL functions are
//! allowlists; anything SQLite reports that is not on them (a new action
//! code, a function of an extension) is refused. The rules:
//!
//! - **Its own database only.** `ATTACH`/`DETACH` are refused (and
//!   `SQLITE_LIMIT_ATTACHED` is 0), and `VACUUM` (which SQLite never shows
//!   the authorizer) is refused by name before preparing.
//! - **No host tables, by any path.** Every object whose name starts with
//!   `_moat` (any case) is the host's: reading, writing, altering, dropping,
//!   indexing or triggering on it is refused, and so is creating anything
//!   under such a name (a rename is checked after it runs, see `Db`).
//!   Statements a trigger or view runs are judged as the component's,
//!   whatever statement fired them, even one of the host's.
//! - **No TEMP objects.** They would outlive the unit of work on the
//!   connection (and a swap), and shadow names; everything a component keeps
//!   goes to its own `main` tables.
//! - **No transaction control.** Every call is one unit of work the host
//!   commits or rolls back.
//! - **SQLite's own tables** are reachable only as SQLite itself needs them
//!   for DDL: the schema table (written only by DDL, as `writable_schema` is
//!   refused; its `sql` column reads as NULL except to SQLite's own `ALTER
//!   TABLE`, so the host's table definitions stay unread), `sqlite_sequence`
//!   (only the component's own `AUTOINCREMENT` counters live there: host
//!   tables do not use it) and the `ANALYZE` statistics (read, or cleared by
//!   `ANALYZE`). `dbstat` (page-level sizes) is refused.
//! - **PRAGMAs** only read the layout of the component's own tables
//!   (`table_info`, `index_list`, ...) or its own header fields
//!   (`user_version`, `application_id`).
//! - **Functions**: the core scalar, aggregate, window, date, JSON and math
//!   functions. Not `load_extension`, `fts3_tokenizer` (it returns a host
//!   pointer), `sqlite_offset`, `sqlite_log`, `total_changes`, compile
//!   options, or any debugging function.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

use crate::deadline;

/// The prefix of every object the host keeps in a component's database.
/// Matched case-insensitively: SQLite's names are.
pub const RESERVED_PREFIX: &str = "_moat";

/// Whether `name` is one the host reserves.
pub fn reserved(name: &str) -> bool {
    name.len() >= RESERVED_PREFIX.len() && name[..RESERVED_PREFIX.len()].eq_ignore_ascii_case(RESERVED_PREFIX)
}

/// What the authorizer shares with the connection: whose statement is being
/// prepared, what it does, and why the last thing was refused.
#[derive(Default)]
pub struct Sandbox {
    /// While set, statements are the host's own (its bookkeeping tables),
    /// and only what a trigger or view runs is judged.
    host_mode: AtomicBool,
    /// What the statement being prepared does, from its first action.
    kind: AtomicU8,
    /// The statement being prepared changes the schema.
    schema_change: AtomicBool,
    /// Why the last refusal happened, for the error the component gets.
    denial: Mutex<Option<String>>,
    /// When the running call must end: SQLite's progress handler checks it.
    pub deadline: deadline::Slot,
}

const TEMP_REFUSED: &str = "TEMP objects are refused: they would outlive the unit of work on the connection; keep data in the component's own tables";

/// What a statement does, as its first authorizer action says. SQLite's own
/// `ALTER TABLE` code reads the schema's `sql` column; nothing else of the
/// component's may.
const KIND_UNKNOWN: u8 = 0;
const KIND_QUERY: u8 = 1;
const KIND_ALTER: u8 = 2;
const KIND_OTHER_DDL: u8 = 3;

impl Sandbox {
    /// Runs `f` as the host: the sandbox is lifted for the host's own statements.
    pub fn as_host<R>(&self, f: impl FnOnce() -> R) -> R {
        let was = self.host_mode.swap(true, Ordering::Relaxed);
        let result = f();
        self.host_mode.store(was, Ordering::Relaxed);
        result
    }

    /// Forgets what the previous guest statement was: called before each is
    /// prepared or starts to run.
    pub fn start_statement(&self) {
        self.kind.store(KIND_UNKNOWN, Ordering::Relaxed);
        self.schema_change.store(false, Ordering::Relaxed);
        self.denial.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Whether the statement prepared since `start_statement` changes the schema.
    pub fn changes_schema(&self) -> bool {
        self.schema_change.load(Ordering::Relaxed)
    }

    /// The reason of the last refusal, taken.
    pub fn take_denial(&self) -> Option<String> {
        self.denial.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The authorizer callback.
    pub fn authorize(&self, ctx: &AuthContext<'_>) -> Authorization {
        // The host's own statements name its tables schema-qualified and
        // fire no trigger and read no view of the host's; whatever a trigger
        // or view runs is the component's, and judged as such.
        if self.host_mode.load(Ordering::Relaxed) && ctx.accessor.is_none() {
            return Authorization::Allow;
        }
        match self.judge(ctx) {
            Verdict::Allow => Authorization::Allow,
            Verdict::Null => Authorization::Ignore,
            Verdict::Deny(reason) => {
                *self.denial.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                Authorization::Deny
            }
        }
    }

    fn note(&self, kind: u8) {
        let _ = self.kind.compare_exchange(KIND_UNKNOWN, kind, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn judge(&self, ctx: &AuthContext<'_>) -> Verdict {
        use AuthAction as A;
        if let Some(db) = ctx.database_name
            && db != "main"
            && db != "temp"
        {
            return deny(format!("database `{db}` is not this component's: it reaches only its own"));
        }
        let temp = ctx.database_name == Some("temp");
        match ctx.action {
            A::CreateTable { .. }
            | A::CreateView { .. }
            | A::CreateIndex { .. }
            | A::CreateTrigger { .. }
            | A::AlterTable { .. }
                if temp =>
            {
                deny(TEMP_REFUSED.into())
            }
            A::Select | A::Recursive => {
                self.note(KIND_QUERY);
                Verdict::Allow
            }
            A::Read { table_name, column_name } => self.read(table_name, column_name),
            A::Insert { table_name } | A::Update { table_name, .. } => {
                self.note(KIND_QUERY);
                write(table_name, false)
            }
            A::Delete { table_name } => {
                self.note(KIND_QUERY);
                write(table_name, true)
            }
            A::CreateTable { table_name } => self.ddl(KIND_OTHER_DDL, &[table_name]),
            A::CreateView { view_name } => self.ddl(KIND_OTHER_DDL, &[view_name]),
            A::CreateIndex { index_name, table_name } => self.ddl(KIND_OTHER_DDL, &[index_name, table_name]),
            A::CreateTrigger { trigger_name, table_name } => self.ddl(KIND_OTHER_DDL, &[trigger_name, table_name]),
            A::DropTable { table_name } => self.ddl(KIND_OTHER_DDL, &[table_name]),
            A::DropView { view_name } => self.ddl(KIND_OTHER_DDL, &[view_name]),
            A::DropIndex { index_name, table_name } => self.ddl(KIND_OTHER_DDL, &[index_name, table_name]),
            A::DropTrigger { trigger_name, table_name } => self.ddl(KIND_OTHER_DDL, &[trigger_name, table_name]),
            A::AlterTable { table_name, .. } => self.ddl(KIND_ALTER, &[table_name]),
            A::CreateTempTable { .. }
            | A::CreateTempIndex { .. }
            | A::CreateTempTrigger { .. }
            | A::CreateTempView { .. }
            | A::DropTempTable { .. }
            | A::DropTempIndex { .. }
            | A::DropTempTrigger { .. }
            | A::DropTempView { .. } => deny(TEMP_REFUSED.into()),
            A::Reindex { index_name } | A::Analyze { table_name: index_name } => {
                if reserved(index_name) {
                    deny(format!("{index_name} is reserved for the host"))
                } else {
                    Verdict::Allow
                }
            }
            A::Pragma { pragma_name, pragma_value } => pragma(pragma_name, pragma_value),
            A::Function { function_name } => function(function_name),
            A::Attach { .. } | A::Detach { .. } => {
                deny("ATTACH and DETACH are refused: a component reaches only its own database".into())
            }
            A::Transaction { .. } | A::Savepoint { .. } => deny(
                "transaction control is refused: every call is already one unit of work that the host commits or rolls back"
                    .into(),
            ),
            A::CreateVtable { .. } | A::DropVtable { .. } => {
                deny("virtual tables are refused: they run native code beyond the component's tables".into())
            }
            A::Unknown { code, .. } => deny(format!("SQLite action {code} is not on the sandbox's list")),
            _ => deny("this kind of statement is not on the sandbox's list".into()),
        }
    }

    fn read(&self, table: &str, column: &str) -> Verdict {
        if reserved(table) {
            return deny(format!("table {table} is reserved for the host"));
        }
        let t = table.to_ascii_lowercase();
        match t.as_str() {
            "dbstat" => deny("dbstat is refused: page-level sizes describe the host's tables too".into()),
            // The catalogue. Its `sql` column holds every table's definition,
            // the host's included: only SQLite's own ALTER TABLE code (which
            // rewrites those definitions) reads it.
            "sqlite_master" | "sqlite_schema" | "sqlite_temp_master" | "sqlite_temp_schema"
                if column.eq_ignore_ascii_case("sql") =>
            {
                if self.kind.load(Ordering::Relaxed) == KIND_ALTER {
                    Verdict::Allow
                } else {
                    Verdict::Null
                }
            }
            _ => Verdict::Allow,
        }
    }

    fn ddl(&self, kind: u8, names: &[&str]) -> Verdict {
        self.note(kind);
        if let Some(name) = names.iter().find(|n| reserved(n)) {
            return deny(format!("{name} is reserved for the host"));
        }
        self.schema_change.store(true, Ordering::Relaxed);
        Verdict::Allow
    }
}

/// The sandbox's answer.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Allow,
    /// Allowed, reading NULL for the column.
    Null,
    Deny(String),
}

fn deny(reason: String) -> Verdict {
    Verdict::Deny(reason)
}

/// Writes: the component's own tables, and what SQLite's DDL writes of its own.
fn write(table: &str, delete: bool) -> Verdict {
    if reserved(table) {
        return deny(format!("table {table} is reserved for the host"));
    }
    let t = table.to_ascii_lowercase();
    if !t.starts_with("sqlite_") {
        return Verdict::Allow;
    }
    match t.as_str() {
        // Written only by DDL: a direct write needs `writable_schema`, refused.
        "sqlite_master" | "sqlite_schema" | "sqlite_temp_master" | "sqlite_temp_schema" => Verdict::Allow,
        // Only the component's own AUTOINCREMENT counters live here (the
        // host's tables do not use AUTOINCREMENT); DROP and RENAME of such a
        // table update it.
        "sqlite_sequence" => Verdict::Allow,
        // ANALYZE clears statistics before it writes them (its writes are not
        // shown to the authorizer); nothing else writes them.
        "sqlite_stat1" | "sqlite_stat4" if delete => Verdict::Allow,
        _ => deny(format!("table {table} belongs to SQLite and cannot be changed")),
    }
}

/// PRAGMAs that read the layout of a table or index named in their argument
/// (never a host one), or the component's own header fields.
fn pragma(name: &str, value: Option<&str>) -> Verdict {
    const LAYOUT: &[&str] = &[
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
    const HEADER: &[&str] = &["user_version", "application_id"];
    let lower = name.to_ascii_lowercase();
    if LAYOUT.contains(&lower.as_str()) {
        return match value {
            Some(v) if reserved(v.trim_matches(|c| c == '"' || c == '\'' || c == '`' || c == '[' || c == ']')) => {
                deny(format!("{v} is reserved for the host"))
            }
            _ => Verdict::Allow,
        };
    }
    if HEADER.contains(&lower.as_str()) {
        return Verdict::Allow;
    }
    deny(format!("PRAGMA {name} is refused: the host owns the database's settings"))
}

/// The functions a component may call.
fn function(name: &str) -> Verdict {
    let lower = name.to_ascii_lowercase();
    if FUNCTIONS.binary_search(&lower.as_str()).is_ok() {
        return Verdict::Allow;
    }
    let why = match lower.as_str() {
        "load_extension" => "components cannot load native code",
        "fts3_tokenizer" => "it hands out pointers into the host",
        "total_changes" => "it counts the host's writes too",
        "sqlite_offset"
        | "sqlite_log"
        | "sqlite_source_id"
        | "sqlite_compileoption_get"
        | "sqlite_compileoption_used" => "it reaches into the host's SQLite",
        _ => "it is not one of SQLite's core functions",
    };
    deny(format!("function {name} is refused: {why}"))
}

/// The core functions an application uses, sorted: scalar, aggregate,
/// window, date, JSON and math. Also the functions SQLite's own ALTER TABLE
/// code calls (`sqlite_rename_*`, `sqlite_drop_column`): SQLite itself
/// refuses them to ordinary SQL.
const FUNCTIONS: &[&str] = &[
    "->",
    "->>",
    "abs",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "avg",
    "ceil",
    "ceiling",
    "changes",
    "char",
    "coalesce",
    "concat",
    "concat_ws",
    "cos",
    "cosh",
    "count",
    "cume_dist",
    "current_date",
    "current_time",
    "current_timestamp",
    "date",
    "datetime",
    "degrees",
    "dense_rank",
    "exp",
    "first_value",
    "floor",
    "format",
    "glob",
    "group_concat",
    "hex",
    "if",
    "ifnull",
    "iif",
    "instr",
    "json",
    "json_array",
    "json_array_insert",
    "json_array_length",
    "json_error_position",
    "json_extract",
    "json_group_array",
    "json_group_object",
    "json_insert",
    "json_object",
    "json_patch",
    "json_pretty",
    "json_quote",
    "json_remove",
    "json_replace",
    "json_set",
    "json_type",
    "json_valid",
    "jsonb",
    "jsonb_array",
    "jsonb_array_insert",
    "jsonb_extract",
    "jsonb_group_array",
    "jsonb_group_object",
    "jsonb_insert",
    "jsonb_object",
    "jsonb_patch",
    "jsonb_remove",
    "jsonb_replace",
    "jsonb_set",
    "julianday",
    "lag",
    "last_insert_rowid",
    "last_value",
    "lead",
    "length",
    "like",
    "likelihood",
    "likely",
    "ln",
    "log",
    "log10",
    "log2",
    "lower",
    "ltrim",
    "max",
    "median",
    "min",
    "mod",
    "nth_value",
    "ntile",
    "nullif",
    "octet_length",
    "percent_rank",
    "percentile",
    "percentile_cont",
    "percentile_disc",
    "pi",
    "pow",
    "power",
    "printf",
    "quote",
    "radians",
    "random",
    "randomblob",
    "rank",
    "replace",
    "round",
    "row_number",
    "rtrim",
    "sign",
    "sin",
    "sinh",
    "soundex",
    "sqlite_drop_column",
    "sqlite_rename_column",
    "sqlite_rename_quotefix",
    "sqlite_rename_table",
    "sqlite_rename_test",
    "sqlite_version",
    "sqrt",
    "strftime",
    "string_agg",
    "substr",
    "substring",
    "sum",
    "tan",
    "tanh",
    "time",
    "timediff",
    "total",
    "trim",
    "trunc",
    "typeof",
    "unhex",
    "unicode",
    "unistr",
    "unistr_quote",
    "unixepoch",
    "unlikely",
    "upper",
    "zeroblob",
];

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::hooks::{AuthAction as A, TransactionOperation};

    fn judge(sandbox: &Sandbox, action: AuthAction<'_>, db: Option<&str>, accessor: Option<&str>) -> Verdict {
        sandbox.judge(&AuthContext { action, database_name: db, accessor })
    }

    fn allowed(action: AuthAction<'_>) -> bool {
        judge(&Sandbox::default(), action, Some("main"), None) == Verdict::Allow
    }

    #[test]
    fn the_function_list_is_sorted_for_binary_search() {
        assert!(FUNCTIONS.windows(2).all(|w| w[0] < w[1]), "FUNCTIONS must stay sorted");
    }

    /// Every action code SQLite reports, with the verdict for an ordinary
    /// name and for a host-reserved one.
    #[test]
    fn every_action_code_has_a_verdict() {
        let own = "orders";
        let host = "_MOAT_outbox";
        type Case = (&'static str, fn(&'static str) -> AuthAction<'static>, bool);
        let table: Vec<Case> = vec![
            ("read", |t| A::Read { table_name: t, column_name: "x" }, true),
            ("insert", |t| A::Insert { table_name: t }, true),
            ("update", |t| A::Update { table_name: t, column_name: "x" }, true),
            ("delete", |t| A::Delete { table_name: t }, true),
            ("create table", |t| A::CreateTable { table_name: t }, true),
            ("create view", |t| A::CreateView { view_name: t }, true),
            ("create index on", |t| A::CreateIndex { index_name: "i", table_name: t }, true),
            ("create index named", |t| A::CreateIndex { index_name: t, table_name: "x" }, true),
            ("create trigger on", |t| A::CreateTrigger { trigger_name: "tr", table_name: t }, true),
            ("create trigger named", |t| A::CreateTrigger { trigger_name: t, table_name: "x" }, true),
            ("drop table", |t| A::DropTable { table_name: t }, true),
            ("drop view", |t| A::DropView { view_name: t }, true),
            ("drop index", |t| A::DropIndex { index_name: t, table_name: "x" }, true),
            ("drop trigger", |t| A::DropTrigger { trigger_name: t, table_name: "x" }, true),
            ("alter", |t| A::AlterTable { database_name: "main", table_name: t }, true),
            ("reindex", |t| A::Reindex { index_name: t }, true),
            ("analyze", |t| A::Analyze { table_name: t }, true),
            ("pragma table_info", |t| A::Pragma { pragma_name: "table_info", pragma_value: Some(t) }, true),
            ("create temp table", |t| A::CreateTempTable { table_name: t }, false),
            ("create temp view", |t| A::CreateTempView { view_name: t }, false),
            ("create temp index", |t| A::CreateTempIndex { index_name: t, table_name: t }, false),
            ("create temp trigger", |t| A::CreateTempTrigger { trigger_name: t, table_name: t }, false),
            ("drop temp table", |t| A::DropTempTable { table_name: t }, false),
            ("drop temp view", |t| A::DropTempView { view_name: t }, false),
            ("drop temp index", |t| A::DropTempIndex { index_name: t, table_name: t }, false),
            ("drop temp trigger", |t| A::DropTempTrigger { trigger_name: t, table_name: t }, false),
            ("create vtab", |t| A::CreateVtable { table_name: t, module_name: "fts5" }, false),
            ("drop vtab", |t| A::DropVtable { table_name: t, module_name: "fts5" }, false),
        ];
        for (what, action, own_allowed) in table {
            assert_eq!(allowed(action(own)), own_allowed, "{what} {own}");
            assert!(!allowed(action(host)), "{what} {host} must be refused");
        }
        for action in [
            A::Attach { filename: "/tmp/x.db" },
            A::Detach { database_name: "main" },
            A::Transaction { operation: TransactionOperation::Begin },
            A::Transaction { operation: TransactionOperation::Rollback },
            A::Savepoint { operation: TransactionOperation::Release, savepoint_name: "moat_step" },
            A::Pragma { pragma_name: "writable_schema", pragma_value: Some("on") },
            A::Pragma { pragma_name: "database_list", pragma_value: None },
            A::Pragma { pragma_name: "temp_store", pragma_value: Some("memory") },
            A::Function { function_name: "load_extension" },
            A::Function { function_name: "fts3_tokenizer" },
            A::Function { function_name: "total_changes" },
            A::Function { function_name: "sqlite_offset" },
            A::Function { function_name: "made_up" },
            A::Read { table_name: "dbstat", column_name: "pgsize" },
            A::Update { table_name: "sqlite_stat1", column_name: "stat" },
            A::Insert { table_name: "sqlite_stat4" },
            A::Unknown { code: 99, arg1: None, arg2: None },
        ] {
            assert!(!allowed(action), "{action:?} must be refused");
        }
        for action in [
            A::Select,
            A::Recursive,
            A::Function { function_name: "JSON_EXTRACT" },
            A::Function { function_name: "->>" },
            A::Pragma { pragma_name: "user_version", pragma_value: Some("3") },
            A::Pragma { pragma_name: "index_list", pragma_value: Some("orders") },
            A::Update { table_name: "sqlite_sequence", column_name: "seq" },
            A::Delete { table_name: "sqlite_stat1" },
        ] {
            assert!(allowed(action), "{action:?} must be allowed");
        }
        assert_eq!(
            judge(&Sandbox::default(), A::Read { table_name: "x", column_name: "y" }, Some("other"), None),
            deny("database `other` is not this component's: it reaches only its own".into())
        );
    }

    #[test]
    fn the_schema_text_is_read_only_by_alter_table() {
        let sandbox = Sandbox::default();
        let sql = || A::Read { table_name: "sqlite_master", column_name: "sql" };
        sandbox.start_statement();
        judge(&sandbox, A::Select, None, None);
        assert_eq!(judge(&sandbox, sql(), Some("main"), None), Verdict::Null);
        sandbox.start_statement();
        judge(&sandbox, A::CreateTable { table_name: "copy" }, Some("main"), None);
        judge(&sandbox, A::Select, None, None);
        assert_eq!(judge(&sandbox, sql(), Some("main"), None), Verdict::Null, "CREATE TABLE AS SELECT sql");
        sandbox.start_statement();
        judge(&sandbox, A::AlterTable { database_name: "main", table_name: "t" }, None, None);
        judge(&sandbox, A::Select, None, None);
        assert_eq!(judge(&sandbox, sql(), Some("main"), None), Verdict::Allow);
    }

    #[test]
    fn host_statements_are_free_but_what_triggers_and_views_run_is_judged() {
        let sandbox = Sandbox::default();
        let write_host = || AuthContext {
            action: A::Insert { table_name: "_moat_dead_letter" },
            database_name: Some("main"),
            accessor: None,
        };
        assert_eq!(sandbox.authorize(&write_host()), Authorization::Deny);
        sandbox.as_host(|| assert_eq!(sandbox.authorize(&write_host()), Authorization::Allow));
        let from_trigger = AuthContext {
            action: A::Insert { table_name: "_moat_dead_letter" },
            database_name: Some("main"),
            accessor: Some("tr"),
        };
        sandbox.as_host(|| assert_eq!(sandbox.authorize(&from_trigger), Authorization::Deny));
    }
}
