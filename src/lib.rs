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
//! | `ec2` | `triad-ec2` | AWS: EC2 nodes, an NLB (l4) or ALB (l7), Route 53 |
//! | `nginx` | `triad-nginx` | an NGINX load balancer (l4 stream / l7 TLS), on a host you manage or a node of any node provider |
//! | `rfc2136` | `triad-rfc2136` | DNS by RFC 2136 dynamic update signed with TSIG (BIND, PowerDNS, Knot, Windows DNS) |
//! | `gce` | `triad-gce` | Compute Engine instances, passthrough NLB / HTTPS load balancer, Cloud DNS |
//! | `vsphere` | `triad-vsphere` | vSphere nodes: VMs cloned from a template over failure domains |
//! | `qemu` | `triad-qemu` | local QEMU VMs as nodes: a lab on one host, proxy-only egress |
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

/// The NGINX load balancer (feature `nginx`).
#[cfg(feature = "nginx")]
pub use triad_nginx as nginx;

/// DNS by RFC 2136 dynamic update with TSIG (feature `rfc2136`).
#[cfg(feature = "rfc2136")]
pub use triad_rfc2136 as rfc2136;

/// Google Compute Engine: instances, load balancer and Cloud DNS (feature `gce`).
#[cfg(feature = "gce")]
pub use triad_gce as gce;

/// AWS: EC2 nodes, an NLB or ALB, and Route 53 (feature `ec2`).
#[cfg(feature = "ec2")]
pub use triad_ec2 as ec2;

/// vSphere nodes (feature `vsphere`).
#[cfg(feature = "vsphere")]
pub use triad_vsphere as vsphere;

/// The README's code examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Local QEMU VMs as nodes (feature `qemu`).
#[cfg(feature = "qemu")]
pub use triad_qemu as qemu;
