//! The `triad` binary, run as a user runs it: every command on the simulated cloud
//! (kept between invocations in a `[sim] state_file`), the exit-code contract,
//! consent for destructive changes, JSON output, `validate` listing every problem,
//! and shell completions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;
use triad_core::orchestrator::{Discovered, DnsAction, LbAction, NodeAction, TargetsAction};
use triad_core::ClusterRef;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "triad-cli-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sim spec with `nodes` nodes, its cloud kept in `dir/state.json`.
fn sim_spec(dir: &Path, nodes: u32) -> PathBuf {
    let non_ha = if nodes == 1 {
        "allow_non_ha = true\n"
    } else {
        ""
    };
    let text = format!(
        r#"
name = "cli"
region = "us-east-1"

[nodes]
count = {nodes}
{non_ha}
[proxy]
http = "http://proxy.internal:3128"

[dns]
zone = "example.com"
hostname = "rancher.example.com"

[sim]
time_scale = 0.0001
state_file = "{state}"
"#,
        state = dir.join("state.json").display()
    );
    let path = dir.join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Run `triad args…` with no terminal on stdin (nor on stdout and stderr).
fn triad(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_triad"));
    cmd.args(args)
        .env_remove("TRIAD_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the triad binary runs")
}

fn with_config(command: &[&str], config: &Path) -> Output {
    let mut args = command.to_vec();
    let c = config.to_str().unwrap();
    args.extend(["--config", c]);
    triad(&args, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn code(o: &Output, want: i32) {
    assert_eq!(
        o.status.code(),
        Some(want),
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
}

/// A part of a JSON plan, read into core's type and written back unchanged.
fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> T {
    let typed: T = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("does not read back: {e}\n{v:#}"));
    assert_eq!(&serde_json::to_value(&typed).unwrap(), v);
    typed
}

#[test]
fn plan_apply_show_destroy_on_the_sim_across_processes() {
    let dir = TempDir::new("cycle");
    let spec = sim_spec(dir.path(), 3);

    // validate: offline, names the providers.
    let o = with_config(&["validate"], &spec);
    code(&o, 0);
    assert!(
        stdout(&o).contains("nodes: sim, load balancer: sim, DNS: sim"),
        "{}",
        stdout(&o)
    );

    // plan: changes → 2 with --detailed-exitcode, 0 without.
    code(&with_config(&["plan"], &spec), 0);
    let o = with_config(&["plan", "--detailed-exitcode"], &spec);
    code(&o, 2);
    assert!(stdout(&o).contains("+ node cli-1"), "{}", stdout(&o));

    // The JSON plan is one document whose parts read back into core's types.
    let o = with_config(&["plan", "--output", "json"], &spec);
    code(&o, 0);
    let plan: Value = serde_json::from_str(&stdout(&o)).expect("stdout is one JSON document");
    let nodes: Vec<NodeAction> = round_trips(&plan["nodes"]);
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|a| matches!(a, NodeAction::Create { .. })));
    assert!(matches!(
        round_trips::<LbAction>(&plan["load_balancer"]),
        LbAction::Create { .. }
    ));
    round_trips::<TargetsAction>(&plan["targets"]);
    round_trips::<DnsAction>(&plan["dns"]);
    round_trips::<Discovered>(&plan["discovered"]);
    assert_eq!(round_trips::<ClusterRef>(&plan["cluster"]).name, "cli");

    // apply: a fresh cluster needs no consent; JSON inventory on stdout only.
    let out = dir.path().join("handover");
    let o = with_config(
        &["apply", "--output", "json", "--out", out.to_str().unwrap()],
        &spec,
    );
    code(&o, 0);
    let inventory: Value = serde_json::from_str(&stdout(&o)).expect("stdout is the inventory");
    assert_eq!(inventory["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(inventory["rancher_url"], "https://rancher.example.com");
    assert!(stderr(&o).contains("cli-1"), "progress goes to stderr");
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("inventory.json")).unwrap())
            .unwrap();
    assert_eq!(written, inventory);
    let steps = std::fs::read_to_string(out.join("next-steps.txt")).unwrap();
    assert!(steps.contains("helm install rancher"), "{steps}");

    // A new process sees the same cloud: no changes (exit 0 with --detailed-exitcode).
    let o = with_config(&["plan", "--detailed-exitcode"], &spec);
    code(&o, 0);
    assert!(stdout(&o).contains("No changes"), "{}", stdout(&o));
    let o = with_config(&["apply"], &spec);
    code(&o, 0);
    assert!(stderr(&o).contains("No changes"), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("helm install rancher"),
        "{}",
        stdout(&o)
    );

    // show: today's inventory, read-only.
    let o = with_config(&["show", "--output", "json"], &spec);
    code(&o, 0);
    let shown: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(shown, inventory);
    let o = with_config(&["show"], &spec);
    code(&o, 0);
    assert!(
        stdout(&o).contains("https://rancher.example.com"),
        "{}",
        stdout(&o)
    );

    // destroy without a terminal and without --yes: refused, nothing deleted.
    let o = with_config(&["destroy"], &spec);
    code(&o, 1);
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    code(&with_config(&["plan", "--detailed-exitcode"], &spec), 0);

    // destroy --yes: everything goes; a new process finds nothing to show.
    let o = with_config(&["destroy", "--yes", "--output", "json"], &spec);
    code(&o, 0);
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        report["deleted"].as_array().unwrap().len() >= 5,
        "{report:#}"
    );
    code(&with_config(&["plan", "--detailed-exitcode"], &spec), 2);
    let o = with_config(&["show"], &spec);
    code(&o, 1);
    assert!(stderr(&o).contains("triad apply"), "{}", stderr(&o));
}

#[test]
fn a_destructive_apply_is_refused_without_yes_and_done_with_it() {
    let dir = TempDir::new("scale");
    code(&with_config(&["apply"], &sim_spec(dir.path(), 3)), 0);

    // Fewer nodes: the plan deletes two; no terminal, no --yes → refused.
    let spec = sim_spec(dir.path(), 1);
    let o = with_config(&["apply"], &spec);
    code(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("--yes") && err.contains("delete node cli-2"),
        "{err}"
    );
    let o = with_config(&["plan", "--output", "json"], &spec);
    let plan: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let nodes: Vec<NodeAction> = round_trips(&plan["nodes"]);
    assert_eq!(
        nodes
            .iter()
            .filter(|a| matches!(a, NodeAction::Delete { .. }))
            .count(),
        2,
        "nothing was deleted"
    );

    let o = with_config(&["apply", "--yes", "--output", "json"], &spec);
    code(&o, 0);
    let inventory: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(inventory["nodes"].as_array().unwrap().len(), 1);
    code(&with_config(&["destroy", "-y"], &spec), 0);
}

#[test]
fn validate_lists_every_problem_and_calls_nothing() {
    let dir = TempDir::new("bad");
    let spec = dir.path().join("bad.toml");
    std::fs::write(
        &spec,
        r#"
name = "Bad_Name"
region = "dc1"
[nodes]
count = 2
[dns]
zone = "example.com"
hostname = "rancher.elsewhere.org"
ttl = 0
[vsphere]
[rfc2136]
"#,
    )
    .unwrap();
    let o = with_config(&["validate"], &spec);
    code(&o, 1);
    assert!(stdout(&o).is_empty());
    let err = stderr(&o);
    for field in [
        "name:",
        "nodes.count:",
        "dns.hostname:",
        "dns.ttl:",
        "providers.load_balancer:",
    ] {
        assert!(err.contains(field), "{field} missing from:\n{err}");
    }
}

/// A spec whose EC2 and RFC 2136 sections have problems only those providers see.
fn provider_problems_spec(dir: &Path) -> PathBuf {
    let spec = dir.join("providers.toml");
    std::fs::write(
        &spec,
        r#"
name = "ok"
region = "us-east-1"
[nodes]
size = "huge"
[dns]
zone = "example.com"
hostname = "rancher.example.com"
[ec2]
subnets = ["not-a-subnet"]
[rfc2136]
server = "127.0.0.1:53"
"#,
    )
    .unwrap();
    spec
}

#[cfg(feature = "ec2")]
#[test]
fn validate_checks_each_chosen_providers_section_offline() {
    let dir = TempDir::new("sections");
    let o = with_config(&["validate"], &provider_problems_spec(dir.path()));
    code(&o, 1);
    let err = stderr(&o);
    for field in ["nodes.image:", "nodes.size:", "ec2.subnets[0]:", "rfc2136"] {
        assert!(err.contains(field), "{field} missing from:\n{err}");
    }
}

#[cfg(not(feature = "ec2"))]
#[test]
fn a_provider_left_out_of_the_build_is_named_with_its_feature() {
    let dir = TempDir::new("lean");
    let o = with_config(&["validate"], &provider_problems_spec(dir.path()));
    code(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("providers.nodes: names `ec2`"), "{err}");
    assert!(err.contains("--features ec2"), "{err}");
}

#[test]
fn the_config_comes_from_triad_config_or_is_asked_for() {
    let dir = TempDir::new("env");
    let spec = sim_spec(dir.path(), 3);
    let o = triad(&["validate"], &[("TRIAD_CONFIG", &spec)]);
    code(&o, 0);
    let o = triad(&["validate"], &[]);
    code(&o, 1);
    assert!(stderr(&o).contains("--config"), "{}", stderr(&o));
    let o = with_config(&["validate"], &dir.path().join("missing.toml"));
    code(&o, 1);
    assert!(stderr(&o).contains("missing.toml"), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let o = triad(&["plan", "--no-such-flag"], &[]);
    code(&o, 1);
    assert!(stderr(&o).contains("--no-such-flag"), "{}", stderr(&o));
    let o = triad(&["--help"], &[]);
    code(&o, 0);
    assert!(stdout(&o).contains("Exit codes"), "{}", stdout(&o));
    code(&triad(&["--version"], &[]), 0);
}

#[test]
fn bash_completions_cover_every_command() {
    let o = triad(&["completions", "bash"], &[]);
    code(&o, 0);
    let script = stdout(&o);
    assert!(script.contains("complete -F _triad"), "{script}");
    for command in [
        "validate",
        "plan",
        "apply",
        "destroy",
        "show",
        "completions",
    ] {
        assert!(script.contains(command), "{command} missing");
    }
    assert!(script.contains("--detailed-exitcode"));
}
