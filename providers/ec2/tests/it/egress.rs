//! Nodes reach the internet only through the proxy: subnets that would let them
//! egress directly (an internet gateway route, a public IP on launch) are refused at
//! plan, naming the field, unless `allow_direct_egress`; read back with the SDK.

use aws_sdk_ec2::types::{AttributeBooleanValue, Filter};
use triad_ec2::Ec2Settings;

use crate::bad_input::{fields, setup};
use crate::e2e::tagged;

/// A new VPC with a private subnet in each of the three zones, one more subnet in
/// us-east-1b routed to an internet gateway, and one in us-east-1c that maps public
/// IPs on launch (no gateway route). Returns (private ×3, IGW-routed, public-IP, igw).
async fn vpc(ec2: &aws_sdk_ec2::Client) -> ([String; 3], String, String, String) {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.40.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_owned();
    let subnet = |cidr: &'static str, zone: &'static str| {
        let vpc = vpc.clone();
        async move {
            ec2.create_subnet()
                .vpc_id(vpc)
                .cidr_block(cidr)
                .availability_zone(zone)
                .send()
                .await
                .unwrap()
                .subnet()
                .unwrap()
                .subnet_id()
                .unwrap()
                .to_owned()
        }
    };
    let private = [
        subnet("10.40.1.0/24", "us-east-1a").await,
        subnet("10.40.2.0/24", "us-east-1b").await,
        subnet("10.40.3.0/24", "us-east-1c").await,
    ];
    let routed = subnet("10.40.12.0/24", "us-east-1b").await;
    let mapping = subnet("10.40.13.0/24", "us-east-1c").await;
    ec2.modify_subnet_attribute()
        .subnet_id(&mapping)
        .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .unwrap();
    let igw = ec2
        .create_internet_gateway()
        .send()
        .await
        .unwrap()
        .internet_gateway()
        .unwrap()
        .internet_gateway_id()
        .unwrap()
        .to_owned();
    ec2.attach_internet_gateway()
        .internet_gateway_id(&igw)
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap();
    let table = ec2
        .create_route_table()
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .route_table()
        .unwrap()
        .route_table_id()
        .unwrap()
        .to_owned();
    ec2.create_route()
        .route_table_id(&table)
        .destination_cidr_block("0.0.0.0/0")
        .gateway_id(&igw)
        .send()
        .await
        .unwrap();
    ec2.associate_route_table()
        .route_table_id(&table)
        .subnet_id(&routed)
        .send()
        .await
        .unwrap();
    (private, routed, mapping, igw)
}

fn settings(subnets: &[&String], allow: bool) -> Ec2Settings {
    Ec2Settings {
        subnets: subnets.iter().map(|s| (*s).clone()).collect(),
        allow_direct_egress: allow,
        ..Ec2Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn subnets_with_direct_egress_are_refused_at_plan_unless_allowed() {
    let probe = crate::provider(Ec2Settings::default()).await;
    let (private, routed, mapping, igw) = vpc(probe.ec2_client()).await;
    // Read back what the check relies on, with the SDK.
    let tables = probe
        .ec2_client()
        .describe_route_tables()
        .filters(
            Filter::builder()
                .name("association.subnet-id")
                .values(&routed)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(tables.route_tables()[0]
        .routes()
        .iter()
        .any(|r| r.gateway_id() == Some(igw.as_str())
            && r.destination_cidr_block() == Some("0.0.0.0/0")));

    // An IGW-routed subnet second, a public-IP subnet third: both named.
    let (aws, spec, triad) = setup(settings(&[&private[0], &routed, &mapping], false), "").await;
    let err = triad.plan(&spec).await.unwrap_err();
    assert_eq!(fields(&err), ["ec2.subnets[1]", "ec2.subnets[2]"], "{err}");
    let text = err.to_string();
    assert!(text.contains("nodes would bypass the proxy"), "{text}");
    assert!(text.contains(&igw) && text.contains(&routed), "{text}");
    assert!(
        text.contains("public IP on launch") && text.contains(&mapping),
        "{text}"
    );
    assert!(text.contains("allow_direct_egress = true"), "{text}");
    assert!(tagged(&aws, &spec.name).await.is_empty(), "nothing is made");

    // Private subnets: accepted.
    let (_, spec, triad) = setup(
        settings(&[&private[0], &private[1], &private[2]], false),
        "",
    )
    .await;
    let plan = triad.plan(&spec).await.unwrap();
    assert_eq!(plan.zones.len(), 3, "{plan}");
    assert!(
        plan.warnings
            .iter()
            .all(|w| !w.contains("allow_direct_egress")),
        "{plan}"
    );

    // Allowed: accepted, and the plan says what it means.
    let (_, spec, triad) = setup(settings(&[&private[0], &routed, &mapping], true), "").await;
    let plan = triad.plan(&spec).await.unwrap();
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("allow_direct_egress")),
        "{plan}"
    );
    assert!(plan.to_string().contains("! warning"), "{plan}");
}

/// No `ec2.subnets`: the default VPC's default subnets map public IPs, so plan
/// refuses them, naming `ec2.subnets` and saying what to do.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn the_default_vpc_is_refused_without_allow_direct_egress() {
    let (aws, spec, triad) = setup(Ec2Settings::default(), "").await;
    let err = triad.plan(&spec).await.unwrap_err();
    assert_eq!(fields(&err), ["ec2.subnets"], "{err}");
    let text = err.to_string();
    assert!(
        text.contains("default VPC") && text.contains("bypass the proxy"),
        "{text}"
    );
    assert!(
        text.contains("list private subnets") && text.contains("allow_direct_egress"),
        "{text}"
    );
    assert!(tagged(&aws, &spec.name).await.is_empty());
}
