//! Bad input gives clear errors, and nothing is created (or what was is reported
//! and destroyed).

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use triad_core::spec::{ClusterSpec, ValidSpec};
use triad_core::{Error, Orchestrator};
use triad_ec2::{Ec2, Ec2Settings};

use crate::conformance::hosted_zone_id;
use crate::e2e::tagged;
use crate::{hosted_zone, provider, ubuntu_ami, unique};

pub(crate) async fn setup(
    settings: Ec2Settings,
    extra: &str,
) -> (Arc<Ec2>, ValidSpec, Orchestrator) {
    let aws = Arc::new(provider(settings).await);
    let name = unique("bad");
    let zone = format!("{name}.test");
    hosted_zone(aws.route53_client(), &zone).await;
    let image = ubuntu_ami(aws.ec2_client()).await;
    let spec = ClusterSpec::from_toml(&format!(
        "name = \"{name}\"\nregion = \"us-east-1\"\nzones = [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"]\n\
         [nodes]\nimage = \"{image}\"\nsize = \"t3.micro\"\n{extra}\n[dns]\nzone = \"{zone}\"\nhostname = \"rancher.{zone}\"\n"
    ))
    .unwrap()
    .validate()
    .unwrap();
    let aws = Arc::new(Arc::try_unwrap(aws).unwrap().with_zones(spec.zones.clone()));
    let triad = Orchestrator::new(aws.clone(), aws.clone(), aws.clone());
    (aws, spec, triad)
}

async fn default_subnets(aws: &Ec2) -> BTreeMap<String, String> {
    let out = aws
        .ec2_client()
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("default-for-az")
                .values("true")
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.subnets()
        .iter()
        .map(|s| {
            (
                s.availability_zone().unwrap().to_owned(),
                s.subnet_id().unwrap().to_owned(),
            )
        })
        .collect()
}

pub(crate) fn fields(e: &Error) -> Vec<String> {
    e.spec_problems()
        .unwrap_or_else(|| panic!("expected spec problems, got: {e}"))
        .0
        .iter()
        .map(|p| p.field.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn an_unknown_subnet_is_named_and_nothing_is_made() {
    let probe = provider(crate::default_vpc()).await;
    let subnets = default_subnets(&probe).await;
    let settings = Ec2Settings {
        subnets: vec![
            subnets["us-east-1a"].clone(),
            "subnet-0123456789abcdef0".into(),
            subnets["us-east-1c"].clone(),
        ],
        ..crate::default_vpc()
    };
    let (aws, spec, triad) = setup(settings, "").await;
    let err = triad.plan(&spec).await.unwrap_err();
    assert!(fields(&err).contains(&"ec2.subnets[1]".to_owned()), "{err}");
    assert!(
        err.to_string().contains("subnet-0123456789abcdef0"),
        "{err}"
    );
    assert!(tagged(&aws, &spec.name).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn a_zone_without_subnet_is_named_and_nothing_is_made() {
    let probe = provider(crate::default_vpc()).await;
    let subnets = default_subnets(&probe).await;
    let settings = Ec2Settings {
        subnets: vec![subnets["us-east-1a"].clone(), subnets["us-east-1b"].clone()],
        ..crate::default_vpc()
    };
    let (aws, spec, triad) = setup(settings, "").await;
    let err = triad.plan(&spec).await.unwrap_err();
    assert_eq!(fields(&err), ["zones[2]"], "{err}");
    assert!(err.to_string().contains("us-east-1c"), "{err}");
    assert!(tagged(&aws, &spec.name).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn a_certificate_of_another_region_is_refused_before_anything_is_made() {
    let (aws, spec, triad) = setup(
        crate::default_vpc(),
        "[load_balancer]\nmode = \"l7\"\nregistration = \"first-node\"\ncertificate = \"arn:aws:acm:eu-west-1:123456789012:certificate/abc\"",
    )
    .await;
    let err = triad.plan(&spec).await.unwrap_err();
    assert_eq!(fields(&err), ["load_balancer.certificate"], "{err}");
    assert!(err.to_string().contains("eu-west-1"), "{err}");
    assert!(tagged(&aws, &spec.name).await.is_empty());
}

/// An ACM certificate that does not exist is only found out when the listener is
/// made: apply fails naming the certificate and lists what exists; destroy removes it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn an_unknown_certificate_fails_apply_and_reports_what_exists() {
    let (aws, spec, triad) = setup(
        crate::default_vpc(),
        "[load_balancer]\nmode = \"l7\"\nregistration = \"first-node\"\ncertificate = \"arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000\"",
    )
    .await;
    let plan = triad.plan(&spec).await.unwrap();
    let err = triad.apply(&plan).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("load_balancer.certificate"), "{text}");
    let Error::Apply { existing, .. } = &err else {
        panic!("expected Error::Apply, got {err}")
    };
    assert!(
        existing.iter().any(|e| e.starts_with("node ")),
        "{existing:?}"
    );
    assert!(!tagged(&aws, &spec.name).await.is_empty());
    triad.destroy(&spec.cluster()).await.unwrap();
    let left = tagged(&aws, &spec.name).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn a_record_owned_by_someone_else_is_refused_before_anything_is_made() {
    let (aws, spec, triad) = setup(crate::default_vpc(), "").await;
    let zone_id = hosted_zone_id(&aws, &spec.dns.zone).await;
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
                                .name(format!("{}.", spec.fqdn()))
                                .r#type(RrType::A)
                                .ttl(300)
                                .resource_records(
                                    ResourceRecord::builder()
                                        .value("198.51.100.7")
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
    let err = triad.plan(&spec).await.unwrap_err();
    assert!(matches!(err, Error::NotOwned { .. }), "{err}");
    assert!(
        err.to_string().contains("without triad's ownership TXT"),
        "{err}"
    );
    assert!(tagged(&aws, &spec.name).await.is_empty());
}
