//! The plan as data: what apply will do with each node, the balancer, its targets
//! and the record, and what discovery found.

use super::*;

/// What apply will do with one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum NodeAction {
    /// Create it in `zone`.
    Create {
        /// Node name.
        name: String,
        /// Zone chosen by fewest-first placement.
        zone: String,
    },
    /// It exists and runs; nothing to do.
    Keep {
        /// The node.
        node: Node,
    },
    /// It exists but is not running yet; wait for it.
    Wait {
        /// The node.
        node: Node,
    },
    /// It runs but differs in attributes the cloud changes in place (SSH rules):
    /// update it.
    Update {
        /// The node.
        node: Node,
        /// What differs (all in place).
        changes: Vec<Change>,
    },
    /// It differs in attributes that need a new machine: a rolling replace (new node
    /// `name` in `zone`, then the old one leaves). See [`rollout`].
    Replace {
        /// The node there now.
        node: Node,
        /// The new node's name.
        name: String,
        /// The zone (the old node's).
        zone: String,
        /// What differs.
        changes: Vec<Change>,
    },
    /// It is not wanted (count lowered, a duplicate, the old half of a replacement):
    /// delete it after it has left the balancer, one node per step.
    Delete {
        /// The node.
        node: Node,
        /// Why.
        reason: String,
    },
}

impl NodeAction {
    /// The name of the node the action is about (the old one for a replace).
    pub fn name(&self) -> &str {
        match self {
            NodeAction::Create { name, .. } => name,
            NodeAction::Keep { node }
            | NodeAction::Wait { node }
            | NodeAction::Update { node, .. }
            | NodeAction::Replace { node, .. }
            | NodeAction::Delete { node, .. } => &node.name,
        }
    }
}

/// What apply will do with the balancer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum LbAction {
    /// Create it.
    Create {
        /// Name.
        name: String,
    },
    /// It exists as wanted and is active.
    Keep {
        /// The balancer.
        lb: LoadBalancer,
    },
    /// It exists as wanted but is still provisioning (or half made): complete it and wait.
    Complete {
        /// The balancer.
        lb: LoadBalancer,
    },
    /// It exists as wanted but differs in attributes the cloud changes in place
    /// (certificate, health check): update it.
    Update {
        /// The balancer.
        lb: LoadBalancer,
        /// What differs (all in place).
        changes: Vec<Change>,
    },
    /// It exists with another mode or scheme: make a new one named `name`. When the
    /// provider lets two balancers coexist (`make_first`), the new one is made, given
    /// the nodes and the DNS record, and only then is the old one deleted (no moment
    /// without a balancer); otherwise the old one is deleted first.
    Replace {
        /// The balancer.
        lb: LoadBalancer,
        /// The new balancer's name.
        name: String,
        /// Whether the new one is made before the old one goes.
        make_first: bool,
        /// What differs.
        reason: String,
        /// Whether Rancher must be (re)installed with `tls=external` (l4 → l7) or
        /// without it (l7 → l4).
        reinstall_rancher: bool,
    },
}

/// What apply will do with the balancer's targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum TargetsAction {
    /// They are exactly the nodes already.
    Keep,
    /// Register and deregister until they are exactly the nodes.
    Converge {
        /// Node names to add (known now).
        add: Vec<String>,
        /// Node ids to remove (known now).
        remove: Vec<String>,
    },
}

/// What apply will do with the DNS record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum DnsAction {
    /// The record already points at the balancer.
    Keep {
        /// The record.
        record: Record,
    },
    /// Create or update it once the balancer's endpoint is known.
    Upsert {
        /// Name.
        fqdn: String,
        /// The record there now, if any (ours).
        current: Option<Record>,
    },
}

/// What the plan found in the cloud.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    /// The cluster's nodes.
    pub nodes: Vec<Node>,
    /// The cluster's balancer.
    pub load_balancer: Option<LoadBalancer>,
    /// Records in the zone the cluster owns.
    pub records: Vec<Record>,
}

/// Desired vs discovered: what [`Orchestrator::apply`] will do. Print it (`Display`)
/// for a readable diff, or serialize it.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The cluster.
    pub cluster: ClusterRef,
    /// Zones the nodes are spread over.
    pub zones: Vec<String>,
    /// One action per node (desired and surplus).
    pub nodes: Vec<NodeAction>,
    /// The balancer.
    pub load_balancer: LbAction,
    /// The balancer's targets.
    pub targets: TargetsAction,
    /// The record.
    pub dns: DnsAction,
    /// Owned records at an old hostname, deleted when the hostname change was allowed.
    pub dns_delete: Vec<Record>,
    /// Old balancers (another mode or scheme), deleted once the record points at the
    /// new one.
    pub lb_retire: Vec<LoadBalancer>,
    /// What discovery found.
    pub discovered: Discovered,
    /// What the operator should know before applying: the spec's own
    /// ([`ValidSpec::warnings`], e.g. an end-of-life distribution) and security
    /// trade-offs (a proxy password readable from the nodes' metadata, nodes open to
    /// the internet: the providers' [`NodeProvider::plan_warnings`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub(in crate::orchestrator) spec: ValidSpec,
}

impl Plan {
    /// The spec this plan was made from, with what the plan learned from the cloud
    /// (the node network: [`ValidSpec::node_network_cidrs`]). Render the nodes' user
    /// data and the hand-over from this one, so both carry the same NO_PROXY.
    pub fn spec(&self) -> &ValidSpec {
        &self.spec
    }

    /// Number of resources that apply will create, change or delete.
    pub fn changes(&self) -> usize {
        let nodes = self
            .nodes
            .iter()
            .filter(|a| !matches!(a, NodeAction::Keep { .. }))
            .count();
        let lb = usize::from(!matches!(self.load_balancer, LbAction::Keep { .. }));
        let targets = usize::from(!matches!(self.targets, TargetsAction::Keep));
        let dns = usize::from(!matches!(self.dns, DnsAction::Keep { .. }));
        nodes + lb + targets + dns + self.dns_delete.len() + self.lb_retire.len()
    }

    /// Whether apply has nothing to do.
    pub fn is_noop(&self) -> bool {
        self.changes() == 0
    }

    /// Whether apply would change anything (`plan --detailed-exitcode` exits 2).
    pub fn has_changes(&self) -> bool {
        !self.is_noop()
    }

    /// What apply would destroy or replace, one line per resource for people (empty:
    /// nothing destructive). A front end asks for consent when this is not empty.
    pub fn destructive(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.nodes {
            match a {
                NodeAction::Replace {
                    node,
                    name,
                    changes,
                    ..
                } => out.push(format!(
                    "replace node {} ({}) by {name}: {}; its disk and etcd member are lost",
                    node.name,
                    node.id,
                    rollout::describe(changes)
                )),
                NodeAction::Delete { node, reason } => out.push(format!(
                    "delete node {} ({}): {reason}; its disk and etcd member are lost",
                    node.name, node.id
                )),
                _ => {}
            }
        }
        if let LbAction::Replace {
            lb,
            reason,
            reinstall_rancher,
            ..
        } = &self.load_balancer
        {
            out.push(format!(
                "replace load balancer {} ({}): {reason}; it gets a new address{}",
                lb.name,
                lb.id,
                if *reinstall_rancher {
                    ", and Rancher must be reinstalled (tls=external changes)"
                } else {
                    ""
                }
            ));
        }
        for r in &self.dns_delete {
            out.push(format!(
                "delete DNS {} record {} in {} (hostname change)",
                r.kind, r.fqdn, r.zone
            ));
        }
        out
    }

    /// The rolling steps apply will take, in order, with what each does to etcd and
    /// the Kubernetes commands to run first. Empty when nothing rolls.
    pub fn rolling_steps(&self) -> Vec<String> {
        rollout::steps(&self.spec, &self.nodes)
    }
}
