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

use super::{balancer_description, l4_ports, scope_of, Names, REGISTRATION_PORTS};
use crate::client::{request_id, short, Scope};
use crate::error::{self, own};
use crate::firewall::{allowed, Rule};
use crate::nodes::ownership;
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
        mode: LbMode,
        hc: &str,
        groups: &[String],
    ) -> BackendService {
        let mut bs = BackendService::default();
        bs.name = Some(name.to_owned());
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

    /// Make the backend service `bs` (in `at`) serve every group in `groups`
    /// (self-links).
    pub(super) async fn ensure_backends(
        &self,
        at: &Scope,
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
        let name = bs.name.clone().unwrap_or_default();
        let mut patch = BackendService::default();
        patch.backends = bs.backends.clone();
        patch
            .backends
            .extend(missing.iter().map(|g| self.backend(mode, g)));
        patch.fingerprint = bs.fingerprint.clone();
        self.patch(at, &name, patch, "add backends to").await?;
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
                let mut a = Address::default();
                a.name = Some(n.address.clone());
                a.description = Some(ownership(c, Role::Lb));
                a.address_type = Some(address::AddressType::from("EXTERNAL"));
                a.labels = request.labels.clone().into_iter().collect();
                a
            })
            .await?;
        let hc = self
            .ensure(c, &at, &n.health_check, || {
                self.health_check_body(c, &n, request)
            })
            .await?;
        let hc_link = hc.self_link.unwrap_or_default();
        let bs = self
            .ensure(c, &at, &n.backend_service, || {
                self.backend_body(c, &n.backend_service, request.mode, &hc_link, &groups)
            })
            .await?;
        let bs = self.ensure_backends(&at, request.mode, bs, &groups).await?;
        let bs_link = bs.self_link.unwrap_or_default();
        let ip = addr.address.unwrap_or_default();
        match request.mode {
            LbMode::L4 => {
                self.create_l4(cluster, &n, request, &groups, &bs_link, &ip)
                    .await?
            }
            LbMode::L7 => {
                self.create_l7(cluster, &n, request, cert, &bs_link, &ip)
                    .await?
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
    /// service with the HTTP check, each registration port to a backend service of
    /// its own with a TCP check on that port (the same instance groups behind all);
    /// and the firewall rule that lets their clients in. The parts of a registration
    /// port the request no longer asks for are deleted.
    async fn create_l4(
        &self,
        cluster: &ClusterRef,
        n: &Names,
        request: &LoadBalancerRequest,
        groups: &[String],
        bs_link: &str,
        ip: &str,
    ) -> Result<()> {
        let at = Scope::Region(cluster.region.clone());
        let c = &cluster.name;
        self.ensure_open(c, &n.web_rule, &l4_ports(&request.registration_ports))
            .await?;
        // The web rule first: one made with the registration ports (before they had
        // rules of their own) is replaced, which frees them on the address.
        self.ensure_l4_rule(cluster, request, &n.l4_rule, l4_ports(&[]), bs_link, ip)
            .await?;
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
                    self.backend_body(c, &r.backend_service, LbMode::L4, &hc_link, groups)
                })
                .await?;
            let bs = self.ensure_backends(&at, LbMode::L4, bs, groups).await?;
            let bs_link = bs.self_link.unwrap_or_default();
            self.ensure_l4_rule(
                cluster,
                request,
                &r.rule,
                vec![port.to_string()],
                &bs_link,
                ip,
            )
            .await?;
        }
        Ok(())
    }

    /// The passthrough rule `name` for `ports` to `bs_link` on `ip`. A rule's ports
    /// cannot change: one of that name with other ports is replaced, on the same
    /// address.
    async fn ensure_l4_rule(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        name: &str,
        want_ports: Vec<String>,
        bs_link: &str,
        ip: &str,
    ) -> Result<()> {
        let at = Scope::Region(cluster.region.clone());
        for attempt in 0..2 {
            let fr = self
                .ensure(&cluster.name, &at, name, || {
                    let mut fr = ForwardingRule::default();
                    fr.name = Some(name.to_owned());
                    fr.description = Some(balancer_description(&cluster.name, &request.name));
                    fr.load_balancing_scheme =
                        Some(forwarding_rule::LoadBalancingScheme::from("EXTERNAL"));
                    fr.ip_protocol = Some(forwarding_rule::IPProtocol::from("TCP"));
                    fr.ports = want_ports.clone();
                    fr.backend_service = Some(bs_link.to_owned());
                    fr.ip_address = Some(ip.to_owned());
                    fr.labels = request.labels.clone().into_iter().collect();
                    fr
                })
                .await?;
            if fr.ports == want_ports {
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

    /// The firewall rule `name` that lets anyone reach the nodes on `ports` (a
    /// passthrough rule keeps the client's address), with exactly those ports.
    async fn ensure_open(&self, cluster: &str, name: &str, ports: &[String]) -> Result<()> {
        let rule = Rule {
            name: name.to_owned(),
            tcp: ports.to_vec(),
            udp: vec![],
            sources: vec!["0.0.0.0/0".into()],
            source_tags: vec![],
        };
        let g = &Scope::Global;
        let fw = self
            .ensure(cluster, g, name, || {
                self.firewall_body(cluster, Role::Lb, &rule)
            })
            .await?;
        let want = allowed(&rule);
        if fw.allowed != want {
            let mut patch = Firewall::default();
            patch.allowed = want;
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
