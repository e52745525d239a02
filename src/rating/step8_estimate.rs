//! SPEC §4 step 8, wallet estimation: how much a wallet consumes a day (its billable
//! PRE_RATE items' price per day, plus this run's POST_RATE debits spread over the
//! recurrence), how many days its balance lasts, the date it runs dry and its class.

use super::charge::Frac;
use super::ledger::Ledger;
use super::{item_price, AccountIn, Estimate, ItemIn, RateError, SubFlags, SubIn};
use crate::domain::job::Estimation;
use crate::domain::DiscountKind;
use crate::domain::{BillingMethod, EstimateClass, Rounding};
use chrono::Datelike;
use rust_decimal::Decimal;

pub fn estimate(l: &mut Ledger, acct: &AccountIn, flags: &[SubFlags]) -> Result<(), RateError> {
    let (ctx, as_of, steps) = (l.ctx, l.ctx.as_of, l.ctx.steps);
    let changed = !l.out.txns.is_empty() || acct.wallet.updated_at.is_some_and(|u| u >= ctx.prev_cutoff);
    let wanted = match steps.wallet_estimation {
        Estimation::Off => false,
        Estimation::All => true,
        Estimation::Changed => changed,
    };
    if !wanted {
        return Ok(());
    }
    let bal = l.balance;
    let mut daily = Frac::ZERO;
    for (s, f) in acct.subs.iter().zip(flags) {
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
            let p = estimated_price(l, s, it).ok_or_else(|| l.overflow("estimate"))?;
            daily = daily.add(p, d).ok_or_else(|| l.overflow("estimate"))?;
        }
    }
    let r = ctx.recurrence.days_from(as_of);
    if r > 0 && !l.out.debits.post_rate.is_zero() {
        daily = daily.add(l.out.debits.post_rate, r).ok_or_else(|| l.overflow("estimate"))?;
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
    let class = if bal <= steps.disconnection_threshold {
        EstimateClass::Depleted
    } else if days_remaining.is_some_and(|d| d < steps.low_balance_days) {
        EstimateClass::Low
    } else {
        EstimateClass::Ok
    };
    // Written with exactly 6 decimals (SPEC: rounded half-up to 6 decimal places).
    let mut daily = Rounding::HalfUp.round(daily_value, 6);
    daily.rescale(6);
    l.out.estimate = Some(Estimate { balance: bal, daily, days_remaining, depletion_date, class });
    Ok(())
}

/// `p` of a PRE_RATE item for the estimate (SPEC §9.6): `A(quantity)` after the PERCENT
/// discounts in effect at `as_of` that apply to it (exact), with tax added when prices exclude
/// it; AMOUNT budgets are left out (they run out).
fn estimated_price(l: &Ledger, s: &SubIn, it: &ItemIn) -> Option<Decimal> {
    let mut p = item_price(it)?;
    let as_of = l.ctx.as_of;
    let applies = |d: &crate::domain::Discount| d.item_no.is_none_or(|n| n == it.item.item_no);
    for a in s.discounts.iter().filter(|a| a.d.kind == DiscountKind::Percent && a.d.in_effect(as_of) && applies(a.d)) {
        p = p.checked_mul(Decimal::ONE_HUNDRED - a.d.value)?.checked_div(Decimal::ONE_HUNDRED)?;
    }
    if let Some((_, rate)) = it.tax.filter(|_| !it.service.includes_tax()) {
        p = p.checked_mul(Decimal::ONE_HUNDRED.checked_add(rate)?)?.checked_div(Decimal::ONE_HUNDRED)?;
    }
    Some(p)
}
