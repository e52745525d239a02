//! A line's discounts and tax (SPEC §9.4, §9.5): from its rounded list amount `L` to the
//! amount the wallet is debited (or, for a usage credit, credited).
//!
//! Pure: the discounts that apply and the AMOUNT budgets arrive as arguments; the budgets
//! are changed in place (the caller keeps a copy when the line may not be taken).

use crate::domain::{Discount, DiscountKind, Rounding};
use rust_decimal::{Decimal, RoundingStrategy};

/// An AMOUNT discount's budget while an account is rated.
#[derive(Clone, Debug)]
pub struct Budget {
    /// The discount's row in the state's `discounts`.
    pub idx: usize,
    /// What is left (`remaining ?? value` at the start of the run).
    pub left: Decimal,
    /// Whether a line took from it or gave back to it (its `remaining` is then written).
    pub touched: bool,
}

/// A discount that applies to the line, with its row in the state.
#[derive(Clone, Copy, Debug)]
pub struct Applied<'a> {
    pub idx: usize,
    pub d: &'a Discount,
}

/// How a line's tax is computed: the code, its rate (percent) and whether prices include it.
#[derive(Clone, Copy, Debug)]
pub struct TaxRule<'a> {
    pub code: &'a str,
    pub rate: Decimal,
    pub inclusive: bool,
}

/// The figures of one priced line, magnitudes (the direction gives the sign).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figures {
    /// `|L|`.
    pub list: Decimal,
    /// `D`.
    pub discount: Decimal,
    pub tax: Decimal,
    /// What moves the balance: `|L| - D` (+ tax when prices exclude it).
    pub amount: Decimal,
    /// The discounts that took a non-zero amount, comma-separated in the order applied.
    pub discount_ids: Option<String>,
    /// Exact minus rounded, of the PERCENT discounts and of the tax.
    pub discount_residual: Decimal,
    pub tax_residual: Decimal,
}

/// The figures of a line of list amount `list` (rounded, a magnitude) after `discounts` (in
/// the order they apply) and `tax`. `credit`: a usage credit (SPEC §9.3), whose AMOUNT
/// discounts give back to their budgets what they took. `minor`: the currency's minor unit.
/// None on an arithmetic overflow.
pub fn figures(
    list: Decimal,
    credit: bool,
    discounts: &[Applied],
    budgets: &mut [Budget],
    tax: Option<TaxRule>,
    rounding: Rounding,
    minor: u32,
) -> Option<Figures> {
    let mut left = list;
    let mut total = Decimal::ZERO;
    let mut ids: Option<String> = None;
    let mut discount_residual = Decimal::ZERO;
    for a in discounts {
        if left.is_zero() {
            break;
        }
        let d = match a.d.kind {
            DiscountKind::Percent => {
                let exact = left.checked_mul(a.d.value)?.checked_div(Decimal::ONE_HUNDRED)?;
                let d = rounding.round(exact, minor);
                discount_residual += exact - d;
                d
            }
            DiscountKind::Amount => {
                let b = budgets.iter_mut().find(|b| b.idx == a.idx)?;
                // What a usage credit may give back is what the budget has lost.
                let room = if credit { a.d.value - b.left } else { b.left };
                let d = left.min(room).round_dp_with_strategy(minor, RoundingStrategy::ToZero).max(Decimal::ZERO);
                if !d.is_zero() {
                    b.left = if credit { b.left + d } else { b.left - d };
                    b.touched = true;
                }
                d
            }
        };
        if d.is_zero() {
            continue;
        }
        left -= d;
        total += d;
        match &mut ids {
            None => ids = Some(a.d.discount_id.to_string()),
            Some(s) => {
                s.push(',');
                s.push_str(&a.d.discount_id);
            }
        }
    }
    let n = left;
    let (tax_amount, amount, tax_residual) = match tax {
        None => (Decimal::ZERO, n, Decimal::ZERO),
        Some(t) if t.inclusive => {
            let gross = Decimal::ONE_HUNDRED.checked_add(t.rate)?;
            let net = rounding.round(n.checked_mul(Decimal::ONE_HUNDRED)?.checked_div(gross)?, minor);
            let exact_tax = n.checked_mul(t.rate)?.checked_div(gross)?;
            (n - net, n, exact_tax - (n - net))
        }
        Some(t) => {
            let exact_tax = n.checked_mul(t.rate)?.checked_div(Decimal::ONE_HUNDRED)?;
            let tax = rounding.round(exact_tax, minor);
            (tax, n.checked_add(tax)?, exact_tax - tax)
        }
    };
    Some(Figures { list, discount: total, tax: tax_amount, amount, discount_ids: ids, discount_residual, tax_residual })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }
    fn disc(id: &str, kind: DiscountKind, value: &str) -> Discount {
        Discount {
            discount_id: id.into(),
            subscription_id: "S".into(),
            item_no: None,
            kind,
            value: d(value),
            remaining: None,
            start_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            end_date: None,
        }
    }

    /// SPEC §9.4: two 10 % discounts on 100.00 take 10.00 + 9.00.
    #[test]
    fn percent_discounts_take_from_what_is_left() {
        let (a, b) = (disc("A", DiscountKind::Percent, "10"), disc("B", DiscountKind::Percent, "10"));
        let f = figures(
            d("100.00"),
            false,
            &[Applied { idx: 0, d: &a }, Applied { idx: 1, d: &b }],
            &mut [],
            None,
            Rounding::HalfUp,
            2,
        )
        .unwrap();
        assert_eq!((f.discount, f.amount), (d("19.00"), d("81.00")));
        assert_eq!(f.discount_ids.as_deref(), Some("A,B"));
    }

    /// SPEC §9.5: $2.99 at 4 % tax included is net 2.88 and tax 0.11.
    #[test]
    fn an_inclusive_price_splits_into_net_and_tax() {
        let tax = TaxRule { code: "US", rate: d("4"), inclusive: true };
        let f = figures(d("2.99"), false, &[], &mut [], Some(tax), Rounding::HalfUp, 2).unwrap();
        assert_eq!((f.amount, f.tax, f.amount - f.tax), (d("2.99"), d("0.11"), d("2.88")));
        let excl = TaxRule { inclusive: false, ..tax };
        let f = figures(d("2.99"), false, &[], &mut [], Some(excl), Rounding::HalfUp, 2).unwrap();
        assert_eq!((f.amount, f.tax), (d("3.11"), d("0.12")));
    }

    /// An AMOUNT budget is used up by the lines in order, and a usage credit refills only
    /// what was taken (a coupon never turns into cash).
    #[test]
    fn amount_budgets_are_used_and_refilled() {
        let c = disc("C", DiscountKind::Amount, "25.00");
        let applied = [Applied { idx: 7, d: &c }];
        let mut budgets = vec![Budget { idx: 7, left: d("25.00"), touched: false }];
        let f = figures(d("20.00"), false, &applied, &mut budgets, None, Rounding::HalfUp, 2).unwrap();
        assert_eq!((f.discount, f.amount, budgets[0].left), (d("20.00"), d("0.00"), d("5.00")));
        let f = figures(d("8.00"), false, &applied, &mut budgets, None, Rounding::HalfUp, 2).unwrap();
        assert_eq!((f.discount, f.amount, budgets[0].left), (d("5.00"), d("3.00"), d("0.00")));
        let f = figures(d("30.00"), true, &applied, &mut budgets, None, Rounding::HalfUp, 2).unwrap();
        assert_eq!((f.discount, f.amount, budgets[0].left), (d("25.00"), d("5.00"), d("25.00")));
        assert!(budgets[0].touched);
    }
}
