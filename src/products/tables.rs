//! The output tables' rows and columns (SPEC §5): transactions, wallets, estimates,
//! disconnection and reconnection lists, store events and payments.

use super::books::ListRow;
use super::*;

/// `rows` as a list table; `account` is each subscription's account after the run.
pub(super) fn list_table<'a>(
    name: &'static str,
    rows: &[ListRow],
    st: &State,
    account: impl Fn(usize) -> &'a str,
    as_of: NaiveDate,
) -> OutTable {
    let sub = |r: &ListRow| &st.subs[r.sub as usize];
    // A store-managed subscription never touches a wallet: none is named.
    let wallet_id = |r: &ListRow| {
        let w = if sub(r).is_internal() { st.wallet_of_sub(r.sub as usize) } else { None };
        w.map(|w| st.wallets[w].wallet_id.as_str())
    };
    OutTable::new(name)
        .str("subscription_id", false, rows.iter().map(|r| s(&sub(r).subscription_id)))
        .str("account_id", false, rows.iter().map(|r| s(account(r.sub as usize))))
        .str("wallet_id", true, rows.iter().map(wallet_id))
        .str("source", false, rows.iter().map(|r| s(&sub(r).source)))
        .str("reason", false, rows.iter().map(|r| s(r.reason.as_str())))
        .dec("balance", true, rows.iter().map(|r| r.balance))
        .date("as_of", false, vec![Some(as_of); rows.len()])
}

/// The `wallet_transactions` rows of rated `accounts` (in account order).
pub(super) fn transactions_table<'a>(
    run_id: &'a str,
    as_of: NaiveDate,
    accounts: &[AccountIn<'a>],
    rated: &[AccountOut<'a>],
) -> OutTable {
    use std::fmt::Write;
    // One task per column, each walking the chunk's transactions in order: a list of them
    // (an iterator of known length, so each column's buffers are sized once; nested
    // per-account iterators reported no length and grew every buffer by doubling).
    let n: usize = rated.iter().map(|r| r.txns.len()).sum();
    let mut list = Vec::with_capacity(n);
    list.extend(rated.iter().zip(accounts).flat_map(|(r, a)| r.txns.iter().map(move |t| (a.wallet, t))));
    let rows = || list.iter().copied();
    let id = || {
        let mut b = arrow_array::builder::StringBuilder::with_capacity(n, n * (run_id.len() + 24));
        let mut num = itoa::Buffer::new();
        for (w, t) in rows() {
            // `{run_id}/{wallet_id}/{n}` pieced into the column's buffer: no String per row,
            // and no format machinery.
            for part in [run_id, "/", &w.wallet_id, "/", num.format(t.n)] {
                b.write_str(part).expect("writing to memory");
            }
            b.append_value("");
        }
        OutCol { name: "transaction_id", nullable: false, data: ColData::Str(b.finish()) }
    };
    let minor = |d: Decimal, w: &Wallet| Some(with_minor_scale(d, w.minor));
    let priced = |t: &Txn| (t.kind != TxnKind::Credit).then_some(());
    OutTable::par_columns(
        "wallet_transactions",
        &[
            &id,
            &|| OutCol::str("run_id", false, rows().map(|_| s(run_id))),
            &|| OutCol::date("as_of", false, rows().map(|_| Some(as_of))),
            &|| OutCol::str("wallet_id", false, rows().map(|(w, _)| s(&w.wallet_id))),
            &|| OutCol::str("account_id", false, rows().map(|(w, _)| s(&w.account_id))),
            &|| OutCol::str("subscription_id", true, rows().map(|(_, t)| t.subscription_id)),
            &|| OutCol::int("item_no", true, rows().map(|(_, t)| t.item_no)),
            &|| OutCol::str("service_id", true, rows().map(|(_, t)| t.service_id)),
            &|| OutCol::str("kind", false, rows().map(|(_, t)| s(t.kind.as_str()))),
            &|| OutCol::str("transaction_type", false, rows().map(|(_, t)| s(t.transaction_type))),
            &|| OutCol::str("direction", false, rows().map(|(_, t)| s(t.direction.as_str()))),
            &|| OutCol::dec("amount", false, rows().map(|(w, t)| minor(t.amount, w))),
            // SPEC §9.6: null on credits (money received), numbers on every priced line.
            &|| {
                OutCol::dec("list_amount", true, rows().map(|(w, t)| priced(t).and_then(|_| minor(t.list_amount(), w))))
            },
            &|| {
                let d = |(w, t): (&Wallet, &Txn)| priced(t).and_then(|_| minor(t.discount_amount(), w));
                OutCol::dec("discount_amount", true, rows().map(d))
            },
            &|| OutCol::dec("tax_amount", true, rows().map(|(w, t)| priced(t).and_then(|_| minor(t.tax_amount(), w)))),
            &|| {
                let net = |(w, t): (&Wallet, &Txn)| priced(t).and_then(|_| minor(t.amount - t.tax_amount(), w));
                OutCol::dec("net_amount", true, rows().map(net))
            },
            &|| OutCol::str("tax_code", true, rows().map(|(_, t)| t.tax().map(|x| x.0))),
            &|| OutCol::dec("tax_rate", true, rows().map(|(_, t)| t.tax().map(|x| x.1))),
            &|| OutCol::str("discount_ids", true, rows().map(|(_, t)| t.discount_ids())),
            &|| OutCol::str("currency", false, rows().map(|(w, _)| s(&w.currency))),
            &|| OutCol::dec("quantity", true, rows().map(|(_, t)| t.quantity)),
            &|| OutCol::dec("unit_price", true, rows().map(|(_, t)| t.unit_price)),
            &|| OutCol::date("period_start", true, rows().map(|(_, t)| t.period.map(|p| p.0))),
            &|| OutCol::date("period_end", true, rows().map(|(_, t)| t.period.map(|p| p.1))),
            &|| OutCol::dec("balance_after", false, rows().map(|(w, t)| minor(t.balance_after, w))),
        ],
    )
}

/// The next-state `wallets` rows of rated `accounts`: their closing balances.
pub(super) fn wallets_table(accounts: &[AccountIn], rated: &[AccountOut]) -> OutTable {
    let w = || accounts.iter().map(|a| a.wallet);
    OutTable::new("wallets")
        .str("wallet_id", false, w().map(|w| s(&w.wallet_id)))
        .str("account_id", false, w().map(|w| s(&w.account_id)))
        .str("currency", false, w().map(|w| s(&w.currency)))
        .dec("balance", false, w().zip(rated).map(|(w, r)| Some(with_minor_scale(r.closing, w.minor))))
        .ts("updated_at", true, w().map(|w| w.updated_at))
}

/// The `wallet_estimates` rows of rated `accounts` (those with an estimate).
pub(super) fn estimates_table(accounts: &[AccountIn], rated: &[AccountOut]) -> OutTable {
    let est: Vec<(&Wallet, &crate::rating::Estimate)> =
        accounts.iter().zip(rated).filter_map(|(a, r)| Some((a.wallet, r.estimate.as_ref()?))).collect();
    OutTable::new("wallet_estimates")
        .str("wallet_id", false, est.iter().map(|(w, _)| s(&w.wallet_id)))
        .str("account_id", false, est.iter().map(|(w, _)| s(&w.account_id)))
        .dec("balance", false, est.iter().map(|(w, e)| Some(with_minor_scale(e.balance, w.minor))))
        .dec("daily_consumption", false, est.iter().map(|(_, e)| Some(e.daily)))
        .int("days_remaining", true, est.iter().map(|(_, e)| e.days_remaining))
        .date("depletion_date", true, est.iter().map(|(_, e)| e.depletion_date))
        .str("class", false, est.iter().map(|(_, e)| s(e.class.as_str())))
}

pub(super) fn events_table(name: &'static str, ev: &[&Event]) -> OutTable {
    OutTable::new(name)
        .str("event_id", false, ev.iter().map(|e| s(&e.event_id)))
        .str("subscription_id", false, ev.iter().map(|e| s(&e.subscription_id)))
        .str("source", false, ev.iter().map(|e| s(&e.source)))
        .str("event_type", false, ev.iter().map(|e| s(e.event_type.as_str())))
        .ts("event_time", false, ev.iter().map(|e| Some(e.event_time)))
        .ts("expires_at", true, ev.iter().map(|e| e.expires_at))
        .str("to_account_id", true, ev.iter().map(|e| e.to_account_id.clone()))
        .dec("amount", true, ev.iter().map(|e| e.amount))
        .str("currency", true, ev.iter().map(|e| e.currency.clone()))
        .str("payment_status", true, ev.iter().map(|e| e.payment_status.clone()))
}

#[derive(Default)]
pub(super) struct PayCols<'a> {
    pub(super) event_id: Vec<Option<&'a str>>,
    pub(super) subscription_id: Vec<Option<&'a str>>,
    pub(super) account_id: Vec<Option<&'a str>>,
    pub(super) source: Vec<Option<&'a str>>,
    pub(super) event_type: Vec<Option<&'a str>>,
    pub(super) event_time: Vec<Option<Micros>>,
    pub(super) amount: Vec<Option<Decimal>>,
    pub(super) currency: Vec<Option<&'a str>>,
    pub(super) payment_status: Vec<Option<&'a str>>,
    pub(super) as_of: Vec<Option<NaiveDate>>,
}

impl<'a> PayCols<'a> {
    pub(super) fn push(&mut self, e: &'a Event, account: &'a str, as_of: NaiveDate) {
        self.event_id.push(s(&e.event_id));
        self.subscription_id.push(s(&e.subscription_id));
        self.account_id.push(s(account));
        self.source.push(s(&e.source));
        self.event_type.push(s(e.event_type.as_str()));
        self.event_time.push(Some(e.event_time));
        self.amount.push(e.amount);
        self.currency.push(e.currency.as_deref());
        self.payment_status.push(e.payment_status.as_deref());
        self.as_of.push(Some(as_of));
    }
    pub(super) fn finish(self) -> OutTable {
        OutTable::new("external_payments")
            .str("event_id", false, self.event_id)
            .str("subscription_id", false, self.subscription_id)
            .str("account_id", false, self.account_id)
            .str("source", false, self.source)
            .str("event_type", false, self.event_type)
            .ts("event_time", false, self.event_time)
            .dec("amount", true, self.amount)
            .str("currency", true, self.currency)
            .str("payment_status", true, self.payment_status)
            .date("as_of", false, self.as_of)
    }
}
