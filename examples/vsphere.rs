//! triad on premises: vSphere nodes spread over failure domains, an NGINX balancer
//! on a VM of its own (or on a host you manage), and a DNS record written by RFC 2136
//! dynamic update with TSIG (BIND, PowerDNS, Knot, Windows DNS).
//!
//! The three providers come from three crates; the same spec with an `[ec2]` or
//! `[gce]` section in place of `[vsphere]` mixes them the same way (see
//! docs/vsphere.md).
//!
//! ```text
//! cargo run --example vsphere --features vsphere,nginx,rfc2136 -- plan    --config onprem.toml
//! cargo run --example vsphere --features vsphere,nginx,rfc2136 -- apply   --config onprem.toml [--output json]
//! cargo run --example vsphere --features vsphere,nginx,rfc2136 -- destroy --config onprem.toml
//! ```
//!
//! Credentials: `[vsphere] username`/`password` or `VSPHERE_USER`/`VSPHERE_PASSWORD`;
//! the TSIG secret from `[rfc2136] secret_file` or `secret_env`.
//!
//! `TRIAD_VCSIM_GUEST_IPS=1` is for govmomi's vcsim only (scripts/test uses it): vcsim
//! reports no guest IP for a clone, so each VM is given a fake one derived from its
//! name through vcsim's `SET.guest.ipAddress` key, and finishes every task at once, so
//! the waits expect no vCenter latency. Never set it against a vCenter.

mod common;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use common::CloudArgs;
use triad::nginx::NginxProvider;
use triad::rfc2136::Rfc2136Provider;
use triad::vsphere::VsphereProvider;
use triad::{NodeProvider, Orchestrator};

#[tokio::main]
async fn main() -> ExitCode {
    common::init_tracing();
    let args = CloudArgs::parse();
    common::exit_code(run(args).await)
}

async fn run(args: CloudArgs) -> triad::Result<ExitCode> {
    let spec = common::load_spec(&args)?;
    let mut vsphere = VsphereProvider::from_spec(&spec).await?;
    if std::env::var("TRIAD_VCSIM_GUEST_IPS").as_deref() == Ok("1") {
        eprintln!("vcsim mode: fake guest IPs ($TRIAD_VCSIM_GUEST_IPS=1)");
        vsphere = vsphere.with_vcsim();
    }
    let nodes: Arc<dyn NodeProvider> = Arc::new(vsphere);
    // In node mode the balancer VM is made by the same vSphere provider, apart from
    // the Rancher nodes (its own cluster label, never a Rancher node).
    let lb = Arc::new(NginxProvider::from_spec(&spec, Some(nodes.clone()))?);
    let dns = Arc::new(Rfc2136Provider::from_spec(&spec)?);
    let triad = Orchestrator::new(nodes, lb, dns).with_options(args.options());
    common::run(triad, &spec, &args).await
}
