//! How the simulated cloud behaves: latencies, zones, quotas, endpoint style, and the
//! `[sim]` section of a spec.

use std::time::Duration;

use serde::Deserialize;
use triad_core::spec::ValidSpec;
use triad_core::wait::Poll;
use triad_core::{Error, Result};

/// What kind of endpoint the simulated balancers get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointStyle {
    /// An IP address from 203.0.113.0/24 (TEST-NET-3), as GCE balancers have;
    /// DNS then uses an A record.
    #[default]
    Ip,
    /// A hostname `<lb-name>-<8 hex>.elb.<region>.sim.invalid` with an alias zone
    /// id, as AWS balancers have; DNS then uses a CNAME or an alias.
    Hostname,
}

/// The behaviour of a [`SimCloud`](crate::SimCloud).
///
/// Every duration is measured with `tokio::time`, so tests and benchmarks can run in
/// virtual time with `tokio::time::pause()` (or `#[tokio::test(start_paused = true)]`).
///
/// ```
/// use std::time::Duration;
/// use triad_sim::SimConfig;
///
/// let fast = SimConfig::realistic().scaled(0.01);
/// assert_eq!(fast.node_boot, Duration::from_millis(600));
/// let cfg = SimConfig::instant().with_node_quota(5).with_zones(["a", "b"]);
/// assert_eq!(cfg.node_quota, Some(5));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Latency of every simulated API call.
    pub api: Duration,
    /// Time from `RunInstance` until the instance starts booting.
    pub node_create: Duration,
    /// Boot time; a node is `Pending` for `node_create + node_boot`, then `Running`.
    pub node_boot: Duration,
    /// How long a deleted node stays `Terminating` before it vanishes from discovery.
    pub node_terminate: Duration,
    /// A balancer is `Provisioning` this long after it is created, then `Active`.
    pub lb_provision: Duration,
    /// A DNS change is pending this long, then in sync.
    pub dns_sync: Duration,
    /// How `wait_node` and `wait_nodes` poll.
    pub node_poll: Poll,
    /// How `wait_load_balancer` polls.
    pub lb_poll: Poll,
    /// How `wait_record` polls.
    pub dns_poll: Poll,
    /// Zone suffixes of every region: `["a", "b", "c"]` gives region `us-east-1`
    /// the zones `us-east-1a`, `us-east-1b`, `us-east-1c`. Any region name is accepted.
    pub zones: Vec<String>,
    /// Most live (pending or running) nodes one cluster may have; more is a
    /// [`FailureKind::Capacity`](triad_core::FailureKind::Capacity) error.
    pub node_quota: Option<usize>,
    /// What endpoint balancers get.
    pub balancer_endpoint: EndpointStyle,
    /// Seed of the random numbers (ids, addresses, probabilistic faults).
    pub seed: u64,
}

/// Every millisecond, nothing expected.
fn instant_poll() -> Poll {
    Poll::new(Duration::from_millis(1), Duration::from_millis(1))
}

impl Default for SimConfig {
    /// [`SimConfig::instant`].
    fn default() -> Self {
        Self::instant()
    }
}

impl SimConfig {
    /// Latencies close to a real cloud: API calls 100 ms, node creation 45 s, boot
    /// 60 s, termination 30 s, balancer 150 s, DNS sync 40 s. Polling as a real
    /// provider polls: nodes at most every 5 s, the balancer every 10 s, DNS every
    /// 5 s, each expecting its resource after the typical time (105 s, 150 s, 40 s:
    /// the latencies above, which are the typical ones), starting at 1 s after that.
    pub fn realistic() -> Self {
        Self {
            api: Duration::from_millis(100),
            node_create: Duration::from_secs(45),
            node_boot: Duration::from_secs(60),
            node_terminate: Duration::from_secs(30),
            lb_provision: Duration::from_secs(150),
            dns_sync: Duration::from_secs(40),
            node_poll: Poll::new(Duration::from_secs(1), Duration::from_secs(5))
                .expecting(Duration::from_secs(105)),
            lb_poll: Poll::new(Duration::from_secs(1), Duration::from_secs(10))
                .expecting(Duration::from_secs(150)),
            dns_poll: Poll::new(Duration::from_secs(1), Duration::from_secs(5))
                .expecting(Duration::from_secs(40)),
            zones: default_zones(),
            node_quota: None,
            balancer_endpoint: EndpointStyle::Ip,
            seed: 0x7121_ad00,
        }
    }

    /// No latency at all (polling every millisecond): everything is ready at once.
    pub fn instant() -> Self {
        Self {
            api: Duration::ZERO,
            node_create: Duration::ZERO,
            node_boot: Duration::ZERO,
            node_terminate: Duration::ZERO,
            lb_provision: Duration::ZERO,
            dns_sync: Duration::ZERO,
            node_poll: instant_poll(),
            lb_poll: instant_poll(),
            dns_poll: instant_poll(),
            ..Self::realistic()
        }
    }

    /// Multiply every duration (poll interval included) by `factor`. A negative or
    /// NaN factor gives zero durations; an overflowing product saturates.
    pub fn scaled(mut self, factor: f64) -> Self {
        let scale = |d: Duration| -> Duration {
            let secs = d.as_secs_f64() * factor;
            if secs.is_nan() || secs <= 0.0 {
                Duration::ZERO
            } else {
                Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
            }
        };
        self.api = scale(self.api);
        self.node_create = scale(self.node_create);
        self.node_boot = scale(self.node_boot);
        self.node_terminate = scale(self.node_terminate);
        self.lb_provision = scale(self.lb_provision);
        self.dns_sync = scale(self.dns_sync);
        for poll in [&mut self.node_poll, &mut self.lb_poll, &mut self.dns_poll] {
            poll.initial = scale(poll.initial);
            poll.max = scale(poll.max);
            poll.expected = scale(poll.expected);
        }
        self
    }

    /// Set the zone suffixes.
    pub fn with_zones<I, S>(mut self, suffixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.zones = suffixes.into_iter().map(Into::into).collect();
        self
    }

    /// Limit live nodes per cluster.
    pub fn with_node_quota(mut self, quota: usize) -> Self {
        self.node_quota = Some(quota);
        self
    }

    /// Set the balancer endpoint style.
    pub fn with_balancer_endpoint(mut self, style: EndpointStyle) -> Self {
        self.balancer_endpoint = style;
        self
    }

    /// Set the RNG seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Set the latency of every API call.
    pub fn with_api_latency(mut self, api: Duration) -> Self {
        self.api = api;
        self
    }

    /// The config a spec's `[sim]` settings describe:
    /// [`SimConfig::realistic`] scaled by `time_scale`, with the other settings applied.
    pub fn from_settings(settings: &SimSettings) -> Result<Self> {
        settings.check()?;
        let mut cfg = Self::realistic().scaled(settings.time_scale);
        cfg.balancer_endpoint = settings.balancer_endpoint;
        cfg.node_quota = settings.node_quota;
        if let Some(z) = &settings.zones {
            cfg.zones = z.clone();
        }
        Ok(cfg)
    }
}

fn default_zones() -> Vec<String> {
    vec!["a".into(), "b".into(), "c".into()]
}

fn default_time_scale() -> f64 {
    1.0
}

/// The `[sim]` section of a spec.
///
/// ```
/// use triad_core::spec::ClusterSpec;
/// use triad_sim::SimSettings;
///
/// let spec = ClusterSpec::from_toml(r#"
///     name = "rancher"
///     region = "us-east-1"
///     [dns]
///     zone = "example.com"
///     hostname = "rancher.example.com"
///     [sim]
///     time_scale = 0.01
///     balancer_endpoint = "hostname"
/// "#).unwrap().validate().unwrap();
/// let settings = SimSettings::from_spec(&spec).unwrap();
/// assert_eq!(settings.time_scale, 0.01);
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSettings {
    /// Multiplies every realistic latency (1.0: real-world durations; 0.01: a hundred
    /// times faster). Must be positive and finite.
    #[serde(default = "default_time_scale")]
    pub time_scale: f64,
    /// `"ip"` (default) or `"hostname"`.
    #[serde(default)]
    pub balancer_endpoint: EndpointStyle,
    /// Most live nodes per cluster.
    #[serde(default)]
    pub node_quota: Option<usize>,
    /// Zone suffixes of every region (default `["a", "b", "c"]`).
    #[serde(default)]
    pub zones: Option<Vec<String>>,
    /// A JSON file the cloud is loaded from and saved to after every mutating call,
    /// so it outlives the process (see [`SimCloud::with_state_file`](crate::SimCloud::with_state_file)).
    /// Relative paths are relative to the working directory. In memory only when absent.
    #[serde(default)]
    pub state_file: Option<std::path::PathBuf>,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            time_scale: 1.0,
            balancer_endpoint: EndpointStyle::Ip,
            node_quota: None,
            zones: None,
            state_file: None,
        }
    }
}

impl SimSettings {
    /// Read and check the spec's `[sim]` section; defaults when there is none.
    pub fn from_spec(spec: &ValidSpec) -> Result<Self> {
        let settings = match spec.sim.as_ref() {
            // The section is kept as JSON, which has no NaN or infinity: they arrive
            // as null. Name the field rather than report a confusing type error.
            Some(section)
                if section
                    .redacted()
                    .get("time_scale")
                    .is_some_and(|v| v.is_null()) =>
            {
                return Err(Error::invalid(
                    "sim.time_scale",
                    "is not a finite number",
                    "use a number above 0, e.g. 1.0 for real-world latencies or 0.01 for 100x faster",
                ));
            }
            Some(section) => section.parse::<SimSettings>("sim")?,
            None => SimSettings::default(),
        };
        settings.check()?;
        Ok(settings)
    }

    /// Check the values serde cannot.
    pub fn check(&self) -> Result<()> {
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return Err(Error::invalid(
                "sim.time_scale",
                format!("{} is not a positive finite number", self.time_scale),
                "use a number above 0, e.g. 1.0 for real-world latencies or 0.01 for 100x faster",
            ));
        }
        if let Some(zones) = &self.zones {
            if zones.is_empty() {
                return Err(Error::invalid(
                    "sim.zones",
                    "is empty",
                    "list at least one zone suffix, e.g. [\"a\", \"b\", \"c\"], or remove the field",
                ));
            }
            for (i, z) in zones.iter().enumerate() {
                if z.is_empty() || !z.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(Error::invalid(
                        format!("sim.zones[{i}]"),
                        format!("`{z}` is not a zone suffix"),
                        "use letters, digits and `-`, e.g. \"a\"",
                    ));
                }
                if zones[..i].contains(z) {
                    return Err(Error::invalid(
                        format!("sim.zones[{i}]"),
                        format!("`{z}` is listed twice"),
                        "list each zone suffix once",
                    ));
                }
            }
        }
        if self
            .state_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(Error::invalid(
                "sim.state_file",
                "is empty",
                "name a JSON file, e.g. \"sim-state.json\", or remove the field",
            ));
        }
        if self.node_quota == Some(0) {
            return Err(Error::invalid(
                "sim.node_quota",
                "is 0, so no node could ever be created",
                "remove it or give at least the spec's node count",
            ));
        }
        Ok(())
    }
}
