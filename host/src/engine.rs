//! The Wasmtime engine every component runs on, and the on-disk cache of
//! compiled components.
//!
//! Compiling a component with Cranelift takes tens of milliseconds (seconds
//! for a large one); loading a precompiled one takes a fraction of one. So
//! the first load of a `.wasm` writes `<cache>/<sha256 of the wasm>-<engine
//! hash>.cwasm`, and every later start or swap maps that file instead of
//! compiling. The engine hash covers the Wasmtime version and every setting
//! that changes generated code, so an upgraded host never loads an artifact
//! it did not make.
//!
//! A cached artifact is native code the host runs, so the cache is trusted
//! only if its directory and files are the current user's and nobody else
//! can write them; otherwise moat compiles afresh (and says why, once).
//!
//! The `moat` binary compiles in a child process of its own
//! ([`Compiler::Child`]): a running host's memory never holds a compiler's
//! working set, and a compile that fails leaves it as it was.

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
    compiler: Compiler,
}

/// Where compiling happens.
#[derive(Clone, Debug)]
pub enum Compiler {
    /// In this process (a library user, the tests).
    InProcess,
    /// In a child process: this executable (`moat`), run as
    /// `moat __compile WASM OUT`; `progress`: say on stderr what is being
    /// compiled when it takes more than a moment.
    Child { exe: PathBuf, progress: bool },
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
                    // SQL that runs past its deadline inside one step.
                    crate::deadline::sweep();
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the epoch thread")?;

        Ok(Runtime { engine, cache_dir: cache_dir.map(Arc::from), compiler: Compiler::InProcess })
    }

    /// The same runtime, compiling with `compiler`.
    pub fn with_compiler(mut self, compiler: Compiler) -> Runtime {
        self.compiler = compiler;
        self
    }

    /// The Wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a component from a `.wasm` file, through the compile cache.
    pub fn load(&self, path: &Path) -> Result<Compiled> {
        let bytes = std::fs::read(path).with_context(|| {
            format!("cannot read the component file {}: check its path in the manifest (a relative path starts at the manifest's folder) and that the component is built", path.display())
        })?;
        self.load_bytes(path, &bytes)
    }

    /// Loads a component from its bytes (`source` names where they came
    /// from), through the compile cache.
    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Compiled> {
        check_is_component(path, bytes)?;
        let digest = sha256(bytes);
        let cache = self.cache_dir.as_deref().filter(|dir| trusted(dir));
        let cached = cache.map(|dir| dir.join(format!("{digest}-{}.cwasm", self.engine_hash())));
        if let Some(file) = &cached
            && file.exists()
            && trusted(file)
        {
            // SAFETY: the file is the current user's alone, written by this
            // host (or its compile child) with `precompile_component` under a
            // name that carries the source's SHA-256 and the engine's
            // compatibility hash; Wasmtime also checks its header and refuses
            // a mismatch.
            match unsafe { Component::deserialize_file(&self.engine, file) } {
                Ok(component) => {
                    return Ok(Compiled { component, source: path.into(), digest, compiled_now: false });
                }
                Err(e) => tracing::warn!(file = %file.display(), "ignoring unusable cached compile: {e}"),
            }
        }
        if let Some(dir) = cache {
            std::fs::create_dir_all(dir).ok();
        }
        let component = match &self.compiler {
            Compiler::InProcess => {
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
                unsafe { Component::deserialize(&self.engine, &serialized) }.map_err(anyhow::Error::from)?
            }
            Compiler::Child { exe, progress } => {
                let scratch = tempfile::tempdir().context("making a directory to compile in")?;
                let out = cached.clone().unwrap_or_else(|| scratch.path().join("out.cwasm"));
                let input = scratch.path().join("in.wasm");
                std::fs::write(&input, bytes).with_context(|| format!("writing {}", input.display()))?;
                compile_in_child(exe, path, &input, &out, progress.then_some(cached.is_some()))?;
                // SAFETY: written a moment ago by this executable's compile
                // child with the same engine settings (Wasmtime checks them).
                unsafe { Component::deserialize_file(&self.engine, &out) }.map_err(anyhow::Error::from)?
            }
        };
        Ok(Compiled { component, source: path.into(), digest, compiled_now: true })
    }

    /// Compiles `wasm` to `out` in this process: what `moat __compile` does.
    pub fn compile_to(&self, wasm: &Path, out: &Path) -> Result<()> {
        let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
        let serialized = self.engine.precompile_component(&bytes).map_err(anyhow::Error::from)?;
        write_atomically(out, &serialized)
    }

    fn engine_hash(&self) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}

/// Runs `exe __compile IN OUT`, saying what it does if it takes a while
/// (`progress`: `Some(whether the result is cached)`).
fn compile_in_child(exe: &Path, shown: &Path, input: &Path, out: &Path, progress: Option<bool>) -> Result<()> {
    let started = std::time::Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reporter = progress.map(|cached| {
        let (done, name) = (done.clone(), shown.display().to_string());
        let size = std::fs::metadata(input).map_or(0, |m| m.len());
        std::thread::spawn(move || report_compiling(&done, &name, size, cached, started))
    });
    let output = std::process::Command::new(exe)
        .arg("__compile")
        .arg(input)
        .arg(out)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("starting {} to compile {}", exe.display(), shown.display()));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(reporter) = reporter {
        let _ = reporter.join();
    }
    let output = output?;
    if !output.status.success() {
        let why = String::from_utf8_lossy(&output.stderr);
        let why = why.trim().trim_start_matches("error: ");
        bail!("{} is not a valid WebAssembly component: {why}", shown.display());
    }
    tracing::debug!(wasm = %shown.display(), "compiled in {:?}", started.elapsed());
    Ok(())
}

/// Whether a cache directory or file is the current user's alone: owned by
/// them and not writable by anyone else. Says why not, once per path.
fn trusted(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(path) else { return true };
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let why = if meta.uid() != me {
            Some(format!("it belongs to user {}, not to you ({me})", meta.uid()))
        } else if meta.mode() & 0o022 != 0 {
            Some(format!("others can write to it (mode {:o})", meta.mode() & 0o777))
        } else {
            None
        };
        if let Some(why) = why {
            static SAID: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
            let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
            if !said.iter().any(|p| p == path) {
                tracing::warn!(
                    "not using the compile cache at {}: {why}; compiling afresh (fix its owner and mode, or pass --cache-dir)",
                    path.display()
                );
                said.push(path.to_path_buf());
            }
            return false;
        }
    }
    true
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

/// After a moment without the compile finishing, says what is compiling
/// and, on a terminal, counts the seconds on one line; then how long it
/// took. (Compiling happens once per build: later starts use the cache.)
fn report_compiling(
    done: &std::sync::atomic::AtomicBool,
    name: &str,
    size: u64,
    cached: bool,
    started: std::time::Instant,
) {
    use std::io::{IsTerminal, Write};
    use std::sync::atomic::Ordering;
    const MOMENT: std::time::Duration = std::time::Duration::from_millis(800);
    while started.elapsed() < MOMENT {
        if done.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let terminal = std::io::stderr().is_terminal();
    let what = format!(
        "moat: compiling {name} ({:.1} MB){}",
        size as f64 / 1e6,
        if cached { ", once; later starts use the cache" } else { "" }
    );
    let mut stderr = std::io::stderr();
    if !terminal {
        let _ = writeln!(stderr, "{what}");
    }
    let spinner = ['|', '/', '-', '\\'];
    let mut tick = 0;
    while !done.load(Ordering::Relaxed) {
        if terminal {
            let _ = write!(stderr, "\r{what} {} {:.0} s", spinner[tick % 4], started.elapsed().as_secs_f64());
            let _ = stderr.flush();
        }
        tick += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let took = started.elapsed().as_secs_f64();
    if terminal {
        let _ = writeln!(stderr, "\r{what}: done in {took:.1} s");
    } else {
        let _ = writeln!(stderr, "moat: compiled {name} in {took:.1} s");
    }
}
