//! Spreading nodes over zones, fewest-first (as Cluster API does): each new node goes
//! to the zone that has the fewest nodes, ties broken by the zones' order.

use std::collections::BTreeMap;

/// Choose a zone for each of `new` nodes, given the zones of the nodes that exist.
///
/// ```
/// use triad_core::placement::place;
/// let zones = ["a".to_string(), "b".to_string(), "c".to_string()];
/// assert_eq!(place(&zones, &["a".to_string()], 2), vec!["b", "c"]);
/// assert_eq!(place(&zones, &[], 4), vec!["a", "b", "c", "a"]);
/// ```
pub fn place(zones: &[String], existing: &[String], new: usize) -> Vec<String> {
    if zones.is_empty() {
        return Vec::new();
    }
    let mut count: BTreeMap<&str, usize> = zones.iter().map(|z| (z.as_str(), 0)).collect();
    for z in existing {
        if let Some(c) = count.get_mut(z.as_str()) {
            *c += 1;
        }
    }
    let mut out = Vec::with_capacity(new);
    for _ in 0..new {
        let zone = zones
            .iter()
            .min_by_key(|z| count[z.as_str()])
            .expect("zones is not empty");
        *count.get_mut(zone.as_str()).expect("known zone") += 1;
        out.push(zone.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn three_nodes_three_zones() {
        assert_eq!(place(&z(&["a", "b", "c"]), &[], 3), z(&["a", "b", "c"]));
    }

    #[test]
    fn fills_the_emptiest_zone_first() {
        assert_eq!(
            place(&z(&["a", "b", "c"]), &z(&["a", "a", "b"]), 2),
            z(&["c", "b"])
        );
    }

    #[test]
    fn more_nodes_than_zones_stays_balanced() {
        let placed = place(&z(&["a", "b"]), &[], 5);
        let a = placed.iter().filter(|x| *x == "a").count();
        assert_eq!((a, placed.len() - a), (3, 2));
    }

    #[test]
    fn existing_nodes_in_unknown_zones_are_ignored() {
        assert_eq!(place(&z(&["a", "b"]), &z(&["x"]), 2), z(&["a", "b"]));
    }

    #[test]
    fn no_zones_places_nothing() {
        assert!(place(&[], &[], 3).is_empty());
    }
}
