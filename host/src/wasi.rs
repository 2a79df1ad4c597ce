//! Capability: WASI, granted inert.
//!
//! Toolchains import WASI by habit, so the host links it, but a component
//! reaches nothing through it:
//! - stdout and stderr go to the host log (`log`), stdin is empty;
//! - no environment variables, no arguments;
//! - no preopened directory: every path fails to open;
//! - TCP, UDP and name lookup are off, and every socket address is denied;
//! - clocks tick in whole milliseconds: enough to stamp a record, too coarse
//!   to time a neighbour's cache;
//! - random numbers are the host's.
//!
//! A component marked `strict` in the manifest may not import more than
//! `wasi:io` and `wasi:cli` at all (see `linker`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx};

use crate::log::{LogStream, Stdio};

/// How finely a component can tell time.
pub const CLOCK_RESOLUTION: Duration = Duration::from_millis(1);

/// The WASI context of one instance of `component`.
pub fn context(component: &Arc<str>) -> WasiCtx {
    WasiCtx::builder()
        .stdout(LogStream::new(component.clone(), Stdio::Stdout))
        .stderr(LogStream::new(component.clone(), Stdio::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .wall_clock(CoarseWallClock)
        .monotonic_clock(CoarseMonotonicClock(Instant::now()))
        .build()
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
