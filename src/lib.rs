//! # triad
//!
//! Provision the infrastructure for a highly available Rancher Management Server:
//! an odd number of Linux nodes spread over zones, one load balancer (layer 4 TCP
//! 80/443 passthrough, or layer 7 with TLS at the balancer), one DNS record, and nodes
//! that reach the internet only through an HTTP proxy.
//!
//! This facade re-exports [`triad_core`] and, one feature each, the providers:
//!
//! | feature | crate | what |
//! |---|---|---|
//! | `sim` (default) | `triad-sim` | the in-memory simulated cloud |
//! | `vsphere` | `triad-vsphere` | vSphere nodes: VMs cloned from a template over failure domains |
//!
//! EC2, GCE, NGINX and RFC 2136 providers are planned as further crates
//! behind features of the same names.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> triad::Result<()> {
//! use std::sync::Arc;
//! use triad::{sim::SimCloud, ClusterSpec, Orchestrator};
//!
//! let spec = ClusterSpec::from_toml(r#"
//!     name = "rancher"
//!     region = "us-east-1"
//!     [dns]
//!     zone = "example.com"
//!     hostname = "rancher.example.com"
//!     [sim]
//!     time_scale = 0.0001
//! "#)?.validate()?;
//! let cloud = Arc::new(SimCloud::from_spec(&spec)?);
//! let triad = Orchestrator::new(cloud.clone(), cloud.clone(), cloud);
//! let plan = triad.plan(&spec).await?;
//! let inventory = triad.apply(&plan).await?;
//! assert_eq!(inventory.nodes.len(), 3);
//! assert!(triad.plan(&spec).await?.is_noop());
//! triad.destroy(&spec.cluster()).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub use triad_core::*;

/// The in-memory simulated cloud (feature `sim`).
#[cfg(feature = "sim")]
pub use triad_sim as sim;

/// vSphere nodes (feature `vsphere`).
#[cfg(feature = "vsphere")]
pub use triad_vsphere as vsphere;

/// The README's code examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
