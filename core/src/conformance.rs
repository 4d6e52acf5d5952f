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

use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::labels::Role;
use crate::model::{
    Endpoint, LbState, LoadBalancer, LoadBalancerRequest, Node, NodeRequest, NodeState, RecordKind,
    RecordRequest,
};
use crate::placement::place;
use crate::provider::{DnsProvider, LoadBalancerProvider, NodeProvider};
use crate::spec::{ClusterRef, LbMode, LbScheme, DEFAULT_TTL};

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

/// Create a node, find it by discovery, wait until it runs, delete it, and check that
/// it disappears and the cluster's plumbing is cleaned up.
pub async fn nodes_create_discover_delete(nodes: &dyn NodeProvider, fx: &Fixture) {
    let p = nodes.name();
    let zones = zones_of(nodes, fx).await;
    let name = fx.node_name(1);
    let node = create_checked(nodes, fx, &name, &zones[0]).await;
    for (k, v) in fx.cluster.labels_for(Role::Node) {
        assert_eq!(
            node.labels.get(&k),
            Some(&v),
            "[{p}] node {name} lacks the label {k}={v}: {:?}",
            node.labels
        );
    }

    let found = ok(
        p,
        "discover_nodes()",
        nodes.discover_nodes(&fx.cluster).await,
    );
    let matching: Vec<&Node> = found.iter().filter(|n| n.id == node.id).collect();
    assert_eq!(
        matching.len(),
        1,
        "[{p}] discover_nodes() should show node {name} ({}) once: {found:?}",
        node.id
    );
    assert_eq!(
        matching[0].name, name,
        "[{p}] discovered node has another name"
    );
    assert_eq!(
        matching[0].zone, zones[0],
        "[{p}] discovered node has another zone"
    );

    let ready = wait_ready(nodes, fx, &node).await;
    let found = ok(
        p,
        "discover_nodes()",
        nodes.discover_nodes(&fx.cluster).await,
    );
    let again = found
        .iter()
        .find(|n| n.id == node.id)
        .unwrap_or_else(|| panic!("[{p}] running node {name} is not discovered: {found:?}"));
    assert!(
        again.is_ready(),
        "[{p}] discovery shows the running node {name} as not ready: {again:?}"
    );
    assert_eq!(
        again.private_ip, ready.private_ip,
        "[{p}] discovery and wait_node disagree on {name}'s address"
    );

    let other = ok(
        p,
        "discover_nodes(other cluster)",
        nodes.discover_nodes(&fx.other_cluster).await,
    );
    assert!(
        other.iter().all(|n| n.id != node.id),
        "[{p}] another cluster's discovery found node {name}"
    );

    delete_all(nodes, fx, &[ready]).await;
}

/// Creating the same node twice returns the same node, and discovery shows one.
pub async fn node_create_is_idempotent(nodes: &dyn NodeProvider, fx: &Fixture) {
    let p = nodes.name();
    let zones = zones_of(nodes, fx).await;
    let name = fx.node_name(1);
    let first = create_checked(nodes, fx, &name, &zones[0]).await;
    let second = create_checked(nodes, fx, &name, &zones[0]).await;
    assert_eq!(
        first.id, second.id,
        "[{p}] create_node({name}) twice made two nodes"
    );
    let found = ok(
        p,
        "discover_nodes()",
        nodes.discover_nodes(&fx.cluster).await,
    );
    let named: Vec<&Node> = found
        .iter()
        .filter(|n| n.name == name && n.state != NodeState::Terminating)
        .collect();
    assert_eq!(
        named.len(),
        1,
        "[{p}] discover_nodes() shows {} live nodes named {name}: {found:?}",
        named.len()
    );
    delete_all(nodes, fx, &[first]).await;
}

/// Deleting a node that is being deleted, or is gone, succeeds.
pub async fn node_delete_missing_is_ok(nodes: &dyn NodeProvider, fx: &Fixture) {
    let p = nodes.name();
    let zones = zones_of(nodes, fx).await;
    let name = fx.node_name(1);
    let node = create_checked(nodes, fx, &name, &zones[0]).await;
    ok(
        p,
        "delete_node()",
        nodes.delete_node(&fx.cluster, &node).await,
    );
    ok(
        p,
        "delete_node() of a node being deleted",
        nodes.delete_node(&fx.cluster, &node).await,
    );
    // Waits until it is gone, deleting it once more on the way.
    delete_all(nodes, fx, std::slice::from_ref(&node)).await;
    ok(
        p,
        "delete_node() of a node that is gone",
        nodes.delete_node(&fx.cluster, &node).await,
    );
}

/// Nodes asked for in different zones land in them, and the zones come from
/// [`NodeProvider::zones`] (placed fewest-first, as the orchestrator does).
pub async fn nodes_spread_over_zones(nodes: &dyn NodeProvider, fx: &Fixture) {
    let p = nodes.name();
    let zones = zones_of(nodes, fx).await;
    let placed = place(&zones, &[], 3);
    let mut made = Vec::new();
    for (i, zone) in placed.iter().enumerate() {
        made.push(create_checked(nodes, fx, &fx.node_name(i + 1), zone).await);
    }
    let found = ok(
        p,
        "discover_nodes()",
        nodes.discover_nodes(&fx.cluster).await,
    );
    for (node, zone) in made.iter().zip(&placed) {
        let d = found
            .iter()
            .find(|n| n.id == node.id)
            .unwrap_or_else(|| panic!("[{p}] node {} is not discovered", node.name));
        assert_eq!(
            &d.zone, zone,
            "[{p}] node {} is in the wrong zone",
            node.name
        );
    }
    let distinct: BTreeSet<&str> = made.iter().map(|n| n.zone.as_str()).collect();
    assert_eq!(
        distinct.len(),
        zones.len().min(3),
        "[{p}] 3 nodes over {} zones should use {} distinct zones, used {distinct:?}",
        zones.len(),
        zones.len().min(3)
    );
    delete_all(nodes, fx, &made).await;
}

fn check_listeners(p: &str, lb: &LoadBalancer, request: &LoadBalancerRequest) {
    let mode = request.mode;
    let port = |n: u16| lb.listeners.iter().find(|l| l.port == n);
    for &n in &request.registration_ports {
        let l = port(n).unwrap_or_else(|| {
            panic!(
                "[{p}] balancer {} should listen on registration port {n}: {:?}",
                lb.name, lb.listeners
            )
        });
        assert!(
            l.protocol.eq_ignore_ascii_case("TCP") && l.target_port == Some(n),
            "[{p}] registration port {n} is TCP passed through to {n} in {mode} mode: {l:?}"
        );
    }
    let (Some(http), Some(https)) = (port(80), port(443)) else {
        panic!(
            "[{p}] balancer {} should listen on 80 and 443: {:?}",
            lb.name, lb.listeners
        );
    };
    match mode {
        LbMode::L4 => {
            assert!(
                http.protocol.eq_ignore_ascii_case("TCP")
                    && https.protocol.eq_ignore_ascii_case("TCP"),
                "[{p}] a layer 4 balancer passes TCP through: {:?}",
                lb.listeners
            );
            assert_eq!(
                (http.target_port, https.target_port),
                (Some(80), Some(443)),
                "[{p}] layer 4 listeners forward 80→80 and 443→443"
            );
        }
        LbMode::L7 => {
            assert!(
                https.protocol.eq_ignore_ascii_case("HTTPS") && https.target_port.is_some(),
                "[{p}] a layer 7 balancer terminates TLS on 443 and forwards: {https:?}"
            );
        }
    }
}

fn ids(nodes: &[Node]) -> Vec<String> {
    let mut v: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    v.sort();
    v
}

/// The balancer's whole life: create, wait until active with an endpoint, check its
/// listeners, converge its targets to two running nodes, shrink them to one, delete
/// it twice, and check it is gone. Makes (and deletes) two nodes.
pub async fn load_balancer_lifecycle(
    nodes: &dyn NodeProvider,
    lbp: &dyn LoadBalancerProvider,
    fx: &Fixture,
) {
    let p = lbp.name();
    let zones = zones_of(nodes, fx).await;
    let mut request = fx.lb.clone();
    if request.zones.is_empty() {
        request.zones = zones.clone();
    }
    let mut made = Vec::new();
    for (i, zone) in place(&zones, &[], 2).iter().enumerate() {
        made.push(create_checked(nodes, fx, &fx.node_name(i + 1), zone).await);
    }
    let mut ready = Vec::new();
    for n in &made {
        ready.push(wait_ready(nodes, fx, n).await);
    }

    let created = ok(
        p,
        format_args!("create_load_balancer({})", request.name),
        lbp.create_load_balancer(&fx.cluster, &request).await,
    );
    assert_eq!(
        created.name, request.name,
        "[{p}] created balancer has another name"
    );
    assert_eq!(
        created.mode, request.mode,
        "[{p}] created balancer has another mode"
    );
    let active = ok(
        p,
        "wait_load_balancer()",
        lbp.wait_load_balancer(&fx.cluster, &created, fx.timeout)
            .await,
    );
    assert_eq!(
        active.id, created.id,
        "[{p}] wait_load_balancer returned another balancer"
    );
    assert_eq!(
        active.state,
        LbState::Active,
        "[{p}] waited balancer is not active"
    );
    assert!(
        active.endpoint.is_some(),
        "[{p}] an active balancer has an endpoint"
    );
    check_listeners(p, &active, &request);

    let all = ids(&ready);
    let lb = ok(
        p,
        "set_targets(all nodes)",
        lbp.set_targets(&fx.cluster, &active, &ready).await,
    );
    assert_eq!(lb.targets, all, "[{p}] set_targets returned other targets");
    let lb = ok(
        p,
        "set_targets(all nodes) again",
        lbp.set_targets(&fx.cluster, &lb, &ready).await,
    );
    assert_eq!(
        lb.targets, all,
        "[{p}] a repeated set_targets changed the targets"
    );
    let found = ok(
        p,
        "discover_load_balancer()",
        lbp.discover_load_balancer(&fx.cluster).await,
    )
    .unwrap_or_else(|| panic!("[{p}] the balancer is not discovered"));
    assert_eq!(
        found.id, created.id,
        "[{p}] discovery found another balancer"
    );
    assert_eq!(
        found.targets, all,
        "[{p}] discovered targets differ from the nodes"
    );
    check_listeners(p, &found, &request);

    let one = &ready[..1];
    let lb = ok(
        p,
        "set_targets(one node)",
        lbp.set_targets(&fx.cluster, &lb, one).await,
    );
    assert_eq!(lb.targets, ids(one), "[{p}] shrinking the targets failed");
    let found = ok(
        p,
        "discover_load_balancer()",
        lbp.discover_load_balancer(&fx.cluster).await,
    )
    .unwrap_or_else(|| panic!("[{p}] the balancer is not discovered"));
    assert_eq!(
        found.targets,
        ids(one),
        "[{p}] discovered targets were not shrunk"
    );

    let deleted = ok(
        p,
        "delete_load_balancer()",
        lbp.delete_load_balancer(&fx.cluster).await,
    );
    assert!(
        !deleted.is_empty(),
        "[{p}] delete_load_balancer() reported deleting nothing"
    );
    let again = ok(
        p,
        "delete_load_balancer() again",
        lbp.delete_load_balancer(&fx.cluster).await,
    );
    assert!(
        again.is_empty(),
        "[{p}] a second delete_load_balancer() still deleted {again:?}"
    );
    let gone = ok(
        p,
        "discover_load_balancer()",
        lbp.discover_load_balancer(&fx.cluster).await,
    );
    assert!(
        gone.is_none(),
        "[{p}] a deleted balancer is still discovered: {gone:?}"
    );
    delete_all(nodes, fx, &ready).await;
}

/// Creating the balancer twice returns the same balancer with the same listeners.
pub async fn load_balancer_create_is_idempotent(lbp: &dyn LoadBalancerProvider, fx: &Fixture) {
    let p = lbp.name();
    let first = ok(
        p,
        "create_load_balancer()",
        lbp.create_load_balancer(&fx.cluster, &fx.lb).await,
    );
    let second = ok(
        p,
        "create_load_balancer() again",
        lbp.create_load_balancer(&fx.cluster, &fx.lb).await,
    );
    assert_eq!(
        first.id, second.id,
        "[{p}] creating the balancer twice made two"
    );
    let mut a = first.listeners.clone();
    let mut b = second.listeners.clone();
    a.sort_by_key(|l| l.port);
    b.sort_by_key(|l| l.port);
    assert_eq!(a, b, "[{p}] the second create changed the listeners");
    let found = ok(
        p,
        "discover_load_balancer()",
        lbp.discover_load_balancer(&fx.cluster).await,
    )
    .unwrap_or_else(|| panic!("[{p}] the balancer is not discovered"));
    assert_eq!(found.id, first.id, "[{p}] discovery found another balancer");
    ok(
        p,
        "delete_load_balancer()",
        lbp.delete_load_balancer(&fx.cluster).await,
    );
    let gone = ok(
        p,
        "discover_load_balancer()",
        lbp.discover_load_balancer(&fx.cluster).await,
    );
    assert!(
        gone.is_none(),
        "[{p}] a deleted balancer is still discovered"
    );
}

/// The record request the DNS checks write for `target`.
fn record_request(dns: &dyn DnsProvider, fx: &Fixture, target: &Endpoint) -> RecordRequest {
    let (kind, target) = match target {
        Endpoint::Ip { .. } => (RecordKind::A, target.clone()),
        Endpoint::Hostname {
            alias_zone: Some(_),
            ..
        } if dns.capabilities().alias => (RecordKind::Alias, target.clone()),
        Endpoint::Hostname { name, .. } => (
            RecordKind::Cname,
            Endpoint::Hostname {
                name: name.clone(),
                alias_zone: None,
            },
        ),
    };
    RecordRequest {
        fqdn: fx.fqdn.clone(),
        zone: fx.dns_zone.clone(),
        kind,
        target,
        ttl: DEFAULT_TTL,
    }
}

/// A different target of the same kind as `target`.
fn changed(target: &Endpoint) -> Endpoint {
    match target {
        Endpoint::Ip { .. } => Endpoint::Ip {
            addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11))],
        },
        Endpoint::Hostname { name, alias_zone } => Endpoint::Hostname {
            name: format!("changed-{name}"),
            alias_zone: alias_zone.clone(),
        },
    }
}

/// Write the record, wait for it, look it up with its owner, rewrite it (a no-op),
/// update it, check another cluster can neither overwrite nor delete it, delete it
/// twice and check it is gone.
pub async fn dns_upsert_ownership_delete(dns: &dyn DnsProvider, fx: &Fixture) {
    let p = dns.name();
    let (zone, fqdn) = (&fx.dns_zone, &fx.fqdn);
    let before = ok(p, "lookup()", dns.lookup(zone, fqdn).await);
    assert!(
        before.is_none(),
        "[{p}] the fixture's name {fqdn} must be free, but holds {before:?}"
    );

    let request = record_request(dns, fx, &fx.record_target);
    let written = ok(
        p,
        format_args!("upsert_record({fqdn})"),
        dns.upsert_record(&fx.cluster, &request).await,
    );
    assert!(
        request.is_satisfied_by(&written),
        "[{p}] upsert_record returned {written:?} for {request:?}"
    );
    assert_eq!(written.owner.as_deref(), Some(fx.cluster.name.as_str()));
    ok(
        p,
        "wait_record()",
        dns.wait_record(zone, fqdn, fx.timeout).await,
    );
    let found = ok(p, "lookup()", dns.lookup(zone, fqdn).await)
        .unwrap_or_else(|| panic!("[{p}] the written record {fqdn} is not found"));
    assert!(
        request.is_satisfied_by(&found),
        "[{p}] lookup() found {found:?}, wrote {request:?}"
    );
    assert_eq!(
        found.owner.as_deref(),
        Some(fx.cluster.name.as_str()),
        "[{p}] lookup() does not report the ownership TXT"
    );
    let owned = ok(
        p,
        "owned_records()",
        dns.owned_records(&fx.cluster, zone).await,
    );
    assert!(
        owned.iter().any(|r| r.fqdn == *fqdn),
        "[{p}] owned_records() misses {fqdn}: {owned:?}"
    );

    let again = ok(
        p,
        "upsert_record() again",
        dns.upsert_record(&fx.cluster, &request).await,
    );
    assert_eq!(again, written, "[{p}] rewriting the same record changed it");

    expect_not_owned(
        p,
        "upsert_record() by another cluster",
        dns.upsert_record(&fx.other_cluster, &request).await,
    );
    expect_not_owned(
        p,
        "delete_record() by another cluster",
        dns.delete_record(&fx.other_cluster, zone, fqdn).await,
    );
    let still = ok(p, "lookup()", dns.lookup(zone, fqdn).await);
    assert_eq!(
        still.as_ref(),
        Some(&found),
        "[{p}] another cluster's refused change altered the record"
    );

    let update = record_request(dns, fx, &changed(&fx.record_target));
    ok(
        p,
        "upsert_record() with a new target",
        dns.upsert_record(&fx.cluster, &update).await,
    );
    ok(
        p,
        "wait_record()",
        dns.wait_record(zone, fqdn, fx.timeout).await,
    );
    let updated = ok(p, "lookup()", dns.lookup(zone, fqdn).await)
        .unwrap_or_else(|| panic!("[{p}] the updated record {fqdn} is not found"));
    assert!(
        update.is_satisfied_by(&updated),
        "[{p}] the record was not updated: {updated:?}"
    );
    assert_eq!(updated.owner.as_deref(), Some(fx.cluster.name.as_str()));

    ok(
        p,
        "delete_record()",
        dns.delete_record(&fx.cluster, zone, fqdn).await,
    );
    ok(
        p,
        "wait_record()",
        dns.wait_record(zone, fqdn, fx.timeout).await,
    );
    ok(
        p,
        "delete_record() again",
        dns.delete_record(&fx.cluster, zone, fqdn).await,
    );
    let gone = ok(p, "lookup()", dns.lookup(zone, fqdn).await);
    assert!(
        gone.is_none(),
        "[{p}] a deleted record is still found: {gone:?}"
    );
    let owned = ok(
        p,
        "owned_records()",
        dns.owned_records(&fx.cluster, zone).await,
    );
    assert!(
        owned.iter().all(|r| r.fqdn != *fqdn),
        "[{p}] owned_records() still lists the deleted {fqdn}"
    );
}

/// A record nobody owns at `foreign_fqdn` (the caller made it, e.g. with the sim's
/// `put_foreign_record`) is neither overwritten nor deleted, and stays as it was.
pub async fn dns_refuses_foreign_record(dns: &dyn DnsProvider, fx: &Fixture, foreign_fqdn: &str) {
    let p = dns.name();
    let zone = &fx.dns_zone;
    let before = ok(p, "lookup()", dns.lookup(zone, foreign_fqdn).await).unwrap_or_else(|| {
        panic!("[{p}] the caller should have created a record at {foreign_fqdn}")
    });
    assert_eq!(
        before.owner, None,
        "[{p}] the foreign record at {foreign_fqdn} should have no owner"
    );
    let request = RecordRequest {
        fqdn: foreign_fqdn.to_owned(),
        ..record_request(dns, fx, &fx.record_target)
    };
    expect_not_owned(
        p,
        "upsert_record() over a foreign record",
        dns.upsert_record(&fx.cluster, &request).await,
    );
    expect_not_owned(
        p,
        "delete_record() of a foreign record",
        dns.delete_record(&fx.cluster, zone, foreign_fqdn).await,
    );
    let after = ok(p, "lookup()", dns.lookup(zone, foreign_fqdn).await);
    assert_eq!(
        after.as_ref(),
        Some(&before),
        "[{p}] a refused change altered the foreign record"
    );
    let owned = ok(
        p,
        "owned_records()",
        dns.owned_records(&fx.cluster, zone).await,
    );
    assert!(
        owned.iter().all(|r| r.fqdn != foreign_fqdn),
        "[{p}] owned_records() claims the foreign record"
    );
}

/// The lock's conditional write ([`DnsProvider::swap_txt`]): two writers racing to
/// create the lock, exactly one wins; a swap from a value that is not there changes
/// nothing; the holder's swap and delete succeed. Skipped (returns) when the provider
/// says it cannot hold a lock ([`DnsCapabilities::lock`](crate::provider::DnsCapabilities)).
pub async fn dns_lock_conditional_write(dns: &dyn DnsProvider, fx: &Fixture) {
    let p = dns.name();
    if !dns.capabilities().lock {
        return;
    }
    let zone = &fx.dns_zone;
    let name = crate::lock::lock_name(&fx.cluster.name, zone);
    let value = |holder: &str| {
        crate::lock::LockRecord {
            holder: holder.into(),
            since: 1,
            expires: 2,
        }
        .to_txt()
    };
    let (a, b, c) = (value("writer-a"), value("writer-b"), value("writer-c"));
    assert_eq!(
        ok(p, "read_txt() before", dns.read_txt(zone, &name).await),
        None,
        "[{p}] a lock record exists at {name} before the check"
    );
    let (won_a, won_b) = tokio::join!(
        dns.swap_txt(zone, &name, None, Some(&a)),
        dns.swap_txt(zone, &name, None, Some(&b)),
    );
    let (won_a, won_b) = (
        ok(p, "swap_txt(writer-a)", won_a),
        ok(p, "swap_txt(writer-b)", won_b),
    );
    assert!(
        won_a ^ won_b,
        "[{p}] two writers creating {name}: exactly one must win (a: {won_a}, b: {won_b})"
    );
    let (winner, loser) = if won_a { (&a, &b) } else { (&b, &a) };
    assert_eq!(
        ok(
            p,
            "read_txt() after the race",
            dns.read_txt(zone, &name).await
        )
        .as_deref(),
        Some(winner.as_str()),
        "[{p}] the lock holds the winner's value"
    );
    assert!(
        !ok(
            p,
            "swap_txt(loser → c)",
            dns.swap_txt(zone, &name, Some(loser), Some(&c)).await
        ),
        "[{p}] a swap from a value that is not there must fail"
    );
    assert!(
        !ok(
            p,
            "swap_txt(none → c)",
            dns.swap_txt(zone, &name, None, Some(&c)).await
        ),
        "[{p}] creating a lock that exists must fail"
    );
    assert!(
        ok(
            p,
            "swap_txt(winner → c)",
            dns.swap_txt(zone, &name, Some(winner), Some(&c)).await
        ),
        "[{p}] the holder's swap must succeed"
    );
    assert_eq!(
        ok(
            p,
            "read_txt() after the swap",
            dns.read_txt(zone, &name).await
        )
        .as_deref(),
        Some(c.as_str())
    );
    assert!(
        ok(
            p,
            "swap_txt(c → none)",
            dns.swap_txt(zone, &name, Some(&c), None).await
        ),
        "[{p}] the holder's release must succeed"
    );
    assert_eq!(
        ok(p, "read_txt() at the end", dns.read_txt(zone, &name).await),
        None
    );
}

/// Every check above but [`dns_refuses_foreign_record`] (which needs a record the
/// caller made), one after another.
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
