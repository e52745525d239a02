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
    fn name(&self, c: impl Into<usize>) -> &'static str {
        let c: usize = c.into();
        self.specs[c].name
    }
    fn missing(&self, c: impl Into<usize>) -> Fail {
        let c: usize = c.into();
        (Reason::MissingRequired, format!("{} is missing", self.name(c)))
    }
    fn invalid(&self, c: impl Into<usize>, why: String) -> Fail {
        let c: usize = c.into();
        (Reason::InvalidValue, format!("{}: {why}", self.name(c)))
    }
    pub fn raw(&self, c: impl Into<usize>) -> String {
        let c: usize = c.into();
        self.b.cols[c].raw(self.i)
    }
    /// [`Row::raw`] as a reject key: a string cell is copied once (inline up to 24 bytes).
    pub fn key(&self, c: impl Into<usize>) -> Text {
        let c: usize = c.into();
        match self.b.cols[c].str(self.i) {
            Some(s) => Text::from(s),
            None => Text::from(self.raw(c)),
        }
    }
    fn os(&self, c: impl Into<usize>) -> Option<&'a str> {
        let c: usize = c.into();
        self.b.cols[c].str(self.i)
    }
    fn s(&self, c: impl Into<usize>) -> Result<&'a str, Fail> {
        let c: usize = c.into();
        self.os(c).ok_or_else(|| self.missing(c))
    }
    fn od(&self, c: impl Into<usize>) -> Result<Option<Decimal>, Fail> {
        let c: usize = c.into();
        self.b.cols[c].decimal(self.i).map_err(|e| self.invalid(c, e))
    }
    fn d(&self, c: impl Into<usize>) -> Result<Decimal, Fail> {
        let c: usize = c.into();
        self.od(c)?.ok_or_else(|| self.missing(c))
    }
    fn odate(&self, c: impl Into<usize>) -> Result<Option<chrono::NaiveDate>, Fail> {
        let c: usize = c.into();
        self.b.cols[c].date(self.i).map_err(|e| self.invalid(c, e))
    }
    fn date(&self, c: impl Into<usize>) -> Result<chrono::NaiveDate, Fail> {
        let c: usize = c.into();
        self.odate(c)?.ok_or_else(|| self.missing(c))
    }
    fn ots(&self, c: impl Into<usize>) -> Result<Option<Micros>, Fail> {
        let c: usize = c.into();
        self.b.cols[c].timestamp(self.i).map_err(|e| self.invalid(c, e))
    }
    fn ts(&self, c: impl Into<usize>) -> Result<Micros, Fail> {
        let c: usize = c.into();
        self.ots(c)?.ok_or_else(|| self.missing(c))
    }
    fn int(&self, c: impl Into<usize>) -> Result<i64, Fail> {
        let c: usize = c.into();
        self.oint(c)?.ok_or_else(|| self.missing(c))
    }
    fn oint(&self, c: impl Into<usize>) -> Result<Option<i64>, Fail> {
        let c: usize = c.into();
        self.b.cols[c].int(self.i).map_err(|e| self.invalid(c, e))
    }
    fn operiod(&self, c: impl Into<usize>) -> Result<Option<PeriodText>, Fail> {
        let c: usize = c.into();
        match self.os(c) {
            None => Ok(None),
            Some(t) => Period::parse(t)
                .map(|p| Some(PeriodText { period: p, text: t.to_string() }))
                .ok_or_else(|| self.invalid(c, format!("not a period: {t:?}"))),
        }
    }
    fn currency(&self, c: impl Into<usize>, code: &str) -> Result<u32, Fail> {
        let c: usize = c.into();
        minor_units(code).ok_or_else(|| self.invalid(c, format!("unknown ISO 4217 currency {code:?}")))
    }
    fn domain(&self, c: impl Into<usize>, ok: bool, what: &str) -> Result<(), Fail> {
        let c: usize = c.into();
        if ok {
            Ok(())
        } else {
            Err(self.invalid(c, format!("{} {what}", self.raw(c))))
        }
    }
}

/// A table's columns in SPEC §3 order: the [`ColSpec`]s read (`$spec`), and an enum naming
/// each column's position in them (`$cols`), so a parser reads `r.d(ServiceCol::Price)`,
/// never a bare index.
macro_rules! columns {
    ($spec:ident, $cols:ident: $($var:ident = $req:ident($name:literal, $kind:ident)),+ $(,)?) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $cols {
            $($var),+
        }
        impl From<$cols> for usize {
            fn from(c: $cols) -> usize {
                c as usize
            }
        }
        pub const $spec: &[ColSpec] = &[$($req($name, Kind::$kind)),+];
    };
}

columns!(SERVICES, ServiceCol:
    ServiceId = req("service_id", Text),
    BillingMethod = req("billing_method", Text),
    Price = req("price", Decimal),
    Currency = req("currency", Text),
    RatePeriod = opt("rate_period", Text),
    AdvancePeriod = opt("advance_period", Text),
    UnitSize = opt("unit_size", Decimal),
    // SPEC v2 §9.1.
    PricingModel = opt("pricing_model", Text),
    FreeUnits = opt("free_units", Decimal),
    PricingPeriod = opt("pricing_period", Text),
    TxnFee = opt("txn_fee", Decimal),
    TxnMin = opt("txn_min", Decimal),
    TxnMax = opt("txn_max", Decimal),
    TaxCode = opt("tax_code", Text),
    PriceIncludesTax = opt("price_includes_tax", Text),
);
/// The services' SPEC v2 §9.1 columns: the next state has them when the input had one.
pub const SERVICE_V2_COLUMNS: &[&str] = &[
    "pricing_model",
    "free_units",
    "pricing_period",
    "txn_fee",
    "txn_min",
    "txn_max",
    "tax_code",
    "price_includes_tax",
];
columns!(PRICE_TIERS, TierCol:
    ServiceId = req("service_id", Text),
    TierNo = req("tier_no", Int),
    UpTo = opt("up_to", Decimal),
    UnitPrice = req("unit_price", Decimal),
    FlatFee = opt("flat_fee", Decimal),
);
columns!(DISCOUNTS, DiscountCol:
    DiscountId = req("discount_id", Text),
    SubscriptionId = req("subscription_id", Text),
    ItemNo = opt("item_no", Int),
    Kind = req("kind", Text),
    Value = req("value", Decimal),
    Remaining = opt("remaining", Decimal),
    StartDate = req("start_date", Date),
    EndDate = opt("end_date", Date),
);
columns!(TAX_RATES, TaxRateCol:
    TaxCode = req("tax_code", Text),
    Rate = req("rate", Decimal),
    ValidFrom = req("valid_from", Date),
);
columns!(WALLETS, WalletCol:
    WalletId = req("wallet_id", Text),
    AccountId = req("account_id", Text),
    Currency = req("currency", Text),
    Balance = req("balance", Decimal),
    UpdatedAt = opt("updated_at", Timestamp),
);
columns!(SUBSCRIPTIONS, SubscriptionCol:
    SubscriptionId = req("subscription_id", Text),
    AccountId = req("account_id", Text),
    Source = req("source", Text),
    Status = req("status", Text),
    ExpiresAt = opt("expires_at", Timestamp),
);
columns!(ITEMS, ItemCol:
    SubscriptionId = req("subscription_id", Text),
    ItemNo = req("item_no", Int),
    ServiceId = req("service_id", Text),
    Quantity = opt("quantity", Decimal),
    CustomPrice = opt("custom_price", Decimal),
    StartDate = req("start_date", Date),
    EndDate = opt("end_date", Date),
    BilledThrough = opt("billed_through", Date),
    TaxCode = opt("tax_code", Text),
    PeriodStart = opt("period_start", Date),
    PeriodQuantity = opt("period_quantity", Decimal),
    PeriodCharged = opt("period_charged", Decimal),
);
columns!(USAGE, UsageCol:
    UsageId = req("usage_id", Text),
    SubscriptionId = req("subscription_id", Text),
    ServiceId = req("service_id", Text),
    EventTime = req("event_time", Timestamp),
    Quantity = req("quantity", Decimal),
);
columns!(CREDITS, CreditCol:
    CreditId = req("credit_id", Text),
    WalletId = req("wallet_id", Text),
    Amount = req("amount", Decimal),
    TransactionType = req("transaction_type", Text),
    ReceivedAt = req("received_at", Timestamp),
);
columns!(EVENTS, EventCol:
    EventId = req("event_id", Text),
    SubscriptionId = req("subscription_id", Text),
    Source = req("source", Text),
    EventType = req("event_type", Text),
    EventTime = req("event_time", Timestamp),
    ExpiresAt = opt("expires_at", Timestamp),
    ToAccountId = opt("to_account_id", Text),
    Amount = opt("amount", Decimal),
    Currency = opt("currency", Text),
    PaymentStatus = opt("payment_status", Text),
);

pub fn parse_service(r: &Row) -> Result<Service, Fail> {
    use ServiceCol as C;
    let service_id = Text::from(r.s(C::ServiceId)?);
    let method = r.s(C::BillingMethod)?;
    let price = r.d(C::Price)?;
    let currency = Text::from(r.s(C::Currency)?);
    let rate_period = r.operiod(C::RatePeriod)?;
    if method == "PRE_RATE" && rate_period.is_none() {
        return Err(r.missing(C::RatePeriod));
    }
    let advance_period = r.operiod(C::AdvancePeriod)?;
    let unit_size = r.od(C::UnitSize)?;
    let pricing = parse_service_pricing(r)?;
    let billing_method = BillingMethod::parse(method)
        .ok_or_else(|| r.invalid(C::BillingMethod, format!("{method:?} is not PRE_RATE, POST_RATE or ONE_TIME")))?;
    r.domain(C::Price, price >= Decimal::ZERO, "is negative")?;
    let minor = r.currency(C::Currency, &currency)?;
    if billing_method == BillingMethod::PreRate {
        r.domain(C::RatePeriod, rate_period.as_ref().is_some_and(|p| p.period.n >= 1), "is not a period of N >= 1")?;
    }
    r.domain(C::UnitSize, unit_size.is_none_or(|u| u > Decimal::ZERO), "is not > 0")?;
    if let Some(p) = &pricing {
        check_service_pricing(r, p, billing_method)?;
    }
    Ok(Service { service_id, billing_method, price, currency, minor, rate_period, advance_period, unit_size, pricing })
}

/// The §9.1 columns of a services row, parsed (None when all are null: a v1 service).
fn parse_service_pricing(r: &Row) -> Result<Option<Box<ServicePricing>>, Fail> {
    use ServiceCol as C;
    let model = match r.os(C::PricingModel) {
        None => None,
        Some(m) => Some(PricingModel::parse(m).ok_or_else(|| {
            r.invalid(C::PricingModel, format!("{m:?} is not PER_UNIT, GRADUATED, VOLUME, PACKAGE or PERCENTAGE"))
        })?),
    };
    let free_units = r.od(C::FreeUnits)?;
    let pricing_period = r.operiod(C::PricingPeriod)?;
    let (txn_fee, txn_min, txn_max) = (r.od(C::TxnFee)?, r.od(C::TxnMin)?, r.od(C::TxnMax)?);
    let tax_code = r.os(C::TaxCode).map(Text::from);
    let price_includes_tax = match r.os(C::PriceIncludesTax) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(t) => return Err(r.invalid(C::PriceIncludesTax, format!("{t:?} is not true or false"))),
    };
    let p = ServicePricing {
        model,
        free_units,
        pricing_period,
        txn_fee,
        txn_min,
        txn_max,
        tax_code,
        price_includes_tax,
        tiers: Vec::new(),
    };
    // All null: a v1 service.
    Ok((p != ServicePricing::default()).then(|| Box::new(p)))
}

/// The §9.1 domains of a service's pricing columns (SPEC §9.1, §9.2: PERCENTAGE is POST_RATE
/// only, without free units or a pricing period).
fn check_service_pricing(r: &Row, p: &ServicePricing, method: BillingMethod) -> Result<(), Fail> {
    use ServiceCol as C;
    let non_negative = |d: Option<Decimal>| d.is_none_or(|d| d >= Decimal::ZERO);
    r.domain(C::FreeUnits, non_negative(p.free_units), "is negative")?;
    r.domain(C::PricingPeriod, p.pricing_period.as_ref().is_none_or(|x| x.period.n >= 1), "is not a period of N >= 1")?;
    r.domain(C::TxnFee, non_negative(p.txn_fee), "is negative")?;
    r.domain(C::TxnMin, non_negative(p.txn_min), "is negative")?;
    r.domain(C::TxnMax, non_negative(p.txn_max), "is negative")?;
    if let (Some(lo), Some(hi)) = (p.txn_min, p.txn_max) {
        r.domain(C::TxnMin, lo <= hi, &format!("is above txn_max {hi}"))?;
    }
    if p.model() == PricingModel::Percentage {
        r.domain(C::BillingMethod, method == BillingMethod::PostRate, "cannot be priced PERCENTAGE (POST_RATE only)")?;
        r.domain(C::FreeUnits, p.free_units.is_none(), "must be null for PERCENTAGE")?;
        r.domain(C::PricingPeriod, p.pricing_period.is_none(), "must be null for PERCENTAGE")?;
    }
    Ok(())
}

pub fn parse_tier(r: &Row) -> Result<TierRow, Fail> {
    use TierCol as C;
    let service_id = Text::from(r.s(C::ServiceId)?);
    let tier_no = r.int(C::TierNo)?;
    let up_to = r.od(C::UpTo)?;
    let unit_price = r.d(C::UnitPrice)?;
    let flat_fee = r.od(C::FlatFee)?;
    r.domain(C::TierNo, tier_no >= 1, "is not >= 1")?;
    r.domain(C::UnitPrice, unit_price >= Decimal::ZERO, "is negative")?;
    r.domain(C::FlatFee, flat_fee.is_none_or(|f| f >= Decimal::ZERO), "is negative")?;
    let tier = Tier { up_to, unit_price, flat_fee: flat_fee.unwrap_or_default() };
    Ok(TierRow { service_id, tier_no, tier, flat_fee })
}

pub fn parse_tax_rate(r: &Row) -> Result<TaxRate, Fail> {
    use TaxRateCol as C;
    let tax_code = Text::from(r.s(C::TaxCode)?);
    let rate = r.d(C::Rate)?;
    let valid_from = r.date(C::ValidFrom)?;
    r.domain(C::Rate, rate >= Decimal::ZERO, "is negative")?;
    Ok(TaxRate { tax_code, rate, valid_from })
}

pub fn parse_discount(r: &Row) -> Result<Discount, Fail> {
    use DiscountCol as C;
    let discount_id = Text::from(r.s(C::DiscountId)?);
    let subscription_id = Text::from(r.s(C::SubscriptionId)?);
    let item_no = r.oint(C::ItemNo)?;
    let kind = r.s(C::Kind)?;
    let value = r.d(C::Value)?;
    let remaining = r.od(C::Remaining)?;
    let start_date = r.date(C::StartDate)?;
    let end_date = r.odate(C::EndDate)?;
    let kind =
        DiscountKind::parse(kind).ok_or_else(|| r.invalid(C::Kind, format!("{kind:?} is not PERCENT or AMOUNT")))?;
    r.domain(C::ItemNo, item_no.is_none_or(|n| n >= 1), "is not >= 1")?;
    match kind {
        DiscountKind::Percent => {
            r.domain(C::Value, value > Decimal::ZERO && value <= Decimal::ONE_HUNDRED, "is not in (0, 100]")?
        }
        DiscountKind::Amount => {
            r.domain(C::Value, value > Decimal::ZERO, "is not > 0")?;
            r.domain(
                C::Remaining,
                remaining.is_none_or(|x| x >= Decimal::ZERO && x <= value),
                &format!("is not within 0 ..= value {value}"),
            )?;
        }
    }
    if let Some(e) = end_date {
        r.domain(C::EndDate, start_date < e, &format!("is not after start_date {start_date}"))?;
    }
    Ok(Discount { discount_id, subscription_id, item_no, kind, value, remaining, start_date, end_date })
}

pub fn parse_wallet(r: &Row) -> Result<Wallet, Fail> {
    let wallet_id = Text::from(r.s(WalletCol::WalletId)?);
    let account_id = Text::from(r.s(WalletCol::AccountId)?);
    let currency = Text::from(r.s(WalletCol::Currency)?);
    let balance = r.d(WalletCol::Balance)?;
    let updated_at = r.ots(WalletCol::UpdatedAt)?;
    let minor = r.currency(WalletCol::Currency, &currency)?;
    Ok(Wallet { wallet_id, account_id, currency, minor, balance, updated_at })
}

pub fn parse_subscription(r: &Row) -> Result<Subscription, Fail> {
    let subscription_id = Text::from(r.s(SubscriptionCol::SubscriptionId)?);
    let account_id = Text::from(r.s(SubscriptionCol::AccountId)?);
    let source = Text::from(r.s(SubscriptionCol::Source)?);
    let status = r.s(SubscriptionCol::Status)?;
    let expires_at = r.ots(SubscriptionCol::ExpiresAt)?;
    let status = Status::parse(status).ok_or_else(|| {
        r.invalid(SubscriptionCol::Status, format!("{status:?} is not ACTIVE, DISCONNECTED or TERMINATED"))
    })?;
    Ok(Subscription { subscription_id, account_id, source, status, expires_at })
}

pub fn parse_item(r: &Row) -> Result<Item, Fail> {
    if let Some(it) = item_fast(r.b, r.i) {
        return Ok(it);
    }
    let subscription_id = Text::from(r.s(ItemCol::SubscriptionId)?);
    let item_no = r.int(ItemCol::ItemNo)?;
    let service_id = Text::from(r.s(ItemCol::ServiceId)?);
    let quantity = r.od(ItemCol::Quantity)?;
    let custom_price = r.od(ItemCol::CustomPrice)?;
    let start_date = r.date(ItemCol::StartDate)?;
    let end_date = r.odate(ItemCol::EndDate)?;
    let billed_through = r.odate(ItemCol::BilledThrough)?;
    let tax_code = r.os(ItemCol::TaxCode).map(Text::from);
    let period = PeriodState {
        start: r.odate(ItemCol::PeriodStart)?,
        quantity: r.od(ItemCol::PeriodQuantity)?,
        charged: r.od(ItemCol::PeriodCharged)?,
    };
    r.domain(ItemCol::ItemNo, item_no >= 1, "is not >= 1")?;
    r.domain(ItemCol::Quantity, quantity.is_none_or(|q| q >= Decimal::ZERO), "is negative")?;
    r.domain(ItemCol::CustomPrice, custom_price.is_none_or(|q| q >= Decimal::ZERO), "is negative")?;
    r.domain(ItemCol::PeriodQuantity, period.quantity.is_none_or(|q| q >= Decimal::ZERO), "is negative")?;
    let ext = ItemExt { tax_code, period };
    let ext = (ext != ItemExt::default()).then(|| Box::new(ext));
    Ok(Item { subscription_id, item_no, service_id, quantity, custom_price, start_date, end_date, billed_through, ext })
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
    let usage_id = r.s(UsageCol::UsageId)?;
    let subscription_id = r.s(UsageCol::SubscriptionId)?;
    let service_id = r.s(UsageCol::ServiceId)?;
    let event_time = r.ts(UsageCol::EventTime)?;
    let quantity = r.d(UsageCol::Quantity)?;
    r.domain(UsageCol::Quantity, quantity >= Decimal::ZERO, "is negative")?;
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
    let [sub, Col::Int(no), svc, qty, price, start, end, billed, v2 @ ..] = &b.cols[..] else {
        return None;
    };
    // Items with a tax code or a pricing-period state (SPEC §9.1) take the checks.
    if !v2.iter().all(|c| c.is_null(i)) {
        return None;
    }
    Some(Item {
        subscription_id: Text::from(sub.str(i)?),
        item_no: no.is_valid(i).then(|| no.value(i)).filter(|&n| n >= 1)?,
        service_id: Text::from(svc.str(i)?),
        quantity: fast::non_negative(qty, i)?,
        custom_price: fast::non_negative(price, i)?,
        start_date: fast::date(start, i)??,
        end_date: fast::date(end, i)?,
        billed_through: fast::date(billed, i)?,
        ext: None,
    })
}

pub fn parse_credit(r: &Row) -> Result<Credit, Fail> {
    let credit_id = Text::from(r.s(CreditCol::CreditId)?);
    let wallet_id = Text::from(r.s(CreditCol::WalletId)?);
    let amount = r.d(CreditCol::Amount)?;
    let transaction_type = Text::from(r.s(CreditCol::TransactionType)?);
    let received_at = r.ts(CreditCol::ReceivedAt)?;
    r.domain(CreditCol::Amount, amount > Decimal::ZERO, "is not > 0")?;
    Ok(Credit { credit_id, wallet_id, amount, transaction_type, received_at })
}

pub fn parse_event(r: &Row) -> Result<Event, Fail> {
    let event_id = Text::from(r.s(EventCol::EventId)?);
    let subscription_id = Text::from(r.s(EventCol::SubscriptionId)?);
    let source = Text::from(r.s(EventCol::Source)?);
    let et = r.s(EventCol::EventType)?;
    let event_time = r.ts(EventCol::EventTime)?;
    let expires_at = r.ots(EventCol::ExpiresAt)?;
    let parsed_type = EventType::parse(et);
    if parsed_type.is_some_and(|t| t.sets_expiry()) && expires_at.is_none() {
        return Err((Reason::MissingRequired, format!("expires_at is missing (required for {et})")));
    }
    let to_account_id = r.os(EventCol::ToAccountId).map(Text::from);
    if parsed_type == Some(EventType::Transferred) && to_account_id.is_none() {
        return Err((Reason::MissingRequired, "to_account_id is missing (required for TRANSFERRED)".into()));
    }
    let amount = r.od(EventCol::Amount)?;
    let currency = r.os(EventCol::Currency).map(Text::from);
    let payment_status = r.os(EventCol::PaymentStatus).map(Text::from);
    let event_type =
        parsed_type.ok_or_else(|| r.invalid(EventCol::EventType, format!("{et:?} is not a known event type")))?;
    r.domain(
        EventCol::PaymentStatus,
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
        "subscription_items" => format!("{}/{}", r.raw(ItemCol::SubscriptionId), r.raw(ItemCol::ItemNo)),
        "price_tiers" => format!("{}/{}", r.raw(TierCol::ServiceId), r.raw(TierCol::TierNo)),
        "tax_rates" => format!("{}/{}", r.raw(TaxRateCol::TaxCode), r.raw(TaxRateCol::ValidFrom)),
        // Every other table's key is its first column (SPEC §3).
        _ => r.raw(0usize),
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
                // No tax code or pricing-period state (a v1 state: the columns are absent).
                Col::Missing,
                Col::Missing,
                Col::Missing,
                Col::Missing,
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
