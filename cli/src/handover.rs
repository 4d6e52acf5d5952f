//! `apply --out DIR`: the hand-over written next to the cluster — everything the
//! next person (or tool) needs to install Kubernetes and Rancher on the nodes.

use std::path::{Path, PathBuf};

use triad_core::{render, Inventory, ValidSpec};

use crate::CliError;

/// Write core's hand-over bundle ([`render::bundle`]: `inventory.json`,
/// `next-steps.txt`, the distribution's configs, the Rancher chart's values,
/// cert-manager and kubeconfig commands) into `dir` (created if missing) and return
/// the files written.
pub(crate) fn write(
    dir: &Path,
    spec: &ValidSpec,
    inventory: &Inventory,
) -> Result<Vec<PathBuf>, CliError> {
    let bundle = render::bundle(spec, inventory);
    render::write_to(&bundle, dir).map_err(|e| CliError::Io(format!("{}: {e}", dir.display())))?;
    Ok(bundle.iter().map(|f| dir.join(&f.path)).collect())
}
