//! `moat.toml`: which components make up the app, and how each is run.
//!
//! ```toml
//! [components.product]
//! path = "target/wasm32-wasip2/guest/product.wasm"
//!
//! [components.order]
//! path = "target/wasm32-wasip2/guest/order.wasm"
//! sqlite.synchronous = "full"
//! ```
//!
//! Unknown fields are refused, and every error names the file, the line and
//! the field, so a typo never silently falls back to a default.
//!
//! Across machines, a `[nats]` table names this host and where NATS
//! JetStream is, and a component that runs on another host says which:
//!
//! ```toml
//! [nats]
//! url = "nats://127.0.0.1:4222"
//! host = "catalog-host"
//!
//! [components.order]
//! path = "target/wasm32-wasip2/guest/order.wasm"   # its contract, read here
//! host = "order-host"                             # where it runs
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The name of the manifest file at an app's root.
pub const FILE_NAME: &str = "moat.toml";

/// A parsed and checked manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// Components by name, in name order.
    pub components: BTreeMap<String, ComponentSpec>,
    /// Where NATS is and who this host is, when the app spans hosts.
    pub nats: Option<NatsSettings>,
    /// The HTTP gateway, if `moat up` serves one.
    pub http: Option<HttpSettings>,
}

/// The `[http]` table: the gateway `moat up` serves every contract on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Where it listens (`moat up --http ADDR` overrides it).
    #[serde(default = "HttpSettings::default_listen")]
    pub listen: std::net::SocketAddr,
    /// Origins a browser may call it from (CORS): `["https://shop.example"]`,
    /// or `["*"]` for any. None by default.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// The largest request body taken, in bytes.
    #[serde(default = "HttpSettings::default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The status a function's `err` answers with, by the error's case
    /// (`not-found = 404`); 422 for the rest.
    #[serde(default)]
    pub errors: BTreeMap<String, u16>,
    /// Folders of WIT packages (relative to the manifest) whose doc
    /// comments describe the operations in the OpenAPI document; `wit`
    /// beside the manifest by default, if there is one.
    #[serde(default)]
    pub wit: Vec<std::path::PathBuf>,
}

impl HttpSettings {
    fn default_listen() -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], 8080))
    }

    fn default_max_body_bytes() -> usize {
        1 << 20
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: Self::default_listen(),
            cors_origins: Vec::new(),
            max_body_bytes: Self::default_max_body_bytes(),
            errors: BTreeMap::new(),
            wit: Vec::new(),
        }
    }
}

/// The `[nats]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// The NATS server (with JetStream): `nats://127.0.0.1:4222`.
    pub url: String,
    /// This host's name, as other hosts' manifests name it.
    pub host: String,
    /// The app's namespace on the NATS server: its streams, subjects and
    /// consumers carry it, so apps sharing a server stay apart. Every host of
    /// one app uses the same. Default: the name of the directory that holds
    /// the manifest.
    #[serde(default)]
    pub namespace: Option<String>,
    /// How often this host checks its connection to NATS (a ping, and a
    /// heartbeat other hosts see), in milliseconds. A connection that misses
    /// two answers is taken down and made again.
    #[serde(default = "NatsSettings::default_ping_interval_ms")]
    pub ping_interval_ms: u64,
    /// The most this host's clock may differ from the others', in
    /// milliseconds: a call from another host whose deadline is nearer than
    /// this is refused rather than risk committing after its caller gave up.
    #[serde(default = "NatsSettings::default_clock_skew_ms")]
    pub clock_skew_ms: u64,
}

impl NatsSettings {
    fn default_ping_interval_ms() -> u64 {
        2000
    }

    fn default_clock_skew_ms() -> u64 {
        250
    }

    /// The namespace, as a NATS subject token.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

/// One `[components.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    /// The component's `.wasm` file, relative to the manifest's directory.
    pub path: PathBuf,
    /// Refuse every WASI import beyond `wasi:io` and `wasi:cli` at load,
    /// instead of linking the rest inert.
    #[serde(default)]
    pub strict: bool,
    /// How the component's database is opened.
    #[serde(default)]
    pub sqlite: SqliteSettings,
    /// Limits on what one call may use.
    #[serde(default)]
    pub limits: Limits,
    /// How the component's events are kept, and how events are delivered to it.
    #[serde(default)]
    pub events: EventSettings,
    /// How long calls made with a request id are remembered.
    #[serde(default)]
    pub requests: RequestSettings,
    /// The host it runs on, when that is not this one (see `[nats]`): this
    /// host reads its `.wasm` for its contract, and reaches it through NATS.
    pub host: Option<String>,
}

impl Manifest {
    /// Whether `spec` runs on this host.
    pub fn is_local(&self, spec: &ComponentSpec) -> bool {
        match (&spec.host, &self.nats) {
            (None, _) => true,
            (Some(h), Some(n)) => *h == n.host,
            (Some(_), None) => false,
        }
    }
}

/// Event settings of one component: for the events it publishes (retention)
/// and the events it handles (batching, retries).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// How long published events are kept after every subscriber has them,
    /// for `moat replay`, in seconds.
    pub retention_secs: u64,
    /// Attempts at handling one event before it goes to the dead letters.
    pub max_attempts: u32,
    /// Wait before the first retry, in milliseconds; it doubles with each
    /// attempt, up to a minute.
    pub retry_backoff_ms: u64,
    /// Events applied in one transaction, at most.
    pub batch: u32,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self { retention_secs: 7 * 24 * 3600, max_attempts: 5, retry_backoff_ms: 50, batch: 1000 }
    }
}

/// Calls made with a request id (from another host, an HTTP idempotency
/// key, `moat call --request-id`) are remembered with their results, so a
/// retry of one returns the result instead of running again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestSettings {
    /// How long a committed call's record is kept, in seconds: a retry within
    /// it takes effect once.
    pub retention_secs: u64,
}

impl Default for RequestSettings {
    fn default() -> Self {
        Self { retention_secs: 24 * 3600 }
    }
}

/// SQLite settings for one component's database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteSettings {
    /// `PRAGMA journal_mode`.
    pub journal_mode: JournalMode,
    /// `PRAGMA synchronous`.
    pub synchronous: Synchronous,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        Self { journal_mode: JournalMode::Wal, synchronous: Synchronous::Normal }
    }
}

/// `PRAGMA journal_mode` values the host supports.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JournalMode {
    /// Write-ahead log: readers never block the writer (the default).
    Wal,
    /// A rollback journal, deleted after each transaction.
    Delete,
}

/// `PRAGMA synchronous` values the host supports.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Trust the OS to write: fast, and a power loss can lose recent commits.
    Off,
    /// With WAL, a power loss can lose the last commits but never corrupts
    /// (the default).
    Normal,
    /// Sync on every commit.
    Full,
    /// Like full, and also sync the directory.
    Extra,
}

impl JournalMode {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            JournalMode::Wal => "wal",
            JournalMode::Delete => "delete",
        }
    }
}

impl Synchronous {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Off => "off",
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
            Synchronous::Extra => "extra",
        }
    }
}

/// What one call may use. Exceeding a limit ends the call with an error and
/// rolls its unit of work back; the host and other components keep serving.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock time one call may run, in milliseconds.
    pub call_timeout_ms: u64,
    /// Linear memory one instance may grow to, in MiB.
    pub memory_mib: u64,
    /// Rows one query may return.
    pub query_rows: u64,
    /// Bytes (of text and blobs) one query may return.
    pub query_bytes: u64,
    /// Characters one SQL statement may have.
    pub statement_length: u32,
    /// Events one unit of work may publish.
    pub events_per_call: u32,
    /// Size the component's database may grow to, in MiB.
    pub database_mib: u64,
    /// Temporary storage (sorts, groupings, materialized subqueries) one
    /// statement may use at once, in MiB.
    pub temp_mib: u64,
    /// Core instances, and tables, one instance of the component may create.
    pub instances: u32,
    pub tables: u32,
    /// Bytes of log (and stdout and stderr) one call may write; the rest is
    /// dropped, with a warning naming this limit.
    pub log_bytes_per_call: u64,
    /// Bytes one log line may have; longer lines are cut, saying so.
    pub log_line_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_timeout_ms: 5_000,
            memory_mib: 64,
            query_rows: 10_000,
            query_bytes: 16 << 20,
            statement_length: 100_000,
            events_per_call: 10_000,
            database_mib: 1024,
            temp_mib: 256,
            instances: 64,
            tables: 64,
            log_bytes_per_call: 1 << 20,
            log_line_bytes: 16 << 10,
        }
    }
}

/// The file as written: only the shape, before names and paths are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    components: BTreeMap<String, ComponentSpec>,
    nats: Option<NatsSettings>,
    http: Option<HttpSettings>,
}

/// A manifest that could not be read, with where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "cannot read the manifest {path}: {error}\n\
         Pass --manifest PATH, or run moat in the directory that holds {FILE_NAME}."
    )]
    // Not `source`: the message has it already, and a source would say it twice.
    Read { path: PathBuf, error: std::io::Error },
    #[error("{path} is not a valid manifest:\n{message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| ManifestError::Read { path: path.to_path_buf(), error })?;
        Self::parse(path, &text)
    }

    /// Parses manifest text; `path` names it in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |message: String| ManifestError::Invalid { path: path.to_path_buf(), message };
        if raw.components.is_empty() {
            return Err(invalid("no components: add a [components.NAME] table with the path of its .wasm file".into()));
        }
        for (name, spec) in &raw.components {
            if let Err(why) = check_name(name) {
                return Err(invalid(format!("[components.{name}]: {why}")));
            }
            if spec.path.as_os_str().is_empty() {
                return Err(invalid(format!("[components.{name}] path: must not be empty")));
            }
            let l = &spec.limits;
            if l.call_timeout_ms == 0
                || l.memory_mib == 0
                || l.database_mib == 0
                || l.query_rows == 0
                || l.query_bytes == 0
            {
                return Err(invalid(format!(
                    "[components.{name}.limits]: call_timeout_ms, memory_mib, database_mib, query_rows and query_bytes must be above 0"
                )));
            }
            if l.memory_mib > 4096 || l.call_timeout_ms > 3_600_000 || l.query_bytes > 1 << 30 {
                return Err(invalid(format!(
                    "[components.{name}.limits]: memory_mib is at most 4096, call_timeout_ms at most 3600000 (an hour), query_bytes at most 1073741824"
                )));
            }
            if spec.events.max_attempts == 0 || spec.events.batch == 0 {
                return Err(invalid(format!("[components.{name}.events]: max_attempts and batch must be above 0")));
            }
        }
        let mut raw = raw;
        if let Some(nats) = &mut raw.nats {
            let namespace = match &nats.namespace {
                Some(ns) => ns.clone(),
                None => std::path::absolute(path)
                    .ok()
                    .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()))
                    .map(|n| {
                        n.chars()
                            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c.to_ascii_lowercase() } else { '-' })
                            .collect()
                    })
                    .filter(|n: &String| !n.is_empty())
                    .unwrap_or_else(|| "default".into()),
            };
            if namespace.is_empty() || !namespace.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(invalid(format!(
                    "[nats] namespace: {namespace:?} must be letters, digits, `-` and `_` (it becomes part of NATS subjects and stream names)"
                )));
            }
            nats.namespace = Some(namespace);
        }
        if let Some(nats) = &raw.nats {
            if !nats.url.starts_with("nats://") {
                return Err(invalid(format!(
                    "[nats] url: {:?} is not a nats:// address, like nats://127.0.0.1:4222",
                    nats.url
                )));
            }
            if let Err(why) = check_name(&nats.host) {
                return Err(invalid(format!("[nats] host: {why}")));
            }
        }
        for (name, spec) in &raw.components {
            if let (Some(host), None) = (&spec.host, &raw.nats) {
                return Err(invalid(format!(
                    "[components.{name}] runs on host `{host}`, but there is no [nats] table saying how to reach other hosts"
                )));
            }
        }
        if let Some(http) = &raw.http {
            if let Some((case, status)) = http.errors.iter().find(|(_, s)| !(400..=499).contains(*s)) {
                return Err(invalid(format!(
                    "[http.errors] {case} = {status}: an error answers with a 4xx status (400 to 499)"
                )));
            }
            if http.max_body_bytes == 0 {
                return Err(invalid("[http] max_body_bytes must be above 0".into()));
            }
        }
        let manifest =
            Manifest { path: path.to_path_buf(), components: raw.components, nats: raw.nats, http: raw.http };
        if !manifest.components.values().any(|spec| manifest.is_local(spec)) {
            return Err(invalid(
                "no component runs on this host: at least one must have no `host`, or this host's".into(),
            ));
        }
        Ok(manifest)
    }

    /// The directory relative paths in the manifest start from.
    pub fn root(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// Where a component's `.wasm` file is.
    pub fn wasm_path(&self, spec: &ComponentSpec) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.join(&spec.path),
            _ => spec.path.clone(),
        }
    }
}

/// Component names become file names and appear in logs: lowercase letters,
/// digits and single dashes, starting with a letter.
fn check_name(name: &str) -> Result<(), NameError> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name.len() <= 64;
    if ok { Ok(()) } else { Err(NameError) }
}

struct NameError;

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a name (of a component, or a host) is 1 to 64 lowercase letters, digits and single dashes, \
             starting with a letter (like `product` or `order-v2`)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(Path::new("app/moat.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_components_with_defaults() {
        let m = parse("[components.product]\npath = \"p.wasm\"\n").unwrap();
        let spec = &m.components["product"];
        assert_eq!(m.wasm_path(spec), Path::new("app/p.wasm"));
        assert_eq!(spec.sqlite.synchronous, Synchronous::Normal);
        assert_eq!(spec.limits.call_timeout_ms, 5_000);
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let err = parse("[components.product]\npath = \"p.wasm\"\npaht = \"x\"\n").unwrap_err();
        assert!(err.contains("app/moat.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("unknown field `paht`"), "{err}");
    }

    #[test]
    fn duplicate_component_is_refused() {
        let err = parse("[components.a]\npath = \"a.wasm\"\n[components.a]\npath = \"b.wasm\"\n").unwrap_err();
        assert!(err.contains("duplicate key"), "{err}");
    }

    #[test]
    fn bad_names_and_empty_apps_are_refused() {
        assert!(parse("[components.Product]\npath = \"p.wasm\"\n").unwrap_err().contains("lowercase"));
        assert!(parse("").unwrap_err().contains("no components"));
        assert!(parse("[components.p]\n").unwrap_err().contains("missing field `path`"));
    }
}
