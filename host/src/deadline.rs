//! Deadlines: the wall-clock instant by which a call must end, wherever its
//! component is at that moment (in wasm, inside a SQL step, inside WASI).
//!
//! A deadline is an [`Instant`]; to share one with code that cannot hold a
//! lock (SQLite's progress handler, the epoch thread) it is also written as
//! nanoseconds since a process-wide origin in an `AtomicU64` ([`Slot`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When a call must be over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(Instant);

impl Deadline {
    /// `after` from now.
    pub fn after(after: Duration) -> Deadline {
        let now = Instant::now();
        Deadline(now.checked_add(after).unwrap_or(now + Duration::from_secs(365 * 24 * 3600)))
    }

    /// The instant itself.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// Time left, zero once it has passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub fn passed(self) -> bool {
        Instant::now() >= self.0
    }

    /// The earlier of two deadlines: a callee never gets longer than its caller has left.
    pub fn min(self, other: Deadline) -> Deadline {
        Deadline(self.0.min(other.0))
    }

    /// Nanoseconds since the process-wide origin, never 0 (0 means "none" in a [`Slot`]).
    fn nanos(self) -> u64 {
        (self.0.saturating_duration_since(origin()).as_nanos() as u64).max(1)
    }
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// A deadline that lock-free code can read: set before a call, cleared after.
#[derive(Default, Debug)]
pub struct Slot(AtomicU64);

impl Slot {
    /// Arms (`Some`) or clears (`None`) the slot.
    pub fn set(&self, deadline: Option<Deadline>) {
        self.0.store(deadline.map_or(0, Deadline::nanos), Ordering::Relaxed);
    }

    /// The armed deadline, if any.
    pub fn get(&self) -> Option<Deadline> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Deadline(origin() + Duration::from_nanos(n))),
        }
    }

    /// Whether a deadline is armed and has passed.
    pub fn passed(&self) -> bool {
        match self.0.load(Ordering::Relaxed) {
            0 => false,
            n => origin().elapsed().as_nanos() as u64 > n,
        }
    }
}

/// Something running under a deadline that another thread can interrupt.
pub trait Watched: Send + Sync {
    /// Whether its deadline is armed and has passed.
    fn overdue(&self) -> bool;
    /// Stops what it is doing.
    fn interrupt(&self);
}

fn watched() -> &'static std::sync::Mutex<Vec<std::sync::Weak<dyn Watched>>> {
    static WATCHED: OnceLock<std::sync::Mutex<Vec<std::sync::Weak<dyn Watched>>>> = OnceLock::new();
    WATCHED.get_or_init(Default::default)
}

/// Watches `w` for as long as it lives.
pub fn watch(w: std::sync::Weak<dyn Watched>) {
    watched().lock().unwrap_or_else(|p| p.into_inner()).push(w);
}

/// Interrupts everything watched that is past its deadline (the engine's
/// epoch thread calls this every tick), and forgets what is gone.
pub fn sweep() {
    let mut all = watched().lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|w| match w.upgrade() {
        Some(w) => {
            if w.overdue() {
                w.interrupt();
            }
            true
        }
        None => false,
    });
}

/// The error a call gets when it runs past its deadline, wherever it was.
/// Kept as a type so that every layer can recognise it and say the same
/// words (`describe_trap`).
#[derive(Debug, thiserror::Error)]
#[error("the call ran past its deadline")]
pub struct Overrun;

/// An error's message with its causes, except an [`Overrun`] under a context
/// that already says what ran past which deadline (said twice otherwise).
pub fn describe(e: &anyhow::Error) -> String {
    if e.is::<Overrun>() && e.chain().count() > 1 { e.to_string() } else { format!("{e:#}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_arm_and_clear() {
        let slot = Slot::default();
        assert!(slot.get().is_none() && !slot.passed());
        slot.set(Some(Deadline::after(Duration::from_secs(60))));
        assert!(!slot.passed());
        assert!(slot.get().unwrap().remaining() > Duration::from_secs(59));
        slot.set(Some(Deadline::after(Duration::ZERO)));
        std::thread::sleep(Duration::from_millis(1));
        assert!(slot.passed());
        slot.set(None);
        assert!(!slot.passed());
    }
}
