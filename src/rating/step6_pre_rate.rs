//! SPEC §4 step 6: pre-rated periods, billed in advance. For an ACTIVE subscription or a
//! reconnection candidate, each PRE_RATE item owes `charge(from, to)` from what it is paid
//! to (a candidate: from `as_of` at the earliest) up to `as_of + advance_period` (or its
//! end). A subscription's charges, after their discounts and taxes (SPEC §9.4), are
//! all-or-nothing against the balance: taken (COVERED) or nothing at all, no discount budget
//! used (NOT_COVERED).

use super::charge::charge_exact;
use super::ledger::{Ledger, Line};
use super::pricing::line::Figures;
use super::{item_price, unit_price_of, AccountIn, RateError, SubFlags, TxnKind};
use crate::domain::{BillingMethod, Period, Status, Unit};
use rust_decimal::Decimal;

pub fn rate<'a>(l: &mut Ledger<'a, '_>, acct: &AccountIn<'a>, flags: &mut [SubFlags]) -> Result<(), RateError> {
    let (as_of, steps) = (l.ctx.as_of, l.ctx.steps);
    let thr = steps.disconnection_threshold;
    for (s, f) in acct.subs.iter().zip(flags.iter_mut()) {
        if !(s.sub.status == Status::Active || f.candidate) {
            continue;
        }
        // Each item's line and figures, evaluated before the subscription's are taken or not.
        let mut charges: Vec<(Line, Figures)> = Vec::new();
        let budgets = (!s.discounts.is_empty()).then(|| l.budgets.clone());
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
            let p = item_price(it).ok_or_else(|| l.overflow("pre-rate unit price"))?;
            let exact = charge_exact(from, to, period, p).ok_or_else(|| l.overflow("pre-rate charge"))?;
            let rounded = l.round(exact);
            let line = Line {
                kind: TxnKind::PreRate,
                exact,
                rounded,
                sub: s,
                it,
                quantity: it.item.qty(),
                unit_price: unit_price_of(it),
                period: Some((from, to)),
            };
            let figures = l.price(&line)?;
            charges.push((line, figures));
        }
        let total: Decimal = charges.iter().map(|c| c.1.amount).sum();
        let taken = total.is_zero() || if steps.stop_service { l.balance - total > thr } else { l.balance >= total };
        if taken {
            f.covered = true;
            for (line, figures) in charges {
                let (it, to) = (line.it, line.period.map(|p| p.1).unwrap_or(as_of));
                l.book(line, figures)?;
                l.bill_through(it, to);
            }
        } else {
            f.owed_past = charges.iter().any(|c| c.0.it.item.paid_to() <= as_of);
            if let Some(b) = budgets {
                l.budgets = b;
            }
        }
    }
    Ok(())
}
