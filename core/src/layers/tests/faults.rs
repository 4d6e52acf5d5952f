//! Faults.

use super::*;

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
