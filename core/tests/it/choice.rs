//! Provider choice: the sections present pick the providers, `[providers]`
//! overrides, and every impossible mix is a spec problem naming the field.

use triad_core::choice::{ProviderChoice, PROVIDERS};
use triad_core::Error;

use crate::common::spec_with;

/// (what is wrong, TOML snippet merged on the valid base, the field it must name)
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "vSphere nodes without a balancer section",
        "[vsphere]\n[rfc2136]",
        "providers.load_balancer",
    ),
    (
        "vSphere nodes without a DNS section",
        "[vsphere]\n[nginx]",
        "providers.dns",
    ),
    (
        "two node sections and no [providers] nodes",
        "[ec2]\n[gce]",
        "providers.nodes",
    ),
    (
        "a Route 53 alias behind an NGINX balancer",
        "[ec2]\n[nginx]\n[dns]\nrecord = \"alias\"",
        "dns.record",
    ),
    (
        "an alias in a DNS without aliases",
        "[gce]\n[dns]\nrecord = \"alias\"",
        "dns.record",
    ),
    (
        "an alias in RFC 2136",
        "[ec2]\n[rfc2136]\n[dns]\nrecord = \"alias\"",
        "dns.record",
    ),
    (
        "a named provider whose section is missing",
        "[ec2]\n[providers]\ndns = \"gce\"",
        "providers.dns",
    ),
    (
        "an unknown provider name",
        "[ec2]\n[providers]\nload_balancer = \"haproxy\"",
        "providers.load_balancer",
    ),
    (
        "nginx as the node provider",
        "[nginx]\n[rfc2136]\n[providers]\nnodes = \"nginx\"",
        "providers.nodes",
    ),
    (
        "RFC 2136 as the balancer",
        "[ec2]\n[rfc2136]\n[providers]\nload_balancer = \"rfc2136\"",
        "providers.load_balancer",
    ),
    (
        "vSphere as the DNS provider",
        "[vsphere]\n[nginx]\n[providers]\ndns = \"vsphere\"",
        "providers.dns",
    ),
    (
        "an EC2 balancer in front of GCE nodes",
        "[gce]\n[ec2]\n[providers]\nnodes = \"gce\"\nload_balancer = \"ec2\"",
        "providers.load_balancer",
    ),
    (
        "a GCE balancer in front of vSphere nodes",
        "[vsphere]\n[gce]\n[rfc2136]\n[providers]\nnodes = \"vsphere\"\nload_balancer = \"gce\"",
        "providers.load_balancer",
    ),
    (
        "a section that makes nothing",
        "[ec2]\n[vsphere]\n[providers]\nnodes = \"ec2\"",
        "vsphere",
    ),
    (
        "[providers] nodes names a missing section",
        "[providers]\nnodes = \"sim\"",
        "providers.nodes",
    ),
    (
        "an unknown field in [providers]",
        "[sim]\n[providers]\nballancer = \"sim\"",
        "",
    ),
];

#[test]
fn impossible_mixes_are_refused_naming_the_field() {
    for (what, snippet, field) in REFUSED {
        let spec = match triad_core::ClusterSpec::from_toml(&crate::common::merged(snippet)) {
            Ok(s) => s,
            Err(Error::Parse { message, .. }) if field.is_empty() => {
                assert!(message.contains("ballancer"), "{what}: {message}");
                continue;
            }
            Err(e) => panic!("{what}: does not parse: {e}"),
        };
        let err = spec.validate().expect_err(what);
        let problems = err.spec_problems().expect("a spec problem");
        assert!(problems.names(field), "{what}: expected {field}, got {err}");
        for p in &problems.0 {
            assert!(!p.fix.is_empty(), "{what}: no fix in {p}");
        }
    }
}

#[test]
fn the_mix_is_reported_with_every_other_problem() {
    let err = spec_with("[nodes]\ncount = 2\n[vsphere]\n[rfc2136]")
        .validate()
        .unwrap_err();
    let p = err.spec_problems().unwrap();
    assert!(
        p.names("nodes.count") && p.names("providers.load_balancer"),
        "{err}"
    );
}

fn chosen(snippet: &str) -> ProviderChoice {
    spec_with(snippet)
        .validate()
        .unwrap_or_else(|e| panic!("{snippet}: {e}"))
        .providers()
        .unwrap_or_else(|e| panic!("{snippet}: {e}"))
}

fn choice(nodes: &'static str, lb: &'static str, dns: &'static str) -> ProviderChoice {
    ProviderChoice {
        nodes,
        load_balancer: lb,
        dns,
    }
}

#[test]
fn sections_choose_and_providers_override() {
    for (snippet, want) in [
        ("[sim]", choice("sim", "sim", "sim")),
        ("[ec2]", choice("ec2", "ec2", "ec2")),
        ("[gce]\n[nginx]", choice("gce", "nginx", "gce")),
        ("[ec2]\n[rfc2136]", choice("ec2", "ec2", "rfc2136")),
        (
            "[vsphere]\n[nginx]\n[rfc2136]",
            choice("vsphere", "nginx", "rfc2136"),
        ),
        (
            "[vsphere]\n[nginx]\n[gce]\n[providers]\nnodes = \"vsphere\"\ndns = \"gce\"",
            choice("vsphere", "nginx", "gce"),
        ),
        (
            "[ec2]\n[dns]\nrecord = \"alias\"",
            choice("ec2", "ec2", "ec2"),
        ),
        (
            "[sim]\n[providers]\nnodes = \"sim\"\nload_balancer = \"sim\"\ndns = \"sim\"",
            choice("sim", "sim", "sim"),
        ),
    ] {
        assert_eq!(chosen(snippet), want, "{snippet}");
    }
}

#[test]
fn a_spec_without_provider_sections_is_valid_but_names_no_provider() {
    let spec = spec_with("").validate().unwrap();
    let err = spec.providers().unwrap_err();
    let p = err.spec_problems().unwrap();
    assert!(p.names("providers.nodes"), "{err}");
    assert!(p.0[0].fix.contains("[vsphere]"), "{err}");
}

#[test]
fn every_provider_has_a_role_and_a_section() {
    for p in PROVIDERS {
        assert!(p.nodes || p.load_balancer || p.dns, "{}", p.name);
        let spec = spec_with(&format!("[{}]", p.name));
        assert!(
            triad_core::choice::section(&spec, p.name).is_some(),
            "{}",
            p.name
        );
    }
}
