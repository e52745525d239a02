//! `charge(from, to)` of SPEC §4: whole rate periods plus calendar-day proration, computed
//! as one exact fraction and rounded once by the caller.

use crate::domain::{days_in_month, Period, Unit};
use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

/// lcm(28, 29, 30, 31): one month-day of a month of length L is worth 377580/L of these.
const MONTH_DAY_DEN: i128 = 377_580;

/// `charge(from, to)` before rounding, for unit price `p` per `period` (SPEC §4): whole
/// periods plus calendar-day proration, computed as one fraction and divided once.
pub fn charge_exact(from: NaiveDate, to: NaiveDate, period: Period, p: Decimal) -> Option<Decimal> {
    if from >= to || period.n == 0 {
        return Some(Decimal::ZERO);
    }
    let n = period.n as i128;
    let days = |a: NaiveDate, b: NaiveDate| (b - a).num_days() as i128;
    let (num, den) = match period.unit {
        Unit::Day => (days(from, to), n),
        Unit::Week => (days(from, to), 7 * n),
        Unit::Month => {
            let months = (to.year() as i64 - from.year() as i64) * 12 + to.month() as i64 - from.month() as i64;
            let mut k = (months.max(0) as u64) / period.n as u64;
            while k > 0 && period.add_times(from, k) > to {
                k -= 1;
            }
            while period.add_times(from, k + 1) <= to {
                k += 1;
            }
            let anchor = period.add_times(from, k);
            let mut x: i128 = 0;
            let mut d = anchor;
            while d < to {
                let dim = days_in_month(d) as i128;
                let next_month =
                    d.checked_add_months(chrono::Months::new(1)).and_then(|m| m.with_day(1)).unwrap_or(NaiveDate::MAX);
                let seg_end = next_month.min(to);
                x += days(d, seg_end) * (MONTH_DAY_DEN / dim);
                d = seg_end;
            }
            ((k as i128).checked_mul(n)?.checked_mul(MONTH_DAY_DEN)?.checked_add(x)?, n * MONTH_DAY_DEN)
        }
    };
    let num = Decimal::try_from_i128_with_scale(num, 0).ok()?;
    let den = Decimal::try_from_i128_with_scale(den, 0).ok()?;
    p.checked_mul(num)?.checked_div(den)
}

/// A sum of fractions with integer denominators, kept exact.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frac {
    pub(crate) num: Decimal,
    pub(crate) den: i64,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

impl Frac {
    pub(crate) const ZERO: Frac = Frac { num: Decimal::ZERO, den: 1 };
    pub(crate) fn add(self, num: Decimal, den: i64) -> Option<Frac> {
        let g = gcd(self.den, den);
        let l = (self.den / g).checked_mul(den)?;
        let a = self.num.checked_mul(Decimal::from(l / self.den))?;
        let b = num.checked_mul(Decimal::from(l / den))?;
        Some(Frac { num: a.checked_add(b)?, den: l })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Rounding;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }
    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }
    fn money(s: &str) -> Decimal {
        s.parse().unwrap()
    }
    fn charge(from: &str, to: &str, period: &str, price: &str) -> Decimal {
        Rounding::HalfUp.round(charge_exact(d(from), d(to), p(period), money(price)).unwrap(), 2)
    }

    #[test]
    fn spec_examples() {
        // Company ZX: 7 days of November, one day of November, one day of December.
        assert_eq!(charge("2026-11-22", "2026-11-29", "1 month", "30"), money("7.00"));
        assert_eq!(charge("2026-11-28", "2026-11-29", "1 month", "30"), money("1.00"));
        assert_eq!(charge("2026-12-01", "2026-12-02", "1 month", "30"), money("0.97"));
        // LiveSplash: one anniversary month.
        assert_eq!(charge("2026-07-15", "2026-08-15", "1 month", "50"), money("50.00"));
    }

    #[test]
    fn whole_periods_cost_exactly_p() {
        assert_eq!(charge("2026-01-31", "2026-02-28", "1 month", "30"), money("30.00"));
        assert_eq!(charge("2026-01-31", "2026-03-31", "1 month", "30"), money("60.00"));
        assert_eq!(charge("2026-01-01", "2026-04-01", "3 months", "12.345"), money("12.35"));
        assert_eq!(charge("2026-11-01", "2026-11-15", "1 week", "7"), money("14.00"));
        assert_eq!(charge("2026-11-01", "2026-11-04", "1 day", "1.25"), money("3.75"));
    }

    #[test]
    fn proration_crosses_month_lengths_exactly() {
        // Jan 31 + 1 month = Feb 28; then Feb 28 .. Mar 2 = 1 day of Feb (28) + 1 of Mar (31).
        let exact = charge_exact(d("2026-01-31"), d("2026-03-02"), p("1 month"), money("28")).unwrap();
        let expected = money("28") + money("28") / money("28") + money("28") / money("31");
        assert_eq!(Rounding::HalfUp.round(exact, 10), Rounding::HalfUp.round(expected, 10));
        // Rounded once: 3 days of December at 10 per 3 months are 30/93 = 0.3225..., 0.32;
        // rounding each day (10/93 = 0.11) would give 0.33.
        assert_eq!(charge("2026-12-01", "2026-12-04", "3 months", "10"), money("0.32"));
        // An empty interval costs nothing.
        assert_eq!(charge("2026-11-22", "2026-11-22", "1 month", "30"), Decimal::ZERO);
    }
}
