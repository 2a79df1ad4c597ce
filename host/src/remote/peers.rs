//! What each host runs, kept in two JetStream streams that hold the last
//! message per subject (a key-value store built from plain streams, which
//! every JetStream server version serves):
//! - `MOAT_PEERS_<namespace>`, subject `moat.<namespace>.peers.<component>`:
//!   host, version, build SHA-256;
//! - `MOAT_BUILDS_<namespace>`, subject `moat.<namespace>.builds.<sha256>`:
//!   the `.wasm` itself.
//!
//! A host announces its components when it starts and after each swap; a
//! swap on another host reads them to check its consumers against the
//! builds they really run.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use async_nats::jetstream::stream;
use serde::{Deserialize, Serialize};

use super::connection::{Connection, token};
use crate::component::Component;

/// A component, as the host running it announced it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Peer {
    /// The component's name.
    pub component: String,
    /// The host running it.
    pub host: String,
    /// The version of the contract it exports.
    pub version: Option<String>,
    /// SHA-256 of the build it runs (kept in `MOAT_BUILDS_<namespace>`).
    pub sha256: String,
    /// When it was announced, in ms since the Unix epoch.
    pub announced_ms: i64,
}

/// The stream of one kind of record (`PEERS`, `BUILDS`), holding the last
/// message per subject `moat.<namespace>.<kind>.>`.
async fn last_per_subject(nats: &Connection, kind: &str) -> Result<stream::Stream> {
    let name = nats.stream(kind);
    nats.js
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![nats.subject(&format!("{}.>", kind.to_lowercase()))],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("opening the stream {name}: {e}"))
}

/// Announces what this host runs of `component`, with its build.
pub async fn announce(nats: &Connection, component: &Component) -> Result<()> {
    let version = component.version();
    let compiled = &version.compiled;
    let builds = last_per_subject(nats, "BUILDS").await?;
    let build_subject = nats.subject(&format!("builds.{}", compiled.digest));
    if builds.get_last_raw_message_by_subject(&build_subject).await.is_err() {
        let bytes = tokio::fs::read(&compiled.source).await?;
        nats.js
            .publish(build_subject, bytes.into())
            .await
            .map_err(|e| anyhow!("storing the build: {e}"))?
            .await
            .map_err(|e| anyhow!("storing the build: {e}"))?;
    }
    let peer = Peer {
        component: component.name().to_string(),
        host: nats.host().to_string(),
        version: version.contract.version().map(|v| v.to_string()),
        sha256: compiled.digest.clone(),
        announced_ms: crate::ledger::now_ms(),
    };
    last_per_subject(nats, "PEERS").await?;
    nats.js
        .publish(nats.subject(&format!("peers.{}", token(component.name()))), serde_json::to_vec(&peer)?.into())
        .await
        .map_err(|e| anyhow!("announcing `{}`: {e}", component.name()))?
        .await
        .map_err(|e| anyhow!("announcing `{}`: {e}", component.name()))?;
    Ok(())
}

/// Announces every local component, retrying until NATS answers.
pub(super) async fn announce_all(nats: &Arc<Connection>, components: &[Arc<Component>]) {
    for component in components {
        let mut said = false;
        while let Err(e) = announce(nats, component).await {
            if !said {
                tracing::warn!(component = component.name(), "announcing to other hosts failed, retrying: {e:#}");
                said = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Every announced component.
pub async fn list(nats: &Connection) -> Result<Vec<Peer>> {
    let peers_stream = last_per_subject(nats, "PEERS").await?;
    let mut info = peers_stream.info_with_subjects(nats.subject("peers.>")).await.map_err(|e| anyhow!("{e}"))?;
    let mut subjects = Vec::new();
    while let Some(entry) = futures::StreamExt::next(&mut info).await {
        let (subject, _count) = entry.map_err(|e| anyhow!("{e}"))?;
        subjects.push(subject);
    }
    let mut peers = Vec::new();
    for subject in subjects {
        if let Ok(message) = peers_stream.get_last_raw_message_by_subject(&subject).await
            && let Ok(peer) = serde_json::from_slice::<Peer>(&message.payload)
        {
            peers.push(peer);
        }
    }
    peers.sort_by(|a, b| a.component.cmp(&b.component));
    Ok(peers)
}

/// The build a peer announced for `component`, if any: its SHA-256 and bytes.
pub async fn build_of(nats: &Connection, component: &str) -> Result<Option<(String, Vec<u8>)>> {
    let peers_stream = last_per_subject(nats, "PEERS").await?;
    let Ok(message) =
        peers_stream.get_last_raw_message_by_subject(&nats.subject(&format!("peers.{}", token(component)))).await
    else {
        return Ok(None);
    };
    let peer: Peer = serde_json::from_slice(&message.payload)?;
    let builds = last_per_subject(nats, "BUILDS").await?;
    let Ok(build) = builds.get_last_raw_message_by_subject(&nats.subject(&format!("builds.{}", peer.sha256))).await
    else {
        return Ok(None);
    };
    Ok(Some((peer.sha256, build.payload.to_vec())))
}
