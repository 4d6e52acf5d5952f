//! triad's quickstart: the whole job on the in-memory simulated cloud.
//!
//! Plans a highly available Rancher infrastructure (3 nodes over 3 zones, a layer 4
//! balancer, a DNS record, nodes behind an HTTP proxy), applies it with progress bars
//! on stderr, prints the inventory and the next steps, then destroys it. Latencies are
//! realistic (a balancer takes 150 s) but scaled down 50× so the run takes seconds.
//!
//! ```text
//! cargo run --example quickstart
//! cargo run --example quickstart -- --output json        # inventory JSON on stdout
//! cargo run --example quickstart -- --config my.toml     # your own spec
//! cargo run --example quickstart -- --keep               # skip the destroy
//! ```

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use common::{Output, Progress};
use triad::sim::SimCloud;
use triad::spec::ProviderSection;
use triad::{render, ClusterSpec, Orchestrator};

/// The spec used when no --config is given.
const BUILT_IN_SPEC: &str = r#"
name = "rancher"
region = "us-east-1"

[nodes]
count = 3
size = "t3.xlarge"
image = "ami-0123456789abcdef0"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGUta2V5LW5vdC1yZWFs admin@example"]
ssh_allowed_cidrs = ["203.0.113.0/24"]

[proxy]
http = "http://proxy.internal:3128"
no_proxy = ["corp.internal"]

[load_balancer]
mode = "l4"
scheme = "internet-facing"

[dns]
zone = "example.com"
hostname = "rancher.example.com"
ttl = 60

[sim]
time_scale = 0.02
"#;

/// Provision (and then destroy) a highly available Rancher infrastructure on triad's
/// in-memory simulated cloud.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// A cluster spec (.toml, .yaml, .yml or .json) instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Simulated-time scale for a spec without `[sim] time_scale` (1.0 = real latencies).
    #[arg(long, default_value_t = 0.02)]
    time_scale: f64,
    /// Keep the cluster: skip the final destroy.
    #[arg(long)]
    keep: bool,
    /// Write the hand-over bundle (configs, values.yaml, scripts) to this directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    common::init_tracing();
    let args = Args::parse();
    common::exit(run(args).await)
}

async fn run(args: Args) -> triad::Result<()> {
    let mut spec = match &args.config {
        Some(path) => ClusterSpec::from_path(path)?,
        None => ClusterSpec::from_toml(BUILT_IN_SPEC)?,
    };
    if spec.sim.is_none() {
        spec.sim = Some(ProviderSection::new(
            serde_json::json!({ "time_scale": args.time_scale }),
        ));
    }
    let spec = spec.validate()?;
    let text = args.output == Output::Text;

    let cloud = Arc::new(SimCloud::from_spec(&spec)?);
    let progress = Arc::new(Progress::new());
    let triad =
        Orchestrator::new(cloud.clone(), cloud.clone(), cloud).with_observer(progress.clone());

    let plan = triad.plan(&spec).await?;
    if text {
        println!("{plan}\n");
    } else {
        eprintln!("{plan}\n");
    }

    let inventory = triad.apply(&plan).await?;
    progress.clear();
    common::write_bundle(args.out.as_deref(), &spec, &inventory)?;
    if text {
        println!("{}", render::next_steps(plan.spec(), &inventory));
    } else {
        println!("{}", render::inventory_json(&inventory));
    }

    if args.keep {
        eprintln!("--keep: the simulated cluster ends with this process.");
        return Ok(());
    }
    eprintln!("Destroying the simulated cluster…");
    let report = triad.destroy(&spec.cluster()).await?;
    progress.clear();
    eprintln!("Destroyed {} resources:", report.deleted.len());
    for what in &report.deleted {
        eprintln!("  - {what}");
    }
    Ok(())
}
