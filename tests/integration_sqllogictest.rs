//! Ordinary SQL keeps working through the sandbox: SQLite's own sqllogictest
//! corpus (`tests/sqllogictest/`, see its README) runs twice, on plain SQLite
//! (rusqlite, a database file of its own) and through moat, one statement per
//! call into `tests/components/sqlrunner`, which passes it straight to
//! `moat:platform/store`. Every record that passes on plain SQLite must pass
//! through moat too, unless the sandbox refuses it by design
//! (`error::denied`, e.g. `CREATE TEMP VIEW`) or it uses what a refused
//! statement would have created or written (`DROP VIEW` of that view); those
//! are listed, grouped by the sandbox's reason.
//!
//! The files are read as the original C driver (`sqllogictest -verify`, its
//! SQLite engine) reads them, so they need no edits: hash threshold 8 unless a
//! file sets its own, results compared value by value, each value rendered by
//! the record's column type (`I`, `R`, `T`), `skipif`/`onlyif` for the
//! engine `sqlite`, and a `statement` record of several statements run one
//! by one as `sqlite3_exec` runs them.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, ValueRef};
use sqllogictest::{Condition, Control, DBOutput, DefaultColumnType, QueryExpect, Record, ResultMode, Runner};
use wasmtime::component::Val;

use crate::common::TestApp;

/// The engine name `skipif` and `onlyif` are evaluated for.
const ENGINE: &str = "sqlite";

/// The C driver's `DEFAULT_HASH_THRESHOLD`: `select1`, `select4` and
/// `select5` were generated with it and do not set their own.
const HASH_THRESHOLD: usize = 8;

/// The share of records (percent) that must pass on plain SQLite, so that a
/// harness misreading the corpus cannot make the comparison vacuous.
const NATIVE_PASS_PERCENT: usize = 98;

#[test]
fn the_select_files_pass_through_moat_wherever_they_pass_on_sqlite() {
    run_group("select", &test_files(&corpus(), false));
}

#[test]
fn the_index_files_pass_through_moat_wherever_they_pass_on_sqlite() {
    run_group("index", &test_files(&corpus().join("index"), true));
}

#[test]
fn the_evidence_files_pass_through_moat_wherever_they_pass_on_sqlite() {
    run_group("evidence", &test_files(&corpus().join("evidence"), true));
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sqllogictest")
}

/// The `.test` files in `dir` (and below it, if `recursive`), sorted.
fn test_files(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if recursive {
                files.extend(test_files(&path, true));
            }
        } else if path.extension().is_some_and(|e| e == "test") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Counts, per file and in total.
#[derive(Default, Clone, Copy)]
struct Tally {
    /// `statement` and `query` records run (not skipped for the engine).
    records: usize,
    /// Records `skipif sqlite` / `onlyif <another engine>` left out.
    skipped: usize,
    /// Records that passed on plain SQLite.
    native: usize,
    /// Records that passed through moat.
    moat: usize,
    /// Records that passed on plain SQLite and failed through moat only
    /// because the sandbox refused a statement (`error::denied`), or because
    /// they use what a refused statement would have created or written.
    refused: usize,
    /// Of `refused`, those that follow from an earlier refusal.
    follow_on: usize,
    /// Records that passed on plain SQLite and failed through moat otherwise.
    failed: usize,
    /// Records that failed on plain SQLite but passed through moat.
    moat_only: usize,
    /// `statement` records holding more than one statement.
    split: usize,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.records += o.records;
        self.skipped += o.skipped;
        self.native += o.native;
        self.moat += o.moat;
        self.refused += o.refused;
        self.follow_on += o.follow_on;
        self.failed += o.failed;
        self.moat_only += o.moat_only;
        self.split += o.split;
    }
}

/// What one file did.
#[derive(Default)]
struct Outcome {
    tally: Tally,
    /// Every refusal: (reason, where, a note when the record did not fail
    /// through moat because of it).
    refusals: Vec<(String, String, &'static str)>,
    /// Records that pass on plain SQLite and fail through moat.
    failures: Vec<String>,
    /// Records that fail on plain SQLite (and so prove nothing about moat).
    native_failures: Vec<String>,
    /// Records that fail on plain SQLite and pass through moat.
    moat_only: Vec<String>,
    native_time: Duration,
    moat_time: Duration,
}

fn run_group(group: &str, files: &[PathBuf]) {
    assert!(!files.is_empty(), "no .test files for {group} under {}", corpus().display());
    println!(
        "{:<42} {:>7} {:>7} {:>7} {:>7} {:>6} {:>7} {:>9} {:>9}",
        "file", "records", "native", "moat", "refused", "failed", "skipped", "native ms", "moat ms"
    );
    let mut total = Tally::default();
    let (mut refusals, mut failures, mut native_failures, mut moat_only) =
        (BTreeMap::<String, Vec<String>>::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut native_time, mut moat_time) = (Duration::ZERO, Duration::ZERO);
    for file in files {
        let name = file.strip_prefix(corpus()).unwrap_or(file).display().to_string();
        let outcome = run_file(file, &name);
        let t = outcome.tally;
        println!(
            "{name:<42} {:>7} {:>7} {:>7} {:>7} {:>6} {:>7} {:>9} {:>9}",
            t.records,
            t.native,
            t.moat,
            t.refused,
            t.failed,
            t.skipped,
            outcome.native_time.as_millis(),
            outcome.moat_time.as_millis()
        );
        total += t;
        native_time += outcome.native_time;
        moat_time += outcome.moat_time;
        for (reason, at, note) in outcome.refusals {
            refusals.entry(reason).or_default().push(format!("{at}{note}"));
        }
        failures.extend(outcome.failures);
        native_failures.extend(outcome.native_failures);
        moat_only.extend(outcome.moat_only);
    }
    let t = total;
    println!(
        "{:<42} {:>7} {:>7} {:>7} {:>7} {:>6} {:>7} {:>9} {:>9}",
        format!("total ({group}, {} files)", files.len()),
        t.records,
        t.native,
        t.moat,
        t.refused,
        t.failed,
        t.skipped,
        native_time.as_millis(),
        moat_time.as_millis()
    );
    println!(
        "{group}: {} records run, {} passed on plain SQLite, {} passed through moat, {} refused by design \
         ({} of them for using what an earlier refused statement would have made), {} failed; \
         {} passed only through moat; {} statement records split into their statements",
        t.records, t.native, t.moat, t.refused, t.follow_on, t.failed, t.moat_only, t.split
    );
    if refusals.is_empty() {
        println!("{group}: the sandbox refused nothing");
    }
    for (reason, places) in &refusals {
        println!("{group}: refused by design ({}x): {reason}", places.len());
        for at in places.iter().take(5) {
            println!("    {at}");
        }
    }
    for failure in native_failures.iter().take(10) {
        println!("{group}: fails on plain SQLite too, so proves nothing about moat: {failure}");
    }
    for odd in &moat_only {
        println!("{group}: fails on plain SQLite but passes through moat: {odd}");
    }

    assert!(
        failures.is_empty(),
        "{} records pass on plain SQLite but fail through moat (not refused by the sandbox); the first of them:\n\n{}",
        failures.len(),
        failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n\n")
    );
    assert!(
        t.records > 0 && t.native * 100 >= t.records * NATIVE_PASS_PERCENT,
        "only {} of {} {group} records pass on plain SQLite: the harness is misreading the corpus, \
         and the comparison with moat proves little. The first failures:\n{}",
        t.native,
        t.records,
        native_failures.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// Runs one file on plain SQLite and through moat, record by record.
fn run_file(path: &Path, name: &str) -> Outcome {
    let script = without_condition_comments(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
    );
    let records = sqllogictest::parse_with_name::<DefaultColumnType>(&script, name)
        .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));

    // Which kind of record runs now, shared with both databases (`DB::run`
    // sees only the SQL), and what the sandbox refused while it ran.
    let current = Arc::new(Mutex::new(Current::default()));

    let app = TestApp::new(&[("sqlrunner", "sqlrunner")]);
    let open: moat::App = app.open();
    let execute_fn = open.function("sqlrunner", "execute").expect("sqlrunner exports execute");
    let query_fn = open.function("sqlrunner", "query").expect("sqlrunner exports query");

    let mut native = {
        let current = current.clone();
        Runner::new(move || std::future::ready(Native::open(current.clone())))
    };
    let mut sandboxed = {
        let (app, current) = (&open, current.clone());
        Runner::new(move || {
            std::future::ready(Render::new().map(|render| Moat {
                app,
                execute_fn: execute_fn.clone(),
                query_fn: query_fn.clone(),
                render,
                current: current.clone(),
            }))
        })
    };
    native.with_hash_threshold(HASH_THRESHOLD);
    sandboxed.with_hash_threshold(HASH_THRESHOLD);
    let valuewise = Record::Control(Control::ResultMode(ResultMode::ValueWise));
    native.run(valuewise.clone()).expect("result mode");
    sandboxed.run(valuewise).expect("result mode");

    let mut outcome = Outcome::default();
    // The conditions read since the last record. sqllogictest-rs does not
    // apply them to `halt` (they would carry over to the next record), so
    // the harness evaluates them itself, for every record.
    let mut pending: Vec<Condition> = Vec::new();
    // What refused statements would have created or written: (object,
    // where, the sandbox's reason).
    let mut refused_objects: Vec<(String, String, String)> = Vec::new();
    for record in records {
        match record {
            Record::Condition(condition) => pending.push(condition),
            Record::Halt { .. } => {
                if skipped(&std::mem::take(&mut pending)) {
                    continue;
                }
                break;
            }
            Record::HashThreshold { .. } | Record::Control(_) => {
                native.run(record.clone()).expect("a hash-threshold or control record");
                sandboxed.run(record).expect("a hash-threshold or control record");
            }
            Record::Comment(_) | Record::Newline => {}
            Record::Statement { .. } | Record::Query { .. } => {
                if skipped(&std::mem::take(&mut pending)) {
                    outcome.tally.skipped += 1;
                    continue;
                }
                let record = unconditional(record);
                let (at, sql) = whereabouts(&record);
                let kind = Kind::of(&record);
                if matches!(kind, Kind::Statement) && statements(&sql).len() > 1 {
                    outcome.tally.split += 1;
                }
                {
                    let mut current = lock(&current);
                    current.kind = kind;
                    current.denied = None;
                }

                let started = Instant::now();
                let on_sqlite = native.run(record.clone());
                let between = Instant::now();
                let through_moat = sandboxed.run(record);
                outcome.native_time += between - started;
                outcome.moat_time += between.elapsed();
                let denied = lock(&current).denied.take();

                let t = &mut outcome.tally;
                t.records += 1;
                t.native += usize::from(on_sqlite.is_ok());
                t.moat += usize::from(through_moat.is_ok());
                let refused_here = on_sqlite.is_ok() && through_moat.is_err() && denied.is_some();
                if let Some(reason) = denied {
                    if refused_here && let Some(object) = object_of(&sql) {
                        refused_objects.push((object, format!("{at}: {}", first_line(&sql)), reason.clone()));
                    }
                    let note = match (on_sqlite.is_ok(), through_moat.is_ok()) {
                        (true, false) => "",
                        (true, true) => " (the record expected an error, and passed)",
                        (false, _) => " (the record fails on plain SQLite too)",
                    };
                    outcome.refusals.push((reason, format!("{at}: {}", first_line(&sql)), note));
                }
                match (on_sqlite, through_moat) {
                    (Ok(_), Ok(_)) => {}
                    (Ok(_), Err(_)) if refused_here => t.refused += 1,
                    (Ok(_), Err(e)) => {
                        // A record that uses what a refused statement would
                        // have created or written fails for that refusal.
                        let names = identifiers(&sql);
                        if let Some((object, refused_at, reason)) =
                            refused_objects.iter().find(|(object, ..)| names.contains(object))
                        {
                            t.refused += 1;
                            t.follow_on += 1;
                            outcome.refusals.push((
                                format!("uses `{object}`, whose statement was refused ({refused_at}): {reason}"),
                                format!("{at}: {}", first_line(&sql)),
                                "",
                            ));
                        } else {
                            t.failed += 1;
                            outcome.failures.push(format!("{at}: passes on plain SQLite, fails through moat:\n{e}"));
                        }
                    }
                    (Err(e), Ok(_)) => {
                        t.moat_only += 1;
                        outcome.moat_only.push(format!("{at}: {}", first_line(&e.to_string())));
                    }
                    (Err(e), Err(_)) => outcome.native_failures.push(format!("{at}: {}", first_line(&e.to_string()))),
                }
            }
            other => panic!("{name}: the harness does not run records like this one:\n{other}"),
        }
    }
    outcome
}

/// sqllogictest-rs rejects a condition line with a trailing comment
/// (`skipif mysql # not compatible`), which the C driver reads as
/// `skipif mysql`: drop the comment.
fn without_condition_comments(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    for line in script.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [keyword @ ("skipif" | "onlyif"), engine, comment, ..] if comment.starts_with('#') => {
                out.push_str(keyword);
                out.push(' ');
                out.push_str(engine);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Whether a record's conditions leave it out for the engine `sqlite`
/// (compared without regard to case, as the C driver does).
fn skipped(conditions: &[Condition]) -> bool {
    conditions.iter().any(|c| match c {
        Condition::SkipIf { label } => label.eq_ignore_ascii_case(ENGINE),
        Condition::OnlyIf { label } => !label.eq_ignore_ascii_case(ENGINE),
    })
}

/// The record without its conditions, which the harness has evaluated.
fn unconditional(mut record: Record<DefaultColumnType>) -> Record<DefaultColumnType> {
    if let Record::Statement { conditions, .. } | Record::Query { conditions, .. } = &mut record {
        conditions.clear();
    }
    record
}

/// Where a statement or query record is, and its SQL.
fn whereabouts(record: &Record<DefaultColumnType>) -> (String, String) {
    match record {
        Record::Statement { loc, sql, .. } | Record::Query { loc, sql, .. } => (loc.to_string(), sql.clone()),
        _ => unreachable!("only statements and queries run"),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// The object a statement creates (`CREATE [TEMP] TABLE|VIEW|INDEX|TRIGGER
/// name`) or the table it writes (`INSERT INTO`, `REPLACE INTO`, `UPDATE`,
/// `DELETE FROM`), lower case and unqualified.
fn object_of(sql: &str) -> Option<String> {
    let words: Vec<String> = sql
        .split(|c: char| c.is_whitespace() || c == '(')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let rest: &[&str] = match words.as_slice() {
        ["create", rest @ ..] => {
            let kind = rest.iter().position(|w| matches!(*w, "table" | "view" | "index" | "trigger"))?;
            match &rest[kind + 1..] {
                ["if", "not", "exists", rest @ ..] => rest,
                rest => rest,
            }
        }
        ["insert" | "replace", rest @ ..] => &rest[rest.iter().position(|w| *w == "into")? + 1..],
        ["update", "or", _, rest @ ..] | ["update", rest @ ..] | ["delete", "from", rest @ ..] => rest,
        _ => return None,
    };
    let name = rest.first()?.rsplit('.').next()?;
    let name = name.trim_matches(|c| matches!(c, '"' | '\'' | '`' | '[' | ']' | ';'));
    (!name.is_empty()).then(|| name.to_string())
}

/// The identifiers (and other words) in `sql`, lower case.
fn identifiers(sql: &str) -> Vec<String> {
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The statements in `sql`, split where SQLite's own `sqlite3_complete`
/// says one ends (quotes, comments and trigger bodies included). A trailing
/// comment stays with the statement before it.
fn statements(sql: &str) -> Vec<&str> {
    let mut ends = Vec::new();
    let mut start = 0;
    for (i, _) in sql.match_indices(';') {
        if complete(&sql[start..=i]) {
            ends.push(i + 1);
            start = i + 1;
        }
    }
    let rest = &sql[start..];
    if !rest.trim().is_empty() && complete(&format!("{rest};")) {
        ends.push(sql.len());
    } else if let Some(last) = ends.last_mut() {
        *last = sql.len();
    } else {
        ends.push(sql.len());
    }
    let mut begin = 0;
    ends.into_iter()
        .map(|end| {
            let statement = &sql[begin..end];
            begin = end;
            statement
        })
        .collect()
}

/// `sqlite3_complete`: whether `sql` ends with a complete statement.
fn complete(sql: &str) -> bool {
    let Ok(text) = CString::new(sql) else { return false };
    // SAFETY: `text` is NUL-terminated and outlives the call, which only reads it.
    unsafe { rusqlite::ffi::sqlite3_complete(text.as_ptr()) != 0 }
}

/// The record running now, as both databases need to know it.
#[derive(Default)]
struct Current {
    kind: Kind,
    /// The sandbox's reason, if it refused a statement of this record.
    denied: Option<String>,
}

#[derive(Default, Clone)]
enum Kind {
    /// A `statement` record: run each statement, report the rows changed.
    #[default]
    Statement,
    /// A `query` record, with the column types its results are written in
    /// (none for `query error`).
    Query(Vec<DefaultColumnType>),
}

impl Kind {
    fn of(record: &Record<DefaultColumnType>) -> Kind {
        match record {
            Record::Query { expected: QueryExpect::Results { types, .. }, .. } => Kind::Query(types.clone()),
            Record::Query { .. } => Kind::Query(Vec::new()),
            _ => Kind::Statement,
        }
    }
}

fn lock(current: &Mutex<Current>) -> MutexGuard<'_, Current> {
    current.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why a statement failed, on either side: the store's error case
/// (`denied`, `invalid`, ...), `sqlite` for plain SQLite, `call` for a
/// failed call into the component.
#[derive(Debug, Clone)]
struct SltError {
    kind: String,
    message: String,
}

impl SltError {
    fn new(kind: impl Into<String>, message: impl Into<String>) -> SltError {
        SltError { kind: kind.into(), message: message.into() }
    }
}

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for SltError {}

impl From<rusqlite::Error> for SltError {
    fn from(e: rusqlite::Error) -> SltError {
        SltError::new("sqlite", e.to_string())
    }
}

impl From<std::io::Error> for SltError {
    fn from(e: std::io::Error) -> SltError {
        SltError::new("io", e.to_string())
    }
}

/// One value as SQLite returned it, on either side.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Cell {
    fn from(v: ValueRef<'_>) -> Cell {
        match v {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(n) => Cell::Integer(n),
            ValueRef::Real(f) => Cell::Real(f),
            // As the host reads text for a component.
            ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }
}

impl rusqlite::ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Cell::Null => ValueRef::Null,
            Cell::Integer(n) => ValueRef::Integer(*n),
            Cell::Real(f) => ValueRef::Real(*f),
            Cell::Text(s) => ValueRef::Text(s.as_bytes()),
            Cell::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// Renders values as the C driver's SQLite engine does, by the column type
/// the record declares, whatever the value's storage class. Conversions go
/// through SQLite itself (an in-memory connection), so that both sides
/// render alike and as the expected results were written: `R` is SQLite's
/// `printf('%.3f')`, which rounds at 16 significant digits, unlike Rust's.
struct Render {
    sqlite: rusqlite::Connection,
}

impl Render {
    fn new() -> Result<Render, SltError> {
        Ok(Render { sqlite: rusqlite::Connection::open_in_memory()? })
    }

    fn rows(&self, rows: &[Vec<Cell>], types: &[DefaultColumnType]) -> Result<Vec<Vec<String>>, SltError> {
        rows.iter()
            .map(|row| row.iter().zip(types).map(|(cell, ty)| self.value(cell, ty)).collect::<Result<Vec<_>, _>>())
            .collect()
    }

    fn value(&self, cell: &Cell, ty: &DefaultColumnType) -> Result<String, SltError> {
        use DefaultColumnType::{Any, FloatingPoint, Integer, Text};
        Ok(match (cell, ty) {
            (Cell::Null, _) => "NULL".to_string(),
            // `sqlite3_column_int`: the low 32 bits, printed with `%d`.
            (Cell::Integer(n), Integer) => (*n as i32).to_string(),
            (_, Integer) => (self.ask::<i64>("SELECT CAST(?1 AS INTEGER)", cell)? as i32).to_string(),
            (_, FloatingPoint) => self.ask::<String>("SELECT printf('%.3f', ?1)", cell)?,
            (Cell::Text(s), Text) => printable(s.as_bytes()),
            (Cell::Blob(b), Text) => printable(b),
            (Cell::Integer(n), Text) => n.to_string(),
            (Cell::Real(_), Text) => printable(self.ask::<String>("SELECT CAST(?1 AS TEXT)", cell)?.as_bytes()),
            (_, Any) => return Err(SltError::new("types", "a result column type other than I, R or T")),
        })
    }

    fn ask<T: rusqlite::types::FromSql>(&self, sql: &str, cell: &Cell) -> Result<T, SltError> {
        Ok(self.sqlite.prepare_cached(sql)?.query_row([cell], |row| row.get(0))?)
    }
}

/// Text as the C driver prints it: `(empty)` for the empty string, and `@`
/// for every byte outside printable ASCII.
fn printable(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(empty)".to_string();
    }
    bytes.iter().map(|&b| if (b' '..=b'~').contains(&b) { char::from(b) } else { '@' }).collect()
}

/// A query must return as many columns as its record declares types.
fn check_width(columns: usize, types: usize) -> Result<(), SltError> {
    if types != 0 && columns != types {
        return Err(SltError::new(
            "columns",
            format!("the query returns {columns} columns; the record declares {types}"),
        ));
    }
    Ok(())
}

/// Plain SQLite: rusqlite on a database file of its own.
struct Native {
    conn: rusqlite::Connection,
    render: Render,
    current: Arc<Mutex<Current>>,
    _dir: tempfile::TempDir,
}

impl Native {
    fn open(current: Arc<Mutex<Current>>) -> Result<Native, SltError> {
        let dir = tempfile::tempdir()?;
        let conn = rusqlite::Connection::open(dir.path().join("native.db"))?;
        // The settings moat gives a component's database (its defaults), so
        // that the sandbox is the only difference under test.
        conn.pragma_update(None, "journal_mode", "wal")?;
        conn.pragma_update(None, "synchronous", "normal")?;
        conn.pragma_update(None, "foreign_keys", "on")?;
        Ok(Native { conn, render: Render::new()?, current, _dir: dir })
    }

    fn statement(&self, sql: &str) -> Result<u64, SltError> {
        let mut stmt = self.conn.prepare(sql)?;
        if stmt.column_count() == 0 {
            return Ok(stmt.execute([])? as u64);
        }
        // `sqlite3_exec` runs a statement that returns rows, and the C driver
        // ignores them.
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
        Ok(0)
    }

    fn query(&self, sql: &str, width: usize) -> Result<Vec<Vec<Cell>>, SltError> {
        let mut stmt = self.conn.prepare(sql)?;
        check_width(stmt.column_count(), width)?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push((0..width).map(|i| row.get_ref(i).map(Cell::from)).collect::<rusqlite::Result<Vec<_>>>()?);
        }
        Ok(out)
    }
}

impl sqllogictest::DB for Native {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let kind = lock(&self.current).kind.clone();
        match kind {
            Kind::Statement => {
                let mut changed = 0;
                for statement in statements(sql) {
                    changed += self.statement(statement)?;
                }
                Ok(DBOutput::StatementComplete(changed))
            }
            Kind::Query(types) => {
                let rows = self.query(sql, types.len())?;
                Ok(DBOutput::Rows { rows: self.render.rows(&rows, &types)?, types })
            }
        }
    }

    fn engine_name(&self) -> &str {
        ENGINE
    }
}

/// Through moat: each statement is one call of the sqlrunner component,
/// which passes it to the store.
struct Moat<'a> {
    app: &'a moat::App,
    /// `test:sqlrunner/runner.execute` and `.query`.
    execute_fn: moat::FunctionRef,
    query_fn: moat::FunctionRef,
    render: Render,
    current: Arc<Mutex<Current>>,
}

impl Moat<'_> {
    /// Calls `execute` or `query` with `sql`; the `ok` value, or the store's
    /// error (a refusal is noted for the record).
    fn call(&self, function: &moat::FunctionRef, sql: &str) -> Result<Val, SltError> {
        let results =
            self.app.call(function, &[Val::String(sql.into())]).map_err(|e| SltError::new("call", e.to_string()))?;
        match results.into_iter().next() {
            Some(Val::Result(Ok(Some(value)))) => Ok(*value),
            Some(Val::Result(Err(Some(error)))) => Err(self.store_error(*error)),
            other => Err(SltError::new("call", format!("`{}` returned {other:?}", function.func))),
        }
    }

    fn store_error(&self, error: Val) -> SltError {
        match error {
            Val::Variant(case, Some(message)) => {
                let message = match *message {
                    Val::String(text) => text,
                    other => format!("{other:?}"),
                };
                if case == "denied" {
                    lock(&self.current).denied = Some(message.clone());
                }
                SltError::new(case, message)
            }
            other => SltError::new("call", format!("not a store error: {other:?}")),
        }
    }

    fn statement(&self, sql: &str) -> Result<u64, SltError> {
        match self.call(&self.execute_fn, sql) {
            Ok(Val::U64(changed)) => Ok(changed),
            Ok(other) => Err(SltError::new("call", format!("`execute` returned {other:?}"))),
            // The store's `execute` refuses a statement that returns rows;
            // `sqlite3_exec` runs it, and the C driver ignores the rows.
            Err(e) if e.kind == "invalid" && e.message.contains("returns rows") => {
                self.call(&self.query_fn, sql).map(|_| 0)
            }
            Err(e) => Err(e),
        }
    }

    fn query(&self, sql: &str, width: usize) -> Result<Vec<Vec<Cell>>, SltError> {
        let rows = match self.call(&self.query_fn, sql)? {
            Val::List(rows) => rows,
            other => return Err(SltError::new("call", format!("`query` returned {other:?}"))),
        };
        rows.into_iter()
            .map(|row| match row {
                Val::List(values) => {
                    check_width(values.len(), width)?;
                    values.into_iter().map(cell).collect::<Result<Vec<_>, _>>()
                }
                other => Err(SltError::new("call", format!("not a row: {other:?}"))),
            })
            .collect()
    }
}

/// A store `value` as the component returned it.
fn cell(value: Val) -> Result<Cell, SltError> {
    match value {
        Val::Variant(case, payload) => match (case.as_str(), payload.map(|v| *v)) {
            ("null", None) => Ok(Cell::Null),
            ("integer", Some(Val::S64(n))) => Ok(Cell::Integer(n)),
            ("real", Some(Val::Float64(f))) => Ok(Cell::Real(f)),
            ("text", Some(Val::String(s))) => Ok(Cell::Text(s)),
            ("blob", Some(Val::List(bytes))) => bytes
                .into_iter()
                .map(|b| match b {
                    Val::U8(b) => Ok(b),
                    other => Err(SltError::new("call", format!("not a byte: {other:?}"))),
                })
                .collect::<Result<Vec<u8>, SltError>>()
                .map(Cell::Blob),
            (case, payload) => Err(SltError::new("call", format!("not a store value: {case}({payload:?})"))),
        },
        other => Err(SltError::new("call", format!("not a store value: {other:?}"))),
    }
}

impl sqllogictest::DB for Moat<'_> {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let kind = lock(&self.current).kind.clone();
        match kind {
            Kind::Statement => {
                let mut changed = 0;
                for statement in statements(sql) {
                    changed += self.statement(statement)?;
                }
                Ok(DBOutput::StatementComplete(changed))
            }
            Kind::Query(types) => {
                let rows = self.query(sql, types.len())?;
                Ok(DBOutput::Rows { rows: self.render.rows(&rows, &types)?, types })
            }
        }
    }

    fn engine_name(&self) -> &str {
        ENGINE
    }
}
