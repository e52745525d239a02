//! Usage: each row classified against the state (SPEC §4's usage checks and deferral),
//! duplicates found by fingerprint, and the quantities summed per item.

use super::*;
use crate::error::Error;

/// What happens to a usage row that parsed and is not a duplicate.
#[derive(Debug, PartialEq, Eq)]
pub enum UsageFate {
    /// Rated on this item (index into `State::items`).
    Rate(usize),
    /// At or after the cutoff: kept in `deferred_usage` (its item's index).
    Defer(usize),
    Reject(Reason, String),
}

/// SPEC §4 usage checks, in order: UNKNOWN_SUBSCRIPTION, EXTERNAL_USAGE, UNKNOWN_SERVICE,
/// NOT_POST_RATE, UNKNOWN_ITEM, CURRENCY_MISMATCH, TERMINATED_SUBSCRIPTION, deferral,
/// LATE_USAGE, ITEM_ENDED.
pub fn classify_usage(st: &State, u: &UsageRef, cutoff: Micros, recent: &mut Recent) -> UsageFate {
    use UsageFate::Reject as R;
    let Some(si) = st.sub_of_recent(u.subscription_id, recent).filter(|&s| st.sub_ok[s]) else {
        return R(Reason::UnknownSubscription, format!("subscription {} is unknown or rejected", u.subscription_id));
    };
    let sub = &st.subs[si];
    if !sub.is_internal() {
        return R(Reason::ExternalUsage, format!("subscription {} is managed by {}", u.subscription_id, sub.source));
    }
    let Some(sv) = st.service_of_recent(u.service_id, recent).filter(|&v| st.service_ok[v]) else {
        return R(Reason::UnknownService, format!("service {} is unknown or rejected", u.service_id));
    };
    if st.services[sv].billing_method != BillingMethod::PostRate {
        return R(
            Reason::NotPostRate,
            format!("service {} is {}", u.service_id, st.services[sv].billing_method.as_str()),
        );
    }
    // A POST_RATE item's service is linked (and ids are unique): compare links, not ids.
    let Some(ii) = st.post_items(si).iter().map(|&i| i as usize).find(|&i| st.item_service[i] == sv as u32) else {
        return R(
            Reason::UnknownItem,
            format!("subscription {} has no item for service {}", u.subscription_id, u.service_id),
        );
    };
    // An item rejected for its currency or its price plan (SPEC §9.1) takes its usage along.
    if let ItemState::Carried(reason @ (Reason::CurrencyMismatch | Reason::PricingMismatch | Reason::UnknownTaxCode)) =
        st.item_state[ii]
    {
        let why = match reason {
            Reason::CurrencyMismatch => "for a currency mismatch",
            Reason::PricingMismatch => "for a custom price on a tiered service",
            _ => "for a tax code without a rate",
        };
        return R(reason, format!("item {} is rejected {why}", st.items[ii].key()));
    }
    if sub.status == Status::Terminated {
        return R(Reason::TerminatedSubscription, format!("subscription {} is TERMINATED", u.subscription_id));
    }
    let item = &st.items[ii];
    let ends_after = |t: Micros| item.end_date.is_none_or(|e| t < midnight(e));
    if u.event_time >= cutoff && ends_after(u.event_time) {
        return UsageFate::Defer(ii);
    }
    let from = item.paid_to();
    if u.event_time < midnight(from) {
        return R(
            Reason::LateUsage,
            format!("event_time {} is before the item's window start {from}", format_ts(u.event_time)),
        );
    }
    if !ends_after(u.event_time) {
        return R(
            Reason::ItemEnded,
            format!(
                "event_time {} is at or after the item's end_date {}",
                format_ts(u.event_time),
                item.end_date.unwrap()
            ),
        );
    }
    UsageFate::Rate(ii)
}

/// The usage of a run, aggregated: per-item sums and the deferred rows.
pub struct UsageIntake {
    /// Summed quantity per item (index into `State::items`).
    pub qty: Vec<Decimal>,
    /// What the plans that need more than the sums need of the usage (SPEC §9.2–9.3).
    pub detail: UsageDetails,
    pub deferred: Vec<DeferredUsage>,
    pub rated_rows: u64,
    /// With `--lineage`: (item index, usage_id) of every rated row, in read order.
    pub lineage: Option<Vec<(u32, Box<str>)>>,
}

/// What one usage row comes to, before the (sequential) duplicate check. Kept small (the
/// outcomes of a wave are what a wave holds in flight): the rare outcomes are boxed.
enum RowOutcome {
    Bad(Box<(Reason, Box<str>)>),
    Good {
        fp: [u64; 2],
        fate: Fate,
    },
    /// A `Good` row whose usage_id was seen before (marked before the merge).
    Duplicate,
}

enum Fate {
    Rate(u32, Decimal),
    /// Rated on an item whose plan needs more than the sum: the item, the quantity, and what
    /// the row adds to the item's [`UsageDetail`] ([`Fold`], packed: the outcomes of a
    /// wave are what it holds in flight; a PERCENTAGE row's fee is computed in the merge).
    RateDetail(u32, Decimal, PackedFold),
    Defer(Box<DeferredUsage>),
    Reject(Box<(Reason, Box<str>)>),
}

/// What one usage row adds to its item's [`UsageDetail`] besides a row.
enum Fold {
    Count,
    /// PERCENTAGE: the row's fee (None: an arithmetic overflow).
    Fee(Option<Decimal>),
    /// With a pricing period: the start of the period the row falls in (None: out of range).
    Period(Option<chrono::NaiveDate>),
}

/// A [`Fold`] in four bytes: a period start as its day number from the common era, or one
/// of three markers (a PERCENTAGE row's fee is computed from its quantity when unpacked).
#[derive(Clone, Copy)]
struct PackedFold(i32);

impl PackedFold {
    const COUNT: i32 = i32::MIN;
    const OUT_OF_RANGE: i32 = i32::MIN + 1;
    const FEE: i32 = i32::MIN + 2;

    fn pack(fold: Fold) -> PackedFold {
        use chrono::Datelike;
        PackedFold(match fold {
            Fold::Count => Self::COUNT,
            Fold::Fee(_) => Self::FEE,
            Fold::Period(None) => Self::OUT_OF_RANGE,
            Fold::Period(Some(d)) => d.num_days_from_ce(),
        })
    }

    /// The fold of a row of quantity `q` on item `ii`.
    fn unpack(self, st: &State, ii: usize, q: Decimal) -> Fold {
        match self.0 {
            Self::COUNT => Fold::Count,
            Self::OUT_OF_RANGE => Fold::Period(None),
            Self::FEE => Fold::Fee(row_fee(st, ii, q)),
            d => Fold::Period(chrono::NaiveDate::from_num_days_from_ce_opt(d)),
        }
    }
}

/// A PERCENTAGE row's fee on item `ii` (None: an arithmetic overflow).
fn row_fee(st: &State, ii: usize, q: Decimal) -> Option<Decimal> {
    let item = &st.items[ii];
    let svc = &st.services[st.item_service(ii)?];
    svc.pricing.as_ref()?.txn().row_fee(item.custom_price.unwrap_or(svc.price), crate::domain::normalized(q))
}

/// What a row rated on item `ii` adds to the item's detail (SPEC §9.2–9.3), computed on the
/// pool: the PERCENTAGE fee of the row, or the pricing period it falls in (the last one
/// found is tried first).
fn fold_of(st: &State, ii: usize, u: &UsageRef, recent: &mut Recent) -> Fold {
    let item = &st.items[ii];
    let Some(svc) = st.item_service(ii).map(|v| &st.services[v]) else { return Fold::Count };
    if let Some(pp) = svc.pricing_period() {
        if let Some((i, lo, hi, ps)) = recent.period {
            if i == ii && lo <= u.event_time && u.event_time < hi {
                return Fold::Period(Some(ps));
            }
        }
        let day = chrono::DateTime::from_timestamp_micros(u.event_time).map(|t| t.date_naive());
        let found = day.and_then(|d| crate::domain::grid::period_of(item.start_date, pp, d));
        recent.period = found.map(|(ps, pe)| (ii, midnight(ps), midnight(pe), ps));
        return Fold::Period(found.map(|p| p.0));
    }
    match svc.model() {
        // Computed in the merge from the quantity (see [`PackedFold`]).
        PricingModel::Percentage => Fold::Fee(None),
        _ => Fold::Count,
    }
}

/// The memory the usage_id duplicate check may hold, and where it spills above that.
pub struct DedupeLimit {
    pub bytes: u64,
    /// The directory the spill files go in (the output's parent, or the system's
    /// temporary directory), and the prefix of their directory's name.
    pub dir: std::path::PathBuf,
    pub prefix: String,
}

/// Stream `deferred_usage` then the new usage files: parse and classify every row in
/// parallel, then dedupe (first occurrence in read order wins) and aggregate in order.
/// Memory: the per-item sums, the deferred rows and a 128-bit fingerprint per usage_id;
/// when the fingerprints would take more than `limit`, a first pass over the usage_id
/// column finds the repeated ids on disk ([`repeated_ids`]) and only those are held.
pub fn ingest_usage(
    intake: &mut Intake,
    sources: &[&TableSource],
    st: &State,
    cutoff: Micros,
    lineage: bool,
    limit: &DedupeLimit,
) -> Result<UsageIntake> {
    use rayon::prelude::*;
    let mut out = UsageIntake {
        qty: vec![Decimal::ZERO; st.items.len()],
        detail: UsageDetails::default(),
        deferred: Vec::new(),
        rated_rows: 0,
        lineage: lineage.then(Vec::new),
    };
    // The sums are added before a wave's merge, the rest in it: two borrows of `out`.
    let UsageIntake { qty, deferred, rated_rows, lineage, detail } = &mut out;
    let needs_rows = st.services.iter().any(|s| s.needs_usage_rows());
    // While reading: each item's detail by item (u32::MAX: none yet); then sorted.
    let mut slot: Vec<u32> = if needs_rows { vec![u32::MAX; st.items.len()] } else { Vec::new() };
    // Sized once from the Parquet metadata (no rehash, no transient double table); CSV grows.
    let (expected, all_known) = crate::io::read::metadata_rows(sources.iter().flat_map(|s| &s.files))?;
    let estimate = if all_known { expected } else { estimated_rows(sources)? };
    let mut seen = if SeenIds::bytes_for(estimate) <= limit.bytes {
        SeenIds::with_expected(expected)
    } else {
        let repeated = repeated_ids(sources, estimate, limit)?;
        tracing::info!(
            phase = "read",
            usage_rows_estimated = estimate,
            repeated_ids = repeated.len(),
            "read: usage_id check above dedupe_memory_mib ({} MiB): {} repeated ids found on disk",
            limit.bytes >> 20,
            repeated.len()
        );
        SeenIds::among(repeated)
    };
    for src in sources {
        let table = src.table;
        // The merge reads the usage_id only (reject keys, lineage).
        intake.load_rows(
            src,
            USAGE,
            &[0],
            |recent: &mut Recent, r| match parse_usage(r) {
                // Details boxed here, on the pool, not in the in-order merge.
                Err((reason, detail)) => RowOutcome::Bad(Box::new((reason, detail.into()))),
                Ok(u) => {
                    let fp = xxhash_rust::xxh3::xxh3_128(u.usage_id.as_bytes());
                    RowOutcome::Good {
                        fp: [fp as u64, (fp >> 64) as u64],
                        fate: match classify_usage(st, &u, cutoff, recent) {
                            UsageFate::Rate(ii) if needs_rows && st.item_needs_rows(ii) => {
                                Fate::RateDetail(ii as u32, u.quantity, PackedFold::pack(fold_of(st, ii, &u, recent)))
                            }
                            UsageFate::Rate(ii) => Fate::Rate(ii as u32, u.quantity),
                            UsageFate::Defer(ii) => Fate::Defer(Box::new(u.deferred(ii))),
                            UsageFate::Reject(reason, detail) => Fate::Reject(Box::new((reason, detail.into()))),
                        },
                    }
                }
            },
            |wave| {
                seen.mark_duplicates(wave);
                add_quantities(qty, wave);
            },
            |intake, oc, o, r| {
                match oc {
                    RowOutcome::Bad(fail) => intake.reject(table, o, r.key(UsageCol::UsageId), fail.0, fail.1),
                    RowOutcome::Duplicate => {
                        let id = r.key(UsageCol::UsageId);
                        let detail = format!("duplicate usage_id {id}; the first occurrence wins");
                        intake.reject(table, o, id, Reason::DuplicateKey, detail);
                    }
                    RowOutcome::Good { fate, .. } => match fate {
                        Fate::Rate(ii, _) => {
                            *rated_rows += 1;
                            if let Some(l) = lineage {
                                l.push((ii, r.raw(UsageCol::UsageId).into_boxed_str()));
                            }
                        }
                        Fate::RateDetail(ii, q, packed) => {
                            *rated_rows += 1;
                            let fold = packed.unpack(st, ii as usize, q);
                            if let Some(l) = lineage {
                                l.push((ii, r.raw(UsageCol::UsageId).into_boxed_str()));
                            }
                            add_detail(detail, &mut slot, ii, q, fold).ok_or_else(|| {
                                Error::Invariant(format!(
                                    "arithmetic overflow folding usage row {} of item {}",
                                    r.raw(UsageCol::UsageId),
                                    st.items[ii as usize].key()
                                ))
                            })?;
                        }
                        Fate::Defer(u) => deferred.push(*u),
                        Fate::Reject(fail) => intake.reject(table, o, r.key(UsageCol::UsageId), fail.0, fail.1),
                    },
                }
                Ok(())
            },
        )?;
    }
    drop(slot);
    out.detail.finish();
    out.qty.par_iter_mut().for_each(|q| *q = crate::domain::normalized(*q));
    Ok(out)
}

/// Fold a rated row of item `ii` into its detail (in read order); None on an overflow.
fn add_detail(d: &mut UsageDetails, slot: &mut [u32], ii: u32, q: Decimal, fold: Fold) -> Option<()> {
    let slot = &mut slot[ii as usize];
    if *slot == u32::MAX {
        *slot = d.details.len() as u32;
        d.details.push(UsageDetail::default());
        d.items.push(ii);
    }
    let e = &mut d.details[*slot as usize];
    e.rows = e.rows.saturating_add(1);
    match fold {
        Fold::Count => {}
        Fold::Fee(fee) => e.add_fee(fee?)?,
        Fold::Period(ps) => e.add_in_period(ps?, crate::domain::normalized(q))?,
    }
    Some(())
}

/// Work over a whole wave split by disjoint ranges of `v` (fingerprint tables, item sums):
/// one range per thread, `f(first index, range)` run for each in parallel (each task scans
/// the wave and takes the rows that fall in its range, in read order).
fn par_ranges<T: Send, R: Send>(v: &mut [T], f: impl Fn(usize, &mut [T]) -> R + Sync) -> Vec<R> {
    use rayon::prelude::*;
    let per = v.len().div_ceil(rayon::current_num_threads().max(1)).max(1);
    v.par_chunks_mut(per).enumerate().map(|(g, part)| f(g * per, part)).collect()
}

/// Add the quantity of every rated row of a wave to its item's sum (duplicates marked
/// already). Items are split into ranges, one task each; within an item rows are added in
/// read order, so the sums do not depend on the thread count.
fn add_quantities(qty: &mut [Decimal], wave: &[&mut Vec<RowOutcome>]) {
    par_ranges(qty, |lo, part| {
        for v in wave {
            for o in v.iter() {
                let (ii, q) = match o {
                    RowOutcome::Good { fate: Fate::Rate(ii, q), .. } => (*ii, *q),
                    RowOutcome::Good { fate: Fate::RateDetail(ii, q, _), .. } => (*ii, *q),
                    _ => continue,
                };
                if let Some(sum) = (ii as usize).checked_sub(lo).and_then(|i| part.get_mut(i)) {
                    *sum = add_quantity(*sum, q);
                }
            }
        }
    });
}

/// `a + b` for the usage sums: one i128 addition when both are at one scale (quantities
/// kept at their column's scale 18, see [`fast::usage_quantity`]: rust_decimal's addition
/// takes its slow path for mantissas above 64 bits, which scale 18 puts most quantities
/// in). A sum beyond 96 bits is added normalized (trailing zeros shed first, not rounded
/// away); a first quantity replaces the zero a sum starts at, keeping its scale.
fn add_quantity(a: Decimal, b: Decimal) -> Decimal {
    if a.scale() == b.scale() {
        let m = a.mantissa() + b.mantissa();
        let u = m.unsigned_abs();
        if u < 1 << 96 {
            return Decimal::from_parts(u as u32, (u >> 32) as u32, (u >> 64) as u32, m < 0, a.scale());
        }
        return crate::domain::normalized(a) + crate::domain::normalized(b);
    }
    if a.is_zero() {
        return b;
    }
    a + b
}

/// The rows of `sources` for sizing: each Parquet file's from its footer, a CSV file's
/// taken as one row per 24 bytes (a usage row's fields alone take more), so that a large
/// CSV usage errs towards the spill.
fn estimated_rows(sources: &[&TableSource]) -> Result<u64> {
    let mut rows = 0u64;
    for file in sources.iter().flat_map(|s| &s.files) {
        rows += match crate::io::read::metadata_rows([file])? {
            (n, true) => n,
            _ => std::fs::metadata(&file.path).map_or(0, |m| m.len() / 24),
        };
    }
    Ok(rows)
}

/// The fingerprints of the usage_ids that occur more than once in `sources` (about `rows`
/// rows), found with about `limit.bytes` of memory: a pass over the usage_id column alone
/// writes each id's fingerprint to one of K files by its top bits (the part [`SeenIds`]
/// places by), then each file is checked by itself, one per thread at a time. Nulls are
/// skipped (such a row is never a duplicate); every other id is counted whether or not its
/// row turns out valid, so the result may hold more than the ids the duplicate check will
/// find repeated, never fewer. Order does not matter here (only counts do): files are read
/// with their units in parallel.
fn repeated_ids(sources: &[&TableSource], rows: u64, limit: &DedupeLimit) -> Result<Repeated> {
    use rayon::prelude::*;
    use std::io::Write;
    // A file's check holds its fingerprints as read (12 bytes each) and as numbers (16).
    let threads = rayon::current_num_threads().max(1) as u64;
    let k = rows.saturating_mul(28 * threads).div_ceil(limit.bytes.max(1)).clamp(2, 256) as usize;
    let dir = tempfile::Builder::new()
        .prefix(&limit.prefix)
        .tempdir_in(&limit.dir)
        .map_err(|e| Error::io(format!("creating a spill directory in {}", limit.dir.display()), e))?;
    let path = |j: usize| dir.path().join(format!("fp-{j:03}"));
    let io = |what: &str, j: usize, e| Error::io(format!("{what} spill file {}", path(j).display()), e);
    let writers = (0..k)
        .map(|j| {
            let f = std::fs::File::create(path(j)).map_err(|e| io("creating", j, e))?;
            Ok(std::sync::Mutex::new(std::io::BufWriter::with_capacity(1 << 16, f)))
        })
        .collect::<Result<Vec<_>>>()?;
    for file in sources.iter().flat_map(|s| &s.files) {
        crate::io::read::units(file)?.par_iter().try_for_each(|unit| {
            crate::io::read::read_unit(file, &USAGE[..1], unit, |b| {
                let mut parts = vec![Vec::new(); k];
                for i in 0..b.len {
                    if let Some(id) = b.cols[0].str(i) {
                        let (j, low) = SeenIds::place(k, xxhash_rust::xxh3::xxh3_128(id.as_bytes()));
                        parts[j].extend(low.iter().flat_map(|w| w.to_le_bytes()));
                    }
                }
                for (j, part) in parts.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
                    let mut w = writers[j].lock().unwrap_or_else(|p| p.into_inner());
                    w.write_all(part).map_err(|e| io("writing", j, e))?;
                }
                Ok(())
            })
            .map(drop)
        })?;
    }
    for (j, w) in writers.into_iter().enumerate() {
        w.into_inner().unwrap_or_else(|p| p.into_inner()).flush().map_err(|e| io("writing", j, e))?;
    }
    let repeated = (0..k)
        .into_par_iter()
        .map(|j| Ok(repeats(&std::fs::read(path(j)).map_err(|e| io("reading", j, e))?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Repeated::new(repeated.into_iter().flatten().collect()))
}

/// The bytes of a fingerprint in a spill file (its low 96 bits, little-endian).
const FP_BYTES: usize = 12;

/// The fingerprints that occur more than once in `data` (12 bytes each, little-endian):
/// sorted, not put in a set (a table per spill file to map and fault in cost more), and
/// sorted in two steps since they are uniform: placed by their top bits into buckets of
/// ~128 (a counting sort), then each bucket sorted in the cache.
fn repeats(data: &[u8]) -> Vec<[u32; 3]> {
    let n = data.len() / FP_BYTES;
    let bits = (n / 128).next_power_of_two().clamp(1, 1 << 16).trailing_zeros();
    // Bits 96 - bits .. 96 of the fingerprint: its last two bytes.
    let bucket = |c: &[u8]| (u32::from(u16::from_le_bytes([c[10], c[11]])) >> (16 - bits)) as usize;
    let mut start = vec![0usize; (1 << bits) + 1];
    for c in data.chunks_exact(FP_BYTES) {
        start[bucket(c) + 1] += 1;
    }
    for b in 0..1 << bits {
        start[b + 1] += start[b];
    }
    let mut fps = vec![0u128; n];
    let mut next = start.clone();
    for c in data.chunks_exact(FP_BYTES) {
        let b = bucket(c);
        fps[next[b]] = c.iter().rev().fold(0u128, |acc, &byte| acc << 8 | byte as u128);
        next[b] += 1;
    }
    let mut rep = Vec::new();
    for w in start.windows(2) {
        let part = &mut fps[w[0]..w[1]];
        part.sort_unstable();
        rep.extend(
            part.windows(2).filter(|p| p[0] == p[1]).map(|p| [p[0] as u32, (p[0] >> 32) as u32, (p[0] >> 64) as u32]),
        );
    }
    rep
}

/// The fingerprints (low 96 bits) of the usage_ids that repeat, behind a Bloom filter: the
/// check asks about every row, and the set alone (~15 bytes an id: 2.4 MB for the 160k
/// repeated ids of the 10M dataset) outgrows the core's cache, where the filter (two bits
/// of 16–32 an id) stays. A row the filter lets through (its id repeats, or at most ~1.4 % of
/// the others) is looked up in the set.
struct Repeated {
    filter: Vec<u64>,
    /// Bit positions are fingerprint bits masked to the filter's size (a power of two).
    mask: u64,
    set: FpSet,
}

impl Repeated {
    fn new(fps: Vec<[u32; 3]>) -> Repeated {
        let bits = (fps.len() as u64 * 16).next_power_of_two().max(1 << 12);
        let mut r = Repeated {
            filter: vec![0; (bits / 64) as usize],
            mask: bits - 1,
            set: FpSet::with_buckets(SeenIds::buckets_for(fps.len() as u64) as usize),
        };
        for fp in fps {
            for b in r.bits(fp) {
                r.filter[(b / 64) as usize] |= 1 << (b % 64);
            }
            r.set.insert(fp);
        }
        r
    }

    /// The filter's two bits for `fp` (from the fingerprint's middle and high words: the
    /// set's bucket comes from the low ones).
    fn bits(&self, fp: [u32; 3]) -> [u64; 2] {
        [fp[1] as u64 & self.mask, fp[2] as u64 & self.mask]
    }

    /// Whether the filter lets `fp` through (always when `fp` is in the set).
    fn passes(&self, fp: [u32; 3]) -> bool {
        self.bits(fp).iter().all(|&b| self.filter[(b / 64) as usize] >> (b % 64) & 1 == 1)
    }

    fn contains(&self, fp: [u32; 3]) -> bool {
        self.passes(fp) && self.set.contains(fp)
    }

    fn len(&self) -> usize {
        self.set.len()
    }
}

/// The usage_id fingerprints seen so far (xxh3-128 of the id): [`FpSet`]s over disjoint
/// slices of the fingerprint space (picked by its top 32 bits), each holding the low 96 bits
/// of its fingerprints (~14.6 bytes a row; with the slice, ~100 bits tell ids apart: a false
/// duplicate among 10^9 ids has a chance of about 10^-12). Each set is sized to be nearly
/// full at the expected row count: one set would round up to the next power of two buckets
/// (up to twice what the rows need); 16–32 sets of one power-of-two size track the count
/// within a few percent.
struct SeenIds {
    shards: Vec<FpSet>,
    /// When set, only the ids in it can repeat ([`repeated_ids`]): the others skip the sets.
    only: Option<Repeated>,
}

/// Rows whose buckets are prefetched ahead of their lookup in [`SeenIds::mark_duplicates`]
/// (enough to cover a memory access at this loop's rate).
const PREFETCH_AHEAD: usize = 16;

impl SeenIds {
    /// The buckets that hold `rows` fingerprints: five a bucket, at most 7/8 full, and 1 %
    /// for the sets' uneven shares.
    fn buckets_for(rows: u64) -> u64 {
        (rows.saturating_mul(8) / 7).div_ceil(5) * 101 / 100 + 1
    }

    /// About the memory [`SeenIds::with_expected`] takes for `rows`.
    fn bytes_for(rows: u64) -> u64 {
        SeenIds::buckets_for(rows).saturating_mul(std::mem::size_of::<[u32; 16]>() as u64)
    }

    fn with_expected(rows: u64) -> SeenIds {
        let buckets = SeenIds::buckets_for(rows);
        if buckets < 1 << 12 {
            return SeenIds { shards: vec![FpSet::with_buckets(buckets as usize)], only: None };
        }
        let per = 1u64 << (63 - (buckets / 16).leading_zeros()); // largest power of two <= buckets/16
        let n = buckets.div_ceil(per) as usize;
        // Made and their pages zeroed on all threads now, not by the first wave's one
        // while the others wait. A set below the mapping threshold comes zeroed from the
        // allocator, which writes the zeros itself: so they are made on the pool too.
        use rayon::prelude::*;
        let shards = (0..n)
            .into_par_iter()
            .map(|_| {
                let mut s = FpSet::with_buckets(per as usize);
                s.fault_in();
                s
            })
            .collect();
        SeenIds { shards, only: None }
    }

    /// The sets for a usage whose only possibly repeated ids are `repeated` (a superset of
    /// them does no harm: an id in it is checked as usual). One small set per thread, so
    /// that [`SeenIds::mark_duplicates`]' membership tests of every row share the pool.
    fn among(repeated: Repeated) -> SeenIds {
        let n = rayon::current_num_threads().max(1);
        let per = SeenIds::buckets_for(repeated.len() as u64).div_ceil(n as u64) as usize;
        SeenIds { shards: (0..n).map(|_| FpSet::with_buckets(per)).collect(), only: Some(repeated) }
    }

    /// The set (of `n`) that holds `fp`, and the part of `fp` it stores. The set is the top
    /// 32 bits scaled to `0..n`: a multiply and a shift, where a remainder was a 64-bit
    /// division per row and task.
    fn place(n: usize, fp: u128) -> (usize, [u32; 3]) {
        ((((fp >> 96) as u64 * n as u64) >> 32) as usize, [fp as u32, (fp >> 32) as u32, (fp >> 64) as u32])
    }

    /// Whether `fp` is seen for the first time (and remember it).
    #[cfg(test)]
    fn first(&mut self, fp: u128) -> bool {
        let (k, low) = SeenIds::place(self.shards.len(), fp);
        self.shards[k].insert(low)
    }

    /// Mark every row of a wave whose usage_id was seen before (in an earlier wave or
    /// earlier in this one) as [`RowOutcome::Duplicate`]. The sets are split into ranges,
    /// one task each, and each task takes the wave's rows in read order (through a ring
    /// that prefetches each row's bucket [`PREFETCH_AHEAD`] rows before its lookup): the
    /// first occurrence wins on any thread count.
    fn mark_duplicates(&mut self, wave: &mut [&mut Vec<RowOutcome>]) {
        let n = self.shards.len();
        let shared = &*wave;
        let only = self.only.as_ref();
        let dups = par_ranges(&mut self.shards, |lo, sets| {
            let count = sets.len();
            let mine = shared.iter().enumerate().flat_map(|(vi, v)| {
                v.iter().enumerate().filter_map(move |(ri, o)| match o {
                    RowOutcome::Good { fp, .. } => {
                        let (k, low) = SeenIds::place(n, fp[0] as u128 | (fp[1] as u128) << 64);
                        let k = k.checked_sub(lo).filter(|&k| k < count)?;
                        if only.is_some_and(|o| !o.contains(low)) {
                            return None;
                        }
                        Some((k, low, vi as u32, ri as u32))
                    }
                    _ => None,
                })
            });
            let mut dups = Vec::new();
            // A ring of the rows prefetched and not yet looked up (`taken` rows so far).
            let mut ring = [(0usize, [0u32; 3], 0u32, 0u32); PREFETCH_AHEAD];
            let mut taken = 0usize;
            let mut look = |(k, low, vi, ri): (usize, [u32; 3], u32, u32), sets: &mut [FpSet]| {
                if !sets[k].insert(low) {
                    dups.push((vi, ri));
                }
            };
            for row in mine {
                sets[row.0].prefetch(row.1);
                let slot = &mut ring[taken % PREFETCH_AHEAD];
                if taken >= PREFETCH_AHEAD {
                    look(*slot, sets);
                }
                *slot = row;
                taken += 1;
            }
            for i in taken.saturating_sub(PREFETCH_AHEAD)..taken {
                look(ring[i % PREFETCH_AHEAD], sets);
            }
            dups
        });
        for (vi, ri) in dups.into_iter().flatten() {
            wave[vi as usize][ri as usize] = RowOutcome::Duplicate;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored part (low 96 bits) of id `i`'s fingerprint.
    fn low(i: u64) -> [u32; 3] {
        SeenIds::place(1, xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())).1
    }

    /// Usage sums at a Decimal(38,18) column's scale (`fast::usage_quantity`, `add_quantity`)
    /// come out as the sums of the normalized quantities, past 96 bits too.
    #[test]
    fn usage_sums_at_scale_18_equal_the_sums_of_normalized_quantities() {
        use crate::domain::{normalized, normalized_from_i128};
        use crate::io::read::Col;
        use arrow_array::Decimal128Array;
        let e18 = 10i128.pow(18);
        let cases: Vec<Vec<i128>> = vec![
            vec![2407 * e18, 1534 * e18, 0, 488 * e18],
            vec![1, 123_456_789_012_345_678, 15 * e18 / 10],
            // 5e10 units each: their sum leaves 96 bits at scale 18 (exact: trailing zeros).
            vec![50_000_000_000 * e18, 50_000_000_000 * e18, 7 * e18 / 4],
            vec![0, 0],
        ];
        for values in cases {
            let col = Col::Dec(Decimal128Array::from(values.clone()).with_precision_and_scale(38, 18).unwrap(), 18);
            let mut fast_sum = Decimal::ZERO;
            let mut plain_sum = Decimal::ZERO;
            for (i, &v) in values.iter().enumerate() {
                let q = fast::usage_quantity(&col, i).unwrap().unwrap();
                assert_eq!(q, normalized_from_i128(v, 18).unwrap());
                fast_sum = add_quantity(fast_sum, q);
                plain_sum += normalized_from_i128(v, 18).unwrap();
            }
            assert_eq!(normalized(fast_sum).to_string(), plain_sum.normalize().to_string(), "{values:?}");
        }
        // Mixed scales (CSV text beside a Decimal128 column) add as decimals do.
        assert_eq!(
            add_quantity(Decimal::new(15, 1), Decimal::new(25 * 10i64.pow(17), 18)).normalize().to_string(),
            "4"
        );
    }

    #[test]
    fn seen_ids_first_occurrence_wins_in_every_shard_layout() {
        for expected in [0u64, 10, 100_000, 3_000_000] {
            let mut seen = SeenIds::with_expected(expected);
            let n = seen.shards.len();
            assert!(n == 1 || (16..=32).contains(&n), "{expected}: {n} shards");
            let fps: Vec<u128> = (0..200_000u64).map(|i| xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())).collect();
            assert!(fps.iter().all(|&f| seen.first(f)), "{expected}: a new id was taken for a duplicate");
            assert!(fps.iter().all(|&f| !seen.first(f)), "{expected}: a duplicate was taken for new");
        }
        // Sized within a few percent of what the rows need (not the next power of two),
        // with room for them all.
        for rows in [1_720_000usize, 17_200_000] {
            let s = SeenIds::with_expected(rows as u64);
            let slots: usize = s.shards.iter().map(|x| x.buckets() * 5).sum();
            assert!(slots < rows * 8 / 7 * 11 / 10, "{slots} slots");
            assert!(s.shards.iter().map(|x| x.capacity()).sum::<usize>() > rows * 1005 / 1000);
        }
    }

    #[test]
    fn repeats_finds_each_fingerprint_seen_twice_or_more_in_any_file_size() {
        for n in [0u64, 1, 100, 5_000, 300_000] {
            // Ids 0..n, then every 7th again and every 49th a third time.
            let ids: Vec<u64> = (0..n).chain((0..n).step_by(7)).chain((0..n).step_by(49)).collect();
            let data: Vec<u8> = ids.iter().flat_map(|&i| low(i)).flat_map(|w| w.to_le_bytes()).collect();
            let mut got = repeats(&data);
            got.sort_unstable();
            got.dedup();
            let mut want: Vec<[u32; 3]> = (0..n).step_by(7).map(low).collect();
            want.sort_unstable();
            assert_eq!(got, want, "{n} ids");
        }
    }

    #[test]
    fn repeated_ids_are_all_found_and_the_filter_lets_few_others_through() {
        let r = Repeated::new((0..160_000).map(low).collect());
        assert_eq!(r.len(), 160_000);
        assert!((0..160_000).all(|i| r.contains(low(i))));
        let others = 1_000_000..2_000_000u64;
        let through = others.clone().filter(|&i| r.passes(low(i))).count();
        // Two bits, 16–32 filter bits an id (a power of two in all; here 26): (1 - e^(-2/26))^2,
        // 0.5 % (at most 1.4 %, at 16).
        assert!((1_000..15_000).contains(&through), "{through}");
        assert!(others.clone().all(|i| !r.contains(low(i))));
    }

    #[test]
    fn duplicates_and_sums_of_a_wave_do_not_depend_on_the_thread_count_or_the_spill() {
        // Waves of rows whose ids repeat within and across waves (every id seen before in
        // read order is a duplicate), over many tables and items, on 1, 2 and 3 threads.
        let fp = |id: u64| {
            let f = xxhash_rust::xxh3::xxh3_128(&id.to_le_bytes());
            [f as u64, (f >> 64) as u64]
        };
        let run = |threads: usize, spilled: bool| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut seen = if spilled {
                    // As after `repeated_ids`: only the ids seen more than once are held.
                    let mut count = std::collections::HashMap::new();
                    for (w, b, i) in
                        (0..3u64).flat_map(|w| (0..2u64).flat_map(move |b| (0..5000u64).map(move |i| (w, b, i))))
                    {
                        *count.entry((w * 7919 + b * 104_729 + i * 31) % 12_000).or_insert(0) += 1;
                    }
                    let repeated: Vec<[u32; 3]> =
                        (count.iter().filter(|(_, &c)| c > 1)).map(|(&id, _)| low(id)).collect();
                    assert!(repeated.len() < count.len());
                    SeenIds::among(Repeated::new(repeated))
                } else {
                    SeenIds::with_expected(1_000_000)
                };
                assert!(seen.shards.len() > 1 || threads == 1);
                let mut qty = vec![Decimal::ZERO; 7];
                let mut marks = Vec::new();
                for w in 0..3u64 {
                    let mut batches: Vec<Vec<RowOutcome>> = (0..2u64)
                        .map(|b| {
                            (0..5000u64)
                                .map(|i| {
                                    let id = (w * 7919 + b * 104_729 + i * 31) % 12_000;
                                    let fate = Fate::Rate((id % 7) as u32, Decimal::new(i as i64 + 1, 1));
                                    RowOutcome::Good { fp: fp(id), fate }
                                })
                                .collect()
                        })
                        .collect();
                    let mut wave: Vec<&mut Vec<RowOutcome>> = batches.iter_mut().collect();
                    seen.mark_duplicates(&mut wave);
                    add_quantities(&mut qty, &wave);
                    marks.extend(batches.iter().flatten().map(|o| matches!(o, RowOutcome::Duplicate)));
                }
                (marks, qty)
            })
        };
        let (marks, qty) = run(1, false);
        // The reference: a plain set over the ids in read order.
        let mut set = std::collections::HashSet::new();
        let mut want_qty = vec![Decimal::ZERO; 7];
        let mut want = Vec::new();
        for w in 0..3u64 {
            for b in 0..2u64 {
                for i in 0..5000u64 {
                    let id = (w * 7919 + b * 104_729 + i * 31) % 12_000;
                    let first = set.insert(id);
                    if first {
                        want_qty[(id % 7) as usize] += Decimal::new(i as i64 + 1, 1);
                    }
                    want.push(!first);
                }
            }
        }
        assert!(want.iter().any(|&d| d) && want.iter().any(|&d| !d));
        assert_eq!(marks, want);
        assert_eq!(qty, want_qty);
        for (t, spilled) in [(2, false), (3, false), (1, true), (2, true), (3, true)] {
            assert_eq!(run(t, spilled), (want.clone(), want_qty.clone()), "{t} threads, spilled {spilled}");
        }
    }
}
