//! The lab segment: a VDE switch (Debian `vde2`) listening on Unix sockets in the
//! state directory. It is a user-space process: no bridge, tap or address exists in
//! the host's network stack; the VMs' second NICs plug into it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use triad_core::error::{FailureKind, Result};

use crate::vm::process_mentions;
use crate::{err, io_err};

/// The lab switch of a state directory.
#[derive(Clone, Debug)]
pub(crate) struct Lab {
    dir: PathBuf,
}

impl Lab {
    pub(crate) fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("lab"),
        }
    }

    /// The switch's socket directory (QEMU's `-netdev vde,sock=`).
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("switch")
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.join("switch.pid")
    }

    /// The switch's PID, when it runs.
    pub(crate) fn running_pid(&self) -> Option<i32> {
        crate::vm::running_pid(&self.pidfile(), &self.socket())
    }

    /// Whether anything of the lab is left (a running switch or its directory).
    pub(crate) fn exists(&self) -> bool {
        self.dir.exists()
    }

    /// Start the switch unless it runs.
    pub(crate) async fn ensure(&self) -> Result<()> {
        if self.running_pid().is_some() {
            return Ok(());
        }
        let what = format!("lab switch {}", self.dir.display());
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        let _ = std::fs::remove_dir_all(self.socket());
        let _ = std::fs::remove_file(self.pidfile());
        let sock = self.socket();
        let pidfile = self.pidfile();
        crate::vm::run_tool(
            Path::new("vde_switch"),
            &[
                "--sock".as_ref(),
                sock.as_os_str(),
                "--dirmode".as_ref(),
                "0700".as_ref(),
                "--mode".as_ref(),
                "0600".as_ref(),
                "--daemon".as_ref(),
                "--pidfile".as_ref(),
                pidfile.as_os_str(),
            ],
            &what,
        )
        .await?;
        for _ in 0..50 {
            if self.running_pid().is_some() && sock.join("ctl").exists() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(err(
            "start",
            &what,
            FailureKind::Other,
            "vde_switch did not come up within 5 s",
        ))
    }

    /// Stop the switch and remove its directory.
    pub(crate) async fn remove(&self) -> Result<()> {
        if let Some(pid) = self.running_pid() {
            for signal in [libc::SIGTERM, libc::SIGKILL] {
                // SAFETY: kill(2) with a PID checked to be this lab's switch.
                unsafe { libc::kill(pid, signal) };
                for _ in 0..30 {
                    if !process_mentions(pid, &self.socket()) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&self.dir, e)),
        }
    }
}
