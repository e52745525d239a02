//! Run products (SPEC §5): the rating results folded into the next state, transactions,
//! lists, estimates, payments and rejects as [`OutTable`]s, with the invariants checked;
//! the manifest, the stats and the summary.
//!
//! `books`: the results folded in, account by account. `tables`: each table's columns.
//! `assemble`: the next state and the tables written after rating. `chunked`: writing a
//! table a chunk at a time. `manifest`, `stats`, `summary`: what is said about the run.

mod assemble;
mod books;
mod chunked;
mod manifest;
mod stats;
mod summary;
mod tables;

pub use assemble::assemble;
pub use books::Books;
pub use chunked::{Dest, OutFile, RatedFiles, RatedWriters};
pub use manifest::{carries_pricing, write_manifest, MANIFEST};
pub use stats::write_stats;
pub use summary::{reject_report, summary};

use crate::domain::job::{Estimation, Job, Layout, OutputFormat};
use crate::domain::*;
use crate::error::{Error, Result};
use crate::io::write::{ColData, OutCol, OutTable, TableWriter};
use crate::rating::step2_external::ExtOut;
use crate::rating::{AccountIn, AccountOut, Debits, Direction, Txn, TxnKind};
use crate::validate::{Intake, State};
use chrono::NaiveDate;
use rayon::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Per-currency money totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub opening: Decimal,
    pub credits: Decimal,
    pub debits: Debits,
    pub closing: Decimal,
    pub residual: Decimal,
    pub priced: crate::rating::PricedTotals,
}

impl Totals {
    pub fn debit_total(&self) -> Decimal {
        self.debits.total()
    }

    /// The debits of `kind` (one of [`TxnKind::DEBITS`]).
    pub fn debit(&self, kind: TxnKind) -> Decimal {
        self.debits.get(kind)
    }

    /// The debits per kind, by kind name (the manifest's order).
    pub fn debits_by_name(&self) -> BTreeMap<&'static str, Decimal> {
        TxnKind::DEBITS.iter().map(|k| (k.as_str(), self.debits.get(*k))).collect()
    }

    /// Add one wallet's figures.
    pub(crate) fn add(&mut self, opening: Decimal, r: &AccountOut) {
        self.opening += opening;
        self.credits += r.credits;
        self.debits.absorb(&r.debits);
        self.closing += r.closing;
        self.residual += r.residual;
        self.priced.absorb(&r.priced);
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

pub(crate) fn s(x: &str) -> Option<&str> {
    Some(x)
}

/// Row numbers of `v` in `key` order (keys are unique: any sort gives the same order).
/// See [`crate::partition::sort_order`]: no sort at all for a table already in order, a
/// merge sort through the long sorted stretches of a nearly sorted one.
pub(crate) fn sorted_by<T: Sync>(v: &[T], key: impl Fn(&T) -> &[u8] + Sync) -> Vec<u32> {
    let mut o: Vec<u32> = (0..v.len() as u32).collect();
    crate::partition::sort_order(&mut o, |a, b| key(&v[a as usize]).cmp(key(&v[b as usize])));
    o
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

/// What the manifest, stats and summary say about the run besides its products.
pub struct RunMeta<'a> {
    pub job: &'a Job,
    pub run_id: &'a str,
    pub as_of: NaiveDate,
    pub threads: usize,
    pub intake: &'a Intake,
    /// `--shard I/N` (SPEC §10.1): recorded in the manifest.
    pub shard: Option<crate::shard::ShardSpec>,
}
