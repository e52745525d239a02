//! The rating results folded in, account by account in `wallet_id` order: each wallet's
//! invariants checked, the next state's changes, the lists and the totals per currency.

use super::*;

/// A row of `disconnections` or `reconnections`, compact (40 bytes, not a copy of its
/// strings): the subscription's row in the state, whose ids, account (after transfers) and
/// wallet are looked up when the table is built.
pub(super) struct ListRow {
    pub(super) sub: u32,
    pub(super) reason: ListReason,
    /// The wallet's balance after the run; None for a store-managed subscription.
    pub(super) balance: Option<Decimal>,
}

/// Check the per-wallet invariants: `opening + credits + usage_credits − debits = closing`,
/// the `balance_after` chain, and every priced line's `amount = list − discount (+ tax)`.
pub(super) fn check_invariants(acct: &AccountIn, out: &AccountOut) -> Result<()> {
    let w = acct.wallet;
    let mut bal = w.balance;
    for t in &out.txns {
        // > 0, except a fully discounted line's 0 (SPEC §9.6).
        let fully_discounted = t.amount.is_zero() && !t.discount_amount().is_zero();
        if t.amount < Decimal::ZERO || (t.amount.is_zero() && !fully_discounted) {
            return Err(Error::Invariant(format!(
                "wallet {}: transaction {} has amount {}",
                w.wallet_id, t.n, t.amount
            )));
        }
        let net_of_discount = t.list_amount() - t.discount_amount();
        if t.kind != TxnKind::Credit && t.amount != net_of_discount && t.amount != net_of_discount + t.tax_amount() {
            return Err(Error::Invariant(format!(
                "wallet {}: transaction {} amount {} is not list - discount (+ tax)",
                w.wallet_id, t.n, t.amount
            )));
        }
        bal = match t.direction {
            Direction::Credit => bal + t.amount,
            Direction::Debit => bal - t.amount,
        };
        if bal != t.balance_after {
            return Err(Error::Invariant(format!("wallet {}: balance_after chain breaks at {}", w.wallet_id, t.n)));
        }
    }
    let debits = out.debits.total();
    if w.balance + out.credits + out.priced.usage_credits - debits != out.closing || bal != out.closing {
        return Err(Error::Invariant(format!(
            "wallet {}: opening + credits + usage_credits - debits != closing",
            w.wallet_id
        )));
    }
    Ok(())
}

/// Item key -> item index, and per item the (account, n) of its POST_RATE transaction.
pub(super) type LineageIndex<'a> = (rustc_hash::FxHashMap<(&'a str, i64), u32>, Vec<Option<(u32, u32)>>);

/// The rating results folded in chunk by chunk, in account order: the next-state changes
/// of subscriptions and items, the lists and the totals. What is in account order already
/// (the transactions, the wallets' closing balances, the estimates) is not kept: each
/// chunk's rows are written as they are rated ([`RatedWriters`]) and dropped.
pub struct Books<'a> {
    pub(super) status: Vec<Status>,
    pub(super) billed: Vec<Option<NaiveDate>>,
    /// The items' pricing-period states the run changed (SPEC §9.3): (item, state), in
    /// account order (sorted by item when assembled).
    pub(super) periods: Vec<(u32, PeriodState)>,
    /// The AMOUNT budgets the run drew on (SPEC §9.4), by discount.
    pub(super) remaining: rustc_hash::FxHashMap<u32, Decimal>,
    pub(super) disc: Vec<ListRow>,
    pub(super) reco: Vec<ListRow>,
    pub(super) totals: BTreeMap<String, Totals>,
    pub(super) n_tx: u64,
    pub(super) n_estimates: u64,
    /// With lineage: item key -> item index, and per item its POST_RATE (account, n).
    pub(super) lineage: Option<LineageIndex<'a>>,
}

impl<'a> Books<'a> {
    pub fn new(st: &'a State, lineage: bool) -> Books<'a> {
        // Parallel walks: the state's rows are large, and this is the rate phase's first step.
        let (status, billed) = rayon::join(
            || st.subs.par_iter().map(|s| s.status).collect(),
            || st.items.par_iter().map(|i| i.billed_through).collect(),
        );
        Books {
            status,
            billed,
            // Room for every billable item with a pricing period (no doubling of a vector of
            // a million states).
            periods: Vec::with_capacity(
                (0..st.items.len())
                    .take(if st.services.iter().any(|s| s.pricing_period().is_some()) { usize::MAX } else { 0 })
                    .filter(|&i| {
                        st.item_state[i] == crate::validate::ItemState::Billable
                            && st.item_service(i).is_some_and(|v| st.services[v].pricing_period().is_some())
                    })
                    .count(),
            ),
            remaining: Default::default(),
            disc: Vec::new(),
            reco: Vec::new(),
            totals: BTreeMap::new(),
            n_tx: 0,
            n_estimates: 0,
            lineage: lineage.then(|| {
                let keys =
                    st.items.iter().enumerate().map(|(i, it)| ((it.subscription_id.as_str(), it.item_no), i as u32));
                (keys.collect(), vec![None; st.items.len()])
            }),
        }
    }

    /// Fold in the results of `accounts`, the accounts at positions `first ..` (checking each
    /// wallet's invariants).
    pub fn absorb(&mut self, accounts: &[AccountIn<'a>], first: usize, rated: Vec<AccountOut<'a>>) -> Result<()> {
        for (k, r) in rated.into_iter().enumerate() {
            let ai = first + k;
            let a = &accounts[k];
            check_invariants(a, &r)?;
            let w = a.wallet;
            self.n_tx += r.txns.len() as u64;
            if !self.totals.contains_key(w.currency.as_str()) {
                self.totals.insert(w.currency.to_string(), Totals::default());
            }
            let Some(t) = self.totals.get_mut(w.currency.as_str()) else { unreachable!("inserted above") };
            t.add(w.balance, &r);
            for (i, st_) in &r.status {
                self.status[*i] = *st_;
            }
            for (i, d) in &r.billed_through {
                self.billed[*i] = Some(*d);
            }
            self.periods.extend(r.periods.iter().map(|(i, p)| (*i as u32, p.clone())));
            for (k, left) in &r.remaining {
                self.remaining.insert(*k as u32, *left);
            }
            for (list, entries) in [(&mut self.disc, &r.disconnections), (&mut self.reco, &r.reconnections)] {
                for e in entries {
                    list.push(ListRow {
                        sub: e.sub_idx as u32,
                        reason: e.reason,
                        balance: Some(with_minor_scale(e.balance, w.minor)),
                    });
                }
            }
            self.n_estimates += u64::from(r.estimate.is_some());
            if let Some((keys, charged)) = &mut self.lineage {
                for t in r.txns.iter().filter(|t| t.kind == TxnKind::PostRate) {
                    if let (Some(sid), Some(no)) = (t.subscription_id, t.item_no) {
                        if let Some(&ii) = keys.get(&(sid, no)) {
                            charged[ii as usize] = Some((ai as u32, t.n));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
