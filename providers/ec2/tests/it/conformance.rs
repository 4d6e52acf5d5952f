//! triad-core's provider conformance suite against moto.

use std::time::Duration;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use triad_core::conformance::{self, Fixture};
use triad_core::lock::{lock_name, LockRecord};
use triad_core::model::{Endpoint, LbState};
use triad_core::spec::{ClusterRef, LbMode};
use triad_ec2::DnsProvider;
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
    // Every check of `run_all`. The lock's check needs moto started through
    // testing/ec2/moto_server.py (scripts/test does), which checks change batches
    // against the zone's current record sets as Route 53 does.
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
    conformance::dns_lock_conditional_write(&aws, &fx).await;
}

/// The DNS checks once more with an alias target (what an NLB gives), and the
/// balancer's whole life in layer 7, its companion NLB for the registration ports
/// included.
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
    // The fixture's registration ports (9345, 6443) stay: the ALB's internal
    // companion NLB serves them, and the checks find them among the listeners.
    assert!(!fx.lb.registration_ports.is_empty());
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

pub(crate) async fn hosted_zone_id(aws: &triad_ec2::Ec2, zone: &str) -> String {
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

/// The lock's TXT record sets at `name`, each as its values, read with the SDK.
async fn lock_sets(aws: &triad_ec2::Ec2, zone: &str, name: &str) -> Vec<Vec<String>> {
    crate::record_sets(aws, zone, name)
        .await
        .iter()
        .filter(|s| s.r#type() == &RrType::Txt)
        .map(|s| {
            s.resource_records()
                .iter()
                .map(|r| r.value().trim_matches('"').to_owned())
                .collect()
        })
        .collect()
}

/// Five writers race for the lock through triad's `swap_txt`; exactly one wins, and
/// Route 53 (read back with the SDK, not through triad) holds one record set with one
/// value, the winner's. Then a writer that read "no lock" before the winner wrote (its
/// read is stale) sends its CREATE batch anyway: the batch, not triad's read, refuses
/// it, and nothing of the batch is applied.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto started by testing/ec2/moto_server.py; scripts/test does"]
async fn lock_race_leaves_exactly_one_holder() {
    let aws = std::sync::Arc::new(provider(crate::default_vpc()).await);
    let fx = fixture(&aws, "lock").await;
    let zone = fx.dns_zone.clone();
    let zone_id = hosted_zone_id(&aws, &zone).await;
    let name = lock_name(&fx.cluster.name, &zone);
    let value = |holder: String| {
        LockRecord {
            holder,
            since: 1,
            expires: 2,
        }
        .to_txt()
    };
    let writers: Vec<_> = (0..5)
        .map(|i| {
            let (aws, zone, name, v) = (
                aws.clone(),
                zone.clone(),
                name.clone(),
                value(format!("w{i}")),
            );
            tokio::spawn(
                async move { (v.clone(), aws.swap_txt(&zone, &name, None, Some(&v)).await) },
            )
        })
        .collect();
    let mut winners = Vec::new();
    for w in writers {
        let (v, won) = w.await.unwrap();
        if won.unwrap() {
            winners.push(v);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    assert_eq!(
        lock_sets(&aws, &zone, &name).await,
        vec![winners.clone()],
        "one lock record set with the winner's value"
    );

    // A stale writer: DELETE-nothing + CREATE, as swap_txt sends it after reading None.
    let stale = value("stale".into());
    let other = format!("other.{zone}");
    let create = |n: &str, v: &str| {
        Change::builder()
            .action(ChangeAction::Create)
            .resource_record_set(
                ResourceRecordSet::builder()
                    .name(format!("{n}."))
                    .r#type(RrType::Txt)
                    .ttl(60)
                    .resource_records(
                        ResourceRecord::builder()
                            .value(format!("\"{v}\""))
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let err = aws
        .route53_client()
        .change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(
            ChangeBatch::builder()
                .changes(create(&other, "applied only with the batch"))
                .changes(create(&name, &stale))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect_err("a CREATE over the held lock is refused");
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().code()),
        Some("InvalidChangeBatch"),
        "{err:?}"
    );
    assert_eq!(lock_sets(&aws, &zone, &name).await, vec![winners.clone()]);
    assert!(
        lock_sets(&aws, &zone, &other).await.is_empty(),
        "a refused batch applies none of its changes"
    );
    // The stale writer's swap through triad is refused too, and the holder releases.
    assert!(!aws
        .swap_txt(&zone, &name, Some(&stale), None)
        .await
        .unwrap());
    assert!(aws
        .swap_txt(&zone, &name, Some(&winners[0]), None)
        .await
        .unwrap());
    assert!(lock_sets(&aws, &zone, &name).await.is_empty());
}
