//! Day 2 against moto: a second apply of a changed spec updates in place (SSH
//! rules, health check path, fingerprint tags), read back with the SDK's own clients;
//! an apply with nothing to do makes no mutating call and at most
//! [`NOOP_READS`] read calls (counted at the SDK's HTTP client, retries included).

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_elasticloadbalancingv2::types::ProtocolEnum;
use triad_core::orchestrator::{LbAction, NodeAction};
use triad_core::spec::{ClusterSpec, ValidSpec};
use triad_core::Orchestrator;
use triad_ec2::Ec2;

use crate::scripted::{scripted, Calls};
use crate::{hosted_zone, provider, ubuntu_ami, unique};

/// Issue 8's target for a no-op rerun: at most this many read calls.
pub(crate) const NOOP_READS: u32 = 10;

/// A 3-node l4 cluster with these SSH CIDRs and health check path.
pub(crate) fn spec(name: &str, image: &str, ssh: &[&str], health: &str) -> ValidSpec {
    let ssh = ssh
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    ClusterSpec::from_toml(&format!(
        r#"
name = "{name}"
region = "us-east-1"
zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
[nodes]
size = "t3.micro"
image = "{image}"
ssh_allowed_cidrs = [{ssh}]
[load_balancer]
mode = "l4"
health_check_path = "{health}"
[dns]
zone = "{name}.test"
hostname = "rancher.{name}.test"
"#
    ))
    .unwrap()
    .validate()
    .unwrap()
}

fn is_mutating(action: &str) -> bool {
    [
        "Create",
        "Delete",
        "Modify",
        "Authorize",
        "Revoke",
        "Register",
        "Deregister",
        "Add",
        "Remove",
        "Run",
        "Terminate",
        "Change",
    ]
    .iter()
    .any(|p| action.starts_with(p))
}

/// (read calls, mutating calls) since the last reset.
pub(crate) fn counts(calls: &Calls) -> (u32, u32, BTreeMap<String, u32>) {
    let all = calls.snapshot();
    let (mut reads, mut writes) = (0, 0);
    for (action, n) in &all {
        if is_mutating(action) {
            writes += n;
        } else {
            reads += n;
        }
    }
    (reads, writes, all)
}

/// A fresh provider (as a new process would have) whose SDK calls are counted.
pub(crate) async fn counted() -> (Arc<Ec2>, Orchestrator, Calls) {
    let (aws, calls) = scripted(|_, _| None).await;
    let aws = Arc::new(aws);
    let triad = Orchestrator::new(aws.clone(), aws.clone(), aws.clone());
    (aws, triad, calls)
}

/// The SSH CIDRs of the nodes' security group, read with the SDK.
async fn ssh_cidrs(aws: &Ec2, name: &str) -> Vec<String> {
    let out = aws
        .ec2_client()
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values(format!("{name}-nodes"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut cidrs: Vec<String> = out.security_groups()[0]
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(22))
        .flat_map(|p| p.ip_ranges())
        .filter_map(|r| r.cidr_ip().map(str::to_owned))
        .collect();
    cidrs.sort();
    cidrs
}

/// The HTTP health check paths of the balancer's target groups, read with the SDK.
async fn health_paths(aws: &Ec2, lb_arn: &str) -> Vec<String> {
    let out = aws
        .elb_client()
        .describe_target_groups()
        .load_balancer_arn(lb_arn)
        .send()
        .await
        .unwrap();
    out.target_groups()
        .iter()
        .filter(|g| g.health_check_protocol() == Some(&ProtocolEnum::Http))
        .map(|g| g.health_check_path().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn ssh_cidrs_and_health_check_update_in_place() {
    let aws = Arc::new(provider(crate::default_vpc()).await);
    let name = unique("day2");
    hosted_zone(aws.route53_client(), &format!("{name}.test")).await;
    let image = ubuntu_ami(aws.ec2_client()).await;
    let first = spec(&name, &image, &["198.51.100.0/24"], "/healthz");
    let triad = Orchestrator::new(aws.clone(), aws.clone(), aws.clone());
    let inv = triad
        .apply(&triad.plan(&first).await.unwrap())
        .await
        .unwrap();

    // A rerun in a new process: nothing to do, no change, few reads.
    let (_, fresh, calls) = counted().await;
    let plan = fresh.plan(&first).await.unwrap();
    assert!(plan.is_noop(), "{plan}");
    fresh.apply(&plan).await.unwrap();
    let (reads, writes, all) = counts(&calls);
    eprintln!("a no-op rerun: {reads} reads: {all:?}");
    assert_eq!(writes, 0, "a no-op rerun mutated: {all:?}");
    assert!(
        reads <= NOOP_READS,
        "a no-op rerun made {reads} reads (at most {NOOP_READS}): {all:?}"
    );

    // Narrow SSH to other CIDRs and change the health check path.
    let second = spec(&name, &image, &["203.0.113.0/24", "192.0.2.0/24"], "/ping");
    let plan = triad.plan(&second).await.unwrap();
    let updates = plan
        .nodes
        .iter()
        .filter(|a| matches!(a, NodeAction::Update { .. }))
        .count();
    assert_eq!(updates, 3, "{plan}");
    assert!(
        matches!(plan.load_balancer, LbAction::Update { .. }),
        "{plan}"
    );
    let shown = plan.to_string();
    assert!(shown.contains("ssh_allowed_cidrs"), "{shown}");
    assert!(shown.contains("health_check_path"), "{shown}");
    let inv2 = triad.apply(&plan).await.unwrap();
    assert_eq!(inv2.load_balancer.id, inv.load_balancer.id, "not replaced");
    let ids =
        |i: &triad_core::model::Inventory| i.nodes.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&inv2), ids(&inv), "nodes were replaced");

    // Read back with the SDK, not through triad.
    assert_eq!(
        ssh_cidrs(&aws, &name).await,
        ["192.0.2.0/24", "203.0.113.0/24"]
    );
    let paths = health_paths(&aws, &inv.load_balancer.id).await;
    assert_eq!(paths, ["/ping", "/ping"], "{paths:?}");
    let tags = aws
        .elb_client()
        .describe_tags()
        .resource_arns(&inv.load_balancer.id)
        .send()
        .await
        .unwrap();
    let fp = tags.tag_descriptions()[0]
        .tags()
        .iter()
        .find(|t| t.key() == Some("triad-fp-health-check"))
        .and_then(|t| t.value())
        .map(str::to_owned);
    assert!(fp.is_some(), "the balancer's fingerprint tag is missing");

    // A third apply, in a new process: no drift left, not one mutating call.
    rerun_is_quiet(&second).await;

    triad.destroy(&second.cluster()).await.unwrap();
    assert!(crate::e2e::tagged(&aws, &name).await.is_empty());
}

/// Plan and apply `spec` in a fresh provider (as a new process would): nothing to
/// do, and not one mutating call at the SDK.
pub(crate) async fn rerun_is_quiet(spec: &ValidSpec) {
    let (_, fresh, calls) = counted().await;
    let plan = fresh.plan(spec).await.unwrap();
    assert!(plan.is_noop(), "{plan}");
    fresh.apply(&plan).await.unwrap();
    let (_, writes, all) = counts(&calls);
    assert_eq!(writes, 0, "the rerun mutated: {all:?}");
}

/// A certificate moto's ACM issues (boto3 through testing/ec2/moto.py, with
/// `MOTO_PYTHON` from scripts/test): moto checks that a listener's certificate exists
/// when it is changed.
pub(crate) fn acm_cert(domain: &str) -> String {
    let python = std::env::var("MOTO_PYTHON")
        .expect("MOTO_PYTHON is not set: scripts/test (need_moto) exports moto's venv python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testing/ec2/moto.py");
    let out = std::process::Command::new(python)
        .args([script, "acm-cert", domain])
        .env("AWS_ENDPOINT_URL", crate::moto_url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", crate::REGION)
        .output()
        .expect("run moto.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An l7 balancer's certificate changes in place: `ModifyListener` on HTTPS 443,
/// read back with the SDK; the balancer stays the same.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn l7_certificate_updates_in_place() {
    let aws = Arc::new(provider(crate::default_vpc()).await);
    let name = unique("day2c");
    hosted_zone(aws.route53_client(), &format!("{name}.test")).await;
    let image = ubuntu_ami(aws.ec2_client()).await;
    let l7 = |cert: &str| {
        ClusterSpec::from_toml(&format!(
            "name = \"{name}\"\nregion = \"us-east-1\"\n\
             zones = [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"]\n\
             [nodes]\nsize = \"t3.micro\"\nimage = \"{image}\"\n\
             [load_balancer]\nmode = \"l7\"\nregistration = \"first-node\"\ncertificate = \"{cert}\"\n\
             [dns]\nzone = \"{name}.test\"\nhostname = \"rancher.{name}.test\"\n"
        ))
        .unwrap()
        .validate()
        .unwrap()
    };
    let a = acm_cert(&format!("rancher.{name}.test"));
    let b = acm_cert(&format!("rancher.{name}.test"));
    let (a, b) = (a.as_str(), b.as_str());
    let triad = Orchestrator::new(aws.clone(), aws.clone(), aws.clone());
    let inv = triad
        .apply(&triad.plan(&l7(a)).await.unwrap())
        .await
        .unwrap();
    let plan = triad.plan(&l7(b)).await.unwrap();
    assert!(
        matches!(plan.load_balancer, LbAction::Update { .. }),
        "{plan}"
    );
    let inv2 = triad.apply(&plan).await.unwrap();
    assert_eq!(inv2.load_balancer.id, inv.load_balancer.id, "not replaced");
    let listeners = aws
        .elb_client()
        .describe_listeners()
        .load_balancer_arn(&inv.load_balancer.id)
        .send()
        .await
        .unwrap();
    let https = listeners
        .listeners()
        .iter()
        .find(|l| l.port() == Some(443))
        .unwrap();
    assert_eq!(https.certificates()[0].certificate_arn(), Some(b));
    assert!(triad.plan(&l7(b)).await.unwrap().is_noop());
    triad.destroy(&l7(b).cluster()).await.unwrap();
}
