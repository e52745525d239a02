//! One account's wallet while it is rated: the running balance and the lines booked against
//! it, numbered in processing order (SPEC §4: a wallet's transactions are numbered in the
//! order of the steps).

use super::{AccountIn, AccountOut, ItemIn, RateCtx, RateError, Txn, TxnKind};
use crate::domain::*;
use chrono::NaiveDate;
use rust_decimal::Decimal;

/// A debit line of an item, before it is booked.
pub struct Line<'a, 'x> {
    pub kind: TxnKind,
    /// The exact amount; `rounded` is it rounded once to the currency's minor unit.
    pub exact: Decimal,
    pub rounded: Decimal,
    pub sub: &'a Subscription,
    pub it: &'x ItemIn<'a>,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub period: Option<(NaiveDate, NaiveDate)>,
}

pub struct Ledger<'a, 'c> {
    pub ctx: &'c RateCtx<'a>,
    pub wallet: &'a Wallet,
    pub out: AccountOut<'a>,
    pub balance: Decimal,
}

impl<'a, 'c> Ledger<'a, 'c> {
    /// The account's wallet at its opening balance, with room for a line per credit and per
    /// item (the most an account books).
    pub fn open(ctx: &'c RateCtx<'a>, acct: &AccountIn<'a>) -> Ledger<'a, 'c> {
        let items: usize = acct.subs.iter().map(|s| s.items.len()).sum();
        let out = AccountOut {
            txns: Vec::with_capacity(acct.credits.len() + items),
            billed_through: Vec::with_capacity(items),
            ..AccountOut::default()
        };
        Ledger { ctx, wallet: acct.wallet, out, balance: acct.wallet.balance }
    }

    /// The account's results, with its closing balance.
    pub fn close(mut self) -> AccountOut<'a> {
        self.out.closing = self.balance;
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
            amount: c.amount,
            pricing: None,
            quantity: None,
            unit_price: None,
            period: None,
            balance_after: self.balance,
        });
        Ok(())
    }

    /// Book a debit line; a line whose rounded amount is zero is not written, but its
    /// rounding residual still counts.
    pub fn debit(&mut self, l: Line<'a, '_>) -> Result<(), RateError> {
        self.out.residual =
            self.out.residual.checked_add(l.exact - l.rounded).ok_or_else(|| self.overflow("rounding residual"))?;
        if l.rounded.is_zero() {
            return Ok(());
        }
        self.balance = self.balance.checked_sub(l.rounded).ok_or_else(|| self.overflow("balance"))?;
        self.out.debits.add(l.kind, l.rounded);
        self.out.priced.list += l.rounded;
        let n = self.out.txns.len() as u32 + 1;
        self.out.txns.push(Txn {
            n,
            subscription_id: Some(&l.sub.subscription_id),
            item_no: Some(l.it.item.item_no),
            // The service's own id (equal to the item's): the few services stay in cache
            // when the transactions' columns are built, where the items' ids miss it.
            service_id: Some(&l.it.service.service_id),
            kind: l.kind,
            transaction_type: self.ctx.debit_type,
            amount: l.rounded,
            // No discounts or taxes yet: the list amount is the amount.
            pricing: None,
            quantity: Some(l.quantity),
            unit_price: Some(l.unit_price),
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
