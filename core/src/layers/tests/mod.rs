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
        registration_endpoint: None,
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
    async fn network_cidrs(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        self.begin(Op::NetworkCidrs, &cluster.name).await?;
        Ok(vec!["10.0.0.0/16".into()])
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

mod count;
mod faults;
mod rate;
mod retry;
mod timeout;
