//! The rating core (SPEC §4): one account in, its transactions, status changes and
//! estimate out; store events in, a store-managed subscription's status out.
//!
//! One file per step of SPEC §4, called in order by [`rate_account`]:
//! [`step1_credits`], [`step3_post_rate`], [`step4_one_time`], [`step5_start`],
//! [`step6_pre_rate`] (with [`charge`]), [`step7_stop`], [`step8_estimate`]; each books its
//! lines through the account's [`ledger::Ledger`]. [`step2_external`] applies store events to
//! an externally managed subscription, which belongs to no wallet: the pipeline calls it per
//! subscription.
//!
//! Pure: no I/O, no clock, no globals, no Arrow; it depends on the domain only. Everything
//! it needs arrives in [`RateCtx`] and [`AccountIn`]; everything it decides leaves in
//! [`AccountOut`].

pub mod charge;
mod ledger;
pub mod pricing;
pub mod step1_credits;
pub mod step2_external;
pub mod step3_post_rate;
pub mod step4_one_time;
pub mod step5_start;
pub mod step6_pre_rate;
pub mod step7_stop;
pub mod step8_estimate;

pub use charge::charge_exact;

use crate::domain::job::Steps;
use crate::domain::*;
use chrono::NaiveDate;
use rust_decimal::Decimal;

/// Run-wide parameters of the rating.
pub struct RateCtx<'a> {
    pub as_of: NaiveDate,
    pub steps: &'a Steps,
    pub rounding: Rounding,
    pub debit_type: &'a str,
    pub recurrence: Period,
    /// `updated_at` at or after this makes a wallet "changed" for estimation.
    pub prev_cutoff: Micros,
}

pub struct ItemIn<'a> {
    /// Index of the item in the run's item table.
    pub idx: usize,
    pub item: &'a Item,
    pub service: &'a Service,
    /// Summed usage inside the item's window (POST_RATE items).
    pub usage_qty: Decimal,
    /// What the plan needs of the window's usage beyond its sum, for a service whose rating
    /// needs it ([`Service::needs_usage_rows`]); None otherwise, or without usage.
    pub usage: Option<&'a UsageDetail>,
    /// The item's effective tax code and its rate at `as_of` (None: untaxed).
    pub tax: Option<(&'a str, Decimal)>,
}

pub struct SubIn<'a> {
    pub idx: usize,
    pub sub: &'a Subscription,
    /// Billable items in `item_no` order.
    pub items: Vec<ItemIn<'a>>,
    /// Its discounts (references checked), in discount_id order.
    pub discounts: Vec<pricing::line::Applied<'a>>,
}

/// One account: its wallet, its credits in (received_at, credit_id) order, and its INTERNAL
/// billable subscriptions in subscription_id order.
pub struct AccountIn<'a> {
    pub wallet: &'a Wallet,
    /// The wallet's row in the state.
    pub wallet_idx: usize,
    pub credits: Vec<&'a Credit>,
    pub subs: Vec<SubIn<'a>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnKind {
    Credit,
    PostRate,
    OneTime,
    PreRate,
}

impl TxnKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnKind::Credit => "CREDIT",
            TxnKind::PostRate => "POST_RATE",
            TxnKind::OneTime => "ONE_TIME",
            TxnKind::PreRate => "PRE_RATE",
        }
    }
    pub const DEBITS: [TxnKind; 3] = [TxnKind::PostRate, TxnKind::OneTime, TxnKind::PreRate];
}

/// Money debited, by debit kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Debits {
    pub post_rate: Decimal,
    pub one_time: Decimal,
    pub pre_rate: Decimal,
}

impl Debits {
    /// The debits of `kind`; a credit is not a debit (zero).
    pub fn get(&self, kind: TxnKind) -> Decimal {
        match kind {
            TxnKind::PostRate => self.post_rate,
            TxnKind::OneTime => self.one_time,
            TxnKind::PreRate => self.pre_rate,
            TxnKind::Credit => Decimal::ZERO,
        }
    }

    /// Book `amount` under `kind`, one of [`TxnKind::DEBITS`].
    pub fn add(&mut self, kind: TxnKind, amount: Decimal) {
        match kind {
            TxnKind::PostRate => self.post_rate += amount,
            TxnKind::OneTime => self.one_time += amount,
            TxnKind::PreRate => self.pre_rate += amount,
            TxnKind::Credit => unreachable!("a credit is booked as a credit, never as a debit"),
        }
    }

    /// Add another set of debits, kind by kind.
    pub fn absorb(&mut self, o: &Debits) {
        for k in TxnKind::DEBITS {
            self.add(k, o.get(k));
        }
    }

    pub fn total(&self) -> Decimal {
        self.post_rate + self.one_time + self.pre_rate
    }
}

/// Which way a line moves the balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Debit,
    /// Money received (kind CREDIT) and usage credits (kind POST_RATE, SPEC §9.3).
    Credit,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Debit => "DEBIT",
            Direction::Credit => "CREDIT",
        }
    }
}

/// `transaction_type` of a usage credit (SPEC §9.3).
pub const USAGE_CREDIT: &str = "USAGE_CREDIT";

#[derive(Clone, Debug)]
pub struct Txn<'a> {
    pub n: u32,
    pub subscription_id: Option<&'a str>,
    pub item_no: Option<i64>,
    pub service_id: Option<&'a str>,
    pub kind: TxnKind,
    pub transaction_type: &'a str,
    pub direction: Direction,
    /// Above zero, except a fully discounted line's 0 (SPEC §9.6); a magnitude (the
    /// direction gives the sign).
    pub amount: Decimal,
    /// How a priced line's amount came about (SPEC §9.6), when not simply `L = amount` with no
    /// discount and no tax (boxed: most lines are the simple case, and the transactions of a
    /// chunk are all held at once).
    pub pricing: Option<Box<LinePricing<'a>>>,
    pub quantity: Option<Decimal>,
    pub unit_price: Option<Decimal>,
    pub period: Option<(NaiveDate, NaiveDate)>,
    pub balance_after: Decimal,
}

impl Txn<'_> {
    /// `L`, the list amount (the amount itself for a simple line).
    pub fn list_amount(&self) -> Decimal {
        self.pricing.as_ref().map_or(self.amount, |p| p.list_amount)
    }
    /// `D`, the discounts taken.
    pub fn discount_amount(&self) -> Decimal {
        self.pricing.as_ref().map_or(Decimal::ZERO, |p| p.discount_amount)
    }
    pub fn tax_amount(&self) -> Decimal {
        self.pricing.as_ref().map_or(Decimal::ZERO, |p| p.tax_amount)
    }
    /// The tax code and rate applied; None when untaxed.
    pub fn tax(&self) -> Option<(&str, Decimal)> {
        self.pricing.as_ref().and_then(|p| p.tax)
    }
    pub fn discount_ids(&self) -> Option<&str> {
        self.pricing.as_ref().and_then(|p| p.discount_ids.as_deref())
    }
}

/// A priced line's figures (SPEC §9.6): `amount = L - D` (`+ tax` when prices exclude it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinePricing<'a> {
    pub list_amount: Decimal,
    pub discount_amount: Decimal,
    pub tax_amount: Decimal,
    /// The tax code and rate (percent) applied; None when untaxed.
    pub tax: Option<(&'a str, Decimal)>,
    /// The discounts that took a non-zero amount, comma-separated in the order applied.
    pub discount_ids: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ListEntry {
    pub sub_idx: usize,
    pub reason: ListReason,
    pub balance: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Estimate {
    pub balance: Decimal,
    /// Rounded half-up to 6 decimals, and written with 6 (CSV `14.970000`, whatever the
    /// scale of the prices it came from).
    pub daily: Decimal,
    pub days_remaining: Option<i64>,
    pub depletion_date: Option<NaiveDate>,
    pub class: EstimateClass,
}

#[derive(Debug, Default)]
pub struct AccountOut<'a> {
    pub closing: Decimal,
    pub credits: Decimal,
    pub debits: Debits,
    /// Sum of (exact − rounded) over debit lines.
    pub residual: Decimal,
    pub priced: PricedTotals,
    pub txns: Vec<Txn<'a>>,
    /// (subscription index, new status)
    pub status: Vec<(usize, Status)>,
    /// (item index, new billed_through)
    pub billed_through: Vec<(usize, NaiveDate)>,
    /// (item index, its pricing-period state after the run), SPEC §9.3.
    pub periods: Vec<(usize, PeriodState)>,
    /// (discount index, its AMOUNT budget left) for the budgets the run drew on, SPEC §9.4.
    pub remaining: Vec<(usize, Decimal)>,
    pub disconnections: Vec<ListEntry>,
    pub reconnections: Vec<ListEntry>,
    pub estimate: Option<Estimate>,
}

/// The priced lines' figures of SPEC §9.6, signed (a usage credit counts negative in the
/// list, discounts and taxes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PricedTotals {
    pub list: Decimal,
    pub discounts: Decimal,
    pub taxes: Decimal,
    pub taxes_by_code: std::collections::BTreeMap<String, Decimal>,
    /// The CREDIT-direction POST_RATE lines' amounts (money back to the wallet).
    pub usage_credits: Decimal,
    /// Σ (exact − rounded) of the discounts and of the taxes.
    pub discount_residual: Decimal,
    pub tax_residual: Decimal,
}

impl PricedTotals {
    pub fn absorb(&mut self, o: &PricedTotals) {
        self.list += o.list;
        self.discounts += o.discounts;
        self.taxes += o.taxes;
        for (code, t) in &o.taxes_by_code {
            *self.taxes_by_code.entry(code.clone()).or_default() += *t;
        }
        self.usage_credits += o.usage_credits;
        self.discount_residual += o.discount_residual;
        self.tax_residual += o.tax_residual;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("arithmetic overflow rating wallet {wallet}: {what}")]
pub struct RateError {
    pub wallet: String,
    pub what: String,
}

/// What `rate_account` learns about one subscription on the way through steps 5–7.
#[derive(Clone, Copy, Default)]
pub struct SubFlags {
    /// Step 5: a DISCONNECTED subscription above the reconnection threshold.
    pub candidate: bool,
    /// Step 6: its pre-rate charges were taken.
    pub covered: bool,
    /// Step 6, not taken: some item owing a charge is paid only up to today or earlier.
    pub owed_past: bool,
    /// Step 7: ACTIVE after this run (for the estimation).
    pub active_after: bool,
}

/// The item's unit price: its negotiated `custom_price`, else the service's `price`.
fn price_of(it: &ItemIn) -> Decimal {
    it.item.custom_price.unwrap_or(it.service.price)
}

/// A line's `unit_price`: `P` for PER_UNIT, null for the other models (SPEC §9.3).
fn unit_price_of(it: &ItemIn) -> Option<Decimal> {
    (it.service.model() == PricingModel::PerUnit).then(|| price_of(it))
}

/// `p` of SPEC §9.2 for a PRE_RATE or ONE_TIME item: `A(quantity)` (v1: `P * quantity`).
fn item_price(it: &ItemIn) -> Option<Decimal> {
    pricing::Plan::of(it.service, it.item, false).list_amount(it.item.qty())
}

/// Rate one account (SPEC §4 steps 1, 3–8), each step on the balance the previous left.
pub fn rate_account<'a>(ctx: &RateCtx<'a>, acct: &AccountIn<'a>) -> Result<AccountOut<'a>, RateError> {
    let mut l = ledger::Ledger::open(ctx, acct);
    step1_credits::apply(&mut l, acct)?;
    step3_post_rate::rate(&mut l, acct)?;
    step4_one_time::rate(&mut l, acct)?;
    let mut flags = step5_start::candidates(&l, acct);
    step6_pre_rate::rate(&mut l, acct, &mut flags)?;
    step7_stop::decide(&mut l, acct, &mut flags);
    step8_estimate::estimate(&mut l, acct, &flags)?;
    Ok(l.close())
}
