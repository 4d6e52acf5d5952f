//! The balancer: a regional external passthrough Network Load Balancer (l4) or a
//! global external Application Load Balancer (l7), both in front of one unmanaged
//! instance group per zone.
//!
//! Resource names are fixed per cluster (`<cluster>-hc`, `<cluster>-bs`,
//! `<cluster>-<zone>`, …), so every step is a get-or-create; addresses and
//! forwarding rules carry the ownership labels, the label-less parts (health check,
//! backend service, instance groups, URL maps, proxies) an ownership description.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use google_cloud_compute_v1::model::{
    address, backend, backend_service, forwarding_rule, health_check, ssl_policy, Address, Backend,
    BackendService, ForwardingRule, HTTPHealthCheck, HealthCheck, HttpRedirectAction,
    InstanceGroup, InstanceGroupsAddInstancesRequest, InstanceGroupsListInstancesRequest,
    InstanceGroupsRemoveInstancesRequest, InstanceReference, NamedPort, Operation, SslPolicy,
    SslPolicyReference, TargetHttpProxy, TargetHttpsProxy, UrlMap,
};
use google_cloud_gax::error::Error as GaxError;
use triad_core::error::{Error, FailureKind, Result, SpecProblem};
use triad_core::labels::{self, Role};
use triad_core::model::{Endpoint, LbState, Listener, LoadBalancer, LoadBalancerRequest, Node};
use triad_core::spec::{ClusterRef, LbMode, LbScheme, ValidSpec};

use crate::client::{request_id, short, Scope};
use crate::error::{self, own, Failure};
use crate::nodes::{label_filter, owned_by, ownership};
use crate::GceProvider;

/// The fixed names of the balancer's parts.
pub(crate) struct Names {
    pub address: String,
    pub health_check: String,
    pub backend_service: String,
    pub l4_rule: String,
    pub url_map: String,
    pub redirect_map: String,
    pub https_proxy: String,
    pub http_proxy: String,
    pub ssl_policy: String,
    pub https_rule: String,
    pub http_rule: String,
    cluster: String,
}

impl Names {
    pub fn new(cluster: &str) -> Self {
        Self {
            address: format!("{cluster}-lb"),
            health_check: format!("{cluster}-hc"),
            backend_service: format!("{cluster}-bs"),
            l4_rule: format!("{cluster}-fr"),
            url_map: format!("{cluster}-urlmap"),
            redirect_map: format!("{cluster}-redirect"),
            https_proxy: format!("{cluster}-https"),
            http_proxy: format!("{cluster}-http"),
            ssl_policy: format!("{cluster}-tls"),
            https_rule: format!("{cluster}-https"),
            http_rule: format!("{cluster}-http"),
            cluster: cluster.to_owned(),
        }
    }

    /// The instance group of `zone`.
    pub fn group(&self, zone: &str) -> String {
        format!("{}-{zone}", self.cluster)
    }
}

/// The listeners of a balancer: 80/443 by mode, then the registration ports the
/// l4 forwarding rule carries beyond them.
fn listeners(mode: LbMode, registration: &[u16]) -> Vec<Listener> {
    let mut out = web_listeners(mode);
    out.extend(registration.iter().map(|&p| Listener {
        port: p,
        protocol: "TCP".into(),
        target_port: Some(p),
    }));
    out
}

/// The ports of the l4 forwarding rule: 80, 443, then the registration ports.
fn l4_ports(registration: &[u16]) -> Vec<String> {
    ["80".to_owned(), "443".to_owned()]
        .into_iter()
        .chain(registration.iter().map(ToString::to_string))
        .collect()
}

/// GCE cannot give an l7 balancer the registration listeners on the Rancher
/// hostname: the HTTPS balancer's global address takes no TCP passthrough rule, so
/// 9345/6443 would need a second, regional address the nodes' user data cannot
/// know. Refused at plan, naming the field.
pub(crate) fn registration_problem(spec: &ValidSpec) -> Option<SpecProblem> {
    (spec.load_balancer.mode == LbMode::L7 && !spec.registration_ports().is_empty()).then(|| SpecProblem {
        field: "load_balancer.registration".into(),
        problem: "is `balancer`, but a GCE HTTPS balancer (l7) has no TCP passthrough on its address for 9345/6443".into(),
        fix: "use mode = \"l4\" (the passthrough rule carries 80, 443, 9345 and 6443), or registration = \"first-node\" with kubernetes.install = false".into(),
    })
}

fn web_listeners(mode: LbMode) -> Vec<Listener> {
    match mode {
        LbMode::L4 => vec![
            Listener {
                port: 80,
                protocol: "TCP".into(),
                target_port: Some(80),
            },
            Listener {
                port: 443,
                protocol: "TCP".into(),
                target_port: Some(443),
            },
        ],
        LbMode::L7 => vec![
            Listener {
                port: 80,
                protocol: "HTTP".into(),
                target_port: None,
            },
            Listener {
                port: 443,
                protocol: "HTTPS".into(),
                target_port: Some(80),
            },
        ],
    }
}

fn has_labels_of(labels: &std::collections::HashMap<String, String>, cluster: &str) -> bool {
    labels.get(labels::CLUSTER).map(String::as_str) == Some(cluster)
}

/// `…/zones/<zone>/instances/<name>` → (zone, name).
fn instance_key(link: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = link.split('/').collect();
    let i = parts.iter().position(|p| *p == "zones")?;
    match (parts.get(i + 1), parts.get(i + 2), parts.get(i + 3)) {
        (Some(z), Some(&"instances"), Some(n)) => Some(((*z).to_owned(), (*n).to_owned())),
        _ => None,
    }
}

fn balancer_description(cluster: &str, name: &str) -> String {
    format!("{} balancer {name}", ownership(cluster, Role::Lb))
}

fn balancer_name(description: Option<&str>, cluster: &str) -> String {
    description
        .and_then(|d| d.rsplit_once(" balancer "))
        .map(|(_, n)| n.to_owned())
        .unwrap_or_else(|| cluster.to_owned())
}

impl GceProvider {
    fn project(&self) -> &str {
        &self.settings.project
    }

    /// Get a resource, or insert it (with a request id) and get it once its
    /// operation is done. A 409 on insert means a concurrent or earlier call made it.
    async fn ensure<T, G, GF, I, IF>(
        &self,
        what: &str,
        scope: Scope,
        get: G,
        insert: I,
    ) -> Result<T>
    where
        G: Fn() -> GF,
        GF: Future<Output = std::result::Result<T, GaxError>>,
        I: FnOnce(String) -> IF,
        IF: Future<Output = std::result::Result<Operation, GaxError>>,
    {
        match get().await {
            Ok(t) => return Ok(t),
            Err(e) if Failure::of(&e).is_not_found() => {}
            Err(e) => return Err(error::sdk("get", what, &e)),
        }
        match insert(request_id()).await {
            Ok(op) => {
                self.clients
                    .wait(self.project(), &scope, op, self.poll, "create", what)
                    .await?;
                tracing::info!(resource = %what, "created");
            }
            Err(e) if Failure::of(&e).is_conflict() => {}
            Err(e) => return Err(error::sdk("create", what, &e)),
        }
        get().await.map_err(|e| error::sdk("get", what, &e))
    }

    /// Delete a resource if it exists and is the cluster's; `Some(what)` when deleted.
    async fn remove<T, GF, D, DF>(
        &self,
        what: String,
        scope: Scope,
        get: GF,
        owned: impl Fn(&T) -> bool,
        delete: D,
    ) -> Result<Option<String>>
    where
        GF: Future<Output = std::result::Result<T, GaxError>>,
        D: FnOnce(String) -> DF,
        DF: Future<Output = std::result::Result<Operation, GaxError>>,
    {
        let found = match get.await {
            Ok(t) => t,
            Err(e) if Failure::of(&e).is_not_found() => return Ok(None),
            Err(e) => return Err(error::sdk("get", &what, &e)),
        };
        if !owned(&found) {
            tracing::warn!(resource = %what, "not deleting: it is not this cluster's");
            return Ok(None);
        }
        match delete(request_id()).await {
            Ok(op) => {
                match self
                    .clients
                    .wait(self.project(), &scope, op, self.poll, "delete", &what)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == Some(FailureKind::NotFound) => {}
                    Err(e) => return Err(e),
                }
                tracing::info!(resource = %what, "deleted");
                Ok(Some(what))
            }
            Err(e) if Failure::of(&e).is_not_found() => Ok(None),
            Err(e) => Err(error::sdk("delete", &what, &e)),
        }
    }

    /// The SSL policy of the HTTPS proxy: `gce.ssl_policy` (or
    /// `load_balancer.ssl_policy`) when given, else `<cluster>-tls`, made here with
    /// profile `MODERN` and TLS 1.2 at least (Google's default policy still admits
    /// TLS 1.0). Returns its link.
    async fn ensure_ssl_policy(&self, c: &str, n: &Names) -> Result<String> {
        let p = self.project();
        if let Some(policy) = &self.settings.ssl_policy {
            return Ok(if policy.contains('/') {
                policy.clone()
            } else {
                format!("projects/{p}/global/sslPolicies/{policy}")
            });
        }
        let what = format!("SSL policy {}", n.ssl_policy);
        let policy = self
            .ensure(
                &what,
                Scope::Global,
                || {
                    self.clients
                        .ssl_policies
                        .get()
                        .set_project(p)
                        .set_ssl_policy(&n.ssl_policy)
                        .send()
                },
                |rid| {
                    let mut sp = SslPolicy::default();
                    sp.name = Some(n.ssl_policy.clone());
                    sp.description = Some(ownership(c, Role::Lb));
                    sp.profile = Some(ssl_policy::Profile::Modern);
                    sp.min_tls_version = Some(ssl_policy::MinTlsVersion::Tls12);
                    self.clients
                        .ssl_policies
                        .insert()
                        .set_project(p)
                        .set_request_id(rid)
                        .set_body(sp)
                        .send()
                },
            )
            .await?;
        if !owned_by(policy.description.as_deref(), c) {
            return Err(Self::not_ours(&what));
        }
        Ok(policy
            .self_link
            .unwrap_or_else(|| format!("projects/{p}/global/sslPolicies/{}", n.ssl_policy)))
    }

    fn not_ours(what: &str) -> Error {
        own(
            "create load balancer",
            what,
            FailureKind::Conflict,
            "a resource of that name exists and is not this cluster's",
        )
    }

    async fn ensure_group(&self, cluster: &str, zone: &str) -> Result<InstanceGroup> {
        let names = Names::new(cluster);
        let name = names.group(zone);
        let what = format!("instance group {name}");
        let ig = self
            .ensure(
                &what,
                Scope::Zone(zone.to_owned()),
                || {
                    self.clients
                        .instance_groups
                        .get()
                        .set_project(self.project())
                        .set_zone(zone)
                        .set_instance_group(&name)
                        .send()
                },
                |rid| {
                    let mut g = InstanceGroup::default();
                    g.name = Some(name.clone());
                    g.description = Some(ownership(cluster, Role::Lb));
                    g.network = Some(self.network_link_pub());
                    let mut port = NamedPort::default();
                    port.name = Some("http".into());
                    port.port = Some(80);
                    g.named_ports = vec![port];
                    self.clients
                        .instance_groups
                        .insert()
                        .set_project(self.project())
                        .set_zone(zone)
                        .set_request_id(rid)
                        .set_body(g)
                        .send()
                },
            )
            .await?;
        if !owned_by(ig.description.as_deref(), cluster) {
            return Err(Self::not_ours(&what));
        }
        Ok(ig)
    }

    fn health_check_body(&self, cluster: &str, request: &LoadBalancerRequest) -> HealthCheck {
        let names = Names::new(cluster);
        let mut http = HTTPHealthCheck::default();
        http.port = Some(80);
        http.request_path = Some(request.health_check_path.clone());
        let mut hc = HealthCheck::default();
        hc.name = Some(names.health_check);
        hc.description = Some(ownership(cluster, Role::Lb));
        hc.r#type = Some(health_check::Type::from("HTTP"));
        hc.http_health_check = Some(http);
        hc.check_interval_sec = Some(10);
        hc.timeout_sec = Some(6);
        hc.healthy_threshold = Some(3);
        hc.unhealthy_threshold = Some(3);
        hc
    }

    fn backend_body(
        &self,
        cluster: &str,
        mode: LbMode,
        hc: &str,
        groups: &[String],
    ) -> BackendService {
        let mut bs = BackendService::default();
        bs.name = Some(Names::new(cluster).backend_service);
        bs.description = Some(ownership(cluster, Role::Lb));
        bs.health_checks = vec![hc.to_owned()];
        bs.backends = groups.iter().map(|g| self.backend(mode, g)).collect();
        match mode {
            LbMode::L4 => {
                bs.load_balancing_scheme =
                    Some(backend_service::LoadBalancingScheme::from("EXTERNAL"));
                bs.protocol = Some(backend_service::Protocol::from("TCP"));
            }
            LbMode::L7 => {
                bs.load_balancing_scheme = Some(backend_service::LoadBalancingScheme::from(
                    "EXTERNAL_MANAGED",
                ));
                bs.protocol = Some(backend_service::Protocol::from("HTTP"));
                bs.port_name = Some("http".into());
                bs.timeout_sec = Some(3600);
            }
        }
        bs
    }

    fn backend(&self, mode: LbMode, group: &str) -> Backend {
        let mut b = Backend::default();
        b.group = Some(group.to_owned());
        match mode {
            LbMode::L4 => b.balancing_mode = Some(backend::BalancingMode::from("CONNECTION")),
            LbMode::L7 => {
                b.balancing_mode = Some(backend::BalancingMode::from("UTILIZATION"));
                b.capacity_scaler = Some(1.0);
            }
        }
        b
    }

    async fn get_backend_service(
        &self,
        cluster: &ClusterRef,
        mode: LbMode,
    ) -> std::result::Result<BackendService, GaxError> {
        let name = Names::new(&cluster.name).backend_service;
        match mode {
            LbMode::L4 => {
                self.clients
                    .region_backend_services
                    .get()
                    .set_project(self.project())
                    .set_region(&cluster.region)
                    .set_backend_service(&name)
                    .send()
                    .await
            }
            LbMode::L7 => {
                self.clients
                    .backend_services
                    .get()
                    .set_project(self.project())
                    .set_backend_service(&name)
                    .send()
                    .await
            }
        }
    }

    /// Make the backend service serve every group in `groups` (self-links).
    async fn ensure_backends(
        &self,
        cluster: &ClusterRef,
        mode: LbMode,
        bs: BackendService,
        groups: &[String],
    ) -> Result<BackendService> {
        let have: BTreeSet<String> = bs
            .backends
            .iter()
            .filter_map(|b| b.group.as_deref().map(|g| short(g).to_owned()))
            .collect();
        let missing: Vec<&String> = groups.iter().filter(|g| !have.contains(short(g))).collect();
        if missing.is_empty() {
            return Ok(bs);
        }
        let name = Names::new(&cluster.name).backend_service;
        let what = format!("backend service {name}");
        let mut patch = BackendService::default();
        patch.backends = bs.backends.clone();
        patch
            .backends
            .extend(missing.iter().map(|g| self.backend(mode, g)));
        patch.fingerprint = bs.fingerprint.clone();
        let (op, scope) = match mode {
            LbMode::L4 => (
                self.clients
                    .region_backend_services
                    .patch()
                    .set_project(self.project())
                    .set_region(&cluster.region)
                    .set_backend_service(&name)
                    .set_request_id(request_id())
                    .set_body(patch)
                    .send()
                    .await,
                Scope::Region(cluster.region.clone()),
            ),
            LbMode::L7 => (
                self.clients
                    .backend_services
                    .patch()
                    .set_project(self.project())
                    .set_backend_service(&name)
                    .set_request_id(request_id())
                    .set_body(patch)
                    .send()
                    .await,
                Scope::Global,
            ),
        };
        let op = op.map_err(|e| error::sdk("add backends to", &what, &e))?;
        self.clients
            .wait(
                self.project(),
                &scope,
                op,
                self.poll,
                "add backends to",
                &what,
            )
            .await?;
        self.get_backend_service(cluster, mode)
            .await
            .map_err(|e| error::sdk("get", &what, &e))
    }

    pub(crate) async fn create_lb(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        if request.scheme == LbScheme::Internal {
            return Err(Error::invalid(
                "load_balancer.scheme",
                "`internal` is not supported by the gce provider yet",
                "use `internet-facing`",
            ));
        }
        let zones = if request.zones.is_empty() {
            self.node_zones(cluster).await?
        } else {
            request.zones.clone()
        };
        let mut groups = Vec::new();
        for z in &zones {
            let g = self.ensure_group(&cluster.name, z).await?;
            groups.push(g.self_link.unwrap_or_default());
        }
        match request.mode {
            LbMode::L4 => self.create_l4(cluster, request, &groups).await?,
            LbMode::L7 => self.create_l7(cluster, request, &groups).await?,
        }
        self.discover_lb(cluster).await?.ok_or_else(|| {
            own(
                "create load balancer",
                &format!("load balancer {}", request.name),
                FailureKind::NotFound,
                "the balancer's forwarding rule is gone right after it was made",
            )
        })
    }

    async fn create_l4(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        groups: &[String],
    ) -> Result<()> {
        let n = Names::new(&cluster.name);
        let region = &cluster.region;
        let p = self.project();
        let what = format!("address {}", n.address);
        let addr = self
            .ensure(
                &what,
                Scope::Region(region.clone()),
                || {
                    self.clients
                        .addresses
                        .get()
                        .set_project(p)
                        .set_region(region)
                        .set_address(&n.address)
                        .send()
                },
                |rid| {
                    let mut a = Address::default();
                    a.name = Some(n.address.clone());
                    a.description = Some(ownership(&cluster.name, Role::Lb));
                    a.address_type = Some(address::AddressType::from("EXTERNAL"));
                    a.labels = request.labels.clone().into_iter().collect();
                    self.clients
                        .addresses
                        .insert()
                        .set_project(p)
                        .set_region(region)
                        .set_request_id(rid)
                        .set_body(a)
                        .send()
                },
            )
            .await?;
        if !has_labels_of(&addr.labels, &cluster.name) {
            return Err(Self::not_ours(&what));
        }
        let what = format!("health check {}", n.health_check);
        let hc = self
            .ensure(
                &what,
                Scope::Region(region.clone()),
                || {
                    self.clients
                        .region_health_checks
                        .get()
                        .set_project(p)
                        .set_region(region)
                        .set_health_check(&n.health_check)
                        .send()
                },
                |rid| {
                    let hc = self.health_check_body(&cluster.name, request);
                    self.clients
                        .region_health_checks
                        .insert()
                        .set_project(p)
                        .set_region(region)
                        .set_request_id(rid)
                        .set_body(hc)
                        .send()
                },
            )
            .await?;
        if !owned_by(hc.description.as_deref(), &cluster.name) {
            return Err(Self::not_ours(&what));
        }
        let hc_link = hc.self_link.unwrap_or_default();
        let what = format!("backend service {}", n.backend_service);
        let bs = self
            .ensure(
                &what,
                Scope::Region(region.clone()),
                || {
                    self.clients
                        .region_backend_services
                        .get()
                        .set_project(p)
                        .set_region(region)
                        .set_backend_service(&n.backend_service)
                        .send()
                },
                |rid| {
                    let bs = self.backend_body(&cluster.name, LbMode::L4, &hc_link, groups);
                    self.clients
                        .region_backend_services
                        .insert()
                        .set_project(p)
                        .set_region(region)
                        .set_request_id(rid)
                        .set_body(bs)
                        .send()
                },
            )
            .await?;
        if !owned_by(bs.description.as_deref(), &cluster.name) {
            return Err(Self::not_ours(&what));
        }
        let bs = self
            .ensure_backends(cluster, LbMode::L4, bs, groups)
            .await?;
        let bs_link = bs.self_link.unwrap_or_default();
        let ip = addr.address.clone().unwrap_or_default();
        let what = format!("forwarding rule {}", n.l4_rule);
        // A forwarding rule's ports cannot change: a rule made before the
        // registration ports (or with others) is replaced, on the same address.
        let want_ports = l4_ports(&request.registration_ports);
        for attempt in 0..2 {
            let fr = self
                .ensure(
                    &what,
                    Scope::Region(region.clone()),
                    || {
                        self.clients
                            .forwarding_rules
                            .get()
                            .set_project(p)
                            .set_region(region)
                            .set_forwarding_rule(&n.l4_rule)
                            .send()
                    },
                    |rid| {
                        let mut fr = ForwardingRule::default();
                        fr.name = Some(n.l4_rule.clone());
                        fr.description = Some(balancer_description(&cluster.name, &request.name));
                        fr.load_balancing_scheme =
                            Some(forwarding_rule::LoadBalancingScheme::from("EXTERNAL"));
                        fr.ip_protocol = Some(forwarding_rule::IPProtocol::from("TCP"));
                        fr.ports = want_ports.clone();
                        fr.backend_service = Some(bs_link.clone());
                        fr.ip_address = Some(ip.clone());
                        fr.labels = request.labels.clone().into_iter().collect();
                        self.clients
                            .forwarding_rules
                            .insert()
                            .set_project(p)
                            .set_region(region)
                            .set_request_id(rid)
                            .set_body(fr)
                            .send()
                    },
                )
                .await?;
            if !has_labels_of(&fr.labels, &cluster.name) {
                return Err(Self::not_ours(&what));
            }
            if fr.ports == want_ports {
                return Ok(());
            }
            if attempt == 0 {
                tracing::info!(rule = %n.l4_rule, "replacing the forwarding rule: its ports changed");
                self.remove_l4_rule(cluster).await?;
            }
        }
        Err(own(
            "create load balancer",
            &what,
            FailureKind::Conflict,
            "the forwarding rule still has other ports after it was replaced",
        ))
    }

    /// Delete the cluster's l4 forwarding rule if it exists and is the cluster's.
    async fn remove_l4_rule(&self, cluster: &ClusterRef) -> Result<Option<String>> {
        let n = Names::new(&cluster.name);
        let (p, region) = (self.project(), &cluster.region);
        self.remove(
            format!("forwarding rule {}", n.l4_rule),
            Scope::Region(region.clone()),
            self.clients
                .forwarding_rules
                .get()
                .set_project(p)
                .set_region(region)
                .set_forwarding_rule(&n.l4_rule)
                .send(),
            |f: &ForwardingRule| has_labels_of(&f.labels, &cluster.name),
            |rid| {
                self.clients
                    .forwarding_rules
                    .delete()
                    .set_project(p)
                    .set_region(region)
                    .set_forwarding_rule(&n.l4_rule)
                    .set_request_id(rid)
                    .send()
            },
        )
        .await
    }

    fn certificate_link(&self, cert: &str) -> String {
        if cert.contains('/') {
            cert.to_owned()
        } else {
            format!("projects/{}/global/sslCertificates/{cert}", self.project())
        }
    }

    async fn create_l7(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        groups: &[String],
    ) -> Result<()> {
        let Some(cert) = &request.certificate else {
            return Err(Error::invalid(
                "load_balancer.certificate",
                "an l7 balancer needs a certificate",
                "name a Compute Engine SSL certificate (gcloud compute ssl-certificates list)",
            ));
        };
        let n = Names::new(&cluster.name);
        let p = self.project();
        let c = &cluster.name;
        let what = format!("global address {}", n.address);
        let addr = self
            .ensure(
                &what,
                Scope::Global,
                || {
                    self.clients
                        .global_addresses
                        .get()
                        .set_project(p)
                        .set_address(&n.address)
                        .send()
                },
                |rid| {
                    let mut a = Address::default();
                    a.name = Some(n.address.clone());
                    a.description = Some(ownership(c, Role::Lb));
                    a.address_type = Some(address::AddressType::from("EXTERNAL"));
                    a.labels = request.labels.clone().into_iter().collect();
                    self.clients
                        .global_addresses
                        .insert()
                        .set_project(p)
                        .set_request_id(rid)
                        .set_body(a)
                        .send()
                },
            )
            .await?;
        if !has_labels_of(&addr.labels, c) {
            return Err(Self::not_ours(&what));
        }
        let what = format!("health check {}", n.health_check);
        let hc = self
            .ensure(
                &what,
                Scope::Global,
                || {
                    self.clients
                        .health_checks
                        .get()
                        .set_project(p)
                        .set_health_check(&n.health_check)
                        .send()
                },
                |rid| {
                    let hc = self.health_check_body(c, request);
                    self.clients
                        .health_checks
                        .insert()
                        .set_project(p)
                        .set_request_id(rid)
                        .set_body(hc)
                        .send()
                },
            )
            .await?;
        if !owned_by(hc.description.as_deref(), c) {
            return Err(Self::not_ours(&what));
        }
        let hc_link = hc.self_link.unwrap_or_default();
        let what = format!("backend service {}", n.backend_service);
        let bs = self
            .ensure(
                &what,
                Scope::Global,
                || {
                    self.clients
                        .backend_services
                        .get()
                        .set_project(p)
                        .set_backend_service(&n.backend_service)
                        .send()
                },
                |rid| {
                    let bs = self.backend_body(c, LbMode::L7, &hc_link, groups);
                    self.clients
                        .backend_services
                        .insert()
                        .set_project(p)
                        .set_request_id(rid)
                        .set_body(bs)
                        .send()
                },
            )
            .await?;
        if !owned_by(bs.description.as_deref(), c) {
            return Err(Self::not_ours(&what));
        }
        let bs = self
            .ensure_backends(cluster, LbMode::L7, bs, groups)
            .await?;
        let bs_link = bs.self_link.unwrap_or_default();
        let mut links = BTreeMap::new();
        for (map, redirect) in [(&n.url_map, false), (&n.redirect_map, true)] {
            let what = format!("URL map {map}");
            let um = self
                .ensure(
                    &what,
                    Scope::Global,
                    || {
                        self.clients
                            .url_maps
                            .get()
                            .set_project(p)
                            .set_url_map(map)
                            .send()
                    },
                    |rid| {
                        let mut um = UrlMap::default();
                        um.name = Some(map.clone());
                        um.description = Some(ownership(c, Role::Lb));
                        if redirect {
                            let mut r = HttpRedirectAction::default();
                            r.https_redirect = Some(true);
                            r.strip_query = Some(false);
                            um.default_url_redirect = Some(r);
                        } else {
                            um.default_service = Some(bs_link.clone());
                        }
                        self.clients
                            .url_maps
                            .insert()
                            .set_project(p)
                            .set_request_id(rid)
                            .set_body(um)
                            .send()
                    },
                )
                .await?;
            if !owned_by(um.description.as_deref(), c) {
                return Err(Self::not_ours(&what));
            }
            links.insert(redirect, um.self_link.unwrap_or_default());
        }
        let policy_link = self.ensure_ssl_policy(c, &n).await?;
        let what = format!("target HTTPS proxy {}", n.https_proxy);
        let cert_link = self.certificate_link(cert);
        let https = self
            .ensure(
                &what,
                Scope::Global,
                || self.clients.target_https_proxies.get().set_project(p).set_target_https_proxy(&n.https_proxy).send(),
                |rid| {
                    let mut t = TargetHttpsProxy::default();
                    t.name = Some(n.https_proxy.clone());
                    t.description = Some(ownership(c, Role::Lb));
                    t.url_map = Some(links[&false].clone());
                    t.ssl_certificates = vec![cert_link.clone()];
                    t.ssl_policy = Some(policy_link.clone());
                    self.clients.target_https_proxies.insert().set_project(p).set_request_id(rid).set_body(t).send()
                },
            )
            .await
            .map_err(|e| match e.kind() {
                Some(FailureKind::NotFound) if e.to_string().contains("sslCertificates") => Error::invalid(
                    "load_balancer.certificate",
                    format!("SSL certificate `{cert}` does not exist in project `{p}`"),
                    "create it (gcloud compute ssl-certificates create) or name an existing one",
                ),
                _ => e,
            })?;
        if !owned_by(https.description.as_deref(), c) {
            return Err(Self::not_ours(&what));
        }
        if https.ssl_policy.as_deref().map(short) != Some(short(&policy_link)) {
            let op = self
                .clients
                .target_https_proxies
                .set_ssl_policy()
                .set_project(p)
                .set_target_https_proxy(&n.https_proxy)
                .set_request_id(request_id())
                .set_body(SslPolicyReference::new().set_ssl_policy(policy_link.clone()))
                .send()
                .await
                .map_err(|e| error::sdk("set the SSL policy of", &what, &e))?;
            self.clients
                .wait(
                    p,
                    &Scope::Global,
                    op,
                    self.poll,
                    "set the SSL policy of",
                    &what,
                )
                .await?;
            tracing::info!(resource = %what, policy = %policy_link, "set SSL policy");
        }
        let what = format!("target HTTP proxy {}", n.http_proxy);
        let http = self
            .ensure(
                &what,
                Scope::Global,
                || {
                    self.clients
                        .target_http_proxies
                        .get()
                        .set_project(p)
                        .set_target_http_proxy(&n.http_proxy)
                        .send()
                },
                |rid| {
                    let mut t = TargetHttpProxy::default();
                    t.name = Some(n.http_proxy.clone());
                    t.description = Some(ownership(c, Role::Lb));
                    t.url_map = Some(links[&true].clone());
                    self.clients
                        .target_http_proxies
                        .insert()
                        .set_project(p)
                        .set_request_id(rid)
                        .set_body(t)
                        .send()
                },
            )
            .await?;
        if !owned_by(http.description.as_deref(), c) {
            return Err(Self::not_ours(&what));
        }
        let ip = addr.address.clone().unwrap_or_default();
        for (rule, port, target) in [
            (&n.https_rule, "443", https.self_link.unwrap_or_default()),
            (&n.http_rule, "80", http.self_link.unwrap_or_default()),
        ] {
            let what = format!("global forwarding rule {rule}");
            let fr = self
                .ensure(
                    &what,
                    Scope::Global,
                    || {
                        self.clients
                            .global_forwarding_rules
                            .get()
                            .set_project(p)
                            .set_forwarding_rule(rule)
                            .send()
                    },
                    |rid| {
                        let mut fr = ForwardingRule::default();
                        fr.name = Some(rule.clone());
                        fr.description = Some(balancer_description(c, &request.name));
                        fr.load_balancing_scheme = Some(
                            forwarding_rule::LoadBalancingScheme::from("EXTERNAL_MANAGED"),
                        );
                        fr.ip_protocol = Some(forwarding_rule::IPProtocol::from("TCP"));
                        fr.port_range = Some(port.into());
                        fr.target = Some(target.clone());
                        fr.ip_address = Some(ip.clone());
                        fr.labels = request.labels.clone().into_iter().collect();
                        self.clients
                            .global_forwarding_rules
                            .insert()
                            .set_project(p)
                            .set_request_id(rid)
                            .set_body(fr)
                            .send()
                    },
                )
                .await?;
            if !has_labels_of(&fr.labels, c) {
                return Err(Self::not_ours(&what));
            }
        }
        Ok(())
    }

    /// The cluster's forwarding rules, regional (l4) and global (l7), by labels.
    async fn labelled_rules(
        &self,
        cluster: &ClusterRef,
    ) -> Result<(Vec<ForwardingRule>, Vec<ForwardingRule>)> {
        let filter = label_filter(&cluster.name, Role::Lb);
        let regional = self
            .clients
            .forwarding_rules
            .list()
            .set_project(self.project())
            .set_region(&cluster.region)
            .set_filter(&filter)
            .send()
            .await
            .map_err(|e| {
                error::sdk(
                    "list forwarding rules",
                    &format!("region {}", cluster.region),
                    &e,
                )
            })?;
        let global = self
            .clients
            .global_forwarding_rules
            .list()
            .set_project(self.project())
            .set_filter(&filter)
            .send()
            .await
            .map_err(|e| {
                error::sdk(
                    "list global forwarding rules",
                    "global forwarding rules",
                    &e,
                )
            })?;
        Ok((regional.items, global.items))
    }

    pub(crate) async fn discover_lb(&self, cluster: &ClusterRef) -> Result<Option<LoadBalancer>> {
        let n = Names::new(&cluster.name);
        let (regional, global) = self.labelled_rules(cluster).await?;
        let (mode, rule) = if let Some(r) = regional
            .into_iter()
            .find(|r| r.name.as_deref() == Some(&n.l4_rule))
        {
            (LbMode::L4, r)
        } else if let Some(r) = global
            .into_iter()
            .find(|r| r.name.as_deref() == Some(&n.https_rule))
        {
            (LbMode::L7, r)
        } else {
            return Ok(None);
        };
        let targets = match self.get_backend_service(cluster, mode).await {
            Ok(bs) => self
                .members(cluster, &bs)
                .await?
                .into_values()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            Err(e) if Failure::of(&e).is_not_found() => Vec::new(),
            Err(e) => {
                return Err(error::sdk(
                    "get",
                    &format!("backend service {}", n.backend_service),
                    &e,
                ))
            }
        };
        let endpoint = rule
            .ip_address
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .map(|ip| Endpoint::Ip {
                addresses: vec![ip],
            });
        Ok(Some(LoadBalancer {
            id: rule.self_link.clone().unwrap_or_default(),
            name: balancer_name(rule.description.as_deref(), &cluster.name),
            mode,
            scheme: LbScheme::InternetFacing,
            state: if endpoint.is_some() {
                LbState::Active
            } else {
                LbState::Provisioning
            },
            endpoint,
            listeners: listeners(
                mode,
                &rule
                    .ports
                    .iter()
                    .filter_map(|p| p.parse::<u16>().ok())
                    .filter(|p| *p != 80 && *p != 443)
                    .collect::<Vec<_>>(),
            ),
            targets,
            labels: Default::default(),
            partial_targets: Vec::new(),
        }))
    }

    /// The instances in the backend service's groups: (zone, name) → node id.
    async fn members(
        &self,
        cluster: &ClusterRef,
        bs: &BackendService,
    ) -> Result<BTreeMap<(String, String), String>> {
        let mut keys = Vec::new();
        for b in &bs.backends {
            let Some(g) = b.group.as_deref() else {
                continue;
            };
            let zone = g
                .split("/zones/")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .unwrap_or("");
            keys.extend(self.group_members(zone, short(g)).await?);
        }
        let zones: BTreeSet<&String> = keys.iter().map(|(z, _)| z).collect();
        let mut ids = BTreeMap::new();
        for z in zones {
            for i in self.list_nodes_in(&cluster.name, z).await? {
                if let (Some(name), Some(id)) = (i.name, i.id) {
                    ids.insert((z.clone(), name), id.to_string());
                }
            }
        }
        let mut out = BTreeMap::new();
        for key in keys {
            let id = match ids.get(&key) {
                Some(id) => id.clone(),
                None => match self.get_instance(&key.0, &key.1).await? {
                    Some(i) => i.id.map(|x| x.to_string()).unwrap_or_else(|| key.1.clone()),
                    None => continue,
                },
            };
            out.insert(key, id);
        }
        Ok(out)
    }

    async fn group_members(&self, zone: &str, group: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = match self
                .clients
                .instance_groups
                .list_instances()
                .set_project(self.project())
                .set_zone(zone)
                .set_instance_group(group)
                .set_body(InstanceGroupsListInstancesRequest::default())
                .set_or_clear_page_token(token.clone())
                .send()
                .await
            {
                Ok(p) => p,
                Err(e) if Failure::of(&e).is_not_found() => return Ok(out),
                Err(e) => {
                    return Err(error::sdk(
                        "list members of",
                        &format!("instance group {group}"),
                        &e,
                    ))
                }
            };
            out.extend(
                page.items
                    .iter()
                    .filter_map(|i| i.instance.as_deref().and_then(instance_key)),
            );
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    pub(crate) async fn converge_targets(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        nodes: &[Node],
    ) -> Result<LoadBalancer> {
        let n = Names::new(&cluster.name);
        let what = format!("backend service {}", n.backend_service);
        let bs = self
            .get_backend_service(cluster, lb.mode)
            .await
            .map_err(|e| error::sdk("get", &what, &e))?;
        let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for node in nodes {
            wanted
                .entry(node.zone.clone())
                .or_default()
                .insert(node.name.clone());
        }
        // Groups for zones the backend service does not serve yet.
        let mut links = Vec::new();
        for zone in wanted.keys() {
            let g = self.ensure_group(&cluster.name, zone).await?;
            links.push(g.self_link.unwrap_or_default());
        }
        let bs = self.ensure_backends(cluster, lb.mode, bs, &links).await?;
        let p = self.project();
        for b in &bs.backends {
            let Some(g) = b.group.as_deref() else {
                continue;
            };
            let zone = g
                .split("/zones/")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .unwrap_or("")
                .to_owned();
            let group = short(g).to_owned();
            let current: BTreeSet<String> = self
                .group_members(&zone, &group)
                .await?
                .into_iter()
                .map(|(_, name)| name)
                .collect();
            let want = wanted.get(&zone).cloned().unwrap_or_default();
            let link = |name: &String| {
                let mut r = InstanceReference::default();
                r.instance = Some(format!("projects/{p}/zones/{zone}/instances/{name}"));
                r
            };
            let add: Vec<InstanceReference> = want.difference(&current).map(link).collect();
            let remove: Vec<InstanceReference> = current.difference(&want).map(link).collect();
            let gwhat = format!("instance group {group}");
            if !add.is_empty() {
                let mut body = InstanceGroupsAddInstancesRequest::default();
                body.instances = add;
                let op = self
                    .clients
                    .instance_groups
                    .add_instances()
                    .set_project(p)
                    .set_zone(&zone)
                    .set_instance_group(&group)
                    .set_request_id(request_id())
                    .set_body(body)
                    .send()
                    .await
                    .map_err(|e| error::sdk("add instances to", &gwhat, &e))?;
                self.clients
                    .wait(
                        p,
                        &Scope::Zone(zone.clone()),
                        op,
                        self.poll,
                        "add instances to",
                        &gwhat,
                    )
                    .await?;
            }
            if !remove.is_empty() {
                let mut body = InstanceGroupsRemoveInstancesRequest::default();
                body.instances = remove;
                let op = self
                    .clients
                    .instance_groups
                    .remove_instances()
                    .set_project(p)
                    .set_zone(&zone)
                    .set_instance_group(&group)
                    .set_request_id(request_id())
                    .set_body(body)
                    .send()
                    .await
                    .map_err(|e| error::sdk("remove instances from", &gwhat, &e))?;
                self.clients
                    .wait(
                        p,
                        &Scope::Zone(zone.clone()),
                        op,
                        self.poll,
                        "remove instances from",
                        &gwhat,
                    )
                    .await?;
            }
        }
        let mut targets: Vec<String> = self.members(cluster, &bs).await?.into_values().collect();
        targets.sort();
        targets.dedup();
        Ok(LoadBalancer {
            targets,
            ..lb.clone()
        })
    }

    /// Delete every part of either form of the balancer, dependents first.
    pub(crate) async fn delete_lb(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let n = Names::new(&cluster.name);
        let p = self.project();
        let c = &cluster.name;
        let region = &cluster.region;
        let rs = || Scope::Region(region.clone());
        let desc = |d: Option<&str>| owned_by(d, c);
        let mut done: Vec<Option<String>> = Vec::new();
        // Forwarding rules.
        done.push(self.remove_l4_rule(cluster).await?);
        for rule in [&n.https_rule, &n.http_rule] {
            done.push(
                self.remove(
                    format!("global forwarding rule {rule}"),
                    Scope::Global,
                    self.clients
                        .global_forwarding_rules
                        .get()
                        .set_project(p)
                        .set_forwarding_rule(rule)
                        .send(),
                    |f: &ForwardingRule| has_labels_of(&f.labels, c),
                    |rid| {
                        self.clients
                            .global_forwarding_rules
                            .delete()
                            .set_project(p)
                            .set_forwarding_rule(rule)
                            .set_request_id(rid)
                            .send()
                    },
                )
                .await?,
            );
        }
        // Proxies, then URL maps.
        done.push(
            self.remove(
                format!("target HTTPS proxy {}", n.https_proxy),
                Scope::Global,
                self.clients
                    .target_https_proxies
                    .get()
                    .set_project(p)
                    .set_target_https_proxy(&n.https_proxy)
                    .send(),
                |t: &TargetHttpsProxy| desc(t.description.as_deref()),
                |rid| {
                    self.clients
                        .target_https_proxies
                        .delete()
                        .set_project(p)
                        .set_target_https_proxy(&n.https_proxy)
                        .set_request_id(rid)
                        .send()
                },
            )
            .await?,
        );
        // The SSL policy triad made, once the HTTPS proxy no longer uses it.
        done.push(
            self.remove(
                format!("SSL policy {}", n.ssl_policy),
                Scope::Global,
                self.clients
                    .ssl_policies
                    .get()
                    .set_project(p)
                    .set_ssl_policy(&n.ssl_policy)
                    .send(),
                |t: &SslPolicy| desc(t.description.as_deref()),
                |rid| {
                    self.clients
                        .ssl_policies
                        .delete()
                        .set_project(p)
                        .set_ssl_policy(&n.ssl_policy)
                        .set_request_id(rid)
                        .send()
                },
            )
            .await?,
        );
        done.push(
            self.remove(
                format!("target HTTP proxy {}", n.http_proxy),
                Scope::Global,
                self.clients
                    .target_http_proxies
                    .get()
                    .set_project(p)
                    .set_target_http_proxy(&n.http_proxy)
                    .send(),
                |t: &TargetHttpProxy| desc(t.description.as_deref()),
                |rid| {
                    self.clients
                        .target_http_proxies
                        .delete()
                        .set_project(p)
                        .set_target_http_proxy(&n.http_proxy)
                        .set_request_id(rid)
                        .send()
                },
            )
            .await?,
        );
        for map in [&n.url_map, &n.redirect_map] {
            done.push(
                self.remove(
                    format!("URL map {map}"),
                    Scope::Global,
                    self.clients
                        .url_maps
                        .get()
                        .set_project(p)
                        .set_url_map(map)
                        .send(),
                    |u: &UrlMap| desc(u.description.as_deref()),
                    |rid| {
                        self.clients
                            .url_maps
                            .delete()
                            .set_project(p)
                            .set_url_map(map)
                            .set_request_id(rid)
                            .send()
                    },
                )
                .await?,
            );
        }
        // Backend services, health checks.
        let bs = &n.backend_service;
        done.push(
            self.remove(
                format!("backend service {bs}"),
                rs(),
                self.clients
                    .region_backend_services
                    .get()
                    .set_project(p)
                    .set_region(region)
                    .set_backend_service(bs)
                    .send(),
                |b: &BackendService| desc(b.description.as_deref()),
                |rid| {
                    self.clients
                        .region_backend_services
                        .delete()
                        .set_project(p)
                        .set_region(region)
                        .set_backend_service(bs)
                        .set_request_id(rid)
                        .send()
                },
            )
            .await?,
        );
        done.push(
            self.remove(
                format!("global backend service {bs}"),
                Scope::Global,
                self.clients
                    .backend_services
                    .get()
                    .set_project(p)
                    .set_backend_service(bs)
                    .send(),
                |b: &BackendService| desc(b.description.as_deref()),
                |rid| {
                    self.clients
                        .backend_services
                        .delete()
                        .set_project(p)
                        .set_backend_service(bs)
                        .set_request_id(rid)
                        .send()
                },
            )
            .await?,
        );
        let hc = &n.health_check;
        done.push(
            self.remove(
                format!("health check {hc}"),
                rs(),
                self.clients
                    .region_health_checks
                    .get()
                    .set_project(p)
                    .set_region(region)
                    .set_health_check(hc)
                    .send(),
                |h: &HealthCheck| desc(h.description.as_deref()),
                |rid| {
                    self.clients
                        .region_health_checks
                        .delete()
                        .set_project(p)
                        .set_region(region)
                        .set_health_check(hc)
                        .set_request_id(rid)
                        .send()
                },
            )
            .await?,
        );
        done.push(
            self.remove(
                format!("global health check {hc}"),
                Scope::Global,
                self.clients
                    .health_checks
                    .get()
                    .set_project(p)
                    .set_health_check(hc)
                    .send(),
                |h: &HealthCheck| desc(h.description.as_deref()),
                |rid| {
                    self.clients
                        .health_checks
                        .delete()
                        .set_project(p)
                        .set_health_check(hc)
                        .set_request_id(rid)
                        .send()
                },
            )
            .await?,
        );
        // Instance groups, one per zone.
        for zone in self.node_zones(cluster).await? {
            let g = n.group(&zone);
            done.push(
                self.remove(
                    format!("instance group {g}"),
                    Scope::Zone(zone.clone()),
                    self.clients
                        .instance_groups
                        .get()
                        .set_project(p)
                        .set_zone(&zone)
                        .set_instance_group(&g)
                        .send(),
                    |i: &InstanceGroup| desc(i.description.as_deref()),
                    |rid| {
                        self.clients
                            .instance_groups
                            .delete()
                            .set_project(p)
                            .set_zone(&zone)
                            .set_instance_group(&g)
                            .set_request_id(rid)
                            .send()
                    },
                )
                .await?,
            );
        }
        // Addresses last: the forwarding rules used them.
        done.push(
            self.remove(
                format!("address {}", n.address),
                rs(),
                self.clients
                    .addresses
                    .get()
                    .set_project(p)
                    .set_region(region)
                    .set_address(&n.address)
                    .send(),
                |a: &Address| has_labels_of(&a.labels, c),
                |rid| {
                    self.clients
                        .addresses
                        .delete()
                        .set_project(p)
                        .set_region(region)
                        .set_address(&n.address)
                        .set_request_id(rid)
                        .send()
                },
            )
            .await?,
        );
        done.push(
            self.remove(
                format!("global address {}", n.address),
                Scope::Global,
                self.clients
                    .global_addresses
                    .get()
                    .set_project(p)
                    .set_address(&n.address)
                    .send(),
                |a: &Address| has_labels_of(&a.labels, c),
                |rid| {
                    self.clients
                        .global_addresses
                        .delete()
                        .set_project(p)
                        .set_address(&n.address)
                        .set_request_id(rid)
                        .send()
                },
            )
            .await?,
        );
        Ok(done.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_fixed_per_cluster() {
        let n = Names::new("rancher");
        assert_eq!(n.group("us-central1-a"), "rancher-us-central1-a");
        assert_eq!(n.l4_rule, "rancher-fr");
        assert!(crate::settings::is_name(
            &Names::new("a-twenty-four-char-name1").group("northamerica-northeast1-a")
        ));
    }

    #[test]
    fn instance_links_parse() {
        assert_eq!(
            instance_key("https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-a/instances/rancher-1"),
            Some(("us-central1-a".into(), "rancher-1".into()))
        );
        assert_eq!(instance_key("projects/p/global/networks/default"), None);
    }

    #[test]
    fn balancer_names_round_trip_through_descriptions() {
        let d = balancer_description("rancher", "rancher-lb");
        assert!(owned_by(Some(&d), "rancher"));
        assert_eq!(balancer_name(Some(&d), "rancher"), "rancher-lb");
        assert_eq!(balancer_name(None, "rancher"), "rancher");
    }

    #[test]
    fn listeners_follow_the_mode() {
        let l4 = listeners(LbMode::L4, &[9345, 6443]);
        assert!(l4.iter().all(|l| l.protocol == "TCP"));
        assert_eq!(
            l4.iter().map(|l| l.port).collect::<Vec<_>>(),
            [80, 443, 9345, 6443]
        );
        assert_eq!(l4_ports(&[9345, 6443]), ["80", "443", "9345", "6443"]);
        let l7 = listeners(LbMode::L7, &[]);
        assert!(l7
            .iter()
            .any(|l| l.port == 443 && l.protocol == "HTTPS" && l.target_port == Some(80)));
    }
}
