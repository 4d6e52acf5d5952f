//! # triad-ec2
//!
//! triad on AWS: the Rancher nodes as EC2 instances, the balancer as an ELBv2
//! Network Load Balancer (layer 4) or Application Load Balancer (layer 7), and the
//! record in Route 53. One value, [`Ec2`], implements all three provider traits.
//!
//! - **Nodes** ([`NodeProvider`]): one subnet per availability zone (from `[ec2]`,
//!   see [`Ec2Settings`]); a security group per cluster with the ports Rancher's HA
//!   cluster needs between nodes (etcd 2379-2380, Kubernetes API 6443, RKE2 9345,
//!   kubelet 10250, VXLAN 8472/udp) and SSH only from `nodes.ssh_allowed_cidrs`;
//!   `RunInstances` with a client token derived from the cluster, the node and its
//!   settings (a retried create never makes a second instance), tags on the
//!   instance, its volumes and network interfaces, the cloud-init user data and
//!   IMDSv2 required.
//! - **Load balancer** ([`LoadBalancerProvider`]): l4 = NLB with target groups
//!   `<name>-tcp-443` and `<name>-tcp-80` (instance targets, HTTP health check on
//!   port 80, thresholds 3/3, timeout 6 s, interval 10 s) and TCP listeners 80/443;
//!   l7 = ALB with its own security group, an HTTPS 443 listener with the spec's
//!   certificate, an HTTP 80 listener redirecting to HTTPS and target group
//!   `<name>-http-80`.
//! - **DNS** ([`DnsProvider`]): Route 53 alias, CNAME or A records with an ownership
//!   TXT record beside them; changes are waited for until `INSYNC`.
//!
//! Everything is found again by its tags (`triad-cluster`, `triad-role`), so a rerun
//! converges and `destroy` removes exactly what the cluster owns.
//!
//! Retries: the AWS SDK retries throttled and transient calls itself (standard
//! mode, `ec2.max_attempts` tries); errors that remain are mapped to
//! [`FailureKind::Throttled`](triad_core::FailureKind) / `Transient` so callers know
//! they may rerun, but do not wrap this provider in triad's retry layer as well.
//!
//! ```no_run
//! # async fn f() -> triad_core::Result<()> {
//! use std::sync::Arc;
//! use triad_core::{ClusterSpec, Orchestrator};
//! use triad_ec2::Ec2;
//!
//! let spec = ClusterSpec::from_path("cluster.toml")?.validate()?;
//! let aws = Arc::new(Ec2::from_spec(&spec).await?);
//! let triad = Orchestrator::new(aws.clone(), aws.clone(), aws);
//! let inventory = triad.apply(&triad.plan(&spec).await?).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use aws_config::SdkConfig;
use settings::Concern;
use triad_core::error::{Error, Result, SpecProblem, SpecProblems};
use triad_core::spec::ValidSpec;

pub mod client;
mod dns;
pub mod error;
mod lb;
mod network;
mod nodes;
pub mod settings;

pub use settings::Ec2Settings;
pub use triad_core::provider::{DnsProvider, LoadBalancerProvider, NodeProvider};

/// The EC2 provider: nodes, balancer and DNS record of one region and account.
///
/// Build it with [`Ec2::from_spec`] (the standard AWS environment) or
/// [`Ec2::from_sdk_config`] (a configuration you made: another endpoint, other
/// credentials, a test HTTP client).
pub struct Ec2 {
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    r53: aws_sdk_route53::Client,
    region: String,
    settings: Ec2Settings,
    /// The problems of `settings`, found once when the provider was built.
    settings_problems: Vec<SpecProblem>,
    /// The `[ec2]` section of the spec the provider was built from
    /// ([`Ec2::from_spec`]), to refuse a plan of a spec with another one.
    built_from: Option<Option<serde_json::Value>>,
    wanted_zones: Vec<String>,
    poll: triad_core::wait::Poll,
    cleanup_timeout: Duration,
    network: tokio::sync::OnceCell<network::Network>,
    sg_lock: tokio::sync::Mutex<()>,
    /// The nodes' group as last converged: (cluster, SSH CIDRs, group id).
    node_rules: tokio::sync::Mutex<Option<(String, Vec<String>, String)>>,
    hosted_zones: Mutex<HashMap<String, String>>,
    changes: Mutex<HashMap<String, String>>,
    /// Hosted zone ids being looked up now.
    zone_reads: dns::InFlight<String>,
    /// Zone listings being read now.
    listings: dns::InFlight<std::sync::Arc<Vec<aws_sdk_route53::types::ResourceRecordSet>>>,
}

impl std::fmt::Debug for Ec2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ec2")
            .field("region", &self.region)
            .field("settings", &self.settings)
            .field("wanted_zones", &self.wanted_zones)
            .finish_non_exhaustive()
    }
}

impl Ec2 {
    /// The provider a spec describes: its `[ec2]` section ([`Ec2Settings`]), its
    /// region and zones, and the standard AWS environment (credentials chain,
    /// `AWS_ENDPOINT_URL`, `AWS_PROFILE`, proxy variables) — see
    /// [`client::load_sdk_config`].
    pub async fn from_spec(spec: &ValidSpec) -> Result<Self> {
        let settings = Ec2Settings::from_spec(spec)?;
        let config = client::load_sdk_config(&spec.region, settings.max_attempts()).await;
        let mut aws =
            Self::from_sdk_config(&config, &spec.region, settings).with_zones(spec.zones.clone());
        aws.built_from = Some(spec.ec2.as_ref().map(|s| s.redacted().clone()));
        Ok(aws)
    }

    /// A provider using `config` (its endpoint, credentials, HTTP client, retry) in
    /// `region`, with explicit settings. They are checked here, once; a problem is
    /// reported by the `check_spec` of the trait it concerns (so by `plan`, before
    /// any call).
    pub fn from_sdk_config(config: &SdkConfig, region: &str, settings: Ec2Settings) -> Self {
        Self {
            settings_problems: settings.problems(),
            built_from: None,
            ec2: aws_sdk_ec2::Client::new(config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
            r53: aws_sdk_route53::Client::new(config),
            region: region.to_owned(),
            settings,
            wanted_zones: Vec::new(),
            poll: triad_core::wait::Poll::default(),
            cleanup_timeout: Duration::from_secs(15 * 60),
            network: tokio::sync::OnceCell::new(),
            sg_lock: tokio::sync::Mutex::new(()),
            node_rules: tokio::sync::Mutex::new(None),
            hosted_zones: Mutex::new(HashMap::new()),
            changes: Mutex::new(HashMap::new()),
            zone_reads: dns::InFlight::default(),
            listings: dns::InFlight::default(),
        }
    }

    /// The zones the spec asks for (`zones = [..]`): [`NodeProvider::zones`] then
    /// reports a clear error for one that has no subnet.
    pub fn with_zones(mut self, zones: Vec<String>) -> Self {
        self.wanted_zones = zones;
        self
    }

    /// How waits poll: first after `initial`, doubling up to `max` (defaults 2 s
    /// and 15 s). Tests against an emulator use milliseconds.
    pub fn with_poll_interval(mut self, initial: Duration, max: Duration) -> Self {
        self.poll = triad_core::wait::Poll::new(initial, max);
        self
    }

    /// How long deleting a security group or target group may wait for AWS to
    /// release it (instances shutting down, a balancer being deleted); 15 minutes by
    /// default.
    pub fn with_cleanup_timeout(mut self, timeout: Duration) -> Self {
        self.cleanup_timeout = timeout;
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &Ec2Settings {
        &self.settings
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The EC2 client (for tests and embedders that read back what was made).
    pub fn ec2_client(&self) -> &aws_sdk_ec2::Client {
        &self.ec2
    }

    /// The ELBv2 client.
    pub fn elb_client(&self) -> &aws_sdk_elasticloadbalancingv2::Client {
        &self.elb
    }

    /// The Route 53 client.
    pub fn route53_client(&self) -> &aws_sdk_route53::Client {
        &self.r53
    }

    /// The problems of `spec` that concern one of the three traits: the settings'
    /// own (found when the provider was built) and the spec's fields that concern
    /// ([`settings::node_problems`], [`settings::lb_problems`]), without a call.
    fn check(&self, spec: &ValidSpec, concern: Concern) -> Result<()> {
        let mut problems: Vec<SpecProblem> = self
            .settings_problems
            .iter()
            .filter(|p| Concern::of(&p.field) == concern)
            .cloned()
            .collect();
        match concern {
            Concern::Nodes => {
                problems.extend(settings::node_problems(spec));
                let section = spec.ec2.as_ref().map(|s| s.redacted());
                if self
                    .built_from
                    .as_ref()
                    .is_some_and(|built| built.as_ref() != section)
                {
                    problems.push(SpecProblem {
                        field: "ec2".into(),
                        problem: "differs from the [ec2] section this provider was built from"
                            .into(),
                        fix: "build the provider from this spec (Ec2::from_spec)".into(),
                    });
                }
            }
            Concern::LoadBalancer => problems.extend(settings::lb_problems(spec, &self.settings)),
            Concern::Dns => {}
        }
        if concern != Concern::Dns && spec.region != self.region {
            problems.push(SpecProblem {
                field: "region".into(),
                problem: format!(
                    "is `{}`, but this EC2 provider works in `{}`",
                    spec.region, self.region
                ),
                fix: "build the provider from this spec (Ec2::from_spec)".into(),
            });
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidSpec(SpecProblems(problems)))
        }
    }
}

/// What to change so tags `have` carry `want`: the tags to add or overwrite, and the
/// fingerprint tags (`triad-fp-*`) to remove because no longer wanted. Other tags
/// stay. Also returns the tags there are afterwards.
pub(crate) fn tag_diff(
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> (
    BTreeMap<String, String>,
    Vec<String>,
    BTreeMap<String, String>,
) {
    let add: BTreeMap<String, String> = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove: Vec<String> = have
        .keys()
        .filter(|k| k.starts_with(triad_core::drift::PREFIX) && !want.contains_key(*k))
        .cloned()
        .collect();
    let mut after = have.clone();
    after.extend(add.clone());
    after.retain(|k, _| !remove.contains(k));
    (add, remove, after)
}
