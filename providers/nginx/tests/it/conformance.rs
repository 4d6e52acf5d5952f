//! The core conformance suite's load balancer checks, host mode, layer 4. The
//! nodes come from the simulated cloud (their 10.x addresses are never dialled:
//! `nginx -t` checks the configuration without connecting), so reloads are a no-op
//! here; traffic is tested in `host.rs`.

use std::time::Duration;

use triad_core::conformance::{self, Fixture};
use triad_core::ClusterRef;
use triad_nginx::NginxProvider;
use triad_sim::{SimCloud, SimConfig};

use crate::support::*;

#[tokio::test]
#[ignore = "needs nginx; scripts/test installs it"]
async fn load_balancer_checks_host_mode() {
    let dir = TempDir::new("conf");
    // The suite expects the listeners on 80 and 443; nothing binds them here.
    let mut s = host_settings(dir.path(), 80, 443, 80);
    s.backend_https_port = 443;
    s.reload_command = Some(vec!["true".into()]);
    s.stop_command = Some(vec!["true".into()]);
    let p = NginxProvider::on_host(s).unwrap();
    let sim = SimCloud::new(SimConfig::instant());
    let fx = Fixture::new(
        ClusterRef::new("conf", "us-east-1"),
        "example.com",
        "r.example.com",
    )
    .with_timeout(Duration::from_secs(30))
    .with_poll_interval(Duration::from_millis(10));
    conformance::load_balancer_lifecycle(&sim, &p, &fx).await;
    conformance::load_balancer_create_is_idempotent(&p, &fx).await;
    conformance::load_balancer_update_in_place(&sim, &p, &fx).await;
    assert!(!dir.path().join("nginx.conf").exists());
}
