//! SPEC §4 step 1: every credit of the account is applied, in (`received_at`, `credit_id`)
//! order (the order the account's credits arrive in), as a CREDIT line of its own
//! `transaction_type`.

use super::ledger::Ledger;
use super::{AccountIn, RateError};

pub fn apply<'a>(l: &mut Ledger<'a, '_>, acct: &AccountIn<'a>) -> Result<(), RateError> {
    for c in &acct.credits {
        l.credit(c)?;
    }
    Ok(())
}
