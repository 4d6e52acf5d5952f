//! Tests of the layers against a small scripted fake provider.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::*;
use crate::error::{Error, FailureKind};
use crate::model::{Endpoint, LbState, NodeState, RecordKind};
use crate::spec::{LbMode, LbScheme};

/// What the fake does on its next call instead of succeeding.
#[derive(Clone, Copy, Debug)]
enum Scripted {
    Fail(FailureKind),
    TimedOut,
}

#[derive(Default)]
struct FakeState {
    script: VecDeque<Scripted>,
    log: Vec<(Op, Instant)>,
    nodes: BTreeMap<String, Node>,
    lb: Option<LoadBalancer>,
    records: BTreeMap<String, Record>,
}

/// A fake cloud: each call is logged, then the next scripted failure (if any) is
/// returned without effect, else the call takes effect.
#[derive(Default)]
struct Fake {
    state: Mutex<FakeState>,
    delays: Mutex<HashMap<Op, Duration>>,
}

impl Fake {
    fn scripted(script: impl IntoIterator<Item = Scripted>) -> Self {
        let fake = Fake::default();
        fake.state.lock().unwrap().script = script.into_iter().collect();
        fake
    }

    fn failing(kind: FailureKind, times: usize) -> Self {
        Self::scripted(std::iter::repeat_n(Scripted::Fail(kind), times))
    }

    fn slow(self, op: Op, d: Duration) -> Self {
        self.delays.lock().unwrap().insert(op, d);
        self
    }

    fn calls(&self, op: Op) -> usize {
        let s = self.state.lock().unwrap();
        s.log.iter().filter(|(o, _)| *o == op).count()
    }

    fn call_times(&self) -> Vec<Instant> {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .map(|(_, t)| *t)
            .collect()
    }

    fn node_names(&self) -> Vec<String> {
        self.state.lock().unwrap().nodes.keys().cloned().collect()
    }

    async fn begin(&self, op: Op, resource: &str) -> Result<()> {
        let next = {
            let mut s = self.state.lock().unwrap();
            s.log.push((op, Instant::now()));
            s.script.pop_front()
        };
        let delay = self.delays.lock().unwrap().get(&op).copied();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        match next {
            None => Ok(()),
            Some(Scripted::Fail(kind)) => Err(Error::provider(
                "fake",
                op.action(),
                resource,
                kind,
                "scripted failure",
            )),
            Some(Scripted::TimedOut) => Err(Error::Timeout {
                resource: resource.to_owned(),
                state: "ready".into(),
                after: Duration::from_secs(1),
            }),
        }
    }
}

fn node(name: &str) -> Node {
    Node {
        id: format!("i-{name}"),
        name: name.to_owned(),
        zone: "a".into(),
        state: NodeState::Running,
        private_ip: Some("10.0.0.1".parse().unwrap()),
        public_ip: None,
        ssh: None,
        labels: BTreeMap::new(),
        created_ms: None,
    }
}

fn lb() -> LoadBalancer {
    LoadBalancer {
        id: "lb-1".into(),
        name: "rancher".into(),
        mode: LbMode::L4,
        scheme: LbScheme::InternetFacing,
        state: LbState::Active,
        endpoint: Some(Endpoint::Hostname {
            name: "lb.example.net".into(),
            alias_zone: None,
        }),
        listeners: vec![],
        targets: vec![],
        labels: Default::default(),
        partial_targets: Vec::new(),
    }
}

fn cluster() -> ClusterRef {
    ClusterRef::new("rancher", "eu-west-1")
}

fn node_request(name: &str) -> NodeRequest {
    NodeRequest {
        name: name.to_owned(),
        zone: "a".into(),
        size: None,
        image: None,
        disk_gib: None,
        ssh_allowed_cidrs: vec![],
        labels: BTreeMap::new(),
        user_data: "#cloud-config".into(),
    }
}

fn lb_request() -> LoadBalancerRequest {
    LoadBalancerRequest {
        name: "rancher".into(),
        mode: LbMode::L4,
        scheme: LbScheme::InternetFacing,
        certificate: None,
        health_check_path: "/healthz".into(),
        registration_ports: vec![],
        zones: vec!["a".into()],
        labels: BTreeMap::new(),
    }
}

fn record_request() -> RecordRequest {
    RecordRequest {
        fqdn: "rancher.example.com".into(),
        zone: "example.com".into(),
        kind: RecordKind::Cname,
        target: Endpoint::Hostname {
            name: "lb.example.net".into(),
            alias_zone: None,
        },
        ttl: 60,
    }
}

#[async_trait]
impl NodeProvider for Fake {
    fn name(&self) -> &str {
        "fake"
    }
    async fn zones(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        self.begin(Op::Zones, &cluster.region).await?;
        Ok(vec!["a".into(), "b".into(), "c".into()])
    }
    async fn discover_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
        self.begin(Op::DiscoverNodes, &cluster.name).await?;
        Ok(self.state.lock().unwrap().nodes.values().cloned().collect())
    }
    async fn create_node(&self, _: &ClusterRef, request: &NodeRequest) -> Result<Node> {
        self.begin(Op::CreateNode, &request.name).await?;
        let n = node(&request.name);
        let mut s = self.state.lock().unwrap();
        Ok(s.nodes.entry(n.name.clone()).or_insert(n).clone())
    }
    async fn wait_node(&self, _: &ClusterRef, node: &Node, _: Duration) -> Result<Node> {
        self.begin(Op::WaitNode, &node.name).await?;
        Ok(node.clone())
    }
    async fn wait_nodes(&self, _: &ClusterRef, nodes: &[Node], _: Duration) -> Result<Vec<Node>> {
        self.begin(Op::WaitNodes, "nodes").await?;
        Ok(nodes.to_vec())
    }
    async fn delete_node(&self, _: &ClusterRef, node: &Node) -> Result<()> {
        self.begin(Op::DeleteNode, &node.name).await?;
        self.state.lock().unwrap().nodes.remove(&node.name);
        Ok(())
    }
    async fn cleanup(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        self.begin(Op::Cleanup, &cluster.name).await?;
        Ok(vec!["sg-1".into()])
    }
    async fn update_node(&self, _: &ClusterRef, node: &Node, _: &NodeRequest) -> Result<Node> {
        self.begin(Op::UpdateNode, &node.name).await?;
        Ok(node.clone())
    }
}

#[async_trait]
impl LoadBalancerProvider for Fake {
    fn name(&self) -> &str {
        "fake-lb"
    }
    async fn discover_load_balancer(&self, cluster: &ClusterRef) -> Result<Option<LoadBalancer>> {
        self.begin(Op::DiscoverLoadBalancer, &cluster.name).await?;
        Ok(self.state.lock().unwrap().lb.clone())
    }
    async fn create_load_balancer(
        &self,
        _: &ClusterRef,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        self.begin(Op::CreateLoadBalancer, &request.name).await?;
        let mut s = self.state.lock().unwrap();
        Ok(s.lb.get_or_insert_with(lb).clone())
    }
    async fn wait_load_balancer(
        &self,
        _: &ClusterRef,
        lb: &LoadBalancer,
        _: Duration,
    ) -> Result<LoadBalancer> {
        self.begin(Op::WaitLoadBalancer, &lb.name).await?;
        Ok(lb.clone())
    }
    async fn set_targets(
        &self,
        _: &ClusterRef,
        lb: &LoadBalancer,
        nodes: &[Node],
    ) -> Result<LoadBalancer> {
        self.begin(Op::SetTargets, &lb.name).await?;
        let mut s = self.state.lock().unwrap();
        let current = s.lb.get_or_insert_with(|| lb.clone());
        current.targets = nodes.iter().map(|n| n.id.clone()).collect();
        Ok(current.clone())
    }
    async fn update_load_balancer(
        &self,
        _: &ClusterRef,
        lb: &LoadBalancer,
        _: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        self.begin(Op::UpdateLoadBalancer, &lb.name).await?;
        Ok(lb.clone())
    }
    async fn delete_load_balancer(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        self.begin(Op::DeleteLoadBalancer, &cluster.name).await?;
        let gone = self.state.lock().unwrap().lb.take();
        Ok(gone.into_iter().map(|lb| lb.id).collect())
    }
}

#[async_trait]
impl DnsProvider for Fake {
    fn name(&self) -> &str {
        "fake-dns"
    }
    fn capabilities(&self) -> DnsCapabilities {
        DnsCapabilities {
            alias: true,
            lock: false,
        }
    }
    async fn lookup(&self, _: &str, fqdn: &str) -> Result<Option<Record>> {
        self.begin(Op::LookupRecord, fqdn).await?;
        Ok(self.state.lock().unwrap().records.get(fqdn).cloned())
    }
    async fn owned_records(&self, cluster: &ClusterRef, _: &str) -> Result<Vec<Record>> {
        self.begin(Op::OwnedRecords, &cluster.name).await?;
        let s = self.state.lock().unwrap();
        Ok(s.records
            .values()
            .filter(|r| r.owner.as_deref() == Some(&cluster.name))
            .cloned()
            .collect())
    }
    async fn upsert_record(&self, cluster: &ClusterRef, request: &RecordRequest) -> Result<Record> {
        self.begin(Op::UpsertRecord, &request.fqdn).await?;
        let r = Record {
            fqdn: request.fqdn.clone(),
            zone: request.zone.clone(),
            kind: request.kind,
            target: request.target.clone(),
            ttl: Some(request.ttl),
            owner: Some(cluster.name.clone()),
            owner_id: None,
        };
        self.state
            .lock()
            .unwrap()
            .records
            .insert(r.fqdn.clone(), r.clone());
        Ok(r)
    }
    async fn wait_record(&self, _: &str, fqdn: &str, _: Duration) -> Result<()> {
        self.begin(Op::WaitRecord, fqdn).await
    }
    async fn read_txt(&self, _: &str, name: &str) -> Result<Option<String>> {
        self.begin(Op::ReadTxt, name).await?;
        Ok(None)
    }
    async fn swap_txt(
        &self,
        _: &str,
        name: &str,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<bool> {
        self.begin(Op::SwapTxt, name).await?;
        Ok(true)
    }
    async fn delete_record(&self, _: &ClusterRef, _: &str, fqdn: &str) -> Result<()> {
        self.begin(Op::DeleteRecord, fqdn).await?;
        self.state.lock().unwrap().records.remove(fqdn);
        Ok(())
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .initial_backoff(Duration::from_millis(10))
        .jitter(false)
}

// ---------------------------------------------------------------------------- Op

#[test]
fn ops_are_listed_once_with_distinct_names() {
    let names: std::collections::BTreeSet<_> = Op::ALL.iter().map(|o| o.name()).collect();
    assert_eq!(names.len(), Op::ALL.len());
    for (i, op) in Op::ALL.iter().enumerate() {
        assert_eq!(op.index(), i);
    }
    let mutating: Vec<_> = Op::ALL.iter().filter(|o| o.is_mutating()).collect();
    assert_eq!(mutating.len(), 11);
    assert!(!Op::DiscoverNodes.is_mutating() && !Op::WaitNode.is_mutating());
    let waits: Vec<_> = Op::ALL.iter().filter(|o| o.is_wait()).copied().collect();
    assert_eq!(
        waits,
        [
            Op::WaitNode,
            Op::WaitNodes,
            Op::WaitLoadBalancer,
            Op::WaitRecord
        ]
    );
}

// ------------------------------------------------------------------------- Retry

#[tokio::test(start_paused = true)]
async fn retry_recovers_from_transient_failures() {
    let fake = Arc::new(Fake::failing(FailureKind::Transient, 3));
    let p = Stack::new(fake.clone()).retry(fast_retry()).build();
    let n = p.create_node(&cluster(), &node_request("rancher-1")).await;
    assert_eq!(n.unwrap().name, "rancher-1");
    assert_eq!(fake.calls(Op::CreateNode), 4);
    assert_eq!(fake.node_names(), ["rancher-1"]);
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_after_max_attempts_with_last_error() {
    let fake = Arc::new(Fake::scripted([
        Scripted::Fail(FailureKind::Transient),
        Scripted::Fail(FailureKind::Transient),
        Scripted::Fail(FailureKind::Throttled),
        Scripted::Fail(FailureKind::Transient),
    ]));
    let p = Stack::new(fake.clone())
        .retry(fast_retry().max_attempts(3))
        .build();
    let err = p
        .create_node(&cluster(), &node_request("n"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(FailureKind::Throttled), "{err}");
    assert_eq!(fake.calls(Op::CreateNode), 3);
    assert!(fake.node_names().is_empty());
}

#[tokio::test(start_paused = true)]
async fn stacked_retries_do_not_multiply() {
    // Two retry layers on one call (a provider's own and the embedder's): the inner
    // one's last error is marked exhausted, so the outer one does not start over.
    let fake = Arc::new(Fake::failing(FailureKind::Transient, 100));
    let inner = Stack::new(fake.clone())
        .retry(fast_retry().max_attempts(3))
        .build();
    let p = Stack::new(Arc::new(inner))
        .retry(fast_retry().max_attempts(3))
        .build();
    let err = p
        .create_node(&cluster(), &node_request("n"))
        .await
        .unwrap_err();
    assert_eq!(fake.calls(Op::CreateNode), 3, "{err}");
    assert_eq!(err.kind(), Some(FailureKind::Transient));
    assert!(!err.is_retryable(), "the exhausted error is final: {err:?}");
    // The code and the source ride along.
    let e = Error::provider(
        "ec2",
        "create node",
        "node n",
        FailureKind::NotFound,
        "gone",
    )
    .with_code("InvalidGroup.NotFound")
    .with_source(std::io::Error::other("the SDK's error"));
    assert_eq!(e.code(), Some("InvalidGroup.NotFound"));
    let source = std::error::Error::source(&e).map(|s| s.to_string());
    assert_eq!(source.as_deref(), Some("the SDK's error"));
}

#[tokio::test(start_paused = true)]
async fn retry_does_not_retry_fatal_errors() {
    for kind in [
        FailureKind::Permission,
        FailureKind::Capacity,
        FailureKind::InvalidRequest,
        FailureKind::Conflict,
    ] {
        let fake = Arc::new(Fake::failing(kind, 1));
        let p = Stack::new(fake.clone()).retry(fast_retry()).build();
        let start = Instant::now();
        let err = p.delete_node(&cluster(), &node("n")).await.unwrap_err();
        assert_eq!(err.kind(), Some(kind));
        assert_eq!(fake.calls(Op::DeleteNode), 1, "{kind:?} was retried");
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn retry_backoff_grows_and_is_capped() {
    let fake = Arc::new(Fake::failing(FailureKind::Throttled, 100));
    let policy = RetryPolicy::default()
        .max_attempts(6)
        .initial_backoff(Duration::from_millis(100))
        .max_backoff(Duration::from_millis(500))
        .jitter(false);
    let p = Stack::new(fake.clone()).retry(policy).build();
    let start = Instant::now();
    p.zones(&cluster()).await.unwrap_err();
    let times = fake.call_times();
    assert_eq!(times.len(), 6);
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    assert_eq!(gaps, [100, 200, 400, 500, 500]);
    assert_eq!(start.elapsed(), Duration::from_millis(1700));
}

#[tokio::test(start_paused = true)]
async fn retry_jittered_backoff_stays_under_the_cap() {
    let fake = Arc::new(Fake::failing(FailureKind::Transient, 100));
    let policy = RetryPolicy::default()
        .max_attempts(8)
        .initial_backoff(Duration::from_millis(100))
        .max_backoff(Duration::from_millis(1000));
    let p = Stack::new(fake.clone()).retry(policy.clone()).build();
    p.discover_nodes(&cluster()).await.unwrap_err();
    let times = fake.call_times();
    assert_eq!(times.len(), 8);
    let mut total = Duration::ZERO;
    for (i, w) in times.windows(2).enumerate() {
        let cap = policy.backoff_cap(u32::try_from(i).unwrap() + 1);
        let gap = w[1] - w[0];
        // tokio's timer has millisecond resolution.
        assert!(
            gap <= cap + Duration::from_millis(1),
            "gap {gap:?} > cap {cap:?}"
        );
        total += gap;
    }
    let sum_caps: Duration = (1..8).map(|r| policy.backoff_cap(r)).sum();
    assert!(
        total < sum_caps,
        "full jitter should wait less than the caps"
    );
}

#[test]
fn backoff_cap_survives_odd_settings() {
    let p = RetryPolicy::default().multiplier(f64::NAN);
    assert_eq!(p.backoff_cap(3), p.max_backoff);
    let p = RetryPolicy::default().multiplier(-3.0);
    assert_eq!(p.backoff_cap(2), p.max_backoff);
    let p = RetryPolicy::default().multiplier(1e300);
    assert_eq!(p.backoff_cap(u32::MAX), p.max_backoff);
    assert_eq!(
        RetryPolicy::default().backoff_cap(1),
        Duration::from_millis(200)
    );
}

#[tokio::test(start_paused = true)]
async fn zero_max_attempts_still_calls_once() {
    let fake = Arc::new(Fake::failing(FailureKind::Transient, 5));
    let p = Stack::new(fake.clone())
        .retry(fast_retry().max_attempts(0))
        .build();
    p.cleanup(&cluster()).await.unwrap_err();
    assert_eq!(fake.calls(Op::Cleanup), 1);
}

#[tokio::test(start_paused = true)]
async fn timed_out_waits_are_not_retried_unless_asked() {
    let fake = Arc::new(Fake::scripted([Scripted::TimedOut]));
    let p = Stack::new(fake.clone()).retry(fast_retry()).build();
    let err = p
        .wait_node(&cluster(), &node("n"), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(fake.calls(Op::WaitNode), 1);

    let fake = Arc::new(Fake::scripted([Scripted::TimedOut]));
    let p = Stack::new(fake.clone())
        .retry(fast_retry().retry_waits(true))
        .build();
    p.wait_node(&cluster(), &node("n"), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(fake.calls(Op::WaitNode), 2);
}

// --------------------------------------------------------------------- RateLimit

#[tokio::test(start_paused = true)]
async fn rate_limit_spaces_calls_after_the_burst() {
    let fake = Arc::new(Fake::default());
    let p = Stack::new(fake.clone())
        .rate_limit(RateLimit::per_second(10.0, 2).unwrap())
        .build();
    let start = Instant::now();
    for _ in 0..6 {
        p.zones(&cluster()).await.unwrap();
    }
    // Two from the burst at once, then one every 100 ms.
    assert_eq!(start.elapsed(), Duration::from_millis(400));
    let offsets: Vec<u128> = fake
        .call_times()
        .iter()
        .map(|t| (*t - start).as_millis())
        .collect();
    assert_eq!(offsets, [0, 0, 100, 200, 300, 400]);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_idle_time_refills_only_up_to_the_burst() {
    let p = Stack::new(Fake::default())
        .rate_limit(RateLimit::per_second(10.0, 2).unwrap())
        .build();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let start = Instant::now();
    for _ in 0..4 {
        p.zones(&cluster()).await.unwrap();
    }
    // A minute idle saves up two tokens, not six hundred.
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn rate_limit_queues_concurrent_calls() {
    let fake = Arc::new(Fake::default());
    let p = Stack::new(fake.clone())
        .rate_limit(RateLimit::per_second(4.0, 1).unwrap())
        .build();
    let start = Instant::now();
    let c = cluster();
    let calls = (0..5).map(|_| p.discover_nodes(&c));
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    let mut offsets: Vec<u128> = fake
        .call_times()
        .iter()
        .map(|t| (*t - start).as_millis())
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, [0, 250, 500, 750, 1000]);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_clones_share_one_bucket() {
    let limit = RateLimit::per_second(1.0, 1).unwrap();
    let nodes = Stack::new(Fake::default())
        .rate_limit(limit.clone())
        .build();
    let dns = Stack::new(Fake::default()).rate_limit(limit).build();
    let start = Instant::now();
    nodes.zones(&cluster()).await.unwrap();
    dns.lookup("example.com", "x.example.com").await.unwrap();
    nodes.zones(&cluster()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn rate_limit_mutating_only_lets_reads_through() {
    let p = Stack::new(Fake::default())
        .rate_limit(RateLimit::per_second(1.0, 1).unwrap().mutating_only())
        .build();
    let start = Instant::now();
    for _ in 0..10 {
        p.discover_nodes(&cluster()).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    p.create_node(&cluster(), &node_request("a")).await.unwrap();
    p.create_node(&cluster(), &node_request("b")).await.unwrap();
    p.delete_node(&cluster(), &node("a")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[test]
fn rate_limit_rejects_bad_settings() {
    for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = RateLimit::per_second(rate, 1).unwrap_err();
        assert!(err.spec_problems().unwrap().names("rate_limit.rate"));
    }
    let err = RateLimit::per_second(1.0, 0).unwrap_err();
    assert!(err.spec_problems().unwrap().names("rate_limit.burst"));
}

// ---------------------------------------------------------------------- Counting

#[tokio::test]
async fn counting_separates_mutating_from_reads_and_failures() {
    let counter = CallCounter::new();
    let fake = Fake::scripted([Scripted::Fail(FailureKind::NotFound)]);
    let p = Stack::new(fake).count(counter.clone()).build();
    let c = cluster();
    p.discover_nodes(&c).await.unwrap_err();
    p.discover_nodes(&c).await.unwrap();
    p.create_node(&c, &node_request("a")).await.unwrap();
    p.create_node(&c, &node_request("b")).await.unwrap();
    p.delete_node(&c, &node("a")).await.unwrap();

    assert_eq!(counter.count(Op::CreateNode), 2);
    assert_eq!(counter.count(Op::DiscoverNodes), 2);
    assert_eq!(counter.total(), 5);
    assert_eq!(counter.mutating(), 3);
    assert_eq!(counter.failures(Op::DiscoverNodes), 1);
    assert_eq!(counter.total_failures(), 1);
    let snap = counter.snapshot();
    assert_eq!(
        snap,
        BTreeMap::from([
            ("create_node", 2),
            ("delete_node", 1),
            ("discover_nodes", 2)
        ])
    );
    assert_eq!(
        counter.failure_snapshot(),
        BTreeMap::from([("discover_nodes", 1)])
    );

    counter.reset();
    assert_eq!(counter.total(), 0);
    assert_eq!(counter.total_failures(), 0);
    assert!(counter.snapshot().is_empty());
}

/// Every method of the three traits goes through the layer as its own op, and
/// `name`, `capabilities` and `check_spec` reach the inner provider.
#[tokio::test]
async fn every_method_maps_to_its_op() {
    let counter = CallCounter::new();
    let fake = Arc::new(Fake::default());
    let p = Stack::new(fake.clone()).count(counter.clone()).build();
    let c = cluster();
    let t = Duration::from_secs(1);

    NodeProvider::zones(&p, &c).await.unwrap();
    p.discover_nodes(&c).await.unwrap();
    let n = p.create_node(&c, &node_request("a")).await.unwrap();
    p.wait_node(&c, &n, t).await.unwrap();
    let waited = p.wait_nodes(&c, std::slice::from_ref(&n), t).await.unwrap();
    assert_eq!(waited, std::slice::from_ref(&n));
    p.delete_node(&c, &n).await.unwrap();
    p.cleanup(&c).await.unwrap();
    p.discover_load_balancer(&c).await.unwrap();
    let l = p.create_load_balancer(&c, &lb_request()).await.unwrap();
    p.wait_load_balancer(&c, &l, t).await.unwrap();
    let l = p.set_targets(&c, &l, &[n]).await.unwrap();
    assert_eq!(l.targets, ["i-a"]);
    p.delete_load_balancer(&c).await.unwrap();
    p.lookup("example.com", "rancher.example.com")
        .await
        .unwrap();
    p.owned_records(&c, "example.com").await.unwrap();
    p.upsert_record(&c, &record_request()).await.unwrap();
    p.wait_record("example.com", "rancher.example.com", t)
        .await
        .unwrap();
    p.delete_record(&c, "example.com", "rancher.example.com")
        .await
        .unwrap();
    let n = node("b");
    p.update_node(&c, &n, &node_request("b")).await.unwrap();
    p.update_load_balancer(&c, &l, &lb_request()).await.unwrap();
    p.read_txt("example.com", "_triad-lock.rancher.example.com")
        .await
        .unwrap();
    p.swap_txt(
        "example.com",
        "_triad-lock.rancher.example.com",
        None,
        Some("x"),
    )
    .await
    .unwrap();

    for op in Op::ALL {
        assert_eq!(counter.count(op), 1, "{op}");
        assert_eq!(fake.calls(op), 1, "{op}");
    }
    assert_eq!(NodeProvider::name(&p), "fake");
    assert_eq!(LoadBalancerProvider::name(&p), "fake-lb");
    assert_eq!(DnsProvider::name(&p), "fake-dns");
    assert!(p.capabilities().alias);
}

// ------------------------------------------------------------------------ Faults

#[tokio::test]
async fn fault_before_leaves_no_effect() {
    let fake = Arc::new(Fake::default());
    let faults = Faults::new().rule(FaultRule::nth(Op::CreateNode, 1, FailureKind::Transient));
    let p = Stack::new(fake.clone()).faults(faults.clone()).build();
    let err = p
        .create_node(&cluster(), &node_request("rancher-1"))
        .await
        .unwrap_err();
    match &err {
        Error::Provider {
            provider,
            action,
            resource,
            kind,
            ..
        } => {
            assert_eq!(provider, FAULT_PROVIDER);
            assert_eq!(action, "create node");
            assert_eq!(resource, "node rancher-1");
            assert_eq!(*kind, FailureKind::Transient);
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(fake.calls(Op::CreateNode), 0);
    assert!(fake.node_names().is_empty());
    assert_eq!(faults.fired(), 1);

    // Only the first call fires.
    p.create_node(&cluster(), &node_request("rancher-1"))
        .await
        .unwrap();
    assert_eq!(fake.node_names(), ["rancher-1"]);
    assert_eq!(faults.fired(), 1);
}

#[tokio::test]
async fn fault_after_keeps_the_effect_and_returns_an_error() {
    let fake = Arc::new(Fake::default());
    let faults =
        Faults::new().rule(FaultRule::nth(OpMatch::Mutating, 2, FailureKind::Transient).after());
    let p = Stack::new(fake.clone()).faults(faults.clone()).build();
    p.discover_nodes(&cluster()).await.unwrap(); // a read: not counted by the rule
    p.create_node(&cluster(), &node_request("a")).await.unwrap();
    let err = p
        .create_node(&cluster(), &node_request("b"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(FailureKind::Transient));
    assert_eq!(fake.calls(Op::CreateNode), 2);
    assert_eq!(fake.node_names(), ["a", "b"]);
    assert_eq!(faults.fired(), 1);
}

async fn fault_pattern(seed: u64) -> Vec<bool> {
    let faults = Faults::new().seed(seed).rule(FaultRule::probability(
        OpMatch::Any,
        0.5,
        FailureKind::Throttled,
    ));
    let p = Stack::new(Fake::default()).faults(faults.clone()).build();
    let mut pattern = Vec::new();
    for _ in 0..64 {
        pattern.push(p.zones(&cluster()).await.is_err());
    }
    let failed = pattern.iter().filter(|f| **f).count();
    assert_eq!(faults.fired(), u64::try_from(failed).unwrap());
    pattern
}

#[tokio::test]
async fn probability_faults_replay_with_the_same_seed() {
    let a = fault_pattern(42).await;
    assert_eq!(a, fault_pattern(42).await);
    assert_ne!(a, fault_pattern(43).await);
    let failed = a.iter().filter(|f| **f).count();
    assert!(
        (10..=54).contains(&failed),
        "{failed} of 64 failed at p=0.5"
    );
}

#[tokio::test]
async fn probability_bounds_never_and_always() {
    let p = Stack::new(Fake::default())
        .faults(Faults::new().rule(FaultRule::probability(
            OpMatch::Any,
            0.0,
            FailureKind::Other,
        )))
        .build();
    for _ in 0..20 {
        p.zones(&cluster()).await.unwrap();
    }
    let p = Stack::new(Fake::default())
        .faults(Faults::new().rule(FaultRule::probability(Op::Zones, 1.0, FailureKind::Other)))
        .build();
    for _ in 0..20 {
        p.zones(&cluster()).await.unwrap_err();
        p.discover_nodes(&cluster()).await.unwrap();
    }
}

// ----------------------------------------------------------------------- Timeout

#[tokio::test(start_paused = true)]
async fn timeout_fails_slow_calls_but_not_waits_by_default() {
    let fake = Arc::new(
        Fake::default()
            .slow(Op::CreateNode, Duration::from_secs(5))
            .slow(Op::WaitNode, Duration::from_secs(5)),
    );
    let p = Stack::new(fake.clone())
        .timeout(Timeout::new(Duration::from_secs(1)))
        .build();
    let start = Instant::now();
    let err = p
        .create_node(&cluster(), &node_request("a"))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    match &err {
        Error::Timeout {
            resource, after, ..
        } => {
            assert_eq!(resource, "node a");
            assert_eq!(*after, Duration::from_secs(1));
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.is_retryable());

    let start = Instant::now();
    p.wait_node(&cluster(), &node("a"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));

    let p = Stack::new(fake)
        .timeout(Timeout::new(Duration::from_secs(1)).waits(Duration::from_secs(2)))
        .build();
    let start = Instant::now();
    let err = p
        .wait_node(&cluster(), &node("a"), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }));
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

// ----------------------------------------------------------------- Composition

#[tokio::test(start_paused = true)]
async fn layers_compose() {
    let fake = Arc::new(Fake::default());
    let counter = CallCounter::new();
    let faults = Faults::new()
        .rule(FaultRule::nth(Op::CreateNode, 1, FailureKind::Throttled))
        .rule(FaultRule::nth(Op::CreateNode, 2, FailureKind::Transient).after());
    // Nearest the fake: faults, then counting, then retry outermost.
    let p = Stack::new(fake.clone())
        .faults(faults.clone())
        .count(counter.clone())
        .retry(fast_retry())
        .build();
    let n = p
        .create_node(&cluster(), &node_request("rancher-1"))
        .await
        .unwrap();
    assert_eq!(n.name, "rancher-1");
    assert_eq!(counter.count(Op::CreateNode), 3);
    assert_eq!(counter.failures(Op::CreateNode), 2);
    assert_eq!(faults.fired(), 2);
    // The first fault kept the call from the fake; the second dropped its answer; the
    // third went through. The fake's create is idempotent: one node.
    assert_eq!(fake.calls(Op::CreateNode), 2);
    assert_eq!(fake.node_names(), ["rancher-1"]);

    // The same stack by hand.
    let by_hand = Layered::new(
        Layered::new(
            Layered::new(fake.clone(), Faults::new()),
            Counting::default(),
        ),
        Retry::default(),
    );
    assert_eq!(by_hand.inner().inner().inner().calls(Op::CreateNode), 2);
    by_hand.discover_nodes(&cluster()).await.unwrap();
    assert_eq!(
        by_hand.inner().layer().counter().count(Op::DiscoverNodes),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn layered_over_dyn_providers() {
    let fake = Arc::new(Fake::failing(FailureKind::Transient, 1));
    let counter = CallCounter::new();
    let nodes: Arc<dyn NodeProvider> = fake.clone();
    let dns: Arc<dyn DnsProvider> = fake.clone();
    let limit = RateLimit::per_second(100.0, 10).unwrap();

    let nodes: Arc<dyn NodeProvider> = Arc::new(
        Stack::new(nodes)
            .count(counter.clone())
            .rate_limit(limit.clone())
            .retry(fast_retry())
            .build(),
    );
    let dns: Box<dyn DnsProvider> = Box::new(
        Stack::new(dns)
            .count(counter.clone())
            .rate_limit(limit)
            .retry(fast_retry())
            .build(),
    );
    assert_eq!(nodes.zones(&cluster()).await.unwrap().len(), 3);
    dns.upsert_record(&cluster(), &record_request())
        .await
        .unwrap();
    assert_eq!(dns.name(), "fake-dns");
    assert!(dns.capabilities().alias);

    // Boxes and Arcs of layered providers can be layered again.
    let again = Stack::new(dns).count(counter.clone()).build();
    let found = again
        .lookup("example.com", "rancher.example.com")
        .await
        .unwrap();
    assert_eq!(found.unwrap().owner.as_deref(), Some("rancher"));

    assert_eq!(counter.count(Op::Zones), 2);
    assert_eq!(counter.failures(Op::Zones), 1);
    assert_eq!(counter.count(Op::UpsertRecord), 1);
    assert_eq!(counter.count(Op::LookupRecord), 2);
}
