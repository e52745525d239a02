//! Run products (SPEC §5): the next state, transactions, lists, estimates, payments and
//! rejects as [`OutTable`]s; the invariant checks; the manifest, stats and summary.

use crate::error::{Error, Result};
use crate::external::ExtOut;
use crate::job::Estimation;
use crate::job::{Layout, OutputFormat};
use crate::model::*;
use crate::rate::{AccountIn, AccountOut, Txn, TxnKind};
use crate::run::RunMeta;
use crate::validate::{Intake, State};
use crate::write::{ColData, OutCol, OutTable, TableWriter};
use chrono::NaiveDate;
use rayon::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The file whose presence makes a directory a published run (SPEC §5, §10.2).
pub const MANIFEST: &str = "run_manifest.json";

/// Per-currency money totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub opening: Decimal,
    pub credits: Decimal,
    /// Per debit kind, in [`TxnKind::DEBITS`] order.
    pub debits: [Decimal; 3],
    pub closing: Decimal,
    pub residual: Decimal,
}

impl Totals {
    pub fn debit_total(&self) -> Decimal {
        self.debits.iter().copied().sum()
    }

    /// The debits of `kind` (one of [`TxnKind::DEBITS`]).
    pub fn debit(&self, kind: TxnKind) -> Decimal {
        TxnKind::DEBITS.iter().position(|k| *k == kind).map_or(Decimal::ZERO, |i| self.debits[i])
    }

    /// The debits per kind, by kind name (the manifest's order).
    pub fn debits_by_name(&self) -> BTreeMap<&'static str, Decimal> {
        TxnKind::DEBITS.iter().zip(self.debits).map(|(k, d)| (k.as_str(), d)).collect()
    }

    /// Add one wallet's figures.
    fn add(&mut self, opening: Decimal, r: &AccountOut) {
        self.opening += opening;
        self.credits += r.credits;
        for (t, d) in self.debits.iter_mut().zip(r.debits) {
            *t += d;
        }
        self.closing += r.closing;
        self.residual += r.residual;
    }
}

#[derive(Clone, Debug, Default)]
pub struct PaymentTotal {
    pub count: u64,
    pub amount: Decimal,
}

/// Run-level figures: what the manifest and the summary report.
#[derive(Default)]
pub struct Products {
    pub totals: BTreeMap<String, Totals>,
    /// source -> currency -> payment_status -> total
    pub payments: BTreeMap<String, BTreeMap<String, BTreeMap<String, PaymentTotal>>>,
    pub rejects_by_reason: BTreeMap<&'static str, u64>,
    pub n_transactions: u64,
    pub n_disconnections: u64,
    pub n_reconnections: u64,
    pub n_estimates: u64,
    pub n_payments: u64,
}

pub struct BuildInput<'a> {
    pub run_id: &'a str,
    pub as_of: NaiveDate,
    pub state: &'a State,
    pub plan: &'a crate::partition::Plan<'a>,
    pub ext: &'a [(usize, ExtOut<'a>)],
    pub deferred_usage: &'a [DeferredUsage],
    pub intake: &'a Intake,
    /// (item index, usage_id) of the rated usage rows, with `--lineage`.
    pub lineage: Option<&'a Vec<(u32, Box<str>)>>,
}

fn s(x: &str) -> Option<&str> {
    Some(x)
}

/// A row of `disconnections` or `reconnections`, compact (40 bytes, not a copy of its
/// strings): the subscription's row in the state, whose ids, account (after transfers) and
/// wallet are looked up when the table is built.
struct ListRow {
    sub: u32,
    reason: &'static str,
    /// The wallet's balance after the run; None for a store-managed subscription.
    balance: Option<Decimal>,
}

/// `rows` as a list table; `account` is each subscription's account after the run.
fn list_table<'a>(
    name: &'static str,
    rows: &[ListRow],
    st: &State,
    account: impl Fn(usize) -> &'a str,
    as_of: NaiveDate,
) -> OutTable {
    let sub = |r: &ListRow| &st.subs[r.sub as usize];
    // A store-managed subscription never touches a wallet: none is named.
    let wallet_id = |r: &ListRow| {
        let w = if sub(r).is_internal() { st.wallet_of_sub(r.sub as usize) } else { None };
        w.map(|w| st.wallets[w].wallet_id.as_str())
    };
    OutTable::new(name)
        .str("subscription_id", false, rows.iter().map(|r| s(&sub(r).subscription_id)))
        .str("account_id", false, rows.iter().map(|r| s(account(r.sub as usize))))
        .str("wallet_id", true, rows.iter().map(wallet_id))
        .str("source", false, rows.iter().map(|r| s(&sub(r).source)))
        .str("reason", false, rows.iter().map(|r| s(r.reason)))
        .dec("balance", true, rows.iter().map(|r| r.balance))
        .date("as_of", false, vec![Some(as_of); rows.len()])
}

/// Check the per-wallet invariants: `opening + credits − debits = closing` and the
/// `balance_after` chain.
fn check_invariants(acct: &AccountIn, out: &AccountOut) -> Result<()> {
    let w = acct.wallet;
    let mut bal = w.balance;
    for t in &out.txns {
        if t.amount <= Decimal::ZERO {
            return Err(Error::Invariant(format!(
                "wallet {}: transaction {} has amount {}",
                w.wallet_id, t.n, t.amount
            )));
        }
        bal = if t.kind == TxnKind::Credit { bal + t.amount } else { bal - t.amount };
        if bal != t.balance_after {
            return Err(Error::Invariant(format!("wallet {}: balance_after chain breaks at {}", w.wallet_id, t.n)));
        }
    }
    let debits: Decimal = out.debits.iter().copied().sum();
    if w.balance + out.credits - debits != out.closing || bal != out.closing {
        return Err(Error::Invariant(format!("wallet {}: opening + credits - debits != closing", w.wallet_id)));
    }
    Ok(())
}

/// Everything the output tables are made of, in output order, borrowing the run's data.
/// Tables are built from it a chunk at a time, so memory stays bounded by the compact
/// per-row vectors here rather than by the text of every output row.
pub struct Assembled<'a> {
    b: BuildInput<'a>,
    status: Vec<Status>,
    /// Per subscription, its entry in `b.ext` (a store-managed one's events applied), or
    /// [`NO_EXT`]: where `expires_at` and `account_id` come from after the run.
    ext_of: Vec<u32>,
    billed: Vec<Option<NaiveDate>>,
    disc: Vec<ListRow>,
    reco: Vec<ListRow>,
    /// With lineage: per item, the (account index, n) of its POST_RATE transaction.
    charged: Option<Vec<Option<(u32, u32)>>>,
    payments: Vec<(&'a Event, &'a str)>,
    deferred_events: Vec<&'a Event>,
    service_order: Vec<u32>,
    sub_order: Vec<u32>,
    item_order: Vec<u32>,
    usage_order: Vec<u32>,
    reject_order: Vec<u32>,
    pub products: Products,
}

/// Item key -> item index, and per item the (account, n) of its POST_RATE transaction.
type LineageIndex<'a> = (rustc_hash::FxHashMap<(&'a str, i64), u32>, Vec<Option<(u32, u32)>>);

/// The rating results folded in chunk by chunk, in account order: the next-state changes
/// of subscriptions and items, the lists and the totals. What is in account order already
/// (the transactions, the wallets' closing balances, the estimates) is not kept: each
/// chunk's rows are written as they are rated ([`RatedWriters`]) and dropped.
pub struct Ledger<'a> {
    status: Vec<Status>,
    billed: Vec<Option<NaiveDate>>,
    disc: Vec<ListRow>,
    reco: Vec<ListRow>,
    totals: BTreeMap<String, Totals>,
    n_tx: u64,
    n_estimates: u64,
    /// With lineage: item key -> item index, and per item its POST_RATE (account, n).
    lineage: Option<LineageIndex<'a>>,
}

impl<'a> Ledger<'a> {
    pub fn new(st: &'a State, lineage: bool) -> Ledger<'a> {
        // Parallel walks: the state's rows are large, and this is the rate phase's first step.
        let (status, billed) = rayon::join(
            || st.subs.par_iter().map(|s| s.status).collect(),
            || st.items.par_iter().map(|i| i.billed_through).collect(),
        );
        Ledger {
            status,
            billed,
            disc: Vec::new(),
            reco: Vec::new(),
            totals: BTreeMap::new(),
            n_tx: 0,
            n_estimates: 0,
            lineage: lineage.then(|| {
                let keys =
                    st.items.iter().enumerate().map(|(i, it)| ((it.subscription_id.as_str(), it.item_no), i as u32));
                (keys.collect(), vec![None; st.items.len()])
            }),
        }
    }

    /// Fold in the results of `accounts`, the accounts at positions `first ..` (checking each
    /// wallet's invariants).
    pub fn absorb(&mut self, accounts: &[AccountIn<'a>], first: usize, rated: Vec<AccountOut<'a>>) -> Result<()> {
        for (k, r) in rated.into_iter().enumerate() {
            let ai = first + k;
            let a = &accounts[k];
            check_invariants(a, &r)?;
            let w = a.wallet;
            self.n_tx += r.txns.len() as u64;
            if !self.totals.contains_key(w.currency.as_str()) {
                self.totals.insert(w.currency.to_string(), Totals::default());
            }
            let Some(t) = self.totals.get_mut(w.currency.as_str()) else { unreachable!("inserted above") };
            t.add(w.balance, &r);
            for (i, st_) in &r.status {
                self.status[*i] = *st_;
            }
            for (i, d) in &r.billed_through {
                self.billed[*i] = Some(*d);
            }
            for (list, entries) in [(&mut self.disc, &r.disconnections), (&mut self.reco, &r.reconnections)] {
                for e in entries {
                    list.push(ListRow {
                        sub: e.sub_idx as u32,
                        reason: e.reason,
                        balance: Some(with_minor_scale(e.balance, w.minor)),
                    });
                }
            }
            self.n_estimates += u64::from(r.estimate.is_some());
            if let Some((keys, charged)) = &mut self.lineage {
                for t in r.txns.iter().filter(|t| t.kind == TxnKind::PostRate) {
                    if let (Some(sid), Some(no)) = (t.subscription_id, t.item_no) {
                        if let Some(&ii) = keys.get(&(sid, no)) {
                            charged[ii as usize] = Some((ai as u32, t.n));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The `wallet_transactions` rows of rated `accounts` (in account order).
fn transactions_table<'a>(
    run_id: &'a str,
    as_of: NaiveDate,
    accounts: &[AccountIn<'a>],
    rated: &[AccountOut<'a>],
) -> OutTable {
    use std::fmt::Write;
    // One task per column, each walking the chunk's transactions in order: a list of them
    // (an iterator of known length, so each column's buffers are sized once; nested
    // per-account iterators reported no length and grew every buffer by doubling).
    let n: usize = rated.iter().map(|r| r.txns.len()).sum();
    let mut list = Vec::with_capacity(n);
    list.extend(rated.iter().zip(accounts).flat_map(|(r, a)| r.txns.iter().map(move |t| (a.wallet, t))));
    let rows = || list.iter().copied();
    let id = || {
        let mut b = arrow_array::builder::StringBuilder::with_capacity(n, n * (run_id.len() + 24));
        let mut num = itoa::Buffer::new();
        for (w, t) in rows() {
            // `{run_id}/{wallet_id}/{n}` pieced into the column's buffer: no String per row,
            // and no format machinery.
            for part in [run_id, "/", &w.wallet_id, "/", num.format(t.n)] {
                b.write_str(part).expect("writing to memory");
            }
            b.append_value("");
        }
        OutCol { name: "transaction_id", nullable: false, data: ColData::Str(b.finish()) }
    };
    let minor = |d: Decimal, w: &Wallet| Some(with_minor_scale(d, w.minor));
    OutTable::par_columns(
        "wallet_transactions",
        &[
            &id,
            &|| OutCol::str("run_id", false, rows().map(|_| s(run_id))),
            &|| OutCol::date("as_of", false, rows().map(|_| Some(as_of))),
            &|| OutCol::str("wallet_id", false, rows().map(|(w, _)| s(&w.wallet_id))),
            &|| OutCol::str("account_id", false, rows().map(|(w, _)| s(&w.account_id))),
            &|| OutCol::str("subscription_id", true, rows().map(|(_, t)| t.subscription_id)),
            &|| OutCol::int("item_no", true, rows().map(|(_, t)| t.item_no)),
            &|| OutCol::str("service_id", true, rows().map(|(_, t)| t.service_id)),
            &|| OutCol::str("kind", false, rows().map(|(_, t)| s(t.kind.as_str()))),
            &|| OutCol::str("transaction_type", false, rows().map(|(_, t)| s(t.transaction_type))),
            &|| {
                let dir = |t: &Txn| if t.kind == TxnKind::Credit { "CREDIT" } else { "DEBIT" };
                OutCol::str("direction", false, rows().map(|(_, t)| s(dir(t))))
            },
            &|| OutCol::dec("amount", false, rows().map(|(w, t)| minor(t.amount, w))),
            &|| OutCol::str("currency", false, rows().map(|(w, _)| s(&w.currency))),
            &|| OutCol::dec("quantity", true, rows().map(|(_, t)| t.quantity)),
            &|| OutCol::dec("unit_price", true, rows().map(|(_, t)| t.unit_price)),
            &|| OutCol::date("period_start", true, rows().map(|(_, t)| t.period.map(|p| p.0))),
            &|| OutCol::date("period_end", true, rows().map(|(_, t)| t.period.map(|p| p.1))),
            &|| OutCol::dec("balance_after", false, rows().map(|(w, t)| minor(t.balance_after, w))),
        ],
    )
}

/// The next-state `wallets` rows of rated `accounts`: their closing balances.
fn wallets_table(accounts: &[AccountIn], rated: &[AccountOut]) -> OutTable {
    let w = || accounts.iter().map(|a| a.wallet);
    OutTable::new("wallets")
        .str("wallet_id", false, w().map(|w| s(&w.wallet_id)))
        .str("account_id", false, w().map(|w| s(&w.account_id)))
        .str("currency", false, w().map(|w| s(&w.currency)))
        .dec("balance", false, w().zip(rated).map(|(w, r)| Some(with_minor_scale(r.closing, w.minor))))
        .ts("updated_at", true, w().map(|w| w.updated_at))
}

/// The `wallet_estimates` rows of rated `accounts` (those with an estimate).
fn estimates_table(accounts: &[AccountIn], rated: &[AccountOut]) -> OutTable {
    let est: Vec<(&Wallet, &crate::rate::Estimate)> =
        accounts.iter().zip(rated).filter_map(|(a, r)| Some((a.wallet, r.estimate.as_ref()?))).collect();
    OutTable::new("wallet_estimates")
        .str("wallet_id", false, est.iter().map(|(w, _)| s(&w.wallet_id)))
        .str("account_id", false, est.iter().map(|(w, _)| s(&w.account_id)))
        .dec("balance", false, est.iter().map(|(w, e)| Some(with_minor_scale(e.balance, w.minor))))
        .dec("daily_consumption", false, est.iter().map(|(_, e)| Some(e.daily)))
        .int("days_remaining", true, est.iter().map(|(_, e)| e.days_remaining))
        .date("depletion_date", true, est.iter().map(|(_, e)| e.depletion_date))
        .str("class", false, est.iter().map(|(_, e)| s(e.class)))
}

/// The tables whose rows come in account order (wallet_id order: `wallets`,
/// `wallet_transactions`, `wallet_estimates`), written a rated chunk at a time while the
/// next chunk is rated: none of them is held for the whole run.
pub struct RatedWriters<'p> {
    run_id: &'p str,
    as_of: NaiveDate,
    wallets: ChunkedWriter<'p>,
    transactions: ChunkedWriter<'p>,
    estimates: ChunkedWriter<'p>,
}

/// The files of [`RatedWriters`]' tables.
pub struct RatedFiles {
    pub wallets: Vec<OutFile>,
    pub transactions: Vec<OutFile>,
    pub estimates: Vec<OutFile>,
}

impl<'p> RatedWriters<'p> {
    pub fn create(d: Dest<'p>, run_id: &'p str, as_of: NaiveDate) -> Result<RatedWriters<'p>> {
        Ok(RatedWriters {
            run_id,
            as_of,
            wallets: ChunkedWriter::create(d, &wallets_table(&[], &[]))?,
            transactions: ChunkedWriter::create(d, &transactions_table(run_id, as_of, &[], &[]))?,
            estimates: ChunkedWriter::create(d, &estimates_table(&[], &[]))?,
        })
    }

    /// The rows of a rated chunk, built (column-parallel for the transactions) but not yet
    /// written: built before the ledger takes the results, written beside it.
    pub fn build(&self, accounts: &[AccountIn<'p>], rated: &[AccountOut<'p>]) -> [OutTable; 3] {
        let (run_id, as_of) = (self.run_id, self.as_of);
        let ((w, t), e) = rayon::join(
            || rayon::join(|| wallets_table(accounts, rated), || transactions_table(run_id, as_of, accounts, rated)),
            || estimates_table(accounts, rated),
        );
        [w, t, e]
    }

    pub fn append(&mut self, [w, t, e]: &[OutTable; 3]) -> Result<()> {
        self.wallets.append(w)?;
        self.transactions.append(t)?;
        self.estimates.append(e)
    }

    pub fn finish(self) -> Result<RatedFiles> {
        Ok(RatedFiles {
            wallets: self.wallets.finish()?,
            transactions: self.transactions.finish()?,
            estimates: self.estimates.finish()?,
        })
    }
}

/// Row numbers of `v` in `key` order (keys are unique: any sort gives the same order).
/// See [`crate::partition::sort_order`]: no sort at all for a table already in order, a
/// merge sort through the long sorted stretches of a nearly sorted one.
fn sorted_by<T: Sync>(v: &[T], key: impl Fn(&T) -> &[u8] + Sync) -> Vec<u32> {
    let mut o: Vec<u32> = (0..v.len() as u32).collect();
    crate::partition::sort_order(&mut o, |a, b| key(&v[a as usize]).cmp(key(&v[b as usize])));
    o
}

/// Apply the rating results, check the invariants and compute the totals.
pub fn assemble<'a>(b: BuildInput<'a>, ledger: Ledger<'a>) -> Result<Assembled<'a>> {
    let st = b.state;
    let Ledger { mut status, billed, mut disc, mut reco, totals, n_tx, n_estimates, lineage, .. } = ledger;
    // The store-managed subscriptions' changes are looked up where they are (a copy of
    // every subscription's expiry and account, 32 bytes each, was fresh pages to zero).
    let mut ext_of = vec![NO_EXT; st.subs.len()];
    let mut p = Products { totals, ..Products::default() };
    let mut payments = Vec::new();
    let mut deferred_events: Vec<&Event> = Vec::new();
    for (k, (i, o)) in b.ext.iter().enumerate() {
        status[*i] = o.status;
        ext_of[*i] = k as u32;
        if let Some((is_reco, reason)) = o.change {
            let row = ListRow { sub: *i as u32, reason, balance: None };
            if is_reco {
                reco.push(row)
            } else {
                disc.push(row)
            }
        }
        for &(e, acc) in &o.payments {
            payments.push((e, acc));
            let t = p
                .payments
                .entry(e.source.to_string())
                .or_default()
                .entry(e.currency.as_deref().unwrap_or_default().to_string())
                .or_default()
                .entry(e.payment_status.as_deref().unwrap_or_default().to_string())
                .or_default();
            t.count += 1;
            t.amount += e.amount.unwrap_or_default();
        }
        deferred_events.extend(o.deferred.iter().copied());
    }
    for r in &b.intake.rejects {
        *p.rejects_by_reason.entry(r.reason.as_str()).or_default() += 1;
    }

    // Per-currency conservation.
    for (cur, t) in &p.totals {
        if t.opening + t.credits - t.debit_total() != t.closing {
            return Err(Error::Invariant(format!("{cur}: opening + credits - debits != closing")));
        }
    }
    p.n_transactions = n_tx;
    p.n_disconnections = disc.len() as u64;
    p.n_reconnections = reco.len() as u64;
    p.n_estimates = n_estimates;
    p.n_payments = payments.len() as u64;

    // The output orders, sorted side by side: a parallel sort's first partition runs on one
    // thread, and one sort after another left the other thread idle at every start.
    // (Keys are unique in each, so every sort gives one order. The state's tables come
    // nearly sorted, a previous run's wholly: merge sorts for them, which take sorted
    // stretches in linear time; a generated 1M state's items, 202 rows out of place in
    // 2.95M, cost the quicksort 0.1 s of partitioning.)
    let rj = &b.intake.rejects;
    let items_sorted = || {
        let mut o: Vec<u32> = (0..st.items.len() as u32).collect();
        crate::partition::sort_order(&mut o, |a, b| {
            let (x, y) = (&st.items[a as usize], &st.items[b as usize]);
            (x.subscription_id.as_bytes(), x.item_no).cmp(&(y.subscription_id.as_bytes(), y.item_no))
        });
        o
    };
    let rejects_sorted = || {
        let mut o: Vec<u32> = (0..rj.len() as u32).collect();
        o.par_sort_unstable_by_key(|&i| (rj[i as usize].file_ord, rj[i as usize].row));
        o
    };
    // The lists follow the subscriptions' order: each row's key is its subscription's rank
    // in it (a subscription is on a list at most once), an integer sort instead of id
    // comparisons through the state (a cache miss each; on one thread, it left the other
    // idle at 1M and more so at 10M).
    let subs_and_lists = || {
        let sub_order = sorted_by(&st.subs, |x| x.subscription_id.as_bytes());
        let mut rank = vec![0u32; sub_order.len()];
        for (k, &si) in sub_order.iter().enumerate() {
            rank[si as usize] = k as u32;
        }
        let by_rank = |list: &mut Vec<ListRow>| list.par_sort_unstable_by_key(|r| rank[r.sub as usize]);
        rayon::join(|| by_rank(&mut disc), || by_rank(&mut reco));
        sub_order
    };
    let events_sorted = || deferred_events.sort_by(|a, b| a.event_id.as_bytes().cmp(b.event_id.as_bytes()));
    let ((item_order, sub_order), ((usage_order, reject_order), ())) = rayon::join(
        || rayon::join(items_sorted, subs_and_lists),
        || {
            rayon::join(
                || rayon::join(|| sorted_by(b.deferred_usage, |x| x.usage_id.as_bytes()), rejects_sorted),
                events_sorted,
            )
        },
    );
    Ok(Assembled {
        service_order: sorted_by(&st.services, |x| x.service_id.as_bytes()),
        sub_order,
        usage_order,
        item_order,
        reject_order,
        b,
        status,
        ext_of,
        billed,
        disc,
        reco,
        charged: lineage.map(|l| l.1),
        payments,
        deferred_events,
        products: p,
    })
}

/// Rows per written chunk.
const CHUNK: usize = 100_000;

/// Rows per part file of a Hive-partitioned table: four full row groups (~4.2M rows).
const PART_ROWS: usize = 4 * crate::write::ROW_GROUP_ROWS;

/// Where and how a run's tables are written.
#[derive(Clone, Copy)]
pub struct Dest<'p> {
    pub dir: &'p Path,
    pub progress: &'p dyn crate::progress::Progress,
    pub format: OutputFormat,
    pub layout: Layout,
    pub as_of: NaiveDate,
    /// Where finished files go to be fsynced (the publish waits for it).
    pub syncer: &'p crate::write::Syncer,
}

impl Dest<'_> {
    /// The file of `table` (part `part` in the Hive layout), relative to the run directory.
    fn file(&self, table: &str, part: usize) -> String {
        let ext = self.format.ext();
        match self.layout {
            Layout::Flat => format!("{table}.{ext}"),
            Layout::Hive => format!("{table}/as_of={}/part-{part:05}.{ext}", self.as_of),
        }
    }
}

/// One output table being written chunk by chunk. Flat: one file. Hive: part files of about
/// [`PART_ROWS`] rows (at least one, so an empty table still has its schema on disk).
pub struct ChunkedWriter<'p> {
    d: Dest<'p>,
    name: &'static str,
    schema: arrow_schema::Schema,
    current: Option<(String, TableWriter, usize)>,
    files: Vec<OutFile>,
}

/// One output file written: its name in the run directory, rows and SHA-256 (hex).
#[derive(Debug, Clone)]
pub struct OutFile {
    pub name: String,
    pub rows: usize,
    pub sha256: String,
}

impl<'p> ChunkedWriter<'p> {
    /// Start table `like.name` with the columns of `like` (any chunk of it; no rows are
    /// written).
    pub fn create(d: Dest<'p>, like: &OutTable) -> Result<ChunkedWriter<'p>> {
        let mut w = ChunkedWriter { d, name: like.name, schema: like.schema(), current: None, files: Vec::new() };
        w.open()?;
        Ok(w)
    }

    fn open(&mut self) -> Result<()> {
        let fname = self.d.file(self.name, self.files.len());
        let path = self.d.dir.join(&fname);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        self.current = Some((fname, TableWriter::create_for_run(&path, &self.schema, self.d.format)?, 0));
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((name, w, rows)) = self.current.take() {
            let sha256 = w.finish_with(self.d.syncer)?;
            self.files.push(OutFile { name, rows, sha256 });
        }
        Ok(())
    }

    /// Append a chunk of rows. In the Hive layout a new part starts once the current one
    /// holds [`PART_ROWS`] rows (so a part ends on a chunk boundary, a little over the limit).
    pub fn append(&mut self, t: &OutTable) -> Result<()> {
        let full = self.d.layout == Layout::Hive && self.current.as_ref().is_some_and(|c| c.2 >= PART_ROWS);
        if full {
            self.close()?;
            self.open()?;
        }
        let (_, w, rows) = self.current.as_mut().expect("a part is open");
        w.append(t)?;
        *rows += t.rows();
        self.d.progress.advance(t.rows() as u64);
        Ok(())
    }

    /// Finish the table: every file written, in order.
    pub fn finish(mut self) -> Result<Vec<OutFile>> {
        self.close()?;
        Ok(self.files)
    }
}

/// One output table to write: `n` rows, built [`CHUNK`] rows at a time by `build`.
struct Chunked<'j> {
    n: usize,
    build: Box<dyn Fn(std::ops::Range<usize>) -> OutTable + Sync + 'j>,
}

impl<'j> Chunked<'j> {
    fn new(n: usize, build: impl Fn(std::ops::Range<usize>) -> OutTable + Sync + 'j) -> Self {
        Chunked { n, build: Box::new(build) }
    }
}

/// Write `tables` one after another, [`CHUNK`] rows at a time, through one pipeline: each
/// chunk is built while the one before it is encoded (both column-parallel), across tables
/// too, so a table's first chunk is built while the table before it encodes its last chunk
/// and writes its last row group and footer. One chunk more in flight. Returns each table's
/// files, in order (an empty table is written as one chunk of no rows: its schema).
fn write_all(d: Dest, tables: &[Chunked]) -> Result<Vec<Vec<OutFile>>> {
    let chunks = tables
        .iter()
        .enumerate()
        .flat_map(|(t, c)| (0..c.n.div_ceil(CHUNK).max(1)).map(move |k| (t, k * CHUNK..((k + 1) * CHUNK).min(c.n))));
    let mut files = Vec::with_capacity(tables.len());
    let mut open: Option<ChunkedWriter> = None;
    pipelined(
        chunks,
        |(t, r)| Ok((r.end == tables[t].n, (tables[t].build)(r))),
        |(last, chunk)| {
            if open.is_none() {
                open = Some(ChunkedWriter::create(d, &chunk)?);
            }
            let w = open.as_mut().expect("opened above");
            if chunk.rows() > 0 {
                w.append(&chunk)?;
            }
            if last {
                files.push(open.take().expect("opened above").finish()?);
            }
            Ok(())
        },
    )?;
    Ok(files)
}

/// Produce an item per key and consume the items in key order, each consumed while the
/// next is produced (`rayon::join`, both on the pool): a chunk is built or rated while the
/// one before it is encoded. At most two items are alive at once.
pub(crate) fn pipelined<K: Send, T: Send>(
    keys: impl IntoIterator<Item = K>,
    produce: impl Fn(K) -> Result<T> + Sync,
    mut consume: impl FnMut(T) -> Result<()> + Send,
) -> Result<()> {
    let mut pending: Option<T> = None;
    for k in keys {
        let prev = pending.take();
        let (next, consumed) = rayon::join(|| produce(k), || prev.map_or(Ok(()), &mut consume));
        consumed?;
        pending = Some(next?);
    }
    pending.map_or(Ok(()), consume)
}

/// [`Assembled::ext_of`] of a subscription with no store events applied.
const NO_EXT: u32 = u32::MAX;

impl<'a> Assembled<'a> {
    /// Subscription `i`'s account after the run (a transfer moves a store-managed one).
    fn account(&self, i: usize) -> &'a str {
        match self.ext_of[i] {
            NO_EXT => self.b.state.subs[i].account_id.as_str(),
            k => self.b.ext[k as usize].1.account_id,
        }
    }

    /// Subscription `i`'s `expires_at` after the run.
    fn expires(&self, i: usize) -> Option<Micros> {
        match self.ext_of[i] {
            NO_EXT => self.b.state.subs[i].expires_at,
            k => self.b.ext[k as usize].1.expires_at,
        }
    }

    /// Write every published table but those written while rating (their files given in
    /// `rated`); returns all the files in a fixed order.
    pub fn write_tables(&self, d: Dest, lineage: bool, rated: RatedFiles) -> Result<Vec<OutFile>> {
        let st = self.b.state;
        let as_of = self.b.as_of;
        let mut tables: Vec<Chunked> = Vec::new();

        tables.push(Chunked::new(self.service_order.len(), move |r| {
            let sv: Vec<&Service> = self.service_order[r].iter().map(|&i| &st.services[i as usize]).collect();
            OutTable::new("services")
                .str("service_id", false, sv.iter().map(|x| s(&x.service_id)))
                .str("billing_method", false, sv.iter().map(|x| s(x.billing_method.as_str())))
                .dec("price", false, sv.iter().map(|x| Some(x.price)))
                .str("currency", false, sv.iter().map(|x| s(&x.currency)))
                .str("rate_period", true, sv.iter().map(|x| x.rate_period.as_ref().map(|p| p.text.as_str())))
                .str("advance_period", true, sv.iter().map(|x| x.advance_period.as_ref().map(|p| p.text.as_str())))
                .dec("unit_size", true, sv.iter().map(|x| x.unit_size))
        }));

        tables.push(Chunked::new(self.sub_order.len(), move |r| {
            let idx = || self.sub_order[r.clone()].iter().map(|&i| i as usize);
            OutTable::par_columns(
                "subscriptions",
                &[
                    &|| OutCol::str("subscription_id", false, idx().map(|i| s(&st.subs[i].subscription_id))),
                    &|| OutCol::str("account_id", false, idx().map(|i| s(self.account(i)))),
                    &|| OutCol::str("source", false, idx().map(|i| s(&st.subs[i].source))),
                    &|| OutCol::str("status", false, idx().map(|i| s(self.status[i].as_str()))),
                    &|| OutCol::ts("expires_at", true, idx().map(|i| self.expires(i))),
                ],
            )
        }));

        tables.push(Chunked::new(self.item_order.len(), move |r| {
            let idx = &self.item_order[r];
            let it = |i: u32| &st.items[i as usize];
            OutTable::par_columns(
                "subscription_items",
                &[
                    &|| OutCol::str("subscription_id", false, idx.iter().map(|&i| s(&it(i).subscription_id))),
                    &|| OutCol::int("item_no", false, idx.iter().map(|&i| Some(it(i).item_no))),
                    &|| OutCol::str("service_id", false, idx.iter().map(|&i| s(&it(i).service_id))),
                    &|| OutCol::dec("quantity", true, idx.iter().map(|&i| it(i).quantity)),
                    &|| OutCol::dec("custom_price", true, idx.iter().map(|&i| it(i).custom_price)),
                    &|| OutCol::date("start_date", false, idx.iter().map(|&i| Some(it(i).start_date))),
                    &|| OutCol::date("end_date", true, idx.iter().map(|&i| it(i).end_date)),
                    &|| OutCol::date("billed_through", true, idx.iter().map(|&i| self.billed[i as usize])),
                ],
            )
        }));

        tables.push(Chunked::new(self.usage_order.len(), move |r| {
            let du: Vec<&DeferredUsage> =
                self.usage_order[r].iter().map(|&i| &self.b.deferred_usage[i as usize]).collect();
            let item = |u: &DeferredUsage| &st.items[u.item as usize];
            let service_id = |u: &DeferredUsage| match st.item_service(u.item as usize) {
                Some(sv) => &st.services[sv].service_id,
                None => &item(u).service_id,
            };
            OutTable::par_columns(
                "deferred_usage",
                &[
                    &|| OutCol::str("usage_id", false, du.iter().map(|u| s(&u.usage_id))),
                    &|| OutCol::str("subscription_id", false, du.iter().map(|u| s(&item(u).subscription_id))),
                    // From the services (a handful, in cache), not the items (a miss per row).
                    &|| OutCol::str("service_id", false, du.iter().map(|u| s(service_id(u)))),
                    &|| OutCol::ts("event_time", false, du.iter().map(|u| Some(u.event_time))),
                    &|| OutCol::dec("quantity", false, du.iter().map(|u| Some(u.quantity))),
                ],
            )
        }));

        tables.push(Chunked::new(self.deferred_events.len(), move |r| {
            events_table("deferred_events", &self.deferred_events[r])
        }));

        let st = self.b.state;
        tables.push(Chunked::new(self.disc.len(), move |r| {
            list_table("disconnections", &self.disc[r], st, |i| self.account(i), as_of)
        }));
        tables.push(Chunked::new(self.reco.len(), move |r| {
            list_table("reconnections", &self.reco[r], st, |i| self.account(i), as_of)
        }));

        tables.push(Chunked::new(self.payments.len(), move |r| {
            let mut pay = PayCols::default();
            for &(e, acc) in &self.payments[r] {
                pay.push(e, acc, as_of);
            }
            pay.finish()
        }));

        tables.push(self.rejects());
        if lineage {
            tables.push(self.lineage());
        }
        // One table at a time, each encoded column-parallel: tables written side by side
        // would each hold a row group in flight, and a thread waiting on its columns would
        // start yet another table (measured: 1M peak up to 1.59 GiB that way).
        let mut per_table = write_all(d, &tables)?;
        // In SPEC §5's order (* written while rating): services, wallets*, subscriptions,
        // subscription_items, deferred_usage, deferred_events, wallet_transactions*,
        // disconnections, reconnections, wallet_estimates*, external_payments, rejects
        // (then usage_lineage).
        per_table.insert(1, rated.wallets);
        per_table.insert(6, rated.transactions);
        per_table.insert(9, rated.estimates);
        Ok(per_table.into_iter().flatten().collect())
    }

    /// `usage_lineage`: every usage row rated in this run (new and previously deferred) with
    /// the POST_RATE transaction that charged it, sorted by usage_id. A row whose item's
    /// charge came to no transaction (zero quantity or an amount that rounds to zero) has a
    /// null transaction_id.
    fn lineage(&self) -> Chunked<'_> {
        let st = self.b.state;
        let rows: &[_] = self.b.lineage.map_or(&[], |v| v);
        // Per item: (account index, transaction n) of its POST_RATE line (from the ledger).
        let charged: &[_] = self.charged.as_deref().unwrap_or(&[]);
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_unstable_by(|&a, &b| rows[a].1.as_bytes().cmp(rows[b].1.as_bytes()));
        let (run_id, as_of) = (self.b.run_id, self.b.as_of);
        Chunked::new(order.len(), move |r| {
            let sel: Vec<(&str, &Item, u32)> =
                order[r].iter().map(|&k| (&*rows[k].1, &st.items[rows[k].0 as usize], rows[k].0)).collect();
            let tx = |ii: u32| -> Option<String> {
                let (ai, n) = charged.get(ii as usize).copied().flatten()?;
                Some(format!("{run_id}/{}/{n}", self.b.plan.wallet(ai as usize).wallet_id))
            };
            OutTable::new("usage_lineage")
                .str("usage_id", false, sel.iter().map(|x| s(x.0)))
                .str("subscription_id", false, sel.iter().map(|x| s(&x.1.subscription_id)))
                .int("item_no", false, sel.iter().map(|x| Some(x.1.item_no)))
                .str("service_id", false, sel.iter().map(|x| s(&x.1.service_id)))
                .str("transaction_id", true, sel.iter().map(|x| tx(x.2)))
                .str("run_id", false, sel.iter().map(|_| s(run_id)))
                .date("as_of", false, vec![Some(as_of); sel.len()])
        })
    }

    /// Write the `rejects` table alone (a run stopped by the reject gate).
    pub fn write_rejects(&self, d: Dest) -> Result<Vec<OutFile>> {
        Ok(write_all(d, &[self.rejects()])?.concat())
    }

    fn rejects(&self) -> Chunked<'_> {
        let rj = &self.b.intake.rejects;
        Chunked::new(self.reject_order.len(), move |r| {
            let v: Vec<&crate::validate::Reject> = self.reject_order[r].iter().map(|&i| &rj[i as usize]).collect();
            OutTable::par_columns(
                "rejects",
                &[
                    &|| OutCol::str("table", false, v.iter().map(|r| s(r.table))),
                    &|| OutCol::int("row", false, v.iter().map(|r| Some(r.row as i64))),
                    &|| OutCol::str("file", false, v.iter().map(|r| s(self.b.intake.file_of(r)))),
                    &|| OutCol::str("key", false, v.iter().map(|r| s(&r.key))),
                    &|| OutCol::str("reason", false, v.iter().map(|r| s(r.reason.as_str()))),
                    &|| OutCol::str("detail", false, v.iter().map(|r| s(&r.detail))),
                ],
            )
        })
    }
}

fn events_table(name: &'static str, ev: &[&Event]) -> OutTable {
    OutTable::new(name)
        .str("event_id", false, ev.iter().map(|e| s(&e.event_id)))
        .str("subscription_id", false, ev.iter().map(|e| s(&e.subscription_id)))
        .str("source", false, ev.iter().map(|e| s(&e.source)))
        .str("event_type", false, ev.iter().map(|e| s(e.event_type.as_str())))
        .ts("event_time", false, ev.iter().map(|e| Some(e.event_time)))
        .ts("expires_at", true, ev.iter().map(|e| e.expires_at))
        .str("to_account_id", true, ev.iter().map(|e| e.to_account_id.clone()))
        .dec("amount", true, ev.iter().map(|e| e.amount))
        .str("currency", true, ev.iter().map(|e| e.currency.clone()))
        .str("payment_status", true, ev.iter().map(|e| e.payment_status.clone()))
}

#[derive(Default)]
struct PayCols<'a> {
    event_id: Vec<Option<&'a str>>,
    subscription_id: Vec<Option<&'a str>>,
    account_id: Vec<Option<&'a str>>,
    source: Vec<Option<&'a str>>,
    event_type: Vec<Option<&'a str>>,
    event_time: Vec<Option<Micros>>,
    amount: Vec<Option<Decimal>>,
    currency: Vec<Option<&'a str>>,
    payment_status: Vec<Option<&'a str>>,
    as_of: Vec<Option<NaiveDate>>,
}

impl<'a> PayCols<'a> {
    fn push(&mut self, e: &'a Event, account: &'a str, as_of: NaiveDate) {
        self.event_id.push(s(&e.event_id));
        self.subscription_id.push(s(&e.subscription_id));
        self.account_id.push(s(account));
        self.source.push(s(&e.source));
        self.event_type.push(s(e.event_type.as_str()));
        self.event_time.push(Some(e.event_time));
        self.amount.push(e.amount);
        self.currency.push(e.currency.as_deref());
        self.payment_status.push(e.payment_status.as_deref());
        self.as_of.push(Some(as_of));
    }
    fn finish(self) -> OutTable {
        OutTable::new("external_payments")
            .str("event_id", false, self.event_id)
            .str("subscription_id", false, self.subscription_id)
            .str("account_id", false, self.account_id)
            .str("source", false, self.source)
            .str("event_type", false, self.event_type)
            .ts("event_time", false, self.event_time)
            .dec("amount", true, self.amount)
            .str("currency", true, self.currency)
            .str("payment_status", true, self.payment_status)
            .date("as_of", false, self.as_of)
    }
}

fn dec(d: Decimal) -> Value {
    Value::String(d.to_string())
}

/// The residual is an exact sum of non-terminating fractions: shown to 12 decimals.
fn residual_text(d: Decimal) -> Value {
    Value::String(Rounding::HalfEven.round(d, 12).normalize().to_string())
}

pub fn totals_json(totals: &BTreeMap<String, Totals>) -> Value {
    let mut m = Map::new();
    for (cur, t) in totals {
        let minor = minor_units(cur).unwrap_or(0);
        let mut debits = Map::new();
        for (k, v) in &t.debits_by_name() {
            debits.insert(k.to_string(), dec(with_minor_scale(*v, minor)));
        }
        debits.insert("total".into(), dec(with_minor_scale(t.debit_total(), minor)));
        m.insert(
            cur.clone(),
            json!({
                "opening": dec(with_minor_scale(t.opening, minor)),
                "credits": dec(with_minor_scale(t.credits, minor)),
                "debits": Value::Object(debits),
                "closing": dec(with_minor_scale(t.closing, minor)),
                "rounding_residual": residual_text(t.residual),
            }),
        );
    }
    Value::Object(m)
}

/// `run_manifest.json` into `dir`, once the run's tables (`files`, hashed as they were
/// written) are: deterministic (no clock, host or thread count). The inputs' checksums come
/// from `inputs` (taken meanwhile off the pool), one per input file, in the intake's order.
pub fn write_manifest(
    c: &RunMeta,
    p: &Products,
    dir: &Path,
    files: &[OutFile],
    inputs: crate::checksum::InputHashes,
) -> Result<()> {
    let input_sha256 = inputs.wait()?;
    let inputs: Vec<Value> = c
        .intake
        .files
        .iter()
        .zip(&input_sha256)
        .map(|(f, sha)| json!({"table": f.table, "file": f.name, "rows": f.rows, "sha256": sha}))
        .collect();
    let outputs: Vec<Value> = files
        .iter()
        .map(|f| {
            json!({
                "table": f.name.split(['/', '.']).next().unwrap_or_default(),
                "file": f.name,
                "rows": f.rows,
                "sha256": f.sha256,
            })
        })
        .collect();
    let mut payments = Map::new();
    for (src, by_cur) in &p.payments {
        let mut cm = Map::new();
        for (cur, by_status) in by_cur {
            let mut sm = Map::new();
            for (status, t) in by_status {
                sm.insert(status.clone(), json!({"count": t.count, "amount": dec(t.amount)}));
            }
            cm.insert(cur.clone(), Value::Object(sm));
        }
        payments.insert(src.clone(), Value::Object(cm));
    }
    let j = &c.job;
    let manifest = json!({
        "run_id": c.run_id,
        "job": {
            "name": j.name,
            "recurrence": j.recurrence_text,
            "debit_transaction_type": j.debit_transaction_type,
            "rounding": match j.rounding { Rounding::HalfUp => "half_up", Rounding::HalfEven => "half_even" },
            "output_format": j.output_format.ext(),
            "max_reject_ratio": j.max_reject_ratio,
            "steps": {
                "start_service": j.steps.start_service,
                "reconnection_threshold": dec(j.steps.reconnection_threshold),
                "stop_service": j.steps.stop_service,
                "disconnection_threshold": dec(j.steps.disconnection_threshold),
                "wallet_estimation": match j.steps.wallet_estimation { Estimation::Off => "off", Estimation::Changed => "changed", Estimation::All => "all" },
                "low_balance_days": j.steps.low_balance_days,
            }
        },
        "as_of": c.as_of.to_string(),
        "cutoff": format_ts(midnight(c.as_of)),
        "inputs": inputs,
        "outputs": outputs,
        "totals": totals_json(&p.totals),
        "external_payments": Value::Object(payments),
        "counts": {
            "input_rows": c.intake.rows_read,
            "transactions": p.n_transactions,
            "disconnections": p.n_disconnections,
            "reconnections": p.n_reconnections,
            "rejects": p.rejects_by_reason,
            "rejected_rows": c.intake.rejects.len(),
        }
    });
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))? + "\n";
    crate::write::write_durable(&dir.join(MANIFEST), text.as_bytes())
        .map_err(|e| Error::io("writing run_manifest.json", e))
}

/// `run_stats.json`: the one output allowed to differ between identical runs.
pub fn write_stats(c: &RunMeta, dir: &Path, timings: &[(&'static str, f64, f64)]) -> Result<()> {
    let total = timings.iter().find(|t| t.0 == "total").map_or(0.0, |t| t.1);
    let rows = c.intake.rows_read;
    let stats = json!({
        "run_id": c.run_id,
        "threads": c.threads,
        "host": std::env::var("HOSTNAME").ok().or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_string())),
        "phase_seconds": timings.iter().map(|(k, v, _)| (k.to_string(), json!(v))).collect::<Map<_, _>>(),
        "phase_cpu_seconds": timings.iter().map(|(k, _, c)| (k.to_string(), json!((c * 100.0).round() / 100.0))).collect::<Map<_, _>>(),
        "input_rows": rows,
        "rows_per_second": if total > 0.0 { rows as f64 / total } else { 0.0 },
        "peak_rss_bytes": peak_rss_bytes(),
    });
    let text = serde_json::to_string_pretty(&stats).map_err(|e| Error::Internal(e.to_string()))? + "\n";
    crate::write::write_durable(&dir.join("run_stats.json"), text.as_bytes())
        .map_err(|e| Error::io("writing run_stats.json", e))
}

/// Peak resident set size from /proc (Linux), if available.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

/// Wall and CPU time since a phase began, for `run_stats.json`.
#[derive(Clone, Copy)]
pub struct PhaseClock {
    wall: std::time::Instant,
    cpu: f64,
}

impl PhaseClock {
    pub fn start() -> Self {
        PhaseClock { wall: std::time::Instant::now(), cpu: cpu_seconds() }
    }
    /// Wall seconds so far.
    pub fn seconds(&self) -> f64 {
        self.wall.elapsed().as_secs_f64()
    }
    /// `(phase, wall seconds, CPU seconds)` so far.
    pub fn lap(&self, phase: &'static str) -> (&'static str, f64, f64) {
        (phase, self.seconds(), cpu_seconds() - self.cpu)
    }
}

/// CPU time (user + system, all threads) this process has used so far, in seconds, from
/// /proc (Linux, in clock ticks of 1/100 s; 0 elsewhere). With the wall time of a phase it
/// tells how busy the pool was.
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let Some(rest) = s.rsplit_once(')').map(|r| r.1) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = f.get(11..13).map_or(0, |v| v.iter().filter_map(|x| x.parse::<u64>().ok()).sum());
    ticks as f64 / 100.0
}

/// Resident memory now, in MiB (0 where /proc is not available), for the phase log lines.
pub fn rss_mib() -> u64 {
    proc_status_bytes("VmRSS:").unwrap_or(0) >> 20
}

fn proc_status_bytes(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The human summary printed to stdout.
pub fn summary(c: &RunMeta, p: &Products, ratio: f64) -> String {
    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(out, "run {}  as_of {}", c.run_id, c.as_of);
    let _ = writeln!(
        out,
        "input rows {}  rejects {} (ratio {:.6}, max {})",
        c.intake.rows_read,
        c.intake.rejects.len(),
        ratio,
        c.job.max_reject_ratio
    );
    let _ = writeln!(
        out,
        "transactions {}  disconnections {}  reconnections {}  estimates {}  external payments {}",
        p.n_transactions, p.n_disconnections, p.n_reconnections, p.n_estimates, p.n_payments
    );
    for (cur, t) in &p.totals {
        let m = minor_units(cur).unwrap_or(0);
        let f = |d: Decimal| with_minor_scale(d, m).to_string();
        let _ = writeln!(
            out,
            "{cur}: opening {} + credits {} - debits {} (post {} / one-time {} / pre {}) = closing {}  residual {}",
            f(t.opening),
            f(t.credits),
            f(t.debit_total()),
            f(t.debit(TxnKind::PostRate)),
            f(t.debit(TxnKind::OneTime)),
            f(t.debit(TxnKind::PreRate)),
            f(t.closing),
            residual_text(t.residual).as_str().unwrap_or("")
        );
    }
    for (reason, n) in &p.rejects_by_reason {
        let _ = writeln!(out, "  reject {reason}: {n}");
    }
    out
}

/// Rejects per table and reason with the first `examples` of each, for `billrun validate`.
pub fn reject_report(intake: &Intake, examples: usize) -> String {
    use std::fmt::Write;
    let mut groups: BTreeMap<(&str, &str), Vec<&crate::validate::Reject>> = BTreeMap::new();
    let mut order: Vec<&crate::validate::Reject> = intake.rejects.iter().collect();
    order.sort_by_key(|r| (r.file_ord, r.row));
    for r in order {
        groups.entry((r.table, r.reason.as_str())).or_default().push(r);
    }
    let mut out = String::new();
    let _ = writeln!(out, "rejects by table and reason:");
    for ((table, reason), rs) in &groups {
        let _ = writeln!(out, "  {table:<20} {reason:<26} {:>9}", rs.len());
        for r in rs.iter().take(examples) {
            let _ = writeln!(out, "      {} row {} key {:?}: {}", intake.file_of(r), r.row, r.key, r.detail);
        }
    }
    let _ = writeln!(out, "input rows per table:");
    let mut per_table: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &intake.files {
        *per_table.entry(f.table).or_default() += f.rows;
    }
    for (t, n) in per_table {
        let _ = writeln!(out, "  {t:<20} {n:>12}");
    }
    out
}
