//! Capability: WASI, granted inert.
//!
//! Toolchains import WASI by habit, so the host links it, but a component
//! reaches nothing through it:
//! - stdout and stderr go to the host log (see [`super::log`]), stdin is empty;
//! - no environment variables, no arguments;
//! - no preopened directory: every path fails to open;
//! - TCP, UDP and name lookup are off, and every socket address is denied;
//! - clocks tick in whole milliseconds: enough to stamp a record, too coarse
//!   to time a neighbour's cache;
//! - random numbers are the host's;
//! - nothing blocks past the call's deadline: `wasi:io/poll` (a sleep, a
//!   wait on a stream) gives up at the deadline and the call ends with the
//!   same "ran past its deadline" error as runaway wasm.
//!
//! A component marked `strict` in the manifest may not import more than
//! `wasi:io` and `wasi:cli` at all.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiView};

use super::grant::{Asker, Grant};
use super::log::{GuestLog, Stdio};
use crate::contract::Interface;
use crate::deadline::{Deadline, Overrun};

/// The WASI version this host links (0.2.x imports up to it are served).
const WASI: &str = "0.2.12";

/// How finely a component can tell time.
pub const CLOCK_RESOLUTION: Duration = Duration::from_millis(1);

/// `wasi:*` imports: io and cli always, the rest inert unless `strict`.
pub fn grant(asker: &Asker<'_>, import: &Interface) -> Option<Result<Grant, String>> {
    let pkg = import.id.package.as_str();
    if !pkg.starts_with("wasi:") {
        return None;
    }
    let served = semver::Version::parse(WASI).expect("a version");
    if let Some(v) = &import.id.version
        && (v.major != 0 || v.minor != 2 || v > &served)
    {
        return Some(Err(format!("this host serves WASI 0.2 up to {WASI}; rebuild the component against it")));
    }
    Some(match pkg {
        "wasi:io" | "wasi:cli" => Ok(Grant::Wasi),
        "wasi:clocks" | "wasi:random" | "wasi:filesystem" | "wasi:sockets" if !asker.strict => Ok(Grant::WasiInert),
        "wasi:clocks" | "wasi:random" | "wasi:filesystem" | "wasi:sockets" => Err(format!(
            "{pkg} is refused because the component is `strict`; remove `strict = true` from its manifest table to link it inert"
        )),
        _ => Err(format!(
            "{pkg} is not granted: a component reaches nothing outside its own database, except other components through their interfaces"
        )),
    })
}

/// Links WASI for a state that holds a [`WasiCtx`], with `wasi:io/poll`
/// bounded by the deadline `deadline` reads from the state.
pub fn add_to_linker<T: WasiView + 'static>(
    linker: &mut Linker<T>,
    deadline: fn(&mut T) -> Option<Deadline>,
) -> Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    // The same functions, waiting at most until the call's deadline.
    linker.allow_shadowing(true);
    let mut poll = linker.instance(&format!("wasi:io/poll@{WASI}"))?;
    poll.func_wrap("poll", move |mut store, (pollables,): (Vec<Resource<DynPollable>>,)| {
        let until = deadline(store.data_mut());
        let table = store.data_mut().ctx().table;
        bounded(until, table.poll(pollables)).map(|ready| (ready,))
    })?;
    poll.func_wrap("[method]pollable.block", move |mut store, (pollable,): (Resource<DynPollable>,)| {
        let until = deadline(store.data_mut());
        let table = store.data_mut().ctx().table;
        bounded(until, table.block(pollable))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Waits for `wait`, but not past `until`.
fn bounded<R>(until: Option<Deadline>, wait: impl Future<Output = wasmtime::Result<R>>) -> wasmtime::Result<R> {
    wasmtime_wasi::runtime::in_tokio(async move {
        match until {
            None => wait.await,
            Some(d) => match tokio::time::timeout(d.remaining(), wait).await {
                Ok(result) => result,
                Err(_) => Err(wasmtime::Error::new(Overrun)),
            },
        }
    })
}

/// The WASI context of one instance, its stdio into `log`.
pub fn context(log: &GuestLog) -> WasiCtx {
    WasiCtx::builder()
        .stdout(log.stream(Stdio::Stdout))
        .stderr(log.stream(Stdio::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .wall_clock(CoarseWallClock)
        .monotonic_clock(CoarseMonotonicClock(Instant::now()))
        .build()
}

/// A table to go with it.
pub fn table() -> ResourceTable {
    ResourceTable::new()
}

/// The wall clock, in whole milliseconds.
struct CoarseWallClock;

impl HostWallClock for CoarseWallClock {
    fn resolution(&self) -> Duration {
        CLOCK_RESOLUTION
    }

    fn now(&self) -> Duration {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Duration::from_millis(now.as_millis() as u64)
    }
}

/// A monotonic clock from the instance's start, in whole milliseconds
/// (reported in nanoseconds, as WASI wants).
struct CoarseMonotonicClock(Instant);

impl HostMonotonicClock for CoarseMonotonicClock {
    fn resolution(&self) -> u64 {
        CLOCK_RESOLUTION.as_nanos() as u64
    }

    fn now(&self) -> u64 {
        let ms = self.0.elapsed().as_millis() as u64;
        ms.saturating_mul(1_000_000)
    }
}
