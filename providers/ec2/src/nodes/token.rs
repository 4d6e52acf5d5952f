//! `RunInstances` client tokens: a retried or rerun create returns the same
//! instance; a changed spec, or a node made again after a delete, gets a new one.

use triad_core::model::NodeRequest;

/// 128-bit FNV-1a: a hash that is the same in every build and on every machine, for
/// client tokens that must survive a restart with a new binary.
pub(super) fn fnv128(parts: &[&str]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= u128::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

/// The `RunInstances` client token of a node: the cluster, the node, everything
/// that shapes the instance, and the node's generation — so a retried or rerun
/// create returns the same instance, a changed spec does not collide with an old
/// token (`IdempotentParameterMismatch`), and a node made again after a delete is
/// new. At most 64 ASCII characters, as EC2 requires.
///
/// EC2 honours a token for at least 24 hours after its instance is terminated, far
/// longer than terminated instances stay listed (about an hour), so the generation
/// ([`generation`]) is built from what survives: the id of the nodes' security group
/// (a new one after `destroy`), the terminated instances still listed, and the ids
/// of instances an old token brought back.
pub(super) fn client_token(
    cluster: &str,
    request: &NodeRequest,
    instance_type: &str,
    subnet: &str,
    generation: &str,
) -> String {
    let disk = request.disk_gib.map(|d| d.to_string()).unwrap_or_default();
    let h = fnv128(&[
        cluster,
        &request.name,
        &request.zone,
        instance_type,
        request.image.as_deref().unwrap_or(""),
        &disk,
        subnet,
        &request.user_data,
        generation,
    ]);
    let mut t = format!("triad-{:032x}-{}", h, request.name);
    t.truncate(64);
    t
}

/// A node's token generation: its security group, how many of its instances are
/// listed as terminated, and the instances old tokens brought back (`replayed`).
pub(super) fn generation(security_group: &str, terminated: usize, replayed: &[String]) -> String {
    let mut g = format!("{security_group}/{terminated}");
    for id in replayed {
        g.push('/');
        g.push_str(id);
    }
    g
}

#[cfg(test)]
mod tests {

    use super::*;

    fn request(user_data: &str) -> NodeRequest {
        let mut request = NodeRequest::new("rancher-1", "us-east-1a");
        request.image = Some("ami-1".into());
        request.disk_gib = Some(100);
        request.user_data = user_data.into();
        request
    }

    #[test]
    fn client_tokens_are_stable_short_and_follow_what_matters() {
        let a = client_token(
            "rancher",
            &request("#cloud-config\n"),
            "t3.xlarge",
            "subnet-1",
            "0",
        );
        // The same in every build: a rerun with a new binary must find the same token.
        assert_eq!(
            a,
            client_token(
                "rancher",
                &request("#cloud-config\n"),
                "t3.xlarge",
                "subnet-1",
                "0"
            )
        );
        assert!(a.len() <= 64 && a.is_ascii(), "{a}");
        assert!(a.starts_with("triad-") && a.ends_with("-rancher-1"), "{a}");
        for other in [
            client_token(
                "rancher",
                &request("#cloud-config\nx"),
                "t3.xlarge",
                "subnet-1",
                "0",
            ),
            client_token(
                "rancher",
                &request("#cloud-config\n"),
                "m5.xlarge",
                "subnet-1",
                "0",
            ),
            client_token(
                "rancher",
                &request("#cloud-config\n"),
                "t3.xlarge",
                "subnet-2",
                "0",
            ),
            client_token(
                "rancher",
                &request("#cloud-config\n"),
                "t3.xlarge",
                "subnet-1",
                "1",
            ),
            client_token(
                "other",
                &request("#cloud-config\n"),
                "t3.xlarge",
                "subnet-1",
                "0",
            ),
        ] {
            assert_ne!(a, other);
        }
        // A new security group (after destroy) or an instance an old token brought
        // back makes a new generation.
        let g = generation("sg-1", 0, &[]);
        assert_eq!(g, generation("sg-1", 0, &[]));
        assert_ne!(g, generation("sg-2", 0, &[]));
        assert_ne!(g, generation("sg-1", 0, &["i-old".into()]));
        assert_ne!(
            generation("sg-1", 0, &["i-a".into()]),
            generation("sg-1", 0, &["i-a".into(), "i-b".into()])
        );
        // Field boundaries matter: ("ab","c") and ("a","bc") differ.
        assert_ne!(fnv128(&["ab", "c"]), fnv128(&["a", "bc"]));
        // A known value pins the algorithm.
        assert_eq!(fnv128(&[]), 0x6c62272e07bb014262b821756295c58d);
    }
}
