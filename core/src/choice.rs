//! Which provider makes the nodes, the balancer and the DNS record, chosen by the
//! spec's sections so that any mix works without code.
//!
//! - **Nodes**: the one node-capable section present (`[sim]`, `[ec2]`, `[gce]`,
//!   `[vsphere]`, `[qemu]`).
//! - **Balancer**: `[nginx]` when present, else the node cloud's own.
//! - **DNS**: `[rfc2136]` when present, else the node cloud's own.
//! - `[providers] nodes / load_balancer / dns = "…"` overrides each choice.
//!
//! Impossible mixes — vSphere nodes without a balancer section, two node sections
//! and no `[providers] nodes`, a Route 53 alias behind a non-AWS balancer, a named
//! provider without its section — are [`SpecProblem`]s that
//! [`ClusterSpec::validate`] reports with every other problem, before any API call.
//!
//! ```
//! use triad_core::spec::ClusterSpec;
//!
//! let spec = ClusterSpec::from_toml(r#"
//!     name = "rancher"
//!     region = "dc1"
//!     [dns]
//!     zone = "example.com"
//!     hostname = "rancher.example.com"
//!     [vsphere]
//!     [nginx]
//!     [rfc2136]
//! "#).unwrap().validate().unwrap();
//! let choice = spec.providers().unwrap();
//! assert_eq!((choice.nodes, choice.load_balancer, choice.dns), ("vsphere", "nginx", "rfc2136"));
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, SpecProblem, SpecProblems};
use crate::spec::{ClusterSpec, ProviderSection, RecordChoice};

/// What one provider can be. The single list of providers the spec can name: a new
/// provider is one row here and one section in [`ClusterSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderInfo {
    /// Its name, which is also its section's name (`[ec2]`).
    pub name: &'static str,
    /// Makes nodes.
    pub nodes: bool,
    /// Makes a load balancer.
    pub load_balancer: bool,
    /// Writes DNS records.
    pub dns: bool,
    /// Its balancer can only target its own nodes (a cloud's managed balancer).
    pub balancer_needs_own_nodes: bool,
    /// Its DNS has alias records (to a balancer of the same cloud).
    pub dns_alias: bool,
}

/// Every provider a spec can name.
pub const PROVIDERS: &[ProviderInfo] = &[
    cloud("sim", true),
    cloud("ec2", true),
    cloud("gce", false),
    nodes_only("vsphere"),
    nodes_only("qemu"),
    ProviderInfo {
        name: "nginx",
        nodes: false,
        load_balancer: true,
        dns: false,
        balancer_needs_own_nodes: false,
        dns_alias: false,
    },
    ProviderInfo {
        name: "rfc2136",
        nodes: false,
        load_balancer: false,
        dns: true,
        balancer_needs_own_nodes: false,
        dns_alias: false,
    },
];

/// Nodes only: no balancer or DNS of its own (vSphere, local QEMU VMs).
const fn nodes_only(name: &'static str) -> ProviderInfo {
    ProviderInfo {
        name,
        nodes: true,
        load_balancer: false,
        dns: false,
        balancer_needs_own_nodes: false,
        dns_alias: false,
    }
}

/// A cloud with nodes, a managed balancer (for its own instances) and DNS.
const fn cloud(name: &'static str, dns_alias: bool) -> ProviderInfo {
    ProviderInfo {
        name,
        nodes: true,
        load_balancer: true,
        dns: true,
        balancer_needs_own_nodes: true,
        dns_alias,
    }
}

/// The provider called `name`, if triad has one.
pub fn info(name: &str) -> Option<&'static ProviderInfo> {
    PROVIDERS.iter().find(|p| p.name == name)
}

/// The spec's section of provider `name`.
pub fn section<'a>(spec: &'a ClusterSpec, name: &str) -> Option<&'a ProviderSection> {
    match name {
        "sim" => spec.sim.as_ref(),
        "ec2" => spec.ec2.as_ref(),
        "gce" => spec.gce.as_ref(),
        "vsphere" => spec.vsphere.as_ref(),
        "qemu" => spec.qemu.as_ref(),
        "nginx" => spec.nginx.as_ref(),
        "rfc2136" => spec.rfc2136.as_ref(),
        _ => None,
    }
}

/// `[providers]`: explicit choices that override the ones the sections imply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersSpec {
    /// The node provider (`sim`, `ec2`, `gce`, `vsphere`, `qemu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
    /// The balancer provider (`sim`, `ec2`, `gce`, `nginx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<String>,
    /// The DNS provider (`sim`, `ec2`, `gce`, `rfc2136`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
}

/// The three providers a spec chose (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProviderChoice {
    /// Makes the nodes.
    pub nodes: &'static str,
    /// Makes the load balancer.
    pub load_balancer: &'static str,
    /// Writes the DNS record.
    pub dns: &'static str,
}

impl fmt::Display for ProviderChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nodes: {}, load balancer: {}, DNS: {}",
            self.nodes, self.load_balancer, self.dns
        )
    }
}

#[derive(Clone, Copy)]
enum Role {
    Nodes,
    LoadBalancer,
    Dns,
}

impl Role {
    fn field(self) -> &'static str {
        match self {
            Role::Nodes => "providers.nodes",
            Role::LoadBalancer => "providers.load_balancer",
            Role::Dns => "providers.dns",
        }
    }
    fn what(self) -> &'static str {
        match self {
            Role::Nodes => "node",
            Role::LoadBalancer => "load balancer",
            Role::Dns => "DNS",
        }
    }
    fn can(self, p: &ProviderInfo) -> bool {
        match self {
            Role::Nodes => p.nodes,
            Role::LoadBalancer => p.load_balancer,
            Role::Dns => p.dns,
        }
    }
    fn capable(self) -> String {
        PROVIDERS
            .iter()
            .filter(|p| self.can(p))
            .map(|p| format!("`{}`", p.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn named(self, spec: &ClusterSpec) -> Option<&str> {
        let p = spec.providers.as_ref()?;
        match self {
            Role::Nodes => p.nodes.as_deref(),
            Role::LoadBalancer => p.load_balancer.as_deref(),
            Role::Dns => p.dns.as_deref(),
        }
    }
}

fn problem(
    field: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> SpecProblem {
    SpecProblem {
        field: field.into(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// A provider named in `[providers]` for `role`: known, able, with its section.
fn named(
    spec: &ClusterSpec,
    role: Role,
    out: &mut Vec<SpecProblem>,
) -> Option<&'static ProviderInfo> {
    let name = role.named(spec)?;
    let Some(p) = info(name) else {
        out.push(problem(
            role.field(),
            format!("`{name}` is not a provider triad has"),
            format!("use one of {}", role.capable()),
        ));
        return None;
    };
    if !role.can(p) {
        out.push(problem(
            role.field(),
            format!("`{name}` cannot be the {} provider", role.what()),
            format!("use one of {}", role.capable()),
        ));
        return None;
    }
    if section(spec, name).is_none() {
        out.push(problem(
            role.field(),
            format!("is `{name}`, but the spec has no [{name}] section"),
            format!("add a [{name}] section with its settings (see docs/spec.md), or name another provider"),
        ));
        return None;
    }
    Some(p)
}

/// The choice for every part, or every problem of the mix. `Ok(None)` when the spec
/// names no node provider at all (no node section, no `[providers] nodes`): an
/// embedder then chooses providers in code.
fn resolve(spec: &ClusterSpec) -> Result<Option<ProviderChoice>, Vec<SpecProblem>> {
    let mut out = Vec::new();
    let present: Vec<&'static ProviderInfo> = PROVIDERS
        .iter()
        .filter(|p| section(spec, p.name).is_some())
        .collect();
    let named_nodes = named(spec, Role::Nodes, &mut out);
    let named_lb = named(spec, Role::LoadBalancer, &mut out);
    let named_dns = named(spec, Role::Dns, &mut out);

    let node_sections: Vec<&ProviderInfo> = present.iter().copied().filter(|p| p.nodes).collect();
    let nodes = match (Role::Nodes.named(spec), node_sections.as_slice()) {
        (Some(_), _) => named_nodes,
        (None, []) => None,
        (None, [one]) => Some(*one),
        (None, many) => {
            let names: Vec<String> = many.iter().map(|p| format!("[{}]", p.name)).collect();
            out.push(problem(
                "providers.nodes",
                format!(
                    "is not set, and the spec has {} node-capable sections: {}",
                    many.len(),
                    names.join(", ")
                ),
                "set [providers] nodes = \"…\" to the one that makes the nodes (the others can still be the balancer or DNS)",
            ));
            None
        }
    };
    let pick = |role: Role, named: Option<&'static ProviderInfo>, dedicated: &str| {
        if role.named(spec).is_some() {
            return named;
        }
        if section(spec, dedicated).is_some() {
            return info(dedicated);
        }
        nodes.filter(|n| role.can(n))
    };
    let lb = pick(Role::LoadBalancer, named_lb, "nginx");
    let dns = pick(Role::Dns, named_dns, "rfc2136");

    let Some(nodes) = nodes else {
        if Role::Nodes.named(spec).is_none() && node_sections.is_empty() && out.is_empty() {
            return Ok(None);
        }
        return Err(out);
    };
    if lb.is_none() && Role::LoadBalancer.named(spec).is_none() {
        out.push(problem(
            "providers.load_balancer",
            format!("is not set: `{}` has no load balancer of its own and the spec has no [nginx] section", nodes.name),
            "add an [nginx] section (see docs/nginx.md), or set [providers] load_balancer",
        ));
    }
    if dns.is_none() && Role::Dns.named(spec).is_none() {
        out.push(problem(
            "providers.dns",
            format!("is not set: `{}` has no DNS of its own and the spec has no [rfc2136] section", nodes.name),
            "add an [rfc2136] section (see docs/rfc2136.md), or set [providers] dns to a cloud DNS whose section is present",
        ));
    }
    if let Some(lb) = lb {
        if lb.balancer_needs_own_nodes && lb.name != nodes.name {
            out.push(problem(
                "providers.load_balancer",
                format!(
                    "is `{}`, whose balancer only targets `{}` instances, but the nodes come from `{}`",
                    lb.name, lb.name, nodes.name
                ),
                "use [nginx] for the balancer, or make the nodes on the same cloud",
            ));
        }
    }
    if spec.dns.record == RecordChoice::Alias {
        match (lb, dns) {
            (Some(lb), Some(dns)) if dns.dns_alias && lb.name == dns.name => {}
            (_, Some(dns)) if !dns.dns_alias => out.push(problem(
                "dns.record",
                format!("is `alias`, which the `{}` DNS provider does not have", dns.name),
                "use `auto` or `cname` (an alias is a Route 53 record to an AWS balancer)",
            )),
            (Some(lb), Some(dns)) => out.push(problem(
                "dns.record",
                format!(
                    "is `alias`, but an alias in `{}` can only point at a `{}` balancer, and the balancer is `{}`",
                    dns.name, dns.name, lb.name
                ),
                format!("use `auto` or `cname`, or let `{}` make the balancer too", dns.name),
            )),
            _ => {}
        }
    }
    // A section nothing uses is a mix the user did not mean.
    for p in &present {
        let used = [Some(nodes), lb, dns]
            .iter()
            .flatten()
            .any(|u| u.name == p.name);
        if !used {
            out.push(problem(
                p.name,
                format!(
                    "is present but makes nothing ({})",
                    describe(nodes, lb, dns)
                ),
                format!("remove [{}], or name it in [providers]", p.name),
            ));
        }
    }
    match (lb, dns) {
        (Some(lb), Some(dns)) if out.is_empty() => Ok(Some(ProviderChoice {
            nodes: nodes.name,
            load_balancer: lb.name,
            dns: dns.name,
        })),
        _ => Err(out),
    }
}

fn describe(nodes: &ProviderInfo, lb: Option<&ProviderInfo>, dns: Option<&ProviderInfo>) -> String {
    let name = |p: Option<&ProviderInfo>| p.map_or("none", |p| p.name);
    format!(
        "nodes: {}, load balancer: {}, DNS: {}",
        nodes.name,
        name(lb),
        name(dns)
    )
}

/// Every problem of the provider mix, for [`ClusterSpec::validate`].
pub(crate) fn problems(spec: &ClusterSpec) -> Vec<SpecProblem> {
    resolve(spec).err().unwrap_or_default()
}

/// The providers a (valid) spec chose; an error naming `providers.nodes` when it
/// names no node provider at all.
pub(crate) fn choose(spec: &ClusterSpec) -> Result<ProviderChoice, Error> {
    match resolve(spec) {
        Ok(Some(choice)) => Ok(choice),
        Ok(None) => Err(Error::invalid(
            "providers.nodes",
            "is not set and the spec has no node provider section",
            format!(
                "add the section of the provider that makes the nodes: {}",
                PROVIDERS
                    .iter()
                    .filter(|p| p.nodes)
                    .map(|p| format!("[{}]", p.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Err(p) => Err(Error::InvalidSpec(SpecProblems(p))),
    }
}
