//! Day 2: the balancer's in-place parts (health check path, the l7 certificate, the
//! labels with its fingerprint) changed to what the request asks, each only when it
//! differs, so a second call makes no change.

use std::collections::HashMap;

use google_cloud_compute_v1::model::{
    health_check, Address, ForwardingRule, GlobalSetLabelsRequest, HealthCheck, Operation,
    RegionSetLabelsRequest, TargetHttpsProxiesSetSslCertificatesRequest, TargetHttpsProxy,
};
use google_cloud_gax::error::Error as GaxError;
use triad_core::error::Result;
use triad_core::model::{LoadBalancer, LoadBalancerRequest};
use triad_core::spec::{ClusterRef, LbMode};

use super::create::{http_check, missing_certificate};
use super::part::Part;
use super::{balancer_names, scope_of, Names, REGISTRATION_PORTS, RETIRING};
use crate::client::{request_id, short, Scope};
use crate::error::{self, Failure};
use crate::GceProvider;

impl GceProvider {
    pub(crate) async fn update_lb(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        let n = Names::new(&cluster.name, &lb.name);
        let c = &cluster.name;
        let at = scope_of(cluster, lb.mode);
        let hc: HealthCheck = self
            .ensure(c, &at, &n.health_check, HealthCheck::default)
            .await?;
        let path = hc
            .http_health_check
            .as_ref()
            .and_then(|h| h.request_path.as_deref());
        if path != Some(request.health_check_path.as_str()) {
            let mut patch = HealthCheck::default();
            patch.r#type = Some(health_check::Type::from("HTTP"));
            patch.http_health_check = Some(http_check(&request.health_check_path));
            self.patch(&at, &n.health_check, patch, "set the path of")
                .await?;
        }
        if let (LbMode::L7, Some(cert)) = (lb.mode, &request.certificate) {
            self.set_certificate(c, &n, cert).await?;
        }
        let labels: HashMap<String, String> = request.labels.clone().into_iter().collect();
        // The forwarding rules and addresses, each where it lives: the registration
        // ports' rules are regional in either mode, and in l7 on an internal
        // address of their own.
        let region = Scope::Region(cluster.region.clone());
        let registration: Vec<String> = lb
            .listeners
            .iter()
            .filter(|l| REGISTRATION_PORTS.contains(&l.port))
            .map(|l| n.registration(l.port).rule)
            .collect();
        let mut rules: Vec<(&Scope, String)> = match lb.mode {
            LbMode::L4 => vec![(&at, n.l4_rule.clone())],
            LbMode::L7 => vec![(&at, n.https_rule.clone()), (&at, n.http_rule.clone())],
        };
        rules.extend(registration.iter().map(|r| (&region, r.clone())));
        let mut addresses = vec![(&at, n.address.clone())];
        if lb.mode == LbMode::L7 && !registration.is_empty() {
            addresses.push((&region, n.internal.clone()));
        }
        for (at, rule) in &rules {
            let fr: ForwardingRule = self.ensure(c, at, rule, ForwardingRule::default).await?;
            // The retiring mark is the provider's own, not the spec's: it stays.
            let mut labels = labels.clone();
            if let Some(mark) = fr.labels.get(RETIRING) {
                labels.insert(RETIRING.to_owned(), mark.clone());
            }
            let labels = &labels;
            if fr.labels != *labels {
                let what = format!("{} {rule}", ForwardingRule::noun(at));
                let op = self.set_labels(at, rule, labels, fr.label_fingerprint, true);
                self.labelled(at, op.await, &what).await?;
            }
        }
        for (at, name) in &addresses {
            let addr: Address = self.ensure(c, at, name, Address::default).await?;
            if addr.labels != labels {
                let what = format!("{} {name}", Address::noun(at));
                let op = self.set_labels(at, name, &labels, addr.label_fingerprint, false);
                self.labelled(at, op.await, &what).await?;
            }
        }
        Ok(LoadBalancer {
            labels: request.labels.clone(),
            ..lb.clone()
        })
    }

    /// Point the HTTPS proxy at `cert` when it serves another one.
    async fn set_certificate(&self, c: &str, n: &Names, cert: &str) -> Result<()> {
        let g = &Scope::Global;
        let proxy: TargetHttpsProxy = self
            .ensure(c, g, &n.https_proxy, TargetHttpsProxy::default)
            .await?;
        let link = self.certificate_link(cert);
        let have: Vec<&str> = proxy.ssl_certificates.iter().map(|s| short(s)).collect();
        if have == [short(&link)] {
            return Ok(());
        }
        let what = format!("target HTTPS proxy {}", n.https_proxy);
        let mut body = TargetHttpsProxiesSetSslCertificatesRequest::default();
        body.ssl_certificates = vec![link];
        let op = self
            .clients
            .target_https_proxies
            .set_ssl_certificates()
            .set_project(self.project())
            .set_target_https_proxy(&n.https_proxy)
            .set_request_id(request_id())
            .set_body(body)
            .send()
            .await
            .map_err(|e| error::sdk("set the certificate of", &what, &e))
            .map_err(|e| missing_certificate(e, cert, self.project()))?;
        self.op_wait(g, op, "set the certificate of", &what).await?;
        tracing::info!(resource = %what, certificate = %cert, "set certificate");
        Ok(())
    }

    /// `setLabels` on a forwarding rule (`rule`) or an address in `at`.
    async fn set_labels(
        &self,
        at: &Scope,
        name: &str,
        labels: &HashMap<String, String>,
        fingerprint: Option<bytes::Bytes>,
        rule: bool,
    ) -> std::result::Result<Operation, GaxError> {
        let (c, p, rid) = (&self.clients, self.project(), request_id());
        match at {
            Scope::Region(r) => {
                let mut body = RegionSetLabelsRequest::default();
                body.labels = labels.clone();
                body.label_fingerprint = fingerprint;
                if rule {
                    let b = c.forwarding_rules.set_labels().set_project(p).set_region(r);
                    b.set_resource(name)
                        .set_request_id(rid)
                        .set_body(body)
                        .send()
                        .await
                } else {
                    let b = c.addresses.set_labels().set_project(p).set_region(r);
                    b.set_resource(name)
                        .set_request_id(rid)
                        .set_body(body)
                        .send()
                        .await
                }
            }
            _ => {
                let mut body = GlobalSetLabelsRequest::default();
                body.labels = labels.clone();
                body.label_fingerprint = fingerprint;
                if rule {
                    let b = c.global_forwarding_rules.set_labels().set_project(p);
                    b.set_resource(name).set_body(body).send().await
                } else {
                    let b = c.global_addresses.set_labels().set_project(p);
                    b.set_resource(name).set_body(body).send().await
                }
            }
        }
    }

    async fn labelled(
        &self,
        at: &Scope,
        op: std::result::Result<Operation, GaxError>,
        what: &str,
    ) -> Result<()> {
        let op = op.map_err(|e| error::sdk("set the labels of", what, &e))?;
        self.op_wait(at, op, "set the labels of", what).await?;
        tracing::info!(resource = %what, "set labels");
        Ok(())
    }

    /// Mark the main forwarding rule of the cluster's other balancer (the one that
    /// stays) while balancer `retiring` is deleted, or clear the mark once it is
    /// gone: discovery lists the labelled addresses only when a rule carries the
    /// mark (or no balancer has a rule), so a retire that crashed after the old
    /// balancer's rules but before its address is still found and finished.
    pub(super) async fn mark_retiring(
        &self,
        cluster: &ClusterRef,
        retiring: &str,
        on: bool,
    ) -> Result<()> {
        let region = Scope::Region(cluster.region.clone());
        for other in balancer_names(&cluster.name) {
            if other == retiring {
                continue;
            }
            let n = Names::new(&cluster.name, &other);
            for (at, rule) in [(&region, &n.l4_rule), (&Scope::Global, &n.https_rule)] {
                let fr = match ForwardingRule::get(self, at, rule).await {
                    Ok(fr) if fr.is_owned_by(&cluster.name) => fr,
                    Ok(_) => continue,
                    Err(e) if Failure::of(&e).is_not_found() => continue,
                    Err(e) => {
                        let what = format!("{} {rule}", ForwardingRule::noun(at));
                        return Err(error::sdk("get", &what, &e));
                    }
                };
                let mut labels = fr.labels.clone();
                if on {
                    labels.insert(RETIRING.to_owned(), retiring.to_owned());
                } else {
                    labels.remove(RETIRING);
                }
                if labels != fr.labels {
                    let what = format!("{} {rule}", ForwardingRule::noun(at));
                    let op = self.set_labels(at, rule, &labels, fr.label_fingerprint, true);
                    self.labelled(at, op.await, &what).await?;
                }
            }
        }
        Ok(())
    }
}
