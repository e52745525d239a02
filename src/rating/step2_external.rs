//! Externally managed subscriptions (SPEC §4 step 2): store events in, status out. Pure.
//!
//! They are never rated and never touch a wallet; they are processed per subscription,
//! independently of the wallet accounts (a TRANSFERRED event moves them between accounts).

use crate::domain::*;

pub struct ExtOut<'a> {
    pub status: Status,
    pub expires_at: Option<Micros>,
    pub account_id: &'a str,
    /// Net status change: (is_reconnection, reason).
    pub change: Option<(bool, ListReason)>,
    /// Applied events carrying a payment, with the account they were applied under.
    pub payments: Vec<(&'a Event, &'a str)>,
    /// Events at or after the cutoff, for the next state's `deferred_events`.
    pub deferred: Vec<&'a Event>,
}

/// Apply `events` (already in (`event_time`, `event_id`) order) to `sub`.
pub fn apply_external<'a>(sub: &'a Subscription, events: &[&'a Event], cutoff: Micros) -> ExtOut<'a> {
    let mut out = ExtOut {
        status: sub.status,
        expires_at: sub.expires_at,
        account_id: &sub.account_id,
        change: None,
        payments: Vec::new(),
        deferred: Vec::new(),
    };
    let has_payment = |e: &Event| e.amount.is_some() || e.payment_status.is_some();
    // The reason of the event that last changed the status (SPEC §4 step 2): an event that
    // leaves the status as it is (EXPIRED on a disconnected subscription, RENEWED on an
    // active one) does not replace it.
    // Set by every change of status; read only when the status changed.
    let mut cause = ListReason::ExternalExpired;
    for &e in events {
        if e.event_time >= cutoff {
            // Deferred whatever the status, a TERMINATED subscription's too: a run never
            // consumes (nor reports the payment of) an event dated after its cutoff.
            out.deferred.push(e);
            continue;
        }
        if sub.status == Status::Terminated {
            // Never changed: the event is consumed, its payment still reported.
            if has_payment(e) {
                out.payments.push((e, out.account_id));
            }
            continue;
        }
        // The status the event sets, with the reason it gives when that is a change.
        let set = match e.event_type {
            EventType::Purchased => Some((Status::Active, ListReason::ExternalPurchased)),
            EventType::Renewed => Some((Status::Active, ListReason::ExternalRenewed)),
            EventType::Revived => Some((Status::Active, ListReason::ExternalRevived)),
            EventType::Expired => Some((Status::Disconnected, ListReason::ExternalExpired)),
            EventType::Revoked => Some((Status::Disconnected, ListReason::ExternalRevoked)),
            EventType::Cancelled => None,
            EventType::Transferred => {
                if let Some(to) = e.to_account_id.as_deref() {
                    out.account_id = to;
                }
                None
            }
        };
        if let Some((status, reason)) = set {
            if status == Status::Active {
                out.expires_at = e.expires_at;
            }
            if out.status != status {
                out.status = status;
                cause = reason;
            }
        }
        if has_payment(e) {
            out.payments.push((e, out.account_id));
        }
    }
    if out.status == Status::Active && out.expires_at.is_some_and(|x| x <= cutoff) {
        out.status = Status::Disconnected;
        cause = ListReason::ExternalExpired;
    }
    out.change = match (sub.status, out.status) {
        (Status::Active, Status::Disconnected) => Some((false, cause)),
        (Status::Disconnected, Status::Active) => Some((true, cause)),
        _ => None,
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(status: Status, expires: Option<Micros>) -> Subscription {
        Subscription {
            subscription_id: "S".into(),
            account_id: "A".into(),
            source: "APPLE".into(),
            status,
            expires_at: expires,
        }
    }
    fn ev(id: &str, t: EventType, at: Micros, exp: Option<Micros>) -> Event {
        Event {
            event_id: id.into(),
            subscription_id: "S".into(),
            source: "APPLE".into(),
            event_type: t,
            event_time: at,
            expires_at: exp,
            to_account_id: Some("B".into()),
            amount: None,
            currency: None,
            payment_status: None,
        }
    }

    #[test]
    fn revival_is_a_reconnection_and_expiry_a_disconnection() {
        let s = sub(Status::Disconnected, Some(0));
        let e = ev("e1", EventType::Revived, 10, Some(1000));
        let o = apply_external(&s, &[&e], 100);
        assert_eq!(o.status, Status::Active);
        assert_eq!(o.change, Some((true, ListReason::ExternalRevived)));

        let s = sub(Status::Active, Some(50));
        let o = apply_external(&s, &[], 100);
        assert_eq!(o.change, Some((false, ListReason::ExternalExpired)));
    }

    #[test]
    fn later_events_are_deferred_and_transfer_moves_account() {
        let s = sub(Status::Active, Some(1000));
        let t = ev("e1", EventType::Transferred, 10, None);
        let late = ev("e2", EventType::Revoked, 100, None);
        let o = apply_external(&s, &[&t, &late], 100);
        assert_eq!(o.account_id, "B");
        assert_eq!(o.deferred.len(), 1);
        assert_eq!(o.status, Status::Active);
        assert!(o.change.is_none());
    }
}
