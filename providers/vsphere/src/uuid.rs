//! Deterministic instance UUIDs: the idempotency key of a node.

/// The namespace of triad's node UUIDs (a fixed, random UUID).
const NAMESPACE: [u8; 16] = [
    0x5c, 0x1e, 0x7a, 0x2b, 0x93, 0x4d, 0x4f, 0x61, 0xa0, 0x8e, 0x27, 0xd1, 0x3c, 0x55, 0x90, 0x4b,
];

/// The instance UUID of node `node` of cluster `cluster` in datacenter `datacenter`: a
/// name-based (version 5, SHA-1) UUID, so a rerun computes the same one and finds the
/// VM instead of cloning it again (Cluster API's vSphere provider does the same).
///
/// ```
/// use triad_vsphere::uuid::instance_uuid;
/// let a = instance_uuid("DC0", "rancher", "rancher-1");
/// assert_eq!(a, instance_uuid("DC0", "rancher", "rancher-1"));
/// assert_ne!(a, instance_uuid("DC0", "rancher", "rancher-2"));
/// assert_eq!(&a[14..15], "5");
/// ```
pub fn instance_uuid(datacenter: &str, cluster: &str, node: &str) -> String {
    let mut h = sha1_smol::Sha1::new();
    h.update(&NAMESPACE);
    // Lengths first, so ("a-b", "c") and ("a", "b-c") differ.
    for part in [datacenter, cluster, node] {
        h.update(&(part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let d = h.digest().bytes();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
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
        // Pinned: the key must never change between releases, or reruns clone again.
        assert_eq!(u, "4a3225f3-e90d-5511-bce5-8e67ed33d3fe");
        assert_ne!(
            instance_uuid("a-b", "c", "n"),
            instance_uuid("a", "b-c", "n")
        );
        assert_ne!(u, instance_uuid("DC1", "rancher", "rancher-1"));
    }
}
