//! SPEC §4 step 3: post-rated usage, billed in arrears. An INTERNAL subscription's items
//! (ACTIVE or DISCONNECTED) are each debited once for the usage summed in their window
//! `[billed_through ?? start_date, min(cutoff, end_date))`, always taken, even below zero.
//! Which usage falls in the window (and which is deferred, late or after the end) is
//! decided when the usage is read (`validate::usage`); here arrive the sums.

use super::ledger::{Ledger, Line};
use super::{price_of, AccountIn, RateError, TxnKind};
use crate::domain::BillingMethod;
use crate::domain::Status;

pub fn rate<'a>(l: &mut Ledger<'a, '_>, acct: &AccountIn<'a>) -> Result<(), RateError> {
    let as_of = l.ctx.as_of;
    for s in acct.subs.iter().filter(|s| s.sub.status != Status::Terminated) {
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
            l.debit(Line {
                kind: TxnKind::PostRate,
                exact,
                rounded,
                sub: s.sub,
                it,
                quantity: it.usage_qty,
                unit_price: price,
                period: Some((from, end)),
            })?;
            l.bill_through(it, end);
        }
    }
    Ok(())
}
