//! Domain types shared by every stage: periods, money, and the typed records of SPEC §3.
//!
//! Nothing here does I/O. Money is `rust_decimal::Decimal`, never floating point.

use chrono::{Datelike, Months, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use std::fmt;

/// Microseconds since the Unix epoch, UTC. Timestamps are only compared and ordered.
pub type Micros = i64;

/// The date's midnight (00:00 UTC) as a timestamp.
pub fn midnight(d: NaiveDate) -> Micros {
    d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros()
}

/// Append `d` as `YYYY-MM-DD` (chrono's `%Y-%m-%d`), digits written directly for years
/// 0000-9999 (chrono's `format` interprets its pattern on every call: 7 % of a CSV-out run).
pub fn write_date(out: &mut String, d: NaiveDate) {
    let year = d.year();
    if !(0..=9999).contains(&year) {
        use std::fmt::Write;
        let _ = write!(out, "{}", d.format("%Y-%m-%d"));
        return;
    }
    let (y, m, day) = (year as u32, d.month(), d.day());
    let digit = |v: u32| char::from(b'0' + v as u8);
    for c in [y / 1000, y / 100 % 10, y / 10 % 10, y % 10] {
        out.push(digit(c));
    }
    out.push('-');
    out.push(digit(m / 10));
    out.push(digit(m % 10));
    out.push('-');
    out.push(digit(day / 10));
    out.push(digit(day % 10));
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`. Digits are written directly for years 0000-9999:
/// chrono's `format` interprets its pattern on every call, which made the reject details
/// of late usage cost ~4,000 instructions a row.
pub fn format_ts(t: Micros) -> String {
    use chrono::{Datelike, Timelike};
    let Some(dt) = chrono::DateTime::from_timestamp_micros(t) else { return t.to_string() };
    let micros = t.rem_euclid(1_000_000) as u32;
    let year = dt.year();
    if !(0..=9999).contains(&year) {
        return if micros == 0 {
            dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else {
            dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
        };
    }
    let mut b = [0u8; 27];
    let mut at = 0;
    let mut digits = |v: u32, n: u32, sep: u8| {
        for k in (0..n).rev() {
            b[at] = b'0' + (v / 10u32.pow(k) % 10) as u8;
            at += 1;
        }
        b[at] = sep;
        at += 1;
    };
    digits(year as u32, 4, b'-');
    digits(dt.month(), 2, b'-');
    digits(dt.day(), 2, b'T');
    digits(dt.hour(), 2, b':');
    digits(dt.minute(), 2, b':');
    if micros == 0 {
        digits(dt.second(), 2, b'Z');
    } else {
        digits(dt.second(), 2, b'.');
        digits(micros, 6, b'Z');
    }
    String::from_utf8_lossy(&b[..at]).into_owned()
}

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

pub fn days_in_month(d: NaiveDate) -> u32 {
    let (y, m) = (d.year(), d.month());
    let first_next = if m == 12 { NaiveDate::from_ymd_opt(y + 1, 1, 1) } else { NaiveDate::from_ymd_opt(y, m + 1, 1) };
    match first_next {
        Some(n) => (n - NaiveDate::from_ymd_opt(y, m, 1).unwrap()).num_days() as u32,
        None => 31,
    }
}

/// The job's rounding mode, applied once per transaction line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// Halves away from zero.
    HalfUp,
    /// Banker's rounding.
    HalfEven,
}

impl Rounding {
    pub fn round(self, d: Decimal, dp: u32) -> Decimal {
        let s = match self {
            Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
        };
        d.round_dp_with_strategy(dp, s)
    }
}

/// Minor unit (number of decimals) of a known ISO 4217 code, from the `iso_currency` tables.
/// Codes without a minor unit (XAU, XDR, ...) round to whole units.
pub fn minor_units(code: &str) -> Option<u32> {
    let c = iso_currency::Currency::from_code(code)?;
    Some(c.exponent().map(u32::from).unwrap_or(0))
}

/// Present a money amount with at least the currency's minor-unit decimals ("2130.00").
pub fn with_minor_scale(d: Decimal, minor: u32) -> Decimal {
    // Already at the minor unit's scale (a rounded debit, most balances): nothing to strip
    // or pad, so no normalizing of 96 bits.
    let mut d = if d.scale() == minor { d } else { d.normalize() };
    if d.is_zero() {
        d.set_sign_positive(true);
    }
    if d.scale() < minor {
        d.rescale(minor);
    }
    d
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BillingMethod {
    PreRate,
    PostRate,
    OneTime,
}

impl BillingMethod {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PRE_RATE" => Some(Self::PreRate),
            "POST_RATE" => Some(Self::PostRate),
            "ONE_TIME" => Some(Self::OneTime),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreRate => "PRE_RATE",
            Self::PostRate => "POST_RATE",
            Self::OneTime => "ONE_TIME",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Active,
    Disconnected,
    Terminated,
}

impl Status {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "DISCONNECTED" => Some(Self::Disconnected),
            "TERMINATED" => Some(Self::Terminated),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Disconnected => "DISCONNECTED",
            Self::Terminated => "TERMINATED",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Purchased,
    Renewed,
    Revived,
    Cancelled,
    Expired,
    Revoked,
    Transferred,
}

impl EventType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PURCHASED" => Self::Purchased,
            "RENEWED" => Self::Renewed,
            "REVIVED" => Self::Revived,
            "CANCELLED" => Self::Cancelled,
            "EXPIRED" => Self::Expired,
            "REVOKED" => Self::Revoked,
            "TRANSFERRED" => Self::Transferred,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchased => "PURCHASED",
            Self::Renewed => "RENEWED",
            Self::Revived => "REVIVED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
            Self::Revoked => "REVOKED",
            Self::Transferred => "TRANSFERRED",
        }
    }
    pub fn sets_expiry(self) -> bool {
        matches!(self, Self::Purchased | Self::Renewed | Self::Revived)
    }
}

/// A period column as read: the parsed value plus the text to write back unchanged.
/// Ids and codes of the domain rows: stored inline up to 24 bytes (no heap allocation per
/// id), which is most of the state's memory at scale.
pub type Text = compact_str::CompactString;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodText {
    pub period: Period,
    pub text: String,
}

#[derive(Clone, Debug)]
pub struct Service {
    pub service_id: Text,
    pub billing_method: BillingMethod,
    pub price: Decimal,
    pub currency: Text,
    pub minor: u32,
    pub rate_period: Option<PeriodText>,
    pub advance_period: Option<PeriodText>,
    pub unit_size: Option<Decimal>,
}

impl Service {
    pub fn advance(&self) -> Period {
        self.advance_period.as_ref().map(|p| p.period).unwrap_or_else(Period::zero)
    }
    pub fn unit(&self) -> Decimal {
        self.unit_size.unwrap_or(Decimal::ONE)
    }
}

#[derive(Clone, Debug)]
pub struct Wallet {
    pub wallet_id: Text,
    pub account_id: Text,
    pub currency: Text,
    pub minor: u32,
    pub balance: Decimal,
    pub updated_at: Option<Micros>,
}

#[derive(Clone, Debug)]
pub struct Subscription {
    pub subscription_id: Text,
    pub account_id: Text,
    pub source: Text,
    pub status: Status,
    pub expires_at: Option<Micros>,
}

impl Subscription {
    pub fn is_internal(&self) -> bool {
        self.source == "INTERNAL"
    }
}

#[derive(Clone, Debug)]
pub struct Item {
    pub subscription_id: Text,
    pub item_no: i64,
    pub service_id: Text,
    pub quantity: Option<Decimal>,
    pub custom_price: Option<Decimal>,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
    pub billed_through: Option<NaiveDate>,
}

impl Item {
    pub fn qty(&self) -> Decimal {
        self.quantity.unwrap_or(Decimal::ONE)
    }
    pub fn key(&self) -> String {
        format!("{}/{}", self.subscription_id, self.item_no)
    }
    /// `billed_through ?? start_date`
    pub fn paid_to(&self) -> NaiveDate {
        self.billed_through.unwrap_or(self.start_date)
    }
    /// Whether `d` is before the (exclusive) end date.
    pub fn before_end(&self, d: NaiveDate) -> bool {
        self.end_date.is_none_or(|e| d < e)
    }
}

/// A usage row held for a later run (`deferred_usage`). Its subscription and service are
/// those of its item, an index into the state's items: the row was matched to that item by
/// them, so they are the row's ids byte for byte (56 bytes a row instead of 96: the run holds
/// every deferred row until it writes them, ~8M at 10M accounts).
#[derive(Clone, Debug)]
pub struct DeferredUsage {
    pub usage_id: Text,
    pub item: u32,
    pub event_time: Micros,
    pub quantity: Decimal,
}

#[derive(Clone, Debug)]
pub struct Credit {
    pub credit_id: Text,
    pub wallet_id: Text,
    pub amount: Decimal,
    pub transaction_type: Text,
    pub received_at: Micros,
}

#[derive(Clone, Debug)]
pub struct Event {
    pub event_id: Text,
    pub subscription_id: Text,
    pub source: Text,
    pub event_type: EventType,
    pub event_time: Micros,
    pub expires_at: Option<Micros>,
    pub to_account_id: Option<Text>,
    pub amount: Option<Decimal>,
    pub currency: Option<Text>,
    pub payment_status: Option<Text>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// `write_date` writes what chrono's `%Y-%m-%d` does, in and out of years 0000-9999.
    #[test]
    fn dates_are_written_as_chrono_formats_them() {
        let mut days: Vec<NaiveDate> = (0..3000).map(|k| d("2023-12-25") + chrono::Days::new(k * 7)).collect();
        for (y, m, dd) in
            [(0, 1, 1), (9, 2, 3), (999, 12, 31), (9999, 12, 31), (10000, 1, 1), (-1, 6, 15), (-44, 3, 15)]
        {
            days.push(NaiveDate::from_ymd_opt(y, m, dd).unwrap());
        }
        for day in days {
            let mut s = String::from("x");
            write_date(&mut s, day);
            assert_eq!(s, format!("x{}", day.format("%Y-%m-%d")), "{day:?}");
        }
    }

    #[test]
    fn period_parse_is_strict() {
        assert_eq!(Period::parse("1 month"), Some(Period { n: 1, unit: Unit::Month }));
        assert_eq!(Period::parse("7 days"), Some(Period { n: 7, unit: Unit::Day }));
        assert_eq!(Period::parse("0 days"), Some(Period { n: 0, unit: Unit::Day }));
        for bad in ["1 Month", "1month", "-1 day", "1.5 days", " 1 day", "1 day ", "1 year", ""] {
            assert_eq!(Period::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn months_clamp_to_month_end() {
        let p = Period::parse("1 month").unwrap();
        assert_eq!(p.add(d("2026-01-31")), d("2026-02-28"));
        assert_eq!(p.add_times(d("2026-01-31"), 2), d("2026-03-31"));
        assert_eq!(p.days_from(d("2026-11-22")), 30);
    }

    #[test]
    fn rounding_modes() {
        let x: Decimal = "2.345".parse().unwrap();
        assert_eq!(Rounding::HalfUp.round(x, 2).to_string(), "2.35");
        assert_eq!(Rounding::HalfEven.round(x, 2).to_string(), "2.34");
        assert_eq!(Rounding::HalfUp.round(-x, 2).to_string(), "-2.35");
    }

    #[test]
    fn minor_units_from_iso_tables() {
        assert_eq!(minor_units("USD"), Some(2));
        assert_eq!(minor_units("JPY"), Some(0));
        assert_eq!(minor_units("KWD"), Some(3));
        assert_eq!(minor_units("ZZZ"), None);
    }

    proptest::proptest! {
        #[test]
        fn with_minor_scale_fast_path_agrees(m in -10_000_000_000i64..10_000_000_000, scale in 0u32..8, minor in 0u32..4, neg in proptest::bool::ANY) {
            let mut d = Decimal::new(m, scale);
            d.set_sign_negative(neg);
            let mut slow = d.normalize();
            if slow.is_zero() {
                slow.set_sign_positive(true);
            }
            if slow.scale() < minor {
                slow.rescale(minor);
            }
            let fast = with_minor_scale(d, minor);
            proptest::prop_assert_eq!(fast.to_string(), slow.to_string());
            proptest::prop_assert_eq!(fast.serialize(), slow.serialize());
        }
    }

    proptest::proptest! {
        #[test]
        fn format_ts_agrees_with_chrono(t in proptest::prop_oneof![
            proptest::num::i64::ANY,
            -62_167_219_200_000_000i64..253_402_300_800_000_000i64, // years 0000-9999
            proptest::strategy::Strategy::prop_map(0i64..4_102_444_800, |s| s * 1_000_000), // whole seconds, 1970-2100
        ]) {
            let slow = match chrono::DateTime::from_timestamp_micros(t) {
                Some(dt) if t.rem_euclid(1_000_000) == 0 => dt.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                None => t.to_string(),
            };
            proptest::prop_assert_eq!(format_ts(t), slow);
        }
    }
}
