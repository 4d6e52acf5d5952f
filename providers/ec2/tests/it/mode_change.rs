//! A balancer mode change against moto (l4 → l7): the ALB is made beside the NLB
//! with its own name, target groups, listeners and security group, the record moves
//! to it, and only then do the NLB and its parts go. A stop between those steps
//! converges on the rerun. Read back with the SDK's own clients.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_sdk_elasticloadbalancingv2::types::{LoadBalancerTypeEnum, ProtocolEnum};
use triad_core::orchestrator::{LbAction, NodeAction};
use triad_core::spec::{ClusterSpec, ValidSpec};
use triad_core::Orchestrator;

use crate::day2::{acm_cert, counted, rerun_is_quiet};
use crate::scripted::{scripted, Fault};
use crate::{hosted_zone, ubuntu_ami, unique};

fn spec(name: &str, image: &str, l7_cert: Option<&str>) -> ValidSpec {
    let lb = match l7_cert {
        Some(cert) => format!("mode = \"l7\"\ncertificate = \"{cert}\""),
        None => "mode = \"l4\"".to_owned(),
    };
    spec_with(name, image, &lb)
}

/// A 3-node cluster whose `[load_balancer]` section has `lb` (and first-node
/// registration).
fn spec_with(name: &str, image: &str, lb: &str) -> ValidSpec {
    ClusterSpec::from_toml(&format!(
        "name = \"{name}\"\nregion = \"us-east-1\"\n\
         zones = [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"]\n\
         [nodes]\nsize = \"t3.micro\"\nimage = \"{image}\"\n\
         [load_balancer]\n{lb}\nregistration = \"first-node\"\n\
         [dns]\nzone = \"{name}.test\"\nhostname = \"rancher.{name}.test\"\n"
    ))
    .unwrap()
    .validate()
    .unwrap()
}

/// ELBv2's answer to a call it refuses (not retried by the SDK).
fn elb_denied() -> String {
    "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">\
     <Error><Type>Sender</Type><Code>AccessDenied</Code><Message>scripted stop</Message></Error>\
     <RequestId>req-1</RequestId></ErrorResponse>"
        .into()
}

/// The alias target of the record at `host`, read with the SDK.
async fn alias_of(aws: &triad_ec2::Ec2, zone: &str, host: &str) -> String {
    crate::record_sets(aws, zone, host)
        .await
        .iter()
        .find_map(|s| {
            s.alias_target()
                .map(|a| a.dns_name().trim_end_matches('.').to_owned())
        })
        .unwrap_or_else(|| panic!("no alias record at {host}"))
}

/// The balancers named `names` that exist, read with the SDK: (name, ARN, type, DNS name).
async fn balancers(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    names: &[String],
) -> Vec<(String, String, LoadBalancerTypeEnum, String)> {
    let mut out = Vec::new();
    for n in names {
        if let Ok(found) = elb.describe_load_balancers().names(n).send().await {
            for lb in found.load_balancers() {
                out.push((
                    lb.load_balancer_name().unwrap().to_owned(),
                    lb.load_balancer_arn().unwrap().to_owned(),
                    lb.r#type().unwrap().clone(),
                    lb.dns_name().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

/// The names of every target group ELBv2 has whose name starts with `prefix`.
async fn group_names(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    prefix: &str,
) -> BTreeSet<String> {
    let out = elb.describe_target_groups().send().await.unwrap();
    out.target_groups()
        .iter()
        .filter_map(|g| g.target_group_name())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The cluster's security groups (name, id), and the groups the nodes' group admits
/// traffic from (its own aside).
async fn security_groups(
    ec2: &aws_sdk_ec2::Client,
    name: &str,
) -> (Vec<(String, String)>, BTreeSet<String>) {
    let out = ec2
        .describe_security_groups()
        .filters(crate::tag_filter("triad-cluster", name))
        .send()
        .await
        .unwrap();
    let mut groups: Vec<(String, String)> = out
        .security_groups()
        .iter()
        .map(|g| {
            (
                g.group_name().unwrap().to_owned(),
                g.group_id().unwrap().to_owned(),
            )
        })
        .collect();
    groups.sort();
    let nodes = out
        .security_groups()
        .iter()
        .find(|g| g.group_name() == Some(format!("{name}-nodes").as_str()))
        .expect("the nodes' group");
    let sources = nodes
        .ip_permissions()
        .iter()
        .flat_map(|p| p.user_id_group_pairs())
        .filter_map(|p| p.group_id())
        .filter(|g| Some(*g) != nodes.group_id())
        .map(str::to_owned)
        .collect();
    (groups, sources)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn l4_to_l7_makes_the_alb_switches_dns_then_deletes_the_nlb() {
    let (aws, triad, _) = counted().await;
    let name = unique("mode");
    let zone = format!("{name}.test");
    let host = format!("rancher.{zone}");
    hosted_zone(aws.route53_client(), &zone).await;
    let image = ubuntu_ami(aws.ec2_client()).await;
    let l4 = spec(&name, &image, None);
    let inv = triad.apply(&triad.plan(&l4).await.unwrap()).await.unwrap();
    let names = [name.clone(), format!("{name}-b")];
    let nlb = balancers(aws.elb_client(), &names).await;
    assert_eq!(nlb.len(), 1, "{nlb:?}");
    assert_eq!(
        (nlb[0].0.as_str(), &nlb[0].2),
        (name.as_str(), &LoadBalancerTypeEnum::Network)
    );
    assert_eq!(alias_of(&aws, &zone, &host).await, nlb[0].3);
    let nlb_groups = group_names(aws.elb_client(), &name).await;
    assert_eq!(nlb_groups.len(), 2, "{nlb_groups:?}");
    let node_ids: BTreeSet<String> = inv.nodes.iter().map(|n| n.id.clone()).collect();

    // The plan: the ALB made first, the NLB retired after the record moves.
    let cert = acm_cert(&host);
    let l7 = spec(&name, &image, Some(&cert));
    let plan = triad.plan(&l7).await.unwrap();
    match &plan.load_balancer {
        LbAction::Replace {
            lb,
            name: new,
            make_first,
            reinstall_rancher,
            ..
        } => {
            assert_eq!(lb.id, nlb[0].1);
            assert_eq!(new, &names[1]);
            assert!(*make_first && *reinstall_rancher, "{plan}");
        }
        other => panic!("a replace of the balancer: {other:?}\n{plan}"),
    }
    assert_eq!(
        plan.lb_retire
            .iter()
            .map(|l| l.id.as_str())
            .collect::<Vec<_>>(),
        [nlb[0].1.as_str()],
        "{plan}"
    );
    assert!(
        plan.nodes
            .iter()
            .all(|a| matches!(a, NodeAction::Keep { .. })),
        "{plan}"
    );
    assert!(
        plan.to_string().contains("there is always a balancer"),
        "{plan}"
    );

    // A stop after the ALB is made and the record moved, before the NLB goes: every
    // DeleteListener is refused, as if the process died there.
    let (stopping, _) = scripted(|action, _| {
        (action == "DeleteListener").then(|| Fault::Respond(403, elb_denied()))
    })
    .await;
    let stopping = Arc::new(stopping);
    let stopper = Orchestrator::new(stopping.clone(), stopping.clone(), stopping.clone());
    let err = stopper.apply(&stopper.plan(&l7).await.unwrap()).await;
    assert!(err.is_err(), "the scripted stop fails the apply");
    let both = balancers(aws.elb_client(), &names).await;
    assert_eq!(both.len(), 2, "both balancers exist side by side: {both:?}");
    let alb = both.iter().find(|b| b.0 == names[1]).unwrap().clone();
    assert_eq!(alb.2, LoadBalancerTypeEnum::Application);
    assert_eq!(
        alias_of(&aws, &zone, &host).await,
        alb.3,
        "the record moved first"
    );
    let (groups, sources) = security_groups(aws.ec2_client(), &name).await;
    assert_eq!(groups.len(), 3, "nodes, nlb and b-alb: {groups:?}");
    assert_eq!(
        sources.len(),
        2,
        "the nodes admit both balancers meanwhile: {sources:?}"
    );

    // The rerun (a new process) finds both, keeps the ALB and retires the NLB.
    let (_, rerun, _) = counted().await;
    let plan = rerun.plan(&l7).await.unwrap();
    assert!(
        matches!(&plan.load_balancer, LbAction::Keep { lb } if lb.id == alb.1),
        "{plan}"
    );
    assert_eq!(plan.lb_retire.len(), 1, "{plan}");
    let inv2 = rerun.apply(&plan).await.unwrap();
    assert_eq!(inv2.load_balancer.id, alb.1);

    // Read back: the ALB with its listeners (80 redirects, 443 HTTPS with the
    // certificate), the nodes its targets; the NLB and its target groups and
    // security group gone; the record an alias of the ALB.
    assert_eq!(
        balancers(aws.elb_client(), &names).await,
        std::slice::from_ref(&alb)
    );
    let listeners = aws
        .elb_client()
        .describe_listeners()
        .load_balancer_arn(&alb.1)
        .send()
        .await
        .unwrap();
    let mut ports: Vec<(i32, ProtocolEnum)> = listeners
        .listeners()
        .iter()
        .map(|l| (l.port().unwrap(), l.protocol().unwrap().clone()))
        .collect();
    ports.sort_by_key(|p| p.0);
    assert_eq!(
        ports,
        [(80, ProtocolEnum::Http), (443, ProtocolEnum::Https)]
    );
    let https = listeners
        .listeners()
        .iter()
        .find(|l| l.port() == Some(443))
        .unwrap();
    assert_eq!(
        https.certificates()[0].certificate_arn(),
        Some(cert.as_str())
    );
    let left = group_names(aws.elb_client(), &name).await;
    assert!(
        left.is_disjoint(&nlb_groups),
        "the NLB's groups are gone: {left:?}"
    );
    assert_eq!(left.len(), 1, "the ALB's one group: {left:?}");
    let targets = crate::rolling::targets(aws.elb_client(), &alb.1).await;
    assert_eq!(
        targets.into_values().collect::<Vec<_>>(),
        [node_ids],
        "the ALB's group holds the nodes"
    );
    assert_eq!(alias_of(&aws, &zone, &host).await, alb.3);
    let (groups, sources) = security_groups(aws.ec2_client(), &name).await;
    let group_names: Vec<&str> = groups.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(
        group_names,
        [format!("{name}-b-alb"), format!("{name}-nodes")]
    );
    assert_eq!(
        sources,
        BTreeSet::from([groups[0].1.clone()]),
        "only the ALB's group"
    );

    // A third apply: nothing to do, not one mutating call.
    rerun_is_quiet(&l7).await;

    triad.destroy(&l7.cluster()).await.unwrap();
    assert!(crate::e2e::tagged(&aws, &name).await.is_empty());
}

/// A scheme change and back, with a 24-character cluster name: `<cluster>-b` (its
/// target groups in the short form that fits ELBv2's 32 characters, its own security
/// group `<cluster>-b-nlb`) is made beside `<cluster>`, then `<cluster>` again beside
/// it; each time only the old balancer's parts go. Read back with the SDK.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn scheme_changes_take_turns_between_the_two_names() {
    let (aws, triad, _) = counted().await;
    let base = unique("scheme");
    let name = format!("{base}{}", "x".repeat(24 - base.len()));
    let zone = format!("{name}.test");
    let host = format!("rancher.{zone}");
    hosted_zone(aws.route53_client(), &zone).await;
    let image = ubuntu_ami(aws.ec2_client()).await;
    let with_scheme = |scheme: &str| {
        spec_with(
            &name,
            &image,
            &format!("mode = \"l4\"\nscheme = \"{scheme}\""),
        )
    };
    let names = [name.clone(), format!("{name}-b")];
    triad
        .apply(&triad.plan(&with_scheme("internet-facing")).await.unwrap())
        .await
        .unwrap();
    for (scheme, now, gone) in [
        ("internal", &names[1], &names[0]),
        ("internet-facing", &names[0], &names[1]),
    ] {
        let want = with_scheme(scheme);
        let plan = triad.plan(&want).await.unwrap();
        assert!(
            matches!(&plan.load_balancer, LbAction::Replace { name: n, make_first: true, reinstall_rancher: false, .. } if n == now),
            "{plan}"
        );
        triad.apply(&plan).await.unwrap();
        let lbs = balancers(aws.elb_client(), &names).await;
        assert_eq!(lbs.len(), 1, "{lbs:?}");
        assert_eq!(&lbs[0].0, now);
        assert_eq!(alias_of(&aws, &zone, &host).await, lbs[0].3);
        let groups = group_names(aws.elb_client(), &name).await;
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert!(groups.iter().all(|g| g.len() <= 32), "{groups:?}");
        let b_groups = groups.iter().filter(|g| g.starts_with(&names[1])).count();
        assert_eq!(b_groups, if now == &names[1] { 2 } else { 0 }, "{groups:?}");
        let (sgs, sources) = security_groups(aws.ec2_client(), &name).await;
        let part = if now == &names[1] { "b-nlb" } else { "nlb" };
        let lb_sg = sgs
            .iter()
            .find(|g| g.0 == format!("{name}-{part}"))
            .unwrap_or_else(|| panic!("{part}: {sgs:?}"));
        assert_eq!(sgs.len(), 2, "{gone}'s group is gone: {sgs:?}");
        assert_eq!(sources, BTreeSet::from([lb_sg.1.clone()]));
        assert!(triad.plan(&want).await.unwrap().is_noop());
    }
    triad
        .destroy(&with_scheme("internet-facing").cluster())
        .await
        .unwrap();
    assert!(crate::e2e::tagged(&aws, &name).await.is_empty());
}

/// A 3-node RKE2 cluster registering through the balancer (the default), with
/// `[load_balancer]` section `lb`.
fn spec_registering(name: &str, image: &str, lb: &str) -> ValidSpec {
    ClusterSpec::from_toml(&format!(
        "name = \"{name}\"\nregion = \"us-east-1\"\n\
         zones = [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"]\n\
         [nodes]\nsize = \"t3.micro\"\nimage = \"{image}\"\n\
         [load_balancer]\n{lb}\n\
         [dns]\nzone = \"{name}.test\"\nhostname = \"rancher.{name}.test\"\n"
    ))
    .unwrap()
    .validate()
    .unwrap()
}

/// l4 → l7 with RKE2 registering through the balancer: the ALB `<name>-b` gets its
/// internal companion `<name>-b-reg`. A stop right after the ALB is made (the
/// companion's `CreateLoadBalancer` refused) is completed by the rerun. Back to l4:
/// the new NLB carries 9345/6443 itself, and the ALB leaves with its companion and
/// their target groups. Read back with the SDK.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn l7_companion_is_completed_after_a_stop_and_leaves_with_the_alb() {
    let (aws, triad, _) = counted().await;
    let name = unique("modereg");
    let zone = format!("{name}.test");
    let host = format!("rancher.{zone}");
    hosted_zone(aws.route53_client(), &zone).await;
    let image = ubuntu_ami(aws.ec2_client()).await;
    let l4 = spec_registering(&name, &image, "mode = \"l4\"");
    let inv = triad.apply(&triad.plan(&l4).await.unwrap()).await.unwrap();
    let node_ids: BTreeSet<String> = inv.nodes.iter().map(|n| n.id.clone()).collect();
    let names = [
        name.clone(),
        format!("{name}-b"),
        format!("{name}-reg"),
        format!("{name}-b-reg"),
    ];
    let nlb_groups = group_names(aws.elb_client(), &name).await;
    assert_eq!(nlb_groups.len(), 4, "{nlb_groups:?}");

    // l4 → l7, stopped after the ALB: the second CreateLoadBalancer (the
    // companion's) is refused.
    let cert = acm_cert(&host);
    let l7 = spec_registering(
        &name,
        &image,
        &format!("mode = \"l7\"\ncertificate = \"{cert}\""),
    );
    let (stopping, _) = scripted(|action, nth| {
        (action == "CreateLoadBalancer" && nth == 1).then(|| Fault::Respond(403, elb_denied()))
    })
    .await;
    let stopping = Arc::new(stopping);
    let stopper = Orchestrator::new(stopping.clone(), stopping.clone(), stopping.clone());
    let err = stopper.apply(&stopper.plan(&l7).await.unwrap()).await;
    assert!(err.is_err(), "the scripted stop fails the apply");
    let made: Vec<String> = balancers(aws.elb_client(), &names)
        .await
        .into_iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(made, names[..2], "the ALB beside the NLB, no companion yet");

    // The rerun (a new process) completes the ALB with its companion, then retires
    // the NLB.
    let (_, rerun, _) = counted().await;
    let plan = rerun.plan(&l7).await.unwrap();
    assert!(
        matches!(&plan.load_balancer, LbAction::Complete { lb } if lb.name == names[1]),
        "{plan}"
    );
    assert_eq!(plan.lb_retire.len(), 1, "{plan}");
    let inv2 = rerun.apply(&plan).await.unwrap();
    let lbs = balancers(aws.elb_client(), &names).await;
    assert_eq!(
        lbs.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
        [names[1].as_str(), names[3].as_str()],
        "{lbs:?}"
    );
    let (alb, companion) = (&lbs[0], &lbs[1]);
    assert_eq!(alb.2, LoadBalancerTypeEnum::Application);
    assert_eq!(companion.2, LoadBalancerTypeEnum::Network);
    let described = aws
        .elb_client()
        .describe_load_balancers()
        .load_balancer_arns(&companion.1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.load_balancers()[0].scheme().map(|s| s.as_str()),
        Some("internal")
    );
    assert_eq!(
        inv2.load_balancer.registration_endpoint,
        Some(triad_core::model::Endpoint::Hostname {
            name: companion.3.to_ascii_lowercase(),
            alias_zone: None
        })
    );
    assert_eq!(alias_of(&aws, &zone, &host).await, alb.3);
    let groups = group_names(aws.elb_client(), &name).await;
    assert!(groups.is_disjoint(&nlb_groups), "the NLB's groups are gone");
    assert_eq!(
        groups,
        ["http-80", "tcp6443", "tcp9345"]
            .iter()
            .map(|p| format!("{}-{p}", names[1]))
            .collect::<BTreeSet<_>>()
    );
    // The companion's groups hold the nodes.
    let targets = crate::rolling::targets(aws.elb_client(), &companion.1).await;
    assert_eq!(targets.len(), 2, "{targets:?}");
    assert!(targets.values().all(|t| *t == node_ids), "{targets:?}");
    rerun_is_quiet(&l7).await;

    // Back to l4: the NLB `<name>` carries the registration ports; the ALB and its
    // companion go with their groups.
    let plan = triad.plan(&l4).await.unwrap();
    assert!(
        matches!(&plan.load_balancer, LbAction::Replace { name: n, make_first: true, .. } if *n == names[0]),
        "{plan}"
    );
    let inv3 = triad.apply(&plan).await.unwrap();
    assert_eq!(inv3.load_balancer.registration_endpoint, None);
    let lbs = balancers(aws.elb_client(), &names).await;
    assert_eq!(
        lbs.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
        [names[0].as_str()],
        "no companion left: {lbs:?}"
    );
    let groups = group_names(aws.elb_client(), &name).await;
    assert_eq!(groups, nlb_groups.iter().cloned().collect(), "{groups:?}");
    let (sgs, _) = security_groups(aws.ec2_client(), &name).await;
    assert_eq!(
        sgs.iter().map(|g| g.0.clone()).collect::<Vec<_>>(),
        [format!("{name}-nlb"), format!("{name}-nodes")]
    );
    rerun_is_quiet(&l4).await;

    triad.destroy(&l4.cluster()).await.unwrap();
    assert!(crate::e2e::tagged(&aws, &name).await.is_empty());
}
