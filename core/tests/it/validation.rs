//! Validation: each bad spec names its field and says how to fix it; a spec with
//! many problems reports them all at once; the edges of each rule are accepted.

use triad_core::spec::{ClusterSpec, LbMode, LbScheme, RecordChoice};
use triad_core::Error;

use crate::common::spec_with;

/// (what is wrong, TOML snippet merged on the valid base, the field it must name)
const BAD: &[(&str, &str, &str)] = &[
    // nodes.count
    ("even count 4", "[nodes]\ncount = 4", "nodes.count"),
    ("even count 2", "[nodes]\ncount = 2", "nodes.count"),
    ("zero count", "[nodes]\ncount = 0", "nodes.count"),
    (
        "count 1 without allow_non_ha",
        "[nodes]\ncount = 1",
        "nodes.count",
    ),
    (
        "too many nodes (odd)",
        "[nodes]\ncount = 101",
        "nodes.count",
    ),
    (
        "too many nodes (even)",
        "[nodes]\ncount = 100",
        "nodes.count",
    ),
    (
        "allow_non_ha with count 3",
        "[nodes]\nallow_non_ha = true",
        "nodes.allow_non_ha",
    ),
    // name
    ("name with underscore", "name = \"rancher_prod\"", "name"),
    ("uppercase name", "name = \"Rancher\"", "name"),
    (
        "name too long",
        "name = \"rancher-management-server-1\"",
        "name",
    ),
    ("empty name", "name = \"\"", "name"),
    ("name starting with a digit", "name = \"1rancher\"", "name"),
    ("name ending with a dash", "name = \"rancher-\"", "name"),
    // region and zones
    ("empty region", "region = \"\"", "region"),
    ("region with spaces", "region = \"us east 1\"", "region"),
    (
        "duplicate zone",
        "zones = [\"us-east-1a\", \"us-east-1a\"]",
        "zones[1]",
    ),
    ("empty zone", "zones = [\"\", \"us-east-1b\"]", "zones[0]"),
    // nodes
    ("empty size", "[nodes]\nsize = \"\"", "nodes.size"),
    ("blank image", "[nodes]\nimage = \"  \"", "nodes.image"),
    (
        "empty ssh user",
        "[nodes]\nssh_user = \"\"",
        "nodes.ssh_user",
    ),
    (
        "ssh key that is not a key",
        "[nodes]\nssh_authorized_keys = [\"not-a-key\"]",
        "nodes.ssh_authorized_keys[0]",
    ),
    (
        "ssh key of two lines",
        "[nodes]\nssh_authorized_keys = [\"ssh-ed25519 AAAA a@b\\nssh-ed25519 BBBB c@d\"]",
        "nodes.ssh_authorized_keys[0]",
    ),
    (
        "ssh CIDR without prefix",
        "[nodes]\nssh_allowed_cidrs = [\"203.0.113.7\"]",
        "nodes.ssh_allowed_cidrs[0]",
    ),
    (
        "ssh CIDR with prefix 33",
        "[nodes]\nssh_allowed_cidrs = [\"203.0.113.0/24\", \"10.0.0.0/33\"]",
        "nodes.ssh_allowed_cidrs[1]",
    ),
    (
        "ssh CIDR that is a name",
        "[nodes]\nssh_allowed_cidrs = [\"office/24\"]",
        "nodes.ssh_allowed_cidrs[0]",
    ),
    ("disk too small", "[nodes]\ndisk_gib = 10", "nodes.disk_gib"),
    (
        "disk too large",
        "[nodes]\ndisk_gib = 20000",
        "nodes.disk_gib",
    ),
    // proxy
    (
        "proxy without scheme",
        "[proxy]\nhttp = \"proxy.corp.example:3128\"",
        "proxy.http",
    ),
    (
        "proxy IP without scheme",
        "[proxy]\nhttp = \"10.0.0.5:3128\"",
        "proxy.http",
    ),
    (
        "ftp proxy",
        "[proxy]\nhttp = \"ftp://proxy.corp.example:21\"",
        "proxy.http",
    ),
    (
        "proxy with a path",
        "[proxy]\nhttp = \"http://proxy.corp.example:3128/squid\"",
        "proxy.http",
    ),
    ("garbage proxy", "[proxy]\nhttp = \"http://\"", "proxy.http"),
    (
        "proxy with a space",
        "[proxy]\nhttp = \"http://proxy corp:3128\"",
        "proxy.http",
    ),
    (
        "bad https proxy",
        "[proxy]\nhttps = \"socks5://proxy.corp.example:1080\"",
        "proxy.https",
    ),
    (
        "no_proxy entry with commas",
        "[proxy]\nno_proxy = [\"a.example,b.example\"]",
        "proxy.no_proxy[0]",
    ),
    (
        "no_proxy entry with a space",
        "[proxy]\nno_proxy = [\".svc\", \"a.example b.example\"]",
        "proxy.no_proxy[1]",
    ),
    (
        "empty no_proxy entry",
        "[proxy]\nno_proxy = [\"\"]",
        "proxy.no_proxy[0]",
    ),
    (
        "no_proxy CIDR prefix 40",
        "[proxy]\nno_proxy = [\"10.0.0.0/8\", \"10.0.0.0/40\"]",
        "proxy.no_proxy[1]",
    ),
    (
        "no_proxy CIDR with a bad address",
        "[proxy]\nno_proxy = [\"10.0.300.0/24\"]",
        "proxy.no_proxy[0]",
    ),
    // load balancer
    (
        "l7 without certificate",
        "[load_balancer]\nmode = \"l7\"",
        "load_balancer.certificate",
    ),
    (
        "l7 with empty certificate",
        "[load_balancer]\nmode = \"l7\"\ncertificate = \" \"",
        "load_balancer.certificate",
    ),
    (
        "l4 with certificate",
        "[load_balancer]\ncertificate = \"arn:aws:acm:us-east-1:123:certificate/x\"",
        "load_balancer.certificate",
    ),
    (
        "health path without slash",
        "[load_balancer]\nhealth_check_path = \"healthz\"",
        "load_balancer.health_check_path",
    ),
    (
        "health path with a space",
        "[load_balancer]\nhealth_check_path = \"/health z\"",
        "load_balancer.health_check_path",
    ),
    // dns
    (
        "hostname not FQDN",
        "[dns]\nhostname = \"rancher\"",
        "dns.hostname",
    ),
    (
        "hostname outside zone",
        "[dns]\nhostname = \"rancher.example.org\"",
        "dns.hostname",
    ),
    (
        "hostname only sharing the zone's suffix",
        "[dns]\nhostname = \"rancher.notexample.com\"",
        "dns.hostname",
    ),
    (
        "hostname with underscore",
        "[dns]\nhostname = \"ran_cher.example.com\"",
        "dns.hostname",
    ),
    (
        "zone with a space",
        "[dns]\nzone = \"exa mple.com\"",
        "dns.zone",
    ),
    (
        "zone with an empty label",
        "[dns]\nzone = \"example..com\"",
        "dns.zone",
    ),
    (
        "zone label starting with a dash",
        "[dns]\nzone = \"-example.com\"",
        "dns.zone",
    ),
    ("TTL 0", "[dns]\nttl = 0", "dns.ttl"),
    ("TTL over a day", "[dns]\nttl = 86401", "dns.ttl"),
    // labels
    (
        "uppercase label key",
        "[labels]\nTeam = \"platform\"",
        "labels.Team",
    ),
    (
        "label key starting with a digit",
        "[labels]\n1team = \"platform\"",
        "labels.1team",
    ),
    (
        "label value with a space",
        "[labels]\nteam = \"Platform Team\"",
        "labels.team",
    ),
    (
        "label value too long",
        "[labels]\nowner = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
        "labels.owner",
    ),
    (
        "reserved triad-cluster label",
        "[labels]\ntriad-cluster = \"other\"",
        "labels.triad-cluster",
    ),
    (
        "reserved triad- prefix",
        "[labels]\ntriad-owner = \"me\"",
        "labels.triad-owner",
    ),
];

#[test]
fn every_bad_spec_names_its_field_and_a_fix() {
    assert!(BAD.len() >= 30);
    let mut failures = Vec::new();
    for (what, snippet, field) in BAD {
        let err = match spec_with(snippet).validate() {
            Ok(_) => {
                failures.push(format!("{what}: validated, but must fail on {field}"));
                continue;
            }
            Err(e) => e,
        };
        let Some(problems) = err.spec_problems() else {
            failures.push(format!("{what}: not an InvalidSpec error: {err}"));
            continue;
        };
        if !problems.names(field) {
            failures.push(format!("{what}: does not name `{field}`: {err}"));
            continue;
        }
        // One mistake, one field: no collateral problems elsewhere.
        if let Some(other) = problems.0.iter().find(|p| p.field != *field) {
            failures.push(format!("{what}: also names `{}`: {err}", other.field));
        }
        for p in problems.0.iter().filter(|p| p.field == *field) {
            if p.problem.trim().is_empty() || p.fix.trim().len() < 10 {
                failures.push(format!("{what}: problem or fix missing: {p:?}"));
            }
        }
        let text = err.to_string();
        if !text.contains(&format!("{field}: ")) || !text.contains("(fix: ") {
            failures.push(format!(
                "{what}: message lacks the field or the fix: {text}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        BAD.len(),
        failures.join("\n")
    );
}

/// Valid edge cases: each must pass validation as is.
const GOOD: &[(&str, &str)] = &[
    (
        "count 1 with allow_non_ha",
        "[nodes]\ncount = 1\nallow_non_ha = true",
    ),
    ("count 5", "[nodes]\ncount = 5"),
    ("count 99 (the maximum)", "[nodes]\ncount = 99"),
    (
        "name of 24 characters",
        "name = \"rancher-management-srv-1\"",
    ),
    ("no zones (every zone of the region)", "zones = []"),
    (
        "l7 with certificate",
        "[load_balancer]\nmode = \"l7\"\ncertificate = \"arn:aws:acm:us-east-1:123:certificate/x\"",
    ),
    ("internal scheme", "[load_balancer]\nscheme = \"internal\""),
    (
        "Traefik health path",
        "[load_balancer]\nhealth_check_path = \"/ping\"",
    ),
    (
        "hostname at the zone apex",
        "[dns]\nhostname = \"example.com\"",
    ),
    (
        "trailing dots",
        "[dns]\nzone = \"example.com.\"\nhostname = \"rancher.example.com.\"",
    ),
    (
        "uppercase hostname",
        "[dns]\nhostname = \"Rancher.Example.com\"",
    ),
    ("TTL 1", "[dns]\nttl = 1"),
    ("TTL of a day", "[dns]\nttl = 86400"),
    (
        "https proxy scheme",
        "[proxy]\nhttp = \"https://proxy.corp.example:3129\"",
    ),
    (
        "proxy with trailing slash",
        "[proxy]\nhttp = \"http://proxy.corp.example:3128/\"",
    ),
    (
        "proxy with user and password",
        "[proxy]\nhttp = \"http://ops:pw@proxy.corp.example:3128\"",
    ),
    (
        "IPv6 CIDRs",
        "[nodes]\nssh_allowed_cidrs = [\"2001:db8::/32\"]\n[proxy]\nno_proxy = [\"fd00::/8\"]",
    ),
    ("minimum disk", "[nodes]\ndisk_gib = 20"),
    (
        "ecdsa key",
        "[nodes]\nssh_authorized_keys = [\"ecdsa-sha2-nistp256 AAAAE2VjZHNh admin@example\"]",
    ),
    ("empty label value", "[labels]\ncost_center = \"\""),
    ("record choices", "[dns]\nrecord = \"cname\""),
];

#[test]
fn edge_cases_that_are_valid() {
    let mut failures = Vec::new();
    for (what, snippet) in GOOD {
        if let Err(e) = spec_with(snippet).validate() {
            failures.push(format!("{what}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "valid specs rejected:\n{}",
        failures.join("\n")
    );
}

#[test]
fn one_node_needs_allow_non_ha_and_allow_non_ha_needs_one_node() {
    let valid = spec_with("[nodes]\ncount = 1\nallow_non_ha = true")
        .validate()
        .expect("count 1 with allow_non_ha is valid");
    assert_eq!(valid.node_names(), vec!["rancher-1"]);

    let err = spec_with("[nodes]\ncount = 1").validate().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("allow_non_ha"),
        "the fix must mention allow_non_ha: {text}"
    );
}

#[test]
fn node_count_fixes_suggest_valid_counts() {
    let err = spec_with("[nodes]\ncount = 4").validate().unwrap_err();
    let p = &err.spec_problems().unwrap().0[0];
    assert!(p.fix.contains('3') && p.fix.contains('5'), "{p}");

    // Over the maximum: the fix must not suggest a count that is also too many.
    for count in [100, 101, 1000] {
        let err = spec_with(&format!("[nodes]\ncount = {count}"))
            .validate()
            .unwrap_err();
        let p = &err.spec_problems().unwrap().0[0];
        assert!(p.fix.contains("99"), "{p}");
        assert!(!p.fix.contains(&(count + 1).to_string()), "{p}");
    }
}

#[test]
fn a_spec_with_many_problems_reports_them_all() {
    let spec = spec_with(
        r#"
        name = "Bad_Name"
        region = ""
        zones = ["us-east-1a", "us-east-1a"]
        [nodes]
        count = 2
        disk_gib = 5
        ssh_allowed_cidrs = ["everyone"]
        [proxy]
        http = "ftp://proxy:21"
        no_proxy = ["a,b"]
        [load_balancer]
        mode = "l7"
        health_check_path = "healthz"
        [dns]
        hostname = "rancher.example.org"
        ttl = 0
        [labels]
        triad-role = "x"
        "#,
    );
    let err = spec.validate().unwrap_err();
    let problems = err.spec_problems().expect("InvalidSpec");
    let mut fields: Vec<&str> = problems.0.iter().map(|p| p.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        vec![
            "dns.hostname",
            "dns.ttl",
            "labels.triad-role",
            "load_balancer.certificate",
            "load_balancer.health_check_path",
            "name",
            "nodes.count",
            "nodes.disk_gib",
            "nodes.ssh_allowed_cidrs[0]",
            "proxy.http",
            "proxy.no_proxy[0]",
            "region",
            "zones[1]",
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(text.starts_with("13 problems in the spec"), "{text}");
    assert_eq!(text.matches("(fix: ").count(), 13, "{text}");
}

#[test]
fn defaults_fill_what_the_spec_leaves_out() {
    let spec = ClusterSpec::from_toml(
        r#"
        name = "rancher"
        region = "eu-west-1"
        [dns]
        zone = "example.com"
        hostname = "rancher.example.com"
        "#,
    )
    .unwrap();
    let valid = spec.validate().unwrap();
    assert_eq!(valid.nodes.count, 3);
    assert!(!valid.nodes.allow_non_ha);
    assert_eq!(valid.nodes.ssh_user, "ubuntu");
    assert_eq!(valid.nodes.size, None);
    assert_eq!(valid.nodes.disk_gib, None);
    assert!(valid.zones.is_empty());
    assert!(valid.proxy.is_none());
    assert_eq!(valid.load_balancer.mode, LbMode::L4);
    assert_eq!(valid.load_balancer.scheme, LbScheme::InternetFacing);
    assert_eq!(valid.health_check_path(), "/healthz");
    assert_eq!(valid.dns.record, RecordChoice::Auto);
    assert_eq!(valid.dns.ttl, 60);
    assert_eq!(
        valid.node_names(),
        vec!["rancher-1", "rancher-2", "rancher-3"]
    );
}

#[test]
fn valid_spec_normalises_the_hostname_and_zone() {
    let valid = spec_with("[dns]\nzone = \"Example.com.\"\nhostname = \"Rancher.Example.com.\"")
        .validate()
        .unwrap();
    assert_eq!(valid.fqdn(), "rancher.example.com");
    assert_eq!(valid.cluster().dns_zone.as_deref(), Some("example.com"));
}

#[test]
fn validation_errors_are_not_retryable() {
    let err = spec_with("[nodes]\ncount = 0").validate().unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)));
    assert!(!err.is_retryable());
    assert_eq!(err.kind(), None);
}
