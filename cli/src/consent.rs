//! Consent for destructive changes (what [`triad_core::Plan::destructive`] lists, and
//! `destroy`): asking for it at a terminal, refusing without one.

use std::io::{BufRead, IsTerminal, Write};

use triad_core::ClusterRef;

use crate::CliError;

/// The lines `destroy` asks consent for.
pub(crate) fn destroy_lines(cluster: &ClusterRef, fqdn: &str) -> Vec<String> {
    vec![format!(
        "destroy every resource labelled triad-cluster={} in {}: the nodes, the load balancer and the DNS record {fqdn}",
        cluster.name, cluster.region
    )]
}

/// Go on when `lines` is empty or `yes` is set; otherwise ask at a terminal (stdin
/// and stderr both terminals) and refuse without one.
pub(crate) fn confirm(lines: &[String], yes: bool, command: &str) -> Result<(), CliError> {
    if lines.is_empty() || yes {
        return Ok(());
    }
    let mut err = std::io::stderr();
    if !(std::io::stdin().is_terminal() && err.is_terminal()) {
        return Err(CliError::Refused(format!(
            "`triad {command}` would {}; without a terminal to ask at, pass --yes to allow it",
            lines.join("; ")
        )));
    }
    let _ = writeln!(err, "triad {command} will:");
    for l in lines {
        let _ = writeln!(err, "  - {l}");
    }
    let _ = write!(err, "Type `yes` to go on: ");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Refused(format!("cannot read the answer: {e}")))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CliError::Refused(format!(
            "`triad {command}` was not confirmed; nothing was changed"
        )))
    }
}
