//! A balancer mode change (l4 → l7 → l4, RKE2's registration ports on the balancer)
//! through the orchestrator against the fake: the
//! new balancer is made beside the old one under its own names, the record moves to
//! it while both stand, then only the old one's parts are deleted; a crash in the
//! middle of that delete converges on the rerun. Read back through the fake's REST
//! API, not through triad.

use std::sync::{Arc, Mutex};

use triad_core::events::{Event, Observer, Resource};
use triad_core::orchestrator::{LbAction, NodeAction};
use triad_core::{Orchestrator, ValidSpec};
use triad_gce::{Connection, GceProvider};

use crate::{
    a_record, assert_no_violations, calls, cluster_spec, endpoint, fail_next, http, is_mutation,
    rest, seed, serving, REGION,
};

fn spec(project: &str, name: &str, l7: bool) -> ValidSpec {
    let mode = if l7 {
        "mode = \"l7\"\ncertificate = \"rancher-cert\"\n"
    } else {
        ""
    };
    cluster_spec(project, name, "", &format!("[load_balancer]\n{mode}"))
}

/// The parts of the internal passthrough balancer beside l7 balancer `b` (the
/// registration ports'), as REST paths below the project.
fn internal_parts(b: &str) -> Vec<String> {
    let mut out = vec![
        format!("regions/{REGION}/addresses/{b}-reg"),
        format!("global/firewalls/{b}-reg"),
    ];
    for port in [9345, 6443] {
        out.push(format!("regions/{REGION}/forwardingRules/{b}-fr-{port}"));
        out.push(format!("regions/{REGION}/backendServices/{b}-bs-{port}"));
        out.push(format!("regions/{REGION}/healthChecks/{b}-hc-{port}"));
    }
    out
}

/// The HTTP status of one GET through the fake's REST API.
fn status(path: &str) -> u16 {
    http("GET", path, "").0
}

/// One finished step as the test saw it.
type Seen = (Resource, String, bool, usize);

/// After every finished or failed step: whether the old and the new forwarding rule
/// both exist, and how many running instances the new backend service serves.
struct Switch {
    project: String,
    old_rule: String,
    new_rule: String,
    new_backend: String,
    seen: Mutex<Vec<Seen>>,
}

impl Observer for Switch {
    fn on_event(&self, event: &Event) {
        // A test observer may block briefly: it reads the fake over loopback.
        let (Event::Finished { resource, step, .. } | Event::Failed { resource, step, .. }) = event
        else {
            return;
        };
        let both = status(&self.old_rule) == 200 && status(&self.new_rule) == 200;
        let served = if status(&self.new_backend) == 200 {
            serving(&self.project, &self.new_backend).len()
        } else {
            0
        };
        self.seen
            .lock()
            .unwrap()
            .push((resource.clone(), step.clone(), both, served));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn layer4_to_layer7_makes_the_new_balancer_first_then_retires_the_old() {
    let (project, name) = ("triad-mode-change", "mode");
    seed(project);
    let l4 = spec(project, name, false);
    let l7 = spec(project, name, true);
    let gce = Arc::new(
        GceProvider::from_spec_with(&l4, Connection::fake(endpoint()))
            .await
            .unwrap(),
    );
    let triad = Orchestrator::new(gce.clone(), gce.clone(), gce.clone());
    triad.apply(&triad.plan(&l4).await.unwrap()).await.unwrap();
    let base = format!("/compute/v1/projects/{project}");
    let regional = format!("{base}/regions/{REGION}");
    let old_rule = format!("{regional}/forwardingRules/{name}-fr");
    let l4_ip = rest("GET", &old_rule)["IPAddress"].clone();
    assert_eq!(
        a_record(project, &format!("{name}.example.com"))["rrdatas"][0],
        l4_ip
    );
    assert_eq!(status(&format!("{base}/global/firewalls/{name}-web")), 200);

    // The plan: a new balancer `<name>-b` first, the old one retired after the
    // record moved; the nodes stay.
    let gce = Arc::new(
        GceProvider::from_spec_with(&l7, Connection::fake(endpoint()))
            .await
            .unwrap(),
    );
    let new = format!("{name}-b");
    let switch = Arc::new(Switch {
        project: project.to_owned(),
        old_rule: old_rule.clone(),
        new_rule: format!("{base}/global/forwardingRules/{new}-https"),
        new_backend: format!("{base}/global/backendServices/{new}-bs"),
        seen: Mutex::new(Vec::new()),
    });
    let triad =
        Orchestrator::new(gce.clone(), gce.clone(), gce.clone()).with_observer(switch.clone());
    let plan = triad.plan(&l7).await.unwrap();
    assert!(
        matches!(
            &plan.load_balancer,
            LbAction::Replace {
                make_first: true,
                reinstall_rancher: true,
                name: n,
                ..
            } if *n == new
        ),
        "{plan}"
    );
    let retire: Vec<&str> = plan.lb_retire.iter().map(|lb| lb.name.as_str()).collect();
    assert_eq!(retire, [name], "{plan}");
    assert!(plan
        .nodes
        .iter()
        .all(|a| matches!(a, NodeAction::Keep { .. })));

    // Crash in the middle of deleting the old balancer: its forwarding rule, backend
    // service and health check are gone, its address is not.
    fail_next(project, "compute.addresses.delete", 403, "forbidden");
    let err = triad.apply(&plan).await.unwrap_err();
    assert!(err.to_string().contains(&format!("{name}-lb")), "{err}");

    // Both balancers stood when the record moved, and the new one served the three
    // nodes by then (its backend service has the cluster's instance groups); the
    // old one's delete came after.
    let seen = switch.seen.lock().unwrap().clone();
    let at = |what: &dyn Fn(&Seen) -> bool| {
        seen.iter()
            .position(what)
            .unwrap_or_else(|| panic!("never happened: {seen:#?}"))
    };
    let active = at(&|(r, s, ..)| *r == Resource::LoadBalancer(new.clone()) && s == "active");
    let record = at(&|(r, ..)| matches!(r, Resource::Record(f) if f.starts_with(name)));
    let retiring = at(&|(r, ..)| *r == Resource::LoadBalancer(name.to_owned()));
    assert!(active < record && record < retiring, "{seen:#?}");
    assert!(
        seen[record].2,
        "the old and the new rule both stood: {seen:#?}"
    );
    assert_eq!(seen[record].3, 3, "{seen:#?}");

    // The balancer that stays carries the retiring mark, so the next discovery
    // lists the addresses.
    let https = format!("{base}/global/forwardingRules/{new}-https");
    assert_eq!(rest("GET", &https)["labels"]["triad-retiring"], name);

    // The rerun finds the half-deleted old balancer by its address and finishes it.
    let again = triad.plan(&l7).await.unwrap();
    assert!(
        matches!(&again.load_balancer, LbAction::Keep { lb } if lb.name == new),
        "{again}"
    );
    let retire: Vec<&str> = again.lb_retire.iter().map(|lb| lb.name.as_str()).collect();
    assert_eq!(retire, [name], "{again}");
    triad.apply(&again).await.unwrap();

    // Read back: the l7 parts exist under the new names, the l4 parts are gone, the
    // record points at the new address, the nodes are served by the new backend.
    for part in [
        format!("global/addresses/{new}-lb"),
        format!("global/forwardingRules/{new}-https"),
        format!("global/forwardingRules/{new}-http"),
        format!("global/targetHttpsProxies/{new}-https"),
        format!("global/targetHttpProxies/{new}-http"),
        format!("global/urlMaps/{new}-urlmap"),
        format!("global/urlMaps/{new}-redirect"),
        format!("global/sslPolicies/{new}-tls"),
        format!("global/backendServices/{new}-bs"),
        format!("global/healthChecks/{new}-hc"),
    ]
    .into_iter()
    .chain(internal_parts(&new))
    {
        assert_eq!(status(&format!("{base}/{part}")), 200, "{part} is missing");
    }
    for part in [
        format!("regions/{REGION}/forwardingRules/{name}-fr"),
        format!("regions/{REGION}/addresses/{name}-lb"),
        format!("regions/{REGION}/backendServices/{name}-bs"),
        format!("regions/{REGION}/healthChecks/{name}-hc"),
        format!("global/firewalls/{name}-web"),
        // The l4 balancer's external registration parts.
        format!("regions/{REGION}/forwardingRules/{name}-fr-9345"),
        format!("regions/{REGION}/backendServices/{name}-bs-6443"),
        format!("regions/{REGION}/healthChecks/{name}-hc-9345"),
    ] {
        assert_eq!(status(&format!("{base}/{part}")), 404, "{part} is left");
    }
    // Finished: the mark is gone, the spec's labels stay.
    let labels = rest("GET", &https)["labels"].clone();
    assert!(labels.get("triad-retiring").is_none(), "{labels}");
    assert_eq!(labels["triad-cluster"], name, "{labels}");
    let ip = rest("GET", &format!("{base}/global/addresses/{new}-lb"))["address"].clone();
    assert_ne!(ip, l4_ip);
    let proxy = rest(
        "GET",
        &format!("{base}/global/targetHttpsProxies/{new}-https"),
    );
    assert!(proxy["sslCertificates"][0]
        .as_str()
        .unwrap()
        .ends_with("/rancher-cert"));
    assert_eq!(
        a_record(project, &format!("{name}.example.com"))["rrdatas"],
        serde_json::json!([ip])
    );
    let served = serving(project, &format!("{base}/global/backendServices/{new}-bs"));
    assert_eq!(served.len(), 3, "{served:?}");

    // Converged: a further apply changes nothing.
    let mark = calls(project).len();
    let third = triad.plan(&l7).await.unwrap();
    assert!(third.is_noop(), "{third}");
    triad.apply(&third).await.unwrap();
    let writes: Vec<String> = calls(project)[mark..]
        .iter()
        .filter(|m| is_mutation(m))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "{writes:?}");

    // And back to l4: the names take turns, the passthrough balancer's firewall
    // rule comes with it, the l7 parts go.
    let gce = Arc::new(
        GceProvider::from_spec_with(&l4, Connection::fake(endpoint()))
            .await
            .unwrap(),
    );
    let triad = Orchestrator::new(gce.clone(), gce.clone(), gce.clone());
    let back = triad.plan(&l4).await.unwrap();
    assert!(
        matches!(&back.load_balancer, LbAction::Replace { name: n, make_first: true, .. } if n == name),
        "{back}"
    );
    triad.apply(&back).await.unwrap();
    let rule = rest("GET", &old_rule);
    assert_eq!(status(&format!("{base}/global/firewalls/{name}-web")), 200);
    assert_eq!(
        status(&format!("{base}/global/forwardingRules/{new}-https")),
        404
    );
    assert_eq!(status(&format!("{base}/global/addresses/{new}-lb")), 404);
    // No internal part of the l7 balancer's registration ports is left behind.
    for part in internal_parts(&new) {
        assert_eq!(status(&format!("{base}/{part}")), 404, "{part} is left");
    }
    assert_eq!(
        status(&format!("{regional}/forwardingRules/{name}-fr-9345")),
        200
    );
    assert_eq!(
        a_record(project, &format!("{name}.example.com"))["rrdatas"],
        serde_json::json!([rule["IPAddress"]])
    );
    assert_eq!(
        serving(project, &format!("{regional}/backendServices/{name}-bs")).len(),
        3
    );

    triad.destroy(&l4.cluster()).await.unwrap();
    assert_eq!(status(&old_rule), 404);
    assert_no_violations();
}
