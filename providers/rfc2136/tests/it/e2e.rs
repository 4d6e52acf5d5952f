//! The orchestrator end to end with RFC 2136 DNS on real BIND (nodes and balancer
//! on the simulated cloud): apply, read the record back with real queries, a second
//! plan is a no-op and a second apply makes zero mutating calls, destroy leaves no
//! record.

use std::sync::Arc;

use triad_core::layers::{CallCounter, Stack};
use triad_core::model::Endpoint;
use triad_core::spec::{ClusterSpec, ValidSpec};
use triad_core::{DnsProvider, LoadBalancerProvider, NodeProvider, Orchestrator};
use triad_rfc2136::Rfc2136Provider;
use triad_sim::SimCloud;

use crate::{dig, env};

/// A spec for cluster `name` at `<name>-rancher.example.com` with `ttl`, nodes and
/// balancer on the simulated cloud, DNS on the test BIND.
pub(crate) fn spec(name: &str, ttl: u32) -> ValidSpec {
    std::env::set_var("TRIAD_RFC2136_E2E_SECRET", env("TRIAD_BIND_SECRET"));
    ClusterSpec::from_toml(&format!(
        r#"
        name = "{name}"
        region = "dc1"
        [dns]
        zone = "example.com"
        hostname = "{name}-rancher.example.com"
        ttl = {ttl}
        [sim]
        time_scale = 0.0001
        [rfc2136]
        server = "{}"
        key_name = "{}"
        secret_env = "TRIAD_RFC2136_E2E_SECRET"
        poll_interval_ms = 50
        "#,
        env("TRIAD_BIND_ADDR"),
        env("TRIAD_BIND_KEY_NAME"),
    ))
    .unwrap()
    .validate()
    .unwrap()
}

/// The orchestrator over `cloud` and `rfc`, every call counted by `counter`.
pub(crate) fn orchestrator(
    cloud: &Arc<SimCloud>,
    rfc: &Arc<Rfc2136Provider>,
    counter: &CallCounter,
) -> Orchestrator {
    let nodes: Arc<dyn NodeProvider> =
        Arc::new(Stack::new(cloud.clone()).count(counter.clone()).build());
    let lb: Arc<dyn LoadBalancerProvider> =
        Arc::new(Stack::new(cloud.clone()).count(counter.clone()).build());
    let dns: Arc<dyn DnsProvider> =
        Arc::new(Stack::new(rfc.clone()).count(counter.clone()).build());
    Orchestrator::new(nodes, lb, dns)
}

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn apply_rerun_destroy() {
    let spec = spec("e2e", 60);
    let cloud = Arc::new(SimCloud::from_spec(&spec).unwrap());
    let rfc = Arc::new(Rfc2136Provider::from_spec(&spec).unwrap());
    let counter = CallCounter::new();
    let triad = orchestrator(&cloud, &rfc, &counter);

    let plan = triad.plan(&spec).await.unwrap();
    let inventory = triad.apply(&plan).await.unwrap();
    assert_eq!(inventory.providers.dns, "rfc2136");
    let Endpoint::Ip { addresses } = &inventory.load_balancer.endpoint.clone().unwrap() else {
        panic!("the sim balancer has an IP endpoint");
    };
    let mut want: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    want.sort();
    assert_eq!(dig("e2e-rancher.example.com", "A"), want);
    // The ownership TXT carries the cluster id the plan made (and BIND serves it).
    let id = plan.cluster.id.clone().expect("the plan made a cluster id");
    assert_eq!(
        dig("_triad.e2e-rancher.example.com", "TXT"),
        [format!(
            "\"heritage=triad,triad-cluster=e2e,triad-cluster-id={id},kind=a\""
        )]
    );
    // The lock was released: no lock record is left in the zone.
    assert!(dig("_triad-lock.e2e.example.com", "TXT").is_empty());

    let again = triad.plan(&spec).await.unwrap();
    assert!(again.is_noop(), "{again}");
    counter.reset();
    triad.apply(&again).await.unwrap();
    assert_eq!(counter.mutating(), 0, "{:?}", counter.snapshot());

    triad.destroy(&spec.cluster()).await.unwrap();
    assert!(dig("e2e-rancher.example.com", "A").is_empty());
    assert!(dig("_triad.e2e-rancher.example.com", "TXT").is_empty());
    assert!(cloud.snapshot().is_clean_of("e2e"));
    assert!(rfc
        .owned_records(&spec.cluster(), "example.com")
        .await
        .unwrap()
        .is_empty());
}
