//! The domain: what SPEC.md talks about, with no I/O and no file formats. Periods and their
//! calendar arithmetic, money and rounding, the strict text grammars, the typed records of
//! SPEC §3, the reasons written to rejects and lists, and the job definition (§2).
//!
//! Money is `rust_decimal::Decimal`, never floating point.

pub mod grammar;
pub mod grid;
pub mod job;
pub mod money;
pub mod period;
pub mod pricing;
pub mod reasons;
pub mod records;
pub mod shard;
pub mod time;

pub use grammar::*;
pub use money::*;
pub use period::*;
pub use pricing::*;
pub use reasons::*;
pub use records::*;
pub use time::*;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

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
