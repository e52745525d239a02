//! SPEC §10.1: the shard of an id, `pmod(xxhash64(id), N)` — XXH64 of the id's UTF-8 bytes
//! with seed 42, read as a signed 64-bit integer, its non-negative remainder by N. This is
//! Spark SQL's `pmod(xxhash64(account_id), N)` (Spark's XxHash64 is the standard XXH64 with
//! seed 42), so an upstream Spark or DuckDB job can route rows itself (docs/SCALE-OUT.md
//! when the shard runs land).

/// Spark's `xxhash64` seed.
pub const SEED: u64 = 42;

/// `xxhash64(id)` as Spark returns it: a signed 64-bit integer.
pub fn xxhash64(id: &str) -> i64 {
    xxhash_rust::xxh64::xxh64(id.as_bytes(), SEED) as i64
}

/// The shard of `id` among `n` shards (`n >= 1`): `pmod(xxhash64(id), n)`.
pub fn shard_of(id: &str, n: u32) -> u32 {
    xxhash64(id).rem_euclid(i64::from(n.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XXH64's published test vectors (seed 0), through the same crate function.
    #[test]
    fn xxh64_matches_the_published_vectors() {
        for (s, h) in [("", 0xEF46_DB37_51D8_E999u64), ("a", 0xD24E_C4F1_A98C_6E5B), ("abc", 0x44BC_2CF5_AD77_0999)] {
            assert_eq!(xxhash_rust::xxh64::xxh64(s.as_bytes(), 0), h, "{s:?}");
        }
    }

    /// Ids → signed hash and shards for N = 1, 2, 3, 7, 8, 16, computed independently with
    /// Python's `xxhash` package (`xxh64(id.encode(), seed=42)`, read signed, `%` in Python
    /// being the non-negative remainder).
    #[test]
    fn shards_agree_with_an_independent_computation() {
        let long = "x".repeat(100);
        let table: [(&str, i64, [u32; 6]); 7] = [
            ("A000000001", -2857523545120170298, [0, 0, 2, 6, 6, 6]),
            ("A000000002", 2562848178615165924, [0, 0, 0, 0, 4, 4]),
            ("W-1", 1815960605139738534, [0, 0, 0, 1, 6, 6]),
            ("acct-日本", 7262152222171156187, [0, 1, 2, 3, 3, 11]),
            ("", -7444071767201028348, [0, 0, 0, 3, 4, 4]),
            ("A-MIX", -2353328487866695874, [0, 0, 1, 4, 6, 14]),
            (&long, 365730103971579591, [0, 1, 0, 6, 7, 7]),
        ];
        for (id, hash, shards) in table {
            assert_eq!(xxhash64(id), hash, "{id:?}");
            for (n, want) in [1, 2, 3, 7, 8, 16].into_iter().zip(shards) {
                assert_eq!(shard_of(id, n), want, "{id:?} among {n}");
            }
        }
    }
}
