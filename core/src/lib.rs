//! # triad-core
//!
//! The model, the three provider traits, the orchestrator, the node bootstrap and the
//! renderers of triad, which provisions the infrastructure for a highly available
//! Rancher Management Server: an odd number of Linux nodes spread over zones, one
//! load balancer (layer 4 or layer 7) and one DNS record, with the nodes reaching the
//! internet only through an HTTP proxy.
//!
//! - [`spec`]: the declarative [`ClusterSpec`], validated into a
//!   [`ValidSpec`] before any API call.
//! - [`provider`]: [`NodeProvider`], [`LoadBalancerProvider`], [`DnsProvider`];
//!   [`choice`]: which provider makes which part, chosen by the spec's sections.
//! - [`orchestrator`]: plan, apply, destroy; [`drift`], [`rollout`], [`identity`] and
//!   [`lock`]: how a second apply on a changed spec stays safe (Day 2).
//! - [`layers`]: retry, rate limit, call counting, fault injection around any provider.
//! - [`bootstrap`]: cloud-init user data with the proxy set up; [`render`]: the next
//!   steps (RKE `cluster.yml`, RKE2 config, `helm install rancher`).
#![warn(missing_docs)]

pub mod bootstrap;
pub mod choice;
#[cfg(feature = "testing")]
pub mod conformance;
pub mod drift;
pub mod error;
pub mod events;
pub mod identity;
pub mod labels;
pub mod layers;
pub mod lock;
pub mod model;
pub mod orchestrator;
pub mod placement;
pub mod provider;
pub mod render;
pub mod rollout;
pub mod secret;
pub mod spec;
mod validate;
pub mod wait;

pub use error::{Error, FailureKind, Result};
pub use model::{Endpoint, Inventory, LoadBalancer, Node, Record};
pub use orchestrator::{Orchestrator, Plan};
pub use provider::{DnsProvider, LoadBalancerProvider, NodeProvider};
pub use spec::{ClusterRef, ClusterSpec, ValidSpec};
