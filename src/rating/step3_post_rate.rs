//! SPEC §4 step 3 with §9.2–9.3: post-rated usage, billed in arrears. An INTERNAL
//! subscription's items (ACTIVE or DISCONNECTED) are rated on the usage of their window
//! `[billed_through ?? start_date, min(cutoff, end_date))`, always taken, even below zero:
//! one line for the window, or with a pricing period one line per part of the window in each
//! pricing period, each billing the increment of the period's list amount (negative: a usage
//! credit). Which usage falls in the window (and which is deferred, late or after the end)
//! is decided when the usage is read (`validate::usage`); here arrive the sums (and, for the
//! plans that need more, the row count, the PERCENTAGE fees and the sums per pricing
//! period, folded as the usage was read).

use super::ledger::{Ledger, Line};
use super::pricing::Plan;
use super::{unit_price_of, AccountIn, ItemIn, RateError, SubIn, TxnKind};
use crate::domain::{grid, with_minor_scale, BillingMethod, PeriodState, PricingModel, Status};
use chrono::NaiveDate;
use rust_decimal::Decimal;

pub fn rate<'a>(l: &mut Ledger<'a, '_>, acct: &AccountIn<'a>) -> Result<(), RateError> {
    let as_of = l.ctx.as_of;
    for s in acct.subs.iter().filter(|s| s.sub.status != Status::Terminated) {
        for it in s.items.iter().filter(|i| i.service.billing_method == BillingMethod::PostRate) {
            let from = it.item.paid_to();
            let end = it.item.end_date.map_or(as_of, |e| e.min(as_of));
            if from >= end {
                continue;
            }
            match it.service.pricing_period() {
                None => rate_window(l, s, it, from, end)?,
                Some(pp) => rate_periods(l, s, it, pp, from, end)?,
            }
            l.bill_through(it, end);
        }
    }
    Ok(())
}

/// Without a pricing period: one line for the window, `round(A(q))` of its summed usage
/// (PERCENTAGE: the sum of its rows' fees). A tiered plan's window without a usage row
/// makes no line (its flat fees need a pricing period).
fn rate_window<'a>(
    l: &mut Ledger<'a, '_>,
    s: &SubIn<'a>,
    it: &ItemIn<'a>,
    from: NaiveDate,
    end: NaiveDate,
) -> Result<(), RateError> {
    let plan = Plan::of(it.service, it.item, true);
    let exact = match plan.model {
        // The rows' fees, summed as the usage was read.
        PricingModel::Percentage => it.usage.map_or(Decimal::ZERO, |u| u.fees()),
        m if m.tiered() && it.usage.is_none_or(|u| u.rows == 0) => return Ok(()),
        _ => plan.list_amount(it.usage_qty).ok_or_else(|| l.overflow("usage charge"))?,
    };
    let rounded = l.round(exact);
    l.line(Line {
        kind: TxnKind::PostRate,
        exact,
        rounded,
        sub: s,
        it,
        quantity: it.usage_qty,
        unit_price: unit_price_of(it),
        period: Some((from, end)),
    })
}

/// With a pricing period `pp`: the window split at the item's pricing-period boundaries,
/// one line per part billing `round(A(after)) - charged` (SPEC §9.3), and the item's period
/// state left at the last part's period.
fn rate_periods<'a>(
    l: &mut Ledger<'a, '_>,
    s: &SubIn<'a>,
    it: &ItemIn<'a>,
    pp: crate::domain::Period,
    from: NaiveDate,
    end: NaiveDate,
) -> Result<(), RateError> {
    let plan = Plan::of(it.service, it.item, true);
    let parts = grid::split(it.item.start_date, pp, from, end).ok_or_else(|| l.overflow("pricing periods"))?;
    let state = it.item.period();
    let mut last = None;
    for (part_from, part_to, ps) in parts {
        // The window's usage in this part's period, summed as the usage was read.
        let used = it.usage.and_then(|u| u.in_period(ps)).unwrap_or_default();
        let same = state.filter(|p| p.start == Some(ps));
        let before = same.and_then(|p| p.quantity).unwrap_or_default();
        let charged = same.and_then(|p| p.charged).unwrap_or_default();
        let after = before.checked_add(used).ok_or_else(|| l.overflow("usage sum"))?;
        let a_after = plan.list_amount(after).ok_or_else(|| l.overflow("usage charge"))?;
        // The exact increment: what the period's exact amount grew by in this part (so the
        // residuals of a period add up to its one rounding).
        let a_before = match same {
            Some(_) => plan.list_amount(before).ok_or_else(|| l.overflow("usage charge"))?,
            None => Decimal::ZERO,
        };
        let total = l.round(a_after);
        l.line(Line {
            kind: TxnKind::PostRate,
            exact: a_after - a_before,
            rounded: total - charged,
            sub: s,
            it,
            quantity: used,
            unit_price: unit_price_of(it),
            period: Some((part_from, part_to)),
        })?;
        let charged = Some(with_minor_scale(total, l.wallet.minor));
        last = Some(PeriodState { start: Some(ps), quantity: Some(crate::domain::normalized(after)), charged });
    }
    if let Some(p) = last {
        l.out.periods.push((it.idx, p));
    }
    Ok(())
}
