//! Counting.

use super::*;

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
    assert_eq!(p.network_cidrs(&c).await.unwrap(), ["10.0.0.0/16"]);
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
