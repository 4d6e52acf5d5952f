//! Orchestrator benchmarks (`cargo bench`).
//!
//! 1. **Schedule efficiency, in virtual time.** A full apply on the simulated cloud
//!    with realistic latencies (API round trip 100 ms, node create 45 s + boot 60 s,
//!    balancer 150 s, DNS sync 40 s) for 3, 9 and 99 nodes, under
//!    `tokio::time::pause`, so the measured time is the schedule's, not the machine's.
//!    Reported as apply time ÷ critical path, where the critical path is the longest
//!    chain of cloud latencies the dependencies force:
//!    `max(node create + boot, balancer) ` for the targets and
//!    `balancer + DNS sync` for the record — round trips and polling excluded, so the
//!    ratio shows everything the orchestrator and provider add on top. The providers
//!    poll as real ones do (nodes at most every 5 s, the balancer every 10 s, DNS every
//!    5 s, shaped by the expected latency); each row counts the cloud calls, the calls
//!    of a no-op rerun (plan + apply on the applied cluster), and a second run has
//!    the cloud 25 % slower than the providers expect.
//! 2. **Planner and renderer micro-benchmarks, in wall-clock time**: spec validation,
//!    user-data generation, a plan against an instant simulated cloud holding a
//!    99-node cluster.
//!
//! Results and method: `docs/performance.md`. Options: `--quick` (fewer iterations).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use triad::layers::{CallCounter, Stack};
use triad::sim::{SimCloud, SimConfig};
use triad::{bootstrap, ClusterSpec, Orchestrator, ValidSpec};

fn spec(nodes: u32) -> ValidSpec {
    ClusterSpec::from_toml(&format!(
        r#"
name = "rancher"
region = "us-east-1"
[nodes]
count = {nodes}
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGU admin@example"]
[proxy]
http = "http://proxy.internal:3128"
no_proxy = ["corp.internal"]
[dns]
zone = "example.com"
hostname = "rancher.example.com"
"#
    ))
    .expect("bench spec parses")
    .validate()
    .expect("bench spec is valid")
}

struct Schedule {
    nodes: u32,
    apply: Duration,
    critical: Duration,
    calls: u64,
    mutating: u64,
    by_api: BTreeMap<&'static str, u64>,
    rerun_calls: u64,
    rerun_mutating: u64,
}

/// One apply in virtual time on a fresh realistic cloud.
/// `slower`: the cloud takes `slower` times the latencies the providers expect.
fn schedule(nodes: u32, slower: f64) -> Schedule {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let expected = SimConfig::realistic();
        let config = SimConfig {
            node_create: expected.node_create.mul_f64(slower),
            node_boot: expected.node_boot.mul_f64(slower),
            lb_provision: expected.lb_provision.mul_f64(slower),
            dns_sync: expected.dns_sync.mul_f64(slower),
            ..expected
        };
        let critical = (config.node_create + config.node_boot)
            .max(config.lb_provision)
            .max(config.lb_provision + config.dns_sync);
        let sim = SimCloud::new(config).with_zone("example.com");
        let counter = CallCounter::new();
        let p = Arc::new(
            Stack::new(Arc::new(sim.clone()))
                .count(counter.clone())
                .build(),
        );
        let o = Orchestrator::new(p.clone(), p.clone(), p);
        let spec = spec(nodes);
        let start = tokio::time::Instant::now();
        let plan = o.plan(&spec).await.expect("plan");
        let inv = o.apply(&plan).await.expect("apply");
        let apply = start.elapsed();
        assert_eq!(inv.nodes.len(), nodes as usize);
        let stats = sim.stats();
        sim.reset_stats();
        let plan = o.plan(&spec).await.expect("plan again");
        assert!(plan.is_noop(), "the rerun plans changes:\n{plan}");
        o.apply(&plan).await.expect("apply again");
        let rerun = sim.stats();
        Schedule {
            nodes,
            apply,
            critical,
            calls: stats.total(),
            mutating: stats.mutating,
            by_api: stats.calls,
            rerun_calls: rerun.total(),
            rerun_mutating: rerun.mutating,
        }
    })
}

/// Median wall-clock time of `f` over `iters` runs (after a warm-up run).
fn time<T>(iters: u32, mut f: impl FnMut() -> T) -> Duration {
    black_box(f());
    let mut samples: Vec<Duration> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us without it.
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let iters = if quick { 5 } else { 200 };

    println!("## Apply schedule in virtual time (realistic latencies)\n");
    let mut breakdown = Vec::new();
    for (title, slower) in [
        ("the cloud as fast as expected", 1.0),
        ("the cloud 25 % slower than expected", 1.25),
    ] {
        println!("{title}:\n");
        println!(
            "| nodes | apply (s) | critical path (s) | ratio | cloud calls | mutating | no-op rerun calls | rerun mutating |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
        for n in [3, 9, 99] {
            let s = schedule(n, slower);
            println!(
                "| {} | {:.1} | {:.1} | {:.4} | {} | {} | {} | {} |",
                s.nodes,
                s.apply.as_secs_f64(),
                s.critical.as_secs_f64(),
                s.apply.as_secs_f64() / s.critical.as_secs_f64(),
                s.calls,
                s.mutating,
                s.rerun_calls,
                s.rerun_mutating
            );
            if slower == 1.0 && n != 9 {
                breakdown.push(s);
            }
        }
        println!();
    }
    println!("Cloud calls of one apply, by API:\n");
    println!("| API | 3 nodes | 99 nodes |");
    println!("|---|---:|---:|");
    let apis: std::collections::BTreeSet<&str> = breakdown
        .iter()
        .flat_map(|s| s.by_api.keys().copied())
        .collect();
    for api in apis {
        let count = |s: &Schedule| s.by_api.get(api).copied().unwrap_or(0);
        println!(
            "| {api} | {} | {} |",
            count(&breakdown[0]),
            count(&breakdown[1])
        );
    }

    println!("\n## Planner and renderers, wall clock (median of {iters})\n");
    println!("| what | time |");
    println!("|---|---:|");
    let text = r#"
name = "rancher"
region = "us-east-1"
[nodes]
count = 3
[proxy]
http = "http://proxy.internal:3128"
[dns]
zone = "example.com"
hostname = "rancher.example.com"
"#;
    let t = time(iters, || {
        ClusterSpec::from_toml(text).unwrap().validate().unwrap()
    });
    println!("| parse + validate a TOML spec | {t:.2?} |");
    let s3 = spec(3);
    let t = time(iters, || bootstrap::user_data(&s3, "rancher-2"));
    println!("| cloud-init user data for one node | {t:.2?} |");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let sim = SimCloud::new(SimConfig::instant()).with_zone("example.com");
    let o = Orchestrator::new(Arc::new(sim.clone()), Arc::new(sim.clone()), Arc::new(sim));
    let s99 = spec(99);
    rt.block_on(async {
        let plan = o.plan(&s99).await.unwrap();
        o.apply(&plan).await.unwrap();
    });
    let t = time(iters, || rt.block_on(o.plan(&s99)).unwrap());
    println!("| plan against an existing 99-node cluster (instant cloud) | {t:.2?} |");
}
