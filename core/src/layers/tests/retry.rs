//! Retry.

use super::*;

// ------------------------------------------------------------------------- Retry

#[tokio::test(start_paused = true)]
async fn retry_recovers_from_transient_failures() {
    let fake = Arc::new(Fake::failing(FailureKind::Transient, 3));
    let p = Stack::new(fake.clone()).retry(fast_retry()).build();
    let n = p.create_node(&cluster(), &node_request("rancher-1")).await;
    assert_eq!(n.unwrap().name, "rancher-1");
    assert_eq!(fake.calls(Op::CreateNode), 4);
    assert_eq!(fake.node_names(), ["rancher-1"]);
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_after_max_attempts_with_last_error() {
    let fake = Arc::new(Fake::scripted([
        Scripted::Fail(FailureKind::Transient),
        Scripted::Fail(FailureKind::Transient),
        Scripted::Fail(FailureKind::Throttled),
        Scripted::Fail(FailureKind::Transient),
    ]));
    let p = Stack::new(fake.clone())
        .retry(fast_retry().max_attempts(3))
        .build();
    let err = p
        .create_node(&cluster(), &node_request("n"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(FailureKind::Throttled), "{err}");
    assert_eq!(fake.calls(Op::CreateNode), 3);
    assert!(fake.node_names().is_empty());
}

#[tokio::test(start_paused = true)]
async fn stacked_retries_do_not_multiply() {
    // Two retry layers on one call (a provider's own and the embedder's): the inner
    // one's last error is marked exhausted, so the outer one does not start over.
    let fake = Arc::new(Fake::failing(FailureKind::Transient, 100));
    let inner = Stack::new(fake.clone())
        .retry(fast_retry().max_attempts(3))
        .build();
    let p = Stack::new(Arc::new(inner))
        .retry(fast_retry().max_attempts(3))
        .build();
    let err = p
        .create_node(&cluster(), &node_request("n"))
        .await
        .unwrap_err();
    assert_eq!(fake.calls(Op::CreateNode), 3, "{err}");
    assert_eq!(err.kind(), Some(FailureKind::Transient));
    assert!(!err.is_retryable(), "the exhausted error is final: {err:?}");
    // The code and the source ride along.
    let e = Error::provider(
        "ec2",
        "create node",
        "node n",
        FailureKind::NotFound,
        "gone",
    )
    .with_code("InvalidGroup.NotFound")
    .with_source(std::io::Error::other("the SDK's error"));
    assert_eq!(e.code(), Some("InvalidGroup.NotFound"));
    let source = std::error::Error::source(&e).map(|s| s.to_string());
    assert_eq!(source.as_deref(), Some("the SDK's error"));
}

#[tokio::test(start_paused = true)]
async fn retry_does_not_retry_fatal_errors() {
    for kind in [
        FailureKind::Permission,
        FailureKind::Capacity,
        FailureKind::InvalidRequest,
        FailureKind::Conflict,
    ] {
        let fake = Arc::new(Fake::failing(kind, 1));
        let p = Stack::new(fake.clone()).retry(fast_retry()).build();
        let start = Instant::now();
        let err = p.delete_node(&cluster(), &node("n")).await.unwrap_err();
        assert_eq!(err.kind(), Some(kind));
        assert_eq!(fake.calls(Op::DeleteNode), 1, "{kind:?} was retried");
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn retry_backoff_grows_and_is_capped() {
    let fake = Arc::new(Fake::failing(FailureKind::Throttled, 100));
    let policy = RetryPolicy::default()
        .max_attempts(6)
        .initial_backoff(Duration::from_millis(100))
        .max_backoff(Duration::from_millis(500))
        .jitter(false);
    let p = Stack::new(fake.clone()).retry(policy).build();
    let start = Instant::now();
    p.zones(&cluster()).await.unwrap_err();
    let times = fake.call_times();
    assert_eq!(times.len(), 6);
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    assert_eq!(gaps, [100, 200, 400, 500, 500]);
    assert_eq!(start.elapsed(), Duration::from_millis(1700));
}

#[tokio::test(start_paused = true)]
async fn retry_jittered_backoff_stays_under_the_cap() {
    let fake = Arc::new(Fake::failing(FailureKind::Transient, 100));
    let policy = RetryPolicy::default()
        .max_attempts(8)
        .initial_backoff(Duration::from_millis(100))
        .max_backoff(Duration::from_millis(1000));
    let p = Stack::new(fake.clone()).retry(policy.clone()).build();
    p.discover_nodes(&cluster()).await.unwrap_err();
    let times = fake.call_times();
    assert_eq!(times.len(), 8);
    let mut total = Duration::ZERO;
    for (i, w) in times.windows(2).enumerate() {
        let cap = policy.backoff_cap(u32::try_from(i).unwrap() + 1);
        let gap = w[1] - w[0];
        // tokio's timer has millisecond resolution.
        assert!(
            gap <= cap + Duration::from_millis(1),
            "gap {gap:?} > cap {cap:?}"
        );
        total += gap;
    }
    let sum_caps: Duration = (1..8).map(|r| policy.backoff_cap(r)).sum();
    assert!(
        total < sum_caps,
        "full jitter should wait less than the caps"
    );
}

#[test]
fn backoff_cap_survives_odd_settings() {
    let p = RetryPolicy::default().multiplier(f64::NAN);
    assert_eq!(p.backoff_cap(3), p.max_backoff);
    let p = RetryPolicy::default().multiplier(-3.0);
    assert_eq!(p.backoff_cap(2), p.max_backoff);
    let p = RetryPolicy::default().multiplier(1e300);
    assert_eq!(p.backoff_cap(u32::MAX), p.max_backoff);
    assert_eq!(
        RetryPolicy::default().backoff_cap(1),
        Duration::from_millis(200)
    );
}

#[tokio::test(start_paused = true)]
async fn zero_max_attempts_still_calls_once() {
    let fake = Arc::new(Fake::failing(FailureKind::Transient, 5));
    let p = Stack::new(fake.clone())
        .retry(fast_retry().max_attempts(0))
        .build();
    p.cleanup(&cluster()).await.unwrap_err();
    assert_eq!(fake.calls(Op::Cleanup), 1);
}

#[tokio::test(start_paused = true)]
async fn timed_out_waits_are_not_retried_unless_asked() {
    let fake = Arc::new(Fake::scripted([Scripted::TimedOut]));
    let p = Stack::new(fake.clone()).retry(fast_retry()).build();
    let err = p
        .wait_node(&cluster(), &node("n"), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(fake.calls(Op::WaitNode), 1);

    let fake = Arc::new(Fake::scripted([Scripted::TimedOut]));
    let p = Stack::new(fake.clone())
        .retry(fast_retry().retry_waits(true))
        .build();
    p.wait_node(&cluster(), &node("n"), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(fake.calls(Op::WaitNode), 2);
}
