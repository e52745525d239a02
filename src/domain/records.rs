//! The typed records of SPEC §3 (one per input row that passed its checks) and their codes.

use super::{Micros, PeriodText};
use chrono::NaiveDate;
use rust_decimal::Decimal;

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

/// Ids and codes of the domain rows: stored inline up to 24 bytes (no heap allocation per
/// id), which is most of the state's memory at scale.
pub type Text = compact_str::CompactString;

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
    /// The §9.1 columns (None when the row had none set: a v1 service, 8 bytes).
    pub pricing: Option<Box<super::ServicePricing>>,
}

impl Service {
    pub fn model(&self) -> super::PricingModel {
        self.pricing.as_ref().map_or(super::PricingModel::PerUnit, |p| p.model())
    }
    pub fn tax_code(&self) -> Option<&str> {
        self.pricing.as_ref().and_then(|p| p.tax_code.as_deref())
    }
    pub fn includes_tax(&self) -> bool {
        self.pricing.as_ref().and_then(|p| p.price_includes_tax).unwrap_or(false)
    }
    /// POST_RATE: the period usage accumulates over (SPEC §9.3).
    pub fn pricing_period(&self) -> Option<super::Period> {
        self.pricing.as_ref().and_then(|p| p.pricing_period.as_ref()).map(|p| p.period)
    }
    /// Whether rating it needs more of its usage than the window's sum (SPEC §9.2–9.3): the
    /// rows' dates (pricing periods), each row (PERCENTAGE) or whether there is any (tiers).
    pub fn needs_usage_rows(&self) -> bool {
        self.billing_method == BillingMethod::PostRate
            && (self.pricing_period().is_some()
                || matches!(
                    self.model(),
                    super::PricingModel::Percentage | super::PricingModel::Graduated | super::PricingModel::Volume
                ))
    }
    pub fn advance(&self) -> super::Period {
        self.advance_period.as_ref().map(|p| p.period).unwrap_or_else(super::Period::zero)
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
    /// The item's SPEC v2 columns (its tax code and pricing-period state): None when all are
    /// null, as on every item of a v1 state (boxed: 8 bytes an item rather than 64).
    pub ext: Option<Box<ItemExt>>,
}

/// An item's SPEC v2 §9.1 columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemExt {
    /// Overrides the service's tax code.
    pub tax_code: Option<Text>,
    pub period: PeriodState,
}

/// Usage accumulated in an item's current pricing period (SPEC §9.3, state columns
/// `period_start`, `period_quantity`, `period_charged`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeriodState {
    pub start: Option<NaiveDate>,
    pub quantity: Option<Decimal>,
    pub charged: Option<Decimal>,
}

impl Item {
    pub fn period(&self) -> Option<&PeriodState> {
        self.ext.as_ref().map(|e| &e.period)
    }
    pub fn tax_code(&self) -> Option<&str> {
        self.ext.as_ref().and_then(|e| e.tax_code.as_deref())
    }
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

/// What a plan needs of an item's rated usage beyond its sum (SPEC §9.2–9.3), folded row by
/// row as the usage is read: how many rows, their PERCENTAGE fees, and the quantity in each
/// pricing period the window touches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageDetail {
    /// Rated rows (of any quantity).
    pub rows: u32,
    /// PERCENTAGE: the sum of the rows' fees, exact. With a pricing period: the quantity
    /// in the period `first`.
    value: Decimal,
    /// With a pricing period: the first period the window's usage fell in (a window mostly
    /// lies in one period: it is inline, 32 bytes an item).
    first: Option<NaiveDate>,
    /// The other periods' (start, quantity), in the order first seen (boxed: 8 bytes where
    /// most items have none, a vector 24).
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<(NaiveDate, Decimal)>>>,
}

impl UsageDetail {
    /// PERCENTAGE: the sum of the rows' fees.
    pub fn fees(&self) -> Decimal {
        self.value
    }

    /// Add a row's fee; None on an overflow.
    pub fn add_fee(&mut self, fee: Decimal) -> Option<()> {
        self.value = self.value.checked_add(fee)?;
        Some(())
    }

    /// The quantity in the pricing period starting `ps`.
    pub fn in_period(&self, ps: NaiveDate) -> Option<Decimal> {
        if self.first == Some(ps) {
            return Some(self.value);
        }
        self.more.as_ref()?.iter().find(|p| p.0 == ps).map(|p| p.1)
    }

    /// Add `q` to the pricing period starting `ps`; None on an overflow.
    pub fn add_in_period(&mut self, ps: NaiveDate, q: Decimal) -> Option<()> {
        match self.first {
            None => {
                self.first = Some(ps);
                self.value = q;
            }
            Some(f) if f == ps => self.value = self.value.checked_add(q)?,
            Some(_) => {
                let more = self.more.get_or_insert_with(Default::default);
                match more.iter_mut().find(|p| p.0 == ps) {
                    Some(p) => p.1 = p.1.checked_add(q)?,
                    None => more.push((ps, q)),
                }
            }
        }
        Some(())
    }
}

/// [`UsageDetail`]s of the items whose plans need them (empty when none does).
#[derive(Debug, Default)]
pub struct UsageDetails {
    /// The items that have a detail, ascending (after [`UsageDetails::finish`]), beside
    /// their details: 4 bytes an item with usage, not 4 bytes an item of the state.
    pub items: Vec<u32>,
    pub details: Vec<UsageDetail>,
}

impl UsageDetails {
    pub fn of(&self, item: usize) -> Option<&UsageDetail> {
        let k = self.items.binary_search(&(item as u32)).ok()?;
        self.details.get(k)
    }

    /// Sort the details by item, for [`UsageDetails::of`].
    pub fn finish(&mut self) {
        if self.items.is_sorted() {
            return;
        }
        let mut pairs: Vec<(u32, UsageDetail)> =
            std::mem::take(&mut self.items).into_iter().zip(std::mem::take(&mut self.details)).collect();
        pairs.sort_unstable_by_key(|p| p.0);
        (self.items, self.details) = pairs.into_iter().unzip();
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
