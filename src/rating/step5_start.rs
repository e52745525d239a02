//! SPEC §4 step 5, the start step: with it on, a DISCONNECTED subscription whose balance
//! (after steps 1–4) is above `reconnection_threshold` is a reconnection candidate. Whether
//! it is reconnected is decided in step 7, once its pre-rate charges are known.

use super::ledger::Ledger;
use super::{AccountIn, SubFlags};
use crate::domain::Status;

/// The account's subscriptions' flags, in `acct.subs` order, with the candidates marked.
pub fn candidates(l: &Ledger, acct: &AccountIn) -> Vec<SubFlags> {
    let steps = l.ctx.steps;
    acct.subs
        .iter()
        .map(|s| SubFlags {
            candidate: steps.start_service
                && s.sub.status == Status::Disconnected
                && l.balance > steps.reconnection_threshold,
            ..SubFlags::default()
        })
        .collect()
}
