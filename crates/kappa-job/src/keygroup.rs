//! Key groups: hash(key) → key group → subtask, as in Flink, so keyed state can be
//! re-split when a job is restored at another parallelism.

use std::ops::RangeInclusive;

/// Default number of key groups when a job does not set `max_parallelism`.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// The key group of a key, from a stable 64-bit hash of its encoded bytes.
pub fn key_group_of(key_bytes: &[u8], max_parallelism: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key_bytes) % u64::from(max_parallelism)) as u32
}

/// The subtask that owns a key group.
pub fn subtask_of_key_group(key_group: u32, max_parallelism: u32, parallelism: u32) -> u32 {
    (u64::from(key_group) * u64::from(parallelism) / u64::from(max_parallelism)) as u32
}

/// The contiguous range of key groups a subtask owns (the inverse of [`subtask_of_key_group`]).
pub fn key_group_range(
    subtask: u32,
    max_parallelism: u32,
    parallelism: u32,
) -> RangeInclusive<u32> {
    let (m, p, i) = (
        u64::from(max_parallelism),
        u64::from(parallelism),
        u64::from(subtask),
    );
    let start = (i * m).div_ceil(p);
    let end = ((i + 1) * m).div_ceil(p) - 1;
    (start as u32)..=(end as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_all_key_groups_and_match_the_assignment() {
        for (m, p) in [(128, 1), (128, 2), (128, 3), (128, 4), (7, 3), (10, 10)] {
            let mut next = 0;
            for i in 0..p {
                let r = key_group_range(i, m, p);
                assert_eq!(*r.start(), next, "m={m} p={p} i={i}");
                for kg in r.clone() {
                    assert_eq!(subtask_of_key_group(kg, m, p), i);
                }
                next = r.end() + 1;
            }
            assert_eq!(next, m);
        }
    }

    #[test]
    fn key_group_is_stable() {
        assert_eq!(
            key_group_of(b"item_523", 128),
            key_group_of(b"item_523", 128)
        );
        assert!(key_group_of(b"x", 128) < 128);
    }
}
