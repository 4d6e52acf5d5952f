//! Deterministic instance UUIDs: the idempotency key of a node.

use ::uuid::Uuid;

/// The namespace of triad's node UUIDs (a fixed, random UUID).
const NAMESPACE: Uuid = Uuid::from_bytes([
    0x5c, 0x1e, 0x7a, 0x2b, 0x93, 0x4d, 0x4f, 0x61, 0xa0, 0x8e, 0x27, 0xd1, 0x3c, 0x55, 0x90, 0x4b,
]);

/// The instance UUID of node `node` of cluster `cluster` in datacenter `datacenter`: a
/// name-based (version 5, SHA-1) UUID, so a rerun computes the same one and finds the
/// VM instead of cloning it again (Cluster API's vSphere provider does the same).
///
/// The name hashed is each part prefixed by its length (8 bytes, big-endian), so
/// (`a-b`, `c`) and (`a`, `b-c`) differ.
///
/// ```
/// use triad_vsphere::uuid::instance_uuid;
/// let a = instance_uuid("DC0", "rancher", "rancher-1");
/// assert_eq!(a, instance_uuid("DC0", "rancher", "rancher-1"));
/// assert_ne!(a, instance_uuid("DC0", "rancher", "rancher-2"));
/// assert_eq!(&a[14..15], "5");
/// ```
pub fn instance_uuid(datacenter: &str, cluster: &str, node: &str) -> String {
    let mut name = Vec::with_capacity(24 + datacenter.len() + cluster.len() + node.len());
    for part in [datacenter, cluster, node] {
        name.extend_from_slice(&(part.len() as u64).to_be_bytes());
        name.extend_from_slice(part.as_bytes());
    }
    Uuid::new_v5(&NAMESPACE, &name).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_stability() {
        let u = instance_uuid("DC0", "rancher", "rancher-1");
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        // Pinned (the value the hand-written v5 of earlier releases gave): the key must
        // never change between releases, or reruns clone again.
        assert_eq!(u, "4a3225f3-e90d-5511-bce5-8e67ed33d3fe");
        assert_eq!(
            instance_uuid("DC1", "e2e", "e2e-3"),
            "6a964165-4868-5091-a09a-9af9937d8020"
        );
        assert_ne!(
            instance_uuid("a-b", "c", "n"),
            instance_uuid("a", "b-c", "n")
        );
        assert_ne!(u, instance_uuid("DC1", "rancher", "rancher-1"));
    }
}
