//! The provider conformance suite: one set of async checks every provider runs
//! against its backend (the sim in memory, EC2 against moto, vSphere against vcsim,
//! …), the way object_store's `integration.rs` is run by every store.
//!
//! Each function takes the provider as a trait object and a [`Fixture`] naming the
//! cluster, the requests and the DNS name to use; it **panics** with a message naming
//! the provider, the step and the error when the provider breaks the contract of
//! [`NodeProvider`], [`LoadBalancerProvider`] or [`DnsProvider`], and cleans up what
//! it made when it passes. Run them one after another (or use [`run_all`]), not
//! concurrently against the same cluster: they assert on everything the cluster owns.
//!
//! Enable the `testing` feature of `triad-core` in a provider's dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! triad-core = { workspace = true, features = ["testing"] }
//! ```
//!
//! A provider crate's test then reads (`MyCloud` stands for the provider):
//!
//! ```text
//! #[tokio::test]
//! async fn conformance() {
//!     let cloud = MyCloud::connect_to_emulator().await;
//!     let fixture = Fixture::new(ClusterRef::new("conf", "us-east-1"), "example.com", "rancher.example.com");
//!     triad_core::conformance::run_all(&cloud, &cloud, &cloud, &fixture).await;
//! }
//! ```

mod day2;
mod dns;
mod lb;
mod nodes;

use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::labels::Role;
use crate::model::{Endpoint, LoadBalancerRequest, Node, NodeRequest, NodeState};
use crate::provider::{DnsProvider, LoadBalancerProvider, NodeProvider};
use crate::spec::{ClusterRef, LbMode, LbScheme};

pub use day2::{load_balancer_update_in_place, node_update_in_place, nodes_wait_together};
pub use dns::{
    dns_lock_conditional_write, dns_refuses_foreign_record, dns_upsert_ownership_delete,
};
pub use lb::{load_balancer_create_is_idempotent, load_balancer_lifecycle};
pub use nodes::{
    node_create_is_idempotent, node_delete_missing_is_ok, nodes_create_discover_delete,
    nodes_spread_over_zones,
};

/// What the suite works with. Build one with [`Fixture::new`] and adjust the public
/// fields for the backend (a real image and size, a certificate for l7, …).
#[derive(Clone, Debug)]
pub struct Fixture {
    /// The cluster whose resources the suite creates and deletes. Use a name nothing
    /// else uses: the checks assert on everything carrying its labels.
    pub cluster: ClusterRef,
    /// A second cluster, used to check that DNS ownership is enforced.
    pub other_cluster: ClusterRef,
    /// Template of every node request; `name` and `zone` are overwritten.
    pub node: NodeRequest,
    /// The balancer request; when `zones` is empty the load balancer checks fill it
    /// with the node provider's zones.
    pub lb: LoadBalancerRequest,
    /// The hosted zone the DNS checks write in; it must exist.
    pub dns_zone: String,
    /// The name the DNS checks write; nothing may exist there beforehand.
    pub fqdn: String,
    /// What the DNS checks point the record at (an IP gives an A record; a hostname
    /// an alias when the provider has aliases and the endpoint an alias zone, else a
    /// CNAME).
    pub record_target: Endpoint,
    /// How long any one wait may take.
    pub timeout: Duration,
    /// How often the suite polls while waiting for nodes to disappear.
    pub poll_interval: Duration,
}

impl Fixture {
    /// A fixture for `cluster` writing `fqdn` in `dns_zone`: a node template with the
    /// ownership labels and a tiny user data, a layer 4 internet-facing balancer named
    /// after the cluster with health check `/healthz` and RKE2's registration ports
    /// 9345 and 6443, the record pointing at
    /// 192.0.2.10, a 15-minute timeout and a 1-second poll.
    pub fn new(cluster: ClusterRef, dns_zone: impl Into<String>, fqdn: impl Into<String>) -> Self {
        let other_cluster = ClusterRef {
            name: format!("{}-other", cluster.name),
            ..cluster.clone()
        };
        let node = NodeRequest {
            name: String::new(),
            zone: String::new(),
            size: None,
            image: None,
            disk_gib: None,
            ssh_allowed_cidrs: Vec::new(),
            labels: cluster.labels_for(Role::Node),
            user_data: "#cloud-config\n".to_owned(),
        };
        let lb = LoadBalancerRequest {
            name: cluster.name.clone(),
            mode: LbMode::L4,
            scheme: LbScheme::InternetFacing,
            certificate: None,
            health_check_path: "/healthz".to_owned(),
            registration_ports: vec![9345, 6443],
            zones: Vec::new(),
            labels: cluster.labels_for(Role::Lb),
        };
        Self {
            cluster,
            other_cluster,
            node,
            lb,
            dns_zone: dns_zone.into(),
            fqdn: fqdn.into(),
            record_target: Endpoint::Ip {
                addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))],
            },
            timeout: Duration::from_secs(15 * 60),
            poll_interval: Duration::from_secs(1),
        }
    }

    /// Set the timeout of every wait.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Set how often the suite polls.
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll_interval = poll;
        self
    }

    /// The node template with `name` and `zone` filled in.
    pub fn node_request(&self, name: &str, zone: &str) -> NodeRequest {
        NodeRequest {
            name: name.to_owned(),
            zone: zone.to_owned(),
            ..self.node.clone()
        }
    }

    /// The name of the suite's `i`-th node: `<cluster>-conf-<i>`.
    pub fn node_name(&self, i: usize) -> String {
        format!("{}-conf-{i}", self.cluster.name)
    }
}

/// Unwrap `result` or panic naming the provider, the step and the error.
fn ok<T>(provider: &str, step: impl Display, result: Result<T>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("[{provider}] {step} failed: {e}"),
    }
}

/// Expect `Error::NotOwned`, or panic.
fn expect_not_owned<T: std::fmt::Debug>(provider: &str, step: &str, result: Result<T>) {
    match result {
        Err(Error::NotOwned { .. }) => {}
        Err(e) => panic!("[{provider}] {step}: expected Error::NotOwned, got the error: {e}"),
        Ok(v) => panic!("[{provider}] {step}: expected Error::NotOwned, but it succeeded: {v:?}"),
    }
}

/// The zones of the cluster's region, asserted non-empty.
async fn zones_of(nodes: &dyn NodeProvider, fx: &Fixture) -> Vec<String> {
    let p = nodes.name();
    let zones = ok(p, "zones()", nodes.zones(&fx.cluster).await);
    assert!(
        !zones.is_empty(),
        "[{p}] zones({}) returned no zone",
        fx.cluster.region
    );
    zones
}

/// Create a node and check what `create_node` returns.
async fn create_checked(nodes: &dyn NodeProvider, fx: &Fixture, name: &str, zone: &str) -> Node {
    let p = nodes.name();
    let node = ok(
        p,
        format_args!("create_node({name}, {zone})"),
        nodes
            .create_node(&fx.cluster, &fx.node_request(name, zone))
            .await,
    );
    assert_eq!(
        node.name, name,
        "[{p}] create_node returned another node's name"
    );
    assert_eq!(
        node.zone, zone,
        "[{p}] create_node({name}) put the node in another zone"
    );
    assert!(
        !node.id.is_empty(),
        "[{p}] create_node({name}) returned an empty id"
    );
    assert_ne!(
        node.state,
        NodeState::Terminating,
        "[{p}] create_node({name}) returned a terminating node"
    );
    node
}

/// Wait for a node and check it is ready.
async fn wait_ready(nodes: &dyn NodeProvider, fx: &Fixture, node: &Node) -> Node {
    let p = nodes.name();
    let ready = ok(
        p,
        format_args!("wait_node({})", node.name),
        nodes.wait_node(&fx.cluster, node, fx.timeout).await,
    );
    assert_eq!(ready.id, node.id, "[{p}] wait_node returned another node");
    assert!(
        ready.is_ready(),
        "[{p}] wait_node({}) returned a node that is not running with a private IP: {ready:?}",
        node.name
    );
    ready
}

/// Delete nodes, wait until discovery no longer shows them, then clean up the
/// cluster's plumbing and check a second cleanup finds nothing.
async fn delete_all(nodes: &dyn NodeProvider, fx: &Fixture, made: &[Node]) {
    let p = nodes.name();
    for n in made {
        ok(
            p,
            format_args!("delete_node({})", n.name),
            nodes.delete_node(&fx.cluster, n).await,
        );
    }
    let ids: BTreeSet<&str> = made.iter().map(|n| n.id.as_str()).collect();
    let start = tokio::time::Instant::now();
    loop {
        let found = ok(
            p,
            "discover_nodes()",
            nodes.discover_nodes(&fx.cluster).await,
        );
        let left: Vec<&Node> = found
            .iter()
            .filter(|n| ids.contains(n.id.as_str()))
            .collect();
        if left.is_empty() {
            break;
        }
        for n in &left {
            assert_eq!(
                n.state,
                NodeState::Terminating,
                "[{p}] node {} ({}) was deleted but is still {:?}",
                n.name,
                n.id,
                n.state
            );
        }
        assert!(
            start.elapsed() < fx.timeout,
            "[{p}] deleted nodes still discovered after {:?}: {left:?}",
            fx.timeout
        );
        tokio::time::sleep(fx.poll_interval).await;
    }
    ok(p, "cleanup()", nodes.cleanup(&fx.cluster).await);
    let again = ok(p, "cleanup() again", nodes.cleanup(&fx.cluster).await);
    assert!(
        again.is_empty(),
        "[{p}] a second cleanup() still deleted {again:?}"
    );
}

/// Every check but [`dns_refuses_foreign_record`] (which needs a record the caller
/// made) and the in-place updates ([`node_update_in_place`],
/// [`load_balancer_update_in_place`]: a provider may refuse them), one after another.
pub async fn run_all(
    nodes: &dyn NodeProvider,
    lb: &dyn LoadBalancerProvider,
    dns: &dyn DnsProvider,
    fx: &Fixture,
) {
    nodes_create_discover_delete(nodes, fx).await;
    node_create_is_idempotent(nodes, fx).await;
    node_delete_missing_is_ok(nodes, fx).await;
    nodes_spread_over_zones(nodes, fx).await;
    nodes_wait_together(nodes, fx).await;
    load_balancer_lifecycle(nodes, lb, fx).await;
    load_balancer_create_is_idempotent(lb, fx).await;
    dns_upsert_ownership_delete(dns, fx).await;
    dns_lock_conditional_write(dns, fx).await;
}

/// Helpers for the "operator behind a proxy" tests every cloud provider runs: a real
/// tinyproxy (started by `scripts/test`, named by `TRIAD_TINYPROXY_URL` and
/// `TRIAD_TINYPROXY_LOG`) in front of the emulator, and the test binary run again as
/// a child process with the proxy variables set (they are process-wide).
///
/// ```text
/// #[tokio::test]
/// async fn calls_go_through_the_proxy() {
///     if tinyproxy::is_child() { return child().await; }
///     let (proxy, log) = tinyproxy::from_env();
///     let before = tinyproxy::requests(&log, "127.0.0.1:5000");
///     tinyproxy::run_child(TEST, &proxy, None, &[]);
///     assert!(tinyproxy::wait_for(&log, "127.0.0.1:5000", before + 1).await > before);
/// }
/// ```
pub mod tinyproxy {
    use std::process::Command;
    use std::time::Duration;

    /// Set in the child process.
    pub const CHILD: &str = "TRIAD_PROXY_CHILD";

    /// Whether this process is the child [`run_child`] started.
    pub fn is_child() -> bool {
        std::env::var_os(CHILD).is_some()
    }

    /// tinyproxy's URL and request log, or a panic naming the missing variable.
    pub fn from_env() -> (String, String) {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: this test needs tinyproxy; run scripts/test")
            })
        };
        (var("TRIAD_TINYPROXY_URL"), var("TRIAD_TINYPROXY_LOG"))
    }

    /// How many requests tinyproxy logged whose line contains `needle` (a
    /// `host:port`, or a path of a plain HTTP request).
    pub fn requests(log: &str, needle: &str) -> usize {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Request (") && l.contains(needle))
            .count()
    }

    /// [`requests`] once it reaches `at_least` (tinyproxy writes its log a little
    /// after answering), or after 5 s whatever it is.
    pub async fn wait_for(log: &str, needle: &str, at_least: usize) -> usize {
        for _ in 0..50 {
            let n = requests(log, needle);
            if n >= at_least {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        requests(log, needle)
    }

    /// Run the test `test` of this binary again in a child process with
    /// `HTTP_PROXY` and `HTTPS_PROXY` set to `proxy`, `NO_PROXY` to `no_proxy` (or
    /// unset), and `env` (a `None` value removes the variable); panic with the
    /// child's output when it fails.
    pub fn run_child(
        test: &str,
        proxy: &str,
        no_proxy: Option<&str>,
        env: &[(&str, Option<&str>)],
    ) {
        let exe = std::env::current_exe().expect("the test binary");
        let mut cmd = Command::new(exe);
        cmd.args([
            test,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("HTTP_PROXY", proxy)
        .env("HTTPS_PROXY", proxy)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
        if let Some(n) = no_proxy {
            cmd.env("NO_PROXY", n);
        }
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let out = cmd.output().expect("run the test binary again");
        assert!(
            out.status.success(),
            "the child failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
