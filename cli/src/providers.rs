//! From a spec's [`ProviderChoice`] to the three providers: each name maps to its
//! crate's constructor (one feature per provider). A cloud that plays several parts
//! (EC2 nodes and NLB, say) is built once and shared.

use std::sync::Arc;

use triad_core::choice::ProviderChoice;
use triad_core::error::SpecProblem;
use triad_core::{DnsProvider, Error, LoadBalancerProvider, NodeProvider, Result, ValidSpec};

/// The three providers of one cluster.
pub(crate) struct Providers {
    /// Makes the nodes.
    pub nodes: Arc<dyn NodeProvider>,
    /// Makes the balancer.
    pub lb: Arc<dyn LoadBalancerProvider>,
    /// Writes the record.
    pub dns: Arc<dyn DnsProvider>,
}

/// Set to `1` only against govmomi's vcsim: vSphere clones get fake guest IPs and
/// the waits expect no vCenter latency.
#[cfg(feature = "vsphere")]
pub(crate) const VCSIM_GUEST_IPS_ENV: &str = "TRIAD_VCSIM_GUEST_IPS";

fn not_built(field: &str, name: &str) -> Error {
    Error::invalid(
        field,
        format!("names `{name}`, which this triad was built without"),
        format!("reinstall with its feature: cargo install --path cli --features {name}"),
    )
}

/// The clouds that can play several parts, built on first use.
#[derive(Default)]
struct Clouds {
    #[cfg(feature = "sim")]
    sim: Option<Arc<triad_sim::SimCloud>>,
    #[cfg(feature = "ec2")]
    ec2: Option<Arc<triad_ec2::Ec2>>,
    #[cfg(feature = "gce")]
    gce: Option<Arc<triad_gce::GceProvider>>,
}

impl Clouds {
    #[cfg(feature = "sim")]
    fn sim(&mut self, spec: &ValidSpec) -> Result<Arc<triad_sim::SimCloud>> {
        if self.sim.is_none() {
            self.sim = Some(Arc::new(triad_sim::SimCloud::from_spec(spec)?));
        }
        Ok(self.sim.clone().expect("just built"))
    }

    #[cfg(feature = "ec2")]
    async fn ec2(&mut self, spec: &ValidSpec) -> Result<Arc<triad_ec2::Ec2>> {
        if self.ec2.is_none() {
            self.ec2 = Some(Arc::new(triad_ec2::Ec2::from_spec(spec).await?));
        }
        Ok(self.ec2.clone().expect("just built"))
    }

    #[cfg(feature = "gce")]
    async fn gce(&mut self, spec: &ValidSpec) -> Result<Arc<triad_gce::GceProvider>> {
        if self.gce.is_none() {
            let connection = triad_gce::Connection::from_env();
            if let Some(endpoint) = &connection.endpoint {
                tracing::warn!(
                    %endpoint,
                    "GCE calls go to a test endpoint without credentials (${})",
                    triad_gce::ENDPOINT_ENV
                );
            }
            self.gce = Some(Arc::new(
                triad_gce::GceProvider::from_spec_with(spec, connection).await?,
            ));
        }
        Ok(self.gce.clone().expect("just built"))
    }

    async fn nodes(&mut self, spec: &ValidSpec, name: &str) -> Result<Arc<dyn NodeProvider>> {
        match name {
            #[cfg(feature = "sim")]
            "sim" => Ok(self.sim(spec)?),
            #[cfg(feature = "ec2")]
            "ec2" => Ok(self.ec2(spec).await?),
            #[cfg(feature = "gce")]
            "gce" => Ok(self.gce(spec).await?),
            #[cfg(feature = "vsphere")]
            "vsphere" => {
                let mut vsphere = triad_vsphere::VsphereProvider::from_spec(spec).await?;
                if std::env::var(VCSIM_GUEST_IPS_ENV).as_deref() == Ok("1") {
                    tracing::warn!("vcsim mode: fake guest IPs (${VCSIM_GUEST_IPS_ENV}=1)");
                    vsphere = vsphere.with_vcsim();
                }
                Ok(Arc::new(vsphere))
            }
            #[cfg(feature = "qemu")]
            "qemu" => Ok(Arc::new(triad_qemu::QemuProvider::from_spec(spec)?)),
            other => Err(not_built("providers.nodes", other)),
        }
    }

    async fn load_balancer(
        &mut self,
        spec: &ValidSpec,
        name: &str,
        nodes: &Arc<dyn NodeProvider>,
    ) -> Result<Arc<dyn LoadBalancerProvider>> {
        let _ = nodes;
        match name {
            #[cfg(feature = "sim")]
            "sim" => Ok(self.sim(spec)?),
            #[cfg(feature = "ec2")]
            "ec2" => Ok(self.ec2(spec).await?),
            #[cfg(feature = "gce")]
            "gce" => Ok(self.gce(spec).await?),
            // In node mode the balancer node is made by the Rancher nodes' provider.
            #[cfg(feature = "nginx")]
            "nginx" => Ok(Arc::new(triad_nginx::NginxProvider::from_spec(
                spec,
                Some(nodes.clone()),
            )?)),
            other => Err(not_built("providers.load_balancer", other)),
        }
    }

    async fn dns(&mut self, spec: &ValidSpec, name: &str) -> Result<Arc<dyn DnsProvider>> {
        match name {
            #[cfg(feature = "sim")]
            "sim" => Ok(self.sim(spec)?),
            #[cfg(feature = "ec2")]
            "ec2" => Ok(self.ec2(spec).await?),
            #[cfg(feature = "gce")]
            "gce" => Ok(self.gce(spec).await?),
            #[cfg(feature = "rfc2136")]
            "rfc2136" => Ok(Arc::new(triad_rfc2136::Rfc2136Provider::from_spec(spec)?)),
            other => Err(not_built("providers.dns", other)),
        }
    }
}

/// Build the providers `choice` names from the spec (this may log in to a cloud).
pub(crate) async fn build(spec: &ValidSpec, choice: ProviderChoice) -> Result<Providers> {
    let mut clouds = Clouds::default();
    let nodes = clouds.nodes(spec, choice.nodes).await?;
    let lb = clouds
        .load_balancer(spec, choice.load_balancer, &nodes)
        .await?;
    let dns = clouds.dns(spec, choice.dns).await?;
    Ok(Providers { nodes, lb, dns })
}

/// Every problem the chosen providers find in their own sections, without a network
/// call: what `triad validate` adds to the spec's own validation.
pub(crate) fn offline_problems(spec: &ValidSpec, choice: ProviderChoice) -> Vec<SpecProblem> {
    let mut names = vec![choice.nodes, choice.load_balancer, choice.dns];
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for (field, name) in [
        ("providers.nodes", choice.nodes),
        ("providers.load_balancer", choice.load_balancer),
        ("providers.dns", choice.dns),
    ] {
        if !compiled(name) {
            out.push(problem_of(not_built(field, name), name));
        }
    }
    for name in names {
        if let Err(e) = offline_check(spec, name, choice) {
            out.push(problem_of(e, name));
        }
    }
    // One problem per field and text, whichever provider found it.
    let mut seen = std::collections::BTreeSet::new();
    out.into_iter()
        .flatten()
        .filter(|p| seen.insert((p.field.clone(), p.problem.clone())))
        .collect()
}

fn problem_of(e: Error, section: &str) -> Vec<SpecProblem> {
    match e {
        Error::InvalidSpec(p) => p.0,
        other => vec![SpecProblem {
            field: section.to_owned(),
            problem: other.to_string(),
            fix: format!("fix the [{section}] section (see docs/spec.md)"),
        }],
    }
}

/// Whether this build has provider `name`.
// Not `matches!`: every arm is a different `cfg!`, constant per build.
#[allow(clippy::match_like_matches_macro)]
fn compiled(name: &str) -> bool {
    match name {
        "sim" => cfg!(feature = "sim"),
        "ec2" => cfg!(feature = "ec2"),
        "gce" => cfg!(feature = "gce"),
        "vsphere" => cfg!(feature = "vsphere"),
        "qemu" => cfg!(feature = "qemu"),
        "nginx" => cfg!(feature = "nginx"),
        "rfc2136" => cfg!(feature = "rfc2136"),
        _ => false,
    }
}

/// The checks provider `name` makes of the spec before it connects anywhere.
fn offline_check(spec: &ValidSpec, name: &str, choice: ProviderChoice) -> Result<()> {
    let _ = (spec, choice);
    match name {
        #[cfg(feature = "sim")]
        "sim" => triad_sim::SimSettings::from_spec(spec).map(drop),
        #[cfg(feature = "ec2")]
        "ec2" => {
            let problems = triad_ec2::settings::offline_problems(
                spec,
                choice.nodes == "ec2",
                choice.load_balancer == "ec2",
            );
            if problems.is_empty() {
                Ok(())
            } else {
                Err(Error::InvalidSpec(problems.into()))
            }
        }
        #[cfg(feature = "gce")]
        "gce" => triad_gce::GceSettings::from_spec(spec).map(drop),
        #[cfg(feature = "vsphere")]
        "vsphere" => triad_vsphere::VsphereSettings::from_spec(spec).map(drop),
        #[cfg(feature = "qemu")]
        "qemu" => triad_qemu::QemuSettings::from_spec(spec).map(drop),
        #[cfg(feature = "nginx")]
        "nginx" => {
            let settings: triad_nginx::NginxSettings = match &spec.nginx {
                Some(section) => section.parse("nginx")?,
                None => triad_nginx::NginxSettings::default(),
            };
            match settings.run_on {
                // Host mode needs no node provider: the full check.
                triad_nginx::RunOn::Host => {
                    triad_nginx::NginxProvider::from_spec(spec, None).map(drop)
                }
                triad_nginx::RunOn::Node => {
                    let problems = settings.problems();
                    if problems.is_empty() {
                        Ok(())
                    } else {
                        Err(Error::InvalidSpec(problems.into()))
                    }
                }
            }
        }
        #[cfg(feature = "rfc2136")]
        "rfc2136" => triad_rfc2136::Rfc2136Provider::from_spec(spec).map(drop),
        _ => Ok(()),
    }
}
