//! The orchestrator end to end with the NGINX balancer (nodes and DNS on the
//! simulated cloud, whose 10.x nodes nginx cannot reach: the configuration's
//! content is asserted, traffic is tested in `host.rs`): apply, a second plan is a
//! no-op and a second apply makes zero mutating calls (no write, no reload),
//! destroy leaves nothing.

use std::sync::{Arc, Mutex};

use triad_core::layers::{CallCounter, Stack};
use triad_core::model::Endpoint;
use triad_core::spec::{ClusterSpec, ValidSpec};
use triad_core::{DnsProvider, LoadBalancerProvider, NodeProvider, Orchestrator};
use triad_nginx::NginxProvider;
use triad_sim::SimCloud;

use crate::node_mode::{cloud_init_accepts, config_in, nginx_accepts, Recording};
use crate::support::*;

fn spec(name: &str, nginx: &str) -> ValidSpec {
    ClusterSpec::from_toml(&format!(
        r#"
        name = "{name}"
        region = "us-east-1"
        [dns]
        zone = "example.com"
        hostname = "{name}.example.com"
        [sim]
        time_scale = 0.0001
        [proxy]
        http = "http://proxy.internal:3128"
        [nginx]
        {nginx}
        "#
    ))
    .unwrap()
    .validate()
    .unwrap()
}

pub(crate) fn orchestrator(
    nodes: Arc<dyn NodeProvider>,
    lb: Arc<dyn LoadBalancerProvider>,
    dns: Arc<dyn DnsProvider>,
    counter: &CallCounter,
) -> Orchestrator {
    Orchestrator::new(
        Arc::new(Stack::new(nodes).count(counter.clone()).build()),
        Arc::new(Stack::new(lb).count(counter.clone()).build()),
        Arc::new(Stack::new(dns).count(counter.clone()).build()),
    )
}

#[tokio::test]
#[ignore = "needs nginx; scripts/test installs it"]
async fn host_mode_apply_rerun_destroy() {
    let dir = TempDir::new("e2e-host");
    let d = dir.path().display();
    let spec = spec(
        "e2ehost",
        &format!(
            r#"
        address = "192.0.2.80"
        config_path = "{d}/nginx.conf"
        nginx_bin = "{bin}"
        prefix = "{d}"
        modules = ["{module}"]
        pid_file = "{d}/nginx.pid"
        error_log = "{d}/logs/error.log"
        reload_command = ["sh", "-c", "echo reload >> {d}/reloads"]
        stop_command = ["true"]
        "#,
            bin = nginx_bin(),
            module = stream_module()
        ),
    );
    let cloud = Arc::new(SimCloud::from_spec(&spec).unwrap());
    let nginx = Arc::new(NginxProvider::from_spec(&spec, None).unwrap());
    let counter = CallCounter::new();
    let triad = orchestrator(cloud.clone(), nginx.clone(), cloud.clone(), &counter);

    let plan = triad.plan(&spec).await.unwrap();
    let inv = triad.apply(&plan).await.unwrap();
    assert_eq!(inv.providers.load_balancer, "nginx");
    assert_eq!(
        inv.load_balancer.endpoint,
        Some(Endpoint::Ip {
            addresses: vec!["192.0.2.80".parse().unwrap()]
        })
    );
    assert_eq!(inv.dns.target, inv.load_balancer.endpoint.clone().unwrap());
    let text = std::fs::read_to_string(dir.path().join("nginx.conf")).unwrap();
    assert_eq!(header_values(&text, "triad-cluster"), ["e2ehost"]);
    assert_eq!(header_values(&text, "triad-target").len(), 3);
    for n in &inv.nodes {
        let ip = n.private_ip.unwrap();
        assert!(text.contains(&format!("server {ip}:80 max_fails=3 fail_timeout=5s;")));
        assert!(text.contains(&format!("server {ip}:443 max_fails=3 fail_timeout=5s;")));
    }
    let reloads_after_apply = reloads(dir.path());
    assert!(reloads_after_apply >= 1);

    let again = triad.plan(&spec).await.unwrap();
    assert!(again.is_noop(), "{again}");
    counter.reset();
    triad.apply(&again).await.unwrap();
    assert_eq!(counter.mutating(), 0, "{:?}", counter.snapshot());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("nginx.conf")).unwrap(),
        text
    );
    assert_eq!(reloads(dir.path()), reloads_after_apply);

    triad.destroy(&spec.cluster()).await.unwrap();
    assert!(!dir.path().join("nginx.conf").exists());
    assert!(cloud.snapshot().is_clean_of("e2ehost"));
    assert!(nginx
        .discover_load_balancer(&spec.cluster())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
#[ignore = "needs nginx; scripts/test installs it"]
async fn node_mode_apply_rerun_destroy() {
    let spec = spec("e2enode", "run_on = \"node\"\npoll_interval_ms = 10");
    let cloud = SimCloud::from_spec(&spec).unwrap();
    let rec = Arc::new(Recording {
        inner: cloud.clone(),
        requests: Mutex::new(vec![]),
    });
    let nginx = Arc::new(NginxProvider::from_spec(&spec, Some(rec.clone())).unwrap());
    let counter = CallCounter::new();
    let sim = Arc::new(cloud.clone());
    let triad = orchestrator(sim.clone(), nginx.clone(), sim.clone(), &counter);

    let plan = triad.plan(&spec).await.unwrap();
    let inv = triad.apply(&plan).await.unwrap();
    // The balancer is its own node, not one of the three Rancher nodes.
    assert_eq!(inv.nodes.len(), 3);
    assert!(inv.nodes.iter().all(|n| n.id != inv.load_balancer.id));
    let made = rec.requests.lock().unwrap().clone();
    assert_eq!(made.len(), 1, "one balancer node");
    assert!(made[0].name.starts_with("e2enode-lb-"));
    let config = config_in(&made[0].user_data);
    for n in &inv.nodes {
        assert!(config.contains(&format!("server {}:80 ", n.private_ip.unwrap())));
    }
    // The proxy reaches apt on the balancer node too.
    assert!(made[0]
        .user_data
        .contains("http_proxy: http://proxy.internal:3128"));
    nginx_accepts(&config);
    cloud_init_accepts(&made[0].user_data);
    let lb_node = cloud
        .snapshot()
        .live_nodes("e2enode-lb")
        .into_iter()
        .next()
        .cloned()
        .expect("the balancer node exists");
    assert_eq!(inv.load_balancer.id, lb_node.id);
    assert_eq!(
        inv.dns.target.to_string(),
        inv.load_balancer.endpoint.clone().unwrap().to_string()
    );

    let again = triad.plan(&spec).await.unwrap();
    assert!(again.is_noop(), "{again}");
    counter.reset();
    triad.apply(&again).await.unwrap();
    assert_eq!(counter.mutating(), 0, "{:?}", counter.snapshot());
    assert_eq!(rec.requests.lock().unwrap().len(), 1);

    triad.destroy(&spec.cluster()).await.unwrap();
    let snap = cloud.snapshot();
    assert!(snap.is_clean_of("e2enode"), "{snap:#?}");
    assert!(snap.is_clean_of("e2enode-lb"), "{snap:#?}");
}
