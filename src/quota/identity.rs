//! Which keys of a server's list cannot be told apart. Per-key calls address a key by id,
//! then by uuid, and the server matches either: when one value names two keys, a reset
//! or a delete "of" one may hit the other, and reading it back reads either. Such keys
//! are an error of the server's reading: no ledger change, no threshold, no action on
//! any of them, while the other keys are handled as usual. Pure code.

use std::collections::BTreeSet;

use serde::Serialize;

/// The identities that name more than one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ambiguity {
    /// Ids shared by several keys (or equal to another key's uuid), sorted.
    pub ids: Vec<String>,
    /// Uuids shared by several keys (or equal to another key's id), sorted.
    pub uuids: Vec<String>,
    /// Positions (in the list given) of every key involved.
    pub keys: BTreeSet<usize>,
}

impl Ambiguity {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn involves(&self, index: usize) -> bool {
        self.keys.contains(&index)
    }
}

/// The ambiguous identities of a key list given as (id, uuid) pairs. A key whose id
/// equals its own uuid (servers that know keys only by uuid) is not ambiguous.
pub fn ambiguity<'a>(keys: impl IntoIterator<Item = (&'a str, &'a str)>) -> Ambiguity {
    let keys: Vec<(&str, &str)> = keys.into_iter().collect();
    // identity -> the first key it names; a second key naming it makes it shared. One
    // map entry per identity (no list per identity): 100 000 keys are 200 000 of them.
    let mut first: foldhash::HashMap<&str, usize> =
        foldhash::HashMap::with_capacity_and_hasher(2 * keys.len(), Default::default());
    let mut shared: foldhash::HashSet<&str> = foldhash::HashSet::default();
    for (index, &(id, uuid)) in keys.iter().enumerate() {
        // A key whose id equals its own uuid names that value once.
        let own_uuid = (uuid != id).then_some(uuid);
        for value in std::iter::once(id).chain(own_uuid) {
            if value.is_empty() {
                continue;
            }
            if *first.entry(value).or_insert(index) != index {
                shared.insert(value);
            }
        }
    }
    let mut out = Ambiguity::default();
    if shared.is_empty() {
        return out;
    }
    let (mut shared_ids, mut shared_uuids) = (BTreeSet::new(), BTreeSet::new());
    for (index, &(id, uuid)) in keys.iter().enumerate() {
        if shared.contains(id) {
            out.keys.insert(index);
            shared_ids.insert(id.to_string());
        }
        if shared.contains(uuid) {
            out.keys.insert(index);
            shared_uuids.insert(uuid.to_string());
        }
    }
    out.ids = shared_ids.into_iter().collect();
    out.uuids = shared_uuids.into_iter().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_keys_are_fine_and_id_equal_to_own_uuid_too() {
        let keys = [("1", "u1"), ("2", "u2"), ("u3", "u3")];
        assert!(ambiguity(keys).is_empty());
    }

    #[test]
    fn shared_ids_shared_uuids_and_crossed_identities() {
        let keys = [
            ("1", "u1"),
            ("7", "u2"),
            ("7", "u3"), // shares id 7 with the key before
            ("4", "u4"),
            ("5", "u4"),  // shares uuid u4
            ("u6", "u6"), // its id is ...
            ("6", "x6"),
            ("9", "u6"), // ... this key's uuid
        ];
        let found = ambiguity(keys);
        assert_eq!(found.ids, ["7", "u6"]);
        assert_eq!(found.uuids, ["u4", "u6"]);
        assert_eq!(found.keys, BTreeSet::from([1, 2, 3, 4, 5, 7]));
        assert!(!found.involves(0) && !found.involves(6));
    }
}
