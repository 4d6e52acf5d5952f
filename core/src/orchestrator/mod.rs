//! The orchestrator: turns a [`ValidSpec`](crate::spec::ValidSpec) into a [`Plan`]
//! (desired vs discovered), applies it, and destroys what carries a cluster's
//! labels.
//!
//! Apply runs independent work concurrently:
//!
//! ```text
//! nodes: create ─ wait running ──────────────┐
//!                                            ├─ targets ─ delete surplus nodes
//! balancer: create ─ wait active ─┬──────────┘
//!                                 └─ DNS upsert ─ wait in sync
//! ```
//!
//! Every step is a provider call that is safe to repeat, so rerunning `apply` after a
//! crash or failure converges without duplicates, and rerunning it after success
//! makes no mutating call at all.

mod apply;
mod destroy;
mod display;
mod plan;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::events::{Event, NoopObserver, Observer, Resource};
use crate::provider::{DnsProvider, LoadBalancerProvider, NodeProvider};

pub use destroy::DestroyReport;
pub use plan::{Discovered, DnsAction, LbAction, NodeAction, Plan, TargetsAction};

/// Deadlines and limits for the orchestrator.
///
/// New fields may be added in a minor release: outside triad-core, start from
/// [`Options::default`] and set the public fields to change:
///
/// ```
/// use std::time::Duration;
/// use triad_core::orchestrator::Options;
///
/// let mut options = Options::default();
/// options.node_timeout = Duration::from_secs(30 * 60);
/// options.lock_holder = Some("ci-1234".into());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// How long a node may take to run with a private IP.
    pub node_timeout: Duration,
    /// How long the balancer may take to become active.
    pub lb_timeout: Duration,
    /// How long a DNS change may take to reach the name servers.
    pub dns_timeout: Duration,
    /// The most provider calls the orchestrator makes at once for nodes.
    pub max_concurrency: usize,
    /// Allow a plan that changes the Rancher hostname of an existing cluster. Only
    /// safe before Rancher is installed: Rancher's hostname cannot change afterwards.
    pub allow_hostname_change: bool,
    /// How long apply and destroy wait for another run's lock ([`lock`](crate::lock))
    /// before failing with [`Error::Locked`]. Zero: fail at once.
    pub lock_wait: Duration,
    /// How long a lock is held at most; a lock older than this is stale (its holder
    /// crashed) and may be broken with [`Options::break_stale_lock`].
    pub lock_lease: Duration,
    /// Break a lock whose lease has expired. Never breaks a live lease.
    pub break_stale_lock: bool,
    /// Who this run is, as written into the lock (`ci-1234`, `alice@laptop`). A
    /// random run id when `None`.
    pub lock_holder: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            node_timeout: Duration::from_secs(15 * 60),
            lb_timeout: Duration::from_secs(20 * 60),
            dns_timeout: Duration::from_secs(10 * 60),
            max_concurrency: 16,
            allow_hostname_change: false,
            lock_wait: Duration::ZERO,
            lock_lease: Duration::from_secs(2 * 60 * 60),
            break_stale_lock: false,
            lock_holder: None,
        }
    }
}

/// Plans, applies and destroys a cluster through three providers.
///
/// ```no_run
/// use std::sync::Arc;
/// use triad_core::{ClusterSpec, DnsProvider, LoadBalancerProvider, NodeProvider, Orchestrator};
///
/// async fn up<C>(cloud: Arc<C>) -> triad_core::Result<()>
/// where
///     C: NodeProvider + LoadBalancerProvider + DnsProvider + 'static,
/// {
///     let spec = ClusterSpec::from_path("cluster.toml")?.validate()?;
///     let orchestrator = Orchestrator::new(cloud.clone(), cloud.clone(), cloud);
///     let plan = orchestrator.plan(&spec).await?;
///     println!("{plan}");
///     let inventory = orchestrator.apply(&plan).await?;
///     println!("Rancher: {}", inventory.rancher_url);
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Orchestrator {
    nodes: Arc<dyn NodeProvider>,
    lb: Arc<dyn LoadBalancerProvider>,
    dns: Arc<dyn DnsProvider>,
    observer: Arc<dyn Observer>,
    options: Options,
}

impl fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Orchestrator")
            .field("nodes", &self.nodes.name())
            .field("load_balancer", &self.lb.name())
            .field("dns", &self.dns.name())
            .field("options", &self.options)
            .finish()
    }
}

impl Orchestrator {
    /// An orchestrator over the three providers, with default [`Options`] and no observer.
    pub fn new(
        nodes: Arc<dyn NodeProvider>,
        lb: Arc<dyn LoadBalancerProvider>,
        dns: Arc<dyn DnsProvider>,
    ) -> Self {
        Self {
            nodes,
            lb,
            dns,
            observer: Arc::new(NoopObserver),
            options: Options::default(),
        }
    }

    /// Send progress events to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Use these deadlines and limits.
    pub fn with_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    pub(crate) fn emit(&self, event: Event) {
        self.observer.on_event(&event);
    }

    fn started(&self, resource: &Resource, step: &str) {
        self.emit(Event::Started {
            resource: resource.clone(),
            step: step.to_owned(),
        });
    }

    fn finished(&self, resource: &Resource, step: &str, detail: Option<String>) {
        self.emit(Event::Finished {
            resource: resource.clone(),
            step: step.to_owned(),
            detail,
        });
    }

    /// Run `fut` as step `step` of `resource`, reporting start, end and failure.
    async fn step<T>(
        &self,
        resource: Resource,
        step: &str,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.started(&resource, step);
        match fut.await {
            Ok(v) => {
                self.finished(&resource, step, None);
                Ok(v)
            }
            Err(e) => {
                self.emit(Event::Failed {
                    resource,
                    step: step.to_owned(),
                    error: e.to_string(),
                });
                Err(e)
            }
        }
    }
}

fn closed() -> Error {
    Error::provider(
        "triad",
        "schedule",
        "node",
        crate::FailureKind::Other,
        "the concurrency limiter was closed",
    )
}
