//! SPEC §4 step 4: one-time fees. An ACTIVE subscription's ONE_TIME item never billed
//! (`billed_through` null) and in effect at `as_of` is debited `round(p)`, `p = A(quantity)`
//! (v1: `price * quantity`), always taken; its `billed_through` becomes `as_of`.

use super::ledger::{Ledger, Line};
use super::{item_price, unit_price_of, AccountIn, RateError, TxnKind};
use crate::domain::{BillingMethod, Status};

pub fn rate<'a>(l: &mut Ledger<'a, '_>, acct: &AccountIn<'a>) -> Result<(), RateError> {
    let as_of = l.ctx.as_of;
    for s in acct.subs.iter().filter(|s| s.sub.status == Status::Active) {
        for it in s.items.iter().filter(|i| i.service.billing_method == BillingMethod::OneTime) {
            let item = it.item;
            if item.billed_through.is_some() || item.start_date > as_of || !item.before_end(as_of) {
                continue;
            }
            let exact = item_price(it).ok_or_else(|| l.overflow("one-time fee"))?;
            let rounded = l.round(exact);
            l.line(Line {
                kind: TxnKind::OneTime,
                exact,
                rounded,
                sub: s,
                it,
                quantity: item.qty(),
                unit_price: unit_price_of(it),
                period: None,
            })?;
            l.bill_through(it, as_of);
        }
    }
    Ok(())
}
