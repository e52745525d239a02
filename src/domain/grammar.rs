//! The strict text forms of SPEC §3: decimals, integers, dates and timestamps as they are
//! written in CSV files (and in Parquet string columns). Anything else is `INVALID_VALUE`.

use super::{money::MAX_SCALE, Micros};
use chrono::NaiveDate;
use rust_decimal::Decimal;

/// Whether `s` has the decimal grammar `-?\d+(\.\d+)?`, whatever its size.
pub fn is_decimal_text(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// `-?\d+(\.\d+)?`, at most 28 significant digits and [`MAX_SCALE`] decimals.
pub fn parse_decimal_strict(s: &str) -> Option<Decimal> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if f.trim_end_matches('0').len() > MAX_SCALE as usize {
            return None;
        }
    }
    let d = Decimal::from_str_exact(s).ok()?;
    if d.scale() > MAX_SCALE {
        let mut n = d.normalize();
        if n.scale() > MAX_SCALE {
            return None;
        }
        n.rescale(n.scale());
        return Some(n);
    }
    Some(d)
}

pub fn parse_int_strict(s: &str) -> Option<i64> {
    let body = s.strip_prefix('-').unwrap_or(s);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYY-MM-DD`, a real calendar day.
pub fn parse_date_strict(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    if !b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit()) {
        return None;
    }
    let y: i32 = s[0..4].parse().ok()?;
    let m: u32 = s[5..7].parse().ok()?;
    let d: u32 = s[8..10].parse().ok()?;
    NaiveDate::from_ymd_opt(y, m, d)
}

/// `YYYY-MM-DD[T| ]HH:MM:SS[.fraction][Z|±HH:MM]`; an offset is converted to UTC, none means UTC.
pub fn parse_timestamp_strict(s: &str) -> Option<Micros> {
    let b = s.as_bytes();
    // Byte offsets below are only char boundaries in ASCII text.
    if b.len() < 19 || !s.is_ascii() {
        return None;
    }
    let date = parse_date_strict(&s[0..10])?;
    if b[10] != b'T' && b[10] != b' ' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let two = |i: usize| -> Option<u32> {
        if b[i].is_ascii_digit() && b[i + 1].is_ascii_digit() {
            Some(((b[i] - b'0') * 10 + (b[i + 1] - b'0')) as u32)
        } else {
            None
        }
    };
    let (h, mi, se) = (two(11)?, two(14)?, two(17)?);
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let mut rest = &s[19..];
    let mut micros: i64 = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let frac = &r[..n];
        // Sub-microsecond digits are truncated.
        let mut us = 0i64;
        for (k, c) in frac.bytes().take(6).enumerate() {
            us += ((c - b'0') as i64) * 10i64.pow(5 - k as u32);
        }
        micros = us;
        rest = &r[n..];
    }
    let offset_secs: i64 = match rest {
        "" | "Z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let ob = o.as_bytes();
            let d2 = |i: usize| -> Option<i64> {
                if ob[i].is_ascii_digit() && ob[i + 1].is_ascii_digit() {
                    Some(((ob[i] - b'0') * 10 + (ob[i + 1] - b'0')) as i64)
                } else {
                    None
                }
            };
            let (oh, om) = (d2(1)?, d2(4)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let naive = date.and_hms_opt(h, mi, se)?;
    let secs = naive.and_utc().timestamp() - offset_secs;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}
