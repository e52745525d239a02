//! Partitioning: group the validated rows into independent accounts (the unit of
//! parallelism), each holding its wallet, credits and billable INTERNAL subscriptions in
//! the order SPEC §4 processes them.
//!
//! A future shard is a run over a subset of accounts: [`shard_of`] is the stable hash that
//! will decide which shard owns an account.

use crate::model::*;
use crate::rate::{AccountIn, ItemIn, SubIn};
use crate::validate::{ItemState, State};
use rust_decimal::Decimal;

/// Build one [`AccountIn`] per wallet, in `wallet_id` order.
pub fn accounts<'a>(
    st: &'a State,
    credits: &'a [Credit],
    credit_wallet: &[usize],
    usage_qty: &[Decimal],
) -> Vec<AccountIn<'a>> {
    let mut order: Vec<usize> = (0..st.wallets.len()).collect();
    order.sort_by(|&a, &b| st.wallets[a].wallet_id.cmp(&st.wallets[b].wallet_id));
    // wallet index -> position in `order`
    let mut pos = vec![0usize; st.wallets.len()];
    for (p, &w) in order.iter().enumerate() {
        pos[w] = p;
    }
    let mut out: Vec<AccountIn<'a>> =
        order.iter().map(|&w| AccountIn { wallet: &st.wallets[w], credits: Vec::new(), subs: Vec::new() }).collect();
    for (c, &w) in credits.iter().zip(credit_wallet) {
        out[pos[w]].credits.push(c);
    }
    for a in &mut out {
        a.credits.sort_by(|x, y| (x.received_at, &x.credit_id).cmp(&(y.received_at, &y.credit_id)));
    }
    // Billable INTERNAL subscriptions with their billable items.
    let mut sub_slot: Vec<Option<(usize, usize)>> = vec![None; st.subs.len()];
    for (si, s) in st.subs.iter().enumerate() {
        if !s.is_internal() || !st.sub_ok[si] {
            continue;
        }
        let Some(&w) = st.wallet_by_account.get(&s.account_id) else {
            continue;
        };
        let a = &mut out[pos[w]];
        sub_slot[si] = Some((pos[w], a.subs.len()));
        a.subs.push(SubIn { idx: si, sub: s, items: Vec::new() });
    }
    for (ii, it) in st.items.iter().enumerate() {
        if st.item_state[ii] != ItemState::Billable {
            continue;
        }
        let (Some(si), Some(sv)) = (st.item_sub[ii], st.item_service[ii]) else {
            continue;
        };
        let Some((a, k)) = sub_slot[si] else { continue };
        out[a].subs[k].items.push(ItemIn { idx: ii, item: it, service: &st.services[sv], usage_qty: usage_qty[ii] });
    }
    for a in &mut out {
        a.subs.sort_by(|x, y| x.sub.subscription_id.as_bytes().cmp(y.sub.subscription_id.as_bytes()));
        for s in &mut a.subs {
            s.items.sort_by_key(|i| i.item.item_no);
        }
    }
    out
}

/// Stable shard of an account (FNV-1a over the id): the same on every machine and release.
pub fn shard_of(account_id: &str, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in account_id.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as u32
}
