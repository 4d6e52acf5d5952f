//! Host mode against a real nginx: traffic through layer 4 and layer 7 reaches every
//! backend, a stopped backend is skipped, a rerun changes nothing, targets change the
//! upstreams, delete removes the configuration.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use triad_core::labels::Role;
use triad_core::model::{LbState, LoadBalancerRequest};
use triad_core::spec::{LbMode, LbScheme};
use triad_core::{ClusterRef, FailureKind, LoadBalancerProvider};
use triad_nginx::NginxProvider;

use crate::support::*;

fn request(cluster: &ClusterRef, mode: LbMode, cert: Option<String>) -> LoadBalancerRequest {
    let mut request =
        LoadBalancerRequest::new(cluster.name.clone(), mode, LbScheme::InternetFacing);
    request.certificate = cert;
    request.labels = cluster.labels_for(Role::Lb);
    request
}

async fn names_via(port: u16, n: usize) -> (BTreeSet<String>, usize) {
    let mut seen = BTreeSet::new();
    let mut failures = 0;
    for _ in 0..n {
        match http_get(port, "")
            .await
            .ok()
            .as_deref()
            .and_then(backend_of)
        {
            Some(b) => {
                seen.insert(b);
            }
            None => failures += 1,
        }
    }
    (seen, failures)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx; scripts/test installs it"]
async fn layer4_traffic_targets_rerun_delete() {
    let dir = TempDir::new("l4");
    let (backends, port) = three_backends().await;
    let (http, https) = (free_port(), free_port());
    // RKE2's registration ports, moved to free ports on this host; the backends
    // answer them on their one port.
    let (supervisor, api) = (free_port(), free_port());
    let mut settings = host_settings(dir.path(), http, https, port);
    settings.registration_listen = [(9345, supervisor), (6443, api)].into();
    settings.registration_backend = [(9345, port), (6443, port)].into();
    let p = NginxProvider::on_host(settings).unwrap();
    let cluster = ClusterRef::new("hostl4", "dc1");
    let mut req = request(&cluster, LbMode::L4, None);
    req.registration_ports = vec![9345, 6443];

    let mut nginx = Nginx::start_placeholder(dir.path());
    assert!(p.discover_load_balancer(&cluster).await.unwrap().is_none());
    let lb = p.create_load_balancer(&cluster, &req).await.unwrap();
    nginx.wait_ports(&[http, https, supervisor, api]);
    let lb = p
        .wait_load_balancer(&cluster, &lb, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(lb.state, LbState::Active);
    assert_eq!(lb.listeners[0].port, http);
    let nodes: Vec<_> = backends.iter().map(Backend::node).collect();
    let lb = p.set_targets(&cluster, &lb, &nodes).await.unwrap();
    assert_eq!(lb.targets, ["id-rancher-1", "id-rancher-2", "id-rancher-3"]);
    tokio::time::sleep(Duration::from_millis(300)).await; // the reload takes effect

    // Every listener — 80, 443 and the registration ports — passes TCP through to
    // every backend (least_conn spreads them).
    let all = set(&["rancher-1", "rancher-2", "rancher-3"]);
    let listed: Vec<(u16, Option<u16>)> = lb
        .listeners
        .iter()
        .map(|l| (l.port, l.target_port))
        .collect();
    assert_eq!(
        listed,
        [
            (http, Some(port)),
            (https, Some(port)),
            (supervisor, Some(port)),
            (api, Some(port))
        ]
    );
    for port in [http, https, supervisor, api] {
        let (seen, failures) = names_via(port, 12).await;
        assert_eq!(failures, 0);
        assert_eq!(seen, all, "through port {port}");
    }

    // A stopped backend is skipped: every request is still answered.
    backends[1].stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (seen, failures) = names_via(http, 12).await;
    assert_eq!(failures, 0, "nginx should try the next upstream");
    assert_eq!(seen, set(&["rancher-1", "rancher-3"]));

    // A rerun renders the same bytes: no write, no reload.
    let conf = dir.path().join("nginx.conf");
    let before = std::fs::read_to_string(&conf).unwrap();
    let mtime = std::fs::metadata(&conf).unwrap().modified().unwrap();
    let reloads_before = reloads(dir.path());
    let again = p.create_load_balancer(&cluster, &req).await.unwrap();
    let again = p.set_targets(&cluster, &again, &nodes).await.unwrap();
    assert_eq!(again, lb);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), before);
    assert_eq!(std::fs::metadata(&conf).unwrap().modified().unwrap(), mtime);
    assert_eq!(reloads(dir.path()), reloads_before);

    // Discovery reads the targets back from the file.
    let found = p.discover_load_balancer(&cluster).await.unwrap().unwrap();
    assert_eq!(found.targets, lb.targets);
    assert_eq!(
        found.endpoint.unwrap().to_string(),
        "127.0.0.1",
        "the endpoint is nginx.address"
    );

    // Shrinking the targets changes the upstreams.
    let lb = p.set_targets(&cluster, &lb, &nodes[2..]).await.unwrap();
    assert_eq!(lb.targets, ["id-rancher-3"]);
    assert_eq!(reloads(dir.path()), reloads_before + 1);
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(!text.contains("127.0.0.11:"), "{text}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (seen, failures) = names_via(https, 6).await;
    assert_eq!((seen, failures), (set(&["rancher-3"]), 0));

    // Another cluster neither finds nor deletes it.
    let other = ClusterRef::new("hostl4-other", "dc1");
    assert!(p.discover_load_balancer(&other).await.unwrap().is_none());
    assert!(p.delete_load_balancer(&other).await.unwrap().is_empty());
    let e = p
        .create_load_balancer(&other, &request(&other, LbMode::L4, None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(FailureKind::Conflict), "{e}");

    // Delete stops nginx and removes the file; a second delete finds nothing.
    let deleted = p.delete_load_balancer(&cluster).await.unwrap();
    assert_eq!(deleted.len(), 1);
    assert!(!conf.exists());
    assert!(nginx.wait_exit(), "nginx should have been stopped");
    assert!(p.delete_load_balancer(&cluster).await.unwrap().is_empty());
    assert!(p.discover_load_balancer(&cluster).await.unwrap().is_none());
}

#[tokio::test]
#[ignore = "needs nginx; scripts/test installs it"]
async fn a_file_without_the_header_is_never_touched() {
    let dir = TempDir::new("foreign");
    let s = host_settings(dir.path(), free_port(), free_port(), 8080);
    let conf = s.config_path.clone();
    std::fs::write(&conf, "events {}\n").unwrap();
    let p = NginxProvider::on_host(s).unwrap();
    let cluster = ClusterRef::new("foreign", "dc1");
    assert!(p.discover_load_balancer(&cluster).await.unwrap().is_none());
    let e = p
        .create_load_balancer(&cluster, &request(&cluster, LbMode::L4, None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(FailureKind::Conflict));
    assert!(e.to_string().contains("without triad's header"), "{e}");
    assert!(p.delete_load_balancer(&cluster).await.unwrap().is_empty());
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "events {}\n");
}

#[tokio::test]
#[ignore = "needs nginx; scripts/test installs it"]
async fn a_rejected_configuration_is_not_installed() {
    let dir = TempDir::new("reject");
    let mut s = host_settings(dir.path(), free_port(), free_port(), 8080);
    // A module that does not exist: `nginx -t` fails.
    s.modules = vec!["/nonexistent/ngx_stream_module.so".into()];
    let conf = s.config_path.clone();
    let p = NginxProvider::on_host(s).unwrap();
    let cluster = ClusterRef::new("reject", "dc1");
    let e = p
        .create_load_balancer(&cluster, &request(&cluster, LbMode::L4, None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(FailureKind::InvalidRequest), "{e}");
    assert!(e.to_string().contains("nginx rejected"), "{e}");
    assert!(!conf.exists());
    assert_eq!(reloads(dir.path()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx; scripts/test installs it"]
async fn layer7_terminates_tls_redirects_and_forwards_headers() {
    let dir = TempDir::new("l7");
    let (backends, port) = three_backends().await;
    let (http, https) = (free_port(), free_port());
    let cert = rcgen::generate_simple_self_signed(vec!["rancher.example.test".to_owned()]).unwrap();
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut s = host_settings(dir.path(), http, https, port);
    s.certificate_key = Some(key_path.clone());
    s.registration_listen = [(9345, free_port()), (6443, free_port())].into();
    s.registration_backend = [(9345, port), (6443, port)].into();
    let p = NginxProvider::on_host(s).unwrap();
    let cluster = ClusterRef::new("hostl7", "dc1");
    let mut req = request(&cluster, LbMode::L7, Some(cert_path.display().to_string()));
    req.registration_ports = vec![9345, 6443];
    let mut nginx = Nginx::start_placeholder(dir.path());
    let lb = p.create_load_balancer(&cluster, &req).await.unwrap();
    assert_eq!(lb.listeners[1].protocol, "HTTPS");
    let (supervisor, api) = (lb.listeners[2].port, lb.listeners[3].port);
    assert_eq!(
        (
            lb.listeners[2].protocol.as_str(),
            lb.listeners[3].protocol.as_str()
        ),
        ("TCP", "TCP")
    );
    nginx.wait_ports(&[http, https, supervisor, api]);
    let nodes: Vec<_> = backends.iter().map(Backend::node).collect();
    p.set_targets(&cluster, &lb, &nodes).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // In l7 too the registration ports pass TCP through, untouched by TLS.
    for port in [supervisor, api] {
        let (seen, failures) = names_via(port, 9).await;
        assert_eq!(
            (seen, failures),
            (set(&["rancher-1", "rancher-2", "rancher-3"]), 0),
            "port {port}"
        );
    }
    let found = p.discover_load_balancer(&cluster).await.unwrap().unwrap();
    assert_eq!(found.mode, LbMode::L7);
    assert_eq!(found.targets.len(), 3);
    let text = std::fs::read_to_string(dir.path().join("nginx.conf")).unwrap();
    assert_eq!(
        header_values(&text, "triad-certificate-key"),
        [key_path.display().to_string()]
    );

    // HTTP is redirected to HTTPS on the https port.
    let r = http_get(http, "").await.unwrap();
    assert!(r.starts_with("HTTP/1.1 301"), "{r}");
    assert!(
        r.contains(&format!("Location: https://rancher.example.test:{https}/")),
        "{r}"
    );

    // HTTPS with the balancer's certificate reaches every backend over plain HTTP,
    // with the forwarded and websocket headers Rancher expects.
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.cert.der().to_vec()))
        .unwrap();
    let config = Arc::new(
        // An explicit crypto provider: with every provider feature on, rustls may
        // see more than one backend (ring, aws-lc-rs) and refuse to pick a default.
        ClientConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let mut seen = BTreeSet::new();
    for _ in 0..9 {
        let tcp = TcpStream::connect(("127.0.0.1", https)).await.unwrap();
        let mut tls = TlsConnector::from(config.clone())
            .connect(ServerName::try_from("rancher.example.test").unwrap(), tcp)
            .await
            .expect("TLS with the balancer's certificate");
        tls.write_all(
            b"GET /v3 HTTP/1.1\r\nHost: rancher.example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        )
        .await
        .unwrap();
        // nginx keeps the client connection open: read until the echoed request
        // (the body's end) is in.
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while !(out.windows(8).any(|w| w == b"backend=") && out.ends_with(b"\r\n\r\n")) {
            match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => out.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        let r = String::from_utf8_lossy(&out).into_owned();
        for h in [
            "x-forwarded-proto: https",
            &format!("x-forwarded-port: {https}"),
            "x-forwarded-for: 127.0.0.1",
            "upgrade: websocket",
            "connection: upgrade",
            "host: rancher.example.test",
        ] {
            assert!(r.contains(h), "backend did not receive `{h}`:\n{r}");
        }
        seen.insert(backend_of(&r).expect("a backend answered"));
    }
    assert_eq!(seen, set(&["rancher-1", "rancher-2", "rancher-3"]));
    p.delete_load_balancer(&cluster).await.unwrap();
}

#[tokio::test]
#[ignore = "needs nginx; scripts/test installs it"]
async fn a_failed_reload_leaves_nothing_half_done() {
    let dir = TempDir::new("noreload");
    let mut s = host_settings(dir.path(), free_port(), free_port(), 8080);
    // The default reload, with no nginx running.
    s.reload_command = None;
    let conf = s.config_path.clone();
    let p = NginxProvider::on_host(s).unwrap();
    let cluster = ClusterRef::new("noreload", "dc1");
    let e = p
        .create_load_balancer(&cluster, &request(&cluster, LbMode::L4, None))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is it running?"), "{e}");
    assert!(
        !conf.exists(),
        "the file nginx did not load was left behind"
    );
}
