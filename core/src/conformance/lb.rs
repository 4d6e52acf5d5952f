//! Balancer checks: lifecycle, listeners, targets, idempotence.

use crate::model::{LbState, LoadBalancer, LoadBalancerRequest, Node};
use crate::placement::place;
use crate::provider::{LoadBalancerProvider, NodeProvider};
use crate::spec::LbMode;

use super::{create_checked, delete_all, ok, wait_ready, zones_of, Fixture};

fn check_listeners(p: &str, lb: &LoadBalancer, request: &LoadBalancerRequest) {
    let mode = request.mode;
    let port = |n: u16| lb.listeners.iter().find(|l| l.port == n);
    for &n in &request.registration_ports {
        let l = port(n).unwrap_or_else(|| {
            panic!(
                "[{p}] balancer {} should listen on registration port {n}: {:?}",
                lb.name, lb.listeners
            )
        });
        assert!(
            l.protocol.eq_ignore_ascii_case("TCP") && l.target_port == Some(n),
            "[{p}] registration port {n} is TCP passed through to {n} in {mode} mode: {l:?}"
        );
    }
    let (Some(http), Some(https)) = (port(80), port(443)) else {
        panic!(
            "[{p}] balancer {} should listen on 80 and 443: {:?}",
            lb.name, lb.listeners
        );
    };
    match mode {
        LbMode::L4 => {
            assert!(
                http.protocol.eq_ignore_ascii_case("TCP")
                    && https.protocol.eq_ignore_ascii_case("TCP"),
                "[{p}] a layer 4 balancer passes TCP through: {:?}",
                lb.listeners
            );
            assert_eq!(
                (http.target_port, https.target_port),
                (Some(80), Some(443)),
                "[{p}] layer 4 listeners forward 80→80 and 443→443"
            );
        }
        LbMode::L7 => {
            assert!(
                https.protocol.eq_ignore_ascii_case("HTTPS") && https.target_port.is_some(),
                "[{p}] a layer 7 balancer terminates TLS on 443 and forwards: {https:?}"
            );
        }
    }
}

fn ids(nodes: &[Node]) -> Vec<String> {
    let mut v: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    v.sort();
    v
}

/// The balancer's whole life: create, wait until active with an endpoint, check its
/// listeners, converge its targets to two running nodes, shrink them to one, delete
/// it twice, and check it is gone. Makes (and deletes) two nodes.
pub async fn load_balancer_lifecycle(
    nodes: &dyn NodeProvider,
    lbp: &dyn LoadBalancerProvider,
    fx: &Fixture,
) {
    let p = lbp.name();
    let zones = zones_of(nodes, fx).await;
    let mut request = fx.lb.clone();
    if request.zones.is_empty() {
        request.zones = zones.clone();
    }
    let mut made = Vec::new();
    for (i, zone) in place(&zones, &[], 2).iter().enumerate() {
        made.push(create_checked(nodes, fx, &fx.node_name(i + 1), zone).await);
    }
    let mut ready = Vec::new();
    for n in &made {
        ready.push(wait_ready(nodes, fx, n).await);
    }

    let created = ok(
        p,
        format_args!("create_load_balancer({})", request.name),
        lbp.create_load_balancer(&fx.cluster, &request).await,
    );
    assert_eq!(
        created.name, request.name,
        "[{p}] created balancer has another name"
    );
    assert_eq!(
        created.mode, request.mode,
        "[{p}] created balancer has another mode"
    );
    let active = ok(
        p,
        "wait_load_balancer()",
        lbp.wait_load_balancer(&fx.cluster, &created, fx.timeout)
            .await,
    );
    assert_eq!(
        active.id, created.id,
        "[{p}] wait_load_balancer returned another balancer"
    );
    assert_eq!(
        active.state,
        LbState::Active,
        "[{p}] waited balancer is not active"
    );
    assert!(
        active.endpoint.is_some(),
        "[{p}] an active balancer has an endpoint"
    );
    check_listeners(p, &active, &request);

    let all = ids(&ready);
    let lb = ok(
        p,
        "set_targets(all nodes)",
        lbp.set_targets(&fx.cluster, &active, &ready).await,
    );
    assert_eq!(lb.targets, all, "[{p}] set_targets returned other targets");
    let lb = ok(
        p,
        "set_targets(all nodes) again",
        lbp.set_targets(&fx.cluster, &lb, &ready).await,
    );
    assert_eq!(
        lb.targets, all,
        "[{p}] a repeated set_targets changed the targets"
    );
    let found = ok(
        p,
        "discover_load_balancer()",
        lbp.discover_load_balancer(&fx.cluster).await,
    )
    .unwrap_or_else(|| panic!("[{p}] the balancer is not discovered"));
    assert_eq!(
        found.id, created.id,
        "[{p}] discovery found another balancer"
    );
    assert_eq!(
        found.targets, all,
        "[{p}] discovered targets differ from the nodes"
    );
    check_listeners(p, &found, &request);

    let one = &ready[..1];
    let lb = ok(
        p,
        "set_targets(one node)",
        lbp.set_targets(&fx.cluster, &lb, one).await,
    );
    assert_eq!(lb.targets, ids(one), "[{p}] shrinking the targets failed");
    let found = ok(
        p,
        "discover_load_balancer()",
        lbp.discover_load_balancer(&fx.cluster).await,
    )
    .unwrap_or_else(|| panic!("[{p}] the balancer is not discovered"));
    assert_eq!(
        found.targets,
        ids(one),
        "[{p}] discovered targets were not shrunk"
    );

    let deleted = ok(
        p,
        "delete_load_balancer()",
        lbp.delete_load_balancer(&fx.cluster).await,
    );
    assert!(
        !deleted.is_empty(),
        "[{p}] delete_load_balancer() reported deleting nothing"
    );
    let again = ok(
        p,
        "delete_load_balancer() again",
        lbp.delete_load_balancer(&fx.cluster).await,
    );
    assert!(
        again.is_empty(),
        "[{p}] a second delete_load_balancer() still deleted {again:?}"
    );
    let gone = ok(
        p,
        "discover_load_balancer()",
        lbp.discover_load_balancer(&fx.cluster).await,
    );
    assert!(
        gone.is_none(),
        "[{p}] a deleted balancer is still discovered: {gone:?}"
    );
    delete_all(nodes, fx, &ready).await;
}

/// Creating the balancer twice returns the same balancer with the same listeners.
pub async fn load_balancer_create_is_idempotent(lbp: &dyn LoadBalancerProvider, fx: &Fixture) {
    let p = lbp.name();
    let first = ok(
        p,
        "create_load_balancer()",
        lbp.create_load_balancer(&fx.cluster, &fx.lb).await,
    );
    let second = ok(
        p,
        "create_load_balancer() again",
        lbp.create_load_balancer(&fx.cluster, &fx.lb).await,
    );
    assert_eq!(
        first.id, second.id,
        "[{p}] creating the balancer twice made two"
    );
    let mut a = first.listeners.clone();
    let mut b = second.listeners.clone();
    a.sort_by_key(|l| l.port);
    b.sort_by_key(|l| l.port);
    assert_eq!(a, b, "[{p}] the second create changed the listeners");
    let found = ok(
        p,
        "discover_load_balancer()",
        lbp.discover_load_balancer(&fx.cluster).await,
    )
    .unwrap_or_else(|| panic!("[{p}] the balancer is not discovered"));
    assert_eq!(found.id, first.id, "[{p}] discovery found another balancer");
    ok(
        p,
        "delete_load_balancer()",
        lbp.delete_load_balancer(&fx.cluster).await,
    );
    let gone = ok(
        p,
        "discover_load_balancer()",
        lbp.discover_load_balancer(&fx.cluster).await,
    );
    assert!(
        gone.is_none(),
        "[{p}] a deleted balancer is still discovered"
    );
}
