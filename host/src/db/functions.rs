//! SQL functions whose built-in versions take time the deadline cannot
//! reach: SQLite checks the deadline between steps of a statement, and one
//! call of `instr`, `replace`, `trim` with a character set, `LIKE` or `GLOB`
//! is one step that can run for seconds on a few megabytes. They are
//! replaced, with SQLite's results, by versions that either run in time
//! linear in their input (`instr`, `replace`: a substring search;
//! `trim`/`ltrim`/`rtrim`: a set lookup) or check the deadline as they go
//! (`LIKE`, `GLOB`: pattern matching with backtracking). Their results are
//! SQLite's: the tests compare them with the built-ins on random input.
//!
//! SQLite's own code (ALTER TABLE's rewriting of the schema) still uses the
//! built-ins, which it prefers in its nested statements.

use std::sync::Arc;

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, ffi};

use super::sandbox::Sandbox;

/// Registers the replacements on `conn`. `like_limit` is the longest LIKE or
/// GLOB pattern accepted (SQLite's `SQLITE_LIMIT_LIKE_PATTERN_LENGTH`),
/// `max_length` the longest string a function may return
/// (`SQLITE_LIMIT_LENGTH`).
pub fn install(
    conn: &Connection,
    sandbox: &Arc<Sandbox>,
    like_limit: usize,
    max_length: usize,
) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS;
    conn.create_scalar_function("instr", 2, flags, |ctx| instr(ctx))?;
    conn.create_scalar_function("replace", 3, flags, move |ctx| replace(ctx, max_length))?;
    for (name, ends) in [("trim", Ends::Both), ("ltrim", Ends::Left), ("rtrim", Ends::Right)] {
        conn.create_scalar_function(name, 2, flags, move |ctx| trim(ctx, ends))?;
    }
    for (name, args, kind) in [("like", 2, Kind::Like), ("like", 3, Kind::Like), ("glob", 2, Kind::Glob)] {
        let sandbox = sandbox.clone();
        conn.create_scalar_function(name, args, flags, move |ctx| matches(ctx, kind, like_limit, &sandbox))?;
    }
    Ok(())
}

/// An argument as SQLite would read it as text (numbers converted as SQLite
/// converts them), or `None` for NULL.
fn text(ctx: &Context<'_>, i: usize) -> rusqlite::Result<Option<Vec<u8>>> {
    Ok(match ctx.get_raw(i) {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(t.to_vec()),
        ValueRef::Integer(n) => Some(n.to_string().into_bytes()),
        ValueRef::Real(f) => Some(real_as_text(f)?.into_bytes()),
    })
}

/// A REAL as SQLite writes it as text: asked of SQLite itself, on a
/// connection of this thread's with no schema.
fn real_as_text(f: f64) -> rusqlite::Result<String> {
    thread_local! {
        static CONVERT: Connection = Connection::open_in_memory().expect("an in-memory database");
    }
    CONVERT.with(|c| c.query_row("SELECT CAST(?1 AS TEXT)", [f], |r| r.get(0)))
}

fn too_big(len: usize, max: usize) -> rusqlite::Result<()> {
    if len > max {
        return Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_TOOBIG),
            Some("string or blob too big".into()),
        ));
    }
    Ok(())
}

/// `instr(X, Y)`: the 1-based position of the first `Y` in `X`, in bytes if
/// both are blobs, else in characters; 0 if absent.
fn instr(ctx: &Context<'_>) -> rusqlite::Result<Value> {
    let blobs = matches!((ctx.get_raw(0), ctx.get_raw(1)), (ValueRef::Blob(_), ValueRef::Blob(_)));
    let (Some(haystack), Some(needle)) = (text(ctx, 0)?, text(ctx, 1)?) else { return Ok(Value::Null) };
    let Some(at) = memchr::memmem::find(&haystack, &needle) else { return Ok(Value::Integer(0)) };
    let position = if blobs { at } else { haystack[..at].iter().filter(|b| (**b & 0xc0) != 0x80).count() };
    Ok(Value::Integer(position as i64 + 1))
}

/// `replace(X, Y, Z)`: every `Y` in `X` replaced by `Z`, left to right.
fn replace(ctx: &Context<'_>, max: usize) -> rusqlite::Result<Value> {
    let (Some(x), Some(y), Some(z)) = (text(ctx, 0)?, text(ctx, 1)?, text(ctx, 2)?) else { return Ok(Value::Null) };
    if y.is_empty() {
        return Ok(Value::Text(lossless(x)));
    }
    let mut out = Vec::with_capacity(x.len());
    let mut last = 0;
    for at in memchr::memmem::find_iter(&x, &y) {
        out.extend_from_slice(&x[last..at]);
        out.extend_from_slice(&z);
        last = at + y.len();
        too_big(out.len(), max)?;
    }
    out.extend_from_slice(&x[last..]);
    too_big(out.len(), max)?;
    Ok(Value::Text(lossless(out)))
}

/// Text built from bytes SQLite handed over as text: kept as they are.
fn lossless(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[derive(Clone, Copy)]
enum Ends {
    Both,
    Left,
    Right,
}

/// The characters of UTF-8 text, as SQLite counts them: a lead byte and the
/// continuation bytes after it (malformed text is split the same way).
fn chars(s: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let start = i;
        i += 1;
        if s[start] >= 0xc0 {
            while i < s.len() && (s[i] & 0xc0) == 0x80 {
                i += 1;
            }
        }
        out.push(&s[start..i]);
    }
    out
}

/// `trim(X, Y)` and its one-sided kin: the characters of `Y` removed from
/// the ends of `X`.
fn trim(ctx: &Context<'_>, ends: Ends) -> rusqlite::Result<Value> {
    let (Some(x), Some(y)) = (text(ctx, 0)?, text(ctx, 1)?) else { return Ok(Value::Null) };
    let set: std::collections::HashSet<&[u8]> = chars(&y).into_iter().collect();
    let xs = chars(&x);
    let (mut start, mut end) = (0, xs.len());
    if matches!(ends, Ends::Both | Ends::Left) {
        while start < end && set.contains(xs[start]) {
            start += 1;
        }
    }
    if matches!(ends, Ends::Both | Ends::Right) {
        while end > start && set.contains(xs[end - 1]) {
            end -= 1;
        }
    }
    Ok(Value::Text(lossless(xs[start..end].concat())))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Like,
    Glob,
}

/// `like(P, X[, E])` and `glob(P, X)`: whether `X` matches the pattern `P`.
fn matches(ctx: &Context<'_>, kind: Kind, limit: usize, sandbox: &Sandbox) -> rusqlite::Result<Value> {
    let (Some(pattern), Some(subject)) = (text(ctx, 0)?, text(ctx, 1)?) else { return Ok(Value::Null) };
    if pattern.len() > limit {
        return Err(rusqlite::Error::UserFunctionError("LIKE or GLOB pattern too complex".into()));
    }
    let escape = if ctx.len() == 3 {
        let Some(e) = text(ctx, 2)? else { return Ok(Value::Null) };
        let cs = chars(&e);
        if cs.len() != 1 {
            return Err(rusqlite::Error::UserFunctionError("ESCAPE expression must be a single character".into()));
        }
        Some(cs[0].to_vec())
    } else {
        None
    };
    let pattern = compile(&pattern, kind, escape.as_deref());
    let subject = chars(&subject);
    match wildcard(&pattern, &subject, kind == Kind::Like, sandbox) {
        Some(m) => Ok(Value::Integer(i64::from(m))),
        None => Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_INTERRUPT),
            Some("the statement ran past the call's deadline".into()),
        )),
    }
}

/// One element of a pattern.
enum Token<'a> {
    /// `%` or `*`: any run of characters.
    Any,
    /// `_` or `?`: one character.
    One,
    /// A literal character.
    Char(&'a [u8]),
    /// `[...]` (GLOB): one character in (or, negated, not in) the set.
    Set { negated: bool, items: Vec<SetItem<'a>> },
}

enum SetItem<'a> {
    Char(&'a [u8]),
    Range(u32, u32),
}

fn code_point(c: &[u8]) -> u32 {
    std::str::from_utf8(c).ok().and_then(|s| s.chars().next()).map_or(u32::from(c[0]), |c| c as u32)
}

fn compile<'a>(pattern: &'a [u8], kind: Kind, escape: Option<&[u8]>) -> Vec<Token<'a>> {
    let cs = chars(pattern);
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        i += 1;
        match kind {
            Kind::Like => {
                if escape == Some(c) {
                    // An escaped character is literal; a trailing escape matches nothing.
                    match cs.get(i) {
                        Some(next) => {
                            out.push(Token::Char(next));
                            i += 1;
                        }
                        None => out.push(Token::Set { negated: false, items: Vec::new() }),
                    }
                } else if c == b"%" {
                    out.push(Token::Any);
                } else if c == b"_" {
                    out.push(Token::One);
                } else {
                    out.push(Token::Char(c));
                }
            }
            Kind::Glob => {
                if c == b"*" {
                    out.push(Token::Any);
                } else if c == b"?" {
                    out.push(Token::One);
                } else if c == b"[" {
                    let mut items = Vec::new();
                    let mut negated = false;
                    if cs.get(i) == Some(&&b"^"[..]) {
                        negated = true;
                        i += 1;
                    }
                    if cs.get(i) == Some(&&b"]"[..]) {
                        items.push(SetItem::Char(cs[i]));
                        i += 1;
                    }
                    let mut closed = false;
                    while i < cs.len() {
                        let d = cs[i];
                        if d == b"]" {
                            closed = true;
                            i += 1;
                            break;
                        }
                        if d == b"-" && !items.is_empty() && cs.get(i + 1).is_some_and(|n| *n != b"]") {
                            if let Some(SetItem::Char(prev)) = items.pop() {
                                items.push(SetItem::Range(code_point(prev), code_point(cs[i + 1])));
                            }
                            i += 2;
                            continue;
                        }
                        items.push(SetItem::Char(d));
                        i += 1;
                    }
                    if !closed {
                        // An unclosed set matches nothing, as in SQLite.
                        out.push(Token::Set { negated: false, items: Vec::new() });
                        i = cs.len();
                        continue;
                    }
                    out.push(Token::Set { negated, items });
                } else {
                    out.push(Token::Char(c));
                }
            }
        }
    }
    out
}

fn fold(c: &[u8], nocase: bool) -> u8 {
    if nocase && c.len() == 1 { c[0].to_ascii_lowercase() } else { c[0] }
}

fn same(a: &[u8], b: &[u8], nocase: bool) -> bool {
    if a.len() == 1 && b.len() == 1 { fold(a, nocase) == fold(b, nocase) } else { a == b }
}

fn token_matches(t: &Token<'_>, c: &[u8], nocase: bool) -> bool {
    match t {
        Token::Any => true,
        Token::One => true,
        Token::Char(p) => same(p, c, nocase),
        Token::Set { negated, items } => {
            let cp = code_point(c);
            let hit = items.iter().any(|item| match item {
                SetItem::Char(s) => *s == c,
                SetItem::Range(lo, hi) => (*lo..=*hi).contains(&cp),
            });
            hit != *negated
        }
    }
}

/// Matches with one backtracking point (the last `Any`), which is enough for
/// these patterns and bounds the work by pattern × subject; the deadline is
/// checked as it goes. `None`: the deadline passed.
fn wildcard(pattern: &[Token<'_>], subject: &[&[u8]], nocase: bool, sandbox: &Sandbox) -> Option<bool> {
    let (mut p, mut s) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    let mut steps: u32 = 0;
    while s < subject.len() {
        steps = steps.wrapping_add(1);
        if steps & 0xffff == 0 && sandbox.deadline.passed() {
            return None;
        }
        match pattern.get(p) {
            Some(Token::Any) => {
                star = Some((p, s));
                p += 1;
            }
            Some(t) if token_matches(t, subject[s], nocase) => {
                p += 1;
                s += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    p = sp + 1;
                    s = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return Some(false),
            },
        }
    }
    while matches!(pattern.get(p), Some(Token::Any)) {
        p += 1;
    }
    Some(p == pattern.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn text(&mut self, alphabet: &[&str], max: usize) -> String {
            let n = (self.next() % (max as u64 + 1)) as usize;
            (0..n).map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize]).collect()
        }
    }

    fn ours() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        install(&c, &Arc::new(Sandbox::default()), 50_000, 1_000_000_000).unwrap();
        c
    }

    fn compare(sql: &str, cases: impl Iterator<Item = Vec<rusqlite::types::Value>>) {
        let (theirs, ours) = (Connection::open_in_memory().unwrap(), ours());
        for params in cases {
            let run = |c: &Connection| -> Result<rusqlite::types::Value, String> {
                c.query_row(sql, rusqlite::params_from_iter(params.iter()), |r| r.get(0)).map_err(|e| e.to_string())
            };
            let (a, b) = (run(&theirs), run(&ours));
            assert_eq!(a.is_ok(), b.is_ok(), "{sql} {params:?}: SQLite {a:?}, ours {b:?}");
            if a.is_ok() {
                assert_eq!(a, b, "{sql} {params:?}");
            }
        }
    }

    fn t(s: String) -> rusqlite::types::Value {
        rusqlite::types::Value::Text(s)
    }

    #[test]
    fn like_and_glob_agree_with_sqlite() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let subject_chars = ["a", "b", "A", "é", "É", "%", "_", "x", "*", "?", "[", "]", "-", "^"];
        let like_chars = ["a", "b", "A", "é", "%", "_", "x", "\\"];
        let glob_chars = ["a", "b", "A", "é", "*", "?", "[", "]", "^", "-", "x", "[a-b]", "[^a]"];
        compare(
            "SELECT ?2 LIKE ?1",
            (0..20_000).map(|_| vec![t(rng.text(&like_chars, 6)), t(rng.text(&subject_chars, 8))]),
        );
        compare(
            "SELECT ?2 LIKE ?1 ESCAPE '\\'",
            (0..20_000).map(|_| vec![t(rng.text(&like_chars, 6)), t(rng.text(&subject_chars, 8))]),
        );
        compare(
            "SELECT ?2 GLOB ?1",
            (0..20_000).map(|_| vec![t(rng.text(&glob_chars, 5)), t(rng.text(&subject_chars, 8))]),
        );
        compare("SELECT 12.5 LIKE '12.5', 3 GLOB '3', NULL LIKE 'a', 'a' LIKE NULL", std::iter::once(vec![]));
    }

    #[test]
    fn instr_replace_and_trim_agree_with_sqlite() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let chars = ["a", "b", "é", "ab", " ", "x"];
        compare(
            "SELECT instr(?1, ?2), replace(?1, ?2, ?3), trim(?1, ?2), ltrim(?1, ?2), rtrim(?1, ?3)",
            (0..20_000).map(|_| vec![t(rng.text(&chars, 10)), t(rng.text(&chars, 3)), t(rng.text(&chars, 3))]),
        );
        compare(
            "SELECT instr(x'00010203', x'0203'), instr(12345, 34), instr(2.5, '.'), replace(1.25, '.', ','), instr(NULL, 'a'), trim('xxaxx', NULL)",
            std::iter::once(vec![]),
        );
    }

    #[test]
    fn the_worst_cases_finish_in_linear_time_or_at_the_deadline() {
        let c = ours();
        let start = std::time::Instant::now();
        let n: i64 = c
            .query_row(
                "SELECT instr(replace(hex(zeroblob(1000000)), '0', 'a') || 'b', replace(hex(zeroblob(100000)), '0', 'a') || 'b')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 2_000_000 - 200_000 + 1);
        // A bound is the point here: the built-in takes about ten seconds.
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "instr took {:?}", start.elapsed());

        // A pattern with many `%` against a long subject ends at the deadline.
        let sandbox = Arc::new(Sandbox::default());
        let c = Connection::open_in_memory().unwrap();
        install(&c, &sandbox, 50_000, 1_000_000_000).unwrap();
        sandbox.deadline.set(Some(crate::deadline::Deadline::after(std::time::Duration::ZERO)));
        let err = c
            .query_row("SELECT replace(hex(zeroblob(50000)), '0', 'a') LIKE '%a%a%a%a%a%a%a%a%b'", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_err();
        assert!(err.to_string().contains("deadline"), "{err}");
    }
}
