//! triad-core's node conformance checks against vcsim.

use std::collections::BTreeMap;
use std::time::Duration;

use triad_core::conformance::{self, Fixture};
use triad_core::spec::ClusterRef;
use triad_core::NodeProvider;

use crate::common::{provider, NEEDS};

fn fixture(name: &str) -> Fixture {
    Fixture::new(
        ClusterRef::new(name, "dc0"),
        "example.com",
        "rancher.example.com",
    )
    .with_timeout(Duration::from_secs(60))
    .with_poll_interval(Duration::from_millis(200))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs vcsim; scripts/test starts it"]
async fn nodes_create_discover_delete() {
    let _ = NEEDS;
    let p = provider("conf-a-").await;
    conformance::nodes_create_discover_delete(&p, &fixture("conf-a")).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs vcsim; scripts/test starts it"]
async fn node_create_is_idempotent() {
    let p = provider("conf-b-").await;
    conformance::node_create_is_idempotent(&p, &fixture("conf-b")).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs vcsim; scripts/test starts it"]
async fn node_delete_missing_is_ok() {
    let p = provider("conf-c-").await;
    conformance::node_delete_missing_is_ok(&p, &fixture("conf-c")).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs vcsim; scripts/test starts it"]
async fn nodes_spread_over_zones() {
    let p = provider("conf-d-").await;
    conformance::nodes_spread_over_zones(&p, &fixture("conf-d")).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs vcsim; scripts/test starts it"]
async fn nodes_wait_together() {
    let p = provider("conf-e-").await;
    conformance::nodes_wait_together(&p, &fixture("conf-e")).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs vcsim; scripts/test starts it"]
async fn node_update_in_place() {
    let p = provider("conf-f-").await;
    conformance::node_update_in_place(&p, &fixture("conf-f")).await;
}

/// `wait_nodes` reads every node in one property-collector call: three running nodes
/// cost one `RetrievePropertiesEx`, from this session (VMs remembered) and from a fresh
/// one (which first finds each VM by its UUID).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs vcsim; scripts/test starts it"]
async fn wait_nodes_reads_all_at_once() {
    let p = provider("conf-g-").await;
    let fx = fixture("conf-g");
    let zones = p.zones(&fx.cluster).await.unwrap();
    let mut made = Vec::new();
    for (i, zone) in zones.iter().enumerate() {
        let request = fx.node_request(&fx.node_name(i + 1), zone);
        made.push(p.create_node(&fx.cluster, &request).await.expect("create"));
    }
    let ready = p
        .wait_nodes(&fx.cluster, &made, fx.timeout)
        .await
        .expect("wait");
    assert!(ready.iter().all(|n| n.is_ready()), "{ready:?}");

    p.reset_calls();
    p.wait_nodes(&fx.cluster, &ready, fx.timeout)
        .await
        .expect("wait again");
    let calls = p.calls();
    assert_eq!(
        calls.by_method,
        BTreeMap::from([("RetrievePropertiesEx".to_owned(), 1)]),
        "{calls:?}"
    );

    let fresh = provider("conf-g-").await;
    fresh
        .wait_nodes(&fx.cluster, &ready, fx.timeout)
        .await
        .expect("wait from a fresh session");
    let calls = fresh.calls();
    assert_eq!(
        (
            calls.by_method.get("RetrievePropertiesEx"),
            calls.by_method.get("FindByUuid"),
            calls.mutating()
        ),
        (Some(&1), Some(&3), 0),
        "{calls:?}"
    );

    for n in &ready {
        p.delete_node(&fx.cluster, n).await.expect("delete");
    }
    assert!(p.discover_nodes(&fx.cluster).await.unwrap().is_empty());
}
