//! A data directory: the components' databases, one host at a time (the
//! lock), where a running host listens (the address file), and which builds
//! were swapped in (`deployed.toml` and `builds/`).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::engine::write_atomically;

/// The file that tells other `moat` commands where the host serving the
/// directory listens.
pub const ADDR_FILE: &str = "moat.addr";

/// The control API's socket: `moat up` listens here unless told otherwise.
/// The directory is the owner's alone (0700) and so is the socket (0600).
pub const SOCKET_FILE: &str = "moat.sock";

/// The bearer token a host listening on TCP requires (0600).
pub const TOKEN_FILE: &str = "moat.token";

const LOCK_FILE: &str = "moat.lock";

/// Creates the data directory if needed, the owner's alone.
pub fn create(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} its owner's alone", dir.display()))?;
    }
    Ok(())
}

/// The token of the host serving `dir` on TCP, if it wrote one.
pub fn token(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(TOKEN_FILE)).ok().map(|t| t.trim().to_string())
}

/// Where a component's database lives in a data directory.
pub fn db_path(data_dir: &Path, component: &str) -> PathBuf {
    data_dir.join(format!("{component}.db"))
}

/// Whether another process holds the data directory's lock.
pub fn in_use(dir: &Path) -> bool {
    let Ok(file) = File::options().write(true).open(dir.join(LOCK_FILE)) else { return false };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// The address of the host serving `data_dir`, if one does: its address
/// file exists and its lock is held. (An address file whose host is gone,
/// killed before it could remove it, is stale: the lock tells.)
pub fn host_serving(data_dir: &Path) -> Option<String> {
    let addr = std::fs::read_to_string(data_dir.join(ADDR_FILE)).ok()?;
    in_use(data_dir).then(|| addr.trim().to_string())
}

/// An exclusive lock on a data directory: one host per directory, so two
/// processes never write one database.
pub struct DataLock {
    _file: File,
}

/// What waiting for a data directory found.
pub enum Acquired {
    /// The directory is ours.
    Locked(DataLock),
    /// A host came up and serves it: go through it instead (its address,
    /// and its token if it listens on TCP).
    Served(String, Option<String>),
}

impl DataLock {
    /// How long a one-shot command waits for another to finish.
    const WAIT: Duration = Duration::from_secs(30);

    /// Locks `dir`. With `wait`, waits for another one-shot command to
    /// finish with it, and hands back the address of a host that comes up
    /// meanwhile; without, refuses at once (what a host wants).
    pub fn acquire(dir: &Path, wait: bool) -> Result<Acquired> {
        let path = dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let start = Instant::now();
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Acquired::Locked(DataLock { _file: file })),
                Err(std::fs::TryLockError::WouldBlock) => {
                    let host = host_serving(dir);
                    if !wait {
                        bail!(
                            "the data directory {} is in use by another moat process{}; stop it first, or use another --data directory",
                            dir.display(),
                            host.map(|a| format!(" (a host serving at {a})")).unwrap_or_default()
                        );
                    }
                    if let Some(addr) = host {
                        return Ok(Acquired::Served(addr, token(dir)));
                    }
                    if start.elapsed() > Self::WAIT {
                        bail!(
                            "another moat process has held the data directory {} for {}s; stop it, or use another --data directory",
                            dir.display(),
                            Self::WAIT.as_secs()
                        );
                    }
                    if !said {
                        tracing::warn!("waiting for another moat process using {}", dir.display());
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
        }
    }
}

/// The record of swapped-in builds in a data directory: `deployed.toml`,
/// and copies of the builds in `builds/`, named by their SHA-256.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Deployments(pub BTreeMap<String, Deployed>);

/// One swapped-in component.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployed {
    /// The build serving, relative to the data directory.
    pub wasm: PathBuf,
    /// The build before the swap, relative to the data directory.
    pub previous: Option<PathBuf>,
    /// SHA-256 of the manifest's build when the swap happened: if the
    /// manifest names another build since, the manifest wins.
    pub manifest_sha256: String,
}

impl Deployments {
    const FILE: &str = "deployed.toml";

    /// Reads the record; an absent file is an empty record.
    pub fn load(data_dir: &Path) -> Result<Deployments> {
        let path = data_dir.join(Self::FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Deployments::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The build to run for `name`, if a swap replaced the manifest's
    /// (whose SHA-256 is `manifest_sha256`).
    pub fn build_for(&self, data_dir: &Path, name: &str, manifest_sha256: &str) -> Option<PathBuf> {
        let d = self.0.get(name)?;
        (d.manifest_sha256 == manifest_sha256).then(|| data_dir.join(&d.wasm))
    }

    /// The build `name` ran before its last swap, if it was swapped.
    pub fn previous(data_dir: &Path, name: &str) -> Result<Option<PathBuf>> {
        Ok(Self::load(data_dir)?.0.remove(name).and_then(|d| d.previous).map(|p| data_dir.join(p)))
    }

    /// Records that `name` now runs `current` (a build's file and SHA-256)
    /// in place of `previous`, keeping a copy of each under `builds/`.
    pub fn record(
        data_dir: &Path,
        name: &str,
        previous: (&Path, &str),
        current: (&Path, &str),
        manifest_sha256: &str,
    ) -> Result<()> {
        let keep = |(path, digest): (&Path, &str)| -> Result<PathBuf> {
            let relative = PathBuf::from("builds").join(format!("{digest}.wasm"));
            let target = data_dir.join(&relative);
            if !target.exists() {
                let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                write_atomically(&target, &bytes)?;
            }
            Ok(relative)
        };
        let mut all = Deployments::load(data_dir)?;
        let deployed = Deployed {
            wasm: keep(current)?,
            previous: Some(keep(previous)?),
            manifest_sha256: manifest_sha256.to_string(),
        };
        all.0.insert(name.to_string(), deployed);
        write_atomically(&data_dir.join(Self::FILE), toml::to_string(&all)?.as_bytes())
    }
}
