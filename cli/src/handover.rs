//! `apply --out DIR`: the hand-over written next to the cluster — everything the
//! next person (or tool) needs to install Kubernetes and Rancher on the nodes.

use std::path::{Path, PathBuf};

use triad_core::{render, Inventory, ValidSpec};

use crate::CliError;

/// Write the hand-over for `inventory` into `dir` (created if missing) and return
/// the files written: `inventory.json` and `next-steps.txt`.
pub fn write(
    dir: &Path,
    spec: &ValidSpec,
    inventory: &Inventory,
) -> Result<Vec<PathBuf>, CliError> {
    let io = |path: &Path, e: std::io::Error| CliError::Io(format!("{}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let files = [
        ("inventory.json", render::inventory_json(inventory)),
        ("next-steps.txt", render::next_steps(spec, inventory)),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, format!("{}\n", text.trim_end())).map_err(|e| io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}
