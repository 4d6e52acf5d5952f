//! How a [`Plan`] reads: Terraform-like lines, one per change.

use std::fmt;

use crate::spec::LbMode;

use super::plan::*;

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spec = &self.spec;
        writeln!(
            f,
            "Plan for cluster `{}` in {} (zones: {})",
            self.cluster.name,
            self.cluster.region,
            self.zones.join(", ")
        )?;
        let (mut add, mut change, mut del) = (0, 0, 0);
        for a in &self.nodes {
            match a {
                NodeAction::Create { name, zone } => {
                    add += 1;
                    writeln!(f, "  + node {name} in {zone}")?
                }
                NodeAction::Keep { node } => {
                    writeln!(f, "    node {} ({}, {})", node.name, node.id, node.zone)?
                }
                NodeAction::Wait { node } => {
                    change += 1;
                    writeln!(
                        f,
                        "  ~ node {} ({}): wait until running",
                        node.name, node.id
                    )?
                }
                NodeAction::Update { node, changes } => {
                    change += 1;
                    for c in changes {
                        writeln!(f, "  ~ node {}: {c}", node.name)?
                    }
                }
                NodeAction::Replace {
                    node,
                    name,
                    zone,
                    changes,
                } => {
                    change += 1;
                    writeln!(
                        f,
                        "  -/+ node {} ({}) → {name} in {zone} (rolling replace)",
                        node.name, node.id
                    )?;
                    for c in changes {
                        writeln!(f, "  ~ node {}: {c}", node.name)?
                    }
                }
                NodeAction::Delete { node, reason } => {
                    del += 1;
                    writeln!(f, "  - node {} ({}): {reason}", node.name, node.id)?
                }
            }
        }
        let ports = spec.registration_ports();
        let lb_desc = format!(
            "{} {}, {}{}",
            spec.load_balancer.mode,
            spec.load_balancer.scheme,
            match spec.load_balancer.mode {
                LbMode::L4 => "TCP 80 and TCP 443 passed through to the nodes",
                LbMode::L7 => "HTTPS 443 terminated here, HTTP 80 redirected",
            },
            if ports.is_empty() {
                String::new()
            } else {
                let p: Vec<String> = ports.iter().map(|p| format!("TCP {p}")).collect();
                format!(
                    "; {} passed through for Kubernetes registration",
                    p.join(" and ")
                )
            }
        );
        match &self.load_balancer {
            LbAction::Create { name } => {
                add += 1;
                writeln!(f, "  + load balancer {name} ({lb_desc})")?
            }
            LbAction::Keep { lb } => writeln!(f, "    load balancer {} ({})", lb.name, lb.id)?,
            LbAction::Complete { lb } => {
                change += 1;
                writeln!(
                    f,
                    "  ~ load balancer {}: complete and wait until active",
                    lb.name
                )?
            }
            LbAction::Update { lb, changes } => {
                change += 1;
                for c in changes {
                    writeln!(f, "  ~ load balancer {}: {c}", lb.name)?
                }
            }
            LbAction::Replace {
                lb,
                name,
                make_first,
                reason,
                reinstall_rancher,
            } => {
                change += 1;
                writeln!(
                    f,
                    "  -/+ load balancer {} ({reason}) → {name} ({lb_desc})",
                    lb.name
                )?;
                if *make_first {
                    writeln!(
                        f,
                        "      {name} is made and given the nodes, DNS is switched to it, \
                         and only then is {} deleted: there is always a balancer",
                        lb.name
                    )?;
                } else {
                    writeln!(
                        f,
                        "      the old balancer is deleted before the new one is made: \
                         {} does not answer until the new one is active and DNS points at it",
                        spec.fqdn()
                    )?;
                }
                if *reinstall_rancher {
                    writeln!(
                        f,
                        "      Rancher must be reinstalled: {}",
                        match spec.load_balancer.mode {
                            LbMode::L7 => "TLS now ends at the balancer, so install it with `--set tls=external`",
                            LbMode::L4 => "TLS now ends at the ingress, so install it without `tls=external`",
                        }
                    )?;
                }
            }
        }
        match &self.targets {
            TargetsAction::Keep => writeln!(f, "    targets: every node")?,
            TargetsAction::Converge { add: a, remove } => {
                change += 1;
                let mut parts = Vec::new();
                if !a.is_empty() {
                    parts.push(format!("+ {}", a.join(", ")));
                }
                if !remove.is_empty() {
                    parts.push(format!("- {}", remove.join(", ")));
                }
                if parts.is_empty() {
                    parts.push("every node, once running".into());
                }
                writeln!(f, "  ~ targets: {}", parts.join("; "))?
            }
        }
        match &self.dns {
            DnsAction::Keep { record } => writeln!(
                f,
                "    DNS {} {} → {}",
                record.kind, record.fqdn, record.target
            )?,
            DnsAction::Upsert { fqdn, current } => match current {
                None => {
                    add += 1;
                    writeln!(f, "  + DNS {fqdn} → the balancer's endpoint")?
                }
                Some(r) => {
                    change += 1;
                    writeln!(
                        f,
                        "  ~ DNS {} {fqdn} → the balancer's endpoint (now {})",
                        r.kind, r.target
                    )?;
                    if let Some(ttl) = r.ttl.filter(|t| *t != spec.dns.ttl) {
                        writeln!(f, "  ~ DNS {fqdn}: ttl {ttl} → {} (in place)", spec.dns.ttl)?;
                    }
                }
            },
        }
        for lb in &self.lb_retire {
            if !matches!(&self.load_balancer, LbAction::Replace { lb: old, .. } if old.id == lb.id)
            {
                del += 1;
                writeln!(
                    f,
                    "  - load balancer {} ({}): {} {}, replaced; deleted once DNS points at the new one",
                    lb.name, lb.id, lb.mode, lb.scheme
                )?;
            }
        }
        for r in &self.dns_delete {
            del += 1;
            writeln!(
                f,
                "  - DNS {} {} in {} (hostname change)",
                r.kind, r.fqdn, r.zone
            )?;
        }
        let steps = self.rolling_steps();
        if !steps.is_empty() {
            writeln!(f, "Rolling steps, one etcd member at a time:")?;
            for (i, step) in steps.iter().enumerate() {
                writeln!(f, "  {}. {step}", i + 1)?;
            }
        }
        for w in &self.warnings {
            writeln!(f, "  ! warning: {w}")?;
        }
        if self.is_noop() {
            write!(f, "No changes: the cluster is as the spec says.")
        } else {
            write!(f, "{add} to create, {change} to change, {del} to delete.")
        }
    }
}
