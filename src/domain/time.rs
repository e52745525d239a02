//! Dates and timestamps: UTC instants as microseconds, and their text forms.

use chrono::{Datelike, NaiveDate};

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

pub fn days_in_month(d: NaiveDate) -> u32 {
    let (y, m) = (d.year(), d.month());
    let first_next = if m == 12 { NaiveDate::from_ymd_opt(y + 1, 1, 1) } else { NaiveDate::from_ymd_opt(y, m + 1, 1) };
    match first_next {
        Some(n) => (n - NaiveDate::from_ymd_opt(y, m, 1).unwrap()).num_days() as u32,
        None => 31,
    }
}
