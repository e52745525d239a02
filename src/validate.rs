//! Validation (SPEC §3 domains, §4 Rejects): typed records out of raw batches, one reject
//! per bad row, in the order parse → domain → DUPLICATE_KEY → references.

use crate::error::Result;
use crate::index::{hash_key, split_rows, FpSet, IdIndex};
use crate::model::*;
use crate::read::{opt, req, Batch, ColSpec, Kind, TableSource};
use rust_decimal::Decimal;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    MissingRequired,
    InvalidValue,
    DuplicateKey,
    UnknownSubscription,
    UnknownService,
    UnknownWallet,
    CurrencyMismatch,
    LateUsage,
    ItemEnded,
    UnknownItem,
    NotPostRate,
    ExternalUsage,
    TerminatedSubscription,
    SourceMismatch,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingRequired => "MISSING_REQUIRED",
            Reason::InvalidValue => "INVALID_VALUE",
            Reason::DuplicateKey => "DUPLICATE_KEY",
            Reason::UnknownSubscription => "UNKNOWN_SUBSCRIPTION",
            Reason::UnknownService => "UNKNOWN_SERVICE",
            Reason::UnknownWallet => "UNKNOWN_WALLET",
            Reason::CurrencyMismatch => "CURRENCY_MISMATCH",
            Reason::LateUsage => "LATE_USAGE",
            Reason::ItemEnded => "ITEM_ENDED",
            Reason::UnknownItem => "UNKNOWN_ITEM",
            Reason::NotPostRate => "NOT_POST_RATE",
            Reason::ExternalUsage => "EXTERNAL_USAGE",
            Reason::TerminatedSubscription => "TERMINATED_SUBSCRIPTION",
            Reason::SourceMismatch => "SOURCE_MISMATCH",
        }
    }
}

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

    fn into_pairs(self) -> impl Iterator<Item = (T, Origin)> {
        self.rows.into_iter().zip(self.origins)
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

type Fail = (Reason, String);

/// A row of a batch, with typed accessors that produce the reject of SPEC §4.
pub struct Row<'a> {
    b: &'a Batch,
    i: usize,
    specs: &'a [ColSpec],
}

impl<'a> Row<'a> {
    fn name(&self, c: usize) -> &'static str {
        self.specs[c].name
    }
    fn missing(&self, c: usize) -> Fail {
        (Reason::MissingRequired, format!("{} is missing", self.name(c)))
    }
    fn invalid(&self, c: usize, why: String) -> Fail {
        (Reason::InvalidValue, format!("{}: {why}", self.name(c)))
    }
    pub fn raw(&self, c: usize) -> String {
        self.b.cols[c].raw(self.i)
    }
    /// [`Row::raw`] as a reject key: a string cell is copied once (inline up to 24 bytes).
    pub fn key(&self, c: usize) -> Text {
        match self.b.cols[c].str(self.i) {
            Some(s) => Text::from(s),
            None => Text::from(self.raw(c)),
        }
    }
    fn os(&self, c: usize) -> Option<&'a str> {
        self.b.cols[c].str(self.i)
    }
    fn s(&self, c: usize) -> Result<&'a str, Fail> {
        self.os(c).ok_or_else(|| self.missing(c))
    }
    fn od(&self, c: usize) -> Result<Option<Decimal>, Fail> {
        self.b.cols[c].decimal(self.i).map_err(|e| self.invalid(c, e))
    }
    fn d(&self, c: usize) -> Result<Decimal, Fail> {
        self.od(c)?.ok_or_else(|| self.missing(c))
    }
    fn odate(&self, c: usize) -> Result<Option<chrono::NaiveDate>, Fail> {
        self.b.cols[c].date(self.i).map_err(|e| self.invalid(c, e))
    }
    fn date(&self, c: usize) -> Result<chrono::NaiveDate, Fail> {
        self.odate(c)?.ok_or_else(|| self.missing(c))
    }
    fn ots(&self, c: usize) -> Result<Option<Micros>, Fail> {
        self.b.cols[c].timestamp(self.i).map_err(|e| self.invalid(c, e))
    }
    fn ts(&self, c: usize) -> Result<Micros, Fail> {
        self.ots(c)?.ok_or_else(|| self.missing(c))
    }
    fn int(&self, c: usize) -> Result<i64, Fail> {
        self.b.cols[c].int(self.i).map_err(|e| self.invalid(c, e))?.ok_or_else(|| self.missing(c))
    }
    fn operiod(&self, c: usize) -> Result<Option<PeriodText>, Fail> {
        match self.os(c) {
            None => Ok(None),
            Some(t) => Period::parse(t)
                .map(|p| Some(PeriodText { period: p, text: t.to_string() }))
                .ok_or_else(|| self.invalid(c, format!("not a period: {t:?}"))),
        }
    }
    fn currency(&self, c: usize, code: &str) -> Result<u32, Fail> {
        minor_units(code).ok_or_else(|| self.invalid(c, format!("unknown ISO 4217 currency {code:?}")))
    }
    fn domain(&self, c: usize, ok: bool, what: &str) -> Result<(), Fail> {
        if ok {
            Ok(())
        } else {
            Err(self.invalid(c, format!("{} {what}", self.raw(c))))
        }
    }
}

pub const SERVICES: &[ColSpec] = &[
    req("service_id", Kind::Text),
    req("billing_method", Kind::Text),
    req("price", Kind::Decimal),
    req("currency", Kind::Text),
    opt("rate_period", Kind::Text),
    opt("advance_period", Kind::Text),
    opt("unit_size", Kind::Decimal),
];
pub const WALLETS: &[ColSpec] = &[
    req("wallet_id", Kind::Text),
    req("account_id", Kind::Text),
    req("currency", Kind::Text),
    req("balance", Kind::Decimal),
    opt("updated_at", Kind::Timestamp),
];
pub const SUBSCRIPTIONS: &[ColSpec] = &[
    req("subscription_id", Kind::Text),
    req("account_id", Kind::Text),
    req("source", Kind::Text),
    req("status", Kind::Text),
    opt("expires_at", Kind::Timestamp),
];
pub const ITEMS: &[ColSpec] = &[
    req("subscription_id", Kind::Text),
    req("item_no", Kind::Int),
    req("service_id", Kind::Text),
    opt("quantity", Kind::Decimal),
    opt("custom_price", Kind::Decimal),
    req("start_date", Kind::Date),
    opt("end_date", Kind::Date),
    opt("billed_through", Kind::Date),
];
pub const USAGE: &[ColSpec] = &[
    req("usage_id", Kind::Text),
    req("subscription_id", Kind::Text),
    req("service_id", Kind::Text),
    req("event_time", Kind::Timestamp),
    req("quantity", Kind::Decimal),
];
pub const CREDITS: &[ColSpec] = &[
    req("credit_id", Kind::Text),
    req("wallet_id", Kind::Text),
    req("amount", Kind::Decimal),
    req("transaction_type", Kind::Text),
    req("received_at", Kind::Timestamp),
];
pub const EVENTS: &[ColSpec] = &[
    req("event_id", Kind::Text),
    req("subscription_id", Kind::Text),
    req("source", Kind::Text),
    req("event_type", Kind::Text),
    req("event_time", Kind::Timestamp),
    opt("expires_at", Kind::Timestamp),
    opt("to_account_id", Kind::Text),
    opt("amount", Kind::Decimal),
    opt("currency", Kind::Text),
    opt("payment_status", Kind::Text),
];

pub fn parse_service(r: &Row) -> Result<Service, Fail> {
    let service_id = Text::from(r.s(0)?);
    let method = r.s(1)?;
    let price = r.d(2)?;
    let currency = Text::from(r.s(3)?);
    let rate_period = r.operiod(4)?;
    if method == "PRE_RATE" && rate_period.is_none() {
        return Err(r.missing(4));
    }
    let advance_period = r.operiod(5)?;
    let unit_size = r.od(6)?;
    let billing_method = BillingMethod::parse(method)
        .ok_or_else(|| r.invalid(1, format!("{method:?} is not PRE_RATE, POST_RATE or ONE_TIME")))?;
    r.domain(2, price >= Decimal::ZERO, "is negative")?;
    let minor = r.currency(3, &currency)?;
    if billing_method == BillingMethod::PreRate {
        r.domain(4, rate_period.as_ref().is_some_and(|p| p.period.n >= 1), "is not a period of N >= 1")?;
    }
    r.domain(6, unit_size.is_none_or(|u| u > Decimal::ZERO), "is not > 0")?;
    Ok(Service { service_id, billing_method, price, currency, minor, rate_period, advance_period, unit_size })
}

pub fn parse_wallet(r: &Row) -> Result<Wallet, Fail> {
    let wallet_id = Text::from(r.s(0)?);
    let account_id = Text::from(r.s(1)?);
    let currency = Text::from(r.s(2)?);
    let balance = r.d(3)?;
    let updated_at = r.ots(4)?;
    let minor = r.currency(2, &currency)?;
    Ok(Wallet { wallet_id, account_id, currency, minor, balance, updated_at })
}

pub fn parse_subscription(r: &Row) -> Result<Subscription, Fail> {
    let subscription_id = Text::from(r.s(0)?);
    let account_id = Text::from(r.s(1)?);
    let source = Text::from(r.s(2)?);
    let status = r.s(3)?;
    let expires_at = r.ots(4)?;
    let status = Status::parse(status)
        .ok_or_else(|| r.invalid(3, format!("{status:?} is not ACTIVE, DISCONNECTED or TERMINATED")))?;
    Ok(Subscription { subscription_id, account_id, source, status, expires_at })
}

pub fn parse_item(r: &Row) -> Result<Item, Fail> {
    if let Some(it) = item_fast(r.b, r.i) {
        return Ok(it);
    }
    let subscription_id = Text::from(r.s(0)?);
    let item_no = r.int(1)?;
    let service_id = Text::from(r.s(2)?);
    let quantity = r.od(3)?;
    let custom_price = r.od(4)?;
    let start_date = r.date(5)?;
    let end_date = r.odate(6)?;
    let billed_through = r.odate(7)?;
    r.domain(1, item_no >= 1, "is not >= 1")?;
    r.domain(3, quantity.is_none_or(|q| q >= Decimal::ZERO), "is negative")?;
    r.domain(4, custom_price.is_none_or(|q| q >= Decimal::ZERO), "is negative")?;
    Ok(Item { subscription_id, item_no, service_id, quantity, custom_price, start_date, end_date, billed_through })
}

/// A usage row borrowed from its batch (the hot path allocates nothing per row).
pub struct UsageRef<'a> {
    pub usage_id: &'a str,
    pub subscription_id: &'a str,
    pub service_id: &'a str,
    pub event_time: Micros,
    pub quantity: Decimal,
}

impl UsageRef<'_> {
    /// The row held for a later run, matched to item `item`.
    pub fn deferred(&self, item: usize) -> DeferredUsage {
        DeferredUsage {
            usage_id: self.usage_id.into(),
            item: item as u32,
            event_time: self.event_time,
            quantity: crate::read::normalized(self.quantity),
        }
    }
}

pub fn parse_usage<'a>(r: &Row<'a>) -> Result<UsageRef<'a>, Fail> {
    if let Some(u) = usage_fast(r.b, r.i) {
        return Ok(u);
    }
    let usage_id = r.s(0)?;
    let subscription_id = r.s(1)?;
    let service_id = r.s(2)?;
    let event_time = r.ts(3)?;
    let quantity = r.d(4)?;
    r.domain(4, quantity >= Decimal::ZERO, "is negative")?;
    Ok(UsageRef { usage_id, subscription_id, service_id, event_time, quantity })
}

/// Fast paths for the rows of the common Parquet shape, read in one go without `Row`'s
/// per-cell error plumbing: each gives the values `Row`'s checks give such a row, and sends
/// every other row (a null or empty required cell, a value out of its domain, another
/// column type) to those checks, which explain it as a reject. (The plumbing was 3 % of a
/// run's instructions for the usage alone.)
mod fast {
    use crate::read::{normalized_from_i128, Col};
    use arrow_array::Array;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

    /// A decimal cell >= 0 (`Some(None)`: null).
    pub fn non_negative(c: &Col, i: usize) -> Option<Option<Decimal>> {
        let Col::Dec(a, scale) = c else { return None };
        if !a.is_valid(i) {
            return Some(None);
        }
        normalized_from_i128(a.value(i), *scale).filter(|d| *d >= Decimal::ZERO).map(Some)
    }

    /// A usage quantity cell >= 0. A Decimal128 at the sums' scale (the common Decimal(38,18)
    /// column) is taken as it is, trailing zeros and all: normalizing it per row took two
    /// u128 divisions, and [`super::add_quantity`] adds such values by one i128 addition.
    /// Any other cell goes through [`non_negative`].
    pub fn usage_quantity(c: &Col, i: usize) -> Option<Option<Decimal>> {
        if let Col::Dec(a, scale) = c {
            let v = a.value(i);
            if a.is_valid(i) && *scale as u32 == SUM_SCALE && (0..1i128 << 96).contains(&v) {
                // In 0..2^96: three 32-bit words.
                return Some(Some(Decimal::from_parts(v as u32, (v >> 32) as u32, (v >> 64) as u32, false, SUM_SCALE)));
            }
        }
        non_negative(c, i)
    }

    /// The scale usage quantities are summed at when their column has it.
    pub const SUM_SCALE: u32 = crate::read::MAX_SCALE;

    /// A date cell (`Some(None)`: null).
    pub fn date(c: &Col, i: usize) -> Option<Option<NaiveDate>> {
        let Col::Date(a) = c else { return None };
        if !a.is_valid(i) {
            return Some(None);
        }
        a.value_as_date(i).map(Some)
    }
}

/// The common usage row (no cell null or empty; quantity >= 0); see [`fast`].
fn usage_fast(b: &Batch, i: usize) -> Option<UsageRef<'_>> {
    use crate::read::Col;
    let [id, sub, svc, Col::Ts(ts), q] = &b.cols[..] else {
        return None;
    };
    let quantity = fast::usage_quantity(q, i)??;
    Some(UsageRef {
        usage_id: id.str(i)?,
        subscription_id: sub.str(i)?,
        service_id: svc.str(i)?,
        event_time: ts[i]?,
        quantity,
    })
}

/// The common item row (required cells present, item_no >= 1, quantity and custom price
/// null or >= 0); see [`fast`].
fn item_fast(b: &Batch, i: usize) -> Option<Item> {
    use crate::read::Col;
    use arrow_array::Array;
    let [sub, Col::Int(no), svc, qty, price, start, end, billed] = &b.cols[..] else {
        return None;
    };
    Some(Item {
        subscription_id: Text::from(sub.str(i)?),
        item_no: no.is_valid(i).then(|| no.value(i)).filter(|&n| n >= 1)?,
        service_id: Text::from(svc.str(i)?),
        quantity: fast::non_negative(qty, i)?,
        custom_price: fast::non_negative(price, i)?,
        start_date: fast::date(start, i)??,
        end_date: fast::date(end, i)?,
        billed_through: fast::date(billed, i)?,
    })
}

pub fn parse_credit(r: &Row) -> Result<Credit, Fail> {
    let credit_id = Text::from(r.s(0)?);
    let wallet_id = Text::from(r.s(1)?);
    let amount = r.d(2)?;
    let transaction_type = Text::from(r.s(3)?);
    let received_at = r.ts(4)?;
    r.domain(2, amount > Decimal::ZERO, "is not > 0")?;
    Ok(Credit { credit_id, wallet_id, amount, transaction_type, received_at })
}

pub fn parse_event(r: &Row) -> Result<Event, Fail> {
    let event_id = Text::from(r.s(0)?);
    let subscription_id = Text::from(r.s(1)?);
    let source = Text::from(r.s(2)?);
    let et = r.s(3)?;
    let event_time = r.ts(4)?;
    let expires_at = r.ots(5)?;
    let parsed_type = EventType::parse(et);
    if parsed_type.is_some_and(|t| t.sets_expiry()) && expires_at.is_none() {
        return Err((Reason::MissingRequired, format!("expires_at is missing (required for {et})")));
    }
    let to_account_id = r.os(6).map(Text::from);
    if parsed_type == Some(EventType::Transferred) && to_account_id.is_none() {
        return Err((Reason::MissingRequired, "to_account_id is missing (required for TRANSFERRED)".into()));
    }
    let amount = r.od(7)?;
    let currency = r.os(8).map(Text::from);
    let payment_status = r.os(9).map(Text::from);
    let event_type = parsed_type.ok_or_else(|| r.invalid(3, format!("{et:?} is not a known event type")))?;
    r.domain(
        9,
        payment_status.as_deref().is_none_or(|s| matches!(s, "CAPTURED" | "REJECTED" | "REFUNDED")),
        "is not CAPTURED, REJECTED or REFUNDED",
    )?;
    Ok(Event {
        event_id,
        subscription_id,
        source,
        event_type,
        event_time,
        expires_at,
        to_account_id,
        amount,
        currency,
        payment_status,
    })
}

/// Row keys for rejects, from the raw text.
pub fn key_of(table: &str, r: &Row) -> String {
    match table {
        "subscription_items" => format!("{}/{}", r.raw(0), r.raw(1)),
        _ => r.raw(0),
    }
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
    fn fork(&self) -> Intake {
        Intake { progress: self.progress.clone(), ..Intake::default() }
    }

    /// Take back a [`Intake::fork`]'s files, rejects and counts, renumbering its files after
    /// this intake's (and the origins of `rows`, what it loaded): adopting forks in table
    /// order numbers files and rejects as loading the tables one after another would.
    fn adopt<T: Send>(&mut self, part: Intake, rows: Result<Loaded<T>>) -> Result<Loaded<T>> {
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
        let (expected, _) = crate::read::metadata_rows(&src.files)?;
        let mut out =
            Loaded { rows: Vec::with_capacity(expected as usize), origins: Vec::with_capacity(expected as usize) };
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
    /// ([`crate::read::Unit`]: ranges of Parquet row groups) in waves as wide as the rayon
    /// pool, compute `per_row` for every row in parallel (each run of consecutive rows a task
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
            let units = crate::read::units(file)?;
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
                (total, sha256) = crate::read::read_unit_hashed(file, specs, &units[0], |mut b| {
                    let mut outcomes = rows_of(&mut b);
                    before_merge(&mut [&mut outcomes]);
                    merge_batch(self, &b, outcomes)
                })?;
                self.files[file_ord as usize].sha256 = sha256;
            } else {
                // Waves of units as wide as the pool; the (sequential) merge of wave k
                // runs while wave k+1 is decoded and parsed, so no core waits for the merge.
                let width = rayon::current_num_threads().max(1);
                type Wave<O> = Vec<Result<(Vec<(Batch, Vec<O>)>, u64)>>;
                let decode = |wave: &[crate::read::Unit]| -> Wave<O> {
                    wave.par_iter()
                        .map(|unit| {
                            let mut v = Vec::new();
                            let n = crate::read::read_unit(file, specs, unit, |mut b| {
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
        let (kept, dropped, new_of) = rows.split(&dups);
        index.renumber(&new_of);
        for (t, o) in dropped {
            let (a, n) = key(&t);
            let k = if table == "subscription_items" { format!("{a}/{n}") } else { a.to_string() };
            let detail = format!("duplicate key {k}; the first occurrence wins");
            self.reject(table, o, k, Reason::DuplicateKey, detail);
        }
        (kept, index)
    }
}

/// Item status after validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemState {
    Billable,
    /// Listed as a reject and carried through unchanged.
    Carried(Reason),
}

/// The validated state: every row that parsed, with indices for lookups.
pub struct State {
    pub services: Vec<Service>,
    pub service_idx: HashMap<Text, usize>,
    pub wallets: Vec<Wallet>,
    wallet_by_id: IdIndex,
    pub subs: Vec<Subscription>,
    /// Whether the subscription is billable (not rejected as UNKNOWN_WALLET).
    pub sub_ok: Vec<bool>,
    /// The wallet of the subscription's account ([`NO_WALLET`] when it has none).
    sub_wallet: Vec<u32>,
    sub_by_id: IdIndex,
    pub items: Vec<Item>,
    pub item_state: Vec<ItemState>,
    /// The item's subscription and service ([`NONE`] when unknown; see [`State::item_sub`]).
    item_sub: Vec<u32>,
    item_service: Vec<u32>,
    /// Per subscription: its POST_RATE items (billable or CURRENCY_MISMATCH), at most one per
    /// service, as CSR arrays (see [`State::post_items`]).
    post_item_idx: Vec<u32>,
    post_item_at: Vec<u32>,
}

/// The last row a lookup found, and whether the hits move forward through the table. Rows
/// that name the same subscription tend to come together (usage sorted by subscription, or
/// by time within one; items grouped by subscription), and files exported in id order name
/// the rows of a table in id order: comparing with the last hit's id, and while the hits move
/// forward with the next row's, is a compare in cache where a lookup hashes the id, probes a
/// table of millions and compares the id of a row at random (two cache misses).
#[derive(Clone, Copy, Debug, Default)]
pub struct LastHit {
    last: Option<usize>,
    forward: bool,
}

/// How far past the last hit a lookup may land for the hits to count as moving forward (the
/// gaps: subscriptions without usage, say).
const FORWARD_GAP: usize = 8;

/// How many rows after the last hit are compared before a lookup, while the hits move
/// forward. Two: in the 1M dataset's usage, of the 1,150,029 changes to a known
/// subscription, the next one is the row after the last in 1,007,872 and the row after that
/// in 124,541 (a subscription without POST_RATE items between them); further ones are rare.
const FORWARD_PROBE: usize = 2;

impl LastHit {
    /// Row `last`, or one of the [`FORWARD_PROBE`] rows after it (of a table of `n` rows)
    /// while the hits move forward, if `is_it` says it is the row looked for; else
    /// `lookup()`, remembered when found.
    pub fn find(
        &mut self,
        n: usize,
        is_it: impl Fn(usize) -> bool,
        lookup: impl FnOnce() -> Option<usize>,
    ) -> Option<usize> {
        if let Some(l) = self.last {
            if is_it(l) {
                return Some(l);
            }
            if self.forward {
                if let Some(next) = (l + 1..n.min(l + 1 + FORWARD_PROBE)).find(|&r| is_it(r)) {
                    self.last = Some(next);
                    return self.last;
                }
            }
        }
        let found = lookup();
        if let Some(f) = found {
            self.forward = self.last.is_some_and(|l| f > l && f - l <= FORWARD_GAP);
            self.last = Some(f);
        }
        found
    }
}

/// The last subscription and service the usage checks found (see [`LastHit`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Recent {
    sub: LastHit,
    service: LastHit,
}

const NO_WALLET: u32 = u32::MAX;
/// No subscription or service: a link of an item whose reference is unknown.
const NONE: u32 = u32::MAX;

/// The subscription with this id in `subs` (indexed by `by_id`), trying `last` first: the
/// one lookup of [`State::sub_of`] and of `validate_state` (before the `State` exists).
fn sub_lookup(subs: &[Subscription], by_id: &IdIndex, id: &str, last: &mut LastHit) -> Option<usize> {
    last.find(
        subs.len(),
        |s| subs[s].subscription_id == id,
        || by_id.get(id_hash(id), |s| subs[s].subscription_id == id),
    )
}

/// The hash of a single id as [`Intake::dedupe`] indexes it (as the key `(id, 0)`).
fn id_hash(id: &str) -> u64 {
    hash_key(&(id, 0i64))
}

impl State {
    /// The POST_RATE items of subscription `si`.
    pub fn post_items(&self, si: usize) -> &[u32] {
        &self.post_item_idx[self.post_item_at[si] as usize..self.post_item_at[si + 1] as usize]
    }

    /// The wallet with this `wallet_id`.
    pub fn wallet_of(&self, wallet_id: &str) -> Option<usize> {
        self.wallet_by_id.get(id_hash(wallet_id), |w| self.wallets[w].wallet_id == wallet_id)
    }

    /// The subscription with this `subscription_id`.
    pub fn sub_of(&self, subscription_id: &str) -> Option<usize> {
        sub_lookup(&self.subs, &self.sub_by_id, subscription_id, &mut LastHit::default())
    }

    /// [`State::sub_of`], trying `recent`'s last subscription first.
    pub fn sub_of_recent(&self, subscription_id: &str, recent: &mut Recent) -> Option<usize> {
        sub_lookup(&self.subs, &self.sub_by_id, subscription_id, &mut recent.sub)
    }

    /// The service with this `service_id`, trying `recent`'s last service first.
    pub fn service_of_recent(&self, service_id: &str, recent: &mut Recent) -> Option<usize> {
        recent.service.find(
            self.services.len(),
            |v| self.services[v].service_id == service_id,
            || self.service_idx.get(service_id).copied(),
        )
    }

    /// The subscription of item `ii`, if known.
    pub fn item_sub(&self, ii: usize) -> Option<usize> {
        Some(self.item_sub[ii]).filter(|&s| s != NONE).map(|s| s as usize)
    }

    /// The service of item `ii`, if known.
    pub fn item_service(&self, ii: usize) -> Option<usize> {
        Some(self.item_service[ii]).filter(|&s| s != NONE).map(|s| s as usize)
    }

    /// The wallet of subscription `si`'s account.
    pub fn wallet_of_sub(&self, si: usize) -> Option<usize> {
        Some(self.sub_wallet[si]).filter(|&w| w != NO_WALLET).map(|w| w as usize)
    }
}

/// Group `members` (member index, group) into CSR arrays over `groups` groups, members of
/// a group in the order of `members`.
pub(crate) fn group_csr(groups: usize, members: impl Iterator<Item = (u32, usize)> + Clone) -> (Vec<u32>, Vec<u32>) {
    let mut at = vec![0u32; groups + 1];
    for (_, g) in members.clone() {
        at[g + 1] += 1;
    }
    for g in 0..groups {
        at[g + 1] += at[g];
    }
    let mut next = at.clone();
    let mut idx = vec![0u32; at[groups] as usize];
    for (m, g) in members {
        idx[next[g] as usize] = m;
        next[g] += 1;
    }
    (idx, at)
}

pub struct StateSources<'a> {
    pub services: Option<&'a TableSource>,
    pub wallets: Option<&'a TableSource>,
    pub subscriptions: Option<&'a TableSource>,
    pub items: Option<&'a TableSource>,
}

fn load_opt<T: Send>(
    intake: &mut Intake,
    src: Option<&TableSource>,
    specs: &[ColSpec],
    parse: impl Fn(&Row) -> Result<T, Fail> + Sync,
) -> Result<Loaded<T>> {
    match src {
        Some(s) => intake.load(s, specs, parse),
        None => Ok(Loaded::default()),
    }
}

pub fn validate_state(intake: &mut Intake, src: &StateSources) -> Result<State> {
    use rayon::prelude::*;
    let services = load_opt(intake, src.services, SERVICES, parse_service)?;
    let (services, _) = intake.dedupe("services", services, |s| (&s.service_id, 0));
    let services: Vec<Service> = services.rows;
    let service_idx: HashMap<Text, usize> =
        services.iter().enumerate().map(|(i, s)| (s.service_id.clone(), i)).collect();

    // The three big tables are read side by side: a table of one row group decodes on one
    // thread, and three tables' row groups share the pool better than waves of one table.
    let (mut w_in, mut s_in, mut i_in) = (intake.fork(), intake.fork(), intake.fork());
    let (wallets, (subs, items)) = rayon::join(
        || load_opt(&mut w_in, src.wallets, WALLETS, parse_wallet),
        || {
            rayon::join(
                || load_opt(&mut s_in, src.subscriptions, SUBSCRIPTIONS, parse_subscription),
                || load_opt(&mut i_in, src.items, ITEMS, parse_item),
            )
        },
    );
    let wallets = intake.adopt(w_in, wallets)?;
    let subs = intake.adopt(s_in, subs)?;
    let items = intake.adopt(i_in, items)?;
    let (wallets, mut wallet_by_id) = intake.dedupe("wallets", wallets, |w| (&w.wallet_id, 0));
    // A second wallet for an account is a duplicate too.
    let (mut wallet_by_account, second) = IdIndex::build(wallets.len(), |i| Some(wallets.rows[i].account_id.as_str()));
    let (wallets, dropped, new_of) = wallets.split(&second);
    if !second.is_empty() {
        wallet_by_id.renumber(&new_of);
        wallet_by_account.renumber(&new_of);
    }
    for (w, o) in dropped {
        let detail = format!("account {} already has a wallet; the first occurrence wins", w.account_id);
        intake.reject("wallets", o, w.wallet_id.clone(), Reason::DuplicateKey, detail);
    }
    let wallets: Vec<Wallet> = wallets.rows;
    let wallet_of_account =
        |account: &str| wallet_by_account.get(hash_key(account), |w| wallets[w].account_id == account);

    let (subs, sub_by_id) = intake.dedupe("subscriptions", subs, |s| (&s.subscription_id, 0));
    // An account's subscriptions tend to come together: try the last one's wallet first.
    let sub_wallet: Vec<u32> = subs
        .rows
        .par_iter()
        .with_min_len(4096)
        .map_init(LastHit::default, |last, s| {
            last.find(wallets.len(), |w| wallets[w].account_id == s.account_id, || wallet_of_account(&s.account_id))
                .map_or(NO_WALLET, |w| w as u32)
        })
        .collect();
    let sub_ok: Vec<bool> =
        subs.rows.par_iter().zip(&sub_wallet).map(|(s, &w)| !s.is_internal() || w != NO_WALLET).collect();
    for ((s, o), _) in subs.iter().zip(&sub_ok).filter(|(_, ok)| !**ok) {
        let detail = format!("account {} has no wallet", s.account_id);
        intake.reject("subscriptions", o, s.subscription_id.clone(), Reason::UnknownWallet, detail);
    }
    let subs: Vec<Subscription> = subs.rows;
    drop(wallet_by_account);

    let (items, _) = intake.dedupe("subscription_items", items, |i| (&i.subscription_id, i.item_no));
    // A second item for the same POST_RATE service of a subscription is a duplicate.
    let is_post = |it: &Item| {
        service_idx.get(&it.service_id).is_some_and(|&k| services[k].billing_method == BillingMethod::PostRate)
    };
    let (_, second) = IdIndex::build(items.len(), |i| {
        let it = &items.rows[i];
        is_post(it).then(|| (it.subscription_id.as_str(), it.service_id.as_str()))
    });
    let (items, dropped, _) = items.split(&second);
    for (it, o) in dropped {
        let detail =
            format!("subscription {} already has an item for POST_RATE service {}", it.subscription_id, it.service_id);
        intake.reject("subscription_items", o, it.key(), Reason::DuplicateKey, detail);
    }
    // Each item's subscription, service and state, decided in parallel.
    let links: Vec<(Option<u32>, Option<u32>, ItemState)> = items
        .rows
        .par_iter()
        .with_min_len(4096)
        .map_init(LastHit::default, |last, it| {
            let si = sub_lookup(&subs, &sub_by_id, &it.subscription_id, last);
            let sv = service_idx.get(&it.service_id).copied();
            let state = match (si, sv) {
                (None, _) => ItemState::Carried(Reason::UnknownSubscription),
                (Some(s), _) if !sub_ok[s] => ItemState::Carried(Reason::UnknownSubscription),
                (_, None) => ItemState::Carried(Reason::UnknownService),
                (Some(s), Some(v)) => {
                    let w = sub_wallet[s];
                    let mismatch =
                        subs[s].is_internal() && w != NO_WALLET && wallets[w as usize].currency != services[v].currency;
                    if mismatch {
                        ItemState::Carried(Reason::CurrencyMismatch)
                    } else {
                        ItemState::Billable
                    }
                }
            };
            (si.map(|x| x as u32), sv.map(|x| x as u32), state)
        })
        .collect();
    // The rejects (rare) and the POST_RATE items in one pass that reads the items in place;
    // then the links become columns (in parallel), and the items stay where they were parsed
    // into (moving 3M items into a new vector was 0.5 s of one thread at 1M, most of it
    // faulting in the new vector's pages).
    let mut post_items: Vec<(u32, usize)> = Vec::new();
    for (idx, ((it, o), &(si, sv, state))) in items.iter().zip(&links).enumerate() {
        if let ItemState::Carried(reason) = state {
            let detail = match reason {
                Reason::UnknownSubscription => {
                    format!("subscription {} is unknown or rejected", it.subscription_id)
                }
                Reason::UnknownService => {
                    format!("service {} is unknown or rejected", it.service_id)
                }
                _ => {
                    let w = &wallets[sub_wallet[si.unwrap() as usize] as usize];
                    format!(
                        "service {} is in {}, wallet {} in {}",
                        it.service_id,
                        services[sv.unwrap() as usize].currency,
                        w.wallet_id,
                        w.currency
                    )
                }
            };
            intake.reject("subscription_items", o, it.key(), reason, detail);
        }
        if let (Some(s), Some(v)) = (si, sv) {
            if services[v as usize].billing_method == BillingMethod::PostRate
                && matches!(state, ItemState::Billable | ItemState::Carried(Reason::CurrencyMismatch))
            {
                post_items.push((idx as u32, s as usize));
            }
        }
    }
    let item_state: Vec<ItemState> = links.par_iter().map(|l| l.2).collect();
    let item_sub: Vec<u32> = links.par_iter().map(|l| l.0.unwrap_or(NONE)).collect();
    let item_service: Vec<u32> = links.par_iter().map(|l| l.1.unwrap_or(NONE)).collect();
    drop(links);
    let items_out: Vec<Item> = items.rows;
    let (post_item_idx, post_item_at) = group_csr(subs.len(), post_items.iter().copied());
    Ok(State {
        services,
        service_idx,
        wallets,
        wallet_by_id,
        subs,
        sub_ok,
        sub_wallet,
        sub_by_id,
        items: items_out,
        item_state,
        item_sub,
        item_service,
        post_item_idx,
        post_item_at,
    })
}

/// Credits: parsed, deduplicated on `credit_id`, and matched to their wallet
/// (`UNKNOWN_WALLET` otherwise). Returns the credits and their wallet indices.
pub fn validate_credits(intake: &mut Intake, src: Option<&TableSource>, st: &State) -> Result<ValidCredits> {
    let mut credits = Vec::new();
    let mut wallet = Vec::new();
    let Some(src) = src else { return Ok((credits, wallet)) };
    let rows = intake.load(src, CREDITS, parse_credit)?;
    for (c, o) in intake.dedupe("credits", rows, |c| (&c.credit_id, 0)).0.into_pairs() {
        match st.wallet_of(&c.wallet_id) {
            Some(w) => {
                wallet.push(w);
                credits.push(c);
            }
            None => {
                let detail = format!("wallet {} is unknown or rejected", c.wallet_id);
                intake.reject("credits", o, c.credit_id.clone(), Reason::UnknownWallet, detail);
            }
        }
    }
    Ok((credits, wallet))
}

/// Valid credits, and the wallet row of each.
pub type ValidCredits = (Vec<Credit>, Vec<usize>);
/// Valid store events, each with its subscription's row.
pub type ValidEvents = Vec<(Event, usize)>;

/// [`validate_credits`] and [`validate_events`] side by side (each table's files are one or
/// few row groups, and each ends in a sequential dedupe): files and rejects come out
/// numbered and ordered as running the two one after the other would.
pub fn validate_credits_and_events(
    intake: &mut Intake,
    credits: Option<&TableSource>,
    events: &[&TableSource],
    st: &State,
) -> Result<(ValidCredits, ValidEvents)> {
    let (mut c_in, mut e_in) = (intake.fork(), intake.fork());
    let (c, e) = rayon::join(|| validate_credits(&mut c_in, credits, st), || validate_events(&mut e_in, events, st));
    intake.adopt_files(c_in);
    let c = c?;
    intake.adopt_files(e_in);
    Ok((c, e?))
}

/// Store events from `deferred_events` then the new files: parsed, deduplicated on
/// `event_id` across both, and matched to an externally managed subscription of the same
/// source (`UNKNOWN_SUBSCRIPTION`, `SOURCE_MISMATCH` otherwise). Returns each event with its
/// subscription index.
pub fn validate_events(intake: &mut Intake, sources: &[&TableSource], st: &State) -> Result<ValidEvents> {
    let mut rows = Vec::new();
    for src in sources {
        rows.extend(intake.load(src, EVENTS, parse_event)?.into_pairs().map(|(e, o)| (e, o, src.table)));
    }
    let mut events = Vec::with_capacity(rows.len());
    let mut seen = HashSet::default();
    for (e, o, table) in rows {
        if !seen.insert(e.event_id.clone()) {
            let k = e.event_id.clone();
            let detail = format!("duplicate event_id {k}; the first occurrence wins");
            intake.reject(table, o, k, Reason::DuplicateKey, detail);
            continue;
        }
        match st.sub_of(&e.subscription_id).filter(|&s| st.sub_ok[s]) {
            None => {
                let detail = format!("subscription {} is unknown or rejected", e.subscription_id);
                intake.reject(table, o, e.event_id.clone(), Reason::UnknownSubscription, detail);
            }
            Some(s) if st.subs[s].is_internal() || st.subs[s].source != e.source => {
                let detail = format!(
                    "event source {} but subscription {} is {}",
                    e.source, e.subscription_id, st.subs[s].source
                );
                intake.reject(table, o, e.event_id.clone(), Reason::SourceMismatch, detail);
            }
            Some(s) => events.push((e, s)),
        }
    }
    Ok(events)
}

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
    let Some(sv) = st.service_of_recent(u.service_id, recent) else {
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
    if st.item_state[ii] == ItemState::Carried(Reason::CurrencyMismatch) {
        return R(Reason::CurrencyMismatch, format!("item {} is rejected for a currency mismatch", st.items[ii].key()));
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
    Defer(Box<DeferredUsage>),
    Reject(Box<(Reason, Box<str>)>),
}

/// Stream `deferred_usage` then the new usage files: parse and classify every row in
/// parallel, then dedupe (first occurrence in read order wins) and aggregate in order.
/// Memory: the per-item sums, the deferred rows and a 128-bit fingerprint per usage_id.
pub fn ingest_usage(
    intake: &mut Intake,
    sources: &[&TableSource],
    st: &State,
    cutoff: Micros,
    lineage: bool,
) -> Result<UsageIntake> {
    use rayon::prelude::*;
    let mut out = UsageIntake {
        qty: vec![Decimal::ZERO; st.items.len()],
        deferred: Vec::new(),
        rated_rows: 0,
        lineage: lineage.then(Vec::new),
    };
    // The sums are added before a wave's merge, the rest in it: two borrows of `out`.
    let UsageIntake { qty, deferred, rated_rows, lineage } = &mut out;
    // Sized once from the Parquet metadata (no rehash, no transient double table); CSV grows.
    let (expected, _) = crate::read::metadata_rows(sources.iter().flat_map(|s| &s.files))?;
    let mut seen = SeenIds::with_expected(expected);
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
                    RowOutcome::Bad(fail) => intake.reject(table, o, r.key(0), fail.0, fail.1),
                    RowOutcome::Duplicate => {
                        let id = r.key(0);
                        let detail = format!("duplicate usage_id {id}; the first occurrence wins");
                        intake.reject(table, o, id, Reason::DuplicateKey, detail);
                    }
                    RowOutcome::Good { fate, .. } => match fate {
                        Fate::Rate(ii, _) => {
                            *rated_rows += 1;
                            if let Some(l) = lineage {
                                l.push((ii, r.raw(0).into_boxed_str()));
                            }
                        }
                        Fate::Defer(u) => deferred.push(*u),
                        Fate::Reject(fail) => intake.reject(table, o, r.key(0), fail.0, fail.1),
                    },
                }
                Ok(())
            },
        )?;
    }
    out.qty.par_iter_mut().for_each(|q| *q = crate::read::normalized(*q));
    Ok(out)
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
                if let RowOutcome::Good { fate: Fate::Rate(ii, q), .. } = o {
                    if let Some(sum) = (*ii as usize).checked_sub(lo).and_then(|i| part.get_mut(i)) {
                        *sum = add_quantity(*sum, *q);
                    }
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
        return crate::read::normalized(a) + crate::read::normalized(b);
    }
    if a.is_zero() {
        return b;
    }
    a + b
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
}

/// Rows whose buckets are prefetched ahead of their lookup in [`SeenIds::mark_duplicates`]
/// (enough to cover a memory access at this loop's rate).
const PREFETCH_AHEAD: usize = 16;

impl SeenIds {
    fn with_expected(rows: u64) -> SeenIds {
        // Five fingerprints a bucket, at most 7/8 full, and 1 % for the sets' uneven shares.
        let buckets = (rows.saturating_mul(8) / 7).div_ceil(5) * 101 / 100 + 1;
        if buckets < 1 << 12 {
            return SeenIds { shards: vec![FpSet::with_buckets(buckets as usize)] };
        }
        let per = 1u64 << (63 - (buckets / 16).leading_zeros()); // largest power of two <= buckets/16
        let n = buckets.div_ceil(per) as usize;
        let mut shards: Vec<FpSet> = (0..n).map(|_| FpSet::with_buckets(per as usize)).collect();
        // The pages zeroed by the kernel on all threads now, not by the first wave's one
        // (measured at 1M: 0.3 s of one thread zeroing 254 MB while the other waited).
        {
            use rayon::prelude::*;
            shards.par_iter_mut().for_each(FpSet::fault_in);
        }
        SeenIds { shards }
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
        let dups = par_ranges(&mut self.shards, |lo, sets| {
            let count = sets.len();
            let mine = shared.iter().enumerate().flat_map(|(vi, v)| {
                v.iter().enumerate().filter_map(move |(ri, o)| match o {
                    RowOutcome::Good { fp, .. } => {
                        let (k, low) = SeenIds::place(n, fp[0] as u128 | (fp[1] as u128) << 64);
                        let k = k.checked_sub(lo).filter(|&k| k < count)?;
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

    /// Parquet-typed usage rows: the common ones take `usage_fast`, the others the checks,
    /// and each comes out as the checks alone would have it.
    #[test]
    fn usage_rows_parse_alike_on_the_fast_path_and_the_checks() {
        use crate::read::Col;
        use arrow_array::{Decimal128Array, StringArray};
        let ids = StringArray::from(vec![
            Some("u1"),
            None,
            Some(""),
            Some("u4"),
            Some("u5"),
            Some("u6"),
            Some("u7"),
            Some("u8"),
        ]);
        let subs = StringArray::from(vec![Some("s1"); 8]);
        let svcs = StringArray::from(vec![
            Some("svc"),
            Some("svc"),
            Some("svc"),
            Some("svc"),
            Some("svc"),
            Some("svc"),
            Some("svc"),
            None,
        ]);
        let ts = vec![Some(5), Some(5), Some(5), None, Some(5), Some(5), Some(5), Some(5)];
        let q = Decimal128Array::from(vec![Some(1500), Some(1), Some(1), Some(1), Some(-1), None, Some(0), Some(1)])
            .with_precision_and_scale(38, 3)
            .unwrap();
        let b = Batch {
            cols: vec![Col::Str(ids), Col::Str(subs), Col::Str(svcs), Col::Ts(ts), Col::Dec(q, 3)],
            len: 8,
            first_row: 1,
        };
        let parsed: Vec<_> = (0..8)
            .map(|i| match parse_usage(&Row { b: &b, i, specs: USAGE }) {
                Ok(u) => Ok((u.usage_id, u.subscription_id, u.service_id, u.event_time, u.quantity.to_string())),
                Err((reason, detail)) => Err((reason, detail)),
            })
            .collect();
        let miss = |c: &str| Err((Reason::MissingRequired, format!("{c} is missing")));
        assert_eq!(parsed[0], Ok(("u1", "s1", "svc", 5, "1.5".to_string())));
        assert_eq!(parsed[1], miss("usage_id"));
        assert_eq!(parsed[2], miss("usage_id"));
        assert_eq!(parsed[3], miss("event_time"));
        assert_eq!(parsed[4], Err((Reason::InvalidValue, "quantity: -0.001 is negative".to_string())));
        assert_eq!(parsed[5], miss("quantity"));
        assert_eq!(parsed[6], Ok(("u7", "s1", "svc", 5, "0".to_string())));
        assert_eq!(parsed[7], miss("service_id"));
        assert!(usage_fast(&b, 0).is_some() && (1..6).chain([7]).all(|i| usage_fast(&b, i).is_none()));
    }

    /// Usage sums at a Decimal(38,18) column's scale (`fast::usage_quantity`, `add_quantity`)
    /// come out as the sums of the normalized quantities, past 96 bits too.
    #[test]
    fn usage_sums_at_scale_18_equal_the_sums_of_normalized_quantities() {
        use crate::read::{normalized, normalized_from_i128, Col};
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

    /// Parquet-typed item rows, likewise.
    #[test]
    fn item_rows_parse_alike_on_the_fast_path_and_the_checks() {
        use crate::read::Col;
        use arrow_array::{Date32Array, Decimal128Array, Int64Array, StringArray};
        let dec = |v: Vec<Option<i128>>| Decimal128Array::from(v).with_precision_and_scale(38, 2).unwrap();
        let b = Batch {
            cols: vec![
                Col::Str(StringArray::from(vec![Some("s1"); 6])),
                Col::Int(Int64Array::from(vec![Some(1), Some(2), Some(0), None, Some(5), Some(6)])),
                Col::Str(StringArray::from(vec![Some("svc"); 6])),
                Col::Dec(dec(vec![Some(100), None, Some(1), Some(1), Some(1), Some(1)]), 2),
                Col::Dec(dec(vec![None, Some(250), None, None, Some(-1), None]), 2),
                Col::Date(Date32Array::from(vec![
                    Some(20_000),
                    Some(20_000),
                    Some(20_000),
                    Some(20_000),
                    Some(20_000),
                    None,
                ])),
                Col::Date(Date32Array::from(vec![None, Some(20_100), None, None, None, None])),
                Col::Date(Date32Array::from(vec![Some(20_010), None, None, None, None, None])),
            ],
            len: 6,
            first_row: 1,
        };
        let parsed: Vec<_> = (0..6)
            .map(|i| match parse_item(&Row { b: &b, i, specs: ITEMS }) {
                Ok(it) => Ok(format!(
                    "{} {} {} {:?} {:?} {} {:?} {:?}",
                    it.subscription_id,
                    it.item_no,
                    it.service_id,
                    it.quantity.map(|d| d.to_string()),
                    it.custom_price.map(|d| d.to_string()),
                    it.start_date,
                    it.end_date,
                    it.billed_through
                )),
                Err(fail) => Err(fail),
            })
            .collect();
        assert_eq!(parsed[0], Ok("s1 1 svc Some(\"1\") None 2024-10-04 None Some(2024-10-14)".to_string()));
        assert_eq!(parsed[1], Ok("s1 2 svc None Some(\"2.5\") 2024-10-04 Some(2025-01-12) None".to_string()));
        assert_eq!(parsed[2], Err((Reason::InvalidValue, "item_no: 0 is not >= 1".to_string())));
        assert_eq!(parsed[3], Err((Reason::MissingRequired, "item_no is missing".to_string())));
        assert_eq!(parsed[4], Err((Reason::InvalidValue, "custom_price: -0.01 is negative".to_string())));
        assert_eq!(parsed[5], Err((Reason::MissingRequired, "start_date is missing".to_string())));
        assert!((0..2).all(|i| item_fast(&b, i).is_some()) && (2..6).all(|i| item_fast(&b, i).is_none()));
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
    fn duplicates_and_sums_of_a_wave_do_not_depend_on_the_thread_count() {
        // Waves of rows whose ids repeat within and across waves (every id seen before in
        // read order is a duplicate), over many tables and items, on 1, 2 and 3 threads.
        let fp = |id: u64| {
            let f = xxhash_rust::xxh3::xxh3_128(&id.to_le_bytes());
            [f as u64, (f >> 64) as u64]
        };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut seen = SeenIds::with_expected(1_000_000);
                assert!(seen.shards.len() > 1);
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
        let (marks, qty) = run(1);
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
        for t in [2, 3] {
            assert_eq!(run(t), (want.clone(), want_qty.clone()), "{t} threads");
        }
    }

    #[test]
    fn group_csr_keeps_member_order_within_groups() {
        let (idx, at) = group_csr(3, [(10u32, 2usize), (11, 0), (12, 2), (13, 0)].into_iter());
        assert_eq!(at, vec![0, 2, 2, 4]);
        assert_eq!(idx, vec![11, 13, 10, 12]);
    }

    #[test]
    fn last_hit_answers_as_the_lookup_does() {
        let ids = ["a", "b", "c"];
        let lookups = std::cell::Cell::new(0);
        let lookup = |id: &str| {
            lookups.set(lookups.get() + 1);
            ids.iter().position(|&x| x == id)
        };
        let run = |asked: &[&str]| {
            lookups.set(0);
            let mut last = LastHit::default();
            let found: Vec<_> = asked.iter().map(|&id| last.find(ids.len(), |i| ids[i] == id, || lookup(id))).collect();
            assert_eq!(found, asked.iter().map(|&id| ids.iter().position(|&x| x == id)).collect::<Vec<_>>());
            lookups.get()
        };
        // Looked up: the first "a", the three unknown "zz", the first "b", the last "a"; a
        // miss ("zz") keeps the last hit, so the "a" and "b" after it are not looked up, and
        // "c" is the row after "b", which followed "a".
        assert_eq!(run(&["a", "a", "zz", "a", "b", "b", "zz", "zz", "b", "c", "a"]), 6);
        // In table order: "a" and "b" are looked up, then the hits move forward and "c" is
        // the row after "b" (the end of the table is never read past).
        assert_eq!(run(&["a", "a", "b", "b", "c", "c", "zz"]), 3);
        // A jump back ends the moving forward: "c" after "a" is looked up again.
        assert_eq!(run(&["a", "b", "a", "c"]), 4);
    }
}
