use std::collections::BTreeMap;

use super::*;
use crate::bootstrap;
use crate::model::{DnsEntry, Endpoint, LbState, LoadBalancer, NodeState, Providers, RecordKind};
use crate::spec::{ClusterSpec, LbMode, LbScheme};

const PASSWORD: &str = "s3cr3t-Pw";

fn spec(mode: LbMode, proxy: bool) -> ValidSpec {
    let mut text = String::from(
        "name = \"rancher\"\nregion = \"us-east-1\"\n[nodes]\nssh_user = \"admin\"\n[dns]\nzone = \"example.com\"\nhostname = \"Rancher.Example.com.\"\n",
    );
    if mode == LbMode::L7 {
        text.push_str("[load_balancer]\nmode = \"l7\"\ncertificate = \"arn:aws:acm:cert\"\n");
    }
    if proxy {
        text.push_str(&format!(
            "[proxy]\nhttp = \"http://ops:{PASSWORD}@proxy.corp:3128\"\nno_proxy = [\"corp.example\"]\n"
        ));
    }
    ClusterSpec::from_toml(&text).unwrap().validate().unwrap()
}

fn node(n: u8, zone: &str) -> Node {
    Node {
        id: format!("i-{n}"),
        name: format!("rancher-{n}"),
        zone: zone.into(),
        state: NodeState::Running,
        private_ip: Some(format!("10.0.{n}.10").parse().unwrap()),
        public_ip: None,
        ssh: None,
        labels: BTreeMap::new(),
        created_ms: None,
    }
}

fn inventory(mode: LbMode, endpoint: Endpoint) -> Inventory {
    // Deliberately not in name order: renderers order by the spec.
    let nodes = vec![
        node(2, "us-east-1b"),
        node(1, "us-east-1a"),
        node(3, "us-east-1c"),
    ];
    let kind = match endpoint {
        Endpoint::Ip { .. } => RecordKind::A,
        Endpoint::Hostname { .. } => RecordKind::Cname,
    };
    Inventory {
        cluster: "rancher".into(),
        region: "us-east-1".into(),
        load_balancer: LoadBalancer {
            id: "lb-1".into(),
            name: "rancher-lb".into(),
            mode,
            scheme: LbScheme::InternetFacing,
            state: LbState::Active,
            endpoint: Some(endpoint.clone()),
            registration_endpoint: None,
            listeners: vec![],
            targets: nodes.iter().map(|n| n.id.clone()).collect(),
            labels: Default::default(),
            partial_targets: Vec::new(),
        },
        nodes,
        dns: DnsEntry {
            fqdn: "rancher.example.com".into(),
            zone: "example.com".into(),
            kind,
            target: endpoint,
            ttl: Some(60),
        },
        rancher_url: "https://rancher.example.com".into(),
        tls_external: mode == LbMode::L7,
        providers: Providers {
            nodes: "sim".into(),
            load_balancer: "sim".into(),
            dns: "sim".into(),
        },
        kubernetes: None,
    }
}

fn ip_endpoint() -> Endpoint {
    Endpoint::Ip {
        addresses: vec!["203.0.113.10".parse().unwrap()],
    }
}

fn name_endpoint() -> Endpoint {
    Endpoint::Hostname {
        name: "rancher-lb-123.elb.us-east-1.amazonaws.com".into(),
        alias_zone: Some("Z35SXDOTRQ7X7K".into()),
    }
}

fn yaml(text: &str) -> serde_norway::Value {
    serde_norway::from_str(text).unwrap()
}

#[test]
fn inventory_json_round_trips() {
    let inv = inventory(LbMode::L7, name_endpoint());
    let json = inventory_json(&inv);
    assert!(
        json.contains("\n  \"cluster\": \"rancher\""),
        "pretty: {json}"
    );
    assert_eq!(serde_json::from_str::<Inventory>(&json).unwrap(), inv);
}

#[test]
fn cluster_yml_has_every_node() {
    for (mode, ep) in [(LbMode::L4, ip_endpoint()), (LbMode::L7, name_endpoint())] {
        let s = spec(mode, true);
        let text = rke_cluster_yml(&s, &inventory(mode, ep));
        assert!(text.starts_with("# RKE cluster.yml"));
        let doc = yaml(&text);
        let nodes = doc["nodes"].as_sequence().unwrap();
        assert_eq!(nodes.len(), 3);
        for (i, n) in nodes.iter().enumerate() {
            let ip = format!("10.0.{}.10", i + 1);
            assert_eq!(n["address"].as_str(), Some(ip.as_str()));
            assert_eq!(n["internal_address"].as_str(), Some(ip.as_str()));
            assert_eq!(
                n["hostname_override"].as_str(),
                Some(format!("rancher-{}", i + 1).as_str())
            );
            assert_eq!(n["user"].as_str(), Some("admin"));
            assert_eq!(n["role"], yaml("[controlplane, etcd, worker]"));
        }
        assert_eq!(doc["ingress"]["provider"].as_str(), Some("nginx"));
        let forwarded = doc["ingress"]["options"]["use-forwarded-headers"].as_str();
        match mode {
            LbMode::L4 => assert_eq!(forwarded, None),
            LbMode::L7 => assert_eq!(forwarded, Some("true")),
        }
        assert!(!text.contains(PASSWORD));
    }
}

#[test]
fn cluster_yml_leaves_out_nodes_without_ip() {
    let s = spec(LbMode::L4, false);
    let mut inv = inventory(LbMode::L4, ip_endpoint());
    inv.nodes[0].private_ip = None; // rancher-2
    let text = rke_cluster_yml(&s, &inv);
    assert!(text.contains("# Left out (no private IP yet): rancher-2\n"));
    assert_eq!(yaml(&text)["nodes"].as_sequence().unwrap().len(), 2);
}

fn spec_with(extra: &str) -> ValidSpec {
    let text = format!(
        "name = \"rancher\"\nregion = \"us-east-1\"\n[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n{extra}"
    );
    ClusterSpec::from_toml(&text).unwrap().validate().unwrap()
}

fn config(text: &str) -> bootstrap::KubeConfig {
    serde_norway::from_str(text).unwrap()
}

#[test]
fn rke2_others_join_through_the_registration_address() {
    let s = spec(LbMode::L4, false);
    let inv = inventory(LbMode::L4, name_endpoint());
    let text = node_config(&s, &inv, "rancher-2");
    let c = config(&text);
    assert_eq!(
        c.server.as_deref(),
        Some("https://rancher.example.com:9345")
    );
    assert_eq!(c.node_name, "rancher-2");
    assert_eq!(c.token_file.as_deref(), Some("/etc/rancher/rke2/token"));
    assert_eq!(c.token, None);
    assert_eq!(
        c.tls_san,
        [
            "rancher.example.com",
            "rancher-lb-123.elb.us-east-1.amazonaws.com"
        ]
    );
    assert_eq!(c.cluster_cidr, "10.42.0.0/16");
    assert_eq!(c.service_cidr, "10.43.0.0/16");
    assert_eq!(c.ingress_controller.as_deref(), Some("ingress-nginx"));
    assert!(text.contains("same join token in /etc/rancher/rke2/token on every node"));
    let first = config(&node_config(&s, &inv, "rancher-1"));
    assert_eq!(first.server, None, "the first node starts the cluster");
    assert_eq!(first.cluster_init, None, "RKE2 has no cluster-init");
}

#[test]
fn first_node_registration_uses_node_one_ipv6() {
    let s = spec_with("[load_balancer]\nregistration = \"first-node\"\n");
    let mut inv = inventory(LbMode::L4, ip_endpoint());
    inv.nodes[1].private_ip = Some("fd00::1".parse().unwrap()); // rancher-1
    let c = config(&node_config(&s, &inv, "rancher-3"));
    assert_eq!(c.tls_san, ["rancher.example.com", "203.0.113.10"]);
    assert_eq!(c.server.as_deref(), Some("https://[fd00::1]:9345"));
    let k = kubernetes_entry(&s, &inv.nodes);
    assert_eq!(k.registration_address.as_deref(), Some("[fd00::1]"));
    assert_eq!(k.server_url.as_deref(), Some("https://[fd00::1]:6443"));
}

#[test]
fn k3s_cluster_init_port_6443_and_traefik() {
    let s = spec_with("[kubernetes]\ndistribution = \"k3s\"\n");
    let inv = inventory(LbMode::L4, ip_endpoint());
    let first = config(&node_config(&s, &inv, "rancher-1"));
    assert_eq!(first.cluster_init, Some(true));
    assert_eq!(first.token_file.as_deref(), Some("/etc/rancher/k3s/token"));
    assert!(first.disable.is_empty(), "traefik is K3s's default ingress");
    let other = config(&node_config(&s, &inv, "rancher-2"));
    assert_eq!(
        other.server.as_deref(),
        Some("https://rancher.example.com:6443")
    );
    assert_eq!(other.cluster_init, None);
    assert_eq!(s.health_check_path(), "/ping");
    assert_eq!(s.registration_ports(), [6443]);
    let nginx = spec_with("[kubernetes]\ndistribution = \"k3s\"\ningress = \"nginx\"\n");
    assert_eq!(
        config(&node_config(&nginx, &inv, "rancher-1")).disable,
        ["traefik"]
    );
    assert_eq!(nginx.health_check_path(), "/healthz");
}

#[test]
fn bundle_files_per_distribution() {
    let inv = inventory(LbMode::L4, ip_endpoint());
    let paths =
        |s: &ValidSpec| -> Vec<String> { bundle(s, &inv).into_iter().map(|f| f.path).collect() };
    let rke2 = spec_with("[proxy]\nhttp = \"http://proxy.corp:3128\"\n[kubernetes]\nmirrors = { \"docker.io\" = [\"https://mirror.corp:5000\"] }\n");
    let p = paths(&rke2);
    for want in [
        "nodes/rancher-1/config.yaml",
        "nodes/rancher-3/rke2-server",
        "token",
        "registries.yaml",
        "rancher/values.yaml",
        "rancher/install.sh",
        "kubeconfig.sh",
        "inventory.json",
        "next-steps.txt",
    ] {
        assert!(p.iter().any(|x| x == want), "{want} missing from {p:?}");
    }
    assert!(!p.iter().any(|x| x == "cluster.yml"));
    let rke = spec_with("[kubernetes]\ndistribution = \"rke\"\n");
    let p = paths(&rke);
    assert!(p.iter().any(|x| x == "cluster.yml"));
    assert!(!p
        .iter()
        .any(|x| x.starts_with("nodes/") || x == "kubeconfig.sh"));
    assert!(rke.registration_ports().is_empty());
}

#[test]
fn bundle_token_is_random_and_kept_on_disk() {
    let s = spec_with("");
    let inv = inventory(LbMode::L4, ip_endpoint());
    let token = |b: &[BundleFile]| {
        b.iter()
            .find(|f| f.path == "token")
            .unwrap()
            .contents
            .clone()
    };
    let (a, b) = (bundle(&s, &inv), bundle(&s, &inv));
    assert_ne!(token(&a), token(&b));
    let t = token(&a);
    assert_eq!(t.trim().len(), 64);
    assert!(t.trim().chars().all(|c| c.is_ascii_hexdigit()));
    assert!(!format!("{a:?}").contains(t.trim()), "Debug hides contents");
    let dir = std::env::temp_dir().join(format!("triad-bundle-{}", std::process::id()));
    write_to(&a, &dir).unwrap();
    write_to(&b, &dir).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("token")).unwrap(), t);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn values_yaml_round_trips_and_hides_the_password() {
    let s = spec(LbMode::L4, true);
    let text = rancher_values(&s, &inventory(LbMode::L4, ip_endpoint()));
    assert!(!text.contains(PASSWORD));
    let v: RancherValues = serde_norway::from_str(&text).unwrap();
    assert_eq!(v.hostname, "rancher.example.com");
    assert_eq!(v.replicas, 3);
    assert_eq!(
        v.proxy, None,
        "a password-carrying proxy is set on the command line"
    );
    assert_eq!(
        v.no_proxy.as_deref(),
        Some(bootstrap::no_proxy(&s).join(",").as_str())
    );
    assert_eq!(v.tls, None);
    assert_eq!(v.ingress.unwrap().tls.source, "rancher");
    let l7 = spec(LbMode::L7, false);
    let v: RancherValues = serde_norway::from_str(&rancher_values(
        &l7,
        &inventory(LbMode::L7, name_endpoint()),
    ))
    .unwrap();
    assert_eq!(v.tls.as_deref(), Some("external"));
    assert_eq!(v.ingress, None);
    assert_eq!(v.proxy, None);
    // Unknown keys fail: the struct mirrors the chart's values.
    assert!(
        serde_norway::from_str::<RancherValues>("hostname: a\nreplicas: 1\nbogus: 1\n").is_err()
    );
    let open = spec_with("[proxy]\nhttp = \"http://proxy.corp:3128\"\n");
    let v: RancherValues = serde_norway::from_str(&rancher_values(
        &open,
        &inventory(LbMode::L4, ip_endpoint()),
    ))
    .unwrap();
    assert_eq!(v.proxy.as_deref(), Some("http://proxy.corp:3128"));
}

#[test]
fn cert_manager_gets_the_proxy_with_escaped_commas() {
    let s = spec(LbMode::L4, true);
    let text = cert_manager_install(&s);
    assert!(!text.contains(PASSWORD));
    assert!(text.contains("--set http_proxy=\"http://ops:${PROXY_PASSWORD}@proxy.corp:3128\""));
    assert!(
        text.contains(r#"--set no_proxy="127.0.0.0/8\,10.0.0.0/8\,"#),
        "{text}"
    );
}

#[test]
fn kubeconfig_command_rewrites_the_server() {
    let s = spec(LbMode::L4, false);
    let cmd = kubeconfig_command(&s, &inventory(LbMode::L4, ip_endpoint())).unwrap();
    assert!(
        cmd.starts_with("ssh admin@10.0.1.10 sudo cat /etc/rancher/rke2/rke2.yaml"),
        "{cmd}"
    );
    assert!(cmd.contains("s#https://127.0.0.1:6443#https://rancher.example.com:6443#"));
}

#[test]
fn helm_no_proxy_escapes_commas() {
    let s = spec(LbMode::L4, true);
    let v = helm_no_proxy(&s);
    assert_eq!(
        v,
        r"127.0.0.0/8\,10.0.0.0/8\,cattle-system.svc\,172.16.0.0/12\,192.168.0.0/16\,.svc\,.cluster.local\,localhost\,rancher-1\,rancher-2\,rancher-3\,rancher.example.com\,10.42.0.0/16\,10.43.0.0/16\,corp.example"
    );
}

#[test]
fn helm_l4_with_proxy() {
    let s = spec(LbMode::L4, true);
    let text = helm_install(&s, &inventory(LbMode::L4, ip_endpoint()));
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains("tls=external"));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with('#') && lines[0].contains("export PROXY_PASSWORD"));
    assert_eq!(
        &lines[2..],
        &[
            "helm install rancher rancher-stable/rancher \\",
            "  --namespace cattle-system \\",
            "  --set hostname=rancher.example.com \\",
            "  --set replicas=3 \\",
            "  --set proxy=\"http://ops:${PROXY_PASSWORD}@proxy.corp:3128\" \\",
            &format!("  --set noProxy=\"{}\"", helm_no_proxy(&s)),
        ]
    );
}

#[test]
fn helm_l7_without_proxy() {
    let s = spec(LbMode::L7, false);
    let text = helm_install(&s, &inventory(LbMode::L7, name_endpoint()));
    assert_eq!(
        text,
        "helm install rancher rancher-stable/rancher \\\n  --namespace cattle-system \\\n  \
         --set hostname=rancher.example.com \\\n  --set replicas=3 \\\n  --set tls=external\n"
    );
}

#[test]
fn helm_proxy_without_password_needs_no_variable() {
    let text = "name = \"r\"\nregion = \"x\"\n[proxy]\nhttp = \"http://proxy.corp:3128\"\n[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n";
    let s = ClusterSpec::from_toml(text).unwrap().validate().unwrap();
    let mut inv = inventory(LbMode::L4, ip_endpoint());
    inv.nodes.truncate(1);
    let out = helm_install(&s, &inv);
    assert!(out.starts_with("helm install"), "{out}");
    assert!(out.contains("--set proxy=\"http://proxy.corp:3128\""));
    assert!(out.contains("--set replicas=1"));
    assert!(!out.contains("PROXY_PASSWORD"));
}

#[test]
fn escaping_helpers() {
    assert_eq!(helm_escape(r"a,b\c"), r"a\,b\\c");
    assert_eq!(shell_dq(r#"a\,b"c$d`e\\f\"#), r#"a\,b\"c\$d\`e\\\f\\"#);
}

#[test]
fn next_steps_l7_says_why_tls_external() {
    let s = spec(LbMode::L7, true);
    let inv = inventory(LbMode::L7, name_endpoint());
    let text = next_steps(&s, &inv);
    assert!(!text.contains(PASSWORD), "{text}");
    for want in [
        "Rancher URL:   https://rancher.example.com",
        "DNS record:    rancher.example.com CNAME rancher-lb-123.elb.us-east-1.amazonaws.com",
        "rancher-lb-123.elb.us-east-1.amazonaws.com",
        "layer 7",
        "tls=external: the balancer terminates TLS",
        "    --set tls=external",
        "    node-name: rancher-1",
        "https://rancher.example.com:6443#",
        "ports 22 and 2376",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // The node table, in node order, with zones and addresses.
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  rancher-"))
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows[0].contains("us-east-1a") && rows[0].ends_with("10.0.1.10"));
    assert!(rows[2].contains("us-east-1c") && rows[2].ends_with("10.0.3.10"));
}

#[test]
fn next_steps_l4_mentions_cert_manager_not_tls_external() {
    let s = spec(LbMode::L4, false);
    let text = next_steps(&s, &inventory(LbMode::L4, ip_endpoint()));
    assert!(text.contains("DNS record:    rancher.example.com A 203.0.113.10"));
    assert!(text.contains("cert-manager"));
    assert!(!text.contains("tls=external"));
    assert!(!text.contains("proxy"));
}
