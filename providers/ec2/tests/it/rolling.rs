//! A rolling image replace against moto: plan, apply, and read back with the SDK's
//! own clients; the order of the mutating calls (recorded at the SDK's HTTP client,
//! not through triad's events) shows one node at a time, each new node registered
//! before its old one leaves.

use std::collections::{BTreeMap, BTreeSet};

use triad_core::orchestrator::NodeAction;

use crate::day2::{counted, rerun_is_quiet, spec};
use crate::{hosted_zone, unique};

/// Two AMIs moto lists (strict AMI validation is on).
async fn two_amis(ec2: &aws_sdk_ec2::Client) -> (String, String) {
    let out = ec2.describe_images().owners("amazon").send().await.unwrap();
    let mut ids: Vec<String> = out
        .images()
        .iter()
        .filter_map(|i| i.image_id().map(str::to_owned))
        .collect();
    ids.sort();
    assert!(ids.len() >= 2, "moto lists fewer than 2 AMIs: {ids:?}");
    (ids[0].clone(), ids[1].clone())
}

/// The cluster's instances that are not terminated, read with the SDK:
/// id → (Name tag, AMI, zone, state).
async fn instances(
    ec2: &aws_sdk_ec2::Client,
    name: &str,
) -> BTreeMap<String, (String, String, String, String)> {
    let out = ec2
        .describe_instances()
        .filters(crate::tag_filter("triad-cluster", name))
        .send()
        .await
        .unwrap();
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            let tag = i
                .tags()
                .iter()
                .find(|t| t.key() == Some("Name"))
                .and_then(|t| t.value())
                .unwrap_or_default();
            let state = i.state().and_then(|s| s.name()).map(|s| s.as_str());
            (
                i.instance_id().unwrap().to_owned(),
                (
                    tag.to_owned(),
                    i.image_id().unwrap_or_default().to_owned(),
                    i.placement()
                        .and_then(|p| p.availability_zone())
                        .unwrap_or_default()
                        .to_owned(),
                    state.unwrap_or_default().to_owned(),
                ),
            )
        })
        .collect()
}

/// Every target group of the balancer → its registered targets, read with the SDK.
pub(crate) async fn targets(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    lb: &str,
) -> BTreeMap<String, BTreeSet<String>> {
    let groups = elb
        .describe_target_groups()
        .load_balancer_arn(lb)
        .send()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for g in groups.target_groups() {
        let arn = g.target_group_arn().unwrap();
        let health = elb
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .unwrap();
        let ids = health
            .target_health_descriptions()
            .iter()
            .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_owned))
            .collect();
        out.insert(arn.to_owned(), ids);
    }
    out
}

/// The zone's record sets at `host`, as the SDK shows them.
async fn record(aws: &triad_ec2::Ec2, zone: &str, host: &str) -> String {
    let sets = crate::record_sets(aws, zone, host).await;
    assert!(!sets.is_empty(), "no record at {host}");
    format!("{sets:?}")
}

/// A form-encoded request body's pairs, percent-decoded.
fn form(body: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(if b[i] == b'+' { b' ' } else { b[i] });
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// One mutating call on a node or a target: what it did to which instance.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// RunInstances for the node of this name.
    Run(String),
    /// RegisterTargets of this instance in this target group.
    Register(String, String),
    /// DeregisterTargets of this instance from this target group.
    Deregister(String, String),
    /// TerminateInstances of this instance.
    Terminate(String),
}

/// The node and target steps of a recorded call sequence, in order.
fn steps(calls: &[(String, String)]) -> Vec<Step> {
    let mut out = Vec::new();
    for (action, body) in calls {
        let pairs = form(body);
        let get = |suffix: &str| {
            pairs
                .iter()
                .filter(|(k, _)| k.ends_with(suffix))
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        let group = get("TargetGroupArn").pop().unwrap_or_default();
        match action.as_str() {
            "RunInstances" => {
                let names: Vec<_> = pairs
                    .windows(2)
                    .filter(|w| w[0].1 == "Name" && w[0].0.ends_with(".Key"))
                    .map(|w| w[1].1.clone())
                    .collect();
                out.push(Step::Run(names.first().cloned().unwrap_or_default()));
            }
            "RegisterTargets" => out.extend(
                get(".Id")
                    .into_iter()
                    .map(|id| Step::Register(group.clone(), id)),
            ),
            "DeregisterTargets" => out.extend(
                get(".Id")
                    .into_iter()
                    .map(|id| Step::Deregister(group.clone(), id)),
            ),
            "TerminateInstances" => {
                out.extend(get("InstanceId.1").into_iter().map(Step::Terminate))
            }
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto; scripts/test starts it"]
async fn rolling_image_replace_one_node_at_a_time() {
    let (aws, triad, calls) = counted().await;
    let name = unique("roll");
    let zone = format!("{name}.test");
    let host = format!("rancher.{zone}");
    hosted_zone(aws.route53_client(), &zone).await;
    let (ami_a, ami_b) = two_amis(aws.ec2_client()).await;
    let first = spec(&name, &ami_a, &["198.51.100.0/24"], "/healthz");
    let inv = triad
        .apply(&triad.plan(&first).await.unwrap())
        .await
        .unwrap();
    let before = instances(aws.ec2_client(), &name).await;
    assert_eq!(before.len(), 3, "{before:?}");
    let groups = targets(aws.elb_client(), &inv.load_balancer.id).await;
    let old_ids: BTreeSet<String> = before.keys().cloned().collect();
    assert!(groups.values().all(|t| *t == old_ids), "{groups:?}");
    let record_before = record(&aws, &zone, &host).await;

    // The plan: every node replaced, because of its image, in its own zone.
    let second = spec(&name, &ami_b, &["198.51.100.0/24"], "/healthz");
    let plan = triad.plan(&second).await.unwrap();
    let mut replaced = Vec::new();
    for action in &plan.nodes {
        let NodeAction::Replace {
            node,
            name: new_name,
            zone,
            changes,
        } = action
        else {
            panic!("every node is replaced: {action:?}\n{plan}");
        };
        assert_eq!(&node.zone, zone, "{plan}");
        assert!(
            changes.iter().any(|c| c.field == "nodes.image"
                && c.from == ami_a
                && c.to == ami_b
                && !c.in_place),
            "{changes:?}"
        );
        replaced.push((node.id.clone(), new_name.clone(), zone.clone()));
    }
    assert_eq!(replaced.len(), 3, "{plan}");
    assert!(plan.to_string().contains("rolling replace"), "{plan}");

    calls.clear();
    let inv2 = triad.apply(&plan).await.unwrap();
    let sequence = calls.sequence();

    // Read back with the SDK: three running instances of AMI B, one per old node's
    // zone, with the new names; the old ones terminated.
    let after = instances(aws.ec2_client(), &name).await;
    let running: BTreeMap<&String, &(String, String, String, String)> =
        after.iter().filter(|(_, v)| v.3 == "running").collect();
    assert_eq!(running.len(), 3, "{after:?}");
    let mut new_ids = BTreeMap::new();
    for (old_id, new_name, zone) in &replaced {
        assert_eq!(after[old_id].3, "terminated", "{old_id}: {after:?}");
        let (id, _) = running
            .iter()
            .find(|(_, v)| &v.0 == new_name)
            .unwrap_or_else(|| panic!("no running {new_name}: {after:?}"));
        let v = &running[*id];
        assert_eq!((&v.1, &v.2), (&ami_b, zone), "{new_name}: {v:?}");
        new_ids.insert(old_id.clone(), (*id).clone());
    }
    let mut inv_ids: Vec<_> = inv2.nodes.iter().map(|n| n.id.clone()).collect();
    inv_ids.sort();
    let mut want: Vec<_> = new_ids.values().cloned().collect();
    want.sort();
    assert_eq!(inv_ids, want, "the inventory names the new instances");
    // The balancer is the same; its target groups hold exactly the new instances.
    assert_eq!(inv2.load_balancer.id, inv.load_balancer.id);
    let groups_after = targets(aws.elb_client(), &inv.load_balancer.id).await;
    let want: BTreeSet<String> = want.into_iter().collect();
    assert_eq!(
        groups_after.keys().collect::<Vec<_>>(),
        groups.keys().collect::<Vec<_>>()
    );
    assert!(
        groups_after.values().all(|t| *t == want),
        "{groups_after:?}"
    );
    // The record is untouched.
    assert_eq!(record(&aws, &zone, &host).await, record_before);

    // The order, from the calls sent: per node, RunInstances, its registration in
    // every group, then the old node's deregistration from every group, then its
    // termination; the next node only after that. Every group keeps at least 3
    // registered targets throughout.
    let steps = steps(&sequence);
    let mut live = groups.clone();
    for s in &steps {
        match s {
            Step::Register(g, id) => {
                live.get_mut(g).unwrap().insert(id.clone());
            }
            Step::Deregister(g, id) => {
                live.get_mut(g).unwrap().remove(id);
            }
            _ => {}
        }
        assert!(
            live.values().all(|t| t.len() >= 3),
            "after {s:?}: {live:?}\n{steps:#?}"
        );
    }
    let runs: Vec<&String> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Run(n) => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(runs.len(), 3, "{steps:#?}");
    let mut expected = Vec::new();
    for n in runs {
        let (old, _, _) = replaced.iter().find(|(_, new, _)| new == n).unwrap();
        let new = &new_ids[old];
        expected.push(Step::Run(n.clone()));
        expected.extend(
            groups
                .keys()
                .map(|g| Step::Register(g.clone(), new.clone())),
        );
        expected.extend(
            groups
                .keys()
                .map(|g| Step::Deregister(g.clone(), old.clone())),
        );
        expected.push(Step::Terminate(old.clone()));
    }
    // Groups are registered in whatever order the provider takes them: compare each
    // node's run of steps as a set, the runs in order.
    let chunk = 2 + 2 * groups.len();
    assert_eq!(steps.len(), expected.len(), "{steps:#?}");
    for (got, want) in steps.chunks(chunk).zip(expected.chunks(chunk)) {
        assert_eq!(got[0], want[0], "{steps:#?}");
        assert_eq!(got[chunk - 1], want[chunk - 1], "{steps:#?}");
        let sorted = |s: &[Step]| {
            let mut v: Vec<String> = s.iter().map(|x| format!("{x:?}")).collect();
            v.sort();
            v
        };
        let half = 1 + groups.len();
        assert_eq!(sorted(&got[1..half]), sorted(&want[1..half]), "{steps:#?}");
        assert_eq!(
            sorted(&got[half..chunk - 1]),
            sorted(&want[half..chunk - 1]),
            "{steps:#?}"
        );
    }

    // A second apply: nothing to do, not one mutating call.
    rerun_is_quiet(&second).await;

    triad.destroy(&second.cluster()).await.unwrap();
    assert!(crate::e2e::tagged(&aws, &name).await.is_empty());
}
