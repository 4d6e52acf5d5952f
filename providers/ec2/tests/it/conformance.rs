//! triad-core's provider conformance suite against moto.

use std::time::Duration;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use triad_core::conformance::{self, Fixture};
use triad_core::model::{Endpoint, LbState};
use triad_core::spec::{ClusterRef, LbMode};
use triad_ec2::LoadBalancerProvider;

use crate::{hosted_zone, provider, ubuntu_ami, unique, REGION};

async fn fixture(aws: &triad_ec2::Ec2, prefix: &str) -> Fixture {
    let name = unique(prefix);
    let zone = format!("{name}.test");
    hosted_zone(aws.route53_client(), &zone).await;
    let mut fx = Fixture::new(
        ClusterRef::new(&name, REGION),
        &zone,
        format!("rancher.{zone}"),
    )
    .with_timeout(Duration::from_secs(60))
    .with_poll_interval(Duration::from_millis(20));
    fx.node.image = Some(ubuntu_ami(aws.ec2_client()).await);
    fx.node.size = Some("t3.micro".into());
    fx.node.ssh_allowed_cidrs = vec!["203.0.113.0/24".into()];
    fx
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn conformance_suite_passes_against_moto() {
    let aws = provider(crate::default_vpc()).await;
    let fx = fixture(&aws, "conf").await;
    // Every check of `run_all` but `dns_lock_conditional_write`: moto applies a
    // Route 53 CREATE over an existing record set instead of refusing the batch, so
    // two racing writers both "win" there. The lock relies on Route 53 refusing it
    // (DELETE-exact + CREATE in one batch); that is not proven against moto.
    conformance::nodes_create_discover_delete(&aws, &fx).await;
    conformance::node_create_is_idempotent(&aws, &fx).await;
    conformance::node_delete_missing_is_ok(&aws, &fx).await;
    conformance::nodes_spread_over_zones(&aws, &fx).await;
    conformance::nodes_wait_together(&aws, &fx).await;
    conformance::node_update_in_place(&aws, &fx).await;
    conformance::load_balancer_lifecycle(&aws, &aws, &fx).await;
    conformance::load_balancer_update_in_place(&aws, &aws, &fx).await;
    conformance::load_balancer_create_is_idempotent(&aws, &fx).await;
    conformance::dns_upsert_ownership_delete(&aws, &fx).await;
}

/// The DNS checks once more with an alias target (what an NLB gives), and the
/// balancer's whole life in layer 7.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn conformance_alias_records_and_l7_balancer() {
    let aws = provider(crate::default_vpc()).await;
    let mut fx = fixture(&aws, "conf7").await;
    fx.record_target = Endpoint::Hostname {
        name: "r-0123456789.elb.us-east-1.amazonaws.com".into(),
        alias_zone: Some("Z26RNL4JYFTOTI".into()),
    };
    conformance::dns_upsert_ownership_delete(&aws, &fx).await;

    fx.lb.mode = LbMode::L7;
    // An ALB has no TCP listeners: l7 specs with registration listeners are refused
    // at plan (`load_balancer.registration`), so the request never carries them.
    fx.lb.registration_ports = Vec::new();
    fx.lb.certificate = Some("arn:aws:iam::123456789012:server-certificate/rancher".into());
    conformance::load_balancer_lifecycle(&aws, &aws, &fx).await;
    conformance::load_balancer_create_is_idempotent(&aws, &fx).await;
    // The security groups are cluster plumbing (the last check made them again):
    // cleanup removes them, and then nothing is left.
    let removed = triad_ec2::NodeProvider::cleanup(&aws, &fx.cluster)
        .await
        .unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(
        removed[0].contains("-nodes"),
        "the nodes' group goes first: {removed:?}"
    );
    let again = triad_ec2::NodeProvider::cleanup(&aws, &fx.cluster)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    let left = crate::e2e::tagged(&aws, &fx.cluster.name).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A record someone else made (no ownership TXT) is neither overwritten nor deleted.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn conformance_foreign_record_is_left_alone() {
    let aws = provider(crate::default_vpc()).await;
    let fx = fixture(&aws, "conff").await;
    let zone_id = hosted_zone_id(&aws, &fx.dns_zone).await;
    let foreign = format!("www.{}", fx.dns_zone);
    aws.route53_client()
        .change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(
            ChangeBatch::builder()
                .changes(
                    Change::builder()
                        .action(ChangeAction::Create)
                        .resource_record_set(
                            ResourceRecordSet::builder()
                                .name(format!("{foreign}."))
                                .r#type(RrType::Cname)
                                .ttl(300)
                                .resource_records(
                                    ResourceRecord::builder()
                                        .value("example.org")
                                        .build()
                                        .unwrap(),
                                )
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    conformance::dns_refuses_foreign_record(&aws, &fx, &foreign).await;
}

pub async fn hosted_zone_id(aws: &triad_ec2::Ec2, zone: &str) -> String {
    let out = aws
        .route53_client()
        .list_hosted_zones_by_name()
        .dns_name(zone)
        .send()
        .await
        .unwrap();
    out.hosted_zones()
        .iter()
        .find(|z| z.name().trim_end_matches('.') == zone)
        .map(|z| z.id().trim_start_matches("/hostedzone/").to_owned())
        .expect("the zone exists")
}

/// Discovery sees a balancer being made as provisioning, not as missing.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn a_fresh_balancer_is_discovered_with_both_listeners() {
    let aws = provider(crate::default_vpc()).await;
    let fx = fixture(&aws, "disc").await;
    let mut req = fx.lb.clone();
    req.zones = crate::ZONES.iter().map(|z| z.to_string()).collect();
    let lb = aws.create_load_balancer(&fx.cluster, &req).await.unwrap();
    let found = aws
        .discover_load_balancer(&fx.cluster)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, lb.id);
    // 80 and 443, and the registration ports 9345 and 6443 the fixture asks for.
    assert_eq!(found.listeners.len(), 4);
    assert_ne!(found.state, LbState::Failed);
    aws.delete_load_balancer(&fx.cluster).await.unwrap();
    triad_ec2::NodeProvider::cleanup(&aws, &fx.cluster)
        .await
        .unwrap();
}
