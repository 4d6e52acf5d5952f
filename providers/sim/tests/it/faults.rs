//! Fault injection: before/after semantics, triggers, and resuming every step after
//! a failure without duplicates.

use std::collections::BTreeSet;

use triad_core::model::{Endpoint, RecordKind, RecordRequest};
use triad_core::spec::LbMode;
use triad_core::{DnsProvider, Error, FailureKind, LoadBalancerProvider, NodeProvider};
use triad_sim::{SimApi, SimCloud, SimConfig, SimFault, SimSnapshot};

use crate::{cloud, cluster, lb_request, node_request, FQDN, ZONE};

fn provider_error(e: &Error) -> (&str, &str, &str, FailureKind) {
    match e {
        Error::Provider {
            provider,
            action,
            resource,
            kind,
            ..
        } => (provider, action, resource, *kind),
        other => panic!("expected a provider error, got {other:?}"),
    }
}

#[tokio::test]
async fn fault_before_has_no_effect_and_names_the_call() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    sim.inject(SimFault::on(SimApi::RunInstance).kind(FailureKind::Throttled));
    let err = sim
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap_err();
    assert_eq!(
        provider_error(&err),
        (
            "sim",
            "RunInstance",
            "node rancher-1",
            FailureKind::Throttled
        )
    );
    assert!(err.is_retryable());
    assert!(sim.snapshot().live_nodes("rancher").is_empty());

    let node = sim
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap();
    assert_eq!(sim.snapshot().live_nodes("rancher")[0].id, node.id);
    let stats = sim.stats();
    assert_eq!(stats.calls(SimApi::RunInstance), 2);
    assert_eq!(stats.faults_fired, 1);
}

#[tokio::test]
async fn fault_after_takes_effect_and_the_retry_finds_it() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    let req = node_request(&c, "rancher-1", "us-east-1b");
    sim.inject(SimFault::on(SimApi::RunInstance).after());
    let err = sim.create_node(&c, &req).await.unwrap_err();
    assert_eq!(provider_error(&err).3, FailureKind::Transient);
    let snap = sim.snapshot();
    assert_eq!(snap.live_nodes("rancher").len(), 1, "the launch happened");

    let node = sim.create_node(&c, &req).await.unwrap();
    assert_eq!(node.id, snap.live_nodes("rancher")[0].id);
    assert_eq!(
        sim.stats().calls(SimApi::RunInstance),
        1,
        "no second launch"
    );
    assert_eq!(sim.snapshot().live_nodes("rancher").len(), 1);
}

#[tokio::test]
async fn fatal_faults_are_not_retryable() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    sim.inject(SimFault::on(SimApi::DescribeZones).kind(FailureKind::Permission));
    let err = sim.zones(&c).await.unwrap_err();
    assert_eq!(provider_error(&err).3, FailureKind::Permission);
    assert!(!err.is_retryable());
    assert_eq!(sim.zones(&c).await.unwrap().len(), 3, "fired once");
}

#[tokio::test]
async fn nth_counts_matching_calls_from_injection() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    sim.discover_nodes(&c).await.unwrap(); // before injection: not counted
    sim.inject(SimFault::on(SimApi::DescribeInstances).nth(3));
    sim.zones(&c).await.unwrap(); // another call: not counted
    assert!(sim.discover_nodes(&c).await.is_ok());
    assert!(sim.discover_nodes(&c).await.is_ok());
    assert!(sim.discover_nodes(&c).await.is_err());
    assert!(
        sim.discover_nodes(&c).await.is_ok(),
        "an nth fault fires once"
    );
}

#[tokio::test]
async fn always_and_clear_faults() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    sim.inject(SimFault::on_any_call().always());
    for _ in 0..5 {
        assert!(sim.discover_nodes(&c).await.is_err());
    }
    sim.clear_faults();
    assert!(sim.discover_nodes(&c).await.is_ok());
    assert_eq!(sim.stats().faults_fired, 5);
}

#[tokio::test]
async fn any_mutating_skips_reads() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    sim.inject(SimFault::on_any_mutating());
    sim.zones(&c).await.unwrap();
    sim.discover_nodes(&c).await.unwrap();
    let err = sim
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap_err();
    // The first mutating call of a first node is the security group.
    assert_eq!(provider_error(&err).1, "CreateSecurityGroup");
}

async fn probabilistic_failures(seed: u64, p: f64) -> u32 {
    let sim = SimCloud::new(SimConfig::instant().with_seed(seed));
    let c = cluster();
    sim.inject(SimFault::on(SimApi::DescribeInstances).probability(p));
    let mut failed = 0;
    for _ in 0..400 {
        if sim.discover_nodes(&c).await.is_err() {
            failed += 1;
        }
    }
    failed
}

#[tokio::test]
async fn probability_faults_follow_the_seed() {
    let a = probabilistic_failures(7, 0.25).await;
    assert_eq!(
        a,
        probabilistic_failures(7, 0.25).await,
        "same seed, same faults"
    );
    assert!(
        (60..=140).contains(&a),
        "about a quarter of 400 calls fail: {a}"
    );
    assert_eq!(probabilistic_failures(7, 0.0).await, 0);
    assert_eq!(probabilistic_failures(7, 1.0).await, 400);
}

/// The cluster's balancer parts in a snapshot: (target groups, balancers, listeners).
fn lb_parts(snap: &SimSnapshot) -> (Vec<String>, Vec<String>, Vec<(String, u16)>) {
    let tgs: Vec<String> = snap.target_groups.iter().map(|t| t.name.clone()).collect();
    let lbs: Vec<String> = snap.balancers.iter().map(|b| b.name.clone()).collect();
    let listeners = snap
        .listeners
        .iter()
        .map(|l| (l.balancer_arn.clone(), l.port))
        .collect();
    (tgs, lbs, listeners)
}

async fn resume_after_fault(mode: LbMode, mutating_calls: u64) {
    let c = cluster();
    let req = lb_request(&c, mode);
    for k in 1..=mutating_calls {
        for after in [false, true] {
            let sim = cloud(SimConfig::instant());
            let fault = SimFault::on_any_mutating().nth(k);
            sim.inject(if after { fault.after() } else { fault });
            let err = sim.create_load_balancer(&c, &req).await.unwrap_err();
            assert!(err.is_retryable(), "{err}");
            let lb = sim.create_load_balancer(&c, &req).await.unwrap();

            let snap = sim.snapshot();
            let (tgs, lbs, listeners) = lb_parts(&snap);
            let want_tgs: Vec<&str> = match mode {
                LbMode::L4 => vec!["rancher-tcp-443", "rancher-tcp-80"],
                LbMode::L7 => vec!["rancher-http-80"],
            };
            let mut tgs_sorted = tgs.clone();
            tgs_sorted.sort();
            assert_eq!(
                tgs_sorted, want_tgs,
                "fault at mutating call {k} (after: {after})"
            );
            assert_eq!(
                lbs,
                vec!["rancher".to_string()],
                "fault at {k} (after: {after})"
            );
            let distinct: BTreeSet<_> = listeners.iter().collect();
            assert_eq!(
                listeners.len(),
                2,
                "fault at {k} (after: {after}): {listeners:?}"
            );
            assert_eq!(distinct.len(), 2);
            assert_eq!(lb.listeners.len(), 2);
            assert_eq!(lb.id, snap.balancers[0].arn);
            // Every mutating call made once, plus the one a before-fault stopped.
            let expected = mutating_calls + u64::from(!after);
            assert_eq!(
                sim.stats().mutating,
                expected,
                "fault at {k} (after: {after})"
            );
        }
    }
}

#[tokio::test]
async fn layer4_create_resumes_after_a_fault_at_each_mutating_call() {
    // CreateTargetGroup ×2, CreateBalancer, CreateListener ×2.
    resume_after_fault(LbMode::L4, 5).await;
}

#[tokio::test]
async fn layer7_create_resumes_after_a_fault_at_each_mutating_call() {
    // CreateTargetGroup, CreateBalancer, CreateListener ×2.
    resume_after_fault(LbMode::L7, 4).await;
}

#[tokio::test]
async fn delete_load_balancer_resumes_after_faults() {
    let c = cluster();
    for k in 1..=5 {
        let sim = cloud(SimConfig::instant());
        sim.create_load_balancer(&c, &lb_request(&c, LbMode::L4))
            .await
            .unwrap();
        sim.inject(SimFault::on_any_mutating().nth(k).after());
        assert!(sim.delete_load_balancer(&c).await.is_err());
        sim.delete_load_balancer(&c).await.unwrap();
        assert!(sim.snapshot().is_clean_of("rancher"), "fault at {k}");
        assert!(sim.discover_load_balancer(&c).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn lost_dns_change_is_found_by_the_retry() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    let target = Endpoint::Ip {
        addresses: vec!["203.0.113.9".parse().unwrap()],
    };
    let req = RecordRequest::new(FQDN, ZONE, RecordKind::A, target);
    sim.inject(SimFault::on(SimApi::ChangeRecords).after());
    assert!(sim.upsert_record(&c, &req).await.is_err());
    let rec = sim.upsert_record(&c, &req).await.unwrap();
    assert_eq!(rec.owner.as_deref(), Some("rancher"));
    assert_eq!(
        sim.stats().calls(SimApi::ChangeRecords),
        1,
        "no second change"
    );
    sim.wait_record(ZONE, FQDN, std::time::Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn delete_node_after_lost_response_is_done() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    let node = sim
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap();
    sim.inject(SimFault::on(SimApi::TerminateInstance).after());
    assert!(sim.delete_node(&c, &node).await.is_err());
    sim.delete_node(&c, &node).await.unwrap();
    assert_eq!(sim.stats().calls(SimApi::TerminateInstance), 1);
    assert!(sim.snapshot().live_nodes("rancher").is_empty());
}
