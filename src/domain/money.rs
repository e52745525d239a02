//! Money: rounding to a currency's minor unit, and exact decimals. Never floating point.

use rust_decimal::{Decimal, RoundingStrategy};

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

/// Largest number of fractional digits accepted in an input decimal (output columns are
/// Decimal128(38, 18)).
pub const MAX_SCALE: u32 = 18;

/// A Decimal128 cell into the engine's decimal: trailing zeros are dropped until the value
/// fits rust_decimal's 96-bit mantissa; `None` if it cannot.
pub fn decimal_from_i128(mut v: i128, scale: i8) -> Option<Decimal> {
    let mut scale = scale as i32;
    while scale < 0 {
        v = v.checked_mul(10)?;
        scale += 1;
    }
    while scale > 0 && v % 10 == 0 && (scale as u32 > MAX_SCALE || v.unsigned_abs() >= (1u128 << 96)) {
        v /= 10;
        scale -= 1;
    }
    if scale as u32 > MAX_SCALE || v.unsigned_abs() >= (1u128 << 96) {
        return None;
    }
    Decimal::try_from_i128_with_scale(v, scale as u32).ok()
}

/// `decimal_from_i128(v, scale)` normalized (no trailing zeros). The common case, a value
/// that fits 64 bits (1.5 at scale 18), strips its zeros in u64 arithmetic, which is several
/// times cheaper than `Decimal::normalize` on 96 bits.
pub fn normalized_from_i128(v: i128, scale: i8) -> Option<Decimal> {
    if scale > 0 {
        let (mut m, mut s) = (v.unsigned_abs(), scale as u32);
        // A wide scale (Decimal(38,18)) puts most quantities above u64: shed blocks of nine
        // trailing zeros in u128 first (one division each) rather than normalizing a Decimal.
        while m > u64::MAX as u128 && s >= 9 {
            match div_rem_1e9(m) {
                (q, 0) => (m, s) = (q, s - 9),
                _ => break,
            }
        }
        if let Ok(mut m) = u64::try_from(m) {
            if m == 0 {
                return Some(Decimal::ZERO);
            }
            // Strip min(trailing zeros, s) zeros in at most five steps (16, 8, 4, 2, 1: each
            // taken once at most, since fewer than 32 zeros can be stripped from a u64).
            for (k, p) in [(16, 10_000_000_000_000_000u64), (8, 100_000_000), (4, 10_000), (2, 100), (1, 10)] {
                if s >= k && m % p == 0 {
                    m /= p;
                    s -= k;
                }
            }
            if s <= MAX_SCALE {
                let mut d = Decimal::from_i128_with_scale(m as i128, s);
                d.set_sign_negative(v < 0);
                return Some(d);
            }
        }
    }
    decimal_from_i128(v, scale).map(|d| d.normalize())
}

/// `d` normalized, by [`normalized_from_i128`]'s u64 arithmetic where it applies.
pub fn normalized(d: Decimal) -> Decimal {
    normalized_from_i128(d.mantissa(), d.scale() as i8).unwrap_or_else(|| d.normalize())
}

/// `m / 10^9` and `m % 10^9` by three u64 divisions (which compile to multiplications)
/// instead of two u128 ones (library calls: 2 % of a 1M run's CPU went to them).
pub(crate) fn div_rem_1e9(m: u128) -> (u128, u64) {
    const D: u64 = 1_000_000_000;
    let (hi, lo) = ((m >> 64) as u64, m as u64);
    let (qh, r) = (hi / D, hi % D);
    // Long division by 32-bit digits: r < D < 2^30, so each partial dividend fits in u64
    // and each partial quotient in 32 bits.
    let x = (r << 32) | (lo >> 32);
    let (q1, r1) = (x / D, x % D);
    let y = (r1 << 32) | (lo & 0xffff_ffff);
    (((qh as u128) << 64) | ((q1 as u128) << 32) | (y / D) as u128, y % D)
}
