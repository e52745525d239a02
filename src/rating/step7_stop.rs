//! SPEC §4 step 7, the stop step and reconnections, on the balance after all of the
//! account's debits: an ACTIVE subscription is disconnected when the balance is at or below
//! `disconnection_threshold`, or when its pre-rate charges were not taken and it is paid
//! only up to today; a candidate whose charges were taken is reconnected.

use super::ledger::Ledger;
use super::{AccountIn, ListEntry, SubFlags};
use crate::domain::{ListReason, Status};

pub fn decide(l: &mut Ledger, acct: &AccountIn, flags: &mut [SubFlags]) {
    let steps = l.ctx.steps;
    let (bal, thr) = (l.balance, steps.disconnection_threshold);
    for (s, f) in acct.subs.iter().zip(flags.iter_mut()) {
        match s.sub.status {
            Status::Active => {
                f.active_after = true;
                if steps.stop_service {
                    let reason = if bal <= thr {
                        Some(ListReason::BalanceAtOrBelowThreshold)
                    } else if !f.covered && f.owed_past {
                        Some(ListReason::PrepaidPeriodNotCovered)
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        f.active_after = false;
                        l.out.status.push((s.idx, Status::Disconnected));
                        l.out.disconnections.push(ListEntry { sub_idx: s.idx, reason, balance: bal });
                    }
                }
            }
            Status::Disconnected if f.candidate && f.covered && (!steps.stop_service || bal > thr) => {
                f.active_after = true;
                l.out.status.push((s.idx, Status::Active));
                l.out.reconnections.push(ListEntry {
                    sub_idx: s.idx,
                    reason: ListReason::BalanceAboveThreshold,
                    balance: bal,
                });
            }
            _ => {}
        }
    }
}
