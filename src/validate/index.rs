//! Key → row maps of the validated state, built by all threads at once.
//!
//! An [`IdIndex`] stores row numbers only (4 bytes a row), not copies of the keys: a lookup
//! hashes the key and compares it with the key of the row found. The rows are spread over
//! [`SHARDS`] hash tables by hash; building indexes each shard as one task, inserting its
//! rows in row order, so the first row of every key is the one indexed — whatever the thread
//! count — and later rows with that key are reported as duplicates.
//!
//! An [`FpSet`] is the set of usage_id fingerprints the duplicate check of the usage
//! builds: cache-line buckets whose address a caller can prefetch ahead of each lookup.

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
fn shard_of_hash(h: u64) -> usize {
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
            at[shard_of_hash(*h) + 1] += 1;
        }
        for s in 0..SHARDS {
            at[s + 1] += at[s];
        }
        // Each row with its hash, so that a shard's task reads both in sequence: the hashes
        // read by row number (every 64th row, a cache line each) were the build's misses.
        let mut next = at.clone();
        let mut order = vec![(0u32, 0u64); at[SHARDS]];
        for (i, h) in hashes.iter().enumerate() {
            if let Some(h) = h {
                let s = shard_of_hash(*h);
                order[next[s]] = (i as u32, *h);
                next[s] += 1;
            }
        }
        drop(hashes);
        let built: Vec<(HashTable<u32>, Vec<usize>)> = (0..SHARDS)
            .into_par_iter()
            .map(|s| {
                let rows = &order[at[s]..at[s + 1]];
                // The table holds positions in `rows` while it is built (their hashes at
                // hand, in this shard's slice), then the rows themselves.
                let mut table = HashTable::with_capacity(rows.len());
                let mut dups = Vec::new();
                for (p, &(i, h)) in rows.iter().enumerate() {
                    // The row's key is read only to confirm a candidate of the same full hash
                    // (a duplicate, or a 64-bit collision): inserting a unique key touches
                    // no row, where reading each one was a cache miss into a table of
                    // millions taken in shard order.
                    let same =
                        |&q: &u32| rows[q as usize].1 == h && key(rows[q as usize].0 as usize) == key(i as usize);
                    match table.entry(h, same, |&q| rows[q as usize].1) {
                        Entry::Occupied(_) => dups.push(i as usize),
                        Entry::Vacant(v) => {
                            v.insert(p as u32);
                        }
                    }
                }
                for q in table.iter_mut() {
                    *q = rows[*q as usize].0;
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
        self.shards[shard_of_hash(h)].find(h, |&j| is_key(j as usize)).map(|&j| j as usize)
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

/// A set of 96-bit fingerprints whose bits are uniform (slices of a good 128-bit hash),
/// by open addressing over cache-line buckets of five: a lookup reads one 64-byte line
/// (and the next on overflow, linear probing), whose address follows from the
/// fingerprint alone, so a caller going through many can [`FpSet::prefetch`] rows ahead
/// and overlap the cache misses that dominate a large set. Nothing is ever removed, so a
/// probe ends at the first bucket with room. 64 bytes per five fingerprints: 14.6 bytes a
/// fingerprint at the 7/8 load it grows at (hashbrown's table of `[u32; 3]`: 14.9).
pub struct FpSet {
    /// Per bucket: five fingerprints (`[3k, 3k + 3)`), then the count in use (`[15]`).
    buckets: Buckets,
    len: usize,
}

/// The zeroed bucket array of an [`FpSet`]. On Linux a large one is mapped straight from the
/// kernel and advised to use 2 MiB pages (THP's `madvise` mode, the common setting): lookups
/// at random into hundreds of MiB (GiB at 10M accounts) of 4 KiB pages each take a TLB miss
/// and a page walk, which the prefetch cannot hide. Fresh pages read as zero, so nothing is
/// cleared, and none of the allocator's memory already mapped in 4 KiB pages is reused. The
/// allocator itself never asks for huge pages (mimalloc is built with `no_thp`: its purges
/// would split them, see `main.rs`). A small table, or one the kernel refuses to map, is an
/// ordinary allocation.
struct Buckets {
    ptr: std::ptr::NonNull<[u32; 16]>,
    len: usize,
    mapped: bool,
}

// SAFETY: `Buckets` owns its array as a `Box<[[u32; 16]]>` would.
unsafe impl Send for Buckets {}
// SAFETY: shared access only reads.
unsafe impl Sync for Buckets {}

/// Tables at least this large are mapped (two huge pages).
const MAP_BYTES: usize = 4 << 20;
const BUCKET_BYTES: usize = std::mem::size_of::<[u32; 16]>();

impl Buckets {
    fn zeroed(len: usize) -> Buckets {
        #[cfg(target_os = "linux")]
        if let bytes @ MAP_BYTES.. = len * BUCKET_BYTES {
            // SAFETY: a new private anonymous mapping (no file, no fixed address), checked.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    bytes,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                // SAFETY: advice on the mapping just made; a refusal changes nothing.
                unsafe { libc::madvise(p, bytes, libc::MADV_HUGEPAGE) };
                if let Some(ptr) = std::ptr::NonNull::new(p.cast()) {
                    return Buckets { ptr, len, mapped: true };
                }
            }
        }
        let b: Box<[[u32; 16]]> = vec![[0u32; 16]; len].into_boxed_slice();
        // SAFETY: a box's pointer is never null.
        let ptr = unsafe { std::ptr::NonNull::new_unchecked(Box::into_raw(b).cast()) };
        Buckets { ptr, len, mapped: false }
    }
}

impl std::ops::Deref for Buckets {
    type Target = [[u32; 16]];
    fn deref(&self) -> &[[u32; 16]] {
        // SAFETY: `ptr` holds `len` initialized (zeroed or written) buckets, owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Buckets {
    fn deref_mut(&mut self) -> &mut [[u32; 16]] {
        // SAFETY: as in `deref`, and `&mut self` is the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Buckets {
    fn drop(&mut self) {
        if self.mapped {
            #[cfg(target_os = "linux")]
            // SAFETY: the whole mapping made in `zeroed`, unmapped once.
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.len * BUCKET_BYTES)
            };
        } else {
            // SAFETY: the box `zeroed` leaked, rebuilt once.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len)) });
        }
    }
}

const PER_BUCKET: usize = 5;

impl FpSet {
    /// An empty set of `buckets` buckets (rounded up to a power of two), room for
    /// `buckets * 5 * 7 / 8` fingerprints before it doubles. Allocated zeroed (untouched
    /// pages cost nothing until used).
    pub fn with_buckets(buckets: usize) -> FpSet {
        FpSet { buckets: Buckets::zeroed(buckets.max(1).next_power_of_two()), len: 0 }
    }

    /// Touch every page of an empty set's table, so the kernel maps (and zeroes) it now, on
    /// the calling thread, rather than on first insert: a run faults the tables in on every
    /// thread at once (one set per task) instead of on whichever thread first lands in them.
    pub fn fault_in(&mut self) {
        debug_assert!(self.is_empty(), "fault_in writes zeros over the table");
        let len = self.buckets.len() * BUCKET_BYTES;
        // SAFETY: the table's own memory, viewed as bytes (zeros the table already holds are
        // written over them).
        crate::perf::pages::touch_pages(unsafe {
            std::slice::from_raw_parts_mut(self.buckets.as_mut_ptr().cast(), len)
        });
    }

    /// The number of buckets (a power of two).
    #[cfg(test)]
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// How many fingerprints fit before the set doubles.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * PER_BUCKET * 7 / 8
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn home(&self, fp: [u32; 3]) -> usize {
        (fp[0] as usize | (fp[1] as usize) << 32) & (self.buckets.len() - 1)
    }

    /// Hint that `fp` is about to be looked up (no effect on the contents).
    #[inline]
    pub fn prefetch(&self, fp: [u32; 3]) {
        #[cfg(target_arch = "x86_64")]
        {
            let p = self.buckets[self.home(fp)].as_ptr() as *const i8;
            // SAFETY: a prefetch is a hint; it never faults, and `p` points into the table.
            #[allow(unused_unsafe)]
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p)
            };
        }
    }

    /// Where `fp` is: `Ok` when in the set, else `Err` with the bucket that has room for it.
    #[inline]
    fn find(&self, fp: [u32; 3]) -> Result<(), usize> {
        let mask = self.buckets.len() - 1;
        let mut i = self.home(fp);
        loop {
            let b = &self.buckets[i];
            let n = b[15] as usize;
            // Word by word (a slice comparison here was a call to `memcmp` per entry).
            if (0..n.min(PER_BUCKET)).any(|k| b[3 * k] == fp[0] && b[3 * k + 1] == fp[1] && b[3 * k + 2] == fp[2]) {
                return Ok(());
            }
            if n < PER_BUCKET {
                return Err(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Whether `fp` is in the set.
    pub fn contains(&self, fp: [u32; 3]) -> bool {
        self.find(fp).is_ok()
    }

    /// Add `fp`; whether it was new.
    pub fn insert(&mut self, fp: [u32; 3]) -> bool {
        if self.len >= self.capacity() {
            self.grow();
        }
        let Err(i) = self.find(fp) else { return false };
        let b = &mut self.buckets[i];
        let n = b[15] as usize;
        b[3 * n..3 * n + 3].copy_from_slice(&fp);
        b[15] += 1;
        self.len += 1;
        true
    }

    fn grow(&mut self) {
        let old = std::mem::replace(self, FpSet::with_buckets(self.buckets.len() * 2));
        for b in old.buckets.iter() {
            for k in 0..b[15] as usize {
                self.insert([b[3 * k], b[3 * k + 1], b[3 * k + 2]]);
            }
        }
    }
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

    /// Against a std set: new fingerprints are taken once, repeats never, through growth
    /// from one bucket and in a set sized up front; fingerprints that share their home
    /// bucket (overflowing into the next ones) are told apart.
    #[test]
    fn fp_set_agrees_with_a_hash_set() {
        let fp = |i: u64| {
            let h = xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes());
            [h as u32, (h >> 32) as u32, (h >> 64) as u32]
        };
        // Every 4th id a repeat of an earlier one; ids 0..50 share one home bucket.
        let ids: Vec<u64> = (0..60_000u64).map(|i| if i % 4 == 3 { i / 3 } else { i }).collect();
        let same_home = |i: u64| [7, (i as u32) << 8, i as u32];
        // The last two are tables mapped from the kernel (at least `MAP_BYTES`), one faulted
        // in up front.
        let faulted = || {
            let mut s = FpSet::with_buckets(MAP_BYTES / BUCKET_BYTES);
            s.fault_in();
            s
        };
        for mut set in [
            FpSet::with_buckets(0),
            FpSet::with_buckets(20_000),
            FpSet::with_buckets(MAP_BYTES / BUCKET_BYTES),
            faulted(),
        ] {
            assert!(set.is_empty());
            let mut want = std::collections::HashSet::new();
            for &i in &ids {
                let f = if i < 50 { same_home(i) } else { fp(i) };
                set.prefetch(f);
                assert_eq!(set.insert(f), want.insert(f), "id {i}");
            }
            assert_eq!(set.len(), want.len());
            assert!(set.len() <= set.capacity());
        }
    }
}
