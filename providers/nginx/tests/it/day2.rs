//! Day 2 and restarts: a changed certificate or health check path is updated in
//! place (host mode: the file rewritten, `nginx -t`, reload — read back from the
//! file and from the certificate nginx serves), a third apply makes zero mutating
//! calls; node mode converges targets and in-place changes from a fresh provider
//! instance, as a new process would, with no memory of the first.

use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use triad_core::drift;
use triad_core::layers::CallCounter;
use triad_core::model::{Node, NodeState};
use triad_core::orchestrator::{LbAction, NodeAction};
use triad_core::spec::{ClusterSpec, ValidSpec};
use triad_core::{LoadBalancerProvider, NodeProvider};
use triad_nginx::{balancer_cluster, NginxProvider};
use triad_sim::{SimCloud, SimRecordData};

use crate::e2e::orchestrator;
use crate::node_mode::{config_in, nginx_accepts, Recording};
use crate::support::*;

/// A self-signed certificate for `rancher.example.test` with `key`, told apart by
/// its common name.
fn certificate(key: &rcgen::KeyPair, cn: &str) -> rcgen::Certificate {
    let mut params =
        rcgen::CertificateParams::new(vec!["rancher.example.test".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.self_signed(key).unwrap()
}

/// The certificate nginx presents on `port` (DER), trusting any of `roots`.
async fn served_certificate(port: u16, roots: &[&rcgen::Certificate]) -> Vec<u8> {
    let mut store = RootCertStore::empty();
    for c in roots {
        store.add(CertificateDer::from(c.der().to_vec())).unwrap();
    }
    let config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("rancher.example.test").unwrap(), tcp)
        .await
        .expect("TLS handshake with nginx");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[allow(clippy::too_many_arguments)]
fn host_spec(
    dir: &std::path::Path,
    http: u16,
    https: u16,
    cert: &std::path::Path,
    key: &std::path::Path,
    health: &str,
) -> ValidSpec {
    let d = dir.display();
    ClusterSpec::from_toml(&format!(
        r#"
        name = "daytwo"
        region = "us-east-1"
        [load_balancer]
        mode = "l7"
        certificate = "{cert}"
        health_check_path = "{health}"
        registration = "first-node"
        [dns]
        zone = "example.com"
        hostname = "daytwo.example.com"
        [sim]
        time_scale = 0.0001
        [nginx]
        address = "127.0.0.1"
        config_path = "{d}/nginx.conf"
        nginx_bin = "{bin}"
        prefix = "{d}"
        modules = ["{module}"]
        pid_file = "{d}/nginx.pid"
        error_log = "{d}/logs/error.log"
        listen_address = "127.0.0.1"
        http_port = {http}
        https_port = {https}
        worker_processes = "1"
        certificate_key = "{key}"
        reload_command = ["sh", "-c", "echo reload >> '{d}/reloads' && exec '{bin}' -p '{d}' -c '{d}/nginx.conf' -s reload"]
        "#,
        cert = cert.display(),
        key = key.display(),
        bin = nginx_bin(),
        module = stream_module(),
    ))
    .unwrap()
    .validate()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx; scripts/test installs it"]
async fn host_mode_certificate_and_health_check_update_in_place() {
    let dir = TempDir::new("daytwo");
    let (http, https) = (free_port(), free_port());
    let key = rcgen::KeyPair::generate().unwrap();
    let (a, b) = (certificate(&key, "first"), certificate(&key, "second"));
    let (a_path, b_path, key_path) = (
        dir.path().join("a.crt"),
        dir.path().join("b.crt"),
        dir.path().join("tls.key"),
    );
    std::fs::write(&a_path, a.pem()).unwrap();
    std::fs::write(&b_path, b.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let conf = dir.path().join("nginx.conf");
    let mut nginx = Nginx::start_placeholder(dir.path());

    let first = host_spec(dir.path(), http, https, &a_path, &key_path, "/healthz");
    let cloud = Arc::new(SimCloud::from_spec(&first).unwrap());
    let counter = CallCounter::new();
    let lb = Arc::new(NginxProvider::from_spec(&first, None).unwrap());
    let triad = orchestrator(cloud.clone(), lb, cloud.clone(), &counter);
    let inv = triad
        .apply(&triad.plan(&first).await.unwrap())
        .await
        .unwrap();
    nginx.wait_ports(&[http, https]);
    assert_eq!(served_certificate(https, &[&a, &b]).await, a.der().to_vec());
    let text = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(
        header_values(&text, "triad-health-check-path"),
        ["/healthz"]
    );
    let reloads_before = reloads(dir.path());

    // Another certificate and health check path, planned and applied by a new
    // provider (as a new process would): in place, nothing else touched.
    let second = host_spec(dir.path(), http, https, &b_path, &key_path, "/ping");
    let lb = Arc::new(NginxProvider::from_spec(&second, None).unwrap());
    let triad = orchestrator(cloud.clone(), lb, cloud.clone(), &counter);
    let plan = triad.plan(&second).await.unwrap();
    let LbAction::Update { changes, .. } = &plan.load_balancer else {
        panic!("expected an in-place update:\n{plan}");
    };
    let mut changed: Vec<_> = changes.iter().map(|c| (c.attribute, c.in_place)).collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            (drift::Attribute::Certificate, true),
            (drift::Attribute::HealthCheckPath, true)
        ],
        "{plan}"
    );
    let after = triad.apply(&plan).await.unwrap();
    let ids = |nodes: &[Node]| nodes.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&after.nodes), ids(&inv.nodes), "no node replaced");
    assert_eq!(after.load_balancer.id, inv.load_balancer.id);
    assert_eq!(reloads(dir.path()), reloads_before + 1);
    // Read back: the file on disk, and the certificate nginx serves now.
    let text = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(header_values(&text, "triad-health-check-path"), ["/ping"]);
    assert!(
        text.contains(&format!("ssl_certificate {};", b_path.display())),
        "{text}"
    );
    assert_eq!(
        header_values(&text, "triad-label")
            .iter()
            .filter(|l| l.starts_with(drift::PREFIX))
            .count(),
        2
    );
    // `nginx -s reload` returns before the new workers serve: ask until they do.
    let mut served = Vec::new();
    for _ in 0..100 {
        served = served_certificate(https, &[&a, &b]).await;
        if served == b.der().to_vec() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        served == b.der().to_vec(),
        "nginx still serves the first certificate"
    );

    // Third apply, again from a new provider: no change, no write, no reload.
    let lb = Arc::new(NginxProvider::from_spec(&second, None).unwrap());
    let triad = orchestrator(cloud.clone(), lb, cloud.clone(), &counter);
    let again = triad.plan(&second).await.unwrap();
    assert!(again.is_noop(), "{again}");
    counter.reset();
    triad.apply(&again).await.unwrap();
    assert_eq!(counter.mutating(), 0, "{:?}", counter.snapshot());
    assert_eq!(reloads(dir.path()), reloads_before + 1);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), text);

    triad.destroy(&second.cluster()).await.unwrap();
    assert!(!conf.exists());
}

fn node_spec(health: &str) -> ValidSpec {
    node_spec_with("restart", "", health)
}

/// A node-mode spec of cluster `name` with `nodes` as the `[nodes]` table's lines.
fn node_spec_with(name: &str, nodes: &str, health: &str) -> ValidSpec {
    ClusterSpec::from_toml(&format!(
        r#"
        name = "{name}"
        region = "us-east-1"
        [nodes]
        {nodes}
        [load_balancer]
        health_check_path = "{health}"
        [dns]
        zone = "example.com"
        hostname = "{name}.example.com"
        [sim]
        time_scale = 0.0001
        [nginx]
        run_on = "node"
        poll_interval_ms = 10
        "#
    ))
    .unwrap()
    .validate()
    .unwrap()
}

/// The balancer nodes that are not being deleted.
async fn live_balancers(cloud: &SimCloud, spec: &ValidSpec) -> Vec<Node> {
    cloud
        .discover_nodes(&balancer_cluster(&spec.cluster()))
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.state != NodeState::Terminating)
        .collect()
}

#[tokio::test]
#[ignore = "needs nginx; scripts/test installs it"]
async fn node_mode_converges_from_a_fresh_provider() {
    let spec = node_spec("/healthz");
    // Each step builds its provider anew: nothing is carried over in memory.
    let rig = NodeRig::new(&spec);
    let (cloud, rec, counter) = (&rig.cloud, &rig.rec, &rig.counter);

    let first = rig.process(&spec);
    let plan = first.plan(&spec).await.unwrap();
    let cluster = plan.cluster.clone();
    let inv = first.apply(&plan).await.unwrap();
    assert_eq!(rec.requests.lock().unwrap().len(), 1);

    // A new process: the plan is a no-op and the apply makes zero mutating calls.
    let second = rig.process(&spec);
    let again = second.plan(&spec).await.unwrap();
    assert!(again.is_noop(), "{again}");
    counter.reset();
    second.apply(&again).await.unwrap();
    assert_eq!(counter.mutating(), 0, "{:?}", counter.snapshot());

    // A new process sets other targets (it never saw create_load_balancer).
    let p = rig.fresh(&spec);
    let lb = p.discover_load_balancer(&cluster).await.unwrap().unwrap();
    let two = &inv.nodes[..2];
    let rebuilt = p.set_targets(&cluster, &lb, two).await.unwrap();
    assert_ne!(rebuilt.id, lb.id);
    assert_eq!(rebuilt.targets.len(), 2);
    let made = rec.requests.lock().unwrap().clone();
    assert_eq!(made.len(), 2);
    let config = config_in(&made[1].user_data);
    assert!(!config.contains(&format!("{}:80", inv.nodes[2].private_ip.unwrap())));
    nginx_accepts(&config);
    // Again from yet another process: the node is found, nothing is made.
    let same = rig
        .fresh(&spec)
        .set_targets(&cluster, &rebuilt, two)
        .await
        .unwrap();
    assert_eq!(same.id, rebuilt.id);
    assert_eq!(rec.requests.lock().unwrap().len(), 2);

    // The next apply (a new process) serves all three nodes again; the one after it
    // changes nothing.
    let third = rig.process(&spec);
    third
        .apply(&third.plan(&spec).await.unwrap())
        .await
        .unwrap();
    assert_eq!(rec.requests.lock().unwrap().len(), 3);
    let fourth = rig.process(&spec);
    let again = fourth.plan(&spec).await.unwrap();
    assert!(again.is_noop(), "{again}");
    counter.reset();
    fourth.apply(&again).await.unwrap();
    assert_eq!(counter.mutating(), 0, "{:?}", counter.snapshot());
    assert_eq!(live_balancers(cloud, &spec).await.len(), 1);

    // Day 2: another health check path means a new balancer node (its configuration
    // is fixed at creation, and its address changes): planned as completing the
    // balancer, so the same apply points the record at the new node; then no change.
    let changed = node_spec("/ping");
    let fifth = rig.process(&changed);
    let plan = fifth.plan(&changed).await.unwrap();
    assert!(
        matches!(&plan.load_balancer, LbAction::Complete { .. }),
        "{plan}"
    );
    let after = fifth.apply(&plan).await.unwrap();
    assert_eq!(rec.requests.lock().unwrap().len(), 4);
    let live = live_balancers(cloud, &changed).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, after.load_balancer.id);
    assert_eq!(
        live[0]
            .labels
            .get(drift::Attribute::HealthCheckPath.label()),
        Some(&drift::encode("/ping"))
    );
    let made = rec.requests.lock().unwrap().clone();
    assert_eq!(
        header_values(&config_in(&made[3].user_data), "triad-health-check-path"),
        ["/ping"]
    );
    let sixth = rig.process(&changed);
    let again = sixth.plan(&changed).await.unwrap();
    assert!(again.is_noop(), "{again}");
    counter.reset();
    sixth.apply(&again).await.unwrap();
    assert_eq!(counter.mutating(), 0, "{:?}", counter.snapshot());

    sixth.destroy(&changed.cluster()).await.unwrap();
    assert!(cloud.snapshot().is_clean_of("restart-lb"));
}

fn rolling_spec(image: &str) -> ValidSpec {
    node_spec_with("rollnginx", &format!("image = \"{image}\""), "/healthz")
}

/// The sim as node provider (recording each create request) and DNS, every call
/// counted; each [`NodeRig::process`] builds its NGINX provider anew, as a new
/// process would: nothing is carried over in memory.
struct NodeRig {
    cloud: SimCloud,
    rec: Arc<Recording>,
    counter: CallCounter,
}

impl NodeRig {
    fn new(spec: &ValidSpec) -> Self {
        let cloud = SimCloud::from_spec(spec).unwrap();
        let rec = Arc::new(Recording {
            inner: cloud.clone(),
            requests: Mutex::new(vec![]),
        });
        Self {
            cloud,
            rec,
            counter: CallCounter::new(),
        }
    }

    fn fresh(&self, spec: &ValidSpec) -> Arc<NginxProvider> {
        Arc::new(NginxProvider::from_spec(spec, Some(self.rec.clone())).unwrap())
    }

    fn process(&self, spec: &ValidSpec) -> triad_core::Orchestrator {
        let sim = Arc::new(self.cloud.clone());
        orchestrator(sim.clone(), self.fresh(spec), sim, &self.counter)
    }

    /// A new process: the plan is a no-op and the apply makes zero mutating calls.
    async fn assert_stable(&self, spec: &ValidSpec) {
        let o = self.process(spec);
        let again = o.plan(spec).await.unwrap();
        assert!(again.is_noop(), "{again}");
        self.counter.reset();
        o.apply(&again).await.unwrap();
        assert_eq!(self.counter.mutating(), 0, "{:?}", self.counter.snapshot());
    }
}

/// A rolling replace (another image) applied by one process: each change of targets
/// rebuilds the balancer node, and the record follows it within the same apply; a
/// fresh process then finds the balancer serving exactly the replacements
/// (`rollnginx-N-g2`, which the spec's node names do not list) and changes nothing.
#[tokio::test]
#[ignore = "needs nginx; scripts/test installs it"]
async fn node_mode_follows_a_rolling_replace() {
    let before = rolling_spec("ami-0a");
    let rig = NodeRig::new(&before);
    let cloud = &rig.cloud;
    let first = rig.process(&before);
    first
        .apply(&first.plan(&before).await.unwrap())
        .await
        .unwrap();

    let after = rolling_spec("ami-0b");
    let second = rig.process(&after);
    let plan = second.plan(&after).await.unwrap();
    let replaces = plan
        .nodes
        .iter()
        .filter(|a| matches!(a, NodeAction::Replace { .. }))
        .count();
    assert_eq!(replaces, 3, "{plan}");
    let inv = second.apply(&plan).await.unwrap();
    let names: Vec<&str> = inv.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["rollnginx-1-g2", "rollnginx-2-g2", "rollnginx-3-g2"]
    );

    // One balancer node, the last one made, serving exactly the replacements; the
    // record points at it.
    let live = live_balancers(cloud, &after).await;
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].id, inv.load_balancer.id);
    let made = rig.rec.requests.lock().unwrap().clone();
    let last = made.last().unwrap();
    assert_eq!(last.name, live[0].name);
    let config = config_in(&last.user_data);
    let servers: Vec<&str> = config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "{")
        .collect();
    let ips: Vec<String> = inv
        .nodes
        .iter()
        .map(|n| n.private_ip.unwrap().to_string())
        .collect();
    for s in &servers {
        let ip = s.rsplit_once(':').unwrap().0;
        assert!(
            ips.iter().any(|i| i == ip),
            "{s} is no replacement: {config}"
        );
    }
    for ip in &ips {
        for port in [80, 443] {
            assert!(
                servers.contains(&format!("{ip}:{port}").as_str()),
                "{config}"
            );
        }
    }
    nginx_accepts(&config);
    let address = live[0].public_ip.or(live[0].private_ip).unwrap();
    assert_eq!(
        cloud
            .snapshot()
            .record("example.com", "rollnginx.example.com")
            .map(|r| r.data.clone()),
        Some(SimRecordData::A(vec![address]))
    );

    rig.assert_stable(&after).await;
    rig.process(&after).destroy(&after.cluster()).await.unwrap();
    assert!(cloud.snapshot().is_clean_of("rollnginx-lb"));
}
