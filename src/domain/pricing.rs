//! SPEC v2 §9.1's price-plan records: a service's pricing columns, its tiers, the tax rates
//! and the discounts, as read (the rating core turns them into amounts, `rating::pricing`).

use super::{PeriodText, Text};
use chrono::NaiveDate;
use rust_decimal::Decimal;

/// How a service prices a quantity (`services.pricing_model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PricingModel {
    /// `b * P / s` (v1).
    PerUnit,
    /// Each tier prices the units that fall in it.
    Graduated,
    /// The tier the whole quantity falls in prices all of it.
    Volume,
    /// A started package of `unit_size` units is a whole package.
    Package,
    /// Per usage row: a percentage of the row's quantity (a money amount) plus a fee,
    /// clamped between a minimum and a maximum.
    Percentage,
}

impl PricingModel {
    pub fn parse(s: &str) -> Option<PricingModel> {
        Some(match s {
            "PER_UNIT" => PricingModel::PerUnit,
            "GRADUATED" => PricingModel::Graduated,
            "VOLUME" => PricingModel::Volume,
            "PACKAGE" => PricingModel::Package,
            "PERCENTAGE" => PricingModel::Percentage,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            PricingModel::PerUnit => "PER_UNIT",
            PricingModel::Graduated => "GRADUATED",
            PricingModel::Volume => "VOLUME",
            PricingModel::Package => "PACKAGE",
            PricingModel::Percentage => "PERCENTAGE",
        }
    }
    /// GRADUATED and VOLUME price by a tier set.
    pub fn tiered(self) -> bool {
        matches!(self, PricingModel::Graduated | PricingModel::Volume)
    }
}

/// One row of `price_tiers`, in `tier_no` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tier {
    /// Inclusive upper bound in cumulative units; None: unbounded (the last tier).
    pub up_to: Option<Decimal>,
    /// Per `unit_size` units.
    pub unit_price: Decimal,
    pub flat_fee: Decimal,
}

/// The PERCENTAGE model's per-row fee and bounds (an unset bound does not clamp).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxnFee {
    pub fee: Decimal,
    pub min: Option<Decimal>,
    pub max: Option<Decimal>,
}

impl TxnFee {
    /// PERCENTAGE (SPEC §9.2): one usage row's fee at `price` percent,
    /// `clamp(q * price / 100 + fee, min, max)`, and 0 for a row of quantity 0. None on an
    /// arithmetic overflow.
    pub fn row_fee(&self, price: Decimal, q: Decimal) -> Option<Decimal> {
        if q.is_zero() {
            return Some(Decimal::ZERO);
        }
        let mut fee = q.checked_mul(price)?.checked_div(Decimal::ONE_HUNDRED)?.checked_add(self.fee)?;
        if let Some(min) = self.min {
            fee = fee.max(min);
        }
        if let Some(max) = self.max {
            fee = fee.min(max);
        }
        Some(fee)
    }
}

/// A service's §9.1 columns as read (None on a service whose input had none of them set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePricing {
    /// Null reads as PER_UNIT; kept as read for the copy through.
    pub model: Option<PricingModel>,
    pub free_units: Option<Decimal>,
    pub pricing_period: Option<PeriodText>,
    pub txn_fee: Option<Decimal>,
    pub txn_min: Option<Decimal>,
    pub txn_max: Option<Decimal>,
    pub tax_code: Option<Text>,
    pub price_includes_tax: Option<bool>,
    /// The service's tiers in `tier_no` order (GRADUATED, VOLUME), attached after the
    /// `price_tiers` table is checked.
    pub tiers: Vec<Tier>,
}

impl ServicePricing {
    pub fn model(&self) -> PricingModel {
        self.model.unwrap_or(PricingModel::PerUnit)
    }
    pub fn txn(&self) -> TxnFee {
        TxnFee { fee: self.txn_fee.unwrap_or_default(), min: self.txn_min, max: self.txn_max }
    }
}

/// A row of `price_tiers` as read.
#[derive(Clone, Debug)]
pub struct TierRow {
    pub service_id: Text,
    pub tier_no: i64,
    pub tier: Tier,
    /// The flat fee as read (null stays null in the copy through).
    pub flat_fee: Option<Decimal>,
}

/// A row of `tax_rates`.
#[derive(Clone, Debug)]
pub struct TaxRate {
    pub tax_code: Text,
    /// Percent (`19` = 19 %).
    pub rate: Decimal,
    pub valid_from: NaiveDate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscountKind {
    Percent,
    Amount,
}

impl DiscountKind {
    pub fn parse(s: &str) -> Option<DiscountKind> {
        match s {
            "PERCENT" => Some(DiscountKind::Percent),
            "AMOUNT" => Some(DiscountKind::Amount),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DiscountKind::Percent => "PERCENT",
            DiscountKind::Amount => "AMOUNT",
        }
    }
}

/// A row of `discounts`.
#[derive(Clone, Debug)]
pub struct Discount {
    pub discount_id: Text,
    pub subscription_id: Text,
    /// None: every item of the subscription.
    pub item_no: Option<i64>,
    pub kind: DiscountKind,
    pub value: Decimal,
    /// AMOUNT: what is left of the budget; None = `value`.
    pub remaining: Option<Decimal>,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
}

impl Discount {
    /// Whether a run at `as_of` applies it (`start_date <= as_of < end_date`).
    pub fn in_effect(&self, as_of: NaiveDate) -> bool {
        self.start_date <= as_of && self.end_date.is_none_or(|e| as_of < e)
    }
    /// An AMOUNT discount's budget left (`remaining ?? value`).
    pub fn budget(&self) -> Decimal {
        self.remaining.unwrap_or(self.value)
    }
}
