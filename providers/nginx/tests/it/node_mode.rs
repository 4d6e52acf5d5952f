//! Node mode with the simulated cloud as the node provider: the balancer node is
//! never a Rancher node, carries a configuration for exactly the running nodes
//! (which real `nginx -t` accepts, and cloud-init's schema validator too when
//! scripts/test provides it), is rebuilt when the targets change, and is deleted
//! with its plumbing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use triad_core::labels::Role;
use triad_core::model::{Endpoint, LbState, LoadBalancerRequest, Node, NodeRequest};
use triad_core::spec::{LbMode, LbScheme};
use triad_core::{ClusterRef, LoadBalancerProvider, NodeProvider, Result};
use triad_nginx::{balancer_cluster, NginxProvider, NginxSettings, LB_FOR};
use triad_sim::{SimCloud, SimConfig};

use crate::support::*;

/// Forwards to the sim and keeps every create request (the sim keeps no user data).
pub(crate) struct Recording {
    pub inner: SimCloud,
    pub requests: Mutex<Vec<NodeRequest>>,
}

#[async_trait]
impl NodeProvider for Recording {
    fn name(&self) -> &str {
        NodeProvider::name(&self.inner)
    }
    async fn zones(&self, c: &ClusterRef) -> Result<Vec<String>> {
        NodeProvider::zones(&self.inner, c).await
    }
    async fn discover_nodes(&self, c: &ClusterRef) -> Result<Vec<Node>> {
        self.inner.discover_nodes(c).await
    }
    async fn create_node(&self, c: &ClusterRef, r: &NodeRequest) -> Result<Node> {
        self.requests.lock().unwrap().push(r.clone());
        self.inner.create_node(c, r).await
    }
    async fn wait_node(&self, c: &ClusterRef, n: &Node, t: Duration) -> Result<Node> {
        self.inner.wait_node(c, n, t).await
    }
    async fn delete_node(&self, c: &ClusterRef, n: &Node) -> Result<()> {
        self.inner.delete_node(c, n).await
    }
    async fn cleanup(&self, c: &ClusterRef) -> Result<Vec<String>> {
        self.inner.cleanup(c).await
    }
}

/// The nginx.conf in a balancer node's user data.
pub(crate) fn config_in(user_data: &str) -> String {
    let doc: serde_json::Value =
        serde_norway::from_str(user_data.strip_prefix("#cloud-config\n").unwrap()).unwrap();
    doc["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/etc/nginx/nginx.conf")
        .expect("the user data writes /etc/nginx/nginx.conf")["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `nginx -t` on a balancer node's configuration (Debian's default module include).
pub(crate) fn nginx_accepts(config: &str) {
    let dir = TempDir::new("nodecheck");
    let path = dir.path().join("nginx.conf");
    // Nothing is bound by `nginx -t`; only the pid and log paths need a writable place.
    let config = config.replacen(
        "\nworker_processes",
        &format!(
            "\npid {}/nginx.pid;\nworker_processes",
            dir.path().display()
        ),
        1,
    );
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(nginx_bin())
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nginx -t rejected the balancer node's configuration: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cloud-init schema` on the user data, when scripts/test exported the validator.
pub(crate) fn cloud_init_accepts(user_data: &str) {
    let Ok(ci) = std::env::var("TRIAD_CLOUD_INIT") else {
        return;
    };
    let dir = TempDir::new("ci");
    let path = dir.path().join("user-data");
    std::fs::write(&path, user_data).unwrap();
    let out = std::process::Command::new(ci)
        .args(["schema", "--config-file"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cloud-init schema rejected the user data: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn node_req(c: &ClusterRef, name: &str, zone: &str) -> NodeRequest {
    let mut request = NodeRequest::new(name, zone);
    request.labels = c.labels_for(Role::Node);
    request.user_data = "#cloud-config\n".into();
    request
}

#[tokio::test]
#[ignore = "needs nginx; scripts/test installs it"]
async fn balancer_node_lifecycle() {
    let sim = SimCloud::new(SimConfig::instant());
    let rec = Arc::new(Recording {
        inner: sim.clone(),
        requests: Mutex::new(vec![]),
    });
    let cluster = ClusterRef::new("nodemode", "us-east-1");
    let mut settings = NginxSettings::node();
    settings.expected_nodes = vec![
        "nodemode-1".into(),
        "nodemode-2".into(),
        "nodemode-3".into(),
    ];
    settings.poll_interval_ms = 10;
    let mut request = LoadBalancerRequest::new("nodemode", LbMode::L4, LbScheme::InternetFacing);
    request.zones = vec!["us-east-1a".into()];
    request.labels = cluster.labels_for(Role::Lb);

    let p = NginxProvider::on_nodes(settings, rec.clone(), request.clone()).unwrap();

    // Nothing is made until the Rancher nodes run.
    let pending = p.create_load_balancer(&cluster, &request).await.unwrap();
    assert_eq!(pending.state, LbState::Provisioning);
    assert!(rec.requests.lock().unwrap().is_empty());
    let e = p
        .wait_load_balancer(&cluster, &pending, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("running"), "{e}");

    let mut nodes = Vec::new();
    for (i, z) in ["us-east-1a", "us-east-1b", "us-east-1c"]
        .iter()
        .enumerate()
    {
        let n = sim
            .create_node(
                &cluster,
                &node_req(&cluster, &format!("nodemode-{}", i + 1), z),
            )
            .await
            .unwrap();
        nodes.push(
            sim.wait_node(&cluster, &n, Duration::from_secs(5))
                .await
                .unwrap(),
        );
    }
    let lb = p
        .wait_load_balancer(&cluster, &pending, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(lb.state, LbState::Active);
    let mut want: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    want.sort();
    assert_eq!(lb.targets, want);

    // The balancer node: not a Rancher node, in its own pseudo-cluster.
    let rancher = sim.discover_nodes(&cluster).await.unwrap();
    assert_eq!(rancher.len(), 3);
    assert!(rancher.iter().all(|n| n.id != lb.id));
    let lbs = sim
        .discover_nodes(&balancer_cluster(&cluster))
        .await
        .unwrap();
    assert_eq!(lbs.len(), 1);
    assert_eq!(lbs[0].id, lb.id);
    assert_eq!(
        lbs[0].labels.get(LB_FOR).map(String::as_str),
        Some("nodemode")
    );
    assert_eq!(
        lb.endpoint,
        Some(Endpoint::Ip {
            addresses: vec![lbs[0].public_ip.or(lbs[0].private_ip).unwrap()]
        })
    );

    // Its user data installs nginx with a configuration for exactly those nodes.
    let made = rec.requests.lock().unwrap().clone();
    assert_eq!(made.len(), 1);
    let ud = &made[0].user_data;
    assert!(ud.contains("libnginx-mod-stream"), "{ud}");
    let config = config_in(ud);
    for n in &nodes {
        let ip = n.private_ip.unwrap();
        assert!(config.contains(&format!("server {ip}:80 max_fails=3 fail_timeout=5s;")));
        assert!(config.contains(&format!("server {ip}:443 max_fails=3 fail_timeout=5s;")));
    }
    assert!(config.contains("include /etc/nginx/modules-enabled/*.conf;"));
    assert!(config.contains("listen 80;") && config.contains("listen 443;"));
    nginx_accepts(&config);
    cloud_init_accepts(ud);

    // Rerun: discovery says active with the same targets; create and set_targets make nothing.
    let found = p.discover_load_balancer(&cluster).await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.state),
        (lb.id.as_str(), LbState::Active)
    );
    assert_eq!(found.targets, want);
    p.create_load_balancer(&cluster, &request).await.unwrap();
    let same = p.set_targets(&cluster, &found, &nodes).await.unwrap();
    assert_eq!(same.id, lb.id);
    assert_eq!(rec.requests.lock().unwrap().len(), 1);

    // Other targets: a new balancer node replaces the old one.
    let two = &nodes[..2];
    let rebuilt = p.set_targets(&cluster, &lb, two).await.unwrap();
    assert_ne!(rebuilt.id, lb.id);
    assert_eq!(rebuilt.targets.len(), 2);
    let config = config_in(&rec.requests.lock().unwrap()[1].user_data);
    assert!(!config.contains(&format!("{}:80", nodes[2].private_ip.unwrap())));
    let live: Vec<Node> = sim
        .discover_nodes(&balancer_cluster(&cluster))
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.state != triad_core::model::NodeState::Terminating)
        .collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, rebuilt.id);

    // Delete: the balancer node and its plumbing go; the Rancher nodes stay.
    let deleted = p.delete_load_balancer(&cluster).await.unwrap();
    assert!(!deleted.is_empty());
    assert!(
        sim.snapshot().is_clean_of("nodemode-lb"),
        "{:#?}",
        sim.snapshot()
    );
    assert!(p.discover_load_balancer(&cluster).await.unwrap().is_none());
    assert!(p.delete_load_balancer(&cluster).await.unwrap().is_empty());
    assert_eq!(sim.discover_nodes(&cluster).await.unwrap().len(), 3);
}
