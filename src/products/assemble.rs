//! Everything the output tables are made of, in output order: the rating results applied to
//! the state, the store-managed subscriptions' changes, the rows' orders by key, and the
//! writing of every table that is not written while rating.

use super::books::{Books, ListRow};
use super::chunked::*;
use super::tables::*;
use super::*;

/// Everything the output tables are made of, in output order, borrowing the run's data.
/// Tables are built from it a chunk at a time, so memory stays bounded by the compact
/// per-row vectors here rather than by the text of every output row.
pub struct Assembled<'a> {
    b: BuildInput<'a>,
    status: Vec<Status>,
    /// Per subscription, its entry in `b.ext` (a store-managed one's events applied), or
    /// [`NO_EXT`]: where `expires_at` and `account_id` come from after the run.
    ext_of: Vec<u32>,
    billed: Vec<Option<NaiveDate>>,
    /// (item, pricing-period state after the run), sorted by item.
    periods: Vec<(u32, PeriodState)>,
    remaining: rustc_hash::FxHashMap<u32, Decimal>,
    disc: Vec<ListRow>,
    reco: Vec<ListRow>,
    /// With lineage: per item, the (account index, n) of its POST_RATE transaction.
    charged: Option<Vec<Option<(u32, u32)>>>,
    payments: Vec<(&'a Event, &'a str)>,
    deferred_events: Vec<&'a Event>,
    service_order: Vec<u32>,
    sub_order: Vec<u32>,
    item_order: Vec<u32>,
    usage_order: Vec<u32>,
    reject_order: Vec<u32>,
    pub products: Products,
}

/// [`Assembled::ext_of`] of a subscription with no store events applied.
pub(super) const NO_EXT: u32 = u32::MAX;

/// Apply the rating results, check the invariants and compute the totals.
pub fn assemble<'a>(b: BuildInput<'a>, books: Books<'a>) -> Result<Assembled<'a>> {
    let st = b.state;
    let Books {
        mut status,
        billed,
        mut periods,
        remaining,
        mut disc,
        mut reco,
        totals,
        n_tx,
        n_estimates,
        lineage,
        ..
    } = books;
    // By item, for the items table's lookups (an item is rated at most once).
    periods.par_sort_unstable_by_key(|p| p.0);
    // The store-managed subscriptions' changes are looked up where they are (a copy of
    // every subscription's expiry and account, 32 bytes each, was fresh pages to zero).
    let mut ext_of = vec![NO_EXT; st.subs.len()];
    let mut p = Products { totals, ..Products::default() };
    let mut payments = Vec::new();
    let mut deferred_events: Vec<&Event> = Vec::new();
    for (k, (i, o)) in b.ext.iter().enumerate() {
        status[*i] = o.status;
        ext_of[*i] = k as u32;
        if let Some((is_reco, reason)) = o.change {
            let row = ListRow { sub: *i as u32, reason, balance: None };
            if is_reco {
                reco.push(row)
            } else {
                disc.push(row)
            }
        }
        for &(e, acc) in &o.payments {
            payments.push((e, acc));
            let t = p
                .payments
                .entry(e.source.to_string())
                .or_default()
                .entry(e.currency.as_deref().unwrap_or_default().to_string())
                .or_default()
                .entry(e.payment_status.as_deref().unwrap_or_default().to_string())
                .or_default();
            t.count += 1;
            t.amount += e.amount.unwrap_or_default();
        }
        deferred_events.extend(o.deferred.iter().copied());
    }
    for r in &b.intake.rejects {
        *p.rejects_by_reason.entry(r.reason.as_str()).or_default() += 1;
    }

    // Per-currency conservation.
    for (cur, t) in &p.totals {
        if t.opening + t.credits + t.priced.usage_credits - t.debit_total() != t.closing {
            return Err(Error::Invariant(format!("{cur}: opening + credits + usage_credits - debits != closing")));
        }
    }
    p.n_transactions = n_tx;
    p.n_disconnections = disc.len() as u64;
    p.n_reconnections = reco.len() as u64;
    p.n_estimates = n_estimates;
    p.n_payments = payments.len() as u64;

    // The output orders, sorted side by side: a parallel sort's first partition runs on one
    // thread, and one sort after another left the other thread idle at every start.
    // (Keys are unique in each, so every sort gives one order. The state's tables come
    // nearly sorted, a previous run's wholly: merge sorts for them, which take sorted
    // stretches in linear time where a quicksort partitions them all.)
    let rj = &b.intake.rejects;
    let items_sorted = || {
        let mut o: Vec<u32> = (0..st.items.len() as u32).collect();
        crate::partition::sort_order(&mut o, |a, b| {
            let (x, y) = (&st.items[a as usize], &st.items[b as usize]);
            (x.subscription_id.as_bytes(), x.item_no).cmp(&(y.subscription_id.as_bytes(), y.item_no))
        });
        o
    };
    let rejects_sorted = || {
        let mut o: Vec<u32> = (0..rj.len() as u32).collect();
        o.par_sort_unstable_by_key(|&i| (rj[i as usize].file_ord, rj[i as usize].row));
        o
    };
    // The lists follow the subscriptions' order: each row's key is its subscription's rank
    // in it (a subscription is on a list at most once), an integer sort instead of id
    // comparisons through the state (a cache miss each, on one thread while the other
    // thread waited).
    let subs_and_lists = || {
        let sub_order = sorted_by(&st.subs, |x| x.subscription_id.as_bytes());
        let mut rank = vec![0u32; sub_order.len()];
        for (k, &si) in sub_order.iter().enumerate() {
            rank[si as usize] = k as u32;
        }
        let by_rank = |list: &mut Vec<ListRow>| list.par_sort_unstable_by_key(|r| rank[r.sub as usize]);
        rayon::join(|| by_rank(&mut disc), || by_rank(&mut reco));
        sub_order
    };
    let events_sorted = || deferred_events.sort_by(|a, b| a.event_id.as_bytes().cmp(b.event_id.as_bytes()));
    let ((item_order, sub_order), ((usage_order, reject_order), ())) = rayon::join(
        || rayon::join(items_sorted, subs_and_lists),
        || {
            rayon::join(
                || rayon::join(|| sorted_by(b.deferred_usage, |x| x.usage_id.as_bytes()), rejects_sorted),
                events_sorted,
            )
        },
    );
    Ok(Assembled {
        service_order: sorted_by(&st.services, |x| x.service_id.as_bytes()),
        sub_order,
        usage_order,
        item_order,
        reject_order,
        b,
        status,
        ext_of,
        billed,
        periods,
        remaining,
        disc,
        reco,
        charged: lineage.map(|l| l.1),
        payments,
        deferred_events,
        products: p,
    })
}

impl<'a> Assembled<'a> {
    /// Subscription `i`'s account after the run (a transfer moves a store-managed one).
    fn account(&self, i: usize) -> &'a str {
        match self.ext_of[i] {
            NO_EXT => self.b.state.subs[i].account_id.as_str(),
            k => self.b.ext[k as usize].1.account_id,
        }
    }

    /// Subscription `i`'s `expires_at` after the run.
    fn expires(&self, i: usize) -> Option<Micros> {
        match self.ext_of[i] {
            NO_EXT => self.b.state.subs[i].expires_at,
            k => self.b.ext[k as usize].1.expires_at,
        }
    }

    /// Write every published table but those written while rating (their files given in
    /// `rated`); returns all the files in a fixed order.
    pub fn write_tables(&self, d: Dest, lineage: bool, rated: RatedFiles) -> Result<Vec<OutFile>> {
        let st = self.b.state;
        let as_of = self.b.as_of;
        let mut tables: Vec<Chunked> = Vec::new();

        tables.push(Chunked::new(self.service_order.len(), move |r| {
            let sv: Vec<&Service> = self.service_order[r].iter().map(|&i| &st.services[i as usize]).collect();
            let t = OutTable::new("services")
                .str("service_id", false, sv.iter().map(|x| s(&x.service_id)))
                .str("billing_method", false, sv.iter().map(|x| s(x.billing_method.as_str())))
                .dec("price", false, sv.iter().map(|x| Some(x.price)))
                .str("currency", false, sv.iter().map(|x| s(&x.currency)))
                .str("rate_period", true, sv.iter().map(|x| x.rate_period.as_ref().map(|p| p.text.as_str())))
                .str("advance_period", true, sv.iter().map(|x| x.advance_period.as_ref().map(|p| p.text.as_str())))
                .dec("unit_size", true, sv.iter().map(|x| x.unit_size));
            if !st.pricing.services_v2 {
                return t;
            }
            // SPEC v2 §9.1's columns, when the input had them.
            fn p<'s>(x: &&'s Service) -> Option<&'s ServicePricing> {
                x.pricing.as_deref()
            }
            t.str("pricing_model", true, sv.iter().map(|x| p(x).and_then(|p| p.model).map(|m| m.as_str())))
                .dec("free_units", true, sv.iter().map(|x| p(x).and_then(|p| p.free_units)))
                .str(
                    "pricing_period",
                    true,
                    sv.iter().map(|x| p(x).and_then(|p| p.pricing_period.as_ref()).map(|p| p.text.as_str())),
                )
                .dec("txn_fee", true, sv.iter().map(|x| p(x).and_then(|p| p.txn_fee)))
                .dec("txn_min", true, sv.iter().map(|x| p(x).and_then(|p| p.txn_min)))
                .dec("txn_max", true, sv.iter().map(|x| p(x).and_then(|p| p.txn_max)))
                .str("tax_code", true, sv.iter().map(|x| p(x).and_then(|p| p.tax_code.as_deref())))
                .bool("price_includes_tax", true, sv.iter().map(|x| p(x).and_then(|p| p.price_includes_tax)))
        }));

        tables.push(Chunked::new(self.sub_order.len(), move |r| {
            let idx = || self.sub_order[r.clone()].iter().map(|&i| i as usize);
            OutTable::par_columns(
                "subscriptions",
                &[
                    &|| OutCol::str("subscription_id", false, idx().map(|i| s(&st.subs[i].subscription_id))),
                    &|| OutCol::str("account_id", false, idx().map(|i| s(self.account(i)))),
                    &|| OutCol::str("source", false, idx().map(|i| s(&st.subs[i].source))),
                    &|| OutCol::str("status", false, idx().map(|i| s(self.status[i].as_str()))),
                    &|| OutCol::ts("expires_at", true, idx().map(|i| self.expires(i))),
                ],
            )
        }));

        tables.push(Chunked::new(self.item_order.len(), move |r| {
            let idx = &self.item_order[r];
            let it = |i: u32| &st.items[i as usize];
            // The pricing-period state after the run (SPEC §9.3): the run's, else as read.
            let changed = |i: u32| self.periods.binary_search_by_key(&i, |p| p.0).ok().map(|k| &self.periods[k].1);
            let period = |i: u32| changed(i).or_else(|| it(i).period());
            let tax_code = || OutCol::str("tax_code", true, idx.iter().map(|&i| it(i).tax_code()));
            let with_tax_code: &[&(dyn Fn() -> OutCol + Sync)] =
                if st.pricing.items_tax_code { &[&tax_code] } else { &[] };
            let mut t = OutTable::par_columns(
                "subscription_items",
                &[
                    &|| OutCol::str("subscription_id", false, idx.iter().map(|&i| s(&it(i).subscription_id))),
                    &|| OutCol::int("item_no", false, idx.iter().map(|&i| Some(it(i).item_no))),
                    &|| OutCol::str("service_id", false, idx.iter().map(|&i| s(&it(i).service_id))),
                    &|| OutCol::dec("quantity", true, idx.iter().map(|&i| it(i).quantity)),
                    &|| OutCol::dec("custom_price", true, idx.iter().map(|&i| it(i).custom_price)),
                    &|| OutCol::date("start_date", false, idx.iter().map(|&i| Some(it(i).start_date))),
                    &|| OutCol::date("end_date", true, idx.iter().map(|&i| it(i).end_date)),
                    &|| OutCol::date("billed_through", true, idx.iter().map(|&i| self.billed[i as usize])),
                    &|| OutCol::date("period_start", true, idx.iter().map(|&i| period(i).and_then(|p| p.start))),
                    &|| OutCol::dec("period_quantity", true, idx.iter().map(|&i| period(i).and_then(|p| p.quantity))),
                    &|| OutCol::dec("period_charged", true, idx.iter().map(|&i| period(i).and_then(|p| p.charged))),
                ],
            );
            // The items' tax_code (when the input had it) before the period state, in SPEC
            // §9.1's order.
            let at = t.cols.len() - 3;
            for (k, c) in with_tax_code.iter().enumerate() {
                t.cols.insert(at + k, c());
            }
            t
        }));

        tables.push(Chunked::new(self.usage_order.len(), move |r| {
            let du: Vec<&DeferredUsage> =
                self.usage_order[r].iter().map(|&i| &self.b.deferred_usage[i as usize]).collect();
            let item = |u: &DeferredUsage| &st.items[u.item as usize];
            let service_id = |u: &DeferredUsage| match st.item_service(u.item as usize) {
                Some(sv) => &st.services[sv].service_id,
                None => &item(u).service_id,
            };
            OutTable::par_columns(
                "deferred_usage",
                &[
                    &|| OutCol::str("usage_id", false, du.iter().map(|u| s(&u.usage_id))),
                    &|| OutCol::str("subscription_id", false, du.iter().map(|u| s(&item(u).subscription_id))),
                    // From the services (a handful, in cache), not the items (a miss per row).
                    &|| OutCol::str("service_id", false, du.iter().map(|u| s(service_id(u)))),
                    &|| OutCol::ts("event_time", false, du.iter().map(|u| Some(u.event_time))),
                    &|| OutCol::dec("quantity", false, du.iter().map(|u| Some(u.quantity))),
                ],
            )
        }));

        tables.push(Chunked::new(self.deferred_events.len(), move |r| {
            events_table("deferred_events", &self.deferred_events[r])
        }));

        let st = self.b.state;
        tables.push(Chunked::new(self.disc.len(), move |r| {
            list_table("disconnections", &self.disc[r], st, |i| self.account(i), as_of)
        }));
        tables.push(Chunked::new(self.reco.len(), move |r| {
            list_table("reconnections", &self.reco[r], st, |i| self.account(i), as_of)
        }));

        tables.push(Chunked::new(self.payments.len(), move |r| {
            let mut pay = PayCols::default();
            for &(e, acc) in &self.payments[r] {
                pay.push(e, acc, as_of);
            }
            pay.finish()
        }));

        tables.push(self.rejects());
        if lineage {
            tables.push(self.lineage());
        }
        // SPEC v2 §9.1's state tables, when the state had them (even empty).
        let pricing = &st.pricing;
        if let Some(tiers) = &pricing.tiers {
            tables.push(Chunked::new(tiers.len(), move |r| {
                let t = &tiers[r];
                OutTable::new("price_tiers")
                    .str("service_id", false, t.iter().map(|x| s(&x.0.service_id)))
                    .int("tier_no", false, t.iter().map(|x| Some(x.0.tier_no)))
                    .dec("up_to", true, t.iter().map(|x| x.0.tier.up_to))
                    .dec("unit_price", false, t.iter().map(|x| Some(x.0.tier.unit_price)))
                    .dec("flat_fee", true, t.iter().map(|x| x.0.flat_fee))
            }));
        }
        if let Some(discounts) = &pricing.discounts {
            tables.push(Chunked::new(discounts.len(), move |r| {
                let base = r.start;
                let d = &discounts[r];
                // `remaining` written back for a budget drawn on in the run (SPEC §9.4).
                let remaining = |k: usize| self.remaining.get(&((base + k) as u32)).copied().or(d[k].remaining);
                OutTable::new("discounts")
                    .str("discount_id", false, d.iter().map(|x| s(&x.discount_id)))
                    .str("subscription_id", false, d.iter().map(|x| s(&x.subscription_id)))
                    .int("item_no", true, d.iter().map(|x| x.item_no))
                    .str("kind", false, d.iter().map(|x| s(x.kind.as_str())))
                    .dec("value", false, d.iter().map(|x| Some(x.value)))
                    .dec("remaining", true, (0..d.len()).map(remaining))
                    .date("start_date", false, d.iter().map(|x| Some(x.start_date)))
                    .date("end_date", true, d.iter().map(|x| x.end_date))
            }));
        }
        if let Some(rates) = &pricing.tax_rates {
            tables.push(Chunked::new(rates.len(), move |r| {
                let t = &rates[r];
                OutTable::new("tax_rates")
                    .str("tax_code", false, t.iter().map(|x| s(&x.tax_code)))
                    .dec("rate", false, t.iter().map(|x| Some(x.rate)))
                    .date("valid_from", false, t.iter().map(|x| Some(x.valid_from)))
            }));
        }
        // One table at a time, each encoded column-parallel: tables written side by side
        // would each hold a row group in flight, and a thread waiting on its columns would
        // start yet another table, each holding its row group: the peak grew.
        let mut per_table = write_all(d, &tables)?;
        // In SPEC §5's order (* written while rating): services, wallets*, subscriptions,
        // subscription_items, deferred_usage, deferred_events, wallet_transactions*,
        // disconnections, reconnections, wallet_estimates*, external_payments, rejects
        // (then usage_lineage).
        per_table.insert(1, rated.wallets);
        per_table.insert(6, rated.transactions);
        per_table.insert(9, rated.estimates);
        Ok(per_table.into_iter().flatten().collect())
    }

    /// `usage_lineage`: every usage row rated in this run (new and previously deferred) with
    /// the POST_RATE transaction that charged it, sorted by usage_id. A row whose item's
    /// charge came to no transaction (zero quantity or an amount that rounds to zero) has a
    /// null transaction_id.
    fn lineage(&self) -> Chunked<'_> {
        let st = self.b.state;
        let rows: &[_] = self.b.lineage.map_or(&[], |v| v);
        // Per item: (account index, transaction n) of its POST_RATE line (from the ledger).
        let charged: &[_] = self.charged.as_deref().unwrap_or(&[]);
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_unstable_by(|&a, &b| rows[a].1.as_bytes().cmp(rows[b].1.as_bytes()));
        let (run_id, as_of) = (self.b.run_id, self.b.as_of);
        Chunked::new(order.len(), move |r| {
            let sel: Vec<(&str, &Item, u32)> =
                order[r].iter().map(|&k| (&*rows[k].1, &st.items[rows[k].0 as usize], rows[k].0)).collect();
            let tx = |ii: u32| -> Option<String> {
                let (ai, n) = charged.get(ii as usize).copied().flatten()?;
                Some(format!("{run_id}/{}/{n}", self.b.plan.wallet(ai as usize).wallet_id))
            };
            OutTable::new("usage_lineage")
                .str("usage_id", false, sel.iter().map(|x| s(x.0)))
                .str("subscription_id", false, sel.iter().map(|x| s(&x.1.subscription_id)))
                .int("item_no", false, sel.iter().map(|x| Some(x.1.item_no)))
                .str("service_id", false, sel.iter().map(|x| s(&x.1.service_id)))
                .str("transaction_id", true, sel.iter().map(|x| tx(x.2)))
                .str("run_id", false, sel.iter().map(|_| s(run_id)))
                .date("as_of", false, vec![Some(as_of); sel.len()])
        })
    }

    /// Write the `rejects` table alone (a run stopped by the reject gate).
    pub fn write_rejects(&self, d: Dest) -> Result<Vec<OutFile>> {
        Ok(write_all(d, &[self.rejects()])?.concat())
    }

    fn rejects(&self) -> Chunked<'_> {
        let rj = &self.b.intake.rejects;
        Chunked::new(self.reject_order.len(), move |r| {
            let v: Vec<&crate::validate::Reject> = self.reject_order[r].iter().map(|&i| &rj[i as usize]).collect();
            OutTable::par_columns(
                "rejects",
                &[
                    &|| OutCol::str("table", false, v.iter().map(|r| s(r.table))),
                    &|| OutCol::int("row", false, v.iter().map(|r| Some(r.row as i64))),
                    &|| OutCol::str("file", false, v.iter().map(|r| s(self.b.intake.file_of(r)))),
                    &|| OutCol::str("key", false, v.iter().map(|r| s(&r.key))),
                    &|| OutCol::str("reason", false, v.iter().map(|r| s(r.reason.as_str()))),
                    &|| OutCol::str("detail", false, v.iter().map(|r| s(&r.detail))),
                ],
            )
        })
    }
}
