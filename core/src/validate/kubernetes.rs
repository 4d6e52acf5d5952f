//! `[kubernetes]`: versions, channels, the token source, mirrors, the pod and
//! service CIDRs, and the node network (the spec's and the one a provider reports).

use super::*;

pub(super) fn kubernetes(p: &mut Problems, spec: &ClusterSpec) {
    let k = &spec.kubernetes;
    match (&k.version, &k.channel) {
        (Some(_), Some(_)) => p.add(
            "kubernetes.channel",
            "is set together with kubernetes.version",
            "give either an exact version or a channel",
        ),
        (Some(v), None) => {
            let (ok, example) = match k.distribution {
                Distribution::Rke2 => (
                    v.strip_prefix('v')
                        .and_then(|r| r.split_once("+rke2r"))
                        .is_some_and(|(semver, n)| is_semver(semver) && is_digits(n)),
                    "v1.31.4+rke2r1",
                ),
                Distribution::K3s => (
                    v.strip_prefix('v')
                        .and_then(|r| r.split_once("+k3s"))
                        .is_some_and(|(semver, n)| is_semver(semver) && is_digits(n)),
                    "v1.31.4+k3s1",
                ),
                Distribution::Rke => (
                    v.strip_prefix('v')
                        .and_then(|r| r.split_once("-rancher"))
                        .is_some_and(|(semver, n)| {
                            is_semver(semver)
                                && n.split_once('-')
                                    .is_some_and(|(a, b)| is_digits(a) && is_digits(b))
                        }),
                    "v1.28.15-rancher1-1",
                ),
            };
            if !ok {
                p.add(
                    "kubernetes.version",
                    format!("`{v}` is not a {} release", k.distribution),
                    format!("write a release such as `{example}`, or remove it and set kubernetes.channel"),
                );
            }
        }
        (None, Some(c)) => {
            let minor = c
                .strip_prefix('v')
                .and_then(|r| r.split_once('.'))
                .is_some_and(|(a, b)| is_digits(a) && is_digits(b));
            if !(matches!(c.as_str(), "stable" | "latest" | "testing") || minor) {
                p.add(
                    "kubernetes.channel",
                    format!("`{c}` is not a channel"),
                    "use `stable`, `latest`, `testing` or a minor such as `v1.31`",
                );
            }
            if k.distribution == Distribution::Rke {
                p.add(
                    "kubernetes.channel",
                    "has no meaning for rke",
                    "remove it, or give kubernetes.version",
                );
            }
        }
        (None, None) => {}
    }
    if k.install && k.distribution == Distribution::Rke {
        p.add(
            "kubernetes.install",
            "is true, but RKE (v1) is installed from outside with `rke up`, not by the nodes",
            "use distribution = \"rke2\" (or \"k3s\"), or set install = false",
        );
    }
    if let Some(n) = &k.token_env {
        let ok = !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            p.add(
                "kubernetes.token_env",
                format!("`{n}` is not an environment variable name"),
                "use letters, digits and `_`, e.g. `TRIAD_JOIN_TOKEN`",
            );
        }
    }
    for (registry, endpoints) in &k.mirrors {
        let field = format!("kubernetes.mirrors.{registry}");
        if registry.is_empty() || registry.chars().any(|c| c.is_whitespace() || c == '/') {
            p.add(
                field.clone(),
                format!("`{registry}` is not a registry host"),
                "name the registry, e.g. `docker.io`",
            );
        }
        if endpoints.is_empty() {
            p.add(
                field.clone(),
                "lists no endpoint",
                "give at least one mirror URL, e.g. `https://mirror.corp:5000`",
            );
        }
        for (i, e) in endpoints.iter().enumerate() {
            let ok = url::Url::parse(e).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.has_host() && u.password().is_none()
            });
            if !ok {
                p.add(
                    format!("{field}[{i}]"),
                    format!("`{e}` is not an http(s) URL"),
                    "write the mirror as https://host[:port], without credentials",
                );
            }
        }
    }
    let mut cidrs = Vec::new();
    for (field, value) in [
        ("kubernetes.cidr_pods", k.cidr_pods()),
        ("kubernetes.cidr_services", k.cidr_services()),
    ] {
        match parse_cidr(value).and_then(|(ip, len)| match cidr_network(ip, len) {
            Some(n) if n != ip => Err(format!(
                "`{value}` has host bits set (the network is {n}/{len})"
            )),
            _ => Ok(()),
        }) {
            Ok(()) => cidrs.push((field, value)),
            Err(e) => p.add(field, e, "write a network CIDR such as `10.42.0.0/16`"),
        }
    }
    if let [(fa, a), (fb, b)] = cidrs[..] {
        if cidrs_overlap(a, b) {
            p.add(
                fb,
                format!("`{b}` overlaps {fa} `{a}`"),
                "give the pods and the services separate ranges",
            );
        }
    }
    for (i, c) in spec.nodes.network_cidrs.iter().enumerate() {
        let field = format!("nodes.network_cidrs[{i}]");
        if let Err(e) = parse_cidr(c) {
            p.add(field, e, "write a CIDR such as `10.0.0.0/16`");
            continue;
        }
        for (kf, kc) in &cidrs {
            if cidrs_overlap(c, kc) {
                p.add(
                    field.clone(),
                    format!("`{c}` overlaps {kf} `{kc}`: pods or services would shadow the node network"),
                    format!("set {kf} to a range outside the node network (e.g. `172.30.0.0/16`), or fix {field}"),
                );
            }
        }
    }
}

/// The problems of the node network the node provider reported at plan
/// ([`crate::NodeProvider::network_cidrs`]): one that overlaps the pod or service
/// CIDR is a problem of `kubernetes.cidr_pods` / `kubernetes.cidr_services` (the
/// field the user can change); an entry that is no CIDR is the provider's fault,
/// said so under `nodes`.
pub(crate) fn learned_network_problems(
    spec: &ClusterSpec,
    provider: &str,
    cidrs: &[String],
) -> Vec<SpecProblem> {
    let mut p = Problems(Vec::new());
    let k = &spec.kubernetes;
    for c in cidrs {
        if let Err(e) = parse_cidr(c) {
            p.add(
                "nodes",
                format!(
                    "the {provider} provider reported a node network `{c}` that is no CIDR: {e}"
                ),
                "report this as a bug of the provider",
            );
            continue;
        }
        for (kf, kc) in [
            ("kubernetes.cidr_pods", k.cidr_pods()),
            ("kubernetes.cidr_services", k.cidr_services()),
        ] {
            if cidrs_overlap(c, kc) {
                p.add(
                    kf,
                    format!("`{kc}` overlaps the node network `{c}` (reported by the {provider} provider): pods or services would shadow the nodes"),
                    format!("set {kf} to a range outside the node network (e.g. `172.30.0.0/16`)"),
                );
            }
        }
    }
    p.0
}

pub(super) fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

pub(super) fn is_semver(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| is_digits(p))
}
