//! What every subcommand gets: the global flags, where the command runs
//! (through a running host, or here), and how it exits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::app::{App, Plan, ServedElsewhere};
use crate::control::client::Client;
use crate::data_dir;
use crate::engine::{Compiler, Runtime};
use crate::manifest::Manifest;

/// How `moat` exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It worked.
    Ok = 0,
    /// The called function returned `err(...)`; its unit of work was rolled back.
    ReturnedErr = 1,
    /// Bad input or a failure; the message is on stderr.
    Failed = 2,
}

/// What every subcommand gets from the global flags.
pub struct Context {
    pub manifest: PathBuf,
    pub data: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub json: bool,
    pub host: Option<String>,
}

impl Context {
    /// Reads the manifest and compiles its components (no data is touched).
    pub fn plan(&self) -> Result<Plan> {
        let manifest = Manifest::load(&self.manifest)?;
        let data_dir = self.data_dir(&manifest);
        // Compiling happens in a process of its own (this executable), so a
        // host never holds a compiler's memory.
        let runtime = Runtime::new(self.cache_dir.clone())?;
        let runtime = match std::env::current_exe() {
            // Progress on stderr, except where stderr is for a JSON error.
            Ok(exe) => runtime.with_compiler(Compiler::Child { exe, progress: !self.json }),
            Err(_) => runtime,
        };
        Plan::new(manifest, runtime, &data_dir)
    }

    /// Plans and opens the app.
    pub fn open(&self) -> Result<App> {
        self.plan()?.open()
    }

    /// The data directory for this manifest.
    pub fn data_dir(&self, manifest: &Manifest) -> PathBuf {
        self.data.clone().unwrap_or_else(|| manifest.root().join(".moat"))
    }

    /// The running host to talk to: the one `--host` names, or the one
    /// serving the data directory. `None`: open the app here.
    pub fn remote(&self) -> Result<Option<Client>> {
        if let Some(addr) = &self.host {
            // Over TCP the host wants its token: from MOAT_TOKEN, or from the
            // data directory it wrote it to, if that is known here.
            let token =
                std::env::var("MOAT_TOKEN").ok().or_else(|| self.known_data_dir().and_then(|d| data_dir::token(&d)));
            return Ok(Some(Client::new(addr, token)));
        }
        let data_dir = match &self.data {
            Some(d) => d.clone(),
            None => self.data_dir(&Manifest::load(&self.manifest)?),
        };
        Ok(data_dir::host_serving(&data_dir).map(|addr| Client::new(&addr, data_dir::token(&data_dir))))
    }

    /// Refuses `--host` for a command that works on this machine's files and
    /// never goes through a host, rather than ignore it.
    pub fn here_only(&self, command: &str, why: &str) -> Result<()> {
        match &self.host {
            Some(addr) => anyhow::bail!(
                "`moat {command}` {why}, so it cannot go through the host at {addr}: drop --host (or unset MOAT_HOST)"
            ),
            None => Ok(()),
        }
    }

    /// The data directory, if the flags or the manifest say where it is.
    fn known_data_dir(&self) -> Option<PathBuf> {
        self.data.clone().or_else(|| Manifest::load(&self.manifest).ok().map(|m| self.data_dir(&m)))
    }

    /// Where a command runs: through the host serving the data directory,
    /// or here, opening the app. A host that comes up while this command
    /// waits for the data directory is gone through too.
    pub fn target(&self) -> Result<Target> {
        if let Some(client) = self.remote()? {
            return Ok(Target::Host(client));
        }
        opened(self.open())
    }
}

/// Where a command runs.
pub enum Target {
    /// Through a running host.
    Host(Client),
    /// Here: no host serves the data directory.
    Here(Box<App>),
}

/// An app just opened, or the host that came up meanwhile.
pub fn opened(app: Result<App>) -> Result<Target> {
    match app {
        Ok(app) => Ok(Target::Here(Box::new(app))),
        Err(e) => match e.downcast::<ServedElsewhere>() {
            Ok(ServedElsewhere(addr, token)) => Ok(Target::Host(Client::new(&addr, token))),
            Err(e) => Err(e),
        },
    }
}

/// How long a one-shot command waits for events to settle before leaving
/// the rest for the next run.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Delivers pending events before a one-shot command exits. A failure here
/// is a warning, never the command's failure: what the command did is
/// committed, and the events wait in their outboxes for the next run.
pub fn settle(app: &App) {
    match app.settle(SETTLE_LIMIT) {
        Ok(settled) if !settled.complete => tracing::warn!(
            "events are still pending after {}s (a handler keeps failing? see `moat status`); the next moat run delivers them",
            SETTLE_LIMIT.as_secs()
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("delivering pending events failed; they wait for the next moat run: {e:#}"),
    }
}

/// A path as the user would type it: relative to the current directory when possible.
pub fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}
