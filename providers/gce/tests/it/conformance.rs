//! The shared provider conformance suite against the fake.

use std::time::Duration;

use triad_core::conformance::{self, Fixture};
use triad_core::labels::Role;
use triad_core::model::{Endpoint, LoadBalancerRequest};
use triad_core::spec::{ClusterRef, LbMode, LbScheme};
use triad_core::NodeProvider;

use crate::{assert_no_violations, http, provider, state, REGION, ZONE};

fn fixture(name: &str) -> Fixture {
    let mut c = ClusterRef::new(name, REGION);
    c.dns_zone = Some(ZONE.into());
    Fixture::new(c, ZONE, format!("{name}.example.com"))
        .with_timeout(Duration::from_secs(60))
        .with_poll_interval(Duration::from_millis(100))
}

fn assert_empty(project: &str) {
    let s = state(project);
    let left: Vec<&String> = s["resources"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| {
            !k.contains("/networks/")
                && !k.contains("/subnetworks/")
                && !k.contains("/sslCertificates/")
        })
        .collect();
    assert!(left.is_empty(), "left behind in {project}: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn run_all_layer4() {
    let gce = provider("triad-conf-l4").await;
    let fx = fixture("conf");
    conformance::run_all(&gce, &gce, &gce, &fx).await;
    conformance::node_update_in_place(&gce, &fx).await;
    conformance::load_balancer_update_in_place(&gce, &gce, &fx).await;
    gce.cleanup(&fx.cluster).await.unwrap();
    assert_empty("triad-conf-l4");
    assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn layer7_lifecycle() {
    let gce = provider("triad-conf-l7").await;
    let mut fx = fixture("conf7");
    fx.lb = LoadBalancerRequest::new("conf7", LbMode::L7, LbScheme::InternetFacing);
    fx.lb.certificate = Some("rancher-cert".into());
    fx.lb.labels = fx.cluster.labels_for(Role::Lb);
    conformance::load_balancer_lifecycle(&gce, &gce, &fx).await;
    conformance::load_balancer_create_is_idempotent(&gce, &fx).await;
    conformance::load_balancer_update_in_place(&gce, &gce, &fx).await;
    assert_empty("triad-conf-l7");
    assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn foreign_records_are_refused() {
    let project = "triad-conf-dns";
    let gce = provider(project).await;
    let (code, body) = http(
        "POST",
        "/_fake/seed",
        &serde_json::json!({"project": project, "records": [
            {"zone": "example", "name": "legacy.example.com.", "type": "A", "rrdatas": ["198.51.100.7"]}
        ]})
        .to_string(),
    );
    assert_eq!(code, 200, "{body}");
    let fx = fixture("confdns");
    conformance::dns_refuses_foreign_record(&gce, &fx, "legacy.example.com").await;
    let mut cname = fixture("confcname");
    cname.record_target = Endpoint::Hostname {
        name: "lb.elsewhere.invalid".into(),
        alias_zone: None,
    };
    conformance::dns_upsert_ownership_delete(&gce, &cname).await;
    assert_no_violations();
}
