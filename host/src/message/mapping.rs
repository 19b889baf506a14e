//! Mapping a message key to one journal of a partitioned set (Gazette's
//! `ModuloMapping` and `RendezvousMapping`), with 32-bit FNV-1a.
//!
//! The partitions are the broker's List result, which is sorted by journal
//! name; both mappings depend on that order and on nothing else, so every
//! process maps a key to the same journal.
//!
//! - [`modulo_mapping`]: `fnv1a32(key) % len`. Cheap, but adding a partition
//!   remaps almost every key.
//! - [`rendezvous_mapping`]: highest random weight over
//!   `fnv1a32(key) ^ fnv1a32(journal name)`; adding or removing a journal only
//!   moves the keys that map to or from it.
//!
//! ```
//! use weir::message::{modulo_mapping, rendezvous_mapping};
//!
//! let parts = ["chunks/part-000", "chunks/part-001", "chunks/part-002"];
//! let journal = modulo_mapping(b"stream id", &parts).unwrap();
//! assert!(parts.contains(journal));
//! assert!(rendezvous_mapping(b"stream id", &parts).is_ok());
//! ```

/// FNV-1a 32-bit offset basis.
pub const FNV32_OFFSET: u32 = 0x811c_9dc5;
/// FNV-1a 32-bit prime.
pub const FNV32_PRIME: u32 = 0x0100_0193;

/// Errors of the mappings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// There is no partition to map to (Gazette's `ErrEmptyListResponse`).
    #[error("no partitions to map to (empty list response)")]
    EmptyPartitions,
}

/// 32-bit FNV-1a of `bytes`.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV32_OFFSET, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(FNV32_PRIME)
    })
}

/// The partition at `fnv1a32(key) % partitions.len()`.
pub fn modulo_mapping<'a, T>(key: &[u8], partitions: &'a [T]) -> Result<&'a T, MappingError> {
    if partitions.is_empty() {
        return Err(MappingError::EmptyPartitions);
    }
    let index = fnv1a32(key) as usize % partitions.len();
    Ok(&partitions[index])
}

/// The journal (by name) with the highest `fnv1a32(key) ^ fnv1a32(name)`; the
/// first of equal weights wins, as in Gazette.
pub fn rendezvous_mapping<'a, T: AsRef<str>>(
    key: &[u8],
    partitions: &'a [T],
) -> Result<&'a T, MappingError> {
    let first = partitions.first().ok_or(MappingError::EmptyPartitions)?;
    let sum = fnv1a32(key);
    let mut best = (0u32, first);
    for journal in partitions {
        let weight = sum ^ fnv1a32(journal.as_ref().as_bytes());
        if weight > best.0 {
            best = (weight, journal);
        }
    }
    Ok(best.1)
}

#[cfg(test)]
mod test {
    use super::*;

    fn parts(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("examples/stream-sum/chunks/part-{i:03}"))
            .collect()
    }

    #[test]
    fn fnv1a32_matches_the_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
        let id: Vec<u8> = (0..16).collect();
        assert_eq!(fnv1a32(&id), 0xc8ff_f215);
    }

    #[test]
    fn modulo_mapping_indexes_by_hash_modulo_length() {
        // fnv1a32(0..16) = 0xc8fff215: % 8 = 5, % 4 = 1.
        let id: Vec<u8> = (0..16).collect();
        assert_eq!(modulo_mapping(&id, &parts(8)), Ok(&parts(8)[5]));
        assert_eq!(modulo_mapping(&id, &parts(4)), Ok(&parts(4)[1]));
        assert_eq!(modulo_mapping(b"k2", &parts(8)), Ok(&parts(8)[0]));
        assert_eq!(
            modulo_mapping::<String>(b"k", &[]),
            Err(MappingError::EmptyPartitions)
        );
    }

    #[test]
    fn rendezvous_mapping_picks_the_highest_weight() {
        // Weights computed independently (fnv1a32(key) ^ fnv1a32(name)).
        let id: Vec<u8> = (0..16).collect();
        assert_eq!(rendezvous_mapping(&id, &parts(8)), Ok(&parts(8)[4]));
        assert_eq!(rendezvous_mapping(b"k1", &parts(8)), Ok(&parts(8)[4]));
        assert_eq!(rendezvous_mapping(b"k2", &parts(8)), Ok(&parts(8)[1]));
        assert_eq!(rendezvous_mapping(b"k3", &parts(8)), Ok(&parts(8)[2]));
        assert_eq!(
            rendezvous_mapping::<&str>(b"k", &[]),
            Err(MappingError::EmptyPartitions)
        );
    }

    #[test]
    fn removing_a_journal_only_moves_its_own_keys_under_rendezvous() {
        let all = parts(8);
        let fewer: Vec<String> = all
            .iter()
            .filter(|p| !p.ends_with("003"))
            .cloned()
            .collect();
        let mut moved = 0;
        for i in 0u32..2000 {
            let key = i.to_le_bytes();
            let before = rendezvous_mapping(&key, &all).expect("non-empty");
            let after = rendezvous_mapping(&key, &fewer).expect("non-empty");
            if before.ends_with("003") {
                moved += 1;
            } else {
                assert_eq!(before, after, "key {i} moved although its journal stayed");
            }
        }
        assert!(moved > 0);
    }
}
