//! Typed records out of raw rows: SPEC §3's column grammars and domains, each failing check
//! a (reason, detail) pair, and the fast paths for rows Parquet already typed.

use super::*;

pub(super) type Fail = (Reason, String);

/// A row of a batch, with typed accessors that produce the reject of SPEC §4.
pub struct Row<'a> {
    pub(super) b: &'a Batch,
    pub(super) i: usize,
    pub(super) specs: &'a [ColSpec],
}

impl<'a> Row<'a> {
    fn name(&self, c: usize) -> &'static str {
        self.specs[c].name
    }
    fn missing(&self, c: usize) -> Fail {
        (Reason::MissingRequired, format!("{} is missing", self.name(c)))
    }
    fn invalid(&self, c: usize, why: String) -> Fail {
        (Reason::InvalidValue, format!("{}: {why}", self.name(c)))
    }
    pub fn raw(&self, c: usize) -> String {
        self.b.cols[c].raw(self.i)
    }
    /// [`Row::raw`] as a reject key: a string cell is copied once (inline up to 24 bytes).
    pub fn key(&self, c: usize) -> Text {
        match self.b.cols[c].str(self.i) {
            Some(s) => Text::from(s),
            None => Text::from(self.raw(c)),
        }
    }
    fn os(&self, c: usize) -> Option<&'a str> {
        self.b.cols[c].str(self.i)
    }
    fn s(&self, c: usize) -> Result<&'a str, Fail> {
        self.os(c).ok_or_else(|| self.missing(c))
    }
    fn od(&self, c: usize) -> Result<Option<Decimal>, Fail> {
        self.b.cols[c].decimal(self.i).map_err(|e| self.invalid(c, e))
    }
    fn d(&self, c: usize) -> Result<Decimal, Fail> {
        self.od(c)?.ok_or_else(|| self.missing(c))
    }
    fn odate(&self, c: usize) -> Result<Option<chrono::NaiveDate>, Fail> {
        self.b.cols[c].date(self.i).map_err(|e| self.invalid(c, e))
    }
    fn date(&self, c: usize) -> Result<chrono::NaiveDate, Fail> {
        self.odate(c)?.ok_or_else(|| self.missing(c))
    }
    fn ots(&self, c: usize) -> Result<Option<Micros>, Fail> {
        self.b.cols[c].timestamp(self.i).map_err(|e| self.invalid(c, e))
    }
    fn ts(&self, c: usize) -> Result<Micros, Fail> {
        self.ots(c)?.ok_or_else(|| self.missing(c))
    }
    fn int(&self, c: usize) -> Result<i64, Fail> {
        self.b.cols[c].int(self.i).map_err(|e| self.invalid(c, e))?.ok_or_else(|| self.missing(c))
    }
    fn operiod(&self, c: usize) -> Result<Option<PeriodText>, Fail> {
        match self.os(c) {
            None => Ok(None),
            Some(t) => Period::parse(t)
                .map(|p| Some(PeriodText { period: p, text: t.to_string() }))
                .ok_or_else(|| self.invalid(c, format!("not a period: {t:?}"))),
        }
    }
    fn currency(&self, c: usize, code: &str) -> Result<u32, Fail> {
        minor_units(code).ok_or_else(|| self.invalid(c, format!("unknown ISO 4217 currency {code:?}")))
    }
    fn domain(&self, c: usize, ok: bool, what: &str) -> Result<(), Fail> {
        if ok {
            Ok(())
        } else {
            Err(self.invalid(c, format!("{} {what}", self.raw(c))))
        }
    }
}

pub const SERVICES: &[ColSpec] = &[
    req("service_id", Kind::Text),
    req("billing_method", Kind::Text),
    req("price", Kind::Decimal),
    req("currency", Kind::Text),
    opt("rate_period", Kind::Text),
    opt("advance_period", Kind::Text),
    opt("unit_size", Kind::Decimal),
];
pub const WALLETS: &[ColSpec] = &[
    req("wallet_id", Kind::Text),
    req("account_id", Kind::Text),
    req("currency", Kind::Text),
    req("balance", Kind::Decimal),
    opt("updated_at", Kind::Timestamp),
];
pub const SUBSCRIPTIONS: &[ColSpec] = &[
    req("subscription_id", Kind::Text),
    req("account_id", Kind::Text),
    req("source", Kind::Text),
    req("status", Kind::Text),
    opt("expires_at", Kind::Timestamp),
];
pub const ITEMS: &[ColSpec] = &[
    req("subscription_id", Kind::Text),
    req("item_no", Kind::Int),
    req("service_id", Kind::Text),
    opt("quantity", Kind::Decimal),
    opt("custom_price", Kind::Decimal),
    req("start_date", Kind::Date),
    opt("end_date", Kind::Date),
    opt("billed_through", Kind::Date),
];
pub const USAGE: &[ColSpec] = &[
    req("usage_id", Kind::Text),
    req("subscription_id", Kind::Text),
    req("service_id", Kind::Text),
    req("event_time", Kind::Timestamp),
    req("quantity", Kind::Decimal),
];
pub const CREDITS: &[ColSpec] = &[
    req("credit_id", Kind::Text),
    req("wallet_id", Kind::Text),
    req("amount", Kind::Decimal),
    req("transaction_type", Kind::Text),
    req("received_at", Kind::Timestamp),
];
pub const EVENTS: &[ColSpec] = &[
    req("event_id", Kind::Text),
    req("subscription_id", Kind::Text),
    req("source", Kind::Text),
    req("event_type", Kind::Text),
    req("event_time", Kind::Timestamp),
    opt("expires_at", Kind::Timestamp),
    opt("to_account_id", Kind::Text),
    opt("amount", Kind::Decimal),
    opt("currency", Kind::Text),
    opt("payment_status", Kind::Text),
];

pub fn parse_service(r: &Row) -> Result<Service, Fail> {
    let service_id = Text::from(r.s(0)?);
    let method = r.s(1)?;
    let price = r.d(2)?;
    let currency = Text::from(r.s(3)?);
    let rate_period = r.operiod(4)?;
    if method == "PRE_RATE" && rate_period.is_none() {
        return Err(r.missing(4));
    }
    let advance_period = r.operiod(5)?;
    let unit_size = r.od(6)?;
    let billing_method = BillingMethod::parse(method)
        .ok_or_else(|| r.invalid(1, format!("{method:?} is not PRE_RATE, POST_RATE or ONE_TIME")))?;
    r.domain(2, price >= Decimal::ZERO, "is negative")?;
    let minor = r.currency(3, &currency)?;
    if billing_method == BillingMethod::PreRate {
        r.domain(4, rate_period.as_ref().is_some_and(|p| p.period.n >= 1), "is not a period of N >= 1")?;
    }
    r.domain(6, unit_size.is_none_or(|u| u > Decimal::ZERO), "is not > 0")?;
    Ok(Service { service_id, billing_method, price, currency, minor, rate_period, advance_period, unit_size })
}

pub fn parse_wallet(r: &Row) -> Result<Wallet, Fail> {
    let wallet_id = Text::from(r.s(0)?);
    let account_id = Text::from(r.s(1)?);
    let currency = Text::from(r.s(2)?);
    let balance = r.d(3)?;
    let updated_at = r.ots(4)?;
    let minor = r.currency(2, &currency)?;
    Ok(Wallet { wallet_id, account_id, currency, minor, balance, updated_at })
}

pub fn parse_subscription(r: &Row) -> Result<Subscription, Fail> {
    let subscription_id = Text::from(r.s(0)?);
    let account_id = Text::from(r.s(1)?);
    let source = Text::from(r.s(2)?);
    let status = r.s(3)?;
    let expires_at = r.ots(4)?;
    let status = Status::parse(status)
        .ok_or_else(|| r.invalid(3, format!("{status:?} is not ACTIVE, DISCONNECTED or TERMINATED")))?;
    Ok(Subscription { subscription_id, account_id, source, status, expires_at })
}

pub fn parse_item(r: &Row) -> Result<Item, Fail> {
    if let Some(it) = item_fast(r.b, r.i) {
        return Ok(it);
    }
    let subscription_id = Text::from(r.s(0)?);
    let item_no = r.int(1)?;
    let service_id = Text::from(r.s(2)?);
    let quantity = r.od(3)?;
    let custom_price = r.od(4)?;
    let start_date = r.date(5)?;
    let end_date = r.odate(6)?;
    let billed_through = r.odate(7)?;
    r.domain(1, item_no >= 1, "is not >= 1")?;
    r.domain(3, quantity.is_none_or(|q| q >= Decimal::ZERO), "is negative")?;
    r.domain(4, custom_price.is_none_or(|q| q >= Decimal::ZERO), "is negative")?;
    Ok(Item { subscription_id, item_no, service_id, quantity, custom_price, start_date, end_date, billed_through })
}

/// A usage row borrowed from its batch (the hot path allocates nothing per row).
pub struct UsageRef<'a> {
    pub usage_id: &'a str,
    pub subscription_id: &'a str,
    pub service_id: &'a str,
    pub event_time: Micros,
    pub quantity: Decimal,
}

impl UsageRef<'_> {
    /// The row held for a later run, matched to item `item`.
    pub fn deferred(&self, item: usize) -> DeferredUsage {
        DeferredUsage {
            usage_id: self.usage_id.into(),
            item: item as u32,
            event_time: self.event_time,
            quantity: crate::domain::normalized(self.quantity),
        }
    }
}

pub fn parse_usage<'a>(r: &Row<'a>) -> Result<UsageRef<'a>, Fail> {
    if let Some(u) = usage_fast(r.b, r.i) {
        return Ok(u);
    }
    let usage_id = r.s(0)?;
    let subscription_id = r.s(1)?;
    let service_id = r.s(2)?;
    let event_time = r.ts(3)?;
    let quantity = r.d(4)?;
    r.domain(4, quantity >= Decimal::ZERO, "is negative")?;
    Ok(UsageRef { usage_id, subscription_id, service_id, event_time, quantity })
}

/// Fast paths for the rows of the common Parquet shape, read in one go without `Row`'s
/// per-cell error plumbing: each gives the values `Row`'s checks give such a row, and sends
/// every other row (a null or empty required cell, a value out of its domain, another
/// column type) to those checks, which explain it as a reject. (The plumbing was 3 % of a
/// run's instructions for the usage alone.)
pub(super) mod fast {
    use crate::domain::normalized_from_i128;
    use crate::io::read::Col;
    use arrow_array::Array;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

    /// A decimal cell >= 0 (`Some(None)`: null).
    pub fn non_negative(c: &Col, i: usize) -> Option<Option<Decimal>> {
        let Col::Dec(a, scale) = c else { return None };
        if !a.is_valid(i) {
            return Some(None);
        }
        normalized_from_i128(a.value(i), *scale).filter(|d| *d >= Decimal::ZERO).map(Some)
    }

    /// A usage quantity cell >= 0. A Decimal128 at the sums' scale (the common Decimal(38,18)
    /// column) is taken as it is, trailing zeros and all: normalizing it per row took two
    /// u128 divisions, and [`super::add_quantity`] adds such values by one i128 addition.
    /// Any other cell goes through [`non_negative`].
    pub fn usage_quantity(c: &Col, i: usize) -> Option<Option<Decimal>> {
        if let Col::Dec(a, scale) = c {
            let v = a.value(i);
            if a.is_valid(i) && *scale as u32 == SUM_SCALE && (0..1i128 << 96).contains(&v) {
                // In 0..2^96: three 32-bit words.
                return Some(Some(Decimal::from_parts(v as u32, (v >> 32) as u32, (v >> 64) as u32, false, SUM_SCALE)));
            }
        }
        non_negative(c, i)
    }

    /// The scale usage quantities are summed at when their column has it.
    pub const SUM_SCALE: u32 = crate::domain::MAX_SCALE;

    /// A date cell (`Some(None)`: null).
    pub fn date(c: &Col, i: usize) -> Option<Option<NaiveDate>> {
        let Col::Date(a) = c else { return None };
        if !a.is_valid(i) {
            return Some(None);
        }
        a.value_as_date(i).map(Some)
    }
}

/// The common usage row (no cell null or empty; quantity >= 0); see [`fast`].
fn usage_fast(b: &Batch, i: usize) -> Option<UsageRef<'_>> {
    use crate::io::read::Col;
    let [id, sub, svc, Col::Ts(ts), q] = &b.cols[..] else {
        return None;
    };
    let quantity = fast::usage_quantity(q, i)??;
    Some(UsageRef {
        usage_id: id.str(i)?,
        subscription_id: sub.str(i)?,
        service_id: svc.str(i)?,
        event_time: ts[i]?,
        quantity,
    })
}

/// The common item row (required cells present, item_no >= 1, quantity and custom price
/// null or >= 0); see [`fast`].
fn item_fast(b: &Batch, i: usize) -> Option<Item> {
    use crate::io::read::Col;
    use arrow_array::Array;
    let [sub, Col::Int(no), svc, qty, price, start, end, billed] = &b.cols[..] else {
        return None;
    };
    Some(Item {
        subscription_id: Text::from(sub.str(i)?),
        item_no: no.is_valid(i).then(|| no.value(i)).filter(|&n| n >= 1)?,
        service_id: Text::from(svc.str(i)?),
        quantity: fast::non_negative(qty, i)?,
        custom_price: fast::non_negative(price, i)?,
        start_date: fast::date(start, i)??,
        end_date: fast::date(end, i)?,
        billed_through: fast::date(billed, i)?,
    })
}

pub fn parse_credit(r: &Row) -> Result<Credit, Fail> {
    let credit_id = Text::from(r.s(0)?);
    let wallet_id = Text::from(r.s(1)?);
    let amount = r.d(2)?;
    let transaction_type = Text::from(r.s(3)?);
    let received_at = r.ts(4)?;
    r.domain(2, amount > Decimal::ZERO, "is not > 0")?;
    Ok(Credit { credit_id, wallet_id, amount, transaction_type, received_at })
}

pub fn parse_event(r: &Row) -> Result<Event, Fail> {
    let event_id = Text::from(r.s(0)?);
    let subscription_id = Text::from(r.s(1)?);
    let source = Text::from(r.s(2)?);
    let et = r.s(3)?;
    let event_time = r.ts(4)?;
    let expires_at = r.ots(5)?;
    let parsed_type = EventType::parse(et);
    if parsed_type.is_some_and(|t| t.sets_expiry()) && expires_at.is_none() {
        return Err((Reason::MissingRequired, format!("expires_at is missing (required for {et})")));
    }
    let to_account_id = r.os(6).map(Text::from);
    if parsed_type == Some(EventType::Transferred) && to_account_id.is_none() {
        return Err((Reason::MissingRequired, "to_account_id is missing (required for TRANSFERRED)".into()));
    }
    let amount = r.od(7)?;
    let currency = r.os(8).map(Text::from);
    let payment_status = r.os(9).map(Text::from);
    let event_type = parsed_type.ok_or_else(|| r.invalid(3, format!("{et:?} is not a known event type")))?;
    r.domain(
        9,
        payment_status.as_deref().is_none_or(|s| matches!(s, "CAPTURED" | "REJECTED" | "REFUNDED")),
        "is not CAPTURED, REJECTED or REFUNDED",
    )?;
    Ok(Event {
        event_id,
        subscription_id,
        source,
        event_type,
        event_time,
        expires_at,
        to_account_id,
        amount,
        currency,
        payment_status,
    })
}

/// Row keys for rejects, from the raw text.
pub fn key_of(table: &str, r: &Row) -> String {
    match table {
        "subscription_items" => format!("{}/{}", r.raw(0), r.raw(1)),
        _ => r.raw(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parquet-typed usage rows: the common ones take `usage_fast`, the others the checks,
    /// and each comes out as the checks alone would have it.
    #[test]
    fn usage_rows_parse_alike_on_the_fast_path_and_the_checks() {
        use crate::io::read::Col;
        use arrow_array::{Decimal128Array, StringArray};
        let ids = StringArray::from(vec![
            Some("u1"),
            None,
            Some(""),
            Some("u4"),
            Some("u5"),
            Some("u6"),
            Some("u7"),
            Some("u8"),
        ]);
        let subs = StringArray::from(vec![Some("s1"); 8]);
        let svcs = StringArray::from(vec![
            Some("svc"),
            Some("svc"),
            Some("svc"),
            Some("svc"),
            Some("svc"),
            Some("svc"),
            Some("svc"),
            None,
        ]);
        let ts = vec![Some(5), Some(5), Some(5), None, Some(5), Some(5), Some(5), Some(5)];
        let q = Decimal128Array::from(vec![Some(1500), Some(1), Some(1), Some(1), Some(-1), None, Some(0), Some(1)])
            .with_precision_and_scale(38, 3)
            .unwrap();
        let b = Batch {
            cols: vec![Col::Str(ids), Col::Str(subs), Col::Str(svcs), Col::Ts(ts), Col::Dec(q, 3)],
            len: 8,
            first_row: 1,
        };
        let parsed: Vec<_> = (0..8)
            .map(|i| match parse_usage(&Row { b: &b, i, specs: USAGE }) {
                Ok(u) => Ok((u.usage_id, u.subscription_id, u.service_id, u.event_time, u.quantity.to_string())),
                Err((reason, detail)) => Err((reason, detail)),
            })
            .collect();
        let miss = |c: &str| Err((Reason::MissingRequired, format!("{c} is missing")));
        assert_eq!(parsed[0], Ok(("u1", "s1", "svc", 5, "1.5".to_string())));
        assert_eq!(parsed[1], miss("usage_id"));
        assert_eq!(parsed[2], miss("usage_id"));
        assert_eq!(parsed[3], miss("event_time"));
        assert_eq!(parsed[4], Err((Reason::InvalidValue, "quantity: -0.001 is negative".to_string())));
        assert_eq!(parsed[5], miss("quantity"));
        assert_eq!(parsed[6], Ok(("u7", "s1", "svc", 5, "0".to_string())));
        assert_eq!(parsed[7], miss("service_id"));
        assert!(usage_fast(&b, 0).is_some() && (1..6).chain([7]).all(|i| usage_fast(&b, i).is_none()));
    }

    /// Parquet-typed item rows, likewise.
    #[test]
    fn item_rows_parse_alike_on_the_fast_path_and_the_checks() {
        use crate::io::read::Col;
        use arrow_array::{Date32Array, Decimal128Array, Int64Array, StringArray};
        let dec = |v: Vec<Option<i128>>| Decimal128Array::from(v).with_precision_and_scale(38, 2).unwrap();
        let b = Batch {
            cols: vec![
                Col::Str(StringArray::from(vec![Some("s1"); 6])),
                Col::Int(Int64Array::from(vec![Some(1), Some(2), Some(0), None, Some(5), Some(6)])),
                Col::Str(StringArray::from(vec![Some("svc"); 6])),
                Col::Dec(dec(vec![Some(100), None, Some(1), Some(1), Some(1), Some(1)]), 2),
                Col::Dec(dec(vec![None, Some(250), None, None, Some(-1), None]), 2),
                Col::Date(Date32Array::from(vec![
                    Some(20_000),
                    Some(20_000),
                    Some(20_000),
                    Some(20_000),
                    Some(20_000),
                    None,
                ])),
                Col::Date(Date32Array::from(vec![None, Some(20_100), None, None, None, None])),
                Col::Date(Date32Array::from(vec![Some(20_010), None, None, None, None, None])),
            ],
            len: 6,
            first_row: 1,
        };
        let parsed: Vec<_> = (0..6)
            .map(|i| match parse_item(&Row { b: &b, i, specs: ITEMS }) {
                Ok(it) => Ok(format!(
                    "{} {} {} {:?} {:?} {} {:?} {:?}",
                    it.subscription_id,
                    it.item_no,
                    it.service_id,
                    it.quantity.map(|d| d.to_string()),
                    it.custom_price.map(|d| d.to_string()),
                    it.start_date,
                    it.end_date,
                    it.billed_through
                )),
                Err(fail) => Err(fail),
            })
            .collect();
        assert_eq!(parsed[0], Ok("s1 1 svc Some(\"1\") None 2024-10-04 None Some(2024-10-14)".to_string()));
        assert_eq!(parsed[1], Ok("s1 2 svc None Some(\"2.5\") 2024-10-04 Some(2025-01-12) None".to_string()));
        assert_eq!(parsed[2], Err((Reason::InvalidValue, "item_no: 0 is not >= 1".to_string())));
        assert_eq!(parsed[3], Err((Reason::MissingRequired, "item_no is missing".to_string())));
        assert_eq!(parsed[4], Err((Reason::InvalidValue, "custom_price: -0.01 is negative".to_string())));
        assert_eq!(parsed[5], Err((Reason::MissingRequired, "start_date is missing".to_string())));
        assert!((0..2).all(|i| item_fast(&b, i).is_some()) && (2..6).all(|i| item_fast(&b, i).is_none()));
    }
}
