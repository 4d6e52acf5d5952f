//! The HTTP proxy on the nodes: the NO_PROXY list, and the proxy files with the
//! literal proxy URL escaped for each file format (see the
//! [module documentation](super) for the formats and file modes).

use super::cloud_init::{WriteFile, MODE_PRIVATE, MODE_PUBLIC};
use crate::spec::ValidSpec;

/// Rancher's recommended NO_PROXY entries for the nodes, in the order Rancher's
/// install docs give them: loopback, the private ranges the cluster and service
/// networks live in, and Rancher's own namespace.
pub const RANCHER_NO_PROXY: [&str; 5] = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "cattle-system.svc",
    "172.16.0.0/12",
    "192.168.0.0/16",
];

/// Entries added after [`RANCHER_NO_PROXY`]: in-cluster service names (Rancher's
/// Helm `noProxy` recommendation) and `localhost` by name.
const CLUSTER_NO_PROXY: [&str; 3] = [".svc", ".cluster.local", "localhost"];

/// The NO_PROXY list for the nodes and for Rancher's Helm `noProxy` value.
///
/// In order, without duplicates (the first occurrence wins): [`RANCHER_NO_PROXY`],
/// then `.svc`, `.cluster.local`, `localhost`, then every node name of the cluster
/// (the nodes talk to each other by name), the Rancher hostname (the registration
/// address: nodes reach the balancer directly, never through the proxy), the
/// pod and service CIDRs (`kubernetes.cidr_pods`, `kubernetes.cidr_services`), the
/// node network (`nodes.network_cidrs` and, after a plan, what the node provider
/// reported: [`ValidSpec::node_network_cidrs`]), then the user's `proxy.no_proxy`. The list
/// is the same whether or not a proxy is configured, and every entry passes
/// [`check_no_proxy_entry`].
///
/// ```
/// use triad_core::spec::ClusterSpec;
/// use triad_core::bootstrap::no_proxy;
///
/// let spec = ClusterSpec::from_toml(r#"
///     name = "rancher"
///     region = "us-east-1"
///     [proxy]
///     http = "http://proxy.corp:3128"
///     no_proxy = ["corp.example", "10.0.0.0/8"]
///     [dns]
///     zone = "example.com"
///     hostname = "rancher.example.com"
/// "#).unwrap().validate().unwrap();
/// let list = no_proxy(&spec);
/// assert_eq!(list[0], "127.0.0.0/8");
/// assert_eq!(list.last().unwrap(), "corp.example");
/// assert!(list.contains(&"10.42.0.0/16".to_owned()));
/// assert_eq!(list.iter().filter(|e| *e == "10.0.0.0/8").count(), 1);
/// ```
pub fn no_proxy(spec: &ValidSpec) -> Vec<String> {
    let user = spec.proxy.iter().flat_map(|p| p.no_proxy.iter().cloned());
    let k8s = [
        spec.fqdn(),
        super::registration_host(spec),
        spec.kubernetes.cidr_pods().to_owned(),
        spec.kubernetes.cidr_services().to_owned(),
    ];
    let mut out: Vec<String> = Vec::new();
    for entry in RANCHER_NO_PROXY
        .iter()
        .chain(CLUSTER_NO_PROXY.iter())
        .map(|s| (*s).to_owned())
        .chain(spec.node_names())
        .chain(k8s)
        .chain(spec.node_network_cidrs())
        .chain(user)
    {
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

/// Check one NO_PROXY entry in Go's format, as RKE2, K3s, containerd and Rancher
/// read it (and curl and Python the same way): a host name, a `.domain` suffix, an
/// IP (optionally with `:port`) or a network CIDR. No spaces, commas or quotes, and
/// no `*` wildcard (`*.corp` is understood by Go only; write `.corp`). The error
/// says what is wrong with the entry.
///
/// ```
/// use triad_core::bootstrap::check_no_proxy_entry as check;
/// assert!(check(".corp.example").is_ok());
/// assert!(check("10.42.0.0/16").is_ok());
/// assert!(check("*.corp").is_err());
/// assert!(check("10.42.0.1/16").is_err());
/// assert!(check("a b").is_err());
/// ```
pub fn check_no_proxy_entry(entry: &str) -> Result<(), String> {
    crate::validate::no_proxy_entry(entry)
}

/// The server's environment file (`/etc/default/rke2-server`, `/etc/default/k3s`)
/// with the literal proxy values, or `None` without a `[proxy]`. It holds the
/// proxy password when the URL has one.
pub fn server_env_file(spec: &ValidSpec) -> Option<String> {
    let proxy = spec.proxy.as_ref()?;
    let http = url_literal(proxy.http.expose());
    let https = url_literal(proxy.https.as_ref().unwrap_or(&proxy.http).expose());
    Some(env_file(&http, &https, &no_proxy(spec).join(",")))
}

/// `KEY="value"` lines for the proxy, plain and `CONTAINERD_`-prefixed.
fn env_file(http: &str, https: &str, no_proxy: &str) -> String {
    let vars = [
        ("HTTP_PROXY", http),
        ("HTTPS_PROXY", https),
        ("NO_PROXY", no_proxy),
    ];
    // RKE2 and K3s read these through `EnvironmentFile=`; the CONTAINERD_ variants
    // reach only the containerd they embed.
    let mut rke = String::from("# HTTP proxy, written by triad\n");
    for (k, v) in vars {
        rke.push_str(&format!("{k}=\"{}\"\n", env_escape(v)));
    }
    for (k, v) in vars {
        rke.push_str(&format!("CONTAINERD_{k}=\"{}\"\n", env_escape(v)));
    }
    rke
}

pub(super) fn proxy_files(http: &str, https: &str, no_proxy: &str) -> Vec<WriteFile> {
    let file = |path, permissions, append, content| WriteFile {
        path,
        owner: "root:root",
        permissions,
        append,
        content,
    };

    let env_line = |k: &str, v: &str| format!("{k}=\"{}\"\n", env_escape(v));
    let vars = [
        ("HTTP_PROXY", http),
        ("HTTPS_PROXY", https),
        ("NO_PROXY", no_proxy),
    ];

    // /etc/environment is appended to: start on a fresh line in case the image's
    // file lacks a final newline. pam_env strips the double quotes.
    let mut environment = String::from("\n# HTTP proxy, added by triad\n");
    for (k, v) in vars {
        environment.push_str(&env_line(k, v));
    }
    for (k, v) in vars {
        environment.push_str(&env_line(&k.to_ascii_lowercase(), v));
    }

    let apt = format!(
        "# HTTP proxy, written by triad\nAcquire::http::Proxy \"{http}\";\nAcquire::https::Proxy \"{https}\";\n"
    );

    let drop_in = format!(
        "# HTTP proxy, written by triad\n[Service]\nEnvironment=\"HTTP_PROXY={}\" \"HTTPS_PROXY={}\" \"NO_PROXY={}\"\n",
        unit_escape(http),
        unit_escape(https),
        unit_escape(no_proxy),
    );

    let rke = env_file(http, https, no_proxy);

    vec![
        file("/etc/environment", MODE_PUBLIC, true, environment),
        file("/etc/apt/apt.conf.d/proxy.conf", MODE_PRIVATE, false, apt),
        file(
            "/etc/systemd/system/docker.service.d/http-proxy.conf",
            MODE_PUBLIC,
            false,
            drop_in.clone(),
        ),
        file(
            "/etc/systemd/system/containerd.service.d/http-proxy.conf",
            MODE_PUBLIC,
            false,
            drop_in,
        ),
        file("/etc/default/rke2-server", MODE_PRIVATE, false, rke.clone()),
        file("/etc/default/rke2-agent", MODE_PRIVATE, false, rke.clone()),
        file("/etc/default/k3s", MODE_PRIVATE, false, rke),
    ]
}

/// The proxy URL with every character that some target format would need to
/// quote percent-encoded; an equivalent URL for the proxy client.
pub(super) fn url_literal(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        if matches!(c, '"' | '\'' | '`' | '\\' | '$') || c.is_whitespace() || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Escape for a double-quoted value in an environment file (systemd
/// `EnvironmentFile=` and POSIX shell agree on these).
pub(super) fn env_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escape for a double-quoted word in a systemd unit file: C-style escapes for
/// `\` and `"`, and `%%` for `%`, which systemd would take for a specifier.
pub(super) fn unit_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out
}
