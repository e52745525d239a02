//! SPEC §9.2: the list amount `A(q)` of a quantity under a service's price plan, exact (the
//! caller rounds once per line). Pure arithmetic on decimals; `None` means an arithmetic
//! overflow, which the caller reports for its wallet.
//!
//! [`line`]: a line's discounts and taxes (§9.4, §9.5). The pricing-period grid a POST_RATE
//! window is split on (§9.3) is calendar arithmetic: `domain::grid`.

pub mod line;

use crate::domain::{Item, Service};
pub use crate::domain::{PricingModel, Tier, TxnFee};
use rust_decimal::Decimal;

/// What `A(q)` needs of a service and its item.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'t> {
    pub model: PricingModel,
    /// `P` = `custom_price ?? price`.
    pub price: Decimal,
    /// `s` = `unit_size` (default 1).
    pub unit_size: Decimal,
    /// `f` = `free_units` (default 0).
    pub free_units: Decimal,
    /// The service's tiers in `tier_no` order (GRADUATED, VOLUME).
    pub tiers: &'t [Tier],
    pub txn: TxnFee,
}

impl<'t> Plan<'t> {
    /// The plan of `item` of `service`. `per_unit_size`: `s` is `unit_size` (POST_RATE); else
    /// it is 1 except for PACKAGE (PRE_RATE and ONE_TIME price the item's quantity, §9.2).
    pub fn of(service: &'t Service, item: &Item, per_unit_size: bool) -> Plan<'t> {
        let model = service.model();
        let unit_size = if per_unit_size || model == PricingModel::Package { service.unit() } else { Decimal::ONE };
        let (free_units, tiers, txn) = match &service.pricing {
            Some(p) => (p.free_units.unwrap_or_default(), &p.tiers[..], p.txn()),
            None => (Decimal::ZERO, &[][..], TxnFee::default()),
        };
        Plan { model, price: item.custom_price.unwrap_or(service.price), unit_size, free_units, tiers, txn }
    }

    /// `A(q)` for the quantity-priced models; for PERCENTAGE, see [`Plan::percentage_fee`].
    pub fn list_amount(&self, q: Decimal) -> Option<Decimal> {
        let b = (q - self.free_units).max(Decimal::ZERO);
        let s = self.unit_size;
        match self.model {
            PricingModel::PerUnit => b.checked_mul(self.price)?.checked_div(s),
            PricingModel::Package => b.checked_div(s)?.ceil().checked_mul(self.price),
            PricingModel::Graduated => {
                let mut total = Decimal::ZERO;
                let mut lower = Decimal::ZERO;
                for (i, t) in self.tiers.iter().enumerate() {
                    // Tier 1 is always reached; tier i > 1 when b exceeds the bound below it.
                    if i > 0 && b <= lower {
                        break;
                    }
                    let upper = t.up_to.map_or(b, |u| u.min(b));
                    let n = (upper - lower).max(Decimal::ZERO);
                    total = total.checked_add(t.flat_fee)?.checked_add(n.checked_mul(t.unit_price)?.checked_div(s)?)?;
                    match t.up_to {
                        Some(u) => lower = u,
                        None => break,
                    }
                }
                Some(total)
            }
            PricingModel::Volume => {
                let t = self.tiers.iter().find(|t| t.up_to.is_none_or(|u| b <= u))?;
                t.flat_fee.checked_add(b.checked_mul(t.unit_price)?.checked_div(s)?)
            }
            PricingModel::Percentage => None,
        }
    }

    /// PERCENTAGE: one usage row's fee, `clamp(q * P / 100 + txn_fee, txn_min, txn_max)`,
    /// and 0 for a row of quantity 0.
    pub fn percentage_fee(&self, q: Decimal) -> Option<Decimal> {
        self.txn.row_fee(self.price, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }
    fn tier(up_to: Option<&str>, unit_price: &str, flat_fee: &str) -> Tier {
        Tier { up_to: up_to.map(d), unit_price: d(unit_price), flat_fee: d(flat_fee) }
    }
    fn plan(model: PricingModel, tiers: &[Tier]) -> Plan<'_> {
        Plan {
            model,
            price: Decimal::ZERO,
            unit_size: Decimal::ONE,
            free_units: Decimal::ZERO,
            tiers,
            txn: TxnFee::default(),
        }
    }

    /// SPEC §9.2's figures, from two established billing systems' own test suites.
    #[test]
    fn graduated_tiers_price_each_band() {
        let tiers = [tier(Some("10"), "10", "2"), tier(Some("20"), "5", "3"), tier(None, "5", "3")];
        let p = plan(PricingModel::Graduated, &tiers);
        for (q, a) in [("0", "2"), ("1", "12"), ("10", "102"), ("11", "110"), ("12", "115"), ("21", "163")] {
            assert_eq!(p.list_amount(d(q)), Some(d(a)), "q = {q}");
        }
    }

    #[test]
    fn volume_tiers_price_the_whole_quantity() {
        let tiers = [tier(Some("100"), "2", "10"), tier(Some("200"), "1", "0"), tier(None, "0.5", "50")];
        let p = plan(PricingModel::Volume, &tiers);
        for (q, a) in [
            ("0", "10"),
            ("1", "12"),
            ("100", "210"),
            ("100.5", "100.5"),
            ("101", "101"),
            ("200", "200"),
            ("300", "200"),
        ] {
            assert_eq!(p.list_amount(d(q)), Some(d(a)), "q = {q}");
        }
    }

    #[test]
    fn a_started_package_is_a_whole_package() {
        for (free, a) in [("0", "1300"), ("10", "1200"), ("200", "0")] {
            let p =
                Plan { price: d("100"), unit_size: d("10"), free_units: d(free), ..plan(PricingModel::Package, &[]) };
            assert_eq!(p.list_amount(d("121")), Some(d(a)), "free {free}");
        }
    }

    #[test]
    fn percentage_fees_are_clamped_per_row() {
        let mut p = Plan {
            price: d("2.99"),
            txn: TxnFee { fee: Decimal::ZERO, min: Some(d("1.75")), max: Some(d("12")) },
            ..plan(PricingModel::Percentage, &[])
        };
        let sum = |p: &Plan| -> Decimal { ["10", "80", "10000"].iter().map(|q| p.percentage_fee(d(q)).unwrap()).sum() };
        assert_eq!(sum(&p), d("16.142"));
        p.txn.fee = d("2");
        assert_eq!(sum(&p), d("18.691"));
        assert_eq!(p.percentage_fee(Decimal::ZERO), Some(Decimal::ZERO));
    }

    #[test]
    fn per_unit_is_v1() {
        let p = Plan { price: d("7.50"), unit_size: d("1000"), ..plan(PricingModel::PerUnit, &[]) };
        assert_eq!(p.list_amount(d("1360000")), Some(d("10200")));
    }
}
