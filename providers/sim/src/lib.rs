//! # triad-sim
//!
//! An in-memory simulated cloud — nodes, a load balancer and DNS — that implements
//! triad's three provider traits ([`NodeProvider`](triad_core::NodeProvider),
//! [`LoadBalancerProvider`](triad_core::LoadBalancerProvider),
//! [`DnsProvider`](triad_core::DnsProvider)). It is the reference provider, the way
//! object_store's `InMemory` is the reference store: the orchestrator's tests,
//! examples and benchmarks run on it, and it runs the same conformance suite
//! (`triad_core::conformance`) as the real clouds.
//!
//! What it models:
//!
//! - **Latency in virtual time.** Every trait method is made of simulated API calls
//!   ([`SimApi`]); each sleeps [`SimConfig::api`] with `tokio::time`, and resource
//!   states follow from timestamps (a node is `Pending` for `node_create +
//!   node_boot`, a balancer `Provisioning` for `lb_provision`, a DNS change pending
//!   for `dns_sync`). Under `tokio::time::pause()` a realistic ten-minute apply runs
//!   in milliseconds.
//! - **The pitfalls of real clouds.** Quotas ([`SimConfig::node_quota`]), hosted
//!   zones that must exist, DNS records owned by someone else
//!   ([`SimCloud::put_foreign_record`]), and injected faults ([`SimFault`]) that fail
//!   a call before it takes effect or after (a lost response), as retryable or fatal
//!   errors.
//! - **Safe retries.** Every method is create-or-get by name and ownership labels,
//!   so calling it again after a failure at any point completes the work without
//!   duplicates — the property the tests check with [`SimCloud::snapshot`] and
//!   [`SimCloud::stats`].
//!
//! Clones of a [`SimCloud`] share one cloud: a test can drop an orchestrator in the
//! middle of an apply and run a new one against the same state.
//!
//! ```
//! use std::time::Duration;
//! use triad_core::labels::Role;
//! use triad_core::model::NodeRequest;
//! use triad_core::{ClusterRef, NodeProvider};
//! use triad_sim::{SimApi, SimCloud, SimConfig, SimFault};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> triad_core::Result<()> {
//! // Realistic latencies; with the clock paused they pass instantly.
//! let cloud = SimCloud::new(SimConfig::realistic());
//! let cluster = ClusterRef::new("rancher", "us-east-1");
//! let mut request = NodeRequest::new("rancher-1", "us-east-1a");
//! request.labels = cluster.labels_for(Role::Node);
//!
//! // The launch succeeds in the cloud but its response is lost…
//! cloud.inject(SimFault::on(SimApi::RunInstance).after());
//! assert!(cloud.create_node(&cluster, &request).await.is_err());
//! // …and the retry finds the node instead of launching a second one.
//! let node = cloud.create_node(&cluster, &request).await?;
//! assert_eq!(cloud.snapshot().live_nodes("rancher").len(), 1);
//!
//! let node = cloud.wait_node(&cluster, &node, Duration::from_secs(600)).await?;
//! assert!(node.is_ready());
//! assert_eq!(cloud.stats().calls(SimApi::RunInstance), 1);
//! # Ok(())
//! # }
//! ```
//!
//! ## Configuration
//!
//! [`SimConfig::realistic`] (API calls 100 ms, node 45 s + 60 s boot, balancer
//! 150 s, DNS 40 s), [`SimConfig::instant`] (everything ready at once) and
//! [`SimConfig::scaled`] cover most needs; the fields are public. From a spec,
//! [`SimCloud::from_spec`] reads the `[sim]` section ([`SimSettings`]):
//!
//! ```toml
//! [sim]
//! time_scale = 0.01               # 100x faster than realistic
//! balancer_endpoint = "hostname"  # "ip" (default) or "hostname" (alias/CNAME records)
//! node_quota = 5                  # live nodes per cluster
//! zones = ["a", "b", "c"]         # zone suffixes of every region
//! state_file = "sim-state.json"   # keep the cloud in this file between processes
//! ```
//!
//! ## What the sim is made of
//!
//! - Nodes are instances (`i-` + 17 hex, private address `10.<zone index>.x.y`) in a
//!   per-cluster security group `<cluster>-nodes`, created with the first node and
//!   removed by [`NodeProvider::cleanup`](triad_core::NodeProvider::cleanup).
//! - A layer 4 balancer has target groups `<name>-tcp-80` and `<name>-tcp-443` with
//!   the HTTP health check Rancher documents, and TCP listeners 80 and 443; a layer 7
//!   one has `<name>-http-80`, an HTTPS listener on 443 with the certificate and an
//!   HTTP listener on 80 redirecting to HTTPS. Endpoints appear once active.
//! - Hosted zones hold record sets (A, CNAME, alias, TXT) changed in atomic batches;
//!   triad's records have an ownership TXT at `_triad.<fqdn>`.
//!
//! ## Inspection
//!
//! [`SimCloud::snapshot`] returns every resource ([`SimSnapshot`]) for assertions
//! such as "exactly three nodes, no orphan target group";
//! [`SimCloud::stats`] counts calls per [`SimApi`] and mutating calls in total.
#![warn(missing_docs)]

mod config;
mod dns;
mod fault;
mod lb;
mod nodes;
mod state;
mod world;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use triad_core::model::Endpoint;
use triad_core::spec::ValidSpec;
use triad_core::wait::Poll;
use triad_core::{Error, FailureKind, Result};

pub use config::{EndpointStyle, SimConfig, SimSettings};
pub use fault::{FaultTarget, FaultTiming, FaultTrigger, SimApi, SimFault};
pub use world::{
    SimBalancer, SimEvent, SimHealthCheck, SimHostedZone, SimListener, SimListenerAction, SimNode,
    SimRecordData, SimRecordSet, SimSecurityGroup, SimSnapshot, SimStats, SimTargetGroup,
};

use fault::ArmedFault;
use world::{normalize, ApiResult, HostedZone, World};

/// The provider name of the simulated cloud.
pub const PROVIDER: &str = "sim";

/// The simulated cloud. Implements all three provider traits; clones share state.
///
/// See the [crate documentation](crate) for an example.
#[derive(Clone)]
pub struct SimCloud {
    inner: Arc<Inner>,
}

struct Inner {
    config: SimConfig,
    world: Mutex<World>,
    /// Where the world is saved after every mutating call (`[sim] state_file`).
    state_file: Option<PathBuf>,
    /// The security group id of each cluster (`region/name`) this process has made
    /// sure of, as a real provider caches it: concurrent `create_node` calls wait
    /// for the first one's describe-or-create instead of each making their own.
    security_groups: tokio::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl std::fmt::Debug for SimCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCloud")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Default for SimCloud {
    /// A cloud with [`SimConfig::instant`] and no hosted zone.
    fn default() -> Self {
        Self::new(SimConfig::instant())
    }
}

impl SimCloud {
    /// An empty cloud. Add hosted zones with [`SimCloud::with_zone`].
    pub fn new(config: SimConfig) -> Self {
        let world = World::new(config.seed);
        Self::with_world(config, world, None)
    }

    fn with_world(config: SimConfig, world: World, state_file: Option<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                world: Mutex::new(world),
                state_file,
                security_groups: Default::default(),
            }),
        }
    }

    /// A cloud kept in the JSON file at `path`: loaded from it when it exists (empty
    /// otherwise) and saved to it, atomically, after every mutating call — so the
    /// cloud outlives the process (`[sim] state_file`). One process at a time may
    /// use a file. Times are wall-clock times, so time passes between processes.
    pub fn with_state_file(config: SimConfig, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let world = state::load(&path, config.seed)?;
        Ok(Self::with_world(config, world, Some(path)))
    }

    /// The cloud a spec describes: its `[sim]` section (see [`SimSettings`]) applied
    /// to [`SimConfig::realistic`], and a hosted zone for the spec's `dns.zone`.
    ///
    /// ```
    /// use triad_core::spec::ClusterSpec;
    /// use triad_sim::SimCloud;
    ///
    /// let spec = ClusterSpec::from_toml(r#"
    ///     name = "rancher"
    ///     region = "eu-west-3"
    ///     [dns]
    ///     zone = "example.com"
    ///     hostname = "rancher.example.com"
    ///     [sim]
    ///     time_scale = 0.5
    ///     node_quota = 5
    /// "#).unwrap().validate().unwrap();
    /// let cloud = SimCloud::from_spec(&spec).unwrap();
    /// assert_eq!(cloud.config().node_quota, Some(5));
    /// assert_eq!(cloud.snapshot().zones[0].name, "example.com");
    /// ```
    pub fn from_spec(spec: &ValidSpec) -> Result<Self> {
        let settings = SimSettings::from_spec(spec)?;
        let config = SimConfig::from_settings(&settings)?;
        let cloud = match &settings.state_file {
            Some(path) => Self::with_state_file(config, path)?,
            None => Self::new(config),
        };
        Ok(cloud.with_zone(&spec.dns.zone))
    }

    /// Add a hosted zone (builder style).
    pub fn with_zone(self, zone: &str) -> Self {
        self.add_dns_zone(zone);
        self
    }

    /// Add a hosted zone; adding one that exists does nothing.
    pub fn add_dns_zone(&self, zone: &str) {
        let name = normalize(zone);
        let mut w = self.lock();
        if w.zones.contains_key(&name) {
            return;
        }
        let id = format!("Z{}", w.hex(12).to_ascii_uppercase());
        w.zones.insert(
            name,
            HostedZone {
                id,
                records: Vec::new(),
                latest_change: Default::default(),
            },
        );
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// Inject a fault; it is armed until it fires (or, for probabilistic and
    /// `always` faults, until [`SimCloud::clear_faults`]).
    pub fn inject(&self, fault: SimFault) {
        self.lock().faults.push(ArmedFault { fault, seen: 0 });
    }

    /// Remove every injected fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Calls made so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// Forget the calls made so far (the [timeline](SimCloud::timeline) too).
    pub fn reset_stats(&self) {
        let mut w = self.lock();
        w.stats = SimStats::default();
        w.timeline.clear();
    }

    /// Every successful mutating call since creation or [`SimCloud::reset_stats`], in
    /// order, each with the running targets of every target group right after it:
    /// what a test asserts "never fewer than two serving nodes" on.
    pub fn timeline(&self) -> Vec<SimEvent> {
        self.lock().timeline.clone()
    }

    /// Write a TXT record directly (not an API call), replacing any TXT at `fqdn`:
    /// for tests that need a record another party wrote (a stale lock).
    pub fn put_txt(&self, zone: &str, fqdn: &str, value: &str) -> Result<()> {
        let zone_name = normalize(zone);
        let fqdn = normalize(fqdn);
        let mut w = self.lock();
        let Some(z) = w.zones.get_mut(&zone_name) else {
            return Err(dns::unknown_zone(&zone_name, "put TXT record"));
        };
        z.records.retain(|r| r.fqdn != fqdn || r.data.is_address());
        z.records.push(SimRecordSet {
            fqdn,
            ttl: Some(60),
            data: SimRecordData::Txt(vec![value.to_owned()]),
        });
        Ok(())
    }

    /// Everything that exists now.
    pub fn snapshot(&self) -> SimSnapshot {
        let now = Instant::now();
        self.lock().snapshot(&self.inner.config, now)
    }

    /// Create a record nobody owns (no ownership TXT) at `fqdn`, replacing any A,
    /// CNAME or alias there: an A record for an IP endpoint, an alias for a hostname
    /// with an alias zone, a CNAME otherwise. For ownership tests; not an API call.
    pub fn put_foreign_record(&self, zone: &str, fqdn: &str, target: Endpoint) -> Result<()> {
        let zone_name = normalize(zone);
        let fqdn = normalize(fqdn);
        let data = match target {
            Endpoint::Ip { addresses } => SimRecordData::A(addresses),
            Endpoint::Hostname {
                name,
                alias_zone: Some(zone_id),
            } => SimRecordData::Alias { name, zone_id },
            Endpoint::Hostname {
                name,
                alias_zone: None,
            } => SimRecordData::Cname(name),
        };
        let ttl = match data {
            SimRecordData::Alias { .. } => None,
            _ => Some(300),
        };
        let mut w = self.lock();
        let Some(z) = w.zones.get_mut(&zone_name) else {
            return Err(dns::unknown_zone(&zone_name, "put foreign record"));
        };
        z.records
            .retain(|r| !(r.fqdn == fqdn && r.data.is_address()));
        z.records.push(SimRecordSet { fqdn, ttl, data });
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock cannot leave the world half-changed (every
        // call validates before it mutates), so a poisoned lock is still usable.
        self.inner.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Make one simulated API call: sleep the API latency, count it, apply fault
    /// injection, and run `effect` on the world at the current instant.
    pub(crate) async fn call<T>(
        &self,
        api: SimApi,
        resource: &str,
        effect: impl FnOnce(&mut World, &SimConfig, Instant) -> ApiResult<T>,
    ) -> Result<T> {
        let latency = self.inner.config.api;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let now = Instant::now();
        let mut w = self.lock();
        w.stats.record(api);
        let mut fired = None;
        {
            let World {
                faults, fault_rng, ..
            } = &mut *w;
            for f in faults.iter_mut() {
                if f.fires(api, fault_rng) && fired.is_none() {
                    fired = Some((f.fault.kind, f.fault.timing));
                }
            }
            faults.retain(|f| !matches!(f.fault.trigger, FaultTrigger::Nth(k) if f.seen >= k));
        }
        if fired.is_some() {
            w.stats.faults_fired += 1;
        }
        let injected = |kind: FailureKind, timing: FaultTiming| {
            tracing::debug!(%api, resource, ?kind, ?timing, "sim: injected fault");
            Error::provider(
                PROVIDER,
                api.as_str(),
                resource,
                kind,
                fault::message(kind, timing),
            )
        };
        if let Some((kind, FaultTiming::Before)) = fired {
            return Err(injected(kind, FaultTiming::Before));
        }
        let out = effect(&mut w, &self.inner.config, now).map_err(|e| {
            tracing::debug!(%api, resource, kind = ?e.kind, "sim: call failed");
            Error::provider(PROVIDER, api.as_str(), resource, e.kind, e.message)
        })?;
        if let (true, Some(path)) = (api.is_mutating(), &self.inner.state_file) {
            state::save(&w, path)?;
        }
        tracing::trace!(%api, resource, "sim: call");
        if api.is_mutating() {
            w.record_event(&self.inner.config, now, api, resource);
        }
        if let Some((kind, FaultTiming::After)) = fired {
            return Err(injected(kind, FaultTiming::After));
        }
        Ok(out)
    }

    /// Poll `check` on `poll`'s schedule until it yields a value or `timeout` passes.
    /// Like a cloud SDK's waiter, a throttled or transient poll is not the end of the
    /// wait: it counts as "not yet".
    pub(crate) async fn poll<T, F, Fut>(
        &self,
        poll: Poll,
        resource: &str,
        state: &str,
        timeout: Duration,
        mut check: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        poll.until(timeout, resource, state, || {
            let fut = check();
            async move {
                match fut.await {
                    Err(e) if e.is_retryable() => {
                        tracing::debug!(resource, state, error = %e, "poll failed; polling again");
                        Ok(None)
                    }
                    other => other,
                }
            }
        })
        .await
    }

    /// Check the `[sim]` section of a spec.
    fn check_sim_section(spec: &ValidSpec) -> Result<()> {
        SimSettings::from_spec(spec).map(|_| ())
    }
}
