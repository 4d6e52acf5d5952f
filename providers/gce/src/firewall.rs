//! The cluster's firewall rules: 80/443 from Google's health-check ranges, the
//! inter-node ports, and SSH from `nodes.ssh_allowed_cidrs` — the one rule updated
//! in place on day 2. The rule that opens a passthrough rule's ports to its clients
//! is a part of that balancer (`lb`), made and deleted with it.

use google_cloud_compute_v1::model::{firewall, Firewall};
use triad_core::error::{FailureKind, Result};
use triad_core::labels::Role;
use triad_core::spec::ClusterRef;

use crate::client::{request_id, Scope};
use crate::error::{self, own, Failure};
use crate::nodes::{node_tag, owned_by, ownership};
use crate::settings::HEALTH_CHECK_RANGES;
use crate::GceProvider;

/// TCP ports the Rancher nodes open to each other (etcd, Kubernetes API, RKE2
/// supervisor, kubelet, metrics, ingress admission, NodePorts).
pub(crate) const INTERNAL_TCP: &[&str] = &[
    "2376",
    "2379-2380",
    "6443",
    "9099",
    "9345",
    "10250",
    "10254",
    "30000-32767",
];
/// UDP ports the nodes open to each other (VXLAN overlays, NodePorts).
pub(crate) const INTERNAL_UDP: &[&str] = &["8472", "4789", "30000-32767"];

/// One firewall rule the cluster wants.
pub(crate) struct Rule {
    pub name: String,
    pub tcp: Vec<String>,
    pub udp: Vec<String>,
    pub sources: Vec<String>,
    pub source_tags: Vec<String>,
}

impl GceProvider {
    fn rules(&self, cluster: &str, ssh: &[String]) -> Vec<Rule> {
        let tag = node_tag(cluster);
        let mut rules = vec![
            Rule {
                name: format!("{cluster}-health"),
                tcp: vec!["80".into(), "443".into()],
                udp: vec![],
                sources: HEALTH_CHECK_RANGES.iter().map(|s| s.to_string()).collect(),
                source_tags: vec![],
            },
            Rule {
                name: format!("{cluster}-internal"),
                tcp: INTERNAL_TCP.iter().map(|s| s.to_string()).collect(),
                udp: INTERNAL_UDP.iter().map(|s| s.to_string()).collect(),
                sources: vec![],
                source_tags: vec![tag],
            },
        ];
        if !ssh.is_empty() {
            rules.push(Rule {
                name: format!("{cluster}-ssh"),
                tcp: vec!["22".into()],
                udp: vec![],
                sources: ssh.to_vec(),
                source_tags: vec![],
            });
        }
        rules
    }

    /// The body of `rule`: ingress to the cluster's nodes, owned by it in `role`.
    pub(crate) fn firewall_body(&self, cluster: &str, role: Role, rule: &Rule) -> Firewall {
        let mut fw = Firewall::default();
        fw.name = Some(rule.name.clone());
        fw.description = Some(ownership(cluster, role));
        fw.network = Some(self.network_link_pub());
        fw.direction = Some(firewall::Direction::from("INGRESS"));
        fw.target_tags = vec![node_tag(cluster)];
        fw.source_ranges = rule.sources.clone();
        fw.source_tags = rule.source_tags.clone();
        fw.allowed = allowed(rule);
        fw
    }

    /// Create the cluster's firewall rules that are missing.
    pub(crate) async fn ensure_firewalls(
        &self,
        cluster: &ClusterRef,
        ssh: &[String],
    ) -> Result<()> {
        let project = &self.settings.project;
        for rule in self.rules(&cluster.name, ssh) {
            let what = format!("firewall rule {}", rule.name);
            match self
                .clients
                .firewalls
                .get()
                .set_project(project)
                .set_firewall(&rule.name)
                .send()
                .await
            {
                Ok(f) if owned_by(f.description.as_deref(), &cluster.name) => continue,
                Ok(_) => {
                    return Err(own(
                        "create firewall rule",
                        &what,
                        FailureKind::Conflict,
                        "a rule of that name exists and is not this cluster's",
                    ))
                }
                Err(e) if Failure::of(&e).is_not_found() => {}
                Err(e) => return Err(error::sdk("get firewall rule", &what, &e)),
            }
            let fw = self.firewall_body(&cluster.name, Role::Network, &rule);
            let rid = request_id();
            match self
                .clients
                .firewalls
                .insert()
                .set_project(project)
                .set_request_id(&rid)
                .set_body(fw)
                .send()
                .await
            {
                Ok(op) => {
                    self.clients
                        .wait(
                            project,
                            &Scope::Global,
                            op,
                            self.poll,
                            "create firewall rule",
                            &what,
                        )
                        .await?;
                    tracing::info!(rule = %rule.name, "created firewall rule");
                }
                Err(e) if Failure::of(&e).is_conflict() => {}
                Err(e) => return Err(error::sdk("create firewall rule", &what, &e)),
            }
        }
        Ok(())
    }

    /// The SSH rule's sources to `cidrs`. One caller at a time, so the nodes of one
    /// apply, updated together, change the rule once.
    pub(crate) async fn update_ssh_rule(
        &self,
        cluster: &ClusterRef,
        cidrs: &[String],
    ) -> Result<()> {
        let _one = self.firewall_lock.lock().await;
        let name = format!("{}-ssh", cluster.name);
        let what = format!("firewall rule {name}");
        let project = &self.settings.project;
        let rule = match self
            .clients
            .firewalls
            .get()
            .set_project(project)
            .set_firewall(&name)
            .send()
            .await
        {
            Ok(f) if owned_by(f.description.as_deref(), &cluster.name) => f,
            // Made when missing; another owner's rule of that name is a conflict.
            Ok(_) => return self.ensure_firewalls(cluster, cidrs).await,
            Err(e) if Failure::of(&e).is_not_found() => {
                return self.ensure_firewalls(cluster, cidrs).await
            }
            Err(e) => return Err(error::sdk("get firewall rule", &what, &e)),
        };
        let op = if cidrs.is_empty() {
            self.clients
                .firewalls
                .delete()
                .set_project(project)
                .set_firewall(&name)
                .set_request_id(request_id())
                .send()
                .await
        } else if rule.source_ranges != cidrs {
            let mut patch = Firewall::default();
            patch.source_ranges = cidrs.to_vec();
            self.clients
                .firewalls
                .patch()
                .set_project(project)
                .set_firewall(&name)
                .set_request_id(request_id())
                .set_body(patch)
                .send()
                .await
        } else {
            return Ok(());
        };
        let action = if cidrs.is_empty() {
            "delete"
        } else {
            "set the sources of"
        };
        let op = op.map_err(|e| error::sdk(action, &what, &e))?;
        self.clients
            .wait(project, &Scope::Global, op, self.poll, action, &what)
            .await?;
        tracing::info!(rule = %name, sources = ?cidrs, "updated the SSH rule");
        Ok(())
    }

    /// Delete every firewall rule named `<cluster>-…` whose description marks it as
    /// the cluster's.
    pub(crate) async fn delete_firewalls(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let project = &self.settings.project;
        let mut token: Option<String> = None;
        let mut mine = Vec::new();
        loop {
            let page = self
                .clients
                .firewalls
                .list()
                .set_project(project)
                .set_or_clear_page_token(token.clone())
                .send()
                .await
                .map_err(|e| error::sdk("list firewall rules", "firewall rules", &e))?;
            for f in page.items {
                let name = f.name.clone().unwrap_or_default();
                if name.starts_with(&format!("{}-", cluster.name))
                    && owned_by(f.description.as_deref(), &cluster.name)
                {
                    mine.push(name);
                }
            }
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        let mut deleted = Vec::new();
        for name in mine {
            let what = format!("firewall rule {name}");
            match self
                .clients
                .firewalls
                .delete()
                .set_project(project)
                .set_firewall(&name)
                .set_request_id(request_id())
                .send()
                .await
            {
                Ok(op) => {
                    self.clients
                        .wait(
                            project,
                            &Scope::Global,
                            op,
                            self.poll,
                            "delete firewall rule",
                            &what,
                        )
                        .await?;
                    deleted.push(what);
                }
                Err(e) if Failure::of(&e).is_not_found() => {}
                Err(e) => return Err(error::sdk("delete firewall rule", &what, &e)),
            }
        }
        Ok(deleted)
    }
}

/// What `rule` allows, by protocol.
pub(crate) fn allowed(rule: &Rule) -> Vec<firewall::Allowed> {
    let mut out = Vec::new();
    for (proto, ports) in [("tcp", &rule.tcp), ("udp", &rule.udp)] {
        if !ports.is_empty() {
            let mut a = firewall::Allowed::default();
            a.ip_protocol = Some(proto.into());
            a.ports = ports.clone();
            out.push(a);
        }
    }
    out
}
