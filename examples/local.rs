//! triad on one machine: the Rancher nodes and an NGINX balancer as local QEMU VMs
//! on a private lab segment whose only way out is your HTTP proxy, and the DNS record
//! written by RFC 2136 to a DNS server (BIND on loopback, say). For labs, demos, CI,
//! and trying a whole Rancher HA layout without a cloud account.
//!
//! ```text
//! cargo run --example local --features qemu,nginx,rfc2136 -- plan    --config local.toml
//! cargo run --example local --features qemu,nginx,rfc2136 -- apply   --config local.toml [--output json]
//! cargo run --example local --features qemu,nginx,rfc2136 -- destroy --config local.toml
//! ```
//!
//! The spec has `[qemu]` (image, state directory, loopback address, proxy),
//! `[nginx] run_on = "node"` and `[rfc2136]`; see docs/local.md. Each node's SSH is
//! forwarded from `127.0.0.N:port` (the inventory's `ssh`), and the balancer VM's 80
//! and 443 from `127.0.0.N`, where the record points.

mod common;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use common::CloudArgs;
use triad::nginx::NginxProvider;
use triad::qemu::QemuProvider;
use triad::rfc2136::Rfc2136Provider;
use triad::{NodeProvider, Orchestrator};

#[tokio::main]
async fn main() -> ExitCode {
    common::init_tracing();
    let args = CloudArgs::parse();
    common::exit_code(run(args).await)
}

async fn run(args: CloudArgs) -> triad::Result<ExitCode> {
    let spec = common::load_spec(&args)?;
    let nodes: Arc<dyn NodeProvider> = Arc::new(QemuProvider::from_spec(&spec)?);
    // The balancer VM is made by the same provider, on the same lab segment.
    let lb = Arc::new(NginxProvider::from_spec(&spec, Some(nodes.clone()))?);
    let dns = Arc::new(Rfc2136Provider::from_spec(&spec)?);
    let triad = Orchestrator::new(nodes, lb, dns).with_options(args.options());
    common::run(triad, &spec, &args).await
}
