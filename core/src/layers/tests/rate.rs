//! RateLimit.

use super::*;

// --------------------------------------------------------------------- RateLimit

#[tokio::test(start_paused = true)]
async fn rate_limit_spaces_calls_after_the_burst() {
    let fake = Arc::new(Fake::default());
    let p = Stack::new(fake.clone())
        .rate_limit(RateLimit::per_second(10.0, 2).unwrap())
        .build();
    let start = Instant::now();
    for _ in 0..6 {
        p.zones(&cluster()).await.unwrap();
    }
    // Two from the burst at once, then one every 100 ms.
    assert_eq!(start.elapsed(), Duration::from_millis(400));
    let offsets: Vec<u128> = fake
        .call_times()
        .iter()
        .map(|t| (*t - start).as_millis())
        .collect();
    assert_eq!(offsets, [0, 0, 100, 200, 300, 400]);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_idle_time_refills_only_up_to_the_burst() {
    let p = Stack::new(Fake::default())
        .rate_limit(RateLimit::per_second(10.0, 2).unwrap())
        .build();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let start = Instant::now();
    for _ in 0..4 {
        p.zones(&cluster()).await.unwrap();
    }
    // A minute idle saves up two tokens, not six hundred.
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn rate_limit_queues_concurrent_calls() {
    let fake = Arc::new(Fake::default());
    let p = Stack::new(fake.clone())
        .rate_limit(RateLimit::per_second(4.0, 1).unwrap())
        .build();
    let start = Instant::now();
    let c = cluster();
    let calls = (0..5).map(|_| p.discover_nodes(&c));
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    let mut offsets: Vec<u128> = fake
        .call_times()
        .iter()
        .map(|t| (*t - start).as_millis())
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, [0, 250, 500, 750, 1000]);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_clones_share_one_bucket() {
    let limit = RateLimit::per_second(1.0, 1).unwrap();
    let nodes = Stack::new(Fake::default())
        .rate_limit(limit.clone())
        .build();
    let dns = Stack::new(Fake::default()).rate_limit(limit).build();
    let start = Instant::now();
    nodes.zones(&cluster()).await.unwrap();
    dns.lookup("example.com", "x.example.com").await.unwrap();
    nodes.zones(&cluster()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn rate_limit_mutating_only_lets_reads_through() {
    let p = Stack::new(Fake::default())
        .rate_limit(RateLimit::per_second(1.0, 1).unwrap().mutating_only())
        .build();
    let start = Instant::now();
    for _ in 0..10 {
        p.discover_nodes(&cluster()).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    p.create_node(&cluster(), &node_request("a")).await.unwrap();
    p.create_node(&cluster(), &node_request("b")).await.unwrap();
    p.delete_node(&cluster(), &node("a")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[test]
fn rate_limit_rejects_bad_settings() {
    for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = RateLimit::per_second(rate, 1).unwrap_err();
        assert!(err.spec_problems().unwrap().names("rate_limit.rate"));
    }
    let err = RateLimit::per_second(1.0, 0).unwrap_err();
    assert!(err.spec_problems().unwrap().names("rate_limit.burst"));
}
