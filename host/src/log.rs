//! Capability: `moat:platform/log`, and the component's stdout and stderr.
//!
//! Both end in the host's `tracing` log, tagged with the component's name:
//! a component has no terminal and no files of its own. stdout lines are
//! logged at info, stderr lines (a Rust guest's panic message, for one) at
//! warn, so they show by default.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::platform::moat::platform::log::{self, Level};

/// Longest line kept from a component; the rest is cut, so a guest cannot
/// make the host buffer without bound.
const MAX_LINE: usize = 16 * 1024;

/// The log as one component sees it.
pub struct GuestLog {
    component: Arc<str>,
}

impl GuestLog {
    pub fn new(component: Arc<str>) -> GuestLog {
        GuestLog { component }
    }
}

impl log::Host for GuestLog {
    fn log(&mut self, level: Level, message: String) {
        let component = &*self.component;
        match level {
            Level::Trace => tracing::trace!(target: "guest", component, "{message}"),
            Level::Debug => tracing::debug!(target: "guest", component, "{message}"),
            Level::Info => tracing::info!(target: "guest", component, "{message}"),
            Level::Warn => tracing::warn!(target: "guest", component, "{message}"),
            Level::Error => tracing::error!(target: "guest", component, "{message}"),
        }
    }
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
    component: Arc<str>,
    stdio: Stdio,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl LogStream {
    pub fn new(component: Arc<str>, stdio: Stdio) -> LogStream {
        LogStream { component, stdio, pending: Arc::default() }
    }

    fn push(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for &b in bytes {
            if b == b'\n' {
                self.emit(&pending);
                pending.clear();
            } else if pending.len() < MAX_LINE {
                pending.push(b);
            }
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let component = &*self.component;
        match self.stdio {
            Stdio::Stdout => tracing::info!(target: "guest", component, stream = "stdout", "{line}"),
            Stdio::Stderr => tracing::warn!(target: "guest", component, stream = "stderr", "{line}"),
        }
    }

    fn flush_partial(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.is_empty() {
            self.emit(&pending);
            pending.clear();
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
