//! The hand-over bundle and the inventory's `kubernetes` entry, read back by real
//! parsers.

use super::*;

pub(super) fn inventory() -> Inventory {
    let nodes: Vec<Node> = (1..=3)
        .map(|n| Node {
            id: format!("i-{n}"),
            name: format!("rancher-{n}"),
            zone: "us-east-1a".into(),
            state: NodeState::Running,
            private_ip: Some(format!("10.20.{n}.10").parse().unwrap()),
            public_ip: None,
            ssh: None,
            labels: BTreeMap::new(),
            created_ms: None,
        })
        .collect();
    let endpoint = Endpoint::Hostname {
        name: "lb-1.elb.example".into(),
        alias_zone: None,
    };
    Inventory {
        cluster: "rancher".into(),
        region: "us-east-1".into(),
        load_balancer: LoadBalancer {
            id: "lb".into(),
            name: "rancher".into(),
            mode: LbMode::L4,
            scheme: LbScheme::InternetFacing,
            state: LbState::Active,
            endpoint: Some(endpoint.clone()),
            registration_endpoint: None,
            listeners: vec![],
            targets: nodes.iter().map(|n| n.id.clone()).collect(),
            partial_targets: Vec::new(),
            labels: BTreeMap::new(),
        },
        kubernetes: None,
        nodes,
        dns: DnsEntry {
            fqdn: "rancher.example.com".into(),
            zone: "example.com".into(),
            kind: RecordKind::Cname,
            target: endpoint,
            ttl: Some(60),
        },
        rancher_url: "https://rancher.example.com".into(),
        tls_external: false,
        providers: Providers {
            nodes: "sim".into(),
            load_balancer: "sim".into(),
            dns: "sim".into(),
        },
    }
}

#[test]
fn hand_over_bundle_parses_and_carries_no_spec_secret() {
    let token = token_file();
    let s = valid(
        &format!(
            "[proxy]\nhttp = \"http://ops:{PASSWORD}@proxy.corp.example:3128\"\n\
             [kubernetes]\nmirrors = {{ \"docker.io\" = [\"https://mirror.corp.example:5000\"] }}\n"
        ),
        &token,
    );
    let inv = inventory();
    let files = render::bundle(&s, &inv);
    let get = |p: &str| {
        files
            .iter()
            .find(|f| f.path == p)
            .unwrap_or_else(|| panic!("{p} in {files:?}"))
    };
    for n in 1..=3 {
        let c: KubeConfig =
            serde_norway::from_str(&get(&format!("nodes/rancher-{n}/config.yaml")).contents)
                .unwrap();
        assert_eq!(c.token, None);
        assert_eq!(c.token_file.as_deref(), Some("/etc/rancher/rke2/token"));
        assert_eq!(c.tls_san, ["rancher.example.com", "lb-1.elb.example"]);
        assert_eq!(c.server.is_some(), n > 1);
        let env = get(&format!("nodes/rancher-{n}/rke2-server"));
        assert!(env.secret, "the env file holds the proxy password");
        let env = systemd_env_file(&env.contents);
        check_no_proxy(&env["NO_PROXY"]);
    }
    assert!(
        files.iter().all(|f| f.path != "token"),
        "the spec names a token file"
    );
    let _: Registries = serde_norway::from_str(&get("registries.yaml").contents).unwrap();
    let v: RancherValues = serde_norway::from_str(&get("rancher/values.yaml").contents).unwrap();
    assert_eq!(v.no_proxy.as_deref().map(check_no_proxy), Some(()));
    let install = &get("rancher/install.sh").contents;
    assert!(
        install.contains("--set proxy=\"http://ops:${PROXY_PASSWORD}@proxy.corp.example:3128\"")
    );
    assert!(install.contains("helm install cert-manager"));
    let back: Inventory = serde_json::from_str(&get("inventory.json").contents).unwrap();
    assert_eq!(back, inv);
    let raw = PASSWORD;
    let encoded = PASSWORD.replace('$', "%24");
    for f in files.iter().filter(|f| !f.secret) {
        assert!(!f.contents.contains(TOKEN), "{} holds the token", f.path);
        assert!(
            !f.contents.contains(raw) && !f.contents.contains(&encoded),
            "{} holds the password",
            f.path
        );
    }
    // The scripts are valid shell.
    for p in ["rancher/install.sh", "kubeconfig.sh"] {
        let f = TempFile::new("check.sh", &get(p).contents);
        let st = Command::new("sh").arg("-n").arg(f.path()).status().unwrap();
        assert!(st.success(), "{p} is not valid sh");
    }
}

#[test]
fn inventory_grows_kubernetes() {
    let token = token_file();
    let s = valid("", &token);
    let k = render::kubernetes_entry(&s, &inventory().nodes);
    let json = serde_json::to_value(&k).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "distribution": "rke2",
            "registration_address": "rancher.example.com",
            "join_url": "https://rancher.example.com:9345",
            "server_url": "https://rancher.example.com:6443"
        })
    );
}
