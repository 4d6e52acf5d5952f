//! Progress events. The orchestrator reports what it does as [`Event`]s to an
//! [`Observer`]; an embedding tool draws its own progress from them (the examples
//! draw bars). [`ChannelObserver`] forwards them into a tokio channel.

use std::sync::Mutex;

use serde::Serialize;

/// The resource an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Resource {
    /// A node, by name.
    Node(String),
    /// The load balancer, by name.
    LoadBalancer(String),
    /// The balancer's target set.
    Targets(String),
    /// The DNS record, by name.
    Record(String),
    /// Cluster-wide plumbing.
    Network(String),
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Node(n) => write!(f, "node {n}"),
            Resource::LoadBalancer(n) => write!(f, "load balancer {n}"),
            Resource::Targets(n) => write!(f, "targets of {n}"),
            Resource::Record(n) => write!(f, "DNS record {n}"),
            Resource::Network(n) => write!(f, "network {n}"),
        }
    }
}

/// Something the orchestrator did or saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// Discovery of existing resources began.
    Discovering,
    /// A step on a resource started (`creating`, `waiting for running`, `deleting`).
    Started {
        /// The resource.
        resource: Resource,
        /// What is being done.
        step: String,
    },
    /// A step finished.
    Finished {
        /// The resource.
        resource: Resource,
        /// What was done.
        step: String,
        /// A detail worth showing (an IP, an endpoint).
        detail: Option<String>,
    },
    /// A step failed (it may be retried by a rerun).
    Failed {
        /// The resource.
        resource: Resource,
        /// What was being done.
        step: String,
        /// The error, as text.
        error: String,
    },
    /// A resource was already as wanted; nothing was done.
    Unchanged {
        /// The resource.
        resource: Resource,
    },
}

/// Receives progress events. Must be cheap and must not block.
pub trait Observer: Send + Sync {
    /// Called for every event, from whichever task produced it.
    fn on_event(&self, event: &Event);
}

/// Ignores every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    fn on_event(&self, _: &Event) {}
}

/// Logs every event through `tracing` at INFO level.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingObserver;

impl Observer for TracingObserver {
    fn on_event(&self, event: &Event) {
        match event {
            Event::Failed {
                resource,
                step,
                error,
            } => {
                tracing::warn!(%resource, step, error, "failed")
            }
            e => tracing::info!(event = ?e),
        }
    }
}

/// Sends every event into an unbounded tokio channel.
///
/// ```
/// use triad_core::events::{ChannelObserver, Event, Observer};
/// let (obs, mut rx) = ChannelObserver::new();
/// obs.on_event(&Event::Discovering);
/// assert_eq!(rx.try_recv().unwrap(), Event::Discovering);
/// ```
#[derive(Debug)]
pub struct ChannelObserver(tokio::sync::mpsc::UnboundedSender<Event>);

impl ChannelObserver {
    /// A new observer and the receiving end.
    pub fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Self(tx), rx)
    }
}

impl Observer for ChannelObserver {
    fn on_event(&self, event: &Event) {
        // A dropped receiver just means nobody listens any more.
        let _ = self.0.send(event.clone());
    }
}

/// Keeps every event in memory, for tests.
#[derive(Debug, Default)]
pub struct RecordingObserver(Mutex<Vec<Event>>);

impl RecordingObserver {
    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Observer for RecordingObserver {
    fn on_event(&self, event: &Event) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
    }
}
