//! Backends, a private nginx instance and settings for the tests.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use triad_core::model::{Node, NodeState};
use triad_nginx::NginxSettings;

/// The nginx binary scripts/test installed, or a panic saying so.
pub(crate) fn nginx_bin() -> String {
    std::env::var("TRIAD_NGINX_BIN").unwrap_or_else(|_| {
        panic!("TRIAD_NGINX_BIN is not set: run these tests through scripts/test, which installs nginx and exports it")
    })
}

/// The stream module of Debian's nginx.
pub(crate) fn stream_module() -> String {
    std::env::var("TRIAD_NGINX_STREAM_MODULE")
        .unwrap_or_else(|_| "/usr/lib/nginx/modules/ngx_stream_module.so".into())
}

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "triad-nginx-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("logs")).unwrap();
        Self(p)
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free TCP port on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Host-mode settings for a private nginx under `dir`, listening on 127.0.0.1
/// at `http`/`https`, forwarding to `backend` on the targets; reloads are counted
/// in `dir/reloads`.
pub(crate) fn host_settings(dir: &Path, http: u16, https: u16, backend: u16) -> NginxSettings {
    let bin = nginx_bin();
    let conf = dir.join("nginx.conf");
    let mut s = NginxSettings::host("127.0.0.1");
    s.config_path = conf.clone();
    s.nginx_bin = bin.clone().into();
    s.prefix = Some(dir.to_path_buf());
    s.listen_address = Some("127.0.0.1".into());
    s.http_port = http;
    s.https_port = https;
    s.backend_http_port = backend;
    s.backend_https_port = backend;
    s.modules = vec![stream_module()];
    s.pid_file = Some(dir.join("nginx.pid").display().to_string());
    s.error_log = Some(dir.join("logs/error.log").display().to_string());
    s.worker_processes = "1".into();
    s.reload_command = Some(vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo reload >> '{d}/reloads' && exec '{bin}' -p '{d}' -c '{c}' -s reload",
            d = dir.display(),
            c = conf.display()
        ),
    ]);
    s
}

/// How many times the provider reloaded nginx.
pub(crate) fn reloads(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("reloads"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// nginx in the foreground with the provider's configuration; stopped on drop.
pub(crate) struct Nginx {
    child: Child,
}

impl Nginx {
    /// nginx running before triad writes its configuration, as on a host the user
    /// prepared: started with a placeholder file that is then moved away.
    pub(crate) fn start_placeholder(dir: &Path) -> Self {
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "pid {}/nginx.pid;\nerror_log {}/logs/error.log;\nevents {{}}\n",
                dir.display(),
                dir.display()
            ),
        )
        .unwrap();
        let me = Self::start(dir, &[]);
        for _ in 0..100 {
            if std::fs::read_to_string(dir.join("nginx.pid")).is_ok_and(|p| !p.trim().is_empty()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::remove_file(&conf).unwrap();
        me
    }

    /// Wait until nginx listens on `ports`.
    pub(crate) fn wait_ports(&mut self, ports: &[u16]) {
        for port in ports {
            self.wait_port(*port);
        }
    }

    pub(crate) fn start(dir: &Path, ports: &[u16]) -> Self {
        let child = Command::new(nginx_bin())
            .args(["-p", &dir.display().to_string(), "-c"])
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let mut me = Self { child };
        for port in ports {
            me.wait_port(*port);
        }
        me
    }

    fn wait_port(&mut self, port: u16) {
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited: {status}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx does not listen on {port}");
    }

    /// Wait until the process is gone (after the provider stopped it).
    pub(crate) fn wait_exit(&mut self) -> bool {
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A backend answering every HTTP request with its name and the request headers
/// it received (lowercased), then closing.
pub(crate) struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Backend {
    pub(crate) async fn start(name: &str, ip: &str, port: u16) -> Self {
        let addr = SocketAddr::new(ip.parse().unwrap(), port);
        let listener = TcpListener::bind(addr).await.expect("backend binds");
        let me = name.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let req = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                    let body = format!("backend={me}\n{req}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Self {
            name: name.to_owned(),
            addr,
            task,
        }
    }

    /// The node the backend stands for.
    pub(crate) fn node(&self) -> Node {
        Node {
            id: format!("id-{}", self.name),
            name: self.name.clone(),
            zone: "dc1-a".into(),
            state: NodeState::Running,
            private_ip: Some(self.addr.ip()),
            public_ip: None,
            ssh: None,
            labels: Default::default(),
            created_ms: None,
        }
    }

    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Three backends on 127.0.0.11-13 at one free port.
pub(crate) async fn three_backends() -> (Vec<Backend>, u16) {
    // The same port on three loopback addresses; retry if another test took it.
    for _ in 0..20 {
        let port = free_port();
        let ips = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
        if ips
            .iter()
            .all(|ip| std::net::TcpListener::bind((ip.parse::<IpAddr>().unwrap(), port)).is_ok())
        {
            let mut v = Vec::new();
            for (i, ip) in ips.iter().enumerate() {
                v.push(Backend::start(&format!("rancher-{}", i + 1), ip, port).await);
            }
            return (v, port);
        }
    }
    panic!("no free port for the backends");
}

/// One plain HTTP/1.1 request over TCP to 127.0.0.1:`port`; the whole response.
pub(crate) async fn http_get(port: u16, headers: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: rancher.example.test\r\n{headers}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The backend name in a response, if any.
pub(crate) fn backend_of(response: &str) -> Option<String> {
    response
        .lines()
        .find_map(|l| l.strip_prefix("backend="))
        .map(str::to_owned)
}

/// The values of `key` in the comment header at the top of a configuration triad
/// wrote (`# key=value` lines), read here rather than with the crate's parser.
pub(crate) fn header_values(config: &str, key: &str) -> Vec<String> {
    config
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# ")?.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
        .collect()
}
