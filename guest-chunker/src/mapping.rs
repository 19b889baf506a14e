//! Gazette's `ModuloMapping` of a stream to a chunk partition:
//! `FNV-1a-32(the 16 id bytes) mod len(partitions)`, partitions sorted by
//! name (the order of the broker's List response). Every chunk of a stream
//! therefore lands on the same partition, so one summer shard sees the whole
//! stream in order.

use crate::sum::StreamId;

/// FNV-1a, 32 bits (offset basis 0x811c9dc5, prime 0x01000193).
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

/// Chunk partitions, sorted by name.
#[derive(Debug, Clone)]
pub struct ModuloMapping {
    partitions: Vec<String>,
}

impl ModuloMapping {
    /// A mapping over `partitions`, which it sorts; `None` if there are none.
    pub fn new(mut partitions: Vec<String>) -> Option<ModuloMapping> {
        if partitions.is_empty() {
            return None;
        }
        partitions.sort();
        partitions.dedup();
        Some(ModuloMapping { partitions })
    }

    /// The partition of stream `id`.
    pub fn map(&self, id: &StreamId) -> &str {
        let index = fnv1a32(id) as usize % self.partitions.len();
        &self.partitions[index]
    }

    /// The partitions, sorted.
    pub fn partitions(&self) -> &[String] {
        &self.partitions
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn fnv1a32_matches_the_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn mapping_sorts_partitions_and_maps_by_hash_modulo_count() {
        let mapping = ModuloMapping::new(vec![
            "chunks/part-002".to_string(),
            "chunks/part-000".to_string(),
            "chunks/part-001".to_string(),
        ])
        .unwrap();
        assert_eq!(mapping.partitions()[0], "chunks/part-000");
        let id = [3u8; 16];
        let expected = format!("chunks/part-00{}", fnv1a32(&id) % 3);
        assert_eq!(mapping.map(&id), expected);
        assert!(ModuloMapping::new(Vec::new()).is_none());
    }
}
