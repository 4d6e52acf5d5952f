//! `triad`: one command for every cloud and any mix of providers.
//!
//! The spec's sections choose the providers (see `triad_core::choice`); the commands
//! are `validate`, `plan`, `apply`, `destroy`, `show` and `completions`. Only the
//! requested output goes to stdout; progress, plans shown before applying, and
//! errors go to stderr.
//!
//! Exit codes: 0 success (or no changes), 1 error (a bad spec, a failed call, a
//! refused destructive change), 2 changes present (`plan --detailed-exitcode`).
#![warn(missing_docs)]

mod consent;
mod handover;
mod progress;
mod providers;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use triad_core::orchestrator::Options;
use triad_core::{render, ClusterSpec, Orchestrator, ValidSpec};

use crate::progress::Progress;

/// Provision the infrastructure for a highly available Rancher server — nodes, one
/// load balancer, one DNS record — on any cloud or mix of providers, as the spec says.
#[derive(Debug, Parser)]
#[command(name = "triad", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The cluster spec (.toml, .yaml, .yml or .json).
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        env = "TRIAD_CONFIG",
        global = true
    )]
    config: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Less output on stderr: no progress, errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Wait up to this many seconds for another run's lock on the cluster (apply,
    /// destroy); 0 fails at once, naming the holder.
    #[arg(long, value_name = "SECONDS", default_value_t = 0, global = true)]
    lock_wait: u64,
    /// Break the cluster's lock when its lease has expired (its holder crashed).
    #[arg(long, global = true)]
    break_stale_lock: bool,
}

/// The run-wide settings the orchestrator takes from the command line.
#[derive(Clone, Copy, Debug)]
struct RunOptions {
    allow_hostname_change: bool,
    lock_wait: u64,
    break_stale_lock: bool,
}

const EXIT_CODES: &str =
    "Exit codes: 0 success or no changes; 1 error (spec problems, a failed call, \
a refused destructive change); 2 changes present (plan --detailed-exitcode).";

/// What stdout carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum Output {
    /// For people.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the whole spec offline and list every problem.
    Validate,
    /// Show what apply would do (read-only).
    Plan {
        /// What to print.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        /// Exit 2 when the plan has changes (0 when none, 1 on error).
        #[arg(long)]
        detailed_exitcode: bool,
        /// Allow a plan that changes the Rancher hostname (only before Rancher is installed).
        #[arg(long)]
        allow_hostname_change: bool,
    },
    /// Create or converge the infrastructure; print the next steps (or the inventory).
    Apply {
        /// Allow destructive changes (deleting or replacing a node or the balancer)
        /// without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// What to print: the next steps (text) or the inventory (json).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        /// Also write the hand-over (inventory.json, next-steps.txt) into DIR.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Allow a plan that changes the Rancher hostname (only before Rancher is installed).
        #[arg(long)]
        allow_hostname_change: bool,
    },
    /// Delete everything carrying the cluster's ownership labels.
    Destroy {
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
        /// What to print: the deleted resources as text or JSON.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Print today's inventory and next steps of an existing cluster (read-only).
    Show {
        /// What to print: the next steps (text) or the inventory (json).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Why the command failed.
#[derive(Debug)]
pub enum CliError {
    /// triad (the spec, a provider call, the orchestrator).
    Triad(triad_core::Error),
    /// A destructive change was not allowed.
    Refused(String),
    /// A local file could not be written.
    Io(String),
    /// The cluster does not exist (yet) as `show` needs it.
    NotReady(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Triad(e) => write!(f, "{e}"),
            CliError::Refused(m) | CliError::Io(m) | CliError::NotReady(m) => f.write_str(m),
        }
    }
}

impl From<triad_core::Error> for CliError {
    fn from(e: triad_core::Error) -> Self {
        CliError::Triad(e)
    }
}

/// How a successful command ends.
enum Done {
    /// Exit 0.
    Ok,
    /// Exit 2 (`plan --detailed-exitcode` with changes).
    Changes,
}

fn main() -> ExitCode {
    // Usage errors exit 1, not clap's 2: 2 means "changes present".
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::Changes) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs on stderr: WARN by default, `-v` INFO, `-vv` DEBUG, `-vvv` TRACE, `-q`
/// ERROR; `RUST_LOG` wins when set.
fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
}

fn load(config: Option<&PathBuf>) -> Result<ValidSpec, CliError> {
    let Some(path) = config else {
        return Err(triad_core::Error::invalid(
            "--config",
            "is missing",
            "pass --config FILE (or set TRIAD_CONFIG) with the cluster spec (see docs/spec.md)",
        )
        .into());
    };
    Ok(ClusterSpec::from_path(path)?.validate()?)
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

async fn orchestrator(
    spec: &ValidSpec,
    progress: &Arc<Progress>,
    run: RunOptions,
) -> Result<Orchestrator, CliError> {
    let choice = spec.providers()?;
    tracing::info!(%choice, "providers");
    let p = providers::build(spec, choice).await?;
    let mut options = Options::default();
    options.allow_hostname_change = run.allow_hostname_change;
    options.lock_wait = std::time::Duration::from_secs(run.lock_wait);
    options.break_stale_lock = run.break_stale_lock;
    Ok(Orchestrator::new(p.nodes, p.lb, p.dns)
        .with_observer(progress.clone())
        .with_options(options))
}

async fn run(cli: Cli) -> Result<Done, CliError> {
    let progress = Arc::new(Progress::new(cli.quiet));
    let config = cli.config.as_ref();
    let run_options = |allow_hostname_change| RunOptions {
        allow_hostname_change,
        lock_wait: cli.lock_wait,
        break_stale_lock: cli.break_stale_lock,
    };
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "triad", &mut std::io::stdout());
            Ok(Done::Ok)
        }
        Command::Validate => {
            let spec = load(config)?;
            let choice = spec.providers()?;
            let problems = providers::offline_problems(&spec, choice);
            if !problems.is_empty() {
                return Err(triad_core::Error::InvalidSpec(problems.into()).into());
            }
            println!("{}: valid ({choice})", spec.name);
            Ok(Done::Ok)
        }
        Command::Plan {
            output,
            detailed_exitcode,
            allow_hostname_change,
        } => {
            let spec = load(config)?;
            let triad = orchestrator(&spec, &progress, run_options(allow_hostname_change)).await?;
            let plan = triad.plan(&spec).await?;
            match output {
                Output::Text => println!("{plan}"),
                Output::Json => println!("{}", json(&plan)),
            }
            Ok(if detailed_exitcode && !plan.is_noop() {
                Done::Changes
            } else {
                Done::Ok
            })
        }
        Command::Apply {
            yes,
            output,
            out,
            allow_hostname_change,
        } => {
            let spec = load(config)?;
            let triad = orchestrator(&spec, &progress, run_options(allow_hostname_change)).await?;
            let plan = triad.plan(&spec).await?;
            if !progress.is_silent() {
                eprintln!("{plan}\n");
            }
            consent::confirm(&plan.destructive(), yes, "apply")?;
            let inventory = triad.apply(&plan).await?;
            progress.finish();
            if let Some(dir) = &out {
                // The plan's spec: it knows the node network the provider reported.
                for path in handover::write(dir, plan.spec(), &inventory)? {
                    tracing::info!(path = %path.display(), "hand-over written");
                }
            }
            match output {
                Output::Text => println!("{}", render::next_steps(plan.spec(), &inventory)),
                Output::Json => println!("{}", render::inventory_json(&inventory)),
            }
            Ok(Done::Ok)
        }
        Command::Destroy { yes, output } => {
            let spec = load(config)?;
            let cluster = spec.cluster();
            consent::confirm(
                &consent::destroy_lines(&cluster, &spec.fqdn()),
                yes,
                "destroy",
            )?;
            let triad = orchestrator(&spec, &progress, run_options(false)).await?;
            let report = triad.destroy(&cluster).await?;
            progress.finish();
            match output {
                Output::Text => {
                    println!("Deleted {} resources:", report.deleted.len());
                    for what in &report.deleted {
                        println!("  - {what}");
                    }
                }
                Output::Json => println!("{}", json(&report)),
            }
            Ok(Done::Ok)
        }
        Command::Show { output } => {
            let spec = load(config)?;
            let triad = orchestrator(&spec, &progress, run_options(false)).await?;
            let plan = triad.plan(&spec).await?;
            progress.finish();
            let Some(inventory) = triad.inventory(&plan) else {
                return Err(CliError::NotReady(format!(
                    "cluster `{}` has no load balancer with an endpoint or no DNS record yet \
                     ({} changes planned); run `triad apply` first",
                    spec.name,
                    plan.changes()
                )));
            };
            if !plan.is_noop() {
                tracing::warn!(
                    changes = plan.changes(),
                    "the cluster differs from the spec; `triad plan` shows how"
                );
            }
            match output {
                Output::Text => println!("{}", render::next_steps(plan.spec(), &inventory)),
                Output::Json => println!("{}", render::inventory_json(&inventory)),
            }
            Ok(Done::Ok)
        }
    }
}
