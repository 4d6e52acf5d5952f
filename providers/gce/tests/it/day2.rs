//! Day 2 against the fake: batched node waits, in-place updates of the SSH rule,
//! the health check, the certificate and the fingerprint labels through the
//! orchestrator, read back through the fake's own REST API, and a no-op rerun that
//! reads little and changes nothing.

use std::sync::Arc;
use std::time::Duration;

use triad_core::drift::{self, Attribute};
use triad_core::labels::Role;
use triad_core::model::NodeRequest;
use triad_core::orchestrator::{LbAction, NodeAction};
use triad_core::spec::ClusterRef;
use triad_core::{NodeProvider, Orchestrator, ValidSpec};
use triad_gce::{Connection, GceProvider};

use crate::{
    assert_no_violations, calls, cluster_spec, endpoint, http, is_mutation, provider, seed, REGION,
};

/// One GET through the fake's REST API (not through triad), as JSON.
fn get(path: &str) -> serde_json::Value {
    let (code, body) = http("GET", path, "");
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The API calls made since `before`, split into (reads, mutations).
fn since(project: &str, before: usize) -> (Vec<String>, Vec<String>) {
    calls(project)[before..]
        .iter()
        .cloned()
        .partition(|m| !is_mutation(m))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn wait_nodes_reads_all_nodes_in_one_list_call() {
    let project = "triad-wait-nodes";
    let gce = provider(project).await;
    let cluster = ClusterRef::new("waiter", REGION);
    let zones = gce.zones(&cluster).await.unwrap();
    let mut made = Vec::new();
    for (i, zone) in zones.iter().take(3).enumerate() {
        let mut request = NodeRequest::new(format!("waiter-{}", i + 1), zone.clone());
        request.labels = cluster.labels_for(Role::Node);
        request.user_data = "#cloud-config\n".into();
        made.push(gce.create_node(&cluster, &request).await.unwrap());
    }
    let before = calls(project).len();
    let ready = gce
        .wait_nodes(&cluster, &made, Duration::from_secs(60))
        .await
        .unwrap();
    let (reads, writes) = since(project, before);
    assert!(writes.is_empty(), "{writes:?}");
    // All three were running when their inserts finished: one list call, no gets.
    assert_eq!(reads, ["compute.instances.aggregatedList"], "{reads:?}");
    let names: Vec<&str> = ready.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["waiter-1", "waiter-2", "waiter-3"]);
    assert!(ready.iter().all(|n| n.is_ready()), "{ready:?}");

    // A node that is gone is an error naming it, not a wait until the timeout.
    gce.delete_node(&cluster, &made[1]).await.unwrap();
    let err = gce
        .wait_nodes(&cluster, &made, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("waiter-2"), "{err}");
    for n in [&made[0], &made[2]] {
        gce.delete_node(&cluster, n).await.unwrap();
    }
    gce.cleanup(&cluster).await.unwrap();
    assert_no_violations();
}

fn spec(project: &str, name: &str, l7: bool, cidrs: &str, path: &str, cert: &str) -> ValidSpec {
    let l7 = if l7 {
        format!("mode = \"l7\"\ncertificate = \"{cert}\"\n")
    } else {
        String::new()
    };
    cluster_spec(
        project,
        name,
        &format!("ssh_allowed_cidrs = [{cidrs}]"),
        &format!("[load_balancer]\nhealth_check_path = \"{path}\"\n{l7}"),
    )
}

/// Apply `first`, then `second` (in-place changes only), then `second` again.
async fn update_in_place(project: &str, name: &str, l7: bool) {
    seed(project);
    let (first_cert, second_cert) = ("rancher-cert", "rancher-cert-2");
    let (code, body) = http(
        "POST",
        "/_fake/seed",
        &serde_json::json!({"project": project, "sslCertificates": [{"name": second_cert}]})
            .to_string(),
    );
    assert_eq!(code, 200, "{body}");
    let first = spec(
        project,
        name,
        l7,
        "\"203.0.113.0/24\"",
        "/healthz",
        first_cert,
    );
    let second = spec(
        project,
        name,
        l7,
        "\"198.51.100.0/24\", \"192.0.2.0/24\"",
        "/ping",
        second_cert,
    );
    let gce = Arc::new(
        GceProvider::from_spec_with(&first, Connection::fake(endpoint()))
            .await
            .unwrap(),
    );
    let triad = Orchestrator::new(gce.clone(), gce.clone(), gce.clone());
    triad
        .apply(&triad.plan(&first).await.unwrap())
        .await
        .unwrap();

    // The plan shows the in-place changes, on every node and on the balancer.
    let plan = triad.plan(&second).await.unwrap();
    let mut node_updates = 0;
    for action in &plan.nodes {
        match action {
            NodeAction::Update { changes, .. } => {
                assert_eq!(changes.len(), 1, "{changes:?}");
                assert_eq!(changes[0].attribute, Attribute::SshAllowedCidrs);
                assert!(changes[0].in_place);
                node_updates += 1;
            }
            other => panic!("expected an in-place update, got {other:?}"),
        }
    }
    assert_eq!(node_updates, 3, "{plan}");
    let LbAction::Update { changes, .. } = &plan.load_balancer else {
        panic!("expected an in-place balancer update: {plan}");
    };
    let mut want = vec![Attribute::HealthCheckPath];
    if l7 {
        want.insert(0, Attribute::Certificate);
    }
    let got: Vec<Attribute> = changes.iter().map(|c| c.attribute).collect();
    assert_eq!(got, want, "{plan}");

    let before = calls(project).len();
    triad.apply(&plan).await.unwrap();
    let (_, writes) = since(project, before);
    assert!(
        !writes
            .iter()
            .any(|m| m.ends_with(".insert") || m.ends_with(".delete")),
        "an in-place change made or deleted something: {writes:?}"
    );

    // Read back through the fake's REST API.
    let base = format!("/compute/v1/projects/{project}");
    let rule = get(&format!("{base}/global/firewalls/{name}-ssh"));
    assert_eq!(
        rule["sourceRanges"],
        serde_json::json!(["198.51.100.0/24", "192.0.2.0/24"]),
        "{rule}"
    );
    let hc = if l7 {
        get(&format!("{base}/global/healthChecks/{name}-hc"))
    } else {
        get(&format!("{base}/regions/{REGION}/healthChecks/{name}-hc"))
    };
    assert_eq!(hc["httpHealthCheck"]["requestPath"], "/ping", "{hc}");
    assert_eq!(hc["httpHealthCheck"]["port"], 80, "{hc}");
    let rule = if l7 {
        let proxy = get(&format!("{base}/global/targetHttpsProxies/{name}-https"));
        let certs = proxy["sslCertificates"].as_array().unwrap();
        assert_eq!(certs.len(), 1, "{proxy}");
        assert!(
            certs[0]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{second_cert}")),
            "{proxy}"
        );
        get(&format!("{base}/global/forwardingRules/{name}-https"))
    } else {
        get(&format!(
            "{base}/regions/{REGION}/forwardingRules/{name}-fr"
        ))
    };
    for attribute in [Attribute::HealthCheckPath, Attribute::Certificate] {
        let want = label(&drift::load_balancer_wanted(&second), attribute);
        assert_eq!(rule["labels"][attribute.label()], want, "{rule}");
    }
    // The registration ports' rules (internal in l7, with their address) carry the
    // balancer's labels too.
    let regional = format!("{base}/regions/{REGION}");
    let mut parts = vec![
        format!("{regional}/forwardingRules/{name}-fr-9345"),
        format!("{regional}/forwardingRules/{name}-fr-6443"),
    ];
    if l7 {
        parts.push(format!("{regional}/addresses/{name}-reg"));
    }
    for part in parts {
        let got = get(&part);
        assert_eq!(got["labels"], rule["labels"], "{part}: {got}");
    }
    let instances = get(&format!("{base}/aggregated/instances"));
    let mut seen = 0;
    for scoped in instances["items"].as_object().unwrap().values() {
        for i in scoped["instances"].as_array().into_iter().flatten() {
            if i["labels"]["triad-cluster"] == name {
                let want = label(&drift::node_wanted(&second), Attribute::SshAllowedCidrs);
                assert_eq!(i["labels"]["triad-fp-ssh-cidrs"], want, "{i}");
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 3);

    // A third apply: no change planned, no mutating call.
    let before = calls(project).len();
    let again = triad.plan(&second).await.unwrap();
    assert!(again.is_noop(), "third plan: {again}");
    triad.apply(&again).await.unwrap();
    let (_, writes) = since(project, before);
    assert!(writes.is_empty(), "the third apply mutated: {writes:?}");

    triad.destroy(&second.cluster()).await.unwrap();
    assert_no_violations();
}

/// The fingerprint label value of `attribute` in `wanted`.
fn label(wanted: &[drift::Wanted], attribute: Attribute) -> serde_json::Value {
    serde_json::Value::String(drift::labels_of(wanted)[attribute.label()].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn layer4_ssh_cidrs_and_health_check_update_in_place() {
    update_in_place("triad-day2-l4", "day2", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn layer7_certificate_and_health_check_update_in_place() {
    update_in_place("triad-day2-l7", "day2l7", true).await;
}
