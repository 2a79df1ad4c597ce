//! The connection to NATS one host holds: the client, JetStream, and the
//! runtime its tasks run on. Everything that crosses between hosts goes
//! through it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use async_nats::jetstream;
use tokio::sync::watch;

use crate::manifest::NatsSettings;

/// A host's connection to NATS.
pub struct Connection {
    pub(super) settings: NatsSettings,
    pub(super) client: async_nats::Client,
    pub(super) js: jetstream::Context,
    /// Always `Some` until dropped (see `Drop`).
    runtime: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
}

impl Drop for Connection {
    /// The last reference may go with a task of this very runtime (one
    /// aborted as the host stops), where dropping a runtime would panic:
    /// there it is shut down in the background instead.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            runtime.shutdown_background();
        }
    }
}

impl Connection {
    /// Connects to NATS. A server that is down now is retried in the
    /// background; what needs it waits or fails with a clear error meanwhile.
    pub fn connect(settings: &NatsSettings) -> Result<Arc<Connection>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("moat-nats")
            .enable_all()
            .build()?;
        let url = settings.url.clone();
        let host = settings.host.clone();
        let ping = settings.ping_interval_ms;
        let client = runtime
            .block_on(async {
                async_nats::ConnectOptions::new()
                    .name(format!("moat host {host}"))
                    .retry_on_initial_connect()
                    .connection_timeout(Duration::from_secs(2))
                    // Notice a dead connection in seconds, not minutes, and
                    // come back quickly once the network does.
                    .ping_interval(Duration::from_millis(ping.max(100)))
                    .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 200).min(1000)))
                    .event_callback(|event| async move { tracing::info!("nats: {event}") })
                    .connect(&url)
                    .await
            })
            .with_context(|| format!("connecting to NATS at {url}"))?;
        let js = {
            let _inside = runtime.enter();
            jetstream::new(client.clone())
        };
        let (stop, _) = watch::channel(false);
        Ok(Arc::new(Connection { settings: settings.clone(), client, js, runtime: Some(runtime), stop }))
    }

    /// This host's name.
    pub fn host(&self) -> &str {
        &self.settings.host
    }

    /// A subject of this app's: `moat.<namespace>.<rest>`.
    pub fn subject(&self, rest: &str) -> String {
        format!("moat.{}.{rest}", self.settings.namespace())
    }

    /// A stream of this app's: `MOAT_<KIND>_<namespace>`.
    pub fn stream(&self, kind: &str) -> String {
        format!("MOAT_{kind}_{}", self.settings.namespace())
    }

    /// The stream every host of the app relays events to.
    pub fn events_stream(&self) -> String {
        self.stream("EVENTS")
    }

    /// Runs `f` on the NATS runtime and waits for it, from synchronous code
    /// (a component call, the dispatcher, the CLI).
    pub fn run<T, F>(self: &Arc<Self>, f: impl FnOnce(Arc<Connection>) -> F + Send + 'static) -> T
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let me = self.clone();
        self.runtime().spawn(async move {
            let _ = tx.send(f(me).await);
        });
        rx.recv().expect("the NATS runtime outlives its callers")
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the connection")
    }

    /// Spawns a task on the NATS runtime.
    pub(super) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> tokio::task::JoinHandle<()> {
        self.runtime().spawn(task)
    }

    /// Told when the host stops.
    pub(super) fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Tells every task to stop.
    pub(super) fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Creates the event stream if it does not exist.
    pub(super) async fn ensure_stream(&self) -> Result<()> {
        self.js
            .get_or_create_stream(jetstream::stream::Config {
                name: self.events_stream(),
                subjects: vec![self.subject("events.>")],
                storage: jetstream::stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                max_age: Duration::from_secs(7 * 24 * 3600),
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("creating the JetStream stream {}: {e}", self.events_stream()))?;
        Ok(())
    }
}

/// A subject token for a topic or name: NATS subjects split on `.`.
pub(crate) fn token(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ':' { c } else { '_' }).collect()
}
