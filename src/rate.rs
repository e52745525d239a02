//! The rating core (SPEC §4 steps 1 and 3–8): one account in, its transactions, status
//! changes and estimate out.
//!
//! Pure: no I/O, no clock, no globals, no Arrow. Everything it needs arrives in
//! [`RateCtx`] and [`AccountIn`]; everything it decides leaves in [`AccountOut`].

use crate::job::{Estimation, Steps};
use crate::model::*;
use chrono::{Datelike, NaiveDate};
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
}

pub struct SubIn<'a> {
    pub idx: usize,
    pub sub: &'a Subscription,
    /// Billable items in `item_no` order.
    pub items: Vec<ItemIn<'a>>,
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

#[derive(Clone, Debug)]
pub struct Txn<'a> {
    pub n: u32,
    pub subscription_id: Option<&'a str>,
    pub item_no: Option<i64>,
    pub service_id: Option<&'a str>,
    pub kind: TxnKind,
    pub transaction_type: &'a str,
    /// > 0; the direction is CREDIT for `TxnKind::Credit`, DEBIT otherwise.
    pub amount: Decimal,
    pub quantity: Option<Decimal>,
    pub unit_price: Option<Decimal>,
    pub period: Option<(NaiveDate, NaiveDate)>,
    pub balance_after: Decimal,
}

#[derive(Clone, Debug)]
pub struct ListEntry {
    pub sub_idx: usize,
    pub reason: &'static str,
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
    pub class: &'static str,
}

#[derive(Debug, Default)]
pub struct AccountOut<'a> {
    pub closing: Decimal,
    pub credits: Decimal,
    /// Debits by kind: POST_RATE, ONE_TIME, PRE_RATE.
    pub debits: [Decimal; 3],
    /// Sum of (exact − rounded) over debit lines.
    pub residual: Decimal,
    pub txns: Vec<Txn<'a>>,
    /// (subscription index, new status)
    pub status: Vec<(usize, Status)>,
    /// (item index, new billed_through)
    pub billed_through: Vec<(usize, NaiveDate)>,
    pub disconnections: Vec<ListEntry>,
    pub reconnections: Vec<ListEntry>,
    pub estimate: Option<Estimate>,
}

#[derive(Debug, thiserror::Error)]
#[error("arithmetic overflow rating wallet {wallet}: {what}")]
pub struct RateError {
    pub wallet: String,
    pub what: String,
}

/// lcm(28, 29, 30, 31): one month-day of a month of length L is worth 377580/L of these.
const MONTH_DAY_DEN: i128 = 377_580;

/// `charge(from, to)` before rounding, for unit price `p` per `period` (SPEC §4): whole
/// periods plus calendar-day proration, computed as one fraction and divided once.
pub fn charge_exact(from: NaiveDate, to: NaiveDate, period: Period, p: Decimal) -> Option<Decimal> {
    if from >= to || period.n == 0 {
        return Some(Decimal::ZERO);
    }
    let n = period.n as i128;
    let days = |a: NaiveDate, b: NaiveDate| (b - a).num_days() as i128;
    let (num, den) = match period.unit {
        Unit::Day => (days(from, to), n),
        Unit::Week => (days(from, to), 7 * n),
        Unit::Month => {
            let months = (to.year() as i64 - from.year() as i64) * 12 + to.month() as i64 - from.month() as i64;
            let mut k = (months.max(0) as u64) / period.n as u64;
            while k > 0 && period.add_times(from, k) > to {
                k -= 1;
            }
            while period.add_times(from, k + 1) <= to {
                k += 1;
            }
            let anchor = period.add_times(from, k);
            let mut x: i128 = 0;
            let mut d = anchor;
            while d < to {
                let dim = days_in_month(d) as i128;
                let next_month =
                    d.checked_add_months(chrono::Months::new(1)).and_then(|m| m.with_day(1)).unwrap_or(NaiveDate::MAX);
                let seg_end = next_month.min(to);
                x += days(d, seg_end) * (MONTH_DAY_DEN / dim);
                d = seg_end;
            }
            ((k as i128).checked_mul(n)?.checked_mul(MONTH_DAY_DEN)?.checked_add(x)?, n * MONTH_DAY_DEN)
        }
    };
    let num = Decimal::try_from_i128_with_scale(num, 0).ok()?;
    let den = Decimal::try_from_i128_with_scale(den, 0).ok()?;
    p.checked_mul(num)?.checked_div(den)
}

/// A sum of fractions with integer denominators, kept exact.
#[derive(Clone, Copy, Debug)]
struct Frac {
    num: Decimal,
    den: i64,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

impl Frac {
    const ZERO: Frac = Frac { num: Decimal::ZERO, den: 1 };
    fn add(self, num: Decimal, den: i64) -> Option<Frac> {
        let g = gcd(self.den, den);
        let l = (self.den / g).checked_mul(den)?;
        let a = self.num.checked_mul(Decimal::from(l / self.den))?;
        let b = num.checked_mul(Decimal::from(l / den))?;
        Some(Frac { num: a.checked_add(b)?, den: l })
    }
}

struct Ledger<'a, 'c> {
    ctx: &'c RateCtx<'a>,
    wallet: &'a Wallet,
    out: AccountOut<'a>,
    balance: Decimal,
}

impl<'a, 'c> Ledger<'a, 'c> {
    fn overflow(&self, what: &str) -> RateError {
        RateError { wallet: self.wallet.wallet_id.to_string(), what: what.to_string() }
    }

    fn round(&self, exact: Decimal) -> Decimal {
        self.ctx.rounding.round(exact, self.wallet.minor)
    }

    /// Book a debit line of `exact` (rounded here); a zero line is not written but its
    /// residual still counts.
    #[allow(clippy::too_many_arguments)]
    fn debit(
        &mut self,
        kind: TxnKind,
        exact: Decimal,
        rounded: Decimal,
        sub: &'a Subscription,
        it: &ItemIn<'a>,
        quantity: Decimal,
        unit_price: Decimal,
        period: Option<(NaiveDate, NaiveDate)>,
    ) -> Result<(), RateError> {
        self.out.residual =
            self.out.residual.checked_add(exact - rounded).ok_or_else(|| self.overflow("rounding residual"))?;
        if rounded.is_zero() {
            return Ok(());
        }
        self.balance = self.balance.checked_sub(rounded).ok_or_else(|| self.overflow("balance"))?;
        let k = match kind {
            TxnKind::PostRate => 0,
            TxnKind::OneTime => 1,
            _ => 2,
        };
        self.out.debits[k] += rounded;
        let n = self.out.txns.len() as u32 + 1;
        self.out.txns.push(Txn {
            n,
            subscription_id: Some(&sub.subscription_id),
            item_no: Some(it.item.item_no),
            // The service's own id (equal to the item's): the 14-odd services stay in cache
            // when the transactions' columns are built, where the items' ids were a cache
            // miss per row.
            service_id: Some(&it.service.service_id),
            kind,
            transaction_type: self.ctx.debit_type,
            amount: rounded,
            quantity: Some(quantity),
            unit_price: Some(unit_price),
            period,
            balance_after: self.balance,
        });
        Ok(())
    }
}

/// What `rate_account` learns about one subscription on the way through steps 5–7.
#[derive(Clone, Copy, Default)]
struct SubFlags {
    /// Step 5: a DISCONNECTED subscription above the reconnection threshold.
    candidate: bool,
    /// Step 6: its pre-rate charges were taken.
    covered: bool,
    /// Step 6, not taken: some item owing a charge is paid only up to today or earlier.
    owed_past: bool,
    /// Step 7: ACTIVE after this run (for the estimation).
    active_after: bool,
}

fn price_of(it: &ItemIn) -> Decimal {
    it.item.custom_price.unwrap_or(it.service.price)
}

/// Rate one account (SPEC §4 steps 1, 3–8).
pub fn rate_account<'a>(ctx: &RateCtx<'a>, acct: &AccountIn<'a>) -> Result<AccountOut<'a>, RateError> {
    let as_of = ctx.as_of;
    let steps = ctx.steps;
    // Sized once: at most a line per credit and per item (growing them one push at a time
    // was ~15 % of this function's time).
    let items: usize = acct.subs.iter().map(|s| s.items.len()).sum();
    let out = AccountOut {
        txns: Vec::with_capacity(acct.credits.len() + items),
        billed_through: Vec::with_capacity(items),
        ..AccountOut::default()
    };
    let mut l = Ledger { ctx, wallet: acct.wallet, out, balance: acct.wallet.balance };

    // 1. Credits.
    for c in &acct.credits {
        l.balance = l.balance.checked_add(c.amount).ok_or_else(|| l.overflow("credit"))?;
        l.out.credits += c.amount;
        let n = l.out.txns.len() as u32 + 1;
        l.out.txns.push(Txn {
            n,
            subscription_id: None,
            item_no: None,
            service_id: None,
            kind: TxnKind::Credit,
            transaction_type: &c.transaction_type,
            amount: c.amount,
            quantity: None,
            unit_price: None,
            period: None,
            balance_after: l.balance,
        });
    }

    // 3. Post-rate: ACTIVE or DISCONNECTED.
    for s in &acct.subs {
        if s.sub.status == Status::Terminated {
            continue;
        }
        for it in s.items.iter().filter(|i| i.service.billing_method == BillingMethod::PostRate) {
            let from = it.item.paid_to();
            let end = it.item.end_date.map_or(as_of, |e| e.min(as_of));
            if from >= end {
                continue;
            }
            let price = price_of(it);
            let exact = it
                .usage_qty
                .checked_mul(price)
                .and_then(|x| x.checked_div(it.service.unit()))
                .ok_or_else(|| l.overflow("usage charge"))?;
            let rounded = l.round(exact);
            l.debit(TxnKind::PostRate, exact, rounded, s.sub, it, it.usage_qty, price, Some((from, end)))?;
            l.out.billed_through.push((it.idx, end));
        }
    }

    // 4. One-time fees: ACTIVE only.
    for s in acct.subs.iter().filter(|s| s.sub.status == Status::Active) {
        for it in s.items.iter().filter(|i| i.service.billing_method == BillingMethod::OneTime) {
            let item = it.item;
            if item.billed_through.is_some() || item.start_date > as_of || !item.before_end(as_of) {
                continue;
            }
            let price = price_of(it);
            let exact = price.checked_mul(item.qty()).ok_or_else(|| l.overflow("one-time fee"))?;
            let rounded = l.round(exact);
            l.debit(TxnKind::OneTime, exact, rounded, s.sub, it, item.qty(), price, None)?;
            l.out.billed_through.push((it.idx, as_of));
        }
    }

    // 5. Start step: reconnection candidates.
    let mut flags: Vec<SubFlags> = acct
        .subs
        .iter()
        .map(|s| SubFlags {
            candidate: steps.start_service
                && s.sub.status == Status::Disconnected
                && l.balance > steps.reconnection_threshold,
            ..SubFlags::default()
        })
        .collect();

    // 6. Pre-rate, all-or-nothing per subscription.
    let thr = steps.disconnection_threshold;
    struct Charge<'x, 'a> {
        it: &'x ItemIn<'a>,
        from: NaiveDate,
        to: NaiveDate,
        exact: Decimal,
        rounded: Decimal,
    }
    let mut charges = Vec::with_capacity(items);
    for (s, f) in acct.subs.iter().zip(flags.iter_mut()) {
        if !(s.sub.status == Status::Active || f.candidate) {
            continue;
        }
        charges.clear();
        for it in s.items.iter().filter(|i| i.service.billing_method == BillingMethod::PreRate) {
            let mut from = it.item.paid_to();
            if f.candidate {
                from = from.max(as_of);
            }
            let mut to = it.service.advance().add(as_of);
            if let Some(e) = it.item.end_date {
                to = to.min(e);
            }
            if from >= to {
                continue;
            }
            let period =
                it.service.rate_period.as_ref().map(|p| p.period).unwrap_or(Period { n: 1, unit: Unit::Month });
            let p = price_of(it).checked_mul(it.item.qty()).ok_or_else(|| l.overflow("pre-rate unit price"))?;
            let exact = charge_exact(from, to, period, p).ok_or_else(|| l.overflow("pre-rate charge"))?;
            let rounded = l.round(exact);
            charges.push(Charge { it, from, to, exact, rounded });
        }
        let total: Decimal = charges.iter().map(|c| c.rounded).sum();
        let taken = total.is_zero() || if steps.stop_service { l.balance - total > thr } else { l.balance >= total };
        if taken {
            f.covered = true;
            for c in &charges {
                l.debit(
                    TxnKind::PreRate,
                    c.exact,
                    c.rounded,
                    s.sub,
                    c.it,
                    c.it.item.qty(),
                    price_of(c.it),
                    Some((c.from, c.to)),
                )?;
                l.out.billed_through.push((c.it.idx, c.to));
            }
        } else {
            f.owed_past = charges.iter().any(|c| c.it.item.paid_to() <= as_of);
        }
    }

    // 7. Stop step and reconnections, on the balance after all debits.
    let bal = l.balance;
    for (s, f) in acct.subs.iter().zip(flags.iter_mut()) {
        match s.sub.status {
            Status::Active => {
                f.active_after = true;
                if steps.stop_service {
                    let reason = if bal <= thr {
                        Some("BALANCE_AT_OR_BELOW_THRESHOLD")
                    } else if !f.covered && f.owed_past {
                        Some("PREPAID_PERIOD_NOT_COVERED")
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        f.active_after = false;
                        l.out.status.push((s.idx, Status::Disconnected));
                        l.out.disconnections.push(ListEntry { sub_idx: s.idx, reason, balance: bal });
                    }
                }
            }
            Status::Disconnected if f.candidate && f.covered && (!steps.stop_service || bal > thr) => {
                f.active_after = true;
                l.out.status.push((s.idx, Status::Active));
                l.out.reconnections.push(ListEntry { sub_idx: s.idx, reason: "BALANCE_ABOVE_THRESHOLD", balance: bal });
            }
            _ => {}
        }
    }

    // 8. Wallet estimation.
    let changed = !l.out.txns.is_empty() || acct.wallet.updated_at.is_some_and(|u| u >= ctx.prev_cutoff);
    let estimate = match steps.wallet_estimation {
        Estimation::Off => false,
        Estimation::All => true,
        Estimation::Changed => changed,
    };
    if estimate {
        let mut daily = Frac::ZERO;
        for (s, f) in acct.subs.iter().zip(&flags) {
            if !f.active_after {
                continue;
            }
            for it in s.items.iter().filter(|i| i.service.billing_method == BillingMethod::PreRate) {
                if it.item.start_date > as_of || !it.item.before_end(as_of) {
                    continue;
                }
                let Some(rp) = it.service.rate_period.as_ref() else {
                    continue;
                };
                let d = rp.period.days_from(as_of);
                if d <= 0 {
                    continue;
                }
                let p = price_of(it).checked_mul(it.item.qty()).ok_or_else(|| l.overflow("estimate"))?;
                daily = daily.add(p, d).ok_or_else(|| l.overflow("estimate"))?;
            }
        }
        let r = ctx.recurrence.days_from(as_of);
        if r > 0 && !l.out.debits[0].is_zero() {
            daily = daily.add(l.out.debits[0], r).ok_or_else(|| l.overflow("estimate"))?;
        }
        let daily_value = daily.num.checked_div(Decimal::from(daily.den)).ok_or_else(|| l.overflow("estimate"))?;
        let days_remaining = if bal <= Decimal::ZERO {
            Some(0)
        } else if daily.num.is_zero() {
            None
        } else {
            let q = bal
                .checked_mul(Decimal::from(daily.den))
                .and_then(|x| x.checked_div(daily.num))
                .ok_or_else(|| l.overflow("estimate"))?;
            i64::try_from(q.floor()).ok()
        };
        // A date past 9999-12-31 has no `YYYY-MM-DD` form (SPEC §3) and no DATE in most
        // warehouses: such a wallet is not running dry, and its date is left null.
        let depletion_date = days_remaining
            .and_then(chrono::TimeDelta::try_days)
            .and_then(|d| as_of.checked_add_signed(d))
            .filter(|d| d.year() <= 9999);
        let class = if bal <= thr {
            "DEPLETED"
        } else if days_remaining.is_some_and(|d| d < steps.low_balance_days) {
            "LOW"
        } else {
            "OK"
        };
        l.out.estimate = Some(Estimate {
            balance: bal,
            daily: {
                let mut d = Rounding::HalfUp.round(daily_value, 6);
                d.rescale(6);
                d
            },
            days_remaining,
            depletion_date,
            class,
        });
    }

    l.out.closing = bal;
    Ok(l.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }
    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }
    fn money(s: &str) -> Decimal {
        s.parse().unwrap()
    }
    fn charge(from: &str, to: &str, period: &str, price: &str) -> Decimal {
        Rounding::HalfUp.round(charge_exact(d(from), d(to), p(period), money(price)).unwrap(), 2)
    }

    #[test]
    fn spec_examples() {
        // Company ZX: 7 days of November, one day of November, one day of December.
        assert_eq!(charge("2026-11-22", "2026-11-29", "1 month", "30"), money("7.00"));
        assert_eq!(charge("2026-11-28", "2026-11-29", "1 month", "30"), money("1.00"));
        assert_eq!(charge("2026-12-01", "2026-12-02", "1 month", "30"), money("0.97"));
        // LiveSplash: one anniversary month.
        assert_eq!(charge("2026-07-15", "2026-08-15", "1 month", "50"), money("50.00"));
    }

    #[test]
    fn whole_periods_cost_exactly_p() {
        assert_eq!(charge("2026-01-31", "2026-02-28", "1 month", "30"), money("30.00"));
        assert_eq!(charge("2026-01-31", "2026-03-31", "1 month", "30"), money("60.00"));
        assert_eq!(charge("2026-01-01", "2026-04-01", "3 months", "12.345"), money("12.35"));
        assert_eq!(charge("2026-11-01", "2026-11-15", "1 week", "7"), money("14.00"));
        assert_eq!(charge("2026-11-01", "2026-11-04", "1 day", "1.25"), money("3.75"));
    }

    #[test]
    fn proration_crosses_month_lengths_exactly() {
        // Jan 31 + 1 month = Feb 28; then Feb 28 .. Mar 2 = 1 day of Feb (28) + 1 of Mar (31).
        let exact = charge_exact(d("2026-01-31"), d("2026-03-02"), p("1 month"), money("28")).unwrap();
        let expected = money("28") + money("28") / money("28") + money("28") / money("31");
        assert_eq!(Rounding::HalfUp.round(exact, 10), Rounding::HalfUp.round(expected, 10));
        // Rounded once: 3 days of December at 10 per 3 months are 30/93 = 0.3225..., 0.32;
        // rounding each day (10/93 = 0.11) would give 0.33.
        assert_eq!(charge("2026-12-01", "2026-12-04", "3 months", "10"), money("0.32"));
        // An empty interval costs nothing.
        assert_eq!(charge("2026-11-22", "2026-11-22", "1 month", "30"), Decimal::ZERO);
    }
}
