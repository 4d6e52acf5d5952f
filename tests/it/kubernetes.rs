//! `[kubernetes]` end to end on the simulated cloud: registration listeners by
//! distribution and mode, health checks following the ingress, nodes that install
//! RKE2 themselves with a stable token (a rerun is a no-op), and the hand-over.

use std::collections::BTreeSet;

use triad::layers::CallCounter;
use triad::render;
use triad::spec::Distribution;

use crate::common::*;

fn ports(inv: &triad::Inventory) -> BTreeSet<u16> {
    inv.load_balancer.listeners.iter().map(|l| l.port).collect()
}

/// The user data node `name` of cluster `rancher` was launched with, read back from
/// the sim; `None` when no such node lives.
fn launched_with(sim: &triad::sim::SimCloud, name: &str) -> Option<String> {
    let snap = sim.snapshot();
    let node = snap
        .live_nodes("rancher")
        .into_iter()
        .find(|n| n.name == name)?;
    Some(
        node.user_data
            .as_ref()
            .expect("user data")
            .expose()
            .to_owned(),
    )
}

/// A fresh temporary directory holding a join token file, and the spec tables
/// `tables` followed by `[kubernetes]` with `install = true` and that `token_file`.
fn with_token(tag: &str, tables: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("triad-e2e-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    let tables = format!(
        "{tables}[kubernetes]\ninstall = true\ntoken_file = {:?}\n",
        token.display().to_string()
    );
    (dir, tables)
}

#[tokio::test(start_paused = true)]
async fn listeners_follow_the_distribution_and_registration() {
    for (tables, want, path) in [
        ("", vec![80, 443, 6443, 9345], "/healthz"),
        ("[kubernetes]\ndistribution = \"k3s\"\n", vec![80, 443, 6443], "/ping"),
        ("[kubernetes]\ndistribution = \"rke\"\n", vec![80, 443], "/healthz"),
        ("[load_balancer]\nregistration = \"first-node\"\n", vec![80, 443], "/healthz"),
        (
            "[load_balancer]\nmode = \"l7\"\ncertificate = \"arn:aws:acm:us-east-1:1:certificate/x\"\n[kubernetes]\ningress = \"traefik\"\n",
            vec![80, 443, 6443, 9345],
            "/ping",
        ),
    ] {
        let sim = cloud();
        let o = orchestrator(&sim, &CallCounter::new());
        let spec = spec_with("", tables);
        let inv = apply(&o, &spec).await.unwrap();
        assert_eq!(ports(&inv), want.into_iter().collect(), "{tables}");
        let snap = sim.snapshot();
        for tg in &snap.target_groups {
            let hc = &tg.health_check;
            if matches!(tg.port, 9345 | 6443) {
                assert_eq!((hc.protocol.as_str(), hc.port), ("TCP", tg.port));
                let l = snap.listeners.iter().find(|l| l.port == tg.port).unwrap();
                assert_eq!(l.protocol, "TCP", "passthrough in every mode: {tables}");
            } else {
                assert_eq!(hc.path, path, "{tables}");
            }
            assert_eq!(tg.targets.len(), 3, "all nodes are targets of {}", tg.name);
        }
        assert!(o.plan(&spec).await.unwrap().is_noop(), "{tables}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_old_balancer_gets_the_registration_listeners() {
    let sim = cloud();
    let o = orchestrator(&sim, &CallCounter::new());
    apply(&o, &spec_with("", "[kubernetes]\ndistribution = \"rke\"\n"))
        .await
        .unwrap();
    let rke2 = spec();
    let plan = o.plan(&rke2).await.unwrap();
    assert!(!plan.is_noop(), "{plan}");
    let inv = o.apply(&plan).await.unwrap();
    assert_eq!(ports(&inv), BTreeSet::from([80, 443, 6443, 9345]));
    assert!(o.plan(&rke2).await.unwrap().is_noop());
}

#[tokio::test(start_paused = true)]
async fn install_with_a_token_file_reruns_as_a_no_op() {
    let (dir, tables) = with_token("k8s", "");
    let sim = cloud();
    let counter = CallCounter::new();
    let o = orchestrator(&sim, &counter);
    let spec = spec_with("", &tables);
    let plan = o.plan(&spec).await.unwrap();
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    let inv = o.apply(&plan).await.unwrap();
    let k = inv.kubernetes.clone().expect("inventory.kubernetes");
    assert_eq!(k.distribution, Distribution::Rke2);
    assert_eq!(k.registration_address.as_deref(), Some(FQDN));
    assert_eq!(
        k.join_url.as_deref(),
        Some("https://rancher.example.com:9345")
    );
    assert_eq!(
        k.server_url.as_deref(),
        Some("https://rancher.example.com:6443")
    );

    // Validated again (a new run), the spec gives the same user data: nothing changes.
    let again = spec_with("", &tables);
    counter.reset();
    sim.reset_stats();
    let plan = o.plan(&again).await.unwrap();
    assert!(plan.is_noop(), "{plan}");
    o.apply(&plan).await.unwrap();
    assert_eq!(sim.stats().mutating, 0);
    for n in ["rancher-1", "rancher-2"] {
        assert_eq!(
            triad::bootstrap::user_data(&spec, n),
            triad::bootstrap::user_data(&again, n)
        );
    }

    // The hand-over for install = true: no per-node files (the nodes have them),
    // the Rancher chart and the kubeconfig command.
    let files = render::bundle(&again, &inv);
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("nodes/") || *p == "token"),
        "{paths:?}"
    );
    for want in [
        "rancher/values.yaml",
        "rancher/install.sh",
        "kubeconfig.sh",
        "inventory.json",
    ] {
        assert!(paths.contains(&want), "{want} in {paths:?}");
    }
    let out = dir.join("out");
    render::write_to(&files, &out).unwrap();
    let back: triad::Inventory =
        serde_json::from_str(&std::fs::read_to_string(out.join("inventory.json")).unwrap())
            .unwrap();
    assert_eq!(back, inv);
    let steps = render::next_steps(&again, &inv);
    assert!(steps.contains("install rke2 themselves"), "{steps}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn rke_plan_warns_end_of_life() {
    let sim = cloud();
    let o = orchestrator(&sim, &CallCounter::new());
    let spec = spec_with("", "[kubernetes]\ndistribution = \"rke\"\n");
    let plan = o.plan(&spec).await.unwrap();
    assert!(
        plan.to_string()
            .contains("! warning: kubernetes.distribution = \"rke\""),
        "{plan}"
    );
    let inv = o.apply(&plan).await.unwrap();
    let steps = render::next_steps(&spec, &inv);
    assert!(steps.contains("rke up"), "{steps}");
    let default = render::next_steps(&spec_with("", ""), &inv);
    assert!(
        default.contains("Install rke2"),
        "RKE2 is the default next step: {default}"
    );
    assert!(!default.contains("rke up"));
}

/// The node network the provider reports (the sim: `10.<zone index>.0.0/16`) goes
/// into the nodes' NO_PROXY and Rancher's `noProxy` although the spec lists no
/// `nodes.network_cidrs`; a pod CIDR overlapping it is refused at plan, naming
/// `kubernetes.cidr_pods`, before anything is made.
#[tokio::test(start_paused = true)]
async fn the_provider_network_goes_into_no_proxy() {
    let sim = cloud();
    let counter = CallCounter::new();
    let o = orchestrator(&sim, &counter);
    let spec = spec(); // has a [proxy]
    assert!(spec.node_network_cidrs().is_empty());
    let plan = o.plan(&spec).await.unwrap();
    let network = plan.spec().node_network_cidrs();
    assert_eq!(network, ["10.0.0.0/16", "10.1.0.0/16", "10.2.0.0/16"]);
    let no_proxy = triad::bootstrap::no_proxy(plan.spec());
    let user_data = triad::bootstrap::user_data(plan.spec(), "rancher-1");
    for c in &network {
        assert!(no_proxy.contains(c), "{c} in {no_proxy:?}");
        assert!(user_data.contains(c.as_str()), "{c} in the user data");
    }
    let inv = o.apply(&plan).await.unwrap();
    let values = render::bundle(plan.spec(), &inv)
        .into_iter()
        .find(|f| f.path == "rancher/values.yaml")
        .expect("values.yaml");
    assert!(
        values.contents.contains("10.2.0.0/16"),
        "{}",
        values.contents
    );
    // Learned each plan, the same each time: a rerun changes nothing.
    assert!(o.plan(&spec).await.unwrap().is_noop());

    let bad = spec_with("", "[kubernetes]\ncidr_pods = \"10.1.0.0/16\"\n");
    let fresh = cloud();
    let counter = CallCounter::new();
    let err = orchestrator(&fresh, &counter).plan(&bad).await.unwrap_err();
    let problems = err.spec_problems().expect("a spec problem");
    assert!(problems.names("kubernetes.cidr_pods"), "{err}");
    assert!(err.to_string().contains("10.1.0.0/16"), "{err}");
    assert_eq!(fresh.stats().mutating, 0);
}

/// An l7 balancer that cannot pass TCP through (the sim models AWS's ALB) serves the
/// registration ports on a TCP companion at an address of its own. The balancer is
/// then made before the nodes, whose user data joins at the companion's address
/// (nodes 2 and 3) and carries it in tls-san and NO_PROXY; the inventory, the
/// hand-over and a rerun (no change) agree with it.
#[tokio::test(start_paused = true)]
async fn an_l7_balancer_serves_registration_apart_and_the_nodes_join_there() {
    let (dir, tables) = with_token(
        "apart",
        "[load_balancer]\nmode = \"l7\"\ncertificate = \"arn:aws:acm:us-east-1:1:certificate/x\"\n",
    );
    let sim = cloud();
    let counter = CallCounter::new();
    let events = std::sync::Arc::new(triad::events::RecordingObserver::default());
    let o = orchestrator(&sim, &counter).with_observer(events.clone());
    let spec = spec_with("", &tables);
    let inv = apply(&o, &spec).await.unwrap();

    // The companion's address, as the balancer reports it.
    let lb = &inv.load_balancer;
    let Some(triad::model::Endpoint::Hostname { name: reg, .. }) = &lb.registration_endpoint else {
        panic!("an l7 balancer reports its registration address: {lb:?}");
    };
    assert!(reg.starts_with("internal-"), "{reg}");
    assert_ne!(
        Some(reg.as_str()),
        lb.endpoint.as_ref().and_then(|e| e.host()).as_deref()
    );
    assert_eq!(ports(&inv), BTreeSet::from([80, 443, 6443, 9345]));

    // The balancer was active before the first node was made.
    let ev = events.events();
    let lb_active = ev.iter().position(|e| {
        matches!(e, triad::events::Event::Finished { resource: triad::events::Resource::LoadBalancer(_), step, .. } if step == "active")
    });
    let first_node = ev.iter().position(|e| {
        matches!(e, triad::events::Event::Started { resource: triad::events::Resource::Node(_), step } if step == "creating")
    });
    assert!(lb_active.is_some() && first_node.is_some(), "{ev:?}");
    assert!(lb_active < first_node, "balancer first: {ev:?}");

    // What each node was launched with, read back from the cloud.
    for name in ["rancher-1", "rancher-2", "rancher-3"] {
        let data = launched_with(&sim, name).expect("a live node");
        let first = name == "rancher-1";
        assert_eq!(
            data.contains(&format!("server: https://{reg}:9345")),
            !first,
            "{}: {data}",
            name
        );
        assert!(!data.contains(&format!("server: https://{FQDN}")), "{data}");
        assert!(
            data.contains(&format!("- {reg}")),
            "tls-san of {}: {data}",
            name
        );
        let no_proxy = data
            .lines()
            .find_map(|l| l.trim().strip_prefix("NO_PROXY="))
            .unwrap_or_else(|| panic!("NO_PROXY in {data}"));
        assert!(
            no_proxy.trim_matches('"').split(',').any(|e| e == reg),
            "{reg} in {no_proxy}"
        );
    }

    // The inventory and the hand-over name the companion too.
    let k = inv.kubernetes.clone().expect("inventory.kubernetes");
    assert_eq!(k.registration_address.as_deref(), Some(reg.as_str()));
    assert_eq!(k.join_url, Some(format!("https://{reg}:9345")));
    assert_eq!(k.server_url, Some(format!("https://{reg}:6443")));
    let kubeconfig = render::kubeconfig_command(&spec, &inv).expect("kubeconfig command");
    assert!(
        kubeconfig.contains(&format!("https://{reg}:6443")),
        "{kubeconfig}"
    );

    // A rerun changes nothing, and its inventory says the same.
    sim.reset_stats();
    let plan = o.plan(&spec).await.unwrap();
    assert!(plan.is_noop(), "{plan}");
    assert_eq!(o.inventory(&plan).and_then(|i| i.kubernetes), Some(k));
    o.apply(&plan).await.unwrap();
    assert_eq!(sim.stats().mutating, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `registration = "first-node"` with nodes that install Kubernetes: node 1 is made
/// alone and starts the cluster; the others join its private address. A node made
/// later — node 1's slot made again after its VM was lost, or a rolling
/// replacement — joins a running node and never starts a cluster of its own.
#[tokio::test(start_paused = true)]
async fn first_node_registration_with_install_makes_node_one_first() {
    use triad::events::{Event, RecordingObserver, Resource};
    use triad::NodeProvider;

    let (dir, tables) = with_token("first", "[load_balancer]\nregistration = \"first-node\"\n");
    let sim = cloud();
    let events = std::sync::Arc::new(RecordingObserver::default());
    let o = orchestrator(&sim, &CallCounter::new()).with_observer(events.clone());
    let spec = spec_with("", &tables);
    let inv = apply(&o, &spec).await.unwrap();

    // Node 1 ran before node 2 was made.
    let ev = events.events();
    let at = |node: &str, step: &str| {
        ev.iter().position(|e| match e {
            Event::Finished {
                resource: Resource::Node(n),
                step: s,
                ..
            }
            | Event::Started {
                resource: Resource::Node(n),
                step: s,
            } => n == node && s == step,
            _ => false,
        })
    };
    let (one_running, two_created) = (at("rancher-1", "running"), at("rancher-2", "creating"));
    assert!(one_running.is_some() && one_running < two_created, "{ev:?}");

    // What the nodes were launched with, read back from the cloud.
    let server_of = |name: &str| -> Option<String> {
        launched_with(&sim, name)?
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: https://"))
            .map(|s| s.trim_end_matches(":9345").to_owned())
    };
    let ip_of = |name: &str| {
        sim.snapshot()
            .live_nodes("rancher")
            .into_iter()
            .find(|n| n.name == name)
            .map(|n| n.private_ip.to_string())
            .unwrap()
    };
    let one = ip_of("rancher-1");
    assert_eq!(server_of("rancher-1"), None, "node 1 starts the cluster");
    for n in ["rancher-2", "rancher-3"] {
        assert_eq!(server_of(n), Some(one.clone()), "{n} joins node 1");
    }
    let k = inv.kubernetes.clone().expect("inventory.kubernetes");
    assert_eq!(k.join_url, Some(format!("https://{one}:9345")));
    assert!(o.plan(&spec).await.unwrap().is_noop());

    // Node 1's VM is lost: its slot is made again, and joins node 2.
    let lost = inv.nodes.iter().find(|n| n.name == "rancher-1").unwrap();
    sim.delete_node(&spec.cluster(), lost).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    apply(&o, &spec).await.unwrap();
    assert_eq!(server_of("rancher-1"), Some(ip_of("rancher-2")));

    // A rolling replace: each replacement joins a running node, not the one it
    // replaces.
    let mut newer = spec.clone().into_inner();
    newer.nodes.image = Some("ami-0b".into());
    let newer = newer.validate().unwrap();
    let before: Vec<(String, String)> = ["rancher-1", "rancher-2", "rancher-3"]
        .iter()
        .map(|n| (n.to_string(), ip_of(n)))
        .collect();
    apply(&o, &newer).await.unwrap();
    for (old, old_ip) in before {
        let new = format!("{old}-g2");
        let joined = server_of(&new).unwrap_or_else(|| panic!("{new} joins the cluster"));
        assert_ne!(joined, old_ip, "{new} does not join the node it replaces");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
