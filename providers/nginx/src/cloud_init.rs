//! The cloud-init user data of a balancer node (node mode): nginx, its stream
//! module, the configuration and (l7) the certificate and key.

use serde::Serialize;

use crate::{NginxProvider, NODE_CERT, NODE_KEY};

#[derive(Serialize)]
struct CloudConfig<'a> {
    hostname: &'a str,
    fqdn: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ssh_authorized_keys: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apt: Option<AptProxy>,
    packages: Vec<&'static str>,
    write_files: Vec<WriteFile>,
    runcmd: Vec<Vec<&'static str>>,
}

#[derive(Serialize)]
struct AptProxy {
    http_proxy: String,
    https_proxy: String,
}

#[derive(Serialize)]
struct WriteFile {
    path: &'static str,
    owner: &'static str,
    permissions: &'static str,
    defer: bool,
    content: String,
}

impl NginxProvider {
    /// The cloud-init user data of a balancer node: apt proxy (when the spec has
    /// one), nginx and its stream module, the configuration (and for l7 the
    /// certificate and key) written after the packages, then a checked restart.
    ///
    /// It holds the TLS key (l7) and the proxy password, if any: treat it as a secret.
    pub(crate) fn user_data(
        &self,
        name: &str,
        config: String,
        tls: Option<(String, String)>,
    ) -> String {
        let mut write_files = vec![WriteFile {
            path: "/etc/nginx/nginx.conf",
            owner: "root:root",
            permissions: "0644",
            defer: true,
            content: config,
        }];
        if let Some((cert, key)) = tls {
            write_files.push(WriteFile {
                path: NODE_CERT,
                owner: "root:root",
                permissions: "0644",
                defer: true,
                content: cert,
            });
            write_files.push(WriteFile {
                path: NODE_KEY,
                owner: "root:root",
                permissions: "0600",
                defer: true,
                content: key,
            });
        }
        let doc = CloudConfig {
            hostname: name,
            fqdn: name,
            ssh_authorized_keys: self
                .settings
                .ssh_authorized_keys
                .iter()
                .map(String::as_str)
                .collect(),
            apt: self.defaults.proxy.as_ref().map(|(http, https)| AptProxy {
                http_proxy: http.expose().to_owned(),
                https_proxy: https.expose().to_owned(),
            }),
            packages: vec!["nginx", "libnginx-mod-stream"],
            write_files,
            runcmd: vec![
                vec!["systemctl", "enable", "nginx"],
                vec!["sh", "-c", "nginx -t && systemctl restart nginx"],
            ],
        };
        let body = serde_norway::to_string(&doc).expect("cloud-config structs always serialise");
        format!("#cloud-config\n{body}")
    }
}
