//! State transitions and latencies in paused virtual time.

use std::time::Duration;

use tokio::time::{advance, Instant};
use triad_core::model::{Endpoint, LbState, NodeState, RecordKind, RecordRequest};
use triad_core::spec::LbMode;
use triad_core::{DnsProvider, Error, LoadBalancerProvider, NodeProvider};
use triad_sim::{SimApi, SimConfig};

use crate::{cloud, cluster, lb_request, node_request, FQDN, ZONE};

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn every_api_call_takes_the_api_latency() {
    let sim = cloud(SimConfig::realistic());
    let c = cluster();
    let t = Instant::now();
    sim.discover_nodes(&c).await.unwrap();
    assert_eq!(t.elapsed(), Duration::from_millis(100));
    let t = Instant::now();
    // DescribeInstances, DescribeSecurityGroups, CreateSecurityGroup, RunInstance.
    sim.create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap();
    assert_eq!(t.elapsed(), Duration::from_millis(400));
    assert_eq!(sim.stats().total(), 5);
}

#[tokio::test(start_paused = true)]
async fn node_is_pending_for_create_plus_boot() {
    let sim = cloud(SimConfig::realistic());
    let c = cluster();
    let node = sim
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap();
    // The instance exists from the end of RunInstance: now.
    assert_eq!(node.state, NodeState::Pending);
    advance(Duration::from_secs(105) - MS).await;
    assert_eq!(sim.snapshot().nodes[0].state, NodeState::Pending);
    advance(MS).await;
    assert_eq!(sim.snapshot().nodes[0].state, NodeState::Running);
}

#[tokio::test(start_paused = true)]
async fn wait_node_returns_within_a_poll_of_ready() {
    let sim = cloud(SimConfig::realistic());
    let c = cluster();
    let node = sim
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap();
    let t = Instant::now();
    let ready = sim
        .wait_node(&c, &node, Duration::from_secs(600))
        .await
        .unwrap();
    assert!(ready.is_ready());
    let waited = t.elapsed();
    // Each poll is one 100 ms DescribeInstances and a 1 s sleep.
    assert!(
        waited >= Duration::from_secs(105) && waited <= Duration::from_millis(106_200),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn wait_node_times_out() {
    let sim = cloud(SimConfig::realistic());
    let c = cluster();
    let node = sim
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap();
    let t = Instant::now();
    let err = sim
        .wait_node(&c, &node, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn deleted_node_terminates_then_vanishes() {
    let sim = cloud(SimConfig::realistic());
    let c = cluster();
    let node = sim
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap();
    sim.delete_node(&c, &node).await.unwrap();
    let found = sim.discover_nodes(&c).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].state, NodeState::Terminating);
    // A terminating node does not hold the quota or the security group.
    assert_eq!(
        sim.cleanup(&c).await.unwrap(),
        vec!["security group rancher-nodes".to_string()]
    );
    advance(Duration::from_secs(30)).await;
    assert!(sim.discover_nodes(&c).await.unwrap().is_empty());
    assert!(sim.snapshot().nodes.is_empty());
}

#[tokio::test(start_paused = true)]
async fn balancer_provisions_then_has_an_endpoint() {
    let sim = cloud(SimConfig::realistic());
    let c = cluster();
    let lb = sim
        .create_load_balancer(&c, &lb_request(&c, LbMode::L4))
        .await
        .unwrap();
    assert_eq!(lb.state, LbState::Provisioning);
    assert_eq!(lb.endpoint, None);
    let t = Instant::now();
    let active = sim
        .wait_load_balancer(&c, &lb, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(active.state, LbState::Active);
    let Some(Endpoint::Ip { addresses }) = &active.endpoint else {
        panic!("an IP endpoint: {:?}", active.endpoint)
    };
    assert!(addresses[0].to_string().starts_with("203.0.113."));
    // Created ≈ 0.5 s before the wait started (5 calls of 100 ms after CreateBalancer
    // …): the wait ends within one poll of 150 s after creation.
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(149) && waited <= Duration::from_secs(152),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn wait_load_balancer_times_out() {
    let sim = cloud(SimConfig::realistic());
    let c = cluster();
    let lb = sim
        .create_load_balancer(&c, &lb_request(&c, LbMode::L4))
        .await
        .unwrap();
    let err = sim
        .wait_load_balancer(&c, &lb, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn dns_change_is_pending_for_dns_sync() {
    let sim = cloud(SimConfig::realistic());
    let c = cluster();
    let target = Endpoint::Ip {
        addresses: vec!["203.0.113.5".parse().unwrap()],
    };
    let req = RecordRequest::new(FQDN, ZONE, RecordKind::A, target);
    sim.upsert_record(&c, &req).await.unwrap();
    let t = Instant::now();
    sim.wait_record(ZONE, FQDN, Duration::from_secs(600))
        .await
        .unwrap();
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(40) && waited <= Duration::from_millis(41_300),
        "{waited:?}"
    );
    // Polling shaped by the expected 40 s: a handful of looks, not one a second.
    let polls = sim.stats().calls(SimApi::GetChange);
    assert!((2..=8).contains(&polls), "{polls} GetChange calls");

    // A short timeout on a fresh change times out.
    let mut req2 = req.clone();
    req2.ttl = 300;
    sim.upsert_record(&c, &req2).await.unwrap();
    let err = sim
        .wait_record(ZONE, FQDN, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn scaled_config_scales_every_wait() {
    let sim = cloud(SimConfig::realistic().scaled(0.01));
    let c = cluster();
    let node = sim
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap();
    let t = Instant::now();
    sim.wait_node(&c, &node, Duration::from_secs(10))
        .await
        .unwrap();
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1050) && waited <= Duration::from_millis(1070),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_orchestrator_dropped_mid_wait_leaves_state_a_clone_resumes() {
    let sim = cloud(SimConfig::realistic());
    let c = cluster();
    let req = node_request(&c, "rancher-1", "us-east-1a");
    let first = sim.clone();
    let c1 = c.clone();
    let req1 = req.clone();
    let task = tokio::spawn(async move {
        let node = first.create_node(&c1, &req1).await.unwrap();
        first
            .wait_node(&c1, &node, Duration::from_secs(600))
            .await
            .unwrap()
    });
    // Let the first run launch the node and start waiting for it, then drop it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(sim.snapshot().live_nodes("rancher").len(), 1);
    assert!(
        sim.stats().calls(SimApi::DescribeInstances) >= 1,
        "it was polling"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    let node = sim.create_node(&c, &req).await.unwrap();
    let ready = sim
        .wait_node(&c, &node, Duration::from_secs(600))
        .await
        .unwrap();
    assert!(ready.is_ready());
    assert_eq!(sim.snapshot().live_nodes("rancher").len(), 1);
    assert_eq!(sim.stats().calls(SimApi::RunInstance), 1);
}
