//! SPEC §4 step 6: pre-rated periods, billed in advance. For an ACTIVE subscription or a
//! reconnection candidate, each PRE_RATE item owes `charge(from, to)` from what it is paid
//! to (a candidate: from `as_of` at the earliest) up to `as_of + advance_period` (or its
//! end). A subscription's charges are all-or-nothing against the balance: taken (COVERED)
//! or nothing at all (NOT_COVERED).

use super::charge::charge_exact;
use super::ledger::{Ledger, Line};
use super::{price_of, AccountIn, ItemIn, RateError, SubFlags, TxnKind};
use crate::domain::{BillingMethod, Period, Status, Unit};
use chrono::NaiveDate;
use rust_decimal::Decimal;

/// One item's charge before the subscription's are taken or not.
struct Charge<'x, 'a> {
    it: &'x ItemIn<'a>,
    from: NaiveDate,
    to: NaiveDate,
    exact: Decimal,
    rounded: Decimal,
}

pub fn rate<'a>(l: &mut Ledger<'a, '_>, acct: &AccountIn<'a>, flags: &mut [SubFlags]) -> Result<(), RateError> {
    let (as_of, steps) = (l.ctx.as_of, l.ctx.steps);
    let thr = steps.disconnection_threshold;
    let mut charges = Vec::new();
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
                l.debit(Line {
                    kind: TxnKind::PreRate,
                    exact: c.exact,
                    rounded: c.rounded,
                    sub: s.sub,
                    it: c.it,
                    quantity: c.it.item.qty(),
                    unit_price: price_of(c.it),
                    period: Some((c.from, c.to)),
                })?;
                l.bill_through(c.it, c.to);
            }
        } else {
            f.owed_past = charges.iter().any(|c| c.it.item.paid_to() <= as_of);
        }
    }
    Ok(())
}
