//! [`LoadBalancerProvider`] for the simulated cloud: target groups, a balancer and
//! its listeners, shaped like an AWS NLB (l4) or ALB (l7).
//!
//! `parts` models what a request needs and builds the [`LoadBalancer`] from what
//! was discovered, `api` holds the simulated API calls, and this file the trait
//! implementation that converges one onto the other.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use triad_core::labels::Role;
use triad_core::model::{LbState, LoadBalancer, LoadBalancerRequest, Node};
use triad_core::spec::{ClusterRef, LbMode, ValidSpec};
use triad_core::{Error, FailureKind, LoadBalancerProvider, Result};

use crate::world::SimTargetGroup;
use crate::{SimApi, SimCloud, PROVIDER};

mod api;
mod parts;

use api::gone;
use parts::{build, is_tg_of, wanted, Parts};

#[async_trait]
impl LoadBalancerProvider for SimCloud {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        SimCloud::check_sim_section(spec)
    }

    async fn discover_load_balancer(&self, cluster: &ClusterRef) -> Result<Option<LoadBalancer>> {
        let parts = self.discover_parts(cluster, None).await?;
        Ok(build(&parts))
    }

    fn coexists(&self) -> bool {
        true
    }

    /// In l7 the registration ports are served apart, as on AWS (see
    /// `parts::registration_endpoint`).
    fn registration_apart(&self, mode: LbMode) -> bool {
        mode == LbMode::L7
    }

    async fn discover_load_balancers(&self, cluster: &ClusterRef) -> Result<Vec<LoadBalancer>> {
        let mut out = Vec::new();
        for b in self.describe_balancers(cluster).await? {
            let parts = self.discover_parts(cluster, Some(&b.name)).await?;
            out.extend(build(&parts));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_load_balancer_named(
        &self,
        cluster: &ClusterRef,
        name: &str,
    ) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        for b in self
            .describe_balancers(cluster)
            .await?
            .into_iter()
            .filter(|b| b.name == name)
        {
            deleted.extend(self.delete_balancer(&b).await?);
        }
        for tg in self
            .describe_target_groups(cluster)
            .await?
            .into_iter()
            .filter(|t| is_tg_of(name, &t.name))
        {
            deleted.extend(self.delete_target_group(&tg).await?);
        }
        Ok(deleted)
    }

    async fn create_load_balancer(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        if request.mode == LbMode::L7 && request.certificate.is_none() {
            return Err(Error::provider(
                PROVIDER,
                "create load balancer",
                format!("load balancer {}", request.name),
                FailureKind::InvalidRequest,
                "a layer 7 balancer needs a certificate (load_balancer.certificate)",
            ));
        }
        let mut labels = request.labels.clone();
        labels.extend(cluster.labels_for(Role::Lb));
        let (tg_specs, listener_specs) = wanted(request);

        // 1. Target groups, create-or-get by name.
        let mut tgs = self.describe_target_groups(cluster).await?;
        for spec in &tg_specs {
            if !tgs.iter().any(|t| t.name == spec.name) {
                let tg = self
                    .create_target_group(cluster, spec, request, &labels)
                    .await?;
                tgs.push(tg);
            }
        }

        // 2. The balancer.
        let existing = self
            .describe_balancers(cluster)
            .await?
            .into_iter()
            .find(|b| b.name == request.name);
        let (balancer, mut listeners) = match existing {
            Some(b) => {
                let listeners = self.describe_listeners(&b.name, &b.arn).await?;
                (b, listeners)
            }
            // A balancer made just now has no listeners yet.
            None => (
                self.create_balancer(cluster, request, &labels).await?,
                Vec::new(),
            ),
        };

        // 3. Listeners, create-or-get by port.
        for spec in &listener_specs {
            if !listeners.iter().any(|l| l.port == spec.port) {
                let l = self.create_listener(&balancer, spec, &tgs, &labels).await?;
                listeners.push(l);
            }
        }

        let parts = Parts {
            balancer: Some(balancer),
            listeners,
            target_groups: tgs,
        };
        build(&parts).ok_or_else(|| {
            Error::provider(
                PROVIDER,
                "create load balancer",
                format!("load balancer {}", request.name),
                FailureKind::Other,
                "the balancer vanished while it was being created",
            )
        })
    }

    async fn wait_load_balancer(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        timeout: Duration,
    ) -> Result<LoadBalancer> {
        let resource = format!("load balancer {}", lb.name);
        self.poll(
            self.inner.config.lb_poll,
            &resource,
            "active",
            timeout,
            // One DescribeBalancers per poll: the state is all that changes while
            // a balancer provisions; listeners and targets are `lb`'s.
            || async {
                let found = self
                    .describe_balancers(cluster)
                    .await?
                    .into_iter()
                    .find(|b| b.name == lb.name);
                match found {
                    None => Err(Error::provider(
                        PROVIDER,
                        "wait for load balancer",
                        &resource,
                        FailureKind::NotFound,
                        "the balancer was deleted while waiting for it to be active",
                    )),
                    Some(b) if b.state == LbState::Active && b.endpoint.is_some() => {
                        Ok(Some(LoadBalancer {
                            state: b.state,
                            endpoint: b.endpoint,
                            labels: b.labels,
                            ..lb.clone()
                        }))
                    }
                    Some(_) => Ok(None),
                }
            },
        )
        .await
    }

    async fn set_targets(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        nodes: &[Node],
    ) -> Result<LoadBalancer> {
        let resource = format!("load balancer {}", lb.name);
        let tgs: Vec<SimTargetGroup> = self
            .describe_target_groups(cluster)
            .await?
            .into_iter()
            .filter(|t| is_tg_of(&lb.name, &t.name))
            .collect();
        if tgs.is_empty() {
            return Err(Error::provider(
                PROVIDER,
                "set targets",
                &resource,
                FailureKind::NotFound,
                "the balancer has no target groups; create it first",
            ));
        }
        let desired: BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
        for tg in &tgs {
            let add: BTreeSet<String> = desired.difference(&tg.targets).cloned().collect();
            let remove: BTreeSet<String> = tg.targets.difference(&desired).cloned().collect();
            if !add.is_empty() {
                self.change_targets(SimApi::RegisterTargets, tg, &add)
                    .await?;
            }
            if !remove.is_empty() {
                self.change_targets(SimApi::DeregisterTargets, tg, &remove)
                    .await?;
            }
        }
        // Every target group now holds exactly `desired`: no describe needed.
        Ok(LoadBalancer {
            targets: desired.into_iter().collect(),
            partial_targets: Vec::new(),
            ..lb.clone()
        })
    }

    async fn update_load_balancer(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        let resource = format!("load balancer {}", lb.name);
        let parts = self.discover_parts(cluster, Some(&lb.name)).await?;
        let Some(balancer) = parts.balancer.clone() else {
            return Err(Error::provider(
                PROVIDER,
                "update load balancer",
                &resource,
                FailureKind::NotFound,
                "the balancer does not exist",
            ));
        };
        // The certificate of the HTTPS listener (l7).
        for l in parts.listeners.iter().filter(|l| l.protocol == "HTTPS") {
            if l.certificate != request.certificate {
                let (arn, cert) = (l.arn.clone(), request.certificate.clone());
                if cert.is_none() {
                    return Err(Error::provider(
                        PROVIDER,
                        "update load balancer",
                        &resource,
                        FailureKind::InvalidRequest,
                        "an HTTPS listener needs a certificate (load_balancer.certificate)",
                    ));
                }
                self.call(SimApi::ModifyListener, &resource, |w, _, _| {
                    let l = w.listeners.get_mut(&arn).ok_or_else(|| gone(&arn))?;
                    l.certificate = cert;
                    Ok(())
                })
                .await?;
            }
        }
        // The health check of every target group.
        for tg in parts
            .target_groups
            .iter()
            .filter(|t| is_tg_of(&lb.name, &t.name))
        {
            if tg.health_check.path != request.health_check_path {
                let arn = tg.arn.clone();
                let path = request.health_check_path.clone();
                self.call(
                    SimApi::ModifyTargetGroup,
                    &format!("target group {}", tg.name),
                    |w, _, _| {
                        let t = w.target_groups.get_mut(&arn).ok_or_else(|| gone(&arn))?;
                        t.health_check.path = path;
                        Ok(())
                    },
                )
                .await?;
            }
        }
        // The labels (the fingerprint among them).
        let mut labels = request.labels.clone();
        labels.extend(cluster.labels_for(Role::Lb));
        if balancer.labels != labels {
            let arn = balancer.arn.clone();
            self.call(SimApi::ModifyTags, &resource, |w, _, _| {
                let b = w.balancers.get_mut(&arn).ok_or_else(|| gone(&arn))?;
                b.labels = labels;
                Ok(())
            })
            .await?;
        }
        let parts = self.discover_parts(cluster, Some(&lb.name)).await?;
        build(&parts).ok_or_else(|| {
            Error::provider(
                PROVIDER,
                "update load balancer",
                &resource,
                FailureKind::NotFound,
                "the balancer vanished while it was being updated",
            )
        })
    }

    async fn delete_load_balancer(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        for b in self.describe_balancers(cluster).await? {
            deleted.extend(self.delete_balancer(&b).await?);
        }
        for tg in self.describe_target_groups(cluster).await? {
            deleted.extend(self.delete_target_group(&tg).await?);
        }
        Ok(deleted)
    }
}
