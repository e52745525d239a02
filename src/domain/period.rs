//! Periods (`N day(s) | N week(s) | N month(s)`, SPEC §2) and their calendar arithmetic.

use chrono::{Months, NaiveDate};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    Day,
    Week,
    Month,
}

/// `N day(s) | N week(s) | N month(s)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Period {
    pub n: u32,
    pub unit: Unit,
}

impl Period {
    /// Strict parse: a whole number, one space, a lower-case unit (singular or plural).
    pub fn parse(s: &str) -> Option<Period> {
        let (num, unit) = s.split_once(' ')?;
        if num.is_empty() || num.len() > 9 || !num.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = num.parse().ok()?;
        let unit = match unit {
            "day" | "days" => Unit::Day,
            "week" | "weeks" => Unit::Week,
            "month" | "months" => Unit::Month,
            _ => return None,
        };
        Some(Period { n, unit })
    }

    pub fn zero() -> Period {
        Period { n: 0, unit: Unit::Day }
    }

    /// `date + k·period` (months: calendar months in one step, clamped to month end).
    /// Saturates at the last representable date.
    pub fn add_times(&self, date: NaiveDate, k: u64) -> NaiveDate {
        let total = (self.n as u64).saturating_mul(k);
        let r = match self.unit {
            Unit::Day => {
                i64::try_from(total).ok().and_then(|t| date.checked_add_signed(chrono::TimeDelta::try_days(t)?))
            }
            Unit::Week => i64::try_from(total.saturating_mul(7))
                .ok()
                .and_then(|t| date.checked_add_signed(chrono::TimeDelta::try_days(t)?)),
            Unit::Month => u32::try_from(total).ok().and_then(|t| date.checked_add_months(Months::new(t))),
        };
        r.unwrap_or(NaiveDate::MAX)
    }

    pub fn add(&self, date: NaiveDate) -> NaiveDate {
        self.add_times(date, 1)
    }

    /// `date - period` (months clamped to month end); saturates at the first date.
    pub fn sub(&self, date: NaiveDate) -> NaiveDate {
        let r = match self.unit {
            Unit::Day => date.checked_sub_signed(chrono::TimeDelta::days(self.n as i64)),
            Unit::Week => date.checked_sub_signed(chrono::TimeDelta::days(7 * self.n as i64)),
            Unit::Month => date.checked_sub_months(Months::new(self.n)),
        };
        r.unwrap_or(NaiveDate::MIN)
    }

    /// `days(period)`: the number of days from `date` to `date + period`.
    pub fn days_from(&self, date: NaiveDate) -> i64 {
        (self.add(date) - date).num_days()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (one, many) = match self.unit {
            Unit::Day => ("day", "days"),
            Unit::Week => ("week", "weeks"),
            Unit::Month => ("month", "months"),
        };
        write!(f, "{} {}", self.n, if self.n == 1 { one } else { many })
    }
}

/// A period column as read: the parsed value plus the text to write back unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodText {
    pub period: Period,
    pub text: String,
}
