//! The orchestrator end to end against moto, everything read back with the SDK.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_sdk_ec2::types::Filter;
use aws_sdk_elasticloadbalancingv2::types::{ActionTypeEnum, ProtocolEnum};
use aws_sdk_route53::types::RrType;
use triad_core::layers::{CallCounter, Stack};
use triad_core::model::{Endpoint, RecordKind};
use triad_core::spec::{ClusterSpec, ValidSpec};
use triad_core::Orchestrator;
use triad_ec2::Ec2;

use crate::conformance::hosted_zone_id;
use crate::{hosted_zone, provider, tag_filter, ubuntu_ami, unique};

const CERT: &str = "arn:aws:iam::123456789012:server-certificate/rancher";

async fn spec(aws: &Ec2, name: &str, zone: &str, lb: &str) -> ValidSpec {
    let image = ubuntu_ami(aws.ec2_client()).await;
    ClusterSpec::from_toml(&format!(
        r#"
name = "{name}"
region = "us-east-1"
zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
[nodes]
size = "t3.large"
image = "{image}"
disk_gib = 80
ssh_allowed_cidrs = ["198.51.100.0/24"]
[proxy]
http = "http://proxy.corp.test:3128"
no_proxy = ["corp.test"]
[load_balancer]
{lb}
[dns]
zone = "{zone}"
hostname = "rancher.{zone}"
[labels]
team = "platform"
"#
    ))
    .unwrap()
    .validate()
    .unwrap()
}

/// Everything in moto carrying `triad-cluster=<name>`, as "kind id" strings.
pub(crate) async fn tagged(aws: &Ec2, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ec2 = aws.ec2_client();
    let inst = ec2
        .describe_instances()
        .filters(tag_filter("triad-cluster", name))
        .send()
        .await
        .unwrap();
    for i in inst.reservations().iter().flat_map(|r| r.instances()) {
        if i.state().and_then(|s| s.name()).map(|s| s.as_str()) != Some("terminated") {
            out.push(format!("instance {}", i.instance_id().unwrap()));
        }
    }
    let sgs = ec2
        .describe_security_groups()
        .filters(tag_filter("triad-cluster", name))
        .send()
        .await
        .unwrap();
    out.extend(
        sgs.security_groups()
            .iter()
            .map(|g| format!("sg {}", g.group_id().unwrap())),
    );
    let vols = ec2
        .describe_volumes()
        .filters(tag_filter("triad-cluster", name))
        .send()
        .await
        .unwrap();
    out.extend(
        vols.volumes()
            .iter()
            .filter(|v| v.state().map(|s| s.as_str()) != Some("deleted"))
            .map(|v| format!("volume {}", v.volume_id().unwrap())),
    );
    let elb = aws.elb_client();
    let mut arns: Vec<String> = Vec::new();
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    arns.extend(
        lbs.load_balancers()
            .iter()
            .filter_map(|l| l.load_balancer_arn().map(String::from)),
    );
    let tgs = elb.describe_target_groups().send().await.unwrap();
    arns.extend(
        tgs.target_groups()
            .iter()
            .filter_map(|g| g.target_group_arn().map(String::from)),
    );
    for chunk in arns.chunks(20) {
        let tags = elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        for d in tags.tag_descriptions() {
            if d.tags()
                .iter()
                .any(|t| t.key() == Some("triad-cluster") && t.value() == Some(name))
            {
                out.push(format!("elb {}", d.resource_arn().unwrap()));
            }
        }
    }
    out
}

async fn full_flow(lb_section: &str, l7: bool) {
    let aws = Arc::new(provider(crate::default_vpc()).await);
    let name = unique(if l7 { "e2e7" } else { "e2e4" });
    let zone = format!("{name}.test");
    hosted_zone(aws.route53_client(), &zone).await;
    let spec = spec(&aws, &name, &zone, lb_section).await;
    let counter = CallCounter::new();
    let layered = Arc::new(Stack::new(aws.clone()).count(counter.clone()).build());
    let triad = Orchestrator::new(layered.clone(), layered.clone(), layered);

    let plan = triad.plan(&spec).await.unwrap();
    assert!(plan.changes() >= 5, "{plan}");
    let inv = triad.apply(&plan).await.unwrap();
    assert_eq!(inv.tls_external, l7);

    // Nodes: 3, over 3 zones, tagged, with the proxy in their user data, IMDSv2.
    let ec2 = aws.ec2_client();
    let out = ec2
        .describe_instances()
        .filters(tag_filter("triad-cluster", &name))
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let instances: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(instances.len(), 3);
    let zones: BTreeSet<&str> = instances
        .iter()
        .map(|i| i.placement().unwrap().availability_zone().unwrap())
        .collect();
    assert_eq!(zones.len(), 3, "{zones:?}");
    let mut node_ids = BTreeSet::new();
    for i in &instances {
        let id = i.instance_id().unwrap();
        node_ids.insert(id.to_owned());
        let tag = |k: &str| {
            i.tags()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
        };
        assert_eq!(tag("triad-cluster"), Some(name.as_str()));
        assert_eq!(tag("triad-role"), Some("node"));
        assert_eq!(tag("team"), Some("platform"));
        assert!(tag("Name").unwrap().starts_with(&format!("{name}-")));
        assert_eq!(i.instance_type().unwrap().as_str(), "t3.large");
        assert_eq!(
            i.metadata_options()
                .and_then(|m| m.http_tokens())
                .map(|t| t.as_str()),
            Some("required"),
            "IMDSv2 must be required"
        );
        assert_eq!(
            i.metadata_options()
                .and_then(|m| m.http_put_response_hop_limit()),
            Some(1),
            "IMDS must not be reachable from pods"
        );
        // No public address, though the default subnet maps one on launch.
        assert_eq!(i.public_ip_address(), None, "{id} has a public IP");
        assert!(
            i.network_interfaces()
                .iter()
                .all(|n| n.association().and_then(|a| a.public_ip()).is_none()),
            "{id}: {:?}",
            i.network_interfaces()
        );
        let ud = ec2
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .unwrap();
        let b64 = ud.user_data().and_then(|u| u.value()).expect("user data");
        let text = String::from_utf8(aws_smithy_types::base64::decode(b64).unwrap()).unwrap();
        assert!(text.starts_with("#cloud-config"), "{text}");
        assert!(
            text.contains("http://proxy.corp.test:3128"),
            "proxy missing: {text}"
        );
        assert!(text.contains("corp.test"), "no_proxy missing");
        // The nodes' VPC CIDR, read back here, is in their NO_PROXY although the
        // spec lists no nodes.network_cidrs (the provider reported it at plan).
        let vpc = ec2
            .describe_vpcs()
            .vpc_ids(i.vpc_id().unwrap())
            .send()
            .await
            .unwrap();
        let vpc_cidr = vpc.vpcs()[0].cidr_block().unwrap();
        assert!(
            text.contains(vpc_cidr),
            "VPC CIDR {vpc_cidr} missing from NO_PROXY"
        );
        assert!(plan
            .spec()
            .node_network_cidrs()
            .iter()
            .any(|c| c == vpc_cidr));
        // Volumes carry the tags too.
        let vols = ec2
            .describe_volumes()
            .filters(
                Filter::builder()
                    .name("attachment.instance-id")
                    .values(id)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert!(!vols.volumes().is_empty());
        for v in vols.volumes() {
            assert!(
                v.tags()
                    .iter()
                    .any(|t| t.key() == Some("triad-cluster") && t.value() == Some(name.as_str())),
                "volume {:?} of {id} is not tagged: {:?}",
                v.volume_id(),
                v.tags()
            );
        }
    }
    let inv_ids: BTreeSet<String> = inv.nodes.iter().map(|n| n.id.clone()).collect();
    assert_eq!(inv_ids, node_ids);

    // Security group: inter-node ports from itself, SSH only from the spec's CIDR.
    let sgs = ec2
        .describe_security_groups()
        .filters(tag_filter("triad-cluster", &name))
        .send()
        .await
        .unwrap();
    let nodes_sg = sgs
        .security_groups()
        .iter()
        .find(|g| g.group_name() == Some(format!("{name}-nodes").as_str()))
        .expect("nodes security group");
    let sg_id = nodes_sg.group_id().unwrap();
    let perm = |proto: &str, from: i32| {
        nodes_sg
            .ip_permissions()
            .iter()
            .filter(|p| p.ip_protocol() == Some(proto) && p.from_port() == Some(from))
            .collect::<Vec<_>>()
    };
    for (proto, port) in [
        ("tcp", 2379),
        ("tcp", 6443),
        ("tcp", 9345),
        ("tcp", 10250),
        ("udp", 8472),
    ] {
        let p = perm(proto, port);
        assert!(
            p.iter().any(|p| p
                .user_id_group_pairs()
                .iter()
                .any(|g| g.group_id() == Some(sg_id))),
            "{proto}/{port} not open between nodes: {:?}",
            nodes_sg.ip_permissions()
        );
    }
    let ssh: Vec<&str> = perm("tcp", 22)
        .iter()
        .flat_map(|p| p.ip_ranges())
        .filter_map(|r| r.cidr_ip())
        .collect();
    assert_eq!(ssh, ["198.51.100.0/24"]);

    // Balancer, target groups, listeners, targets.
    let elb = aws.elb_client();
    let lb = elb
        .describe_load_balancers()
        .load_balancer_arns(&inv.load_balancer.id)
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .clone();
    assert_eq!(
        lb.r#type().unwrap().as_str(),
        if l7 { "application" } else { "network" }
    );
    assert_eq!(lb.scheme().unwrap().as_str(), "internet-facing");
    let tgs = elb
        .describe_target_groups()
        .load_balancer_arn(&inv.load_balancer.id)
        .send()
        .await
        .unwrap();
    let want_groups: &[(&str, &str, i32)] = if l7 {
        &[("http-80", "HTTP", 80)]
    } else {
        // RKE2 (the default distribution): the registration address on the NLB.
        &[
            ("tcp-443", "TCP", 443),
            ("tcp-80", "TCP", 80),
            ("tcp9345", "TCP", 9345),
            ("tcp6443", "TCP", 6443),
        ]
    };
    assert_eq!(
        tgs.target_groups().len(),
        want_groups.len(),
        "{:?}",
        tgs.target_groups()
    );
    for (part, proto, port) in want_groups {
        let g = tgs
            .target_groups()
            .iter()
            .find(|g| g.target_group_name() == Some(format!("{name}-{part}").as_str()))
            .unwrap_or_else(|| panic!("no target group {name}-{part}"));
        assert_eq!(g.protocol().unwrap().as_str(), *proto);
        assert_eq!(g.port(), Some(*port));
        assert_eq!(g.target_type().unwrap().as_str(), "instance");
        if matches!(port, 9345 | 6443) {
            assert_eq!(
                g.health_check_protocol(),
                Some(&ProtocolEnum::Tcp),
                "{part}"
            );
            assert_eq!(g.health_check_port(), Some("traffic-port"), "{part}");
            // A node registering through the NLB to itself must not hairpin-fail.
            let attrs = elb
                .describe_target_group_attributes()
                .target_group_arn(g.target_group_arn().unwrap())
                .send()
                .await
                .unwrap();
            let preserve = attrs
                .attributes()
                .iter()
                .find(|a| a.key() == Some("preserve_client_ip.enabled"))
                .and_then(|a| a.value());
            assert_eq!(preserve, Some("false"), "{part}: {:?}", attrs.attributes());
        } else {
            assert_eq!(g.health_check_protocol(), Some(&ProtocolEnum::Http));
            assert_eq!(g.health_check_port(), Some("80"));
            assert_eq!(g.health_check_path(), Some("/healthz"));
        }
        assert_eq!(g.healthy_threshold_count(), Some(3));
        assert_eq!(g.unhealthy_threshold_count(), Some(3));
        assert_eq!(g.health_check_timeout_seconds(), Some(6));
        assert_eq!(g.health_check_interval_seconds(), Some(10));
        let health = elb
            .describe_target_health()
            .target_group_arn(g.target_group_arn().unwrap())
            .send()
            .await
            .unwrap();
        let targets: BTreeSet<String> = health
            .target_health_descriptions()
            .iter()
            .map(|d| d.target().unwrap().id().unwrap().to_owned())
            .collect();
        assert_eq!(targets, node_ids, "targets of {part}");
    }
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&inv.load_balancer.id)
        .send()
        .await
        .unwrap();
    let by_port = |p: i32| {
        listeners
            .listeners()
            .iter()
            .find(|l| l.port() == Some(p))
            .unwrap()
    };
    if l7 {
        let https = by_port(443);
        assert_eq!(https.protocol(), Some(&ProtocolEnum::Https));
        assert_eq!(https.certificates()[0].certificate_arn(), Some(CERT));
        assert_eq!(
            https.ssl_policy(),
            Some("ELBSecurityPolicy-TLS13-1-2-2021-06"),
            "TLS 1.2 and 1.3 only"
        );
        let http = by_port(80);
        assert_eq!(http.protocol(), Some(&ProtocolEnum::Http));
        let redirect = &http.default_actions()[0];
        assert_eq!(redirect.r#type(), Some(&ActionTypeEnum::Redirect));
        assert_eq!(
            redirect.redirect_config().unwrap().protocol(),
            Some("HTTPS")
        );
    } else {
        for p in [80, 443, 9345, 6443] {
            let l = by_port(p);
            assert_eq!(l.protocol(), Some(&ProtocolEnum::Tcp));
            let tg = l.default_actions()[0].target_group_arn().unwrap();
            let g = tgs
                .target_groups()
                .iter()
                .find(|g| g.target_group_arn() == Some(tg))
                .unwrap();
            assert_eq!(
                g.port(),
                Some(p),
                "listener {p} forwards to the group of port {p}"
            );
        }
        // The registration ports: the nodes take them from the balancer's group
        // (besides each other), the balancer's group only from inside the VPC.
        let lb_sg = lb.security_groups().first().expect("the NLB has a group");
        let lb_group = ec2
            .describe_security_groups()
            .group_ids(lb_sg)
            .send()
            .await
            .unwrap();
        for p in [9345, 6443] {
            assert!(
                perm("tcp", p).iter().any(|r| r
                    .user_id_group_pairs()
                    .iter()
                    .any(|g| g.group_id() == Some(lb_sg.as_str()))),
                "{p} not open from the balancer's group"
            );
            let from: Vec<_> = lb_group.security_groups()[0]
                .ip_permissions()
                .iter()
                .filter(|r| r.from_port() == Some(p))
                .flat_map(|r| r.ip_ranges())
                .filter_map(|r| r.cidr_ip())
                .collect();
            assert!(
                !from.is_empty() && !from.contains(&"0.0.0.0/0"),
                "{p}: {from:?}"
            );
        }
        let reg = inv.kubernetes.as_ref().unwrap();
        assert_eq!(
            reg.join_url.as_deref(),
            Some(format!("https://rancher.{zone}:9345").as_str())
        );
    }
    // The balancer has its own group, open to the world (the spec's default ingress);
    // the nodes take 80 (l7) or 80/443 (l4, where the NLB keeps client addresses) from
    // that group only, never from a CIDR.
    let lb_sg = lb
        .security_groups()
        .first()
        .expect("the balancer has a security group");
    let web: Vec<_> = nodes_sg
        .ip_permissions()
        .iter()
        .filter(|p| matches!(p.from_port(), Some(80 | 443)))
        .collect();
    assert_eq!(web.len(), if l7 { 1 } else { 2 }, "{web:?}");
    for p in &web {
        assert!(p.ip_ranges().is_empty(), "nodes open to a CIDR: {p:?}");
        let sources: Vec<_> = p
            .user_id_group_pairs()
            .iter()
            .map(|g| g.group_id())
            .collect();
        assert_eq!(sources, [Some(lb_sg.as_str())], "{p:?}");
    }
    let lb_group = ec2
        .describe_security_groups()
        .group_ids(lb_sg)
        .send()
        .await
        .unwrap();
    let world: Vec<_> = lb_group.security_groups()[0]
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(443))
        .flat_map(|p| p.ip_ranges())
        .filter_map(|r| r.cidr_ip())
        .collect();
    assert_eq!(world, ["0.0.0.0/0"]);

    // Route 53: alias to the balancer, and the ownership TXT.
    let zone_id = hosted_zone_id(&aws, &zone).await;
    let sets = aws
        .route53_client()
        .list_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .send()
        .await
        .unwrap();
    let fqdn = format!("rancher.{zone}.");
    let a = sets
        .resource_record_sets()
        .iter()
        .find(|r| r.name() == fqdn && r.r#type() == &RrType::A)
        .expect("the A alias record");
    let alias = a.alias_target().expect("an alias");
    assert_eq!(
        alias.dns_name().trim_end_matches('.').to_ascii_lowercase(),
        lb.dns_name().unwrap().to_ascii_lowercase()
    );
    assert_eq!(
        alias.hosted_zone_id(),
        lb.canonical_hosted_zone_id().unwrap()
    );
    let txt = sets
        .resource_record_sets()
        .iter()
        .find(|r| r.name() == format!("_triad.{fqdn}") && r.r#type() == &RrType::Txt)
        .expect("the ownership TXT");
    let owner = txt.resource_records()[0].value();
    assert!(
        owner.starts_with(&format!(
            "\"heritage=triad,triad-cluster={name},triad-cluster-id="
        )) && owner.ends_with(",kind=alias\""),
        "{owner}"
    );
    assert_eq!(inv.dns.kind, RecordKind::Alias);
    assert!(matches!(
        &inv.dns.target,
        Endpoint::Hostname {
            alias_zone: Some(_),
            ..
        }
    ));

    // Again: nothing to do, and not one mutating call.
    counter.reset();
    let again = triad.plan(&spec).await.unwrap();
    assert!(again.is_noop(), "{again}");
    let inv2 = triad.apply(&again).await.unwrap();
    assert_eq!(
        counter.mutating(),
        0,
        "a rerun mutated: {:?}",
        counter.snapshot()
    );
    assert_eq!(inv2.load_balancer.id, inv.load_balancer.id);

    // Destroy: nothing tagged is left.
    let report = triad.destroy(&spec.cluster()).await.unwrap();
    // 3 nodes, the balancer, its target groups (l7: 1; l4: 80, 443 and the RKE2
    // registration ports 9345 and 6443), the record, the security groups of the
    // nodes and of the balancer.
    assert_eq!(
        report.deleted.len(),
        if l7 { 8 } else { 11 },
        "{:?}",
        report.deleted
    );
    let left = tagged(&aws, &name).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    let sets = aws
        .route53_client()
        .list_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .send()
        .await
        .unwrap();
    assert!(
        sets.resource_record_sets()
            .iter()
            .all(|r| !r.name().contains("rancher")),
        "records left: {:?}",
        sets.resource_record_sets()
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn l4_nlb_end_to_end() {
    full_flow("mode = \"l4\"", false).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn l7_alb_end_to_end() {
    full_flow(
        &format!("mode = \"l7\"\ncertificate = \"{CERT}\"\nregistration = \"first-node\""),
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn l7_with_balancer_registration_is_refused_at_plan() {
    let aws = Arc::new(provider(crate::default_vpc()).await);
    let name = unique("e2ereg");
    let zone = format!("{name}.test");
    let spec = spec(
        &aws,
        &name,
        &zone,
        &format!("mode = \"l7\"\ncertificate = \"{CERT}\""),
    )
    .await;
    let triad = Orchestrator::new(aws.clone(), aws.clone(), aws.clone());
    let err = triad.plan(&spec).await.unwrap_err();
    let problems = err.spec_problems().expect("a spec problem");
    assert!(problems.names("load_balancer.registration"), "{err}");
}
