//! The shared provider conformance suite, run against the sim in several shapes.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use triad_core::conformance::{self, Fixture};
use triad_core::model::Endpoint;
use triad_core::spec::LbMode;
use triad_sim::{EndpointStyle, SimConfig};

use crate::{cloud, fixture, lb_request, ZONE};

#[tokio::test]
async fn run_all_instant() {
    let sim = cloud(SimConfig::instant());
    conformance::run_all(&sim, &sim, &sim, &fixture()).await;
    assert!(
        sim.snapshot().is_clean_of("rancher"),
        "{:#?}",
        sim.snapshot()
    );
}

#[tokio::test(start_paused = true)]
async fn run_all_realistic_in_virtual_time() {
    let sim = cloud(SimConfig::realistic());
    let fx = fixture().with_poll_interval(Duration::from_secs(1));
    conformance::run_all(&sim, &sim, &sim, &fx).await;
    let snap = sim.snapshot();
    assert!(snap.is_clean_of("rancher"), "{snap:#?}");
    // Only the ownership-free leftovers of nothing: the zone is empty again.
    assert!(
        snap.zones[0].records.is_empty(),
        "{:?}",
        snap.zones[0].records
    );
}

#[tokio::test(start_paused = true)]
async fn run_all_hostname_endpoints_and_alias_record() {
    let sim = cloud(SimConfig::realistic().with_balancer_endpoint(EndpointStyle::Hostname));
    let mut fx = fixture();
    fx.record_target = Endpoint::Hostname {
        name: "rancher-0123abcd.elb.us-east-1.sim.invalid".into(),
        alias_zone: Some("ZSIM0000000001".into()),
    };
    conformance::run_all(&sim, &sim, &sim, &fx).await;
    assert!(sim.snapshot().is_clean_of("rancher"));
}

#[tokio::test]
async fn dns_cname_records() {
    let sim = cloud(SimConfig::instant());
    let mut fx = fixture();
    fx.record_target = Endpoint::Hostname {
        name: "lb.elsewhere.invalid".into(),
        alias_zone: None,
    };
    conformance::dns_upsert_ownership_delete(&sim, &fx).await;
}

#[tokio::test(start_paused = true)]
async fn layer7_lifecycle() {
    let sim = cloud(SimConfig::realistic());
    let mut fx = fixture();
    fx.lb = lb_request(&fx.cluster, LbMode::L7);
    conformance::load_balancer_lifecycle(&sim, &sim, &fx).await;
    conformance::load_balancer_create_is_idempotent(&sim, &fx).await;
    assert!(sim.snapshot().is_clean_of("rancher"));
}

#[tokio::test]
async fn foreign_records_are_refused() {
    let sim = cloud(SimConfig::instant());
    let fx = fixture();
    sim.put_foreign_record(
        ZONE,
        "legacy.example.com",
        Endpoint::Ip {
            addresses: vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))],
        },
    )
    .unwrap();
    conformance::dns_refuses_foreign_record(&sim, &fx, "legacy.example.com").await;
    sim.put_foreign_record(
        ZONE,
        "www.example.com",
        Endpoint::Hostname {
            name: "cdn.elsewhere.invalid".into(),
            alias_zone: None,
        },
    )
    .unwrap();
    conformance::dns_refuses_foreign_record(&sim, &fx, "www.example.com").await;
}

#[tokio::test]
async fn other_clusters_in_the_same_cloud_are_untouched() {
    let sim = cloud(SimConfig::instant());
    let bystander = Fixture::new(
        triad_core::ClusterRef::new("bystander", "us-east-1"),
        ZONE,
        "bystander.example.com",
    );
    let node = triad_core::NodeProvider::create_node(
        &sim,
        &bystander.cluster,
        &bystander.node_request("bystander-1", "us-east-1a"),
    )
    .await
    .unwrap();
    conformance::run_all(&sim, &sim, &sim, &fixture()).await;
    let snap = sim.snapshot();
    assert_eq!(snap.live_nodes("bystander").len(), 1);
    assert_eq!(snap.live_nodes("bystander")[0].id, node.id);
    assert_eq!(snap.security_groups.len(), 1, "{:?}", snap.security_groups);
}

#[tokio::test]
#[should_panic(expected = "must be free")]
async fn the_suite_notices_a_dirty_fixture() {
    // The suite must fail, not silently pass, when its preconditions do not hold.
    let sim = cloud(SimConfig::instant());
    sim.put_foreign_record(
        ZONE,
        crate::FQDN,
        Endpoint::Ip {
            addresses: vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))],
        },
    )
    .unwrap();
    conformance::dns_upsert_ownership_delete(&sim, &fixture()).await;
}

#[tokio::test(start_paused = true)]
async fn in_place_updates() {
    let sim = cloud(SimConfig::realistic());
    let fx = fixture();
    conformance::node_update_in_place(&sim, &fx).await;
    conformance::load_balancer_update_in_place(&sim, &sim, &fx).await;
    let snap = sim.snapshot();
    assert!(snap.is_clean_of("rancher"), "{snap:#?}");
}
