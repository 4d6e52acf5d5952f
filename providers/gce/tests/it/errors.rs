//! Bad input and cloud failures give clear, correctly classified errors.

use std::sync::Arc;

use triad_core::error::FailureKind;
use triad_core::provider::{DnsProvider, NodeProvider};
use triad_core::spec::{ClusterRef, ClusterSpec};
use triad_core::Orchestrator;
use triad_gce::{Connection, GceProvider};

use crate::{endpoint, fail_next, provider, seed, settings, REGION};

async fn plan_error(project: &str, extra: &str, gce_extra: &str) -> triad_core::Error {
    seed(project);
    let spec = ClusterSpec::from_toml(&format!(
        "name = \"bad\"\nregion = \"us-central1\"\n{extra}\n[dns]\nzone = \"example.com\"\n\
         hostname = \"bad.example.com\"\n[gce]\nproject = \"{project}\"\npoll_interval_ms = 50\n{gce_extra}\n"
    ))
    .unwrap()
    .validate()
    .unwrap();
    let gce = Arc::new(
        GceProvider::from_spec_with(&spec, Connection::fake(endpoint()))
            .await
            .unwrap(),
    );
    let triad = Orchestrator::new(gce.clone(), gce.clone(), gce);
    triad.plan(&spec).await.unwrap_err()
}

fn names(e: &triad_core::Error, field: &str) -> bool {
    e.spec_problems().is_some_and(|p| p.names(field))
}

#[tokio::test]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn unknown_zone_image_network_and_managed_zone_are_named() {
    let e = plan_error("triad-bad-zone", "zones = [\"us-central1-z\"]", "").await;
    assert!(names(&e, "zones[0]"), "{e}");
    let e = plan_error(
        "triad-bad-image",
        "",
        "image = \"projects/debian-cloud/global/images/family/nope\"",
    )
    .await;
    assert!(names(&e, "gce.image"), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    let e = plan_error("triad-bad-net", "", "network = \"nowhere\"").await;
    assert!(names(&e, "gce.network"), "{e}");
    let e = plan_error("triad-bad-mz", "", "managed_zone = \"missing\"").await;
    assert!(names(&e, "gce.managed_zone"), "{e}");
}

#[tokio::test]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn unknown_region_and_dns_zone_are_named() {
    let gce = provider("triad-bad-misc").await;
    let e = gce
        .zones(&ClusterRef::new("bad", "mars-north1"))
        .await
        .unwrap_err();
    assert!(names(&e, "region"), "{e}");
    let e = gce
        .lookup("nowhere.example", "x.nowhere.example")
        .await
        .unwrap_err();
    assert!(names(&e, "dns.zone"), "{e}");
}

#[tokio::test]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn throttling_and_server_errors_are_retryable() {
    let project = "triad-throttle";
    seed(project);
    let gce = GceProvider::new(settings(project), None, Connection::fake(endpoint()))
        .await
        .unwrap();
    let cluster = ClusterRef::new("thr", REGION);
    let fail = |method: &str, code: u16, reason: &str| fail_next(project, method, code, reason);
    fail("compute.regions.get", 429, "rateLimitExceeded");
    let e = gce.zones(&cluster).await.unwrap_err();
    assert_eq!(e.kind(), Some(FailureKind::Throttled), "{e}");
    assert!(e.is_retryable());
    fail("compute.regions.get", 403, "forbidden");
    let e = gce.zones(&cluster).await.unwrap_err();
    assert_eq!(e.kind(), Some(FailureKind::Permission), "{e}");
    assert!(!e.is_retryable());
    // A server error on an insert (which the SDK does not retry by itself).
    fail("compute.firewalls.insert", 503, "backendError");
    let mut request =
        triad_core::conformance::Fixture::new(cluster.clone(), "example.com", "x.example.com")
            .node_request("thr-1", "us-central1-a");
    request.labels = cluster.labels_for(triad_core::labels::Role::Node);
    let e = gce.create_node(&cluster, &request).await.unwrap_err();
    assert_eq!(e.kind(), Some(FailureKind::Transient), "{e}");
    assert!(e.is_retryable());
    // The retry converges: the same call again creates the node once.
    let node = gce.create_node(&cluster, &request).await.unwrap();
    let again = gce.create_node(&cluster, &request).await.unwrap();
    assert_eq!(node.id, again.id);
    gce.delete_node(&cluster, &node).await.unwrap();
    gce.cleanup(&cluster).await.unwrap();
    // And then it works.
    assert_eq!(gce.zones(&cluster).await.unwrap().len(), 3);
}
