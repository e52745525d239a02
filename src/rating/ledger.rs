//! One account's wallet while it is rated: the running balance and the lines booked against
//! it, numbered in processing order (SPEC §4: a wallet's transactions are numbered in the
//! order of the steps).

use super::pricing::line::{figures, Applied, Budget, Figures, TaxRule};
use super::{
    AccountIn, AccountOut, Direction, ItemIn, LinePricing, RateCtx, RateError, SubIn, Txn, TxnKind, USAGE_CREDIT,
};
use crate::domain::*;
use chrono::NaiveDate;
use rust_decimal::Decimal;

/// A line of an item, before it is priced (discounts, tax) and booked.
pub struct Line<'a, 'x> {
    pub kind: TxnKind,
    /// The exact list amount; `rounded` is `L`, rounded once to the currency's minor unit.
    /// Both negative for a usage credit (SPEC §9.3).
    pub exact: Decimal,
    pub rounded: Decimal,
    pub sub: &'x SubIn<'a>,
    pub it: &'x ItemIn<'a>,
    pub quantity: Decimal,
    pub unit_price: Option<Decimal>,
    pub period: Option<(NaiveDate, NaiveDate)>,
}

impl Line<'_, '_> {
    fn credit(&self) -> bool {
        self.rounded < Decimal::ZERO
    }
}

pub struct Ledger<'a, 'c> {
    pub ctx: &'c RateCtx<'a>,
    pub wallet: &'a Wallet,
    pub out: AccountOut<'a>,
    pub balance: Decimal,
    /// The AMOUNT discounts' budgets of the account's subscriptions (SPEC §9.4).
    pub budgets: Vec<Budget>,
}

impl<'a, 'c> Ledger<'a, 'c> {
    /// The account's wallet at its opening balance, with room for a line per credit and per
    /// item (the most an account books without pricing periods).
    pub fn open(ctx: &'c RateCtx<'a>, acct: &AccountIn<'a>) -> Ledger<'a, 'c> {
        let items: usize = acct.subs.iter().map(|s| s.items.len()).sum();
        let out = AccountOut {
            txns: Vec::with_capacity(acct.credits.len() + items),
            billed_through: Vec::with_capacity(items),
            ..AccountOut::default()
        };
        let budgets = acct
            .subs
            .iter()
            .flat_map(|s| &s.discounts)
            .filter(|a| a.d.kind == DiscountKind::Amount)
            .map(|a| Budget { idx: a.idx, left: a.d.budget(), touched: false })
            .collect();
        Ledger { ctx, wallet: acct.wallet, out, balance: acct.wallet.balance, budgets }
    }

    /// The account's results, with its closing balance and the budgets drawn on.
    pub fn close(mut self) -> AccountOut<'a> {
        self.out.closing = self.balance;
        self.out.remaining = self.budgets.iter().filter(|b| b.touched).map(|b| (b.idx, b.left)).collect();
        self.out
    }

    pub fn overflow(&self, what: &str) -> RateError {
        RateError { wallet: self.wallet.wallet_id.to_string(), what: what.to_string() }
    }

    /// Round once, to the wallet currency's minor unit with the job's mode.
    pub fn round(&self, exact: Decimal) -> Decimal {
        self.ctx.rounding.round(exact, self.wallet.minor)
    }

    /// Book a credit received (SPEC §4 step 1): applied as given, never rounded.
    pub fn credit(&mut self, c: &'a Credit) -> Result<(), RateError> {
        self.balance = self.balance.checked_add(c.amount).ok_or_else(|| self.overflow("credit"))?;
        self.out.credits += c.amount;
        let n = self.out.txns.len() as u32 + 1;
        self.out.txns.push(Txn {
            n,
            subscription_id: None,
            item_no: None,
            service_id: None,
            kind: TxnKind::Credit,
            transaction_type: &c.transaction_type,
            direction: Direction::Credit,
            amount: c.amount,
            pricing: None,
            quantity: None,
            unit_price: None,
            period: None,
            balance_after: self.balance,
        });
        Ok(())
    }

    /// The discounts that apply to a debit line of `it` at `as_of`, in the order they are
    /// taken (SPEC §9.4): those naming the item, then the subscription-wide ones, each group
    /// in discount_id order.
    fn discounts_for(&self, sub: &SubIn<'a>, it: &ItemIn) -> Vec<Applied<'a>> {
        if sub.discounts.is_empty() {
            return Vec::new();
        }
        let as_of = self.ctx.as_of;
        let live = || sub.discounts.iter().filter(move |a| a.d.in_effect(as_of));
        let own = live().filter(|a| a.d.item_no == Some(it.item.item_no));
        own.chain(live().filter(|a| a.d.item_no.is_none())).copied().collect()
    }

    /// The figures of line `l` after its discounts and tax (SPEC §9.4, §9.5); the AMOUNT
    /// budgets it draws on change (keep a copy of [`Ledger::budgets`] to undo).
    pub fn price(&mut self, l: &Line<'a, '_>) -> Result<Figures, RateError> {
        let discounts = self.discounts_for(l.sub, l.it);
        let tax = l.it.tax.map(|(code, rate)| TaxRule { code, rate, inclusive: l.it.service.includes_tax() });
        let (rounding, minor) = (self.ctx.rounding, self.wallet.minor);
        figures(l.rounded.abs(), l.credit(), &discounts, &mut self.budgets, tax, rounding, minor)
            .ok_or_else(|| self.overflow("discounts and tax"))
    }

    /// Price and book line `l`.
    pub fn line(&mut self, l: Line<'a, '_>) -> Result<(), RateError> {
        let f = self.price(&l)?;
        self.book(l, f)
    }

    /// Book line `l` with its figures `f`. A line whose amount and discount are both zero is
    /// not written, but its rounding residuals still count.
    pub fn book(&mut self, l: Line<'a, '_>, f: Figures) -> Result<(), RateError> {
        let credit = l.credit();
        let signed = |x: Decimal| if credit { -x } else { x };
        self.out.residual =
            self.out.residual.checked_add(l.exact - l.rounded).ok_or_else(|| self.overflow("rounding residual"))?;
        let p = &mut self.out.priced;
        p.discount_residual += signed(f.discount_residual);
        p.tax_residual += signed(f.tax_residual);
        if f.amount.is_zero() && f.discount.is_zero() {
            return Ok(());
        }
        p.list += signed(f.list);
        p.discounts += signed(f.discount);
        p.taxes += signed(f.tax);
        let tax = l.it.tax;
        if let Some((code, _)) = tax {
            // The key is allocated once per account and code, not per line.
            match p.taxes_by_code.get_mut(code) {
                Some(t) => *t += signed(f.tax),
                None => {
                    p.taxes_by_code.insert(code.to_string(), signed(f.tax));
                }
            }
        }
        let balance = if credit { self.balance.checked_add(f.amount) } else { self.balance.checked_sub(f.amount) };
        self.balance = balance.ok_or_else(|| self.overflow("balance"))?;
        if credit {
            self.out.priced.usage_credits += f.amount;
        } else {
            self.out.debits.add(l.kind, f.amount);
        }
        let simple = f.discount.is_zero() && tax.is_none() && f.list == f.amount;
        let pricing = (!simple).then(|| {
            Box::new(LinePricing {
                list_amount: f.list,
                discount_amount: f.discount,
                tax_amount: f.tax,
                tax,
                discount_ids: f.discount_ids,
            })
        });
        let n = self.out.txns.len() as u32 + 1;
        self.out.txns.push(Txn {
            n,
            subscription_id: Some(&l.sub.sub.subscription_id),
            item_no: Some(l.it.item.item_no),
            // The service's own id (equal to the item's): the few services stay in cache
            // when the transactions' columns are built, where the items' ids miss it.
            service_id: Some(&l.it.service.service_id),
            kind: l.kind,
            transaction_type: if credit { USAGE_CREDIT } else { self.ctx.debit_type },
            direction: if credit { Direction::Credit } else { Direction::Debit },
            amount: f.amount,
            pricing,
            quantity: Some(l.quantity),
            unit_price: l.unit_price,
            period: l.period,
            balance_after: self.balance,
        });
        Ok(())
    }

    /// The item's `billed_through` after the run.
    pub fn bill_through(&mut self, it: &ItemIn, date: NaiveDate) {
        self.out.billed_through.push((it.idx, date));
    }
}
