//! Capability: `moat:platform/log`, and a component's stdout and stderr.
//!
//! Both end in the host's `tracing` log, tagged with the component's name: a
//! component has no terminal and no files of its own. Log lines keep their
//! level; stdout lines are logged at info, stderr lines (a Rust guest's
//! panic message, for one) at warn, so they show by default.
//!
//! A component's log is input from it like any other, so it is bounded:
//! - control characters are escaped (`\n`, `\u{1b}`): one guest line is one
//!   host line, and it cannot forge one of the host's or colour a terminal;
//! - a line longer than `limits.log_line_bytes` is cut, saying so;
//! - one call may write `limits.log_bytes_per_call` in all; past that its
//!   lines are dropped and one warning says how much was, naming the limit.

use std::fmt::Write as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use super::grant::{Asker, Grant};
use crate::contract::Interface;
use crate::manifest::Limits;
use crate::platform::moat::platform::log::{self, Level};

/// `moat:platform/log`, at a version this host serves.
pub fn grant(_asker: &Asker<'_>, import: &Interface) -> Option<Result<Grant, String>> {
    super::grant::platform_serves(import, "log").then_some(Ok(Grant::Log))
}

/// Serves `moat:platform/log` from the [`GuestLog`] `get` projects out of the state.
pub fn add_to_linker<T: 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> &mut GuestLog) -> Result<()> {
    Ok(log::add_to_linker::<T, HasSelf<GuestLog>>(linker, get)?)
}

/// The log as one instance of a component sees it.
pub struct GuestLog {
    sink: Arc<Sink>,
}

/// Where a component's lines go, and how much it has written this call.
struct Sink {
    component: Arc<str>,
    line_bytes: usize,
    call_bytes: u64,
    written: AtomicU64,
    dropped: AtomicU64,
}

impl GuestLog {
    /// The log of `component`, within `limits`.
    pub fn new(component: Arc<str>, limits: &Limits) -> GuestLog {
        GuestLog {
            sink: Arc::new(Sink {
                component,
                line_bytes: limits.log_line_bytes as usize,
                call_bytes: limits.log_bytes_per_call,
                written: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// The component's stdout or stderr, writing into this log.
    pub fn stream(&self, stdio: Stdio) -> LogStream {
        LogStream { sink: self.sink.clone(), stdio, pending: Arc::default() }
    }

    /// Starts a call's budget afresh.
    pub fn new_call(&self) {
        self.sink.written.store(0, Ordering::Relaxed);
        self.sink.dropped.store(0, Ordering::Relaxed);
    }

    /// Ends a call: says how much of its log was dropped, if any was.
    pub fn end_call(&self) {
        let dropped = self.sink.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                component = &*self.sink.component,
                "the component wrote more than {} bytes of log in one call (limits.log_bytes_per_call); {dropped} bytes of it were dropped",
                self.sink.call_bytes
            );
        }
    }
}

impl log::Host for GuestLog {
    fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        self.sink.emit(level, None, message.as_bytes(), message.len());
    }
}

impl Sink {
    /// Logs one line of the component's, escaped, cut and counted.
    /// `line` is what was kept of a line of `len` bytes.
    fn emit(&self, level: tracing::Level, stream: Option<&'static str>, line: &[u8], len: usize) {
        let cost = line.len().min(self.line_bytes) as u64 + 1;
        if self.written.fetch_add(cost, Ordering::Relaxed) + cost > self.call_bytes {
            self.dropped.fetch_add(len as u64 + 1, Ordering::Relaxed);
            return;
        }
        let text = escape(line, len, self.line_bytes);
        let component = &*self.component;
        let stream = stream.unwrap_or("log");
        match level {
            tracing::Level::TRACE => tracing::trace!(target: "guest", component, stream, "{text}"),
            tracing::Level::DEBUG => tracing::debug!(target: "guest", component, stream, "{text}"),
            tracing::Level::INFO => tracing::info!(target: "guest", component, stream, "{text}"),
            tracing::Level::WARN => tracing::warn!(target: "guest", component, stream, "{text}"),
            tracing::Level::ERROR => tracing::error!(target: "guest", component, stream, "{text}"),
        }
    }
}

/// A guest's line as the host prints it: valid UTF-8, control characters
/// escaped, at most `max` bytes of the original (which had `len` bytes).
pub fn escape(line: &[u8], len: usize, max: usize) -> String {
    let cut = len > max;
    let text = String::from_utf8_lossy(&line[..line.len().min(max)]);
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    if cut {
        let _ = write!(out, " … (cut: {len} bytes, limits.log_line_bytes is {max})");
    }
    out
}

/// Which of the component's output streams.
#[derive(Clone, Copy)]
pub enum Stdio {
    Stdout,
    Stderr,
}

/// A component's stdout or stderr: bytes are cut into lines and logged.
#[derive(Clone)]
pub struct LogStream {
    sink: Arc<Sink>,
    stdio: Stdio,
    /// The line so far (what is kept of it), and its whole length.
    pending: Arc<Mutex<(Vec<u8>, usize)>>,
}

impl LogStream {
    fn push(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (line, len) = &mut *pending;
        for &b in bytes {
            if b == b'\n' {
                self.emit(line, *len);
                line.clear();
                *len = 0;
            } else {
                *len += 1;
                if line.len() < self.sink.line_bytes {
                    line.push(b);
                }
            }
        }
    }

    fn emit(&self, line: &[u8], len: usize) {
        match self.stdio {
            Stdio::Stdout => self.sink.emit(tracing::Level::INFO, Some("stdout"), line, len),
            Stdio::Stderr => self.sink.emit(tracing::Level::WARN, Some("stderr"), line, len),
        }
    }

    fn flush_partial(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (line, len) = &mut *pending;
        if *len > 0 {
            self.emit(line, *len);
            line.clear();
            *len = 0;
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.flush_partial();
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_partial();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_partial();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn guest_lines_cannot_forge_host_lines() {
        let e = |s: &[u8], max| escape(s, s.len(), max);
        assert_eq!(
            e(b"one\n2026-11-28T00:00:00Z ERROR moat: forged", 100),
            "one\\n2026-11-28T00:00:00Z ERROR moat: forged"
        );
        assert_eq!(e(b"\x1b[31mred\r", 100), "\\u{1b}[31mred\\r");
        assert_eq!(e(b"abcdef", 3), "abc … (cut: 6 bytes, limits.log_line_bytes is 3)");
        assert_eq!(e(&[0xff, b'a'], 10), "\u{fffd}a");
    }
}
