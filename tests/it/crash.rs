//! Crash and rerun: fail every mutating call of a full apply in turn — before it takes
//! effect, and after (a lost response) — then rerun and assert convergence with no
//! duplicate and no orphan resource. The same for a rolling replace and a scale-down.

use std::time::Duration;

use triad::layers::{CallCounter, RetryPolicy, Stack};
use triad::sim::{SimCloud, SimFault};
use triad::{Error, FailureKind, Orchestrator, ValidSpec};

use crate::common::*;

/// The number of mutating cloud calls a clean apply of the test spec makes.
async fn mutating_calls_of_a_clean_apply() -> u64 {
    let sim = cloud();
    apply(&orchestrator(&sim, &CallCounter::new()), &spec())
        .await
        .unwrap();
    sim.stats().mutating
}

async fn fail_at_then_rerun(k: u64, fault: SimFault) {
    let sim = cloud();
    let counter = CallCounter::new();
    let o = orchestrator(&sim, &counter);
    sim.inject(fault.clone().nth(k).kind(FailureKind::Other));

    let err = apply(&o, &spec()).await.expect_err(&format!(
        "a fatal fault at mutating call {k} ({fault:?}) fails the apply"
    ));
    assert!(matches!(err, Error::Apply { .. }), "call {k}: {err}");
    assert_eq!(sim.stats().faults_fired, 1, "call {k}");

    // A fresh orchestrator (the old one "crashed") converges on the same cloud.
    sim.clear_faults();
    let o = orchestrator(&sim, &counter);
    let inv = apply(&o, &spec())
        .await
        .unwrap_or_else(|e| panic!("rerun after a fault at mutating call {k} ({fault:?}): {e}"));
    assert_eq!(inv.nodes.len(), 3, "call {k}");
    assert_converged(&sim.snapshot(), 3);

    // And then it is stable.
    sim.reset_stats();
    let plan = o.plan(&spec()).await.unwrap();
    assert!(plan.is_noop(), "call {k}: {plan}");
    o.apply(&plan).await.unwrap();
    assert_eq!(sim.stats().mutating, 0, "call {k}");
}

#[tokio::test(start_paused = true)]
async fn every_mutating_call_failing_before_it_takes_effect() {
    let n = mutating_calls_of_a_clean_apply().await;
    assert!(n >= 10, "a full apply makes many mutating calls, saw {n}");
    for k in 1..=n {
        fail_at_then_rerun(k, SimFault::on_any_mutating().before()).await;
    }
}

#[tokio::test(start_paused = true)]
async fn every_mutating_call_losing_its_response() {
    let n = mutating_calls_of_a_clean_apply().await;
    for k in 1..=n {
        fail_at_then_rerun(k, SimFault::on_any_mutating().after()).await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_orchestrator_dropped_mid_apply_is_resumed_by_another() {
    for stop_after in [1u64, 30, 100, 160, 185] {
        let sim = cloud();
        let o = orchestrator(&sim, &CallCounter::new());
        let spec = spec();
        let task = tokio::spawn(async move { apply(&o, &spec).await });
        tokio::time::sleep(Duration::from_secs(stop_after)).await;
        task.abort();
        let _ = task.await;

        let o = orchestrator(&sim, &CallCounter::new());
        apply(&o, &crate::common::spec())
            .await
            .unwrap_or_else(|e| panic!("resume after {stop_after} s: {e}"));
        assert_converged(&sim.snapshot(), 3);
    }
}

#[tokio::test(start_paused = true)]
async fn retry_layer_rides_out_throttling_and_transient_faults() {
    let sim = cloud();
    sim.inject(
        SimFault::on_any_call()
            .probability(0.25)
            .kind(FailureKind::Throttled),
    );
    let counter = CallCounter::new();
    let p = Stack::new(std::sync::Arc::new(sim.clone()))
        .count(counter.clone())
        .retry(RetryPolicy::default().max_attempts(10))
        .build();
    let p = std::sync::Arc::new(p);
    let o = Orchestrator::new(p.clone(), p.clone(), p);
    apply(&o, &spec()).await.unwrap();
    assert!(
        sim.stats().faults_fired > 0,
        "faults fired: {:?}",
        sim.stats()
    );
    assert!(counter.total_failures() > 0);
    assert_converged(&sim.snapshot(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_failed_apply_names_what_it_left_and_destroy_removes_it() {
    let sim: SimCloud = cloud();
    sim.inject(
        SimFault::on(triad::sim::SimApi::CreateListener)
            .nth(1)
            .kind(FailureKind::Permission),
    );
    let o = orchestrator(&sim, &CallCounter::new());
    let err = apply(&o, &spec()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("permission denied"), "{text}");
    for n in ["node rancher-1", "node rancher-2", "node rancher-3"] {
        assert!(text.contains(n), "names {n}: {text}");
    }
    o.destroy(&spec().cluster()).await.unwrap();
    assert!(
        sim.snapshot().is_clean_of("rancher"),
        "{:#?}",
        sim.snapshot()
    );
}

/// A Day 2 change: from `base` (applied cleanly) to `want`, failing mutating call `k`
/// of the change (`None`: no fault), then rerunning. Returns the mutating calls the
/// change made when it ran without a fault.
async fn change_failing_at(
    base: &ValidSpec,
    want: &ValidSpec,
    k: Option<(u64, SimFault)>,
    n: usize,
) -> u64 {
    let sim = cloud();
    let counter = CallCounter::new();
    apply(&orchestrator(&sim, &counter), base).await.unwrap();
    sim.reset_stats();
    let o = orchestrator(&sim, &counter);
    if let Some((k, fault)) = &k {
        sim.inject(fault.clone().nth(*k).kind(FailureKind::Other));
        let err = apply(&o, want).await.expect_err(&format!(
            "a fatal fault at mutating call {k} ({fault:?}) fails the change"
        ));
        assert!(matches!(err, Error::Apply { .. }), "call {k}: {err}");
        sim.clear_faults();
        let o = orchestrator(&sim, &counter);
        apply(&o, want).await.unwrap_or_else(|e| {
            panic!("rerun after a fault at mutating call {k} ({fault:?}): {e}")
        });
    } else {
        apply(&o, want).await.unwrap();
    }
    let mutating = sim.stats().mutating;
    assert_converged(&sim.snapshot(), n);
    let plan = o.plan(want).await.unwrap();
    assert!(plan.is_noop(), "after {k:?}: {plan}");
    mutating
}

fn new_image() -> ValidSpec {
    let mut s = spec().into_inner();
    s.nodes.image = Some("ami-0fedcba9876543210".into());
    s.validate().unwrap()
}

#[tokio::test(start_paused = true)]
async fn every_mutating_call_of_a_rolling_replace_failing_then_rerun() {
    let n = change_failing_at(&spec(), &new_image(), None, 3).await;
    assert!(
        n >= 12,
        "a rolling replace of 3 nodes makes many mutating calls, saw {n}"
    );
    for k in 1..=n {
        for fault in [
            SimFault::on_any_mutating().before(),
            SimFault::on_any_mutating().after(),
        ] {
            change_failing_at(&spec(), &new_image(), Some((k, fault)), 3).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_mutating_call_of_a_scale_down_failing_then_rerun() {
    let five = spec_nodes("count = 5", "", "");
    let n = change_failing_at(&five, &spec(), None, 3).await;
    assert!(n >= 6, "saw {n}");
    for k in 1..=n {
        for fault in [
            SimFault::on_any_mutating().before(),
            SimFault::on_any_mutating().after(),
        ] {
            change_failing_at(&five, &spec(), Some((k, fault)), 3).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_mutating_call_of_a_balancer_mode_change_failing_then_rerun() {
    let mut l7 = spec().into_inner();
    l7.load_balancer.mode = triad::spec::LbMode::L7;
    l7.load_balancer.certificate = Some("arn:aws:acm:us-east-1:1:certificate/x".into());
    let l7 = l7.validate().unwrap();
    let n = change_failing_at(&spec(), &l7, None, 3).await;
    assert!(n >= 8, "saw {n}");
    for k in 1..=n {
        for fault in [
            SimFault::on_any_mutating().before(),
            SimFault::on_any_mutating().after(),
        ] {
            change_failing_at(&spec(), &l7, Some((k, fault)), 3).await;
        }
    }
}
