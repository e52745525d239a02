//! Validation (SPEC §3 domains, §4 Rejects): typed records out of raw batches, one reject
//! per bad row, in the order parse → domain → DUPLICATE_KEY → references.
//!
//! Here: the reject reasons and [`Intake`], the reading loop every table goes through.
//! `parse.rs`: one row to one typed record. `state.rs`: the state tables' references, then
//! credits and events. `usage.rs`: the usage rows' checks, duplicates and per-item sums.

pub mod index;
mod parse;
pub mod pricing;
mod state;
mod usage;
pub use parse::*;
pub use state::*;
pub use usage::*;

use crate::domain::*;
use crate::error::Result;
use crate::io::discover::TableSource;
use crate::io::read::{opt, req, Batch, ColSpec, Kind};
use crate::validate::index::{hash_key, split_rows, FpSet, IdIndex};
use rust_decimal::Decimal;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

/// One rejected input row.
#[derive(Clone, Debug)]
pub struct Reject {
    pub table: &'static str,
    /// Index of the file in the run's list of input files (`Intake::files`): its name and
    /// the rejects' order.
    pub file_ord: u32,
    pub row: u64,
    /// Inline up to 24 bytes, like the ids (millions of rejects at scale).
    pub key: Text,
    pub reason: Reason,
    pub detail: Box<str>,
}

/// Where a row came from.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    pub file_ord: u32,
    pub row: u64,
}

/// The rows of a table that parsed, in read order, and where each came from: two vectors,
/// so the rows go into the [`State`] as they are (a vector of (row, origin) pairs took a pass
/// over millions of rows, into fresh pages, to take the origins off).
pub struct Loaded<T> {
    pub rows: Vec<T>,
    pub origins: Vec<Origin>,
}

impl<T> Default for Loaded<T> {
    fn default() -> Self {
        Loaded { rows: Vec::new(), origins: Vec::new() }
    }
}

impl<T> Loaded<T> {
    fn len(&self) -> usize {
        self.rows.len()
    }

    /// Each row with its origin.
    fn iter(&self) -> impl Iterator<Item = (&T, Origin)> {
        self.rows.iter().zip(self.origins.iter().copied())
    }

    /// Take out the rows at the (ascending) positions `drop` (see [`split_rows`]): the rows
    /// kept, those taken out with their origins, and each old position's new number.
    fn split(self, drop: &[usize]) -> (Loaded<T>, Vec<(T, Origin)>, Vec<u32>) {
        let (rows, dropped, new_of) = split_rows(self.rows, drop);
        let (origins, dropped_at, _) = split_rows(self.origins, drop);
        (Loaded { rows, origins }, dropped.into_iter().zip(dropped_at).collect(), new_of)
    }
}

/// Every input file read, for the manifest.
#[derive(Clone, Debug)]
pub struct InputFile {
    pub table: &'static str,
    pub name: String,
    pub path: std::path::PathBuf,
    pub rows: u64,
    /// Its SHA-256 when reading it read every byte (CSV), else taken for the manifest.
    pub sha256: Option<String>,
}

/// Accumulates rejects and the list of files read.
#[derive(Default)]
pub struct Intake {
    pub rejects: Vec<Reject>,
    pub files: Vec<InputFile>,
    pub rows_read: u64,
    /// Told of every batch of rows merged.
    pub progress: Option<std::sync::Arc<dyn crate::progress::Progress>>,
}

impl Intake {
    /// The name of the file a reject came from.
    pub fn file_of(&self, r: &Reject) -> &str {
        &self.files[r.file_ord as usize].name
    }

    pub fn reject(
        &mut self,
        table: &'static str,
        o: Origin,
        key: impl Into<Text>,
        reason: Reason,
        detail: impl Into<Box<str>>,
    ) {
        let (key, detail) = (key.into(), detail.into());
        self.rejects.push(Reject { table, file_ord: o.file_ord, row: o.row, key, reason, detail });
    }

    /// An empty intake sharing this one's progress, for a table loaded beside others; its
    /// files and rejects are taken back with [`Intake::adopt`].
    pub(super) fn fork(&self) -> Intake {
        Intake { progress: self.progress.clone(), ..Intake::default() }
    }

    /// Take back a [`Intake::fork`]'s files, rejects and counts, renumbering its files after
    /// this intake's (and the origins of `rows`, what it loaded): adopting forks in table
    /// order numbers files and rejects as loading the tables one after another would.
    pub(super) fn adopt<T: Send>(&mut self, part: Intake, rows: Result<Loaded<T>>) -> Result<Loaded<T>> {
        use rayon::prelude::*;
        let base = self.adopt_files(part);
        let mut rows = rows?;
        if base != 0 {
            rows.origins.par_iter_mut().with_min_len(1 << 14).for_each(|o| o.file_ord += base);
        }
        Ok(rows)
    }

    /// Take back a fork's files, rejects and counts (see [`Intake::adopt`]); returns the
    /// number its files were renumbered by.
    fn adopt_files(&mut self, part: Intake) -> u32 {
        let base = self.files.len() as u32;
        self.files.extend(part.files);
        self.rows_read += part.rows_read;
        self.rejects.extend(part.rejects.into_iter().map(|r| Reject { file_ord: r.file_ord + base, ..r }));
        base
    }

    /// Read every row of `src`, parse it (in parallel), and return the rows that parsed with
    /// their origin, in read order; parse and domain failures become rejects.
    pub fn load<T: Send>(
        &mut self,
        src: &TableSource,
        specs: &[ColSpec],
        parse: impl Fn(&Row) -> Result<T, Fail> + Sync,
    ) -> Result<Loaded<T>> {
        // Size the result once from the Parquet metadata (CSV sizes are not known up front).
        let (expected, _) = crate::io::read::metadata_rows(&src.files)?;
        let mut out =
            Loaded { rows: Vec::with_capacity(expected as usize), origins: Vec::with_capacity(expected as usize) };
        rayon::join(
            || crate::perf::pages::fault_in_spare(&mut out.rows),
            || crate::perf::pages::fault_in_spare(&mut out.origins),
        );
        let table = src.table;
        // A failed row's key is taken in the parallel step: the merge reads no column.
        let per_row = |_: &mut (), r: &Row| parse(r).map_err(|(reason, detail)| (reason, detail, key_of(table, r)));
        self.load_rows(
            src,
            specs,
            &[],
            per_row,
            |_| {},
            |intake, p, o, _| {
                match p {
                    Ok(t) => {
                        out.rows.push(t);
                        out.origins.push(o);
                    }
                    Err((reason, detail, key)) => intake.reject(table, o, key, reason, detail),
                }
                Ok(())
            },
        )?;
        // A CSV table grew by doubling: give back what it will not use (the rows are kept
        // for the whole run).
        if out.rows.capacity() > out.rows.len() + out.rows.len() / 16 {
            out.rows.shrink_to_fit();
        }
        Ok(out)
    }

    /// The parallel reading loop shared by every table: decode the units of each file
    /// ([`crate::io::read::ReadUnit`]: ranges of Parquet row groups) in waves of two units per rayon
    /// thread, compute `per_row` for every row in parallel (each run of consecutive rows a task
    /// takes shares one `M`, a memo that starts as `M::default()` and must not change the
    /// outcomes: which rows share one depends on the thread count), and hand the results to
    /// `merge` in read order, with the row itself restricted to the columns `merge_reads` (the
    /// other columns of a batch are dropped as soon as its rows are computed, so a wave in
    /// flight holds little beyond the outcomes). A file of one unit (CSV) is streamed batch by
    /// batch. `before_merge` sees the outcomes of each wave (every batch's, in read order)
    /// before they are merged, on the merge's side of the pipeline: work over a whole wave
    /// that the pool can share goes there.
    pub fn load_rows<O: Send, M: Default>(
        &mut self,
        src: &TableSource,
        specs: &[ColSpec],
        merge_reads: &[usize],
        per_row: impl Fn(&mut M, &Row) -> O + Sync,
        mut before_merge: impl FnMut(&mut [&mut Vec<O>]) + Send,
        mut merge: impl FnMut(&mut Intake, O, Origin, &Row) -> Result<()> + Send,
    ) -> Result<()> {
        use rayon::prelude::*;
        let rows_of = |b: &mut Batch| -> Vec<O> {
            let b_ = &*b;
            let out = (0..b.len)
                .into_par_iter()
                .with_min_len(2048)
                .map_init(M::default, |memo, i| per_row(memo, &Row { b: b_, i, specs }))
                .collect();
            b.keep_only(merge_reads);
            out
        };
        for file in &src.files {
            let file_ord = self.files.len() as u32;
            self.files.push(InputFile {
                table: src.table,
                name: file.name.clone(),
                path: file.path.clone(),
                rows: 0,
                sha256: None,
            });
            let units = crate::io::read::units(file)?;
            let mut total = 0u64;
            let mut merge_batch = |intake: &mut Intake, b: &Batch, outcomes: Vec<O>| -> Result<()> {
                for (i, o) in outcomes.into_iter().enumerate() {
                    merge(intake, o, Origin { file_ord, row: b.first_row + i as u64 }, &Row { b, i, specs })?;
                }
                if let Some(p) = &intake.progress {
                    p.advance(b.len as u64);
                }
                Ok(())
            };
            if units.len() == 1 {
                let sha256;
                (total, sha256) = crate::io::read::read_unit_hashed(file, specs, &units[0], |mut b| {
                    let mut outcomes = rows_of(&mut b);
                    before_merge(&mut [&mut outcomes]);
                    merge_batch(self, &b, outcomes)
                })?;
                self.files[file_ord as usize].sha256 = sha256;
            } else {
                // Waves of units twice as wide as the pool; the (sequential) merge of wave
                // k runs while wave k+1 is decoded and parsed, so no core waits for the
                // merge. Two units a thread, so that a thread done with its first while
                // the merge still runs decodes another rather than wait for the wave.
                let width = rayon::current_num_threads().max(1) * 2;
                type Wave<O> = Vec<Result<(Vec<(Batch, Vec<O>)>, u64)>>;
                let decode = |wave: &[crate::io::read::ReadUnit]| -> Wave<O> {
                    wave.par_iter()
                        .map(|unit| {
                            let mut v = Vec::new();
                            let n = crate::io::read::read_unit(file, specs, unit, |mut b| {
                                let outcomes = rows_of(&mut b);
                                v.push((b, outcomes));
                                Ok(())
                            })?;
                            Ok((v, n))
                        })
                        .collect()
                };
                let mut merge_wave = |intake: &mut Intake, results: Wave<O>| -> Result<u64> {
                    let mut units = results.into_iter().collect::<Result<Vec<_>>>()?;
                    let rows = units.iter().map(|u| u.1).sum();
                    before_merge(
                        &mut units.iter_mut().flat_map(|u| u.0.iter_mut().map(|b| &mut b.1)).collect::<Vec<_>>(),
                    );
                    for (v, _) in units {
                        for (b, outcomes) in v {
                            merge_batch(intake, &b, outcomes)?;
                        }
                    }
                    Ok(rows)
                };
                let mut pending: Option<Wave<O>> = None;
                for wave in units.chunks(width) {
                    let prev = pending.take();
                    let intake = &mut *self;
                    let (results, merged) =
                        rayon::join(|| decode(wave), || prev.map_or(Ok(0), |p| merge_wave(intake, p)));
                    total += merged?;
                    pending = Some(results);
                }
                if let Some(p) = pending {
                    total += merge_wave(self, p)?;
                }
            }
            self.files[file_ord as usize].rows = total;
            self.rows_read += total;
        }
        Ok(())
    }

    /// Keep the first row of each key; later ones are DUPLICATE_KEY. Keys are borrowed
    /// from the rows (a string and a number: `item_no` for items, 0 elsewhere). Returns the
    /// rows kept and their index by key.
    pub fn dedupe<T: Sync>(
        &mut self,
        table: &'static str,
        rows: Loaded<T>,
        key: impl for<'x> Fn(&'x T) -> (&'x str, i64) + Sync,
    ) -> (Loaded<T>, IdIndex) {
        let (mut index, dups) = IdIndex::build(rows.len(), |i| Some(key(&rows.rows[i])));
        if dups.is_empty() {
            return (rows, index);
        }
        let (kept, new_of) = self.reject_rows(table, rows, &dups, |t| {
            let (a, n) = key(&t);
            let k = if table == "subscription_items" { format!("{a}/{n}") } else { a.to_string() };
            let detail = format!("duplicate key {k}; the first occurrence wins");
            (k.into(), Reason::DuplicateKey, detail)
        });
        index.renumber(&new_of);
        (kept, index)
    }

    /// Take the rows at the (ascending) positions `at` out of `rows` (in place, see
    /// [`split_rows`]) and reject each, in row order, with the key, reason and detail
    /// `why(row)` gives. Returns the rows kept and each old position's new number.
    fn reject_rows<T>(
        &mut self,
        table: &'static str,
        rows: Loaded<T>,
        at: &[usize],
        mut why: impl FnMut(T) -> (Text, Reason, String),
    ) -> (Loaded<T>, Vec<u32>) {
        let (kept, dropped, new_of) = rows.split(at);
        for (t, o) in dropped {
            let (key, reason, detail) = why(t);
            self.reject(table, o, key, reason, detail);
        }
        (kept, new_of)
    }
}
