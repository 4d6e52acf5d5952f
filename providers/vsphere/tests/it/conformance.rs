//! triad-core's node conformance checks against vcsim.

use std::time::Duration;

use triad_core::conformance::{self, Fixture};
use triad_core::spec::ClusterRef;

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
