//! SPEC §9.3: an item's pricing periods (calendar arithmetic: the rating splits a window on
//! them, the usage intake sums each period's usage), a grid anchored at its `start_date` in steps of the
//! service's `pricing_period` (months: `start_date + k·N months` in one step, clamped to the
//! month end), and a POST_RATE window split at its boundaries.

use super::{Period, Unit};
use chrono::{Months, NaiveDate, TimeDelta};

/// `anchor + k·period`, k of either sign (months in one step, clamped); None out of range.
fn grid_point(anchor: NaiveDate, period: Period, k: i64) -> Option<NaiveDate> {
    let steps = (period.n as i64).checked_mul(k)?;
    match period.unit {
        Unit::Day => anchor.checked_add_signed(TimeDelta::try_days(steps)?),
        Unit::Week => anchor.checked_add_signed(TimeDelta::try_days(steps.checked_mul(7)?)?),
        Unit::Month => {
            let m = Months::new(u32::try_from(steps.unsigned_abs()).ok()?);
            if steps >= 0 {
                anchor.checked_add_months(m)
            } else {
                anchor.checked_sub_months(m)
            }
        }
    }
}

/// The pricing period `[ps, pe)` of the grid anchored at `anchor` that holds `day`.
pub fn period_of(anchor: NaiveDate, period: Period, day: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
    if period.n == 0 {
        return None;
    }
    // A first guess from the distance, then steps to the period that holds the day (month
    // ends clamp, so the guess may be one off either way).
    let guess = match period.unit {
        Unit::Day => (day - anchor).num_days().div_euclid(period.n as i64),
        Unit::Week => (day - anchor).num_days().div_euclid(7 * period.n as i64),
        Unit::Month => {
            use chrono::Datelike;
            let months = (day.year() as i64 - anchor.year() as i64) * 12 + day.month() as i64 - anchor.month() as i64;
            months.div_euclid(period.n as i64)
        }
    };
    let mut k = guess;
    while grid_point(anchor, period, k)? > day {
        k -= 1;
    }
    while grid_point(anchor, period, k + 1)? <= day {
        k += 1;
    }
    Some((grid_point(anchor, period, k)?, grid_point(anchor, period, k + 1)?))
}

/// The parts of the window `[from, to)` split at the grid's boundaries, in date order: each
/// `(part_from, part_to, period_start)`.
pub fn split(
    anchor: NaiveDate,
    period: Period,
    from: NaiveDate,
    to: NaiveDate,
) -> Option<Vec<(NaiveDate, NaiveDate, NaiveDate)>> {
    let mut parts = Vec::new();
    let mut d = from;
    while d < to {
        let (ps, pe) = period_of(anchor, period, d)?;
        let end = pe.min(to);
        parts.push((d, end, ps));
        d = end;
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }
    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    #[test]
    fn monthly_periods_count_from_the_start_date_clamped() {
        let a = d("2026-01-31");
        assert_eq!(period_of(a, p("1 month"), d("2026-02-27")), Some((d("2026-01-31"), d("2026-02-28"))));
        assert_eq!(period_of(a, p("1 month"), d("2026-02-28")), Some((d("2026-02-28"), d("2026-03-31"))));
        assert_eq!(period_of(a, p("1 month"), d("2026-03-30")), Some((d("2026-02-28"), d("2026-03-31"))));
        // Before the anchor: the grid extends backwards.
        assert_eq!(period_of(a, p("1 month"), d("2026-01-15")), Some((d("2025-12-31"), d("2026-01-31"))));
        assert_eq!(period_of(d("2026-11-01"), p("2 weeks"), d("2026-11-20")), Some((d("2026-11-15"), d("2026-11-29"))));
    }

    #[test]
    fn a_window_splits_at_period_boundaries() {
        let parts = split(d("2026-06-15"), p("1 month"), d("2026-06-20"), d("2026-08-20")).unwrap();
        assert_eq!(
            parts,
            vec![
                (d("2026-06-20"), d("2026-07-15"), d("2026-06-15")),
                (d("2026-07-15"), d("2026-08-15"), d("2026-07-15")),
                (d("2026-08-15"), d("2026-08-20"), d("2026-08-15")),
            ]
        );
        assert_eq!(split(d("2026-06-15"), p("1 month"), d("2026-06-20"), d("2026-06-20")).unwrap(), vec![]);
    }
}
