//! `[kubernetes]`: validation, the install-mode user data (typed, executed by a
//! shell harness with the installer replaced by a recorder, checked by
//! `cloud-init schema`), NO_PROXY entry by entry, and the hand-over files read back
//! by real parsers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use triad_core::bootstrap::{self, KubeConfig, Registries};
use triad_core::model::{
    DnsEntry, Endpoint, Inventory, LbState, LoadBalancer, Node, NodeState, Providers, RecordKind,
};
use triad_core::render::{self, RancherValues};
use triad_core::spec::{LbMode, LbScheme, ValidSpec};

use crate::common::{spec_with, TempFile};

mod handover;
mod harness;

use handover::inventory;

const TOKEN: &str = "K10-join-token-0123456789abcdef";
const PASSWORD: &str = "pa$$word";

/// A spec from `BASE` + `snippet` with a token file, validated.
fn valid(snippet: &str, token: &TempFile) -> ValidSpec {
    let snippet = format!(
        "{snippet}\n[kubernetes]\ntoken_file = {:?}\n",
        token.path().display().to_string()
    );
    // `[kubernetes]` may appear in `snippet` too: one table.
    spec_with(&merge_kubernetes(&snippet)).validate().unwrap()
}

/// Join several `[kubernetes]` tables of a snippet into one.
fn merge_kubernetes(snippet: &str) -> String {
    let mut out = String::new();
    let mut k = String::new();
    let mut in_k = false;
    for line in snippet.lines() {
        if line.starts_with('[') {
            in_k = line.trim() == "[kubernetes]";
            if in_k {
                continue;
            }
        }
        if in_k {
            k.push_str(line);
            k.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    format!("{out}\n[kubernetes]\n{k}")
}

/// The contents of the bundle file at `path` (the test fails without it).
fn file_in(files: &[render::BundleFile], path: &str) -> String {
    files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no {path} in the bundle"))
        .contents
        .clone()
}

fn token_file() -> TempFile {
    TempFile::new("token", &format!("{TOKEN}\n"))
}

fn install_spec(distribution: &str, token: &TempFile) -> ValidSpec {
    valid(
        &format!(
            "[proxy]\nhttp = \"http://ops:{PASSWORD}@proxy.corp.example:3128\"\n\
             [nodes]\nnetwork_cidrs = [\"10.20.0.0/16\"]\n\
             [kubernetes]\ndistribution = \"{distribution}\"\ninstall = true\nchannel = \"v1.31\"\n\
             mirrors = {{ \"docker.io\" = [\"https://mirror.corp.example:5000\"] }}\n"
        ),
        token,
    )
}

// ---------------------------------------------------------------- typed parsing

/// The cloud-config keys triad writes; unknown keys fail.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloudConfig {
    hostname: String,
    manage_etc_hosts: bool,
    #[serde(default)]
    ssh_authorized_keys: Vec<String>,
    #[serde(default)]
    ca_certs: Option<CaCerts>,
    #[serde(default)]
    write_files: Vec<WriteFile>,
    #[serde(default)]
    runcmd: Vec<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaCerts {
    trusted: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteFile {
    path: String,
    owner: String,
    permissions: String,
    #[serde(default)]
    append: bool,
    content: String,
}

fn cloud_config(text: &str) -> CloudConfig {
    assert!(text.starts_with("#cloud-config\n"));
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("user data: {e}\n{text}"))
}

fn file<'a>(doc: &'a CloudConfig, path: &str) -> &'a WriteFile {
    doc.write_files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no {path} in the user data"))
}

/// Parse a systemd `EnvironmentFile=`, following systemd's rules: `#`/`;`
/// comments, `KEY=VALUE`, double quotes with `\` escaping `"`, `\`, `` ` ``, `$`,
/// single quotes literal, unquoted values with `\` escaping the next character.
fn systemd_env_file(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (key, raw) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        let key = key.trim();
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad key {key:?}"
        );
        let raw = raw.trim_start();
        let mut value = String::new();
        let mut chars = raw.chars();
        match raw.chars().next() {
            Some('"') => {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => {
                            let n = chars.next().expect("escape at end of line");
                            assert!(
                                matches!(n, '"' | '\\' | '`' | '$'),
                                "systemd keeps `\\{n}` literally; triad must not write it"
                            );
                            value.push(n);
                        }
                        c => value.push(c),
                    }
                }
                assert!(closed, "unterminated quote: {line}");
                assert!(
                    chars.as_str().trim().is_empty(),
                    "text after the quote: {line}"
                );
            }
            Some('\'') => {
                chars.next();
                value = chars
                    .as_str()
                    .strip_suffix('\'')
                    .expect("closing '")
                    .to_owned();
            }
            _ => {
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        value.extend(chars.next());
                    } else {
                        value.push(c);
                    }
                }
                value = value.trim_end().to_owned();
            }
        }
        out.insert(key.to_owned(), value);
    }
    out
}

fn proxy_url() -> String {
    // `$` is percent-encoded in the files (`%24`): the same URL for the proxy.
    format!(
        "http://ops:{}@proxy.corp.example:3128",
        PASSWORD.replace('$', "%24")
    )
}

// ---------------------------------------------------------------- validation

fn problems(snippet: &str) -> Vec<(String, String)> {
    match spec_with(&merge_kubernetes(snippet)).validate() {
        Ok(_) => Vec::new(),
        Err(e) => e
            .spec_problems()
            .expect("a spec error")
            .0
            .iter()
            .map(|p| (p.field.clone(), format!("{} / {}", p.problem, p.fix)))
            .collect(),
    }
}

fn assert_refused(snippet: &str, field: &str, also: &str) {
    let p = problems(snippet);
    assert!(
        p.iter().any(|(f, text)| f == field && text.contains(also)),
        "`{snippet}` not refused at {field} naming {also:?}: {p:?}"
    );
}

#[test]
fn cidr_overlaps_are_refused_naming_both_fields() {
    assert_refused(
        "[nodes]\nnetwork_cidrs = [\"10.42.0.0/20\"]",
        "nodes.network_cidrs[0]",
        "kubernetes.cidr_pods",
    );
    assert_refused(
        "[nodes]\nnetwork_cidrs = [\"10.0.0.0/8\"]",
        "nodes.network_cidrs[0]",
        "kubernetes.cidr_services",
    );
    assert_refused(
        "[kubernetes]\ncidr_pods = \"10.96.0.0/12\"\ncidr_services = \"10.100.0.0/16\"",
        "kubernetes.cidr_services",
        "kubernetes.cidr_pods",
    );
    assert_refused(
        "[kubernetes]\ncidr_pods = \"10.42.0.1/16\"",
        "kubernetes.cidr_pods",
        "host bits",
    );
    // Moved out of the way: accepted.
    assert!(problems(
        "[nodes]\nnetwork_cidrs = [\"10.42.0.0/16\"]\n[kubernetes]\ncidr_pods = \"172.30.0.0/16\"\ncidr_services = \"172.31.0.0/16\""
    )
    .is_empty());
}

#[test]
fn version_and_channel_formats_name_the_field() {
    assert_refused(
        "[kubernetes]\nversion = \"1.31\"",
        "kubernetes.version",
        "v1.31.4+rke2r1",
    );
    assert_refused(
        "[kubernetes]\ndistribution = \"k3s\"\nversion = \"v1.31.4+rke2r1\"",
        "kubernetes.version",
        "v1.31.4+k3s1",
    );
    assert_refused(
        "[kubernetes]\nchannel = \"stabel\"",
        "kubernetes.channel",
        "stable",
    );
    assert_refused(
        "[kubernetes]\nchannel = \"stable\"\nversion = \"v1.31.4+rke2r1\"",
        "kubernetes.channel",
        "either",
    );
    for ok in [
        "version = \"v1.31.4+rke2r1\"",
        "channel = \"v1.31\"",
        "channel = \"latest\"",
        "distribution = \"k3s\"\nversion = \"v1.30.2+k3s2\"",
        "distribution = \"rke\"\nversion = \"v1.28.15-rancher1-1\"",
    ] {
        assert_eq!(problems(&format!("[kubernetes]\n{ok}")), vec![], "{ok}");
    }
}

#[test]
fn no_proxy_entries_in_go_format() {
    assert_refused(
        "[proxy]\nno_proxy = [\"*.corp\"]",
        "proxy.no_proxy[0]",
        ".corp",
    );
    assert_refused(
        "[proxy]\nno_proxy = [\"a b\"]",
        "proxy.no_proxy[0]",
        "no commas, spaces",
    );
    assert_refused(
        "[proxy]\nno_proxy = [\"10.1.2.3/8\"]",
        "proxy.no_proxy[0]",
        "host bits",
    );
    assert_refused(
        "[proxy]\nno_proxy = [\"host:99999\"]",
        "proxy.no_proxy[0]",
        "port",
    );
    assert!(
        problems("[proxy]\nno_proxy = [\".corp\", \"db:5432\", \"fd00::/8\", \"10.1.2.3\"]")
            .is_empty()
    );
}

#[test]
fn install_needs_a_token_and_never_shows_it() {
    assert_refused(
        "[kubernetes]\ninstall = true",
        "kubernetes.install",
        "token_env",
    );
    assert_refused(
        "[kubernetes]\ntoken_env = \"TRIAD_IT_SURELY_UNSET_TOKEN\"",
        "kubernetes.token_env",
        "TRIAD_IT_SURELY_UNSET_TOKEN",
    );
    let missing = TempFile::missing("token");
    assert_refused(
        &format!(
            "[kubernetes]\ntoken_file = {:?}",
            missing.display().to_string()
        ),
        "kubernetes.token_file",
        "cannot be read",
    );
    let short = TempFile::new("token", "abc\n");
    let p = problems(&format!(
        "[kubernetes]\ntoken_file = {:?}",
        short.path().display().to_string()
    ));
    assert!(
        p.iter()
            .any(|(f, t)| f == "kubernetes.token_file" && !t.contains("abc")),
        "{p:?}"
    );
    assert_refused(
        "[kubernetes]\ndistribution = \"rke\"\ninstall = true",
        "kubernetes.install",
        "rke up",
    );
    let token = token_file();
    let s = valid("[load_balancer]\nregistration = \"first-node\"", &token);
    assert_eq!(s.join_token().unwrap().expose(), TOKEN);
    assert!(!format!("{s:?}").contains(TOKEN));
    assert!(!serde_json::to_string(&*s).unwrap().contains(TOKEN));
    assert!(!serde_json::to_string(&s).unwrap().contains(TOKEN));
    // Nodes that install join through node 1, made first (see the facade's
    // kubernetes tests): no longer refused.
    let installs = valid(
        "[load_balancer]\nregistration = \"first-node\"\n[kubernetes]\ninstall = true",
        &token,
    );
    assert!(installs.joins_through_first_node());
}

#[test]
fn warnings_and_registration_ports() {
    let token = token_file();
    let rke = valid("[kubernetes]\ndistribution = \"rke\"", &token);
    assert!(rke.warnings().iter().any(|w| w.contains("end of life")));
    assert!(rke.registration_ports().is_empty(), "no 9345/6443 for rke");
    let text = crate::common::merged(&merge_kubernetes(&format!(
        "[kubernetes]\ninstall = true\ntoken_file = {:?}",
        token.path().display().to_string()
    )));
    let mut table: toml::Table = text.parse().unwrap();
    table.remove("proxy");
    let s = triad_core::ClusterSpec::from_toml(&toml::to_string(&table).unwrap())
        .unwrap()
        .validate()
        .expect("install without a proxy is allowed");
    assert!(s
        .warnings()
        .iter()
        .any(|w| w.contains("egress or a [proxy]")));
    let rke2 = valid("", &token);
    assert!(rke2.warnings().is_empty());
    assert_eq!(rke2.registration_ports(), [9345, 6443]);
    assert_eq!(rke2.health_check_path(), "/healthz");
    let first = valid("[load_balancer]\nregistration = \"first-node\"", &token);
    assert!(first.registration_ports().is_empty());
    let traefik = valid("[kubernetes]\ningress = \"traefik\"", &token);
    assert_eq!(traefik.health_check_path(), "/ping");
}

// ---------------------------------------------------------------- user data

#[test]
fn rke2_user_data_is_typed_and_literal() {
    let token = token_file();
    let s = install_spec("rke2", &token);
    let ud1 = bootstrap::user_data(&s, "rancher-1");
    let ud2 = bootstrap::user_data(&s, "rancher-2");
    assert_eq!(ud1, bootstrap::user_data(&s, "rancher-1"), "deterministic");
    assert!(!ud1.contains("${"), "no unexpanded variable");
    let doc1 = cloud_config(&ud1);
    assert_eq!(doc1.hostname, "rancher-1");
    assert!(doc1.manage_etc_hosts);
    assert_eq!(doc1.ssh_authorized_keys.len(), 1);
    let c1: KubeConfig =
        serde_norway::from_str(&file(&doc1, "/etc/rancher/rke2/config.yaml").content).unwrap();
    assert_eq!(c1.token.as_deref(), Some(TOKEN));
    assert_eq!(c1.server, None);
    assert_eq!(c1.tls_san, ["rancher.example.com"]);
    assert_eq!(c1.node_name, "rancher-1");
    assert_eq!(c1.cluster_cidr, "10.42.0.0/16");
    assert_eq!(c1.ingress_controller.as_deref(), Some("ingress-nginx"));
    assert_eq!(
        file(&doc1, "/etc/rancher/rke2/config.yaml").permissions,
        "0600"
    );
    let doc2 = cloud_config(&ud2);
    let c2: KubeConfig =
        serde_norway::from_str(&file(&doc2, "/etc/rancher/rke2/config.yaml").content).unwrap();
    assert_eq!(
        c2.server.as_deref(),
        Some("https://rancher.example.com:9345")
    );
    assert_eq!(c2.token.as_deref(), Some(TOKEN));
    // Unknown keys fail: the struct mirrors RKE2's documented keys.
    assert!(serde_norway::from_str::<KubeConfig>(
        "node-name: a\ntls-san: []\ncluster-cidr: a\nservice-cidr: b\ntokn: x\n"
    )
    .is_err());

    let reg: Registries =
        serde_norway::from_str(&file(&doc1, "/etc/rancher/rke2/registries.yaml").content).unwrap();
    assert_eq!(
        reg.mirrors["docker.io"].endpoint,
        ["https://mirror.corp.example:5000"]
    );

    let env = systemd_env_file(&file(&doc1, "/etc/default/rke2-server").content);
    let url = proxy_url();
    assert_eq!(env["HTTP_PROXY"], url);
    assert_eq!(env["HTTPS_PROXY"], url);
    assert_eq!(env["CONTAINERD_HTTP_PROXY"], url);
    assert_eq!(env["NO_PROXY"], env["CONTAINERD_NO_PROXY"]);
    check_no_proxy(&env["NO_PROXY"]);
    assert_eq!(
        doc1.runcmd.last().unwrap(),
        &["sh", bootstrap::INSTALL_SCRIPT]
    );
}

/// NO_PROXY entry by entry: Go's format, and every entry the cluster needs.
fn check_no_proxy(list: &str) {
    let entries: Vec<&str> = list.split(',').collect();
    for e in &entries {
        bootstrap::check_no_proxy_entry(e)
            .unwrap_or_else(|err| panic!("NO_PROXY entry {e:?}: {err}"));
    }
    for want in [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "cattle-system.svc",
        ".svc",
        ".cluster.local",
        "localhost",
        "rancher-1",
        "rancher-3",
        "rancher.example.com",
        "10.42.0.0/16",
        "10.43.0.0/16",
        "10.20.0.0/16",
        ".corp.example",
    ] {
        assert!(
            entries.contains(&want),
            "{want} missing from NO_PROXY {list}"
        );
    }
    let mut sorted = entries.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), entries.len(), "duplicates in {list}");
}

#[test]
fn k3s_user_data_cluster_init_and_env_file() {
    let token = token_file();
    let s = install_spec("k3s", &token);
    let doc = cloud_config(&bootstrap::user_data(&s, "rancher-1"));
    let c: KubeConfig =
        serde_norway::from_str(&file(&doc, "/etc/rancher/k3s/config.yaml").content).unwrap();
    assert_eq!(c.cluster_init, Some(true));
    assert_eq!(c.ingress_controller, None);
    let doc3 = cloud_config(&bootstrap::user_data(&s, "rancher-3"));
    let c3: KubeConfig =
        serde_norway::from_str(&file(&doc3, "/etc/rancher/k3s/config.yaml").content).unwrap();
    assert_eq!(
        c3.server.as_deref(),
        Some("https://rancher.example.com:6443")
    );
    assert_eq!(c3.cluster_init, None);
    let env = systemd_env_file(&file(&doc, "/etc/default/k3s").content);
    assert_eq!(env["HTTPS_PROXY"], proxy_url());
    check_no_proxy(&env["NO_PROXY"]);
}

#[test]
fn proxy_ca_goes_into_the_trust_store_and_the_hand_over() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBexample\n-----END CERTIFICATE-----\n";
    let ca = TempFile::new("ca.pem", pem);
    let token = token_file();
    let s = valid(
        &format!("[proxy]\nca_file = {:?}", ca.path().display().to_string()),
        &token,
    );
    let doc = cloud_config(&bootstrap::user_data(&s, "rancher-1"));
    assert_eq!(doc.ca_certs.unwrap().trusted, [pem]);
    let files = render::bundle(&s, &inventory());
    let get = |p: &str| file_in(&files, p);
    assert_eq!(get("rancher/tls-ca-additional.pem"), pem);
    let v: RancherValues = serde_norway::from_str(&get("rancher/values.yaml")).unwrap();
    assert!(v.additional_trusted_c_as);
    let bad = TempFile::new("ca.pem", "not a cert");
    assert_refused(
        &format!("[proxy]\nca_file = {:?}", bad.path().display().to_string()),
        "proxy.ca_file",
        "PEM",
    );
}

/// `[tls]`: Let's Encrypt and your own certificate signed by a private CA reach
/// the chart's values, the install script and the Helm command; the rules name
/// their field.
#[test]
fn tls_source_and_private_ca_reach_the_chart_and_install_script() {
    let token = token_file();
    let get = file_in;

    let s = valid(
        "[tls]\nsource = \"letsEncrypt\"\nlets_encrypt_email = \"ops@example.com\"",
        &token,
    );
    let files = render::bundle(&s, &inventory());
    let v: RancherValues = serde_norway::from_str(&get(&files, "rancher/values.yaml")).unwrap();
    assert_eq!(v.ingress.unwrap().tls.source, "letsEncrypt");
    let le = v.lets_encrypt.expect("letsEncrypt values");
    assert_eq!(
        (le.email.as_str(), le.ingress.class.as_str()),
        ("ops@example.com", "nginx")
    );
    assert!(!v.private_ca);
    assert!(get(&files, "rancher/install.sh").contains("helm install cert-manager"));
    let helm = render::helm_install(&s, &inventory());
    assert!(
        helm.contains("--set ingress.tls.source=letsEncrypt"),
        "{helm}"
    );
    assert!(
        helm.contains("--set letsEncrypt.email=\"ops@example.com\""),
        "{helm}"
    );

    let pem = "-----BEGIN CERTIFICATE-----\nMIIBprivateCA\n-----END CERTIFICATE-----\n";
    let ca = TempFile::new("rancher-ca.pem", pem);
    let ca_line = format!("ca_file = {:?}", ca.path().display().to_string());
    let s = valid(&format!("[tls]\nsource = \"secret\"\n{ca_line}"), &token);
    let files = render::bundle(&s, &inventory());
    let v: RancherValues = serde_norway::from_str(&get(&files, "rancher/values.yaml")).unwrap();
    assert_eq!(v.ingress.unwrap().tls.source, "secret");
    assert!(v.private_ca && v.lets_encrypt.is_none());
    assert_eq!(get(&files, "rancher/cacerts.pem"), pem);
    let install = get(&files, "rancher/install.sh");
    for want in [
        "create secret tls tls-rancher-ingress --cert=tls.crt --key=tls.key",
        "create secret generic tls-ca --from-file=cacerts.pem=cacerts.pem",
        "[ -f tls.crt ] && [ -f tls.key ]",
    ] {
        assert!(install.contains(want), "{want} in {install}");
    }
    assert!(
        !install.contains("cert-manager"),
        "no cert-manager for your own certificate"
    );
    let sh = Command::new("sh")
        .arg("-n")
        .arg("-c")
        .arg(&install)
        .status()
        .unwrap();
    assert!(sh.success(), "install.sh is not valid sh:\n{install}");
    let helm = render::helm_install(&s, &inventory());
    assert!(
        helm.contains("--set privateCA=true") && helm.contains("ingress.tls.source=secret"),
        "{helm}"
    );

    let internal = valid(
        "[load_balancer]\nscheme = \"internal\"\n[tls]\nsource = \"letsEncrypt\"\nlets_encrypt_email = \"ops@example.com\"",
        &token,
    );
    assert!(
        internal.warnings().iter().any(|w| w.contains("HTTP-01")),
        "{:?}",
        internal.warnings()
    );

    assert_refused(
        "[tls]\nsource = \"letsEncrypt\"",
        "tls.lets_encrypt_email",
        "missing",
    );
    assert_refused(
        "[tls]\nsource = \"letsEncrypt\"\nlets_encrypt_email = \"ops\"",
        "tls.lets_encrypt_email",
        "not an e-mail",
    );
    assert_refused(
        "[tls]\nlets_encrypt_email = \"ops@example.com\"",
        "tls.lets_encrypt_email",
        "letsEncrypt",
    );
    assert_refused(
        &format!("[tls]\n{ca_line}"),
        "tls.ca_file",
        "tls.source = \"secret\"",
    );
    assert_refused(
        "[load_balancer]\nmode = \"l7\"\ncertificate = \"arn:aws:acm:us-east-1:123:certificate/x\"\n[tls]\nsource = \"secret\"",
        "tls.source",
        "tls=external",
    );
    assert_refused(
        "[tls]\nsource = \"secret\"\nca_file = \"/nonexistent/ca.pem\"",
        "tls.ca_file",
        "cannot be read",
    );
    let err = triad_core::spec::ClusterSpec::from_toml(
        "name = \"r\"\nregion = \"x\"\n[dns]\nzone = \"e.com\"\nhostname = \"r.e.com\"\n[tls]\nsource = \"vault\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("letsEncrypt") && err.contains("secret"),
        "{err}"
    );
}
