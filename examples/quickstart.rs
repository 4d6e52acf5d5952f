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

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use triad::events::{Event, Observer, Resource};
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// The plan, progress, inventory and next steps for people.
    Text,
    /// The inventory as one JSON document on stdout (progress stays on stderr).
    Json,
}

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
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> triad::Result<()> {
    let mut spec = match &args.config {
        Some(path) => ClusterSpec::from_path(path)?,
        None => ClusterSpec::from_toml(BUILT_IN_SPEC)?,
    };
    if spec.sim.is_none() {
        spec.sim = Some(ProviderSection(
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
    if text {
        println!("{}", render::next_steps(&spec, &inventory));
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

/// Draws one spinner per resource on stderr from the orchestrator's events; prints
/// plain lines instead when stderr is not a terminal (CI logs).
struct Progress {
    bars: MultiProgress,
    by_resource: Mutex<HashMap<Resource, ProgressBar>>,
    plain: bool,
}

impl Progress {
    fn new() -> Self {
        Self {
            bars: MultiProgress::new(),
            by_resource: Mutex::new(HashMap::new()),
            plain: !std::io::stderr().is_terminal(),
        }
    }

    fn bar(&self, resource: &Resource) -> ProgressBar {
        let mut map = self.by_resource.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(resource.clone())
            .or_insert_with(|| {
                let bar = self.bars.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner:.cyan} {prefix:<34} {msg} ({elapsed})")
                        .expect("static template"),
                );
                bar.set_prefix(resource.to_string());
                bar.enable_steady_tick(Duration::from_millis(100));
                bar
            })
            .clone()
    }

    fn clear(&self) {
        let mut map = self.by_resource.lock().unwrap_or_else(|e| e.into_inner());
        for (_, bar) in map.drain() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
        let _ = self.bars.clear();
    }
}

impl Observer for Progress {
    fn on_event(&self, event: &Event) {
        if self.plain {
            match event {
                Event::Discovering => eprintln!("discovering existing resources"),
                Event::Started { resource, step } => eprintln!("{resource}: {step}"),
                Event::Finished {
                    resource,
                    step,
                    detail,
                } => match detail {
                    Some(d) => eprintln!("{resource}: {step} ({d})"),
                    None => eprintln!("{resource}: {step}"),
                },
                Event::Failed {
                    resource,
                    step,
                    error,
                } => {
                    eprintln!("{resource}: {step} FAILED: {error}")
                }
                Event::Unchanged { resource } => eprintln!("{resource}: unchanged"),
            }
            return;
        }
        match event {
            Event::Discovering => {}
            Event::Started { resource, step } => {
                let bar = self.bar(resource);
                if bar.is_finished() {
                    // A new step on a resource whose last step finished: restart the clock.
                    bar.reset();
                    bar.enable_steady_tick(Duration::from_millis(100));
                }
                bar.set_message(format!("{step}…"));
            }
            Event::Finished {
                resource,
                step,
                detail,
            } => {
                let msg = match detail {
                    Some(d) => format!("✔ {step}: {d}"),
                    None => format!("✔ {step}"),
                };
                self.bar(resource).finish_with_message(msg);
            }
            Event::Failed {
                resource,
                step,
                error,
            } => self
                .bar(resource)
                .abandon_with_message(format!("✘ {step}: {error}")),
            Event::Unchanged { resource } => self.bar(resource).finish_with_message("unchanged"),
        }
    }
}
