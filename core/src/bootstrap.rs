//! cloud-init user data for the nodes (temporary; replaced by the bootstrap branch).
use crate::spec::ValidSpec;
/// User data.
pub fn user_data(spec: &ValidSpec, node_name: &str) -> String {
    format!("#cloud-config\nhostname: {node_name}\n# {}\n", spec.name)
}
