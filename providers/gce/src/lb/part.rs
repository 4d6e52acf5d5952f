//! Each kind of balancer part described once: how to get, insert and delete it with
//! the SDK clients, and how to tell that it is the cluster's. [`GceProvider::ensure`]
//! and [`GceProvider::remove`] are written once over them.
//!
//! A kind with a regional and a global collection (address, health check, backend
//! service, forwarding rule) picks the collection by the [`Scope`] it is asked in;
//! the global-only kinds (URL map, proxies, SSL policy, firewall rule) ignore it; an instance group
//! lives in a zone.

use async_trait::async_trait;
use google_cloud_compute_v1::model::{
    Address, BackendService, Firewall, ForwardingRule, HealthCheck, InstanceGroup, Operation,
    SslPolicy, TargetHttpProxy, TargetHttpsProxy, UrlMap,
};
use google_cloud_gax::error::Error as GaxError;
use triad_core::error::{FailureKind, Result};
use triad_core::labels;

use crate::client::{request_id, Scope};
use crate::error::{self, own, Failure};
use crate::nodes::owned_by;
use crate::GceProvider;

type Sdk<T> = std::result::Result<T, GaxError>;

/// One kind of balancer part.
#[async_trait]
pub(crate) trait Part: Sized + Send + Sync {
    /// Its name in messages when it lives in `at` (`address`, `global address`).
    fn noun(at: &Scope) -> String;
    /// Read it.
    async fn get(gce: &GceProvider, at: &Scope, name: &str) -> Sdk<Self>;
    /// Insert `body` with request id `rid`.
    async fn insert(gce: &GceProvider, at: &Scope, body: Self, rid: String) -> Sdk<Operation>;
    /// Delete it with request id `rid`.
    async fn delete(gce: &GceProvider, at: &Scope, name: &str, rid: String) -> Sdk<Operation>;
    /// Whether it is `cluster`'s: its labels, or (label-less kinds) its description.
    fn is_owned_by(&self, cluster: &str) -> bool;
}

/// A part whose settings change in place (PATCH semantics).
#[async_trait]
pub(crate) trait Patch: Part {
    /// Patch it with `body` and request id `rid`.
    async fn patch(
        gce: &GceProvider,
        at: &Scope,
        name: &str,
        body: Self,
        rid: String,
    ) -> Sdk<Operation>;
}

fn scoped(noun: &str, at: &Scope) -> String {
    match at {
        Scope::Global => format!("global {noun}"),
        _ => noun.to_owned(),
    }
}

fn labelled(labels: &std::collections::HashMap<String, String>, cluster: &str) -> bool {
    labels.get(labels::CLUSTER).map(String::as_str) == Some(cluster)
}

/// A kind's name in messages: with `global ` in front for the global one of a kind
/// that has both.
macro_rules! noun {
    ($noun:literal, $at:ident, $r:ident) => {
        scoped($noun, $at)
    };
    ($noun:literal, $at:ident) => {
        $noun.to_owned()
    };
}

/// `Part` for a kind in a global collection, and (`region: …`) a regional one used
/// when asked in `Scope::Region`.
macro_rules! part {
    ($ty:ty, $noun:literal, $owned:expr, $(region: $r:ident,)? global: $g:ident, $set:ident) => {
        #[async_trait]
        impl Part for $ty {
            fn noun(at: &Scope) -> String {
                let _ = at;
                noun!($noun, at $(, $r)?)
            }
            async fn get(gce: &GceProvider, at: &Scope, name: &str) -> Sdk<Self> {
                let (c, p) = (&gce.clients, gce.project());
                match at {
                    $(Scope::Region(r) => c.$r.get().set_project(p).set_region(r).$set(name).send().await,)?
                    _ => c.$g.get().set_project(p).$set(name).send().await,
                }
            }
            async fn insert(gce: &GceProvider, at: &Scope, body: Self, rid: String) -> Sdk<Operation> {
                let (c, p) = (&gce.clients, gce.project());
                match at {
                    $(Scope::Region(r) => {
                        let b = c.$r.insert().set_project(p).set_region(r);
                        b.set_request_id(rid).set_body(body).send().await
                    })?
                    _ => c.$g.insert().set_project(p).set_request_id(rid).set_body(body).send().await,
                }
            }
            async fn delete(gce: &GceProvider, at: &Scope, name: &str, rid: String) -> Sdk<Operation> {
                let (c, p) = (&gce.clients, gce.project());
                match at {
                    $(Scope::Region(r) => {
                        let b = c.$r.delete().set_project(p).set_region(r);
                        b.$set(name).set_request_id(rid).send().await
                    })?
                    _ => c.$g.delete().set_project(p).$set(name).set_request_id(rid).send().await,
                }
            }
            fn is_owned_by(&self, cluster: &str) -> bool {
                ($owned)(self, cluster)
            }
        }
    };
}

/// `Patch` for a kind in a regional and a global collection.
macro_rules! patch {
    ($ty:ty, region: $r:ident, global: $g:ident, $set:ident) => {
        #[async_trait]
        impl Patch for $ty {
            async fn patch(
                gce: &GceProvider,
                at: &Scope,
                name: &str,
                body: Self,
                rid: String,
            ) -> Sdk<Operation> {
                let (c, p) = (&gce.clients, gce.project());
                match at {
                    Scope::Region(r) => {
                        c.$r.patch()
                            .set_project(p)
                            .set_region(r)
                            .$set(name)
                            .set_request_id(rid)
                            .set_body(body)
                            .send()
                            .await
                    }
                    _ => {
                        c.$g.patch()
                            .set_project(p)
                            .$set(name)
                            .set_request_id(rid)
                            .set_body(body)
                            .send()
                            .await
                    }
                }
            }
        }
    };
}

part!(Address, "address", |a: &Address, c| labelled(&a.labels, c),
    region: addresses, global: global_addresses, set_address);
part!(ForwardingRule, "forwarding rule", |f: &ForwardingRule, c| labelled(&f.labels, c),
    region: forwarding_rules, global: global_forwarding_rules, set_forwarding_rule);
part!(HealthCheck, "health check", |h: &HealthCheck, c| owned_by(h.description.as_deref(), c),
    region: region_health_checks, global: health_checks, set_health_check);
part!(BackendService, "backend service",
    |b: &BackendService, c| owned_by(b.description.as_deref(), c),
    region: region_backend_services, global: backend_services, set_backend_service);
part!(UrlMap, "URL map", |u: &UrlMap, c| owned_by(u.description.as_deref(), c),
    global: url_maps, set_url_map);
part!(TargetHttpsProxy, "target HTTPS proxy",
    |t: &TargetHttpsProxy, c| owned_by(t.description.as_deref(), c),
    global: target_https_proxies, set_target_https_proxy);
part!(TargetHttpProxy, "target HTTP proxy",
    |t: &TargetHttpProxy, c| owned_by(t.description.as_deref(), c),
    global: target_http_proxies, set_target_http_proxy);
part!(SslPolicy, "SSL policy", |s: &SslPolicy, c| owned_by(s.description.as_deref(), c),
    global: ssl_policies, set_ssl_policy);
part!(Firewall, "firewall rule", |f: &Firewall, c| owned_by(f.description.as_deref(), c),
    global: firewalls, set_firewall);
patch!(HealthCheck, region: region_health_checks, global: health_checks, set_health_check);
patch!(BackendService, region: region_backend_services, global: backend_services, set_backend_service);

/// Instance groups live in a zone (`Scope::Zone`).
#[async_trait]
impl Part for InstanceGroup {
    fn noun(_: &Scope) -> String {
        "instance group".to_owned()
    }
    async fn get(gce: &GceProvider, at: &Scope, name: &str) -> Sdk<Self> {
        let g = gce.clients.instance_groups.get().set_project(gce.project());
        g.set_zone(zone(at)).set_instance_group(name).send().await
    }
    async fn insert(gce: &GceProvider, at: &Scope, body: Self, rid: String) -> Sdk<Operation> {
        let i = gce
            .clients
            .instance_groups
            .insert()
            .set_project(gce.project());
        i.set_zone(zone(at))
            .set_request_id(rid)
            .set_body(body)
            .send()
            .await
    }
    async fn delete(gce: &GceProvider, at: &Scope, name: &str, rid: String) -> Sdk<Operation> {
        let d = gce
            .clients
            .instance_groups
            .delete()
            .set_project(gce.project());
        d.set_zone(zone(at))
            .set_instance_group(name)
            .set_request_id(rid)
            .send()
            .await
    }
    fn is_owned_by(&self, cluster: &str) -> bool {
        owned_by(self.description.as_deref(), cluster)
    }
}

fn zone(at: &Scope) -> &str {
    match at {
        Scope::Zone(z) | Scope::Region(z) => z,
        Scope::Global => "",
    }
}

impl GceProvider {
    /// The part `name` in `at`: read it, or insert `make()` (with a request id) and
    /// read it once its operation is done (a 409 means an earlier or concurrent call
    /// made it). Either way it must be `cluster`'s, else a conflict naming it.
    pub(crate) async fn ensure<T: Part>(
        &self,
        cluster: &str,
        at: &Scope,
        name: &str,
        make: impl FnOnce() -> T,
    ) -> Result<T> {
        let what = format!("{} {name}", T::noun(at));
        let found = match T::get(self, at, name).await {
            Ok(t) => t,
            Err(e) if Failure::of(&e).is_not_found() => {
                match T::insert(self, at, make(), request_id()).await {
                    Ok(op) => {
                        self.op_wait(at, op, "create", &what).await?;
                        tracing::info!(resource = %what, "created");
                    }
                    Err(e) if Failure::of(&e).is_conflict() => {}
                    Err(e) => return Err(error::sdk("create", &what, &e)),
                }
                T::get(self, at, name)
                    .await
                    .map_err(|e| error::sdk("get", &what, &e))?
            }
            Err(e) => return Err(error::sdk("get", &what, &e)),
        };
        if !found.is_owned_by(cluster) {
            return Err(own(
                "create load balancer",
                &what,
                FailureKind::Conflict,
                "a resource of that name exists and is not this cluster's",
            ));
        }
        Ok(found)
    }

    /// Delete the part `name` in `at` if it exists and is `cluster`'s; `Some(what)`
    /// when deleted.
    pub(crate) async fn remove<T: Part>(
        &self,
        cluster: &str,
        at: &Scope,
        name: &str,
    ) -> Result<Option<String>> {
        let what = format!("{} {name}", T::noun(at));
        let found = match T::get(self, at, name).await {
            Ok(t) => t,
            Err(e) if Failure::of(&e).is_not_found() => return Ok(None),
            Err(e) => return Err(error::sdk("get", &what, &e)),
        };
        if !found.is_owned_by(cluster) {
            tracing::warn!(resource = %what, "not deleting: it is not this cluster's");
            return Ok(None);
        }
        match T::delete(self, at, name, request_id()).await {
            Ok(op) => {
                match self.op_wait(at, op, "delete", &what).await {
                    Ok(()) => {}
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

    /// Patch the part `name` in `at` with `body` and wait until that is done.
    pub(crate) async fn patch<T: Patch>(
        &self,
        at: &Scope,
        name: &str,
        body: T,
        action: &str,
    ) -> Result<()> {
        let what = format!("{} {name}", T::noun(at));
        let op = T::patch(self, at, name, body, request_id())
            .await
            .map_err(|e| error::sdk(action, &what, &e))?;
        self.op_wait(at, op, action, &what).await?;
        tracing::info!(resource = %what, action, "done");
        Ok(())
    }

    /// Wait for an operation in `at` to finish.
    pub(crate) async fn op_wait(
        &self,
        at: &Scope,
        op: Operation,
        action: &str,
        what: &str,
    ) -> Result<()> {
        self.clients
            .wait(self.project(), at, op, self.poll, action, what)
            .await
            .map(|_| ())
    }
}
