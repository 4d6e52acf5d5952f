//! Rancher and cert-manager: the chart's `values.yaml`, the `helm install`
//! commands and `rancher/install.sh`, with the escaping `helm --set` and the shell
//! need. A proxy password is never written: the commands refer to the shell
//! variable `PROXY_PASSWORD` instead.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{to_yaml, MAX_RANCHER_REPLICAS};
use crate::bootstrap;
use crate::model::Inventory;
use crate::spec::{Ingress, TlsSource, ValidSpec};

/// The shell variable the rendered Helm command expects the proxy password in.
const PASSWORD_VAR: &str = "PROXY_PASSWORD";

/// The Rancher chart's values that triad decides (`values.yaml`), named as the
/// chart names them. No proxy password: with one, `proxy` is left out and the
/// install command sets it from the `PROXY_PASSWORD` shell variable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RancherValues {
    /// The Rancher hostname (cannot change later).
    pub hostname: String,
    /// Rancher replicas: the node count, at most 3.
    pub replicas: usize,
    /// The proxy URL, when it has no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// NO_PROXY as one comma-separated string (no `\,` escaping in a values file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
    /// `external` when TLS ends at the balancer (l7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// The ingress's TLS source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<RancherIngress>,
    /// Trust the CA in the `tls-ca-additional` secret (a TLS-intercepting proxy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub additional_trusted_c_as: bool,
    /// Rancher's certificate is signed by the private CA in the `tls-ca` secret
    /// (`tls.ca_file`).
    #[serde(
        default,
        rename = "privateCA",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub private_ca: bool,
    /// Let's Encrypt's settings, with `ingress.tls.source: letsEncrypt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lets_encrypt: Option<RancherLetsEncrypt>,
}

/// `letsEncrypt:` in [`RancherValues`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RancherLetsEncrypt {
    /// The account's e-mail (`tls.lets_encrypt_email`).
    pub email: String,
    /// `letsEncrypt.ingress`: the HTTP-01 solver's ingress class.
    pub ingress: RancherLetsEncryptIngress,
}

/// `letsEncrypt.ingress` in [`RancherValues`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RancherLetsEncryptIngress {
    /// The ingress class (`nginx` or `traefik`, from `kubernetes.ingress`).
    pub class: String,
}

/// `ingress:` in [`RancherValues`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RancherIngress {
    /// `ingress.tls`.
    pub tls: RancherIngressTls,
}

/// `ingress.tls` in [`RancherValues`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RancherIngressTls {
    /// `rancher` (cert-manager issues Rancher's own), `letsEncrypt` or `secret`.
    pub source: String,
}

/// The Rancher chart's `values.yaml`.
pub fn rancher_values(spec: &ValidSpec, inventory: &Inventory) -> String {
    // The registration address an l7 balancer serves apart (see `with_registration_of`).
    let spec = &spec.with_registration_of(&inventory.load_balancer);
    let values = RancherValues {
        hostname: spec.fqdn(),
        replicas: inventory.nodes.len().clamp(1, MAX_RANCHER_REPLICAS),
        proxy: spec
            .proxy
            .as_ref()
            .filter(|p| !p.http.has_password())
            .map(|p| p.http.expose().to_owned()),
        no_proxy: spec
            .proxy
            .as_ref()
            .map(|_| bootstrap::no_proxy(spec).join(",")),
        tls: inventory.tls_external.then(|| "external".to_owned()),
        ingress: (!inventory.tls_external).then(|| RancherIngress {
            tls: RancherIngressTls {
                source: spec.tls_source().chart_value().to_owned(),
            },
        }),
        additional_trusted_c_as: spec.proxy_ca().is_some(),
        private_ca: spec.tls_ca().is_some(),
        lets_encrypt: lets_encrypt(spec, inventory),
    };
    let mut out = String::from("# Rancher chart values, rendered by triad.\n");
    if spec.proxy.as_ref().is_some_and(|p| p.http.has_password()) {
        out.push_str("# proxy: set by install-rancher.sh from PROXY_PASSWORD (not stored here).\n");
    }
    out.push_str(&to_yaml(&values));
    out
}

/// Let's Encrypt's chart values when Rancher's ingress gets its certificate there.
fn lets_encrypt(spec: &ValidSpec, inventory: &Inventory) -> Option<RancherLetsEncrypt> {
    let email = spec.tls.as_ref()?.lets_encrypt_email.clone()?;
    (!inventory.tls_external && spec.tls_source() == TlsSource::LetsEncrypt).then(|| {
        RancherLetsEncrypt {
            email,
            ingress: RancherLetsEncryptIngress {
                class: match spec.kubernetes.ingress() {
                    Ingress::Nginx => "nginx",
                    Ingress::Traefik => "traefik",
                }
                .to_owned(),
            },
        }
    })
}

/// Whether the install needs cert-manager: Rancher makes or fetches its own
/// certificate (`tls.source` `rancher` or `letsEncrypt`), TLS not at the balancer.
fn needs_cert_manager(spec: &ValidSpec, inventory: &Inventory) -> bool {
    !inventory.tls_external && spec.tls_source() != TlsSource::Secret
}

/// The cert-manager install (Rancher's own certificate needs it), with the proxy
/// as the chart's `http_proxy` / `https_proxy` / `no_proxy` values, commas escaped
/// for `--set`.
pub fn cert_manager_install(spec: &ValidSpec) -> String {
    let mut flags = vec![
        "helm install cert-manager jetstack/cert-manager".to_owned(),
        "--namespace cert-manager --create-namespace".to_owned(),
        "--set crds.enabled=true".to_owned(),
    ];
    if let Some(proxy) = &spec.proxy {
        let url = helm_proxy_url(&proxy.http);
        let https = helm_proxy_url(proxy.https.as_ref().unwrap_or(&proxy.http));
        flags.push(format!("--set http_proxy=\"{url}\""));
        flags.push(format!("--set https_proxy=\"{https}\""));
        flags.push(format!("--set no_proxy=\"{}\"", helm_no_proxy_dq(spec)));
    }
    let mut out = String::from(
        "helm repo add jetstack https://charts.jetstack.io\nhelm repo update jetstack\n",
    );
    out.push_str(&flags.join(" \\\n  "));
    out.push('\n');
    out
}

/// A proxy URL for a double-quoted `--set` value, its password as
/// `${PROXY_PASSWORD}`.
fn helm_proxy_url(url: &crate::secret::ProxyUrl) -> String {
    // A marker no URL contains stands in for the password while the rest of the
    // URL is escaped; then it becomes the shell variable reference.
    const MARKER: &str = "\u{0}password\u{0}";
    shell_dq(&helm_escape(&url.with_password_replaced(MARKER)))
        .replace(MARKER, &format!("${{{PASSWORD_VAR}}}"))
}

fn helm_no_proxy_dq(spec: &ValidSpec) -> String {
    let v: Vec<String> = bootstrap::no_proxy(spec)
        .iter()
        .map(|e| shell_dq(&helm_escape(e)))
        .collect();
    v.join("\\,")
}

/// `rancher/install.sh`: cert-manager (unless TLS ends at the balancer), the
/// Rancher chart with `values.yaml`, and the proxy with its password from
/// `PROXY_PASSWORD`.
pub(super) fn rancher_install_script(spec: &ValidSpec, inventory: &Inventory) -> String {
    let mut out = String::from(
        "#!/bin/sh\n# Install Rancher, rendered by triad. Run with KUBECONFIG set (see kubeconfig.sh).\nset -eu\ncd \"$(dirname \"$0\")\"\n",
    );
    if spec.proxy.as_ref().is_some_and(|p| p.http.has_password()) {
        let _ = writeln!(
            out,
            ": \"${{{PASSWORD_VAR}:?set and export {PASSWORD_VAR} (percent-encoded as in a URL)}}\""
        );
    }
    let own_cert = !inventory.tls_external && spec.tls_source() == TlsSource::Secret;
    if own_cert {
        out.push_str(
            "[ -f tls.crt ] && [ -f tls.key ] || { echo \"install.sh: put Rancher's certificate (tls.crt, full chain) and key (tls.key) beside this script (tls.source = secret)\" >&2; exit 1; }\n",
        );
    }
    if spec.proxy_ca().is_some() || spec.tls_ca().is_some() || own_cert {
        out.push_str(
            "kubectl create namespace cattle-system --dry-run=client -o yaml | kubectl apply -f -\n",
        );
    }
    if spec.proxy_ca().is_some() {
        out.push_str(
            "kubectl -n cattle-system create secret generic tls-ca-additional --from-file=ca-additional.pem=tls-ca-additional.pem --dry-run=client -o yaml | kubectl apply -f -\n",
        );
    }
    if spec.tls_ca().is_some() {
        out.push_str(
            "kubectl -n cattle-system create secret generic tls-ca --from-file=cacerts.pem=cacerts.pem --dry-run=client -o yaml | kubectl apply -f -\n",
        );
    }
    if own_cert {
        out.push_str(
            "kubectl -n cattle-system create secret tls tls-rancher-ingress --cert=tls.crt --key=tls.key --dry-run=client -o yaml | kubectl apply -f -\n",
        );
    }
    if needs_cert_manager(spec, inventory) {
        out.push_str(&cert_manager_install(spec));
    }
    out.push_str("helm repo add rancher-stable https://releases.rancher.com/server-charts/stable\nhelm repo update rancher-stable\n");
    let mut flags = vec![
        "helm install rancher rancher-stable/rancher".to_owned(),
        "--namespace cattle-system --create-namespace".to_owned(),
        "-f values.yaml".to_owned(),
    ];
    if let Some(p) = spec.proxy.as_ref().filter(|p| p.http.has_password()) {
        flags.push(format!("--set proxy=\"{}\"", helm_proxy_url(&p.http)));
    }
    out.push_str(&flags.join(" \\\n  "));
    out.push('\n');
    out
}

/// Rancher's Helm `noProxy` value: [`bootstrap::no_proxy`] joined with `\,`, the
/// comma escaped as `helm --set` requires.
///
/// ```
/// use triad_core::spec::ClusterSpec;
/// let spec = ClusterSpec::from_toml(r#"
///     name = "rancher"
///     region = "us-east-1"
///     [dns]
///     zone = "example.com"
///     hostname = "rancher.example.com"
/// "#).unwrap().validate().unwrap();
/// assert!(triad_core::render::helm_no_proxy(&spec)
///     .starts_with(r"127.0.0.0/8\,10.0.0.0/8\,cattle-system.svc\,"));
/// ```
pub fn helm_no_proxy(spec: &ValidSpec) -> String {
    bootstrap::no_proxy(spec)
        .iter()
        .map(|e| helm_escape(e))
        .collect::<Vec<_>>()
        .join("\\,")
}

/// The `helm install rancher …` command, one flag per line with ` \`
/// continuations: namespace `cattle-system`, `hostname`, `replicas` (the node
/// count, at most 3), and with a proxy `proxy` and `noProxy`; `tls=external` when
/// TLS ends at the balancer (l7).
///
/// A proxy password is never printed: the URL carries `${PROXY_PASSWORD}` inside
/// double quotes, so the shell substitutes it, and a comment above the command
/// tells the user to set and export that variable first.
pub fn helm_install(spec: &ValidSpec, inventory: &Inventory) -> String {
    // The registration address an l7 balancer serves apart (see `with_registration_of`).
    let spec = &spec.with_registration_of(&inventory.load_balancer);
    let replicas = inventory.nodes.len().clamp(1, MAX_RANCHER_REPLICAS);
    let mut out = String::new();
    let mut flags = vec![
        "helm install rancher rancher-stable/rancher".to_owned(),
        "--namespace cattle-system".to_owned(),
        format!("--set hostname={}", spec.fqdn()),
        format!("--set replicas={replicas}"),
    ];
    if let Some(proxy) = &spec.proxy {
        if proxy.http.has_password() {
            let _ = writeln!(
                out,
                "# The proxy password is not shown: set it first, e.g. `read -rs {PASSWORD_VAR} && export {PASSWORD_VAR}`\n\
                 # (percent-encoded as in a URL; write a comma as %2C)."
            );
        }
        flags.push(format!("--set proxy=\"{}\"", helm_proxy_url(&proxy.http)));
        flags.push(format!("--set noProxy=\"{}\"", helm_no_proxy_dq(spec)));
    }
    if inventory.tls_external {
        flags.push("--set tls=external".to_owned());
    } else if spec.tls_source() != TlsSource::Rancher {
        flags.push(format!(
            "--set ingress.tls.source={}",
            spec.tls_source().chart_value()
        ));
    }
    if let Some(le) = lets_encrypt(spec, inventory) {
        flags.push(format!(
            "--set letsEncrypt.email=\"{}\"",
            shell_dq(&helm_escape(&le.email))
        ));
        flags.push(format!(
            "--set letsEncrypt.ingress.class={}",
            le.ingress.class
        ));
    }
    if spec.tls_ca().is_some() {
        flags.push("--set privateCA=true".to_owned());
    }
    out.push_str(&flags.join(" \\\n  "));
    out.push('\n');
    out
}

/// Escape a `helm --set` value: `\` and `,` get a backslash.
pub(super) fn helm_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escape for inside shell double quotes: `"`, `$` and `` ` `` always; `\` only
/// where the shell would otherwise consume it (before one of `"$\`` ` `` and at the
/// end), so helm's `\,` survives unchanged.
pub(super) fn shell_dq(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let chars: Vec<char> = v.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '"' | '$' | '`' => {
                out.push('\\');
                out.push(c);
            }
            '\\' => {
                let next = chars.get(i + 1);
                if matches!(next, None | Some('"' | '$' | '`' | '\\' | '\n')) {
                    out.push_str("\\\\");
                } else {
                    out.push('\\');
                }
            }
            c => out.push(c),
        }
    }
    out
}
