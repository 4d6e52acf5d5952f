//! Spec validation: every rule, every problem at once.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::error::SpecProblem;
use crate::labels;
use crate::secret::{ProxyUrl, Secret, REDACTED};
use crate::spec::{
    ClusterSpec, Distribution, LbMode, TlsSource, MAX_NAME_LEN, MAX_NODE_COUNT, MAX_TTL,
};

mod external;
mod kubernetes;
mod network;
mod tls;

pub(crate) use external::external;
use kubernetes::kubernetes;
pub(crate) use kubernetes::learned_network_problems;
use network::cidr_network;
use network::proxy;
pub(crate) use network::{cidrs_overlap, no_proxy_entry, parse_cidr};
use tls::tls;

pub(super) struct Problems(pub(super) Vec<SpecProblem>);

impl Problems {
    pub(super) fn add(
        &mut self,
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(SpecProblem {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }
}

/// Every problem in `spec`; empty when it is valid.
pub(crate) fn problems(spec: &ClusterSpec) -> Vec<SpecProblem> {
    let mut p = Problems(Vec::new());
    name(&mut p, &spec.name);
    region(&mut p, spec);
    nodes(&mut p, spec);
    proxy(&mut p, spec);
    load_balancer(&mut p, spec);
    dns(&mut p, spec);
    kubernetes(&mut p, spec);
    tls(&mut p, spec);
    extra_labels(&mut p, spec);
    p.0.extend(crate::choice::problems(spec));
    p.0
}

fn name(p: &mut Problems, name: &str) {
    const FIX: &str =
        "use lowercase letters, digits and `-`, starting with a letter, e.g. `rancher`";
    if name.is_empty() {
        p.add("name", "is empty", FIX);
        return;
    }
    if name.len() > MAX_NAME_LEN {
        p.add(
            "name",
            format!("`{name}` is {} characters long; cloud resource names derived from it would be too long", name.len()),
            format!("use at most {MAX_NAME_LEN} characters"),
        );
    }
    if !is_dns_label(name) {
        p.add("name", format!("`{name}` is not a DNS label"), FIX);
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn region(p: &mut Problems, spec: &ClusterSpec) {
    if spec.region.trim().is_empty() {
        p.add(
            "region",
            "is empty",
            "name the region (or data centre) the nodes run in, e.g. `us-east-1`",
        );
    } else if spec.region.chars().any(char::is_whitespace) {
        p.add(
            "region",
            format!("`{}` contains white space", spec.region),
            "give the cloud's region id, e.g. `us-east-1`",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, z) in spec.zones.iter().enumerate() {
        if z.trim().is_empty() {
            p.add(
                format!("zones[{i}]"),
                "is empty",
                "remove it or name a zone of the region",
            );
        } else if !seen.insert(z.as_str()) {
            p.add(
                format!("zones[{i}]"),
                format!("`{z}` is listed twice"),
                "list each zone once; nodes are spread over the distinct zones",
            );
        }
    }
}

fn nodes(p: &mut Problems, spec: &ClusterSpec) {
    let n = &spec.nodes;
    match n.count {
        0 => p.add(
            "nodes.count",
            "is 0",
            "use an odd count, 3 by default: etcd runs on every node and needs a majority to elect a leader",
        ),
        1 if !n.allow_non_ha => p.add(
            "nodes.count",
            "is 1, which is not highly available: losing the node loses Rancher",
            "use 3 (etcd keeps a majority when one node fails), or set nodes.allow_non_ha = true for a test install",
        ),
        // Before the even check, so the fix never suggests a count over the maximum.
        c if c > MAX_NODE_COUNT => p.add(
            "nodes.count",
            format!("is {c}, more than the maximum of {MAX_NODE_COUNT}"),
            format!("use an odd count up to {MAX_NODE_COUNT}"),
        ),
        c if c % 2 == 0 => p.add(
            "nodes.count",
            format!("is {c}, an even number: etcd needs a majority, so {c} nodes tolerate no more failures than {}", c - 1),
            if c == 2 {
                "use 3 (or 1 with nodes.allow_non_ha = true for a test install)".to_owned()
            } else {
                format!("use {} or {}", c - 1, c + 1)
            },
        ),
        _ => {}
    }
    if n.allow_non_ha && n.count > 1 {
        p.add(
            "nodes.allow_non_ha",
            format!("is true but nodes.count is {}", n.count),
            "remove allow_non_ha; it only permits count = 1",
        );
    }
    for (field, v) in [("nodes.size", &n.size), ("nodes.image", &n.image)] {
        if let Some(v) = v {
            if v.trim().is_empty() {
                p.add(
                    field,
                    "is empty",
                    "remove it to use the provider's default, or give a value",
                );
            }
        }
    }
    if n.ssh_user.trim().is_empty() || n.ssh_user.chars().any(|c| c.is_whitespace() || c == ':') {
        p.add(
            "nodes.ssh_user",
            format!("`{}` is not a user name", n.ssh_user),
            "give the image's login user, e.g. `ubuntu`",
        );
    }
    for (i, k) in n.ssh_authorized_keys.iter().enumerate() {
        let ok = k.split_whitespace().count() >= 2
            && (k.starts_with("ssh-") || k.starts_with("ecdsa-") || k.starts_with("sk-"));
        if !ok || k.contains('\n') {
            p.add(
                format!("nodes.ssh_authorized_keys[{i}]"),
                "is not an OpenSSH public key line",
                "paste one line of a .pub file, e.g. `ssh-ed25519 AAAA… admin@example`",
            );
        }
    }
    for (i, c) in n.ssh_allowed_cidrs.iter().enumerate() {
        if let Err(e) = parse_cidr(c) {
            p.add(
                format!("nodes.ssh_allowed_cidrs[{i}]"),
                e,
                "write a CIDR such as `203.0.113.0/24`",
            );
        }
    }
    if let Some(d) = n.disk_gib {
        if !(20..=16_384).contains(&d) {
            p.add(
                "nodes.disk_gib",
                format!("is {d}"),
                "use 20..=16384 GiB; Rancher nodes want at least 20",
            );
        }
    }
}

fn load_balancer(p: &mut Problems, spec: &ClusterSpec) {
    let lb = &spec.load_balancer;
    match (&lb.mode, &lb.ssl_policy) {
        (_, Some(sp)) if sp.trim().is_empty() => p.add(
            "load_balancer.ssl_policy",
            "is empty",
            "name a TLS policy, or leave the field out for triad's TLS 1.2+ default",
        ),
        (LbMode::L4, Some(_)) => p.add(
            "load_balancer.ssl_policy",
            "is set but mode is l4, which passes TLS through to the nodes",
            "leave ssl_policy out, or use mode = \"l7\"",
        ),
        _ => {}
    }
    match (&lb.mode, &lb.certificate) {
        (LbMode::L7, None) => p.add(
            "load_balancer.certificate",
            "is missing; l7 terminates TLS at the balancer and needs a certificate",
            "give the certificate reference (an ACM ARN on EC2, an SSL certificate name on GCE, a PEM path for NGINX), or use mode = \"l4\"",
        ),
        (LbMode::L7, Some(c)) if c.trim().is_empty() => p.add("load_balancer.certificate", "is empty", "give the certificate reference"),
        (LbMode::L4, Some(_)) => p.add(
            "load_balancer.certificate",
            "is set but mode is l4, which passes TLS through to the nodes",
            "remove the certificate, or set mode = \"l7\" to terminate TLS at the balancer",
        ),
        _ => {}
    }
    if let Some(path) = &lb.health_check_path {
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            p.add(
                "load_balancer.health_check_path",
                format!("`{path}` is not an HTTP path"),
                "use `/healthz` (NGINX ingress) or `/ping` (Traefik), or remove it to follow kubernetes.ingress",
            );
        }
    }
}

fn dns(p: &mut Problems, spec: &ClusterSpec) {
    let d = &spec.dns;
    let zone = d.zone.trim_end_matches('.').to_ascii_lowercase();
    let host = d.hostname.trim_end_matches('.').to_ascii_lowercase();
    let zone_ok = is_fqdn(&zone);
    if !zone_ok {
        p.add(
            "dns.zone",
            format!("`{}` is not a DNS domain name", d.zone),
            "give the zone the record goes in, e.g. `example.com`",
        );
    }
    if !is_fqdn(&host) || !host.contains('.') {
        p.add(
            "dns.hostname",
            format!("`{}` is not a fully qualified domain name", d.hostname),
            "give the name users type to reach Rancher, e.g. `rancher.example.com`; it cannot change after Rancher is installed",
        );
    } else if zone_ok && host != zone && !host.ends_with(&format!(".{zone}")) {
        p.add(
            "dns.hostname",
            format!("`{host}` is not inside the zone `{zone}`"),
            format!(
                "use a name ending in `.{zone}`, or set dns.zone to the zone that holds `{host}`"
            ),
        );
    }
    if d.ttl == 0 || d.ttl > MAX_TTL {
        p.add(
            "dns.ttl",
            format!("is {}", d.ttl),
            format!("use 1..={MAX_TTL} seconds; 60 lets a replaced balancer take over quickly"),
        );
    }
}

/// A domain name of letters, digits and `-` in dot-separated labels of 1..=63
/// characters, 253 at most in all.
fn is_fqdn(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn extra_labels(p: &mut Problems, spec: &ClusterSpec) {
    for (k, v) in &spec.labels {
        if k.starts_with("triad-") {
            p.add(
                format!("labels.{k}"),
                "uses the `triad-` prefix reserved for ownership labels",
                "choose another key",
            );
            continue;
        }
        if let Some(e) = labels::check(k, true) {
            p.add(format!("labels.{k}"), format!("key {e}"), "keys must be valid on AWS tags, GCE labels and vSphere attributes: lowercase letters, digits, `-`, `_`, at most 63");
        }
        if let Some(e) = labels::check(v, false) {
            p.add(
                format!("labels.{k}"),
                format!("value `{v}` {e}"),
                "values must be lowercase letters, digits, `-`, `_`, at most 63",
            );
        }
    }
}
