//! Timeout and composition.

use super::*;

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
