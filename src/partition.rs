//! Partitioning: group the validated rows into independent accounts (the unit of
//! parallelism), each holding its wallet, credits and billable INTERNAL subscriptions in
//! the order SPEC §4 processes them.
//!
//! (Shards of a run, SPEC §10.1, are to route accounts by `pmod(xxhash64(account_id), N)`
//! before the run; within a run every account is here.)

use crate::domain::*;
use crate::rating::pricing::line::Applied;
use crate::rating::{AccountIn, ItemIn, SubIn};
use crate::validate::{group_csr, ItemState, State};
use rust_decimal::Decimal;

/// Which rows make up each account, as index arrays (CSR): wallets in `wallet_id` order,
/// each with its credits in (received_at, credit_id) order and its billable INTERNAL
/// subscriptions in subscription_id order, each with its billable items in item_no order.
/// About 4 bytes per row; the [`AccountIn`]s themselves are built a chunk at a time by
/// [`Plan::accounts`] while rating, never all at once.
pub struct Plan<'a> {
    st: &'a State,
    credits: &'a [Credit],
    usage_qty: &'a [Decimal],
    usage_detail: &'a UsageDetails,
    /// Wallet index per account position.
    pub wallets: Vec<u32>,
    /// Credit indices grouped by account; account p's are `credit_idx[credit_at[p]..credit_at[p+1]]`.
    credit_idx: Vec<u32>,
    credit_at: Vec<u32>,
    /// Subscription indices grouped by account, likewise.
    sub_idx: Vec<u32>,
    sub_at: Vec<u32>,
    /// Item indices grouped by position in `sub_idx`, likewise.
    item_idx: Vec<u32>,
    item_at: Vec<u32>,
}

impl<'a> Plan<'a> {
    /// (Every sort key is unique — ids, or `item_no` within a subscription — so the unstable
    /// parallel sorts give one order on any thread count.)
    pub fn new(
        st: &'a State,
        credits: &'a [Credit],
        credit_wallet: &[usize],
        usage_qty: &'a [Decimal],
        usage_detail: &'a UsageDetails,
    ) -> Plan<'a> {
        use rayon::prelude::*;
        // The three sorts side by side (a parallel sort's first partition runs on one thread).
        let wallets_sorted = || {
            let mut w: Vec<u32> = (0..st.wallets.len() as u32).collect();
            sort_order(&mut w, |a, b| st.wallets[a as usize].wallet_id.cmp(&st.wallets[b as usize].wallet_id));
            w
        };
        // Sorted with each credit's time beside its index: a comparison reads a credit's
        // row only on a tie of times (millions of credits at 10M accounts, each read a
        // cache miss).
        let credits_sorted = || {
            let mut by_time: Vec<(Micros, u32)> =
                credits.par_iter().enumerate().map(|(i, c)| (c.received_at, i as u32)).collect();
            by_time.par_sort_unstable_by(|x, y| {
                x.0.cmp(&y.0).then_with(|| credits[x.1 as usize].credit_id.cmp(&credits[y.1 as usize].credit_id))
            });
            by_time.into_iter().map(|(_, i)| i).collect::<Vec<u32>>()
        };
        // Billable INTERNAL subscriptions, by account in subscription_id order.
        let subs_sorted = || {
            let mut subs: Vec<u32> = (0..st.subs.len() as u32)
                .into_par_iter()
                .filter(|&si| {
                    let s = &st.subs[si as usize];
                    s.is_internal() && st.sub_ok[si as usize] && st.wallet_of_sub(si as usize).is_some()
                })
                .collect();
            sort_order(&mut subs, |x, y| {
                st.subs[x as usize].subscription_id.as_bytes().cmp(st.subs[y as usize].subscription_id.as_bytes())
            });
            subs
        };
        let (wallets, (by_time, subs)) = rayon::join(wallets_sorted, || rayon::join(credits_sorted, subs_sorted));
        // wallet index -> account position (u32 like every index here: these tables are
        // tens of millions of entries at 10M accounts, each page of them one the kernel zeroes)
        let mut pos = vec![0u32; st.wallets.len()];
        for (p, &w) in wallets.iter().enumerate() {
            pos[w as usize] = p as u32;
        }
        let n = wallets.len();
        let (credit_idx, credit_at) = group_csr_by(n, &by_time, |c| pos[credit_wallet[c as usize]] as usize);

        let account_of = |si: u32| pos[st.wallet_of_sub(si as usize).expect("filtered above")] as usize;
        let (sub_idx, sub_at) = group_csr_by(n, &subs, account_of);
        // subscription index -> its position in `sub_idx` (NO_SLOT: not billable)
        const NO_SLOT: u32 = u32::MAX;
        let mut sub_slot = vec![NO_SLOT; st.subs.len()];
        for (k, &si) in sub_idx.iter().enumerate() {
            sub_slot[si as usize] = k as u32;
        }
        // Each item's subscription slot, or NO_SLOT for an item not billed (one vector
        // computed on the pool, then grouped: no filtered copy of the item indices).
        let slot: Vec<u32> = (0..st.items.len())
            .into_par_iter()
            .with_min_len(4096)
            .map(|ii| {
                let billable = st.item_state[ii] == ItemState::Billable && st.item_service(ii).is_some();
                st.item_sub(ii).filter(|_| billable).map_or(NO_SLOT, |si| sub_slot[si])
            })
            .collect();
        // Grouped by subscription in row order, then each subscription's few items put in
        // `item_no` order (unique within it; usually already so) — not one sort of every
        // item by `item_no`, which read each item's row per comparison.
        let billed = slot.iter().enumerate().filter(|(_, &g)| g != NO_SLOT);
        let (mut item_idx, item_at) = group_csr(sub_idx.len(), billed.map(|(ii, &g)| (ii as u32, g as usize)));
        let no = |ii: &u32| st.items[*ii as usize].item_no;
        for_each_group(&mut item_idx, &item_at, |g| {
            if !g.is_sorted_by_key(no) {
                g.sort_unstable_by_key(no);
            }
        });
        Plan {
            st,
            credits,
            usage_qty,
            usage_detail,
            wallets,
            credit_idx,
            credit_at,
            sub_idx,
            sub_at,
            item_idx,
            item_at,
        }
    }

    pub fn len(&self) -> usize {
        self.wallets.len()
    }

    /// The wallet of account position `p`.
    pub fn wallet(&self, p: usize) -> &'a Wallet {
        &self.st.wallets[self.wallets[p] as usize]
    }

    /// The accounts at positions `range`, in order (built in parallel).
    pub fn accounts(&self, range: std::ops::Range<usize>) -> Vec<AccountIn<'a>> {
        use rayon::prelude::*;
        let st = self.st;
        range
            .into_par_iter()
            .with_min_len(256)
            .map(|p| {
                let span = |at: &[u32], k: usize| at[k] as usize..at[k + 1] as usize;
                let credits =
                    self.credit_idx[span(&self.credit_at, p)].iter().map(|&c| &self.credits[c as usize]).collect();
                let subs = span(&self.sub_at, p)
                    .map(|k| {
                        let si = self.sub_idx[k] as usize;
                        let items = self.item_idx[span(&self.item_at, k)]
                            .iter()
                            .map(|&ii| {
                                let ii = ii as usize;
                                let sv = st.item_service(ii).unwrap_or(0);
                                let (item, service) = (&st.items[ii], &st.services[sv]);
                                // The effective tax code, checked against the rates already.
                                let tax =
                                    item.tax_code().or(service.tax_code()).and_then(|c| Some((c, st.pricing.rate(c)?)));
                                ItemIn {
                                    idx: ii,
                                    item,
                                    service,
                                    usage_qty: self.usage_qty[ii],
                                    usage: self.usage_detail.of(ii),
                                    tax,
                                }
                            })
                            .collect();
                        let discounts = st
                            .pricing
                            .discounts_of(si)
                            .iter()
                            .map(|&k| Applied {
                                idx: k as usize,
                                d: &st.pricing.discounts.as_deref().unwrap_or(&[])[k as usize],
                            })
                            .collect();
                        SubIn { idx: si, sub: &st.subs[si], items, discounts }
                    })
                    .collect();
                AccountIn { wallet: self.wallet(p), wallet_idx: self.wallets[p] as usize, credits, subs }
            })
            .collect()
    }
}

/// Sort `order` (row indices) by `cmp`, a total order of the rows' unique keys, unless they
/// already are in that order (a previous run's state is written sorted, and most of a
/// generated one is): then it costs one parallel pass of comparisons. Otherwise a merge
/// sort, which takes the sorted stretches of a nearly sorted table in linear time.
pub(crate) fn sort_order(order: &mut [u32], cmp: impl Fn(u32, u32) -> std::cmp::Ordering + Sync) {
    use rayon::prelude::*;
    if order.par_windows(2).all(|w| cmp(w[0], w[1]).is_le()) {
        return;
    }
    order.par_sort_by(|&a, &b| cmp(a, b));
}

/// [`group_csr`] of `members`, each in group `group_of(member)`: the groups (lookups at
/// random into tables of millions) computed once, on the pool, not once per counting pass.
fn group_csr_by(groups: usize, members: &[u32], group_of: impl Fn(u32) -> usize + Sync) -> (Vec<u32>, Vec<u32>) {
    use rayon::prelude::*;
    let of: Vec<u32> = members.par_iter().with_min_len(4096).map(|&m| group_of(m) as u32).collect();
    group_csr(groups, members.iter().zip(&of).map(|(&m, &g)| (m, g as usize)))
}

/// Run `f` on every group of a CSR array (`idx[at[g]..at[g + 1]]`), the groups split into
/// runs of about equal size handed to the pool.
fn for_each_group(idx: &mut [u32], at: &[u32], f: impl Fn(&mut [u32]) + Sync) {
    use rayon::prelude::*;
    let groups = at.len().saturating_sub(1);
    let runs = (rayon::current_num_threads() * 8).clamp(1, groups.max(1));
    let mut parts: Vec<(&mut [u32], &[u32])> = Vec::with_capacity(runs);
    let mut rest = idx;
    let mut done = 0usize;
    for r in 0..runs {
        let (g0, g1) = (groups * r / runs, groups * (r + 1) / runs);
        let end = at[g1] as usize;
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(end - done);
        parts.push((head, &at[g0..=g1]));
        rest = tail;
        done = end;
    }
    parts.into_par_iter().for_each(|(slice, at)| {
        let base = at[0] as usize;
        for w in at.windows(2) {
            f(&mut slice[w[0] as usize - base..w[1] as usize - base]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sort_order` orders indices by the keys they point at, whether they came sorted,
    /// nearly sorted or shuffled.
    #[test]
    fn sort_order_sorts_by_the_keys() {
        let keys = ["d", "a", "c", "b", "e"];
        let by_key = |a: u32, b: u32| keys[a as usize].cmp(keys[b as usize]);
        for start in [vec![0u32, 1, 2, 3, 4], vec![1, 3, 2, 0, 4], vec![4, 3, 2, 1, 0], vec![], vec![2]] {
            let mut o = start.clone();
            sort_order(&mut o, by_key);
            let mut want = start;
            want.sort_by_key(|&i| keys[i as usize]);
            assert_eq!(o, want);
        }
    }

    /// `for_each_group` hands `f` every group exactly once, however many groups there are
    /// against the runs the pool gets (none, fewer than the runs, many; empty groups too).
    #[test]
    fn for_each_group_reaches_every_group_once() {
        for groups in [0usize, 1, 3, 17, 1000] {
            let members: Vec<(u32, usize)> =
                (0..groups * 3).filter(|m| m % 7 != 3).map(|m| ((m * 31 % 97) as u32, m % groups.max(1))).collect();
            let (mut idx, at) = group_csr(groups, members.iter().copied());
            let before = idx.clone();
            let seen = std::sync::atomic::AtomicUsize::new(0);
            for_each_group(&mut idx, &at, |g| {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                g.sort_unstable();
            });
            assert_eq!(seen.into_inner(), groups);
            for g in 0..groups {
                let (lo, hi) = (at[g] as usize, at[g + 1] as usize);
                let mut want = before[lo..hi].to_vec();
                want.sort_unstable();
                assert_eq!(idx[lo..hi], want[..], "group {g}");
            }
        }
    }
}
