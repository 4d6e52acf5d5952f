//! A rolling image replace through the orchestrator against the fake, watched from
//! outside: after every step the orchestrator reports, the instance groups'
//! members are read through the fake's REST API (not through triad), so the test
//! sees what a client of the balancer would have seen at that instant.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use triad_core::drift::Attribute;
use triad_core::events::{Event, Observer, Resource};
use triad_core::layers::{CallCounter, Stack};
use triad_core::orchestrator::{LbAction, NodeAction};
use triad_core::{Orchestrator, ValidSpec};
use triad_gce::{Connection, GceProvider};

use crate::{
    a_record, assert_no_violations, calls, cluster_spec, endpoint, is_mutation, rest, seed,
    serving, short, REGION,
};

const IMAGE_A: &str = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts";
const IMAGE_B: &str = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64";

/// The cluster's instances, by name: (zone, status, source image of the boot disk).
pub(crate) fn instances(
    project: &str,
    cluster: &str,
) -> BTreeMap<String, (String, String, String)> {
    let all = rest(
        "GET",
        &format!("/compute/v1/projects/{project}/aggregated/instances"),
    );
    let mut out = BTreeMap::new();
    for scoped in all["items"]
        .as_object()
        .into_iter()
        .flat_map(|o| o.values())
    {
        for i in scoped["instances"].as_array().into_iter().flatten() {
            if i["labels"]["triad-cluster"] != cluster {
                continue;
            }
            let boot = i["disks"]
                .as_array()
                .and_then(|d| d.iter().find(|d| d["boot"] == true))
                .expect("a boot disk");
            out.insert(
                i["name"].as_str().unwrap().to_owned(),
                (
                    short(i["zone"].as_str().unwrap()).to_owned(),
                    i["status"].as_str().unwrap().to_owned(),
                    boot["initializeParams"]["sourceImage"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ),
            );
        }
    }
    out
}

/// One finished step as the test saw it.
type Seen = (Resource, String, BTreeSet<String>);

/// After every finished node or target step: the step, and who served then.
struct Watch {
    project: String,
    backend_service: String,
    seen: Mutex<Vec<Seen>>,
}

impl Observer for Watch {
    fn on_event(&self, event: &Event) {
        // A test observer may block briefly: it reads the fake over loopback.
        if let Event::Finished { resource, step, .. } = event {
            if matches!(resource, Resource::Node(_) | Resource::Targets(_)) {
                let members = serving(&self.project, &self.backend_service);
                self.seen
                    .lock()
                    .unwrap()
                    .push((resource.clone(), step.clone(), members));
            }
        }
    }
}

/// The shared test cluster with its nodes on `image`.
fn spec(project: &str, name: &str, image: &str) -> ValidSpec {
    let base = cluster_spec(project, name, "", "");
    let mut raw = base.into_inner();
    raw.nodes.image = Some(image.to_owned());
    raw.validate().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn rolling_image_replace_keeps_three_serving_and_reruns_clean() {
    let (project, name) = ("triad-rolling", "roll");
    seed(project);
    let first = spec(project, name, IMAGE_A);
    let gce = Arc::new(
        GceProvider::from_spec_with(&first, Connection::fake(endpoint()))
            .await
            .unwrap(),
    );
    let triad = Orchestrator::new(gce.clone(), gce.clone(), gce.clone());
    let inv = triad
        .apply(&triad.plan(&first).await.unwrap())
        .await
        .unwrap();
    let base = format!("/compute/v1/projects/{project}");
    let bs_path = format!("{base}/regions/{REGION}/backendServices/{name}-bs");
    let before = instances(project, name);
    assert_eq!(before.len(), 3, "{before:?}");
    let image_a = before.values().next().unwrap().2.clone();
    assert!(image_a.contains("ubuntu-2204"), "{image_a}");
    let old_names: BTreeSet<String> = before.keys().cloned().collect();
    assert_eq!(serving(project, &bs_path), old_names);
    let record = a_record(project, &format!("{name}.example.com"));
    assert_eq!(
        record["rrdatas"],
        serde_json::json!([inv.load_balancer.endpoint.as_ref().unwrap().to_string()])
    );

    // The plan: every node replaced because of its image, in its own zone; the
    // balancer and the record stay.
    let second = spec(project, name, IMAGE_B);
    let plan = triad.plan(&second).await.unwrap();
    let mut renamed = BTreeMap::new();
    for action in &plan.nodes {
        let NodeAction::Replace {
            node,
            name: new,
            zone,
            changes,
        } = action
        else {
            panic!("expected a replace, got {action:?}\n{plan}");
        };
        assert_eq!(&before[&node.name].0, zone, "{plan}");
        assert!(
            changes
                .iter()
                .any(|c| c.attribute == Attribute::Image && !c.in_place),
            "{changes:?}"
        );
        renamed.insert(node.name.clone(), new.clone());
    }
    assert_eq!(renamed.len(), 3, "{plan}");
    assert!(
        matches!(plan.load_balancer, LbAction::Keep { .. }),
        "{plan}"
    );
    assert_eq!(plan.rolling_steps().len(), 3, "{plan}");

    let watch = Arc::new(Watch {
        project: project.to_owned(),
        backend_service: bs_path.clone(),
        seen: Mutex::new(Vec::new()),
    });
    let watched =
        Orchestrator::new(gce.clone(), gce.clone(), gce.clone()).with_observer(watch.clone());
    watched.apply(&plan).await.unwrap();

    // Read back: 3 running instances of image B in the old zones, the old ones gone.
    let after = instances(project, name);
    let new_names: BTreeSet<String> = renamed.values().cloned().collect();
    assert_eq!(after.keys().cloned().collect::<BTreeSet<_>>(), new_names);
    for (old, new) in &renamed {
        let (zone, status, image) = &after[new];
        assert_eq!(zone, &before[old].0, "{new} is in {old}'s zone");
        assert_eq!(status, "RUNNING");
        assert!(image.contains("ubuntu-2404"), "{new}: {image}");
    }
    assert_eq!(serving(project, &bs_path), new_names);
    assert_eq!(a_record(project, &format!("{name}.example.com")), record);

    // The order, as seen from outside after each step: for each node in turn, the
    // new one is made and serves before the old one leaves and is deleted; at no
    // instant fewer than 3 running members.
    let seen = watch.seen.lock().unwrap().clone();
    for (resource, step, members) in &seen {
        assert!(
            members.len() >= 3,
            "after {step} on {resource}: {members:?}\n{seen:#?}"
        );
    }
    let at = |what: &dyn Fn(&Seen) -> bool| {
        seen.iter()
            .position(what)
            .unwrap_or_else(|| panic!("never happened: {seen:#?}"))
    };
    let mut last = 0;
    for old in ["roll-1", "roll-2", "roll-3"] {
        let new = &renamed[old];
        let created = at(&|(r, s, _)| *r == Resource::Node(new.clone()) && s.contains("creat"));
        let serves = at(&|(_, _, m)| m.contains(new));
        let left = at(&|(_, _, m)| !m.contains(old));
        let deleted = at(&|(r, s, _)| *r == Resource::Node(old.to_owned()) && s.contains("delet"));
        assert!(
            last <= created && created <= serves && serves < left && left <= deleted,
            "{old} → {new}: {created} {serves} {left} {deleted}\n{seen:#?}"
        );
        last = deleted;
    }

    // A second apply (fresh provider, as an operator's next run): no change planned,
    // zero mutating calls in the trait layer and in the cluster's project.
    let gce = Arc::new(
        GceProvider::from_spec_with(&second, Connection::fake(endpoint()))
            .await
            .unwrap(),
    );
    let counter = CallCounter::new();
    let counted = Arc::new(Stack::new(gce).count(counter.clone()).build());
    let triad = Orchestrator::new(counted.clone(), counted.clone(), counted);
    let mark = calls(project).len();
    let again = triad.plan(&second).await.unwrap();
    assert!(again.is_noop(), "{again}");
    triad.apply(&again).await.unwrap();
    assert_eq!(counter.mutating(), 0, "{:?}", counter.snapshot());
    let writes: Vec<String> = calls(project)[mark..]
        .iter()
        .filter(|m| is_mutation(m))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "the rerun mutated: {writes:?}");

    triad.destroy(&second.cluster()).await.unwrap();
    assert!(instances(project, name).is_empty());
    assert_no_violations();
}
