//! Making the balancer: the parts of either form, in dependency order, each a
//! get-or-insert ([`GceProvider::ensure`]).

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use google_cloud_compute_v1::model::{
    address, backend, backend_service, forwarding_rule, health_check, ssl_policy, Address, Backend,
    BackendService, Firewall, ForwardingRule, HTTPHealthCheck, HealthCheck, HttpRedirectAction,
    InstanceGroup, NamedPort, SslPolicy, SslPolicyReference, TCPHealthCheck, TargetHttpProxy,
    TargetHttpsProxy, UrlMap,
};
use triad_core::error::{Error, FailureKind, Result};
use triad_core::labels::Role;
use triad_core::model::{LoadBalancer, LoadBalancerRequest};
use triad_core::spec::{ClusterRef, LbMode, LbScheme};

use super::{balancer_description, l4_ports, scope_of, Names, Tier, REGISTRATION_PORTS};
use crate::client::{request_id, short, Scope};
use crate::error::{self, own};
use crate::firewall::{allowed, Rule};
use crate::nodes::ownership;
use crate::settings::HEALTH_CHECK_RANGES;
use crate::GceProvider;

impl GceProvider {
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
        let policy = self
            .ensure(c, &Scope::Global, &n.ssl_policy, || {
                let mut sp = SslPolicy::default();
                sp.name = Some(n.ssl_policy.clone());
                sp.description = Some(ownership(c, Role::Lb));
                sp.profile = Some(ssl_policy::Profile::Modern);
                sp.min_tls_version = Some(ssl_policy::MinTlsVersion::Tls12);
                sp
            })
            .await?;
        Ok(policy
            .self_link
            .unwrap_or_else(|| format!("projects/{p}/global/sslPolicies/{}", n.ssl_policy)))
    }

    pub(super) async fn ensure_group(&self, cluster: &str, zone: &str) -> Result<InstanceGroup> {
        let name = Names::new(cluster, cluster).group(zone);
        self.ensure(cluster, &Scope::Zone(zone.to_owned()), &name, || {
            let mut g = InstanceGroup::default();
            g.name = Some(name.clone());
            g.description = Some(ownership(cluster, Role::Lb));
            g.network = Some(self.network_link_pub());
            let mut port = NamedPort::default();
            port.name = Some("http".into());
            port.port = Some(80);
            g.named_ports = vec![port];
            g
        })
        .await
    }

    fn health_check_body(
        &self,
        cluster: &str,
        n: &Names,
        request: &LoadBalancerRequest,
    ) -> HealthCheck {
        let mut hc = check_body(cluster, &n.health_check);
        hc.r#type = Some(health_check::Type::from("HTTP"));
        hc.http_health_check = Some(http_check(&request.health_check_path));
        hc
    }

    fn backend_body(
        &self,
        cluster: &str,
        name: &str,
        tier: Tier,
        hc: &str,
        groups: &[String],
    ) -> BackendService {
        let mut bs = BackendService::default();
        bs.name = Some(name.to_owned());
        bs.description = Some(ownership(cluster, Role::Lb));
        bs.health_checks = vec![hc.to_owned()];
        bs.backends = groups.iter().map(|g| backend(tier, g)).collect();
        match tier {
            Tier::External | Tier::Internal => {
                let scheme = if tier == Tier::Internal {
                    "INTERNAL"
                } else {
                    "EXTERNAL"
                };
                bs.load_balancing_scheme = Some(backend_service::LoadBalancingScheme::from(scheme));
                bs.protocol = Some(backend_service::Protocol::from("TCP"));
            }
            Tier::Http => {
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

    /// Make the backend service `bs` (in `at`, of `tier`) serve every group in
    /// `groups` (self-links), each with the balancing mode of `tier` (one made with
    /// another mode is set to it).
    pub(super) async fn ensure_backends(
        &self,
        at: &Scope,
        tier: Tier,
        bs: BackendService,
        groups: &[String],
    ) -> Result<BackendService> {
        let want = backend(tier, "").balancing_mode;
        let have: BTreeSet<String> = bs
            .backends
            .iter()
            .filter_map(|b| b.group.as_deref().map(|g| short(g).to_owned()))
            .collect();
        let missing: Vec<&String> = groups.iter().filter(|g| !have.contains(short(g))).collect();
        if missing.is_empty() && bs.backends.iter().all(|b| b.balancing_mode == want) {
            return Ok(bs);
        }
        let name = bs.name.clone().unwrap_or_default();
        let mut patch = BackendService::default();
        patch.backends = bs
            .backends
            .iter()
            .filter_map(|b| b.group.as_deref())
            .chain(missing.iter().map(|g| g.as_str()))
            .map(|g| backend(tier, g))
            .collect();
        patch.fingerprint = bs.fingerprint.clone();
        self.patch(at, &name, patch, "set the backends of").await?;
        self.backend_service(at, &name).await
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
        let cert =
            match (request.mode, &request.certificate) {
                (LbMode::L7, None) => return Err(Error::invalid(
                    "load_balancer.certificate",
                    "an l7 balancer needs a certificate",
                    "name a Compute Engine SSL certificate (gcloud compute ssl-certificates list)",
                )),
                (_, cert) => cert.as_deref().unwrap_or_default(),
            };
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
        let at = scope_of(cluster, request.mode);
        let n = Names::new(&cluster.name, &request.name);
        let c = &cluster.name;
        let addr = self
            .ensure(c, &at, &n.address, || {
                address_body(c, &n.address, "EXTERNAL", request)
            })
            .await?;
        let hc = self
            .ensure(c, &at, &n.health_check, || {
                self.health_check_body(c, &n, request)
            })
            .await?;
        let hc_link = hc.self_link.unwrap_or_default();
        let web = Tier::web(request.mode);
        let bs = self
            .ensure(c, &at, &n.backend_service, || {
                self.backend_body(c, &n.backend_service, web, &hc_link, &groups)
            })
            .await?;
        let bs = self.ensure_backends(&at, web, bs, &groups).await?;
        let bs_link = bs.self_link.unwrap_or_default();
        let ip = addr.address.unwrap_or_default();
        match request.mode {
            LbMode::L4 => {
                self.create_l4(cluster, &n, request, &groups, &bs_link, &ip)
                    .await?
            }
            LbMode::L7 => {
                self.create_l7(cluster, &n, request, cert, &bs_link, &ip)
                    .await?;
                self.create_internal(cluster, &n, request, &groups).await?
            }
        }
        let found = self.discover_all(cluster).await?;
        found
            .into_iter()
            .find(|lb| lb.name == request.name && lb.endpoint.is_some())
            .ok_or_else(|| {
                own(
                    "create load balancer",
                    &format!("load balancer {}", request.name),
                    FailureKind::NotFound,
                    "the balancer's forwarding rule is gone right after it was made",
                )
            })
    }

    /// The passthrough forwarding rules on one address: 80 and 443 to the backend
    /// service with the HTTP check, then the registration ports
    /// ([`GceProvider::ensure_registration`]); and the firewall rule that lets
    /// their clients in.
    async fn create_l4(
        &self,
        cluster: &ClusterRef,
        n: &Names,
        request: &LoadBalancerRequest,
        groups: &[String],
        bs_link: &str,
        ip: &str,
    ) -> Result<()> {
        let c = &cluster.name;
        let anyone = ["0.0.0.0/0".to_owned()];
        self.ensure_open(
            c,
            &n.web_rule,
            &l4_ports(&request.registration_ports),
            &anyone,
        )
        .await?;
        // The web rule first: one made with the registration ports (before they had
        // rules of their own) is replaced, which frees them on the address.
        let rule = Passthrough {
            name: &n.l4_rule,
            ports: l4_ports(&[]),
            backend_service: bs_link,
            ip,
            subnetwork: None,
        };
        self.ensure_passthrough_rule(cluster, request, rule).await?;
        self.ensure_registration(cluster, n, request, groups, ip, None)
            .await
    }

    /// l7: the registration ports on an internal passthrough Network Load Balancer
    /// beside the HTTPS one (see the module doc): an address reserved in the nodes'
    /// subnetwork, shared by the ports' rules (purpose `SHARED_LOADBALANCER_VIP`:
    /// "To share an IP address, you set the purpose of the IP address to
    /// SHARED_LOADBALANCER_VIP", cloud.google.com/load-balancing/docs/internal/
    /// multiple-forwarding-rules-same-ip), and a firewall rule that lets the
    /// subnetwork (the nodes, its clients) and Google's health checkers reach the
    /// nodes on those ports. Without registration ports, these parts are deleted.
    async fn create_internal(
        &self,
        cluster: &ClusterRef,
        n: &Names,
        request: &LoadBalancerRequest,
        groups: &[String],
    ) -> Result<()> {
        let region = Scope::Region(cluster.region.clone());
        let c = &cluster.name;
        if request.registration_ports.is_empty() {
            self.ensure_registration(cluster, n, request, groups, "", None)
                .await?;
            self.remove::<Firewall>(c, &Scope::Global, &n.internal)
                .await?;
            self.remove::<Address>(c, &region, &n.internal).await?;
            return Ok(());
        }
        let subnet = self.node_subnetwork(cluster).await?;
        let subnet_link = subnet.self_link.clone().unwrap_or_default();
        let sources: Vec<String> = HEALTH_CHECK_RANGES
            .iter()
            .map(ToString::to_string)
            .chain(subnet.ip_cidr_range.clone())
            .collect();
        let ports: Vec<String> = request
            .registration_ports
            .iter()
            .map(ToString::to_string)
            .collect();
        self.ensure_open(c, &n.internal, &ports, &sources).await?;
        let addr = self
            .ensure(c, &region, &n.internal, || {
                let mut a = address_body(c, &n.internal, "INTERNAL", request);
                a.purpose = Some(address::Purpose::from("SHARED_LOADBALANCER_VIP"));
                a.subnetwork = Some(subnet_link.clone());
                a
            })
            .await?;
        let ip = addr.address.unwrap_or_default();
        self.ensure_registration(cluster, n, request, groups, &ip, Some(&subnet_link))
            .await
    }

    /// Each registration port the request asks for: a passthrough rule of its own
    /// on `ip` to a backend service of its own with a TCP check on that port, the
    /// same instance groups behind; external (l4), or internal in `subnetwork`
    /// (l7). The parts of a registration port the request no longer asks for are
    /// deleted.
    async fn ensure_registration(
        &self,
        cluster: &ClusterRef,
        n: &Names,
        request: &LoadBalancerRequest,
        groups: &[String],
        ip: &str,
        subnetwork: Option<&str>,
    ) -> Result<()> {
        let at = Scope::Region(cluster.region.clone());
        let c = &cluster.name;
        let tier = if subnetwork.is_some() {
            Tier::Internal
        } else {
            Tier::External
        };
        for port in REGISTRATION_PORTS {
            let r = n.registration(port);
            if !request.registration_ports.contains(&port) {
                self.remove::<ForwardingRule>(c, &at, &r.rule).await?;
                self.remove::<BackendService>(c, &at, &r.backend_service)
                    .await?;
                self.remove::<HealthCheck>(c, &at, &r.health_check).await?;
                continue;
            }
            let hc = self
                .ensure(c, &at, &r.health_check, || {
                    let mut hc = check_body(c, &r.health_check);
                    hc.r#type = Some(health_check::Type::from("TCP"));
                    let mut tcp = TCPHealthCheck::default();
                    tcp.port = Some(i32::from(port));
                    hc.tcp_health_check = Some(tcp);
                    hc
                })
                .await?;
            let hc_link = hc.self_link.unwrap_or_default();
            let bs = self
                .ensure(c, &at, &r.backend_service, || {
                    self.backend_body(c, &r.backend_service, tier, &hc_link, groups)
                })
                .await?;
            let bs = self.ensure_backends(&at, tier, bs, groups).await?;
            let bs_link = bs.self_link.unwrap_or_default();
            let rule = Passthrough {
                name: &r.rule,
                ports: vec![port.to_string()],
                backend_service: &bs_link,
                ip,
                subnetwork,
            };
            self.ensure_passthrough_rule(cluster, request, rule).await?;
        }
        Ok(())
    }

    /// The passthrough rule `rule`. A rule's ports cannot change: one of that name
    /// with other ports is replaced, on the same address.
    async fn ensure_passthrough_rule(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        rule: Passthrough<'_>,
    ) -> Result<()> {
        let at = Scope::Region(cluster.region.clone());
        let name = rule.name;
        for attempt in 0..2 {
            let fr = self
                .ensure(&cluster.name, &at, name, || {
                    let mut fr = ForwardingRule::default();
                    fr.name = Some(name.to_owned());
                    fr.description = Some(balancer_description(&cluster.name, &request.name));
                    let scheme = if rule.subnetwork.is_some() {
                        "INTERNAL"
                    } else {
                        "EXTERNAL"
                    };
                    fr.load_balancing_scheme =
                        Some(forwarding_rule::LoadBalancingScheme::from(scheme));
                    if let Some(subnet) = rule.subnetwork {
                        // An internal rule lives in a network and subnetwork.
                        fr.network = Some(self.network_link_pub());
                        fr.subnetwork = Some(subnet.to_owned());
                    }
                    fr.ip_protocol = Some(forwarding_rule::IPProtocol::from("TCP"));
                    fr.ports = rule.ports.clone();
                    fr.backend_service = Some(rule.backend_service.to_owned());
                    fr.ip_address = Some(rule.ip.to_owned());
                    fr.labels = request.labels.clone().into_iter().collect();
                    fr
                })
                .await?;
            if fr.ports == rule.ports {
                return Ok(());
            }
            if attempt == 0 {
                tracing::info!(rule = %name, "replacing the forwarding rule: its ports changed");
                self.remove::<ForwardingRule>(&cluster.name, &at, name)
                    .await?;
            }
        }
        Err(own(
            "create load balancer",
            &format!("forwarding rule {name}"),
            FailureKind::Conflict,
            "the forwarding rule still has other ports after it was replaced",
        ))
    }

    /// The firewall rule `name` that lets `sources` reach the nodes on `ports` (a
    /// passthrough rule keeps the client's address), with exactly those ports and
    /// sources.
    async fn ensure_open(
        &self,
        cluster: &str,
        name: &str,
        ports: &[String],
        sources: &[String],
    ) -> Result<()> {
        let rule = Rule {
            name: name.to_owned(),
            tcp: ports.to_vec(),
            udp: vec![],
            sources: sources.to_vec(),
            source_tags: vec![],
        };
        let g = &Scope::Global;
        let fw = self
            .ensure(cluster, g, name, || {
                self.firewall_body(cluster, Role::Lb, &rule)
            })
            .await?;
        let want = allowed(&rule);
        if fw.allowed != want || fw.source_ranges != rule.sources {
            let mut patch = Firewall::default();
            patch.allowed = want;
            patch.source_ranges = rule.sources.clone();
            let what = format!("firewall rule {name}");
            let op = self
                .clients
                .firewalls
                .patch()
                .set_project(self.project())
                .set_firewall(name)
                .set_request_id(request_id())
                .set_body(patch)
                .send()
                .await
                .map_err(|e| error::sdk("set the ports of", &what, &e))?;
            self.op_wait(g, op, "set the ports of", &what).await?;
        }
        Ok(())
    }

    pub(super) fn certificate_link(&self, cert: &str) -> String {
        if cert.contains('/') {
            cert.to_owned()
        } else {
            format!("projects/{}/global/sslCertificates/{cert}", self.project())
        }
    }

    /// The URL maps, proxies and forwarding rules of the HTTPS balancer and its
    /// HTTP → HTTPS redirect.
    async fn create_l7(
        &self,
        cluster: &ClusterRef,
        n: &Names,
        request: &LoadBalancerRequest,
        cert: &str,
        bs_link: &str,
        ip: &str,
    ) -> Result<()> {
        let p = self.project();
        let c = &cluster.name;
        let g = &Scope::Global;
        let mut links = BTreeMap::new();
        for (map, redirect) in [(&n.url_map, false), (&n.redirect_map, true)] {
            let um = self
                .ensure(c, g, map, || {
                    let mut um = UrlMap::default();
                    um.name = Some(map.clone());
                    um.description = Some(ownership(c, Role::Lb));
                    if redirect {
                        let mut r = HttpRedirectAction::default();
                        r.https_redirect = Some(true);
                        r.strip_query = Some(false);
                        um.default_url_redirect = Some(r);
                    } else {
                        um.default_service = Some(bs_link.to_owned());
                    }
                    um
                })
                .await?;
            links.insert(redirect, um.self_link.unwrap_or_default());
        }
        let policy_link = self.ensure_ssl_policy(c, n).await?;
        let cert_link = self.certificate_link(cert);
        let https = self
            .ensure(c, g, &n.https_proxy, || {
                let mut t = TargetHttpsProxy::default();
                t.name = Some(n.https_proxy.clone());
                t.description = Some(ownership(c, Role::Lb));
                t.url_map = Some(links[&false].clone());
                t.ssl_certificates = vec![cert_link.clone()];
                t.ssl_policy = Some(policy_link.clone());
                t
            })
            .await
            .map_err(|e| missing_certificate(e, cert, p))?;
        if https.ssl_policy.as_deref().map(short) != Some(short(&policy_link)) {
            let what = format!("target HTTPS proxy {}", n.https_proxy);
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
            self.op_wait(g, op, "set the SSL policy of", &what).await?;
            tracing::info!(resource = %what, policy = %policy_link, "set SSL policy");
        }
        let http = self
            .ensure(c, g, &n.http_proxy, || {
                let mut t = TargetHttpProxy::default();
                t.name = Some(n.http_proxy.clone());
                t.description = Some(ownership(c, Role::Lb));
                t.url_map = Some(links[&true].clone());
                t
            })
            .await?;
        for (rule, port, target) in [
            (&n.https_rule, "443", https.self_link.unwrap_or_default()),
            (&n.http_rule, "80", http.self_link.unwrap_or_default()),
        ] {
            self.ensure(c, g, rule, || {
                let mut fr = ForwardingRule::default();
                fr.name = Some(rule.clone());
                fr.description = Some(balancer_description(c, &request.name));
                fr.load_balancing_scheme = Some(forwarding_rule::LoadBalancingScheme::from(
                    "EXTERNAL_MANAGED",
                ));
                fr.ip_protocol = Some(forwarding_rule::IPProtocol::from("TCP"));
                fr.port_range = Some(port.into());
                fr.target = Some(target.clone());
                fr.ip_address = Some(ip.to_owned());
                fr.labels = request.labels.clone().into_iter().collect();
                fr
            })
            .await?;
        }
        Ok(())
    }
}

/// The address `name` of `cluster` of type `kind`, with the request's labels.
fn address_body(cluster: &str, name: &str, kind: &str, request: &LoadBalancerRequest) -> Address {
    let mut a = Address::default();
    a.name = Some(name.to_owned());
    a.description = Some(ownership(cluster, Role::Lb));
    a.address_type = Some(address::AddressType::from(kind));
    a.labels = request.labels.clone().into_iter().collect();
    a
}

/// A passthrough forwarding rule: `ports` on `ip` to `backend_service`; internal in
/// `subnetwork` when given, else external.
struct Passthrough<'a> {
    name: &'a str,
    ports: Vec<String>,
    backend_service: &'a str,
    ip: &'a str,
    subnetwork: Option<&'a str>,
}

/// The backend of `group` in a backend service of `tier`.
///
/// One instance group per zone backs every service of the cluster: the l7 web
/// service and, beside it, the internal passthrough services of the registration
/// ports (and, during a mode change, the old l4 balancer's services too). Google
/// wants one group's balancing modes across backend services compatible — the
/// same, or CONNECTION with RATE; UTILIZATION pairs with neither
/// (cloud.google.com/load-balancing/docs/backend-service, "Restrictions and
/// guidance for instance groups"; github.com/kubernetes/ingress-nginx/issues/112:
/// "with utilization mode we can not use ILB and HTTP LB on the same IG") — and a
/// passthrough service (INTERNAL, EXTERNAL) balances by CONNECTION only ("Balancing
/// mode must be CONNECTION for an INTERNAL backend service", Google's 400). So the
/// HTTP service balances by RATE, whose one required maximum is set per instance
/// and high enough never to be the limit (within a group the mode does not choose
/// the instance).
pub(super) fn backend(tier: Tier, group: &str) -> Backend {
    let mut b = Backend::default();
    b.group = Some(group.to_owned());
    match tier {
        Tier::External | Tier::Internal => {
            b.balancing_mode = Some(backend::BalancingMode::from("CONNECTION"));
        }
        Tier::Http => {
            b.balancing_mode = Some(backend::BalancingMode::from("RATE"));
            b.max_rate_per_instance = Some(RATE_PER_INSTANCE);
            b.capacity_scaler = Some(1.0);
        }
    }
    b
}

/// The l7 web service's RATE maximum per instance (requests per second): far above
/// what one Rancher node serves, so it only satisfies the API.
const RATE_PER_INSTANCE: f32 = 100_000.0;

/// A health check `name` of `cluster` with triad's timing, its kind still to set.
fn check_body(cluster: &str, name: &str) -> HealthCheck {
    let mut hc = HealthCheck::default();
    hc.name = Some(name.to_owned());
    hc.description = Some(ownership(cluster, Role::Lb));
    hc.check_interval_sec = Some(10);
    hc.timeout_sec = Some(6);
    hc.healthy_threshold = Some(3);
    hc.unhealthy_threshold = Some(3);
    hc
}

/// The HTTP check on port 80 at `path`.
pub(super) fn http_check(path: &str) -> HTTPHealthCheck {
    let mut http = HTTPHealthCheck::default();
    http.port = Some(80);
    http.request_path = Some(path.to_owned());
    http
}

/// A missing SSL certificate named as the spec field to fix.
pub(super) fn missing_certificate(e: Error, cert: &str, project: &str) -> Error {
    match e.kind() {
        Some(FailureKind::NotFound) if e.to_string().contains("sslCertificates") => Error::invalid(
            "load_balancer.certificate",
            format!("SSL certificate `{cert}` does not exist in project `{project}`"),
            "create it (gcloud compute ssl-certificates create) or name an existing one",
        ),
        _ => e,
    }
}
