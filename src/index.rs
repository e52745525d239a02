//! Key → row maps of the validated state, built by all threads at once.
//!
//! An [`IdIndex`] stores row numbers only (4 bytes a row), not copies of the keys: a lookup
//! hashes the key and compares it with the key of the row found. The rows are spread over
//! [`SHARDS`] hash tables by hash; building indexes each shard as one task, inserting its
//! rows in row order, so the first row of every key is the one indexed — whatever the thread
//! count — and later rows with that key are reported as duplicates.

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use rayon::prelude::*;
use std::hash::{Hash, Hasher};

/// Tables an index is split into (a power of two; more shards than threads keeps the pool
/// busy while each table stays small).
const SHARDS: usize = 64;

/// The hash of a key, the same at build and at lookup: FxHash, then a 64-bit finalizer so
/// that every bit (the shard's, the table's bucket and tag bits) depends on the whole key.
pub fn hash_key<K: Hash + ?Sized>(k: &K) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    k.hash(&mut h);
    let mut x = h.finish();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Bits 32.. pick the shard; hashbrown uses the low bits (bucket) and the top 7 (tag).
fn shard_of(h: u64) -> usize {
    (h >> 32) as usize & (SHARDS - 1)
}

/// The rows of one table by key (see the module docs).
pub struct IdIndex {
    shards: Vec<HashTable<u32>>,
}

impl IdIndex {
    /// Index rows `0..n` by `key(i)`; rows whose key is `None` are left out. Returns the
    /// index (the first row of every key) and, ascending, the rows whose key an earlier row
    /// already has.
    pub fn build<K, F>(n: usize, key: F) -> (IdIndex, Vec<usize>)
    where
        K: Hash + Eq,
        F: Fn(usize) -> Option<K> + Sync,
    {
        assert!(n < u32::MAX as usize, "an index holds fewer than 2^32 rows");
        let hashes: Vec<Option<u64>> =
            (0..n).into_par_iter().with_min_len(4096).map(|i| key(i).map(|k| hash_key(&k))).collect();
        // Rows grouped by shard, in row order within each (a counting sort).
        let mut at = vec![0usize; SHARDS + 1];
        for h in hashes.iter().flatten() {
            at[shard_of(*h) + 1] += 1;
        }
        for s in 0..SHARDS {
            at[s + 1] += at[s];
        }
        let mut next = at.clone();
        let mut order = vec![0u32; at[SHARDS]];
        for (i, h) in hashes.iter().enumerate() {
            if let Some(h) = h {
                let s = shard_of(*h);
                order[next[s]] = i as u32;
                next[s] += 1;
            }
        }
        let hash = |i: u32| hashes[i as usize].unwrap_or_default();
        let built: Vec<(HashTable<u32>, Vec<usize>)> = (0..SHARDS)
            .into_par_iter()
            .map(|s| {
                let rows = &order[at[s]..at[s + 1]];
                let mut table = HashTable::with_capacity(rows.len());
                let mut dups = Vec::new();
                for &i in rows {
                    let k = key(i as usize);
                    match table.entry(hash(i), |&j| key(j as usize) == k, |&j| hash(j)) {
                        Entry::Occupied(_) => dups.push(i as usize),
                        Entry::Vacant(v) => {
                            v.insert(i);
                        }
                    }
                }
                (table, dups)
            })
            .collect();
        let mut dups = Vec::new();
        let mut shards = Vec::with_capacity(SHARDS);
        for (t, d) in built {
            shards.push(t);
            dups.extend(d);
        }
        dups.sort_unstable();
        (IdIndex { shards }, dups)
    }

    /// The row with hash `h` for which `is_key(row)` holds.
    pub fn get(&self, h: u64, is_key: impl Fn(usize) -> bool) -> Option<usize> {
        self.shards[shard_of(h)].find(h, |&j| is_key(j as usize)).map(|&j| j as usize)
    }

    /// After rows were removed from the table indexed: `new_of[old row]` is the row's new
    /// number, or `u32::MAX` for a removed row (dropped from the index).
    pub fn renumber(&mut self, new_of: &[u32]) {
        self.shards.par_iter_mut().for_each(|t| {
            t.retain(|v| match new_of[*v as usize] {
                u32::MAX => false,
                n => {
                    *v = n;
                    true
                }
            })
        });
    }
}

/// Split `rows` into the rows kept and those at the (ascending) positions `drop`, both in
/// row order; also returns each old position's new number (`u32::MAX` when dropped), for
/// [`IdIndex::renumber`] — empty when nothing is dropped (the numbering stands). The kept
/// rows stay in `rows`' allocation: no second copy of a table of millions of rows (fresh
/// pages the kernel would zero) for the few rows a duplicate check removes.
pub fn split_rows<T>(mut rows: Vec<T>, drop: &[usize]) -> (Vec<T>, Vec<T>, Vec<u32>) {
    if drop.is_empty() {
        return (rows, Vec::new(), Vec::new());
    }
    let mut new_of = Vec::with_capacity(rows.len());
    let (mut d, mut kept) = (drop.iter().peekable(), 0u32);
    for i in 0..rows.len() {
        if d.next_if_eq(&&i).is_some() {
            new_of.push(u32::MAX);
        } else {
            new_of.push(kept);
            kept += 1;
        }
    }
    let mut i = 0;
    let dropped = rows
        .extract_if(.., |_| {
            i += 1;
            new_of[i - 1] == u32::MAX
        })
        .collect();
    (rows, dropped, new_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_row_of_each_key_is_indexed_and_later_ones_are_duplicates() {
        let keys: Vec<String> = (0..50_000).map(|i| format!("k{}", (i * 7919) % 20_000)).collect();
        let (ix, dups) = IdIndex::build(keys.len(), |i| Some(keys[i].as_str()));
        let mut first = std::collections::HashMap::new();
        let mut expect_dups = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if first.contains_key(k) {
                expect_dups.push(i);
            } else {
                first.insert(k.clone(), i);
            }
        }
        assert_eq!(dups, expect_dups);
        for (k, &i) in &first {
            assert_eq!(ix.get(hash_key(k.as_str()), |j| keys[j] == *k), Some(i));
        }
        assert_eq!(ix.get(hash_key("absent"), |j| keys[j] == "absent"), None);
    }

    #[test]
    fn splitting_nothing_off_keeps_the_rows_and_their_numbers() {
        let (kept, dropped, new_of) = split_rows(vec!["a", "b"], &[]);
        assert_eq!((kept, dropped, new_of), (vec!["a", "b"], vec![], vec![]));
        let (kept, dropped, new_of) = split_rows(vec!["a", "b", "c"], &[0, 2]);
        assert_eq!((kept, dropped, new_of), (vec!["b"], vec!["a", "c"], vec![u32::MAX, 0, u32::MAX]));
    }

    #[test]
    fn rows_without_a_key_are_left_out_and_renumbering_follows_removals() {
        let keys = ["a", "b", "a", "c", "b", "d"];
        let (mut ix, dups) = IdIndex::build(keys.len(), |i| (i != 3).then_some(keys[i]));
        assert_eq!(dups, vec![2, 4]);
        assert_eq!(ix.get(hash_key("c"), |j| keys[j] == "c"), None);
        let (kept, dropped, new_of) = split_rows(keys.to_vec(), &dups);
        assert_eq!(kept, vec!["a", "b", "c", "d"]);
        assert_eq!(dropped, vec!["a", "b"]);
        ix.renumber(&new_of);
        for k in ["a", "b", "d"] {
            let row = ix.get(hash_key(k), |j| kept[j] == k).unwrap();
            assert_eq!(kept[row], k);
        }
    }
}
