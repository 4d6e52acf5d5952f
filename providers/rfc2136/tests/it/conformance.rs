//! The core conformance suite's DNS checks against real BIND.

use std::time::Duration;

use triad_core::conformance::{self, Fixture};
use triad_core::model::Endpoint;
use triad_core::ClusterRef;

use crate::{dig, provider, ZONE};

fn fixture(cluster: &str, fqdn: &str) -> Fixture {
    Fixture::new(ClusterRef::new(cluster, "dc1"), ZONE, fqdn)
        .with_timeout(Duration::from_secs(30))
        .with_poll_interval(Duration::from_millis(50))
}

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn dns_upsert_ownership_delete_a_record() {
    let dns = provider();
    let fx = fixture("conf-a", "conf-a.example.com");
    conformance::dns_upsert_ownership_delete(&dns, &fx).await;
    assert!(dig("conf-a.example.com", "A").is_empty());
    assert!(dig("_triad.conf-a.example.com", "TXT").is_empty());
}

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn dns_upsert_ownership_delete_cname() {
    let dns = provider();
    let mut fx = fixture("conf-c", "conf-c.example.com");
    fx.record_target = Endpoint::Hostname {
        name: "lb.elsewhere.example.net".into(),
        alias_zone: None,
    };
    conformance::dns_upsert_ownership_delete(&dns, &fx).await;
    assert!(dig("conf-c.example.com", "CNAME").is_empty());
}

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn dns_refuses_foreign_record() {
    let dns = provider();
    // testing/bind/example.com.zone holds `foreign A 192.0.2.99` without a TXT.
    let fx = fixture("conf-f", "conf-f.example.com");
    conformance::dns_refuses_foreign_record(&dns, &fx, "foreign.example.com").await;
    assert_eq!(dig("foreign.example.com", "A"), ["192.0.2.99"]);
}

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn dns_lock_two_writers_exactly_one_wins() {
    let dns = provider();
    let fx = fixture("conf-lock", "conf-lock.example.com");
    conformance::dns_lock_conditional_write(&dns, &fx).await;
    // BIND itself (read with dig, not the provider) holds no lock record afterwards.
    assert!(dig("_triad-lock.conf-lock.example.com", "TXT").is_empty());
}
