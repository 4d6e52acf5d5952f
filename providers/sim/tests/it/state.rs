//! `[sim] state_file`: the cloud outlives the process that made it.

use std::sync::Arc;

use triad_core::spec::ClusterSpec;
use triad_core::{Error, Orchestrator};
use triad_sim::SimCloud;

fn spec(state: &std::path::Path) -> triad_core::ValidSpec {
    ClusterSpec::from_toml(&format!(
        r#"
name = "kept"
region = "us-east-1"
[dns]
zone = "example.com"
hostname = "kept.example.com"
[sim]
time_scale = 0.0001
balancer_endpoint = "hostname"
state_file = "{}"
"#,
        state.display()
    ))
    .unwrap()
    .validate()
    .unwrap()
}

fn orchestrator(cloud: &Arc<SimCloud>) -> Orchestrator {
    Orchestrator::new(cloud.clone(), cloud.clone(), cloud.clone())
}

#[tokio::test]
async fn a_new_cloud_from_the_file_sees_what_the_last_one_made() {
    let dir = std::env::temp_dir().join(format!("triad-sim-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.json");
    let _ = std::fs::remove_file(&path);
    let spec = spec(&path);

    // "Process" one: apply.
    let first = Arc::new(SimCloud::from_spec(&spec).unwrap());
    let inventory = orchestrator(&first)
        .apply(&orchestrator(&first).plan(&spec).await.unwrap())
        .await
        .unwrap();
    let mut before = first.snapshot();
    drop(first);
    // A state file never holds user data (the join token, the proxy password).
    for node in &mut before.nodes {
        assert!(
            node.user_data.is_some(),
            "{} was launched with user data",
            node.name
        );
        node.user_data = None;
    }
    assert!(path.exists());

    // "Process" two: the same resources, and nothing to do.
    let second = Arc::new(SimCloud::from_spec(&spec).unwrap());
    assert_eq!(second.snapshot(), before);
    let plan = orchestrator(&second).plan(&spec).await.unwrap();
    assert!(plan.is_noop(), "{plan}");
    assert_eq!(orchestrator(&second).inventory(&plan).unwrap(), inventory);
    assert_eq!(second.stats().mutating, 0);

    // "Process" three: destroy; four: nothing left.
    let third = Arc::new(SimCloud::from_spec(&spec).unwrap());
    orchestrator(&third).destroy(&spec.cluster()).await.unwrap();
    let fourth = SimCloud::from_spec(&spec).unwrap();
    assert!(fourth.snapshot().is_clean_of("kept"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broken_state_file_is_a_spec_problem_naming_it() {
    let path = std::env::temp_dir().join(format!("triad-sim-bad-{}.json", std::process::id()));
    std::fs::write(&path, "{ not json").unwrap();
    let err = SimCloud::from_spec(&spec(&path)).unwrap_err();
    let _ = std::fs::remove_file(&path);
    match &err {
        Error::InvalidSpec(p) => assert!(p.names("sim.state_file"), "{err}"),
        other => panic!("{other:?}"),
    }
}
