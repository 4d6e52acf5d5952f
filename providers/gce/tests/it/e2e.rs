//! The orchestrator end to end against the fake: plan → apply → read back → a rerun
//! with zero mutating calls → destroy → nothing labelled left; for l4 and l7 (whose
//! nodes install RKE2 and join through node 1, beside the internal passthrough
//! balancer of the registration ports).

use std::sync::Arc;

use triad_core::layers::{CallCounter, Stack};
use triad_core::orchestrator::LbAction;
use triad_core::{Orchestrator, ValidSpec};
use triad_gce::{Connection, GceProvider};

use crate::{
    assert_no_violations, balancing_modes, calls, cluster_spec, endpoint, fail_next, http,
    is_mutation, orchestrator, rest, seed, serving, state,
};

fn spec(project: &str, name: &str, l7: bool) -> ValidSpec {
    let lb = if l7 {
        // The nodes install RKE2 (from user data written after the balancer) and
        // join through its registration address.
        let token = std::env::temp_dir().join(format!("triad-gce-it-{name}.token"));
        std::fs::write(&token, "K10-test-join-token\n").unwrap();
        format!(
            "[load_balancer]\nmode = \"l7\"\ncertificate = \"rancher-cert\"\n\
             [kubernetes]\ninstall = true\ntoken_file = {:?}\n",
            token.to_str().unwrap()
        )
    } else {
        String::new()
    };
    cluster_spec(
        project,
        name,
        "ssh_allowed_cidrs = [\"203.0.113.0/24\"]",
        &format!("[proxy]\nhttp = \"http://proxy.internal:3128\"\n{lb}"),
    )
}

/// l7's registration ports, read back over REST: an internal address in the nodes'
/// subnetwork `range`, shared by an INTERNAL rule per port, each to an INTERNAL
/// backend service with a TCP check on that port and the three nodes' groups; the
/// firewall rule for the subnetwork and Google's checkers; and the nodes' user data
/// names that address in tls-san but joins through node 1 (see
/// `backends_reach_balancer`).
fn registration_apart(
    project: &str,
    name: &str,
    inv: &triad_core::model::Inventory,
    range: &str,
    instances: &[&serde_json::Value],
) {
    let regional = format!("/compute/v1/projects/{project}/regions/us-central1");
    let addr = rest("GET", &format!("{regional}/addresses/{name}-reg"));
    assert_eq!(addr["addressType"], "INTERNAL", "{addr}");
    assert_eq!(addr["purpose"], "SHARED_LOADBALANCER_VIP", "{addr}");
    assert!(
        addr["subnetwork"]
            .as_str()
            .unwrap()
            .ends_with("/subnetworks/default"),
        "{addr}"
    );
    let ip: std::net::Ipv4Addr = addr["address"].as_str().unwrap().parse().unwrap();
    let (net, bits) = range.split_once('/').unwrap();
    let net: std::net::Ipv4Addr = net.parse().unwrap();
    let mask = u32::MAX << (32 - bits.parse::<u32>().unwrap());
    assert_eq!(
        u32::from(ip) & mask,
        u32::from(net),
        "{ip} is not in {range}"
    );
    assert_eq!(
        inv.load_balancer
            .registration_endpoint
            .as_ref()
            .unwrap()
            .to_string(),
        ip.to_string()
    );
    for port in [9345, 6443] {
        let fr = rest(
            "GET",
            &format!("{regional}/forwardingRules/{name}-fr-{port}"),
        );
        assert_eq!(fr["loadBalancingScheme"], "INTERNAL", "{fr}");
        assert_eq!(fr["IPAddress"], ip.to_string(), "{fr}");
        assert_eq!(fr["ports"], serde_json::json!([port.to_string()]), "{fr}");
        assert_eq!(fr["labels"]["triad-cluster"], name, "{fr}");
        let bs_path = format!("{regional}/backendServices/{name}-bs-{port}");
        assert!(fr["backendService"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{name}-bs-{port}")));
        let bs = rest("GET", &bs_path);
        assert_eq!(bs["loadBalancingScheme"], "INTERNAL", "{bs}");
        assert_eq!(
            balancing_modes(&bs),
            ["CONNECTION".to_owned()].into(),
            "{bs}"
        );
        let hc = rest("GET", &format!("{regional}/healthChecks/{name}-hc-{port}"));
        assert!(bs["healthChecks"][0]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{name}-hc-{port}")));
        assert_eq!(hc["type"], "TCP", "{hc}");
        assert_eq!(hc["tcpHealthCheck"]["port"], port, "{hc}");
        assert_eq!(serving(project, &bs_path).len(), 3);
    }
    // The HTTPS balancer's backend service shares the groups, by RATE.
    let web = rest(
        "GET",
        &format!("/compute/v1/projects/{project}/global/backendServices/{name}-bs"),
    );
    assert_eq!(balancing_modes(&web), ["RATE".to_owned()].into(), "{web}");
    let fw = rest(
        "GET",
        &format!("/compute/v1/projects/{project}/global/firewalls/{name}-reg"),
    );
    assert_eq!(
        fw["allowed"][0]["ports"],
        serde_json::json!(["9345", "6443"]),
        "{fw}"
    );
    let sources = fw["sourceRanges"].as_array().unwrap();
    for s in ["35.191.0.0/16", "130.211.0.0/22", range] {
        assert!(sources.iter().any(|x| x == s), "{s} not in {fw}");
    }
    let ports: Vec<u16> = inv.load_balancer.listeners.iter().map(|l| l.port).collect();
    assert_eq!(ports, [80, 443, 9345, 6443]);
    // The nodes: Google answers a backend that dials its own passthrough balancer
    // on that backend itself, so the servers join through node 1 (made first), not
    // through the balancer; every one names the internal address in tls-san.
    let first = instances
        .iter()
        .find(|i| i["name"] == format!("{name}-1"))
        .expect("node 1");
    let first_ip = first["networkInterfaces"][0]["networkIP"].as_str().unwrap();
    let server = format!("server: https://{first_ip}:9345");
    let mut joining = 0;
    for i in instances {
        let ud = i["metadata"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == "user-data")
            .unwrap()["value"]
            .as_str()
            .unwrap();
        if ud.contains(&server) {
            joining += 1;
        }
        assert!(!ud.contains(&format!("server: https://{ip}")), "{ud}");
        assert!(ud.contains(&format!("- {ip}")), "no {ip} in tls-san: {ud}");
        assert!(ud.contains("tls-san"), "{ud}");
    }
    assert_eq!(joining, 2, "nodes 2 and 3 join at {server}");
}

async fn run(project: &str, name: &str, l7: bool) {
    seed(project);
    let spec = spec(project, name, l7);
    let gce = Arc::new(
        GceProvider::from_spec_with(&spec, Connection::fake(endpoint()))
            .await
            .unwrap(),
    );
    let counter = CallCounter::new();
    let counted = Arc::new(Stack::new(gce.clone()).count(counter.clone()).build());
    let triad = Orchestrator::new(counted.clone(), counted.clone(), counted.clone());

    let plan = triad.plan(&spec).await.unwrap();
    assert!(!plan.is_noop());
    // The node network the provider reports is the region's subnetwork's primary
    // range, as Compute Engine itself says (read back over REST).
    let subnet = rest(
        "GET",
        &format!("/compute/v1/projects/{project}/regions/us-central1/subnetworks/default"),
    );
    let range = subnet["ipCidrRange"].as_str().unwrap().to_owned();
    assert!(spec.node_network_cidrs().is_empty());
    assert_eq!(
        plan.spec().node_network_cidrs(),
        std::slice::from_ref(&range)
    );
    let inv = triad.apply(&plan).await.unwrap();
    assert_eq!(inv.nodes.len(), 3);
    assert_eq!(inv.tls_external, l7);

    // Read everything back from the fake.
    let s = state(project);
    let res = s["resources"].as_object().unwrap();
    let instances: Vec<&serde_json::Value> = res
        .iter()
        .filter(|(k, _)| k.contains("/instances/"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(instances.len(), 3);
    let zones: std::collections::BTreeSet<&str> = instances
        .iter()
        .map(|i| i["zone"].as_str().unwrap())
        .collect();
    assert_eq!(zones.len(), 3, "nodes are spread over 3 zones");
    for i in &instances {
        assert_eq!(i["labels"]["triad-cluster"], name);
        assert_eq!(i["status"], "RUNNING");
        let ud = i["metadata"]["items"][0]["value"].as_str().unwrap();
        assert!(ud.starts_with("#cloud-config"), "user-data is cloud-init");
        assert!(ud.contains("proxy.internal:3128"));
        let no_proxy = ud
            .lines()
            .find(|l| l.trim_start().starts_with("NO_PROXY="))
            .unwrap_or_else(|| panic!("no NO_PROXY in {ud}"));
        assert!(no_proxy.contains(&range), "{no_proxy} lacks {range}");
        assert!(
            i["networkInterfaces"][0].get("accessConfigs").is_none(),
            "no public IP"
        );
        assert!(i["machineType"]
            .as_str()
            .unwrap()
            .ends_with("/e2-standard-4"));
    }
    let members: usize = s["members"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m.as_array().unwrap().len())
        .sum();
    assert_eq!(members, 3, "every node is in its zone's instance group");
    // The servers join node 1, whichever mode: the inventory (and so the hand-over)
    // says so, while the API is served at the registration address.
    let node1 = inv
        .nodes
        .iter()
        .find(|n| n.name == format!("{name}-1"))
        .unwrap();
    let k = inv.kubernetes.as_ref().expect("inventory.kubernetes");
    assert_eq!(
        k.join_url,
        Some(format!("https://{}:9345", node1.private_ip.unwrap()))
    );
    if !l7 {
        assert_eq!(
            k.server_url,
            Some(format!("https://{name}.example.com:6443"))
        );
    }
    let rule_key = if l7 {
        format!("projects/{project}/global/forwardingRules/{name}-https")
    } else {
        format!("projects/{project}/regions/us-central1/forwardingRules/{name}-fr")
    };
    let rule = &res[&rule_key];
    let ip = rule["IPAddress"].as_str().unwrap();
    assert_eq!(inv.load_balancer.endpoint.as_ref().unwrap().to_string(), ip);
    if l7 {
        registration_apart(project, name, &inv, &range, &instances);
        assert_eq!(rule["portRange"], "443");
        assert!(res.contains_key(&format!(
            "projects/{project}/global/forwardingRules/{name}-http"
        )));
        assert!(
            res[&format!("projects/{project}/global/urlMaps/{name}-redirect")]
                ["defaultUrlRedirect"]["httpsRedirect"]
                .as_bool()
                .unwrap()
        );
        // TLS 1.2 at least: triad's SSL policy, attached to the HTTPS proxy.
        let policy_path = format!("projects/{project}/global/sslPolicies/{name}-tls");
        let policy = &res[&policy_path];
        assert_eq!(policy["minTlsVersion"], "TLS_1_2", "{policy}");
        assert_eq!(policy["profile"], "MODERN", "{policy}");
        let proxy = &res[&format!("projects/{project}/global/targetHttpsProxies/{name}-https")];
        assert!(
            proxy["sslPolicy"]
                .as_str()
                .is_some_and(|l| l.ends_with(&policy_path)),
            "{proxy}"
        );
    } else {
        // RKE2's registration address: the same address, a passthrough rule per
        // port, each to a backend service with a TCP check on that port and the
        // nodes' instance groups; read back through the fake's REST API.
        assert_eq!(rule["ports"], serde_json::json!(["80", "443"]));
        let regional = format!("/compute/v1/projects/{project}/regions/us-central1");
        for port in [9345, 6443] {
            let fr = rest(
                "GET",
                &format!("{regional}/forwardingRules/{name}-fr-{port}"),
            );
            assert_eq!(fr["ports"], serde_json::json!([port.to_string()]), "{fr}");
            assert_eq!(fr["IPAddress"], ip, "{fr}");
            assert_eq!(fr["labels"]["triad-cluster"], name, "{fr}");
            let bs_link = fr["backendService"].as_str().unwrap();
            assert!(bs_link.ends_with(&format!("/{name}-bs-{port}")), "{fr}");
            let bs = rest(
                "GET",
                &format!("{regional}/backendServices/{name}-bs-{port}"),
            );
            assert_eq!(bs["loadBalancingScheme"], "EXTERNAL", "{bs}");
            let hc_link = bs["healthChecks"][0].as_str().unwrap();
            assert!(hc_link.ends_with(&format!("/{name}-hc-{port}")), "{bs}");
            let hc = rest("GET", &format!("{regional}/healthChecks/{name}-hc-{port}"));
            assert_eq!(hc["type"], "TCP", "{hc}");
            assert_eq!(hc["tcpHealthCheck"]["port"], port, "{hc}");
            let served = serving(
                project,
                &format!("{regional}/backendServices/{name}-bs-{port}"),
            );
            assert_eq!(served.len(), 3, "{served:?}");
        }
        let web = rest(
            "GET",
            &format!("/compute/v1/projects/{project}/global/firewalls/{name}-web"),
        );
        assert_eq!(
            web["allowed"][0]["ports"],
            serde_json::json!(["80", "443", "9345", "6443"]),
            "{web}"
        );
        let ports: Vec<u16> = inv.load_balancer.listeners.iter().map(|l| l.port).collect();
        assert_eq!(ports, [80, 443, 9345, 6443]);
        assert_eq!(rule["loadBalancingScheme"], "EXTERNAL");
    }
    let rrsets = s["zones"]["example"]["rrsets"].as_array().unwrap();
    let a = rrsets
        .iter()
        .find(|r| r["name"] == format!("{name}.example.com.") && r["type"] == "A")
        .unwrap();
    assert_eq!(a["rrdatas"], serde_json::json!([ip]));
    assert!(rrsets
        .iter()
        .any(|r| r["name"] == format!("_triad.{name}.example.com.") && r["type"] == "TXT"));

    // A rerun, in a fresh process as an operator would run it, changes nothing: no
    // mutating trait call, no mutating API call.
    let gce = Arc::new(
        GceProvider::from_spec_with(&spec, Connection::fake(endpoint()))
            .await
            .unwrap(),
    );
    let counted = Arc::new(Stack::new(gce).count(counter.clone()).build());
    let triad = Orchestrator::new(counted.clone(), counted.clone(), counted);
    counter.reset();
    let before = calls(project).len();
    let again = triad.plan(&spec).await.unwrap();
    assert!(again.is_noop(), "second plan: {again}");
    let inv2 = triad.apply(&again).await.unwrap();
    assert_eq!(counter.mutating(), 0, "{:?}", counter.snapshot());
    let api: Vec<String> = calls(project)[before..]
        .iter()
        .filter(|m| is_mutation(m))
        .cloned()
        .collect();
    assert!(api.is_empty(), "the rerun mutated: {api:?}");
    // …and reads little: plan and apply together, in the cluster's project. (The
    // image project `ubuntu-os-cloud` is shared by every test of this binary, which
    // run in parallel, so its reads cannot be told apart per test: a preflight image
    // read by this rerun is not counted here.)
    let reads = calls(project)[before..].to_vec();
    // Two of them list the labelled addresses: a balancer half deleted by a crash
    // during a mode change has lost its forwarding rules but not its address.
    assert!(reads.len() <= 10, "{} reads: {reads:?}", reads.len());
    assert_eq!(inv2.load_balancer.endpoint, inv.load_balancer.endpoint);

    // Destroy: nothing labelled left.
    let report = triad.destroy(&spec.cluster()).await.unwrap();
    assert!(report.deleted.len() >= 8, "{:?}", report.deleted);
    // (Every resource below is gone: the internal parts of l7's registration ports
    // too.)
    let s = state(project);
    let left: Vec<&String> = s["resources"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| {
            !k.contains("/networks/")
                && !k.contains("/subnetworks/")
                && !k.contains("/sslCertificates/")
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let rrsets = s["zones"]["example"]["rrsets"].as_array().unwrap();
    assert_eq!(rrsets.len(), 2, "only SOA and NS remain: {rrsets:?}");
    assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn layer4_apply_rerun_destroy() {
    run("triad-e2e-l4", "rancher", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn layer7_apply_rerun_destroy() {
    run("triad-e2e-l7", "rancher7", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn registration_ports_on_the_web_rule_move_to_rules_of_their_own() {
    let (project, name) = ("triad-e2e-reg-move", "regmove");
    seed(project);
    let spec = cluster_spec(project, name, "", "");
    let gce = Arc::new(
        GceProvider::from_spec_with(&spec, Connection::fake(endpoint()))
            .await
            .unwrap(),
    );
    let triad = Orchestrator::new(gce.clone(), gce.clone(), gce);
    triad
        .apply(&triad.plan(&spec).await.unwrap())
        .await
        .unwrap();

    // The layout of a cluster made before: one rule carries all four ports.
    let regional = format!("/compute/v1/projects/{project}/regions/us-central1");
    let rule_path = format!("{regional}/forwardingRules/{name}-fr");
    let rule = rest("GET", &rule_path);
    for path in [
        format!("{rule_path}-9345"),
        format!("{rule_path}-6443"),
        rule_path.clone(),
    ] {
        let (code, body) = http("DELETE", &path, "");
        assert_eq!(code, 200, "{path}: {body}");
    }
    let mut old = serde_json::Map::new();
    for key in [
        "name",
        "description",
        "loadBalancingScheme",
        "IPProtocol",
        "backendService",
        "IPAddress",
        "labels",
    ] {
        old.insert(key.into(), rule[key].clone());
    }
    old.insert(
        "ports".into(),
        serde_json::json!(["80", "443", "9345", "6443"]),
    );
    let (code, body) = http(
        "POST",
        &format!("{regional}/forwardingRules"),
        &serde_json::Value::Object(old).to_string(),
    );
    assert_eq!(code, 200, "{body}");

    // The plan completes the balancer; the apply moves the ports to their own rules
    // on the same address.
    let plan = triad.plan(&spec).await.unwrap();
    assert!(
        matches!(plan.load_balancer, LbAction::Complete { .. }),
        "{plan}"
    );
    triad.apply(&plan).await.unwrap();
    let web = rest("GET", &rule_path);
    assert_eq!(web["ports"], serde_json::json!(["80", "443"]), "{web}");
    assert_eq!(web["IPAddress"], rule["IPAddress"]);
    for port in [9345, 6443] {
        let fr = rest("GET", &format!("{rule_path}-{port}"));
        assert_eq!(fr["ports"], serde_json::json!([port.to_string()]), "{fr}");
        assert_eq!(fr["IPAddress"], rule["IPAddress"]);
    }
    let again = triad.plan(&spec).await.unwrap();
    assert!(again.is_noop(), "{again}");

    triad.destroy(&spec.cluster()).await.unwrap();
    assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs testing/fake-gce; scripts/test starts it"]
async fn l7_registration_parts_missed_by_a_crash_are_completed_before_the_nodes() {
    let (project, name) = ("triad-e2e-reg-crash", "regcrash");
    seed(project);
    let spec = spec(project, name, true);
    let triad = orchestrator(&spec).await;
    // The internal address (the one regional address an l7 balancer has) cannot
    // be made: the apply stops after the HTTPS balancer, before any node.
    fail_next(project, "compute.addresses.insert", 403, "forbidden");
    let err = triad
        .apply(&triad.plan(&spec).await.unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&format!("{name}-reg")), "{err}");
    let global = format!("/compute/v1/projects/{project}/global");
    rest("GET", &format!("{global}/forwardingRules/{name}-https"));
    let s = state(project);
    assert!(
        !s["resources"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.contains("/instances/")),
        "no node before the registration address"
    );

    // The next plan completes the balancer; the apply makes the internal parts,
    // then the nodes.
    let plan = triad.plan(&spec).await.unwrap();
    assert!(
        matches!(plan.load_balancer, LbAction::Complete { .. }),
        "{plan}"
    );
    let inv = triad.apply(&plan).await.unwrap();
    let ip = inv
        .load_balancer
        .registration_endpoint
        .as_ref()
        .expect("a registration address")
        .to_string();
    let regional = format!("/compute/v1/projects/{project}/regions/us-central1");
    assert_eq!(
        rest("GET", &format!("{regional}/addresses/{name}-reg"))["address"],
        ip
    );
    for port in [9345, 6443] {
        let fr = rest(
            "GET",
            &format!("{regional}/forwardingRules/{name}-fr-{port}"),
        );
        assert_eq!(fr["IPAddress"], ip, "{fr}");
    }
    // They name the internal address in tls-san and join node 1 (Google answers a
    // backend dialing its own passthrough balancer on itself).
    let s = state(project);
    let instances: Vec<&serde_json::Value> = s["resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.contains("/instances/"))
        .map(|(_, i)| i)
        .collect();
    let first_ip = instances
        .iter()
        .find(|i| i["name"] == format!("{name}-1"))
        .expect("node 1")["networkInterfaces"][0]["networkIP"]
        .as_str()
        .unwrap()
        .to_owned();
    let text: Vec<String> = instances.iter().map(|i| i.to_string()).collect();
    let joining = text
        .iter()
        .filter(|t| t.contains(&format!("server: https://{first_ip}:9345")))
        .count();
    assert_eq!(joining, 2);
    assert!(text.iter().all(|t| t.contains(&format!("- {ip}"))));
    let again = triad.plan(&spec).await.unwrap();
    assert!(again.is_noop(), "{again}");

    triad.destroy(&spec.cluster()).await.unwrap();
    assert_no_violations();
}
