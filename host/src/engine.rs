//! The Wasmtime engine every component runs on, and the on-disk cache of
//! compiled components.
//!
//! Compiling a component with Cranelift takes tens of milliseconds; loading a
//! precompiled one takes a fraction of one. So the first load of a `.wasm`
//! writes `<cache>/<sha256 of the wasm>-<engine hash>.cwasm`, and every later
//! start or swap maps that file instead of compiling. The engine hash covers
//! the Wasmtime version and every setting that changes generated code, so an
//! upgraded host never loads an artifact it did not make.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// How often the epoch advances; call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A compiled component and where it came from.
#[derive(Clone)]
pub struct Compiled {
    /// The compiled code, ready to link.
    pub component: Component,
    /// The `.wasm` file it was compiled from.
    pub source: PathBuf,
    /// SHA-256 of the `.wasm` file, hex: identifies the exact build.
    pub digest: String,
    /// Whether this load compiled (false: the cache had it).
    pub compiled_now: bool,
}

/// The engine plus its compile cache.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    cache_dir: Option<Arc<Path>>,
}

impl Runtime {
    /// Creates the engine and starts the epoch ticker that enforces call
    /// deadlines. `cache_dir: None` compiles every time.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Deadlines: every store gets a deadline in epoch ticks before each call.
        config.epoch_interruption(true);
        // Deep recursion in a guest ends in a clean trap, not a host stack overflow.
        config.max_wasm_stack(1 << 20);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;

        // A detached ticker: it holds only a weak reference, so it stops when
        // the last `Runtime` is gone and never keeps the process alive.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("moat-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the epoch thread")?;

        Ok(Runtime { engine, cache_dir: cache_dir.map(Arc::from) })
    }

    /// The Wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a component from a `.wasm` file, through the compile cache.
    pub fn load(&self, path: &Path) -> Result<Compiled> {
        let bytes = std::fs::read(path).with_context(|| {
            format!("cannot read the component file {}: check the path in moat.toml and that the component is built (`make build`)", path.display())
        })?;
        self.load_bytes(path, &bytes)
    }

    /// Loads a component from its bytes (`source` names where they came
    /// from), through the compile cache.
    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Compiled> {
        check_is_component(path, bytes)?;
        let digest = sha256(bytes);

        let cached = self.cache_dir.as_ref().map(|dir| dir.join(format!("{digest}-{}.cwasm", self.engine_hash())));
        if let Some(file) = &cached
            && file.exists()
        {
            // SAFETY: the file is one this host wrote with
            // `precompile_component` under a name that carries the
            // source's SHA-256 and the engine's compatibility hash;
            // Wasmtime also checks its header and refuses a mismatch.
            match unsafe { Component::deserialize_file(&self.engine, file) } {
                Ok(component) => {
                    return Ok(Compiled { component, source: path.into(), digest, compiled_now: false });
                }
                Err(e) => tracing::warn!(file = %file.display(), "ignoring unusable cached compile: {e}"),
            }
        }

        let serialized = self
            .engine
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{} is not a valid WebAssembly component", path.display()))?;
        if let Some(file) = &cached
            && let Err(e) = write_atomically(file, &serialized)
        {
            tracing::warn!(file = %file.display(), "cannot write the compile cache: {e:#}");
        }
        // SAFETY: `serialized` was produced by this engine a moment ago.
        let component = unsafe { Component::deserialize(&self.engine, &serialized) }.map_err(anyhow::Error::from)?;
        Ok(Compiled { component, source: path.into(), digest, compiled_now: true })
    }

    fn engine_hash(&self) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}

/// The default cache directory: `$MOAT_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/moat`, else `~/.cache/moat`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("moat"));
    }
    std::env::var_os("HOME").filter(|d| !d.is_empty()).map(|home| PathBuf::from(home).join(".cache").join("moat"))
}

/// Refuses bytes that are not a component, saying what they are instead.
fn check_is_component(path: &Path, bytes: &[u8]) -> Result<()> {
    if wasmtime::wasmparser::Parser::is_component(bytes) {
        return Ok(());
    }
    let shown = path.display();
    if wasmtime::wasmparser::Parser::is_core_wasm(bytes) {
        bail!(
            "{shown} is a core WebAssembly module, not a component: build it for the \
             wasm32-wasip2 target (or wrap it with `wasm-tools component new`)"
        );
    }
    if bytes.is_empty() {
        bail!("{shown} is empty: rebuild the component");
    }
    bail!(
        "{shown} is not a WebAssembly component (it does not start with the component header): rebuild it for wasm32-wasip2"
    )
}

/// Writes a file whole or not at all: to a temporary name, then renamed.
pub(crate) fn write_atomically(file: &Path, bytes: &[u8]) -> Result<()> {
    let dir = file.parent().context("the file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(())
}

/// SHA-256 of some bytes, hex: how builds are named everywhere.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
