//! The orchestrator end to end against moto, everything read back with the SDK.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_sdk_ec2::types::Filter;
use aws_sdk_elasticloadbalancingv2::types::{ActionTypeEnum, ProtocolEnum};
use aws_sdk_route53::types::RrType;
use triad_core::layers::{CallCounter, Stack};
use triad_core::model::{Endpoint, RecordKind};
use triad_core::orchestrator::LbAction;
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
        let text = user_data(ec2, id).await;
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
            let preserve = preserve_client_ip(elb, g.target_group_arn().unwrap()).await;
            assert_eq!(preserve.as_deref(), Some("false"), "{part}");
        } else {
            assert_eq!(g.health_check_protocol(), Some(&ProtocolEnum::Http));
            assert_eq!(g.health_check_port(), Some("80"));
            assert_eq!(g.health_check_path(), Some("/healthz"));
        }
        assert_eq!(g.healthy_threshold_count(), Some(3));
        assert_eq!(g.unhealthy_threshold_count(), Some(3));
        assert_eq!(g.health_check_timeout_seconds(), Some(6));
        assert_eq!(g.health_check_interval_seconds(), Some(10));
        let targets = group_targets(elb, g.target_group_arn().unwrap()).await;
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

/// The ports of the balancer `arn`'s listeners, sorted, read with the SDK.
async fn listener_ports(elb: &aws_sdk_elasticloadbalancingv2::Client, arn: &str) -> Vec<i32> {
    let out = elb
        .describe_listeners()
        .load_balancer_arn(arn)
        .send()
        .await
        .unwrap();
    let mut ports: Vec<i32> = out.listeners().iter().map(|l| l.port().unwrap()).collect();
    ports.sort();
    ports
}

/// The target group `tg`'s `preserve_client_ip.enabled`, read with the SDK.
async fn preserve_client_ip(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    tg: &str,
) -> Option<String> {
    let attrs = elb
        .describe_target_group_attributes()
        .target_group_arn(tg)
        .send()
        .await
        .unwrap();
    attrs
        .attributes()
        .iter()
        .find(|a| a.key() == Some("preserve_client_ip.enabled"))
        .and_then(|a| a.value())
        .map(str::to_owned)
}

/// The instance ids registered in the target group `tg`, read with the SDK.
async fn group_targets(elb: &aws_sdk_elasticloadbalancingv2::Client, tg: &str) -> BTreeSet<String> {
    let health = elb
        .describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .unwrap();
    health
        .target_health_descriptions()
        .iter()
        .map(|d| d.target().unwrap().id().unwrap().to_owned())
        .collect()
}

/// The user data of instance `id`, decoded, read with the SDK.
pub(crate) async fn user_data(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    let ud = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let b64 = ud.user_data().and_then(|u| u.value()).expect("user data");
    String::from_utf8(aws_smithy_types::base64::decode(b64).unwrap()).unwrap()
}

/// An ALB with RKE2 registering through the balancer: an internal NLB beside it, the
/// companion `<name>-reg`, carries TCP 9345/6443 to target groups holding every
/// node, and the nodes join through the companion's DNS name. Read back with the SDK.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn l7_with_balancer_registration_gets_an_internal_companion_nlb() {
    let aws = Arc::new(provider(crate::default_vpc()).await);
    let name = unique("e2ereg");
    let zone = format!("{name}.test");
    hosted_zone(aws.route53_client(), &zone).await;
    // The join token, from a file as a user gives it (a secret; never in the spec).
    let token = std::env::temp_dir().join(format!("{name}.token"));
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    let section = |extra: &str| {
        format!(
            "mode = \"l7\"\ncertificate = \"{CERT}\"\n{extra}\n\
             [kubernetes]\ninstall = true\ntoken_file = {:?}",
            token.display().to_string()
        )
    };
    let spec = spec(&aws, &name, &zone, &section("")).await;
    assert_eq!(spec.registration_ports(), [9345, 6443]);
    let triad = Orchestrator::new(aws.clone(), aws.clone(), aws.clone());
    let inv = triad
        .apply(&triad.plan(&spec).await.unwrap())
        .await
        .unwrap();

    // The two balancers, read back by name.
    let elb = aws.elb_client();
    let companion_name = format!("{name}-reg");
    let found = elb
        .describe_load_balancers()
        .names(&name)
        .names(&companion_name)
        .send()
        .await
        .unwrap();
    let by_name = |n: &str| {
        found
            .load_balancers()
            .iter()
            .find(|l| l.load_balancer_name() == Some(n))
            .unwrap_or_else(|| panic!("no balancer {n}"))
            .clone()
    };
    let (alb, nlb) = (by_name(&name), by_name(&companion_name));
    assert_eq!(alb.r#type().unwrap().as_str(), "application");
    assert_eq!(alb.scheme().unwrap().as_str(), "internet-facing");
    assert_eq!(nlb.r#type().unwrap().as_str(), "network");
    assert_eq!(
        nlb.scheme().unwrap().as_str(),
        "internal",
        "only the nodes dial the companion"
    );
    let subnets = |l: &aws_sdk_elasticloadbalancingv2::types::LoadBalancer| {
        l.availability_zones()
            .iter()
            .filter_map(|z| z.subnet_id().map(str::to_owned))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(subnets(&nlb), subnets(&alb), "the same subnets");
    assert_eq!(subnets(&nlb).len(), 3);
    assert_eq!(
        nlb.security_groups(),
        alb.security_groups(),
        "the companion shares the ALB's group"
    );
    let tags = elb
        .describe_tags()
        .resource_arns(nlb.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    let tag = |k: &str| {
        tags.tag_descriptions()[0]
            .tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_owned)
    };
    assert_eq!(tag("triad-cluster").as_deref(), Some(name.as_str()));
    assert_eq!(tag("triad-role").as_deref(), Some("lb"));
    assert_eq!(tag("triad-part").as_deref(), Some("registration"));
    let dns = nlb.dns_name().unwrap().to_ascii_lowercase();
    assert_eq!(
        inv.load_balancer.registration_endpoint,
        Some(Endpoint::Hostname {
            name: dns.clone(),
            alias_zone: None
        })
    );
    assert_eq!(
        inv.kubernetes.as_ref().unwrap().join_url.as_deref(),
        Some(format!("https://{dns}:9345").as_str())
    );

    // The companion's listeners: TCP 9345 and 6443, each to its port's group
    // (TCP health check, client IP preservation off) holding exactly the nodes.
    let node_ids: BTreeSet<String> = inv.nodes.iter().map(|n| n.id.clone()).collect();
    assert_eq!(node_ids.len(), 3);
    let nlb_arn = nlb.load_balancer_arn().unwrap();
    assert_eq!(listener_ports(elb, nlb_arn).await, [6443, 9345]);
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(nlb_arn)
        .send()
        .await
        .unwrap();
    for l in listeners.listeners() {
        let port = l.port().unwrap();
        assert_eq!(l.protocol(), Some(&ProtocolEnum::Tcp));
        let tg = l.default_actions()[0].target_group_arn().unwrap();
        let g = elb
            .describe_target_groups()
            .target_group_arns(tg)
            .send()
            .await
            .unwrap()
            .target_groups()[0]
            .clone();
        assert_eq!(
            g.target_group_name(),
            Some(format!("{name}-tcp{port}").as_str())
        );
        assert_eq!(
            (g.protocol(), g.port()),
            (Some(&ProtocolEnum::Tcp), Some(port))
        );
        assert_eq!(g.health_check_protocol(), Some(&ProtocolEnum::Tcp));
        assert_eq!(g.health_check_port(), Some("traffic-port"));
        let preserve = preserve_client_ip(elb, tg).await;
        assert_eq!(preserve.as_deref(), Some("false"), "{port}");
        assert_eq!(group_targets(elb, tg).await, node_ids, "targets of {port}");
    }
    // The ALB keeps its own two listeners.
    assert_eq!(
        listener_ports(elb, alb.load_balancer_arn().unwrap()).await,
        [80, 443]
    );

    // The shared group takes 9345/6443 from the VPC only; the nodes take them from
    // that group.
    let ec2 = aws.ec2_client();
    let lb_sg = alb.security_groups()[0].clone();
    let groups = ec2
        .describe_security_groups()
        .filters(tag_filter("triad-cluster", &name))
        .send()
        .await
        .unwrap();
    let group = |id: Option<&str>, group_name: Option<&str>| {
        groups
            .security_groups()
            .iter()
            .find(|g| {
                id.is_none_or(|i| g.group_id() == Some(i))
                    && group_name.is_none_or(|n| g.group_name() == Some(n))
            })
            .unwrap()
            .clone()
    };
    let lb_group = group(Some(&lb_sg), None);
    let nodes_group = group(None, Some(&format!("{name}-nodes")));
    let vpc = ec2
        .describe_vpcs()
        .vpc_ids(alb.vpc_id().unwrap())
        .send()
        .await
        .unwrap();
    let vpc_cidr = vpc.vpcs()[0].cidr_block().unwrap().to_owned();
    for p in [9345, 6443] {
        let from: Vec<&str> = lb_group
            .ip_permissions()
            .iter()
            .filter(|r| r.from_port() == Some(p))
            .flat_map(|r| r.ip_ranges())
            .filter_map(|r| r.cidr_ip())
            .collect();
        assert_eq!(from, [vpc_cidr.as_str()], "{p}");
        assert!(
            nodes_group
                .ip_permissions()
                .iter()
                .filter(|r| r.from_port() == Some(p))
                .flat_map(|r| r.user_id_group_pairs())
                .any(|g| g.group_id() == Some(lb_sg.as_str())),
            "{p} not open from the balancer's group"
        );
    }

    // The nodes' user data: nodes 2 and 3 join through the companion; all of them
    // name it in tls-san and NO_PROXY.
    for node in &inv.nodes {
        let text = user_data(ec2, &node.id).await;
        let first = node.name == format!("{name}-1");
        let server = format!("server: https://{dns}:9345");
        assert_eq!(text.contains(&server), !first, "{}: {text}", node.name);
        assert!(
            text.lines().any(|l| l.trim() == format!("- {dns}")),
            "{}: the companion not in tls-san: {text}",
            node.name
        );
        let no_proxy: Vec<&str> = text.lines().filter(|l| l.contains("NO_PROXY=")).collect();
        assert!(!no_proxy.is_empty(), "{text}");
        assert!(
            no_proxy.iter().all(|l| l.contains(&dns)),
            "{}: the companion not in NO_PROXY: {no_proxy:?}",
            node.name
        );
    }

    // A rerun in a new process: nothing to do, no mutating call, few reads.
    let (_, fresh, calls) = crate::day2::counted().await;
    let plan = fresh.plan(&spec).await.unwrap();
    assert!(plan.is_noop(), "{plan}");
    let inv2 = fresh.apply(&plan).await.unwrap();
    assert_eq!(
        inv2.load_balancer.registration_endpoint,
        inv.load_balancer.registration_endpoint
    );
    let (reads, writes, all) = crate::day2::counts(&calls);
    eprintln!("an l7 no-op rerun: {reads} reads: {all:?}");
    assert_eq!(writes, 0, "a no-op rerun mutated: {all:?}");
    assert!(
        reads <= crate::day2::NOOP_READS,
        "a no-op rerun made {reads} reads (at most {}): {all:?}",
        crate::day2::NOOP_READS
    );

    // Day 2: a new health check path is an in-place update; the companion stays,
    // its groups keep their TCP check, and the next rerun is quiet.
    let spec2 = self::spec(
        &aws,
        &name,
        &zone,
        &section("health_check_path = \"/ping\""),
    )
    .await;
    let plan = triad.plan(&spec2).await.unwrap();
    assert!(
        matches!(plan.load_balancer, LbAction::Update { .. }),
        "{plan}"
    );
    let inv3 = triad.apply(&plan).await.unwrap();
    assert_eq!(
        inv3.load_balancer.registration_endpoint,
        inv.load_balancer.registration_endpoint
    );
    let groups = elb
        .describe_target_groups()
        .names(format!("{name}-http-80"))
        .names(format!("{name}-tcp9345"))
        .names(format!("{name}-tcp6443"))
        .send()
        .await
        .unwrap();
    let checks: BTreeSet<(String, String, Option<String>)> = groups
        .target_groups()
        .iter()
        .map(|g| {
            (
                g.target_group_name().unwrap().to_owned(),
                g.health_check_protocol().unwrap().as_str().to_owned(),
                g.health_check_path().map(str::to_owned),
            )
        })
        .collect();
    assert!(
        checks.contains(&(
            format!("{name}-http-80"),
            "HTTP".into(),
            Some("/ping".into())
        )),
        "{checks:?}"
    );
    assert_eq!(
        checks.iter().filter(|c| c.1 == "TCP").count(),
        2,
        "{checks:?}"
    );
    let still = elb
        .describe_load_balancers()
        .names(&companion_name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        still.load_balancers()[0].load_balancer_arn(),
        nlb.load_balancer_arn(),
        "the companion is kept"
    );
    crate::day2::rerun_is_quiet(&spec2).await;

    // Destroy: the nodes, both balancers, the three target groups, the record and
    // the two security groups; nothing tagged is left.
    let report = triad.destroy(&spec.cluster()).await.unwrap();
    assert_eq!(report.deleted.len(), 11, "{:?}", report.deleted);
    let left = tagged(&aws, &name).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    let groups_left: Vec<String> = elb
        .describe_target_groups()
        .send()
        .await
        .unwrap()
        .target_groups()
        .iter()
        .filter_map(|g| g.target_group_name())
        .filter(|g| g.starts_with(name.as_str()))
        .map(str::to_owned)
        .collect();
    assert!(groups_left.is_empty(), "{groups_left:?}");
    std::fs::remove_file(&token).unwrap();
}
