//! cloud-init user data for the nodes (filled in next).
