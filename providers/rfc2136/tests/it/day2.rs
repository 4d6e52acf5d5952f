//! Day 2 on real BIND: a TTL change is planned in place and applied as one atomic
//! update of the record and its ownership TXT (read back with `dig`), by a fresh
//! provider as a new process would make; the apply after it makes zero mutating
//! calls.

use std::sync::Arc;

use triad_core::layers::CallCounter;
use triad_core::orchestrator::{DnsAction, LbAction};
use triad_rfc2136::Rfc2136Provider;
use triad_sim::SimCloud;

use crate::e2e::{orchestrator, spec};
use crate::{dig, dig_ttls};

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn ttl_change_is_updated_in_place() {
    let first = spec("daytwo", 60);
    let fqdn = "daytwo-rancher.example.com";
    let txt = "_triad.daytwo-rancher.example.com";
    let cloud = Arc::new(SimCloud::from_spec(&first).unwrap());
    let counter = CallCounter::new();
    let rfc = Arc::new(Rfc2136Provider::from_spec(&first).unwrap());
    let triad = orchestrator(&cloud, &rfc, &counter);
    let inv = triad
        .apply(&triad.plan(&first).await.unwrap())
        .await
        .unwrap();
    let addresses = dig(fqdn, "A");
    assert!(!addresses.is_empty());
    assert!(dig_ttls(fqdn, "A").iter().all(|t| *t == 60));
    let owner = dig(txt, "TXT");

    let second = spec("daytwo", 300);
    let rfc = Arc::new(Rfc2136Provider::from_spec(&second).unwrap());
    let triad = orchestrator(&cloud, &rfc, &counter);
    let plan = triad.plan(&second).await.unwrap();
    assert!(
        matches!(plan.load_balancer, LbAction::Keep { .. }),
        "{plan}"
    );
    assert!(matches!(plan.dns, DnsAction::Upsert { .. }), "{plan}");
    assert!(
        plan.to_string()
            .contains(&format!("~ DNS {fqdn}: ttl 60 → 300 (in place)")),
        "{plan}"
    );
    counter.reset();
    let after = triad.apply(&plan).await.unwrap();
    let ids =
        |inv: &triad_core::Inventory| inv.nodes.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&inv), "no node touched");
    assert_eq!(after.load_balancer.id, inv.load_balancer.id);
    // Read back from BIND: the same addresses and owner, the new TTL on both.
    assert_eq!(dig(fqdn, "A"), addresses);
    assert_eq!(dig(txt, "TXT"), owner);
    assert!(
        dig_ttls(fqdn, "A").iter().all(|t| *t == 300),
        "{:?}",
        dig_ttls(fqdn, "A")
    );
    assert_eq!(dig_ttls(txt, "TXT"), [300]);

    let again = triad.plan(&second).await.unwrap();
    assert!(again.is_noop(), "{again}");
    counter.reset();
    triad.apply(&again).await.unwrap();
    assert_eq!(counter.mutating(), 0, "{:?}", counter.snapshot());

    triad.destroy(&second.cluster()).await.unwrap();
    assert!(dig(fqdn, "A").is_empty());
}
