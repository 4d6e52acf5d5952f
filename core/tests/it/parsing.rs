//! Loading specs: TOML, YAML and JSON give the same `ClusterSpec`; unknown fields
//! are errors in every section; `from_path` picks the format by extension.

use triad_core::spec::{ClusterSpec, LbMode, RecordChoice};
use triad_core::Error;

use crate::common::TempFile;

const FULL_TOML: &str = r#"
name = "rancher"
region = "eu-west-1"
zones = ["eu-west-1a", "eu-west-1b"]

[nodes]
count = 5
size = "m5.xlarge"
image = "ami-0123456789abcdef0"
ssh_user = "admin"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey admin@example"]
ssh_allowed_cidrs = ["203.0.113.0/24", "2001:db8::/32"]
disk_gib = 120

[proxy]
http = "http://proxy.corp.example:3128"
https = "http://proxy.corp.example:3129"
no_proxy = [".corp.example", "10.20.0.0/16"]

[load_balancer]
mode = "l7"
scheme = "internal"
certificate = "arn:aws:acm:eu-west-1:123456789012:certificate/abc"
health_check_path = "/ping"

[dns]
zone = "example.com"
hostname = "rancher.example.com"
record = "cname"
ttl = 300

[labels]
team = "platform"
cost_center = "c-42"

[sim]
time_scale = 0.5
balancer_endpoint = "hostname"
node_quota = 7
zones = ["sim-a", "sim-b"]
"#;

const FULL_YAML: &str = r#"
name: rancher
region: eu-west-1
zones: [eu-west-1a, eu-west-1b]
nodes:
  count: 5
  size: m5.xlarge
  image: ami-0123456789abcdef0
  ssh_user: admin
  ssh_authorized_keys:
    - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey admin@example
  ssh_allowed_cidrs: ["203.0.113.0/24", "2001:db8::/32"]
  disk_gib: 120
proxy:
  http: http://proxy.corp.example:3128
  https: http://proxy.corp.example:3129
  no_proxy: [.corp.example, 10.20.0.0/16]
load_balancer:
  mode: l7
  scheme: internal
  certificate: arn:aws:acm:eu-west-1:123456789012:certificate/abc
  health_check_path: /ping
dns:
  zone: example.com
  hostname: rancher.example.com
  record: cname
  ttl: 300
labels:
  team: platform
  cost_center: c-42
sim:
  time_scale: 0.5
  balancer_endpoint: hostname
  node_quota: 7
  zones: [sim-a, sim-b]
"#;

const FULL_JSON: &str = r#"{
  "name": "rancher",
  "region": "eu-west-1",
  "zones": ["eu-west-1a", "eu-west-1b"],
  "nodes": {
    "count": 5,
    "size": "m5.xlarge",
    "image": "ami-0123456789abcdef0",
    "ssh_user": "admin",
    "ssh_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey admin@example"],
    "ssh_allowed_cidrs": ["203.0.113.0/24", "2001:db8::/32"],
    "disk_gib": 120
  },
  "proxy": {
    "http": "http://proxy.corp.example:3128",
    "https": "http://proxy.corp.example:3129",
    "no_proxy": [".corp.example", "10.20.0.0/16"]
  },
  "load_balancer": {
    "mode": "l7",
    "scheme": "internal",
    "certificate": "arn:aws:acm:eu-west-1:123456789012:certificate/abc",
    "health_check_path": "/ping"
  },
  "dns": {"zone": "example.com", "hostname": "rancher.example.com", "record": "cname", "ttl": 300},
  "labels": {"team": "platform", "cost_center": "c-42"},
  "sim": {"time_scale": 0.5, "balancer_endpoint": "hostname", "node_quota": 7, "zones": ["sim-a", "sim-b"]}
}"#;

#[test]
fn toml_yaml_and_json_load_to_equal_specs() {
    let toml = ClusterSpec::from_toml(FULL_TOML).expect("TOML");
    let yaml = ClusterSpec::from_yaml(FULL_YAML).expect("YAML");
    let json = ClusterSpec::from_json(FULL_JSON).expect("JSON");
    assert_eq!(toml, yaml);
    assert_eq!(toml, json);

    // And the values are the ones written, not defaults.
    assert_eq!(toml.nodes.count, 5);
    assert_eq!(toml.nodes.ssh_user, "admin");
    assert_eq!(toml.load_balancer.mode, LbMode::L7);
    assert_eq!(toml.dns.record, RecordChoice::Cname);
    assert_eq!(toml.dns.ttl, 300);
    let proxy = toml.proxy.as_ref().unwrap();
    assert_eq!(
        proxy.https.as_ref().unwrap().expose(),
        "http://proxy.corp.example:3129"
    );
    let sim = toml.sim.as_ref().unwrap();
    assert_eq!(sim.redacted()["balancer_endpoint"], "hostname");
    assert_eq!(sim.redacted()["node_quota"], 7);
    assert!(toml.ec2.is_none());
    toml.validate().expect("the full spec is valid");
}

#[test]
fn json_output_of_a_spec_loads_back_equal() {
    let spec = ClusterSpec::from_toml(FULL_TOML).unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(ClusterSpec::from_json(&json).unwrap(), spec);
}

/// Assert `result` is a parse error of `format` whose message names `field`.
fn assert_unknown_field(result: Result<ClusterSpec, Error>, format: &str, field: &str) {
    match result {
        Err(Error::Parse { format: f, message }) => {
            assert_eq!(f, format);
            assert!(
                message.contains(&format!("unknown field `{field}`")),
                "{format} error does not name `{field}`: {message}"
            );
        }
        Err(e) => panic!("expected a {format} parse error naming `{field}`, got: {e}"),
        Ok(_) => panic!("{format} spec with unknown field `{field}` was accepted"),
    }
}

/// The smallest valid spec, for documents that add one thing to it.
const MIN: &str = "name = \"rancher\"\nregion = \"us-east-1\"\n";
const MIN_DNS: &str = "[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n";

#[test]
fn unknown_fields_are_errors_in_every_section() {
    ClusterSpec::from_toml(&format!("{MIN}{MIN_DNS}")).expect("MIN + MIN_DNS parses");
    let cases = [
        (format!("nodez = 3\n{MIN}{MIN_DNS}"), "nodez"),
        (format!("{MIN}{MIN_DNS}[nodes]\ncont = 3\n"), "cont"),
        (format!("{MIN}{MIN_DNS}recrod = \"a\"\n"), "recrod"),
        (
            format!("{MIN}{MIN_DNS}[awz]\nregion = \"us-east-1\"\n"),
            "awz",
        ),
        (
            format!("{MIN}{MIN_DNS}[proxy]\nhttp = \"http://p:3128\"\nno_prxy = []\n"),
            "no_prxy",
        ),
        (
            format!("{MIN}{MIN_DNS}[load_balancer]\nmod = \"l7\"\n"),
            "mod",
        ),
    ];
    for (text, field) in cases {
        assert_unknown_field(ClusterSpec::from_toml(&text), "TOML", field);
    }
}

#[test]
fn unknown_fields_are_errors_in_yaml_and_json() {
    let yaml = "name: rancher\nregion: x\nnodez: 3\ndns: {zone: example.com, hostname: rancher.example.com}\n";
    assert_unknown_field(ClusterSpec::from_yaml(yaml), "YAML", "nodez");
    let yaml = "name: rancher\nregion: x\nnodes: {cont: 3}\ndns: {zone: example.com, hostname: rancher.example.com}\n";
    assert_unknown_field(ClusterSpec::from_yaml(yaml), "YAML", "cont");
    let json = r#"{"name":"rancher","region":"x","dns":{"zone":"example.com","hostname":"rancher.example.com","recrod":"a"}}"#;
    assert_unknown_field(ClusterSpec::from_json(json), "JSON", "recrod");
    let json = r#"{"name":"rancher","region":"x","awz":{},"dns":{"zone":"example.com","hostname":"rancher.example.com"}}"#;
    assert_unknown_field(ClusterSpec::from_json(json), "JSON", "awz");
}

#[test]
fn bad_values_and_missing_sections_are_parse_errors() {
    let err = ClusterSpec::from_toml("name = \"r\"\nregion = \"x\"\n").unwrap_err();
    assert!(
        matches!(&err, Error::Parse { format: "TOML", message } if message.contains("missing field `dns`")),
        "{err}"
    );
    let err = ClusterSpec::from_toml(&format!("{MIN}{MIN_DNS}[load_balancer]\nmode = \"l5\"\n"))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Parse { format: "TOML", message } if message.contains("l5") && message.contains("l7")),
        "{err}"
    );
    let json = r#"{"name":"r","region":"x","load_balancer":{"mode":"l5"},"dns":{"zone":"example.com","hostname":"r.example.com"}}"#;
    let err = ClusterSpec::from_json(json).unwrap_err();
    assert!(
        matches!(&err, Error::Parse { format: "JSON", message } if message.contains("l5")),
        "{err}"
    );
    let yaml = "name: r\nregion: x\nnodes: {count: -1}\ndns: {zone: example.com, hostname: r.example.com}\n";
    let err = ClusterSpec::from_yaml(yaml).unwrap_err();
    assert!(matches!(err, Error::Parse { format: "YAML", .. }), "{err}");
}

#[test]
fn from_path_picks_the_format_by_extension() {
    let expected = ClusterSpec::from_toml(FULL_TOML).unwrap();
    for (suffix, text) in [
        ("spec.toml", FULL_TOML),
        ("spec.yaml", FULL_YAML),
        ("spec.yml", FULL_YAML),
        ("spec.json", FULL_JSON),
    ] {
        let file = TempFile::new(suffix, text);
        let spec = ClusterSpec::from_path(file.path()).unwrap_or_else(|e| panic!("{suffix}: {e}"));
        assert_eq!(spec, expected, "{suffix}");
    }
}

#[test]
fn from_path_parses_with_the_extensions_format_only() {
    // YAML text in a .json file is a JSON error, not silently read as YAML.
    let file = TempFile::new("spec.json", FULL_YAML);
    let err = ClusterSpec::from_path(file.path()).unwrap_err();
    assert!(matches!(err, Error::Parse { format: "JSON", .. }), "{err}");
}

#[test]
fn from_path_rejects_an_unknown_extension() {
    for suffix in ["spec.txt", "spec.ini", "spec"] {
        let file = TempFile::new(suffix, FULL_TOML);
        let err = ClusterSpec::from_path(file.path()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Parse { .. }), "{suffix}: {text}");
        assert!(text.contains("extension"), "{suffix}: {text}");
        assert!(
            text.contains(".toml") && text.contains(".json"),
            "{suffix}: {text}"
        );
        assert!(
            text.contains(&file.path().display().to_string()),
            "{suffix}: {text}"
        );
    }
}

#[test]
fn a_missing_file_is_an_io_error_naming_the_path() {
    let path = TempFile::missing("spec.toml");
    assert!(!path.exists());
    match ClusterSpec::from_path(&path) {
        Err(Error::Io { path: p, message }) => {
            assert_eq!(p, path.display().to_string());
            assert!(!message.is_empty());
        }
        Err(e) => panic!("expected Error::Io, got: {e}"),
        Ok(_) => panic!("a missing file loaded"),
    }
    let text = ClusterSpec::from_path(&path).unwrap_err().to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
}
