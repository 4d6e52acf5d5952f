//! What the example binaries share: logging set-up, the output choice, progress
//! bars drawn from the orchestrator's events, and the plan / apply / destroy commands.
//! (A module of the examples, not of the library: `examples/common/mod.rs` is not an
//! example of its own.)
#![allow(dead_code)] // each example uses a different part

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use triad::events::{Event, Observer, Resource};
use triad::orchestrator::Options;
use triad::{render, Orchestrator, ValidSpec};

/// Logs go to stderr, at WARN unless `RUST_LOG` says otherwise.
pub(crate) fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
}

/// What to print on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// The plan, progress, inventory and next steps for people.
    Text,
    /// The inventory as one JSON document on stdout (progress stays on stderr).
    Json,
}

/// The commands of a cloud example.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Subcommand)]
pub(crate) enum Command {
    /// Show what apply would do (read-only).
    Plan,
    /// Create or converge the infrastructure, then print the inventory and next steps.
    Apply,
    /// Delete everything carrying the cluster's ownership labels.
    Destroy,
}

/// `<example> plan|apply|destroy --config FILE [--output json]`.
#[derive(Debug, Parser)]
pub(crate) struct CloudArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// The cluster spec (.toml, .yaml, .yml or .json).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
    /// Allow a plan that changes the Rancher hostname (only before Rancher is installed).
    #[arg(long, global = true)]
    pub allow_hostname_change: bool,
    /// After apply, write the hand-over bundle (configs, values.yaml, scripts) here.
    #[arg(long, value_name = "DIR", global = true)]
    pub out: Option<PathBuf>,
    /// Go on without asking when apply would replace or delete something, and for
    /// destroy. Without it, such a run asks at a terminal and refuses elsewhere.
    #[arg(long, global = true)]
    pub yes: bool,
    /// `plan`: exit 0 when there is nothing to do, 2 when there are changes (1 on
    /// error), as Terraform's `-detailed-exitcode`.
    #[arg(long, global = true)]
    pub detailed_exitcode: bool,
    /// Wait up to this many seconds for another run's lock on the cluster.
    #[arg(long, value_name = "SECONDS", default_value_t = 0, global = true)]
    pub lock_wait: u64,
    /// Break the cluster's lock if its lease has expired (its holder crashed).
    #[arg(long, global = true)]
    pub break_stale_lock: bool,
}

impl CloudArgs {
    /// The orchestrator options these arguments ask for.
    pub(crate) fn options(&self) -> Options {
        let mut options = Options::default();
        options.allow_hostname_change = self.allow_hostname_change;
        options.lock_wait = Duration::from_secs(self.lock_wait);
        options.break_stale_lock = self.break_stale_lock;
        options
    }
}

/// Go on only with consent when `what` (lines saying what would be destroyed) is not
/// empty: `--yes`, or "yes" typed at a terminal. Elsewhere (CI, pipes) refuse.
pub(crate) fn confirm(what: &[String], yes: bool) -> triad::Result<()> {
    if what.is_empty() || yes {
        return Ok(());
    }
    eprintln!("This destroys or replaces:");
    for line in what {
        eprintln!("  - {line}");
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(triad::Error::invalid(
            "--yes",
            "is missing, and there is no terminal to confirm at",
            "review the list above and pass --yes to go on",
        ));
    }
    eprint!("Type `yes` to go on: ");
    let mut answer = String::new();
    stdin.read_line(&mut answer).map_err(|e| triad::Error::Io {
        path: "stdin".into(),
        message: e.to_string(),
    })?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(triad::Error::invalid(
            "--yes",
            "was not given and the prompt was not answered `yes`",
            "nothing was changed; run again and confirm, or pass --yes",
        ))
    }
}

/// The process's exit code for `result`, printing the error (every spec problem, or
/// what failed and what exists) on stderr.
pub(crate) fn exit(result: triad::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Load and validate `--config`, reporting every problem.
pub(crate) fn load_spec(args: &CloudArgs) -> triad::Result<ValidSpec> {
    let Some(path) = &args.config else {
        return Err(triad::Error::invalid(
            "--config",
            "is missing",
            "pass --config FILE with the cluster spec (see docs/spec.md)",
        ));
    };
    triad::ClusterSpec::from_path(path)?.validate()
}

/// The process's exit code for a command's result (see [`exit`]).
pub(crate) fn exit_code(result: triad::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Run one command with progress on stderr and results on stdout; ask for consent
/// before a destructive apply and before destroy ([`confirm`]). The exit code is 0,
/// or 2 for `plan --detailed-exitcode` with changes.
pub(crate) async fn run(
    orchestrator: Orchestrator,
    spec: &ValidSpec,
    args: &CloudArgs,
) -> triad::Result<ExitCode> {
    let (command, output) = (args.command, args.output);
    let progress = Arc::new(Progress::new());
    let orchestrator = orchestrator.with_observer(progress.clone());
    let text = output == Output::Text;
    match command {
        Command::Plan => {
            let plan = orchestrator.plan(spec).await?;
            let code = if args.detailed_exitcode && plan.has_changes() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
            if text {
                println!("{plan}");
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&plan).expect("a plan serializes")
                );
            }
            return Ok(code);
        }
        Command::Apply => {
            let plan = orchestrator.plan(spec).await?;
            eprintln!("{plan}\n");
            confirm(&plan.destructive(), args.yes)?;
            let inventory = orchestrator.apply(&plan).await?;
            progress.clear();
            // The plan's spec: it knows the node network the provider reported.
            write_bundle(args.out.as_deref(), plan.spec(), &inventory)?;
            if text {
                println!("{}", render::next_steps(plan.spec(), &inventory));
            } else {
                println!("{}", render::inventory_json(&inventory));
            }
        }
        Command::Destroy => {
            confirm(
                &[format!(
                    "every resource labelled triad-cluster={} in {}, and its DNS record {}",
                    spec.name,
                    spec.region,
                    spec.fqdn()
                )],
                args.yes,
            )?;
            let report = orchestrator.destroy(&spec.cluster()).await?;
            progress.clear();
            if text {
                println!("Deleted {} resources:", report.deleted.len());
                for what in &report.deleted {
                    println!("  - {what}");
                }
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("a report serializes")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// With `--out DIR`, write the hand-over bundle ([`render::bundle`]) there.
pub(crate) fn write_bundle(
    out: Option<&std::path::Path>,
    spec: &ValidSpec,
    inventory: &triad::Inventory,
) -> triad::Result<()> {
    let Some(dir) = out else { return Ok(()) };
    let files = render::bundle(spec, inventory);
    render::write_to(&files, dir).map_err(|e| triad::Error::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    eprintln!("Wrote {} hand-over files to {}", files.len(), dir.display());
    Ok(())
}

/// Draws one spinner per resource on stderr from the orchestrator's events; prints
/// plain lines instead when stderr is not a terminal (CI logs).
pub(crate) struct Progress {
    bars: MultiProgress,
    by_resource: Mutex<HashMap<Resource, ProgressBar>>,
    plain: bool,
}

impl Progress {
    /// Bars on a terminal, plain lines otherwise.
    pub(crate) fn new() -> Self {
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

    /// Finish and remove every bar.
    pub(crate) fn clear(&self) {
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
                Event::Started { resource, step } => eprintln!("{resource}: {step}…"),
                Event::Finished {
                    resource,
                    step,
                    detail,
                } => match detail {
                    Some(d) => eprintln!("{resource}: {step} ✔ ({d})"),
                    None => eprintln!("{resource}: {step} ✔"),
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
