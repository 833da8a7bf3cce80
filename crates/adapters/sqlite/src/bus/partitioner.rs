//! Which partition a key goes to: Kafka's default for keyed records (the Java client's
//! `murmur2`, sign bit cleared, modulo the partition count). The same key lands in the same
//! partition on the embedded bus and on a Kafka producer configured with `murmur2_random`,
//! and the mapping is stable across processes and versions.

pub(super) fn partition_for(key: &str, partitions: i32) -> i32 {
    debug_assert!(partitions > 0, "a topic has at least one partition");
    let hash = murmur2::murmur2(key.as_bytes(), murmur2::KAFKA_SEED);
    // Cannot truncate: the sign bit is cleared, so the value fits an i32.
    (hash & 0x7fff_ffff) as i32 % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors of Kafka's own `UtilsTest.testMurmur2` (signed Java ints).
    const KAFKA_VECTORS: [(&str, i32); 6] = [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
        ),
        ("abc", 479470107),
    ];

    #[test]
    fn hashes_like_the_kafka_java_client() {
        for (key, expected) in KAFKA_VECTORS {
            let hash = murmur2::murmur2(key.as_bytes(), murmur2::KAFKA_SEED) as i32;
            assert_eq!(hash, expected, "murmur2({key:?})");
        }
    }

    #[test]
    fn partition_is_the_positive_hash_modulo_the_count() {
        for (key, hash) in KAFKA_VECTORS {
            for partitions in [1, 3, 7, 12] {
                assert_eq!(
                    partition_for(key, partitions),
                    (hash & 0x7fff_ffff) % partitions
                );
            }
        }
    }
}
