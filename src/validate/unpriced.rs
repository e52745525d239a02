//! SPEC v2 §9 price plans this build does not rate yet (issue 32: tiers, packages,
//! percentages, free units, pricing periods, taxes, discounts). A state that uses them is
//! refused (exit 2, naming file, row and column) rather than billed as if its plans were
//! flat: a wrong invoice is worse than a stopped night. v2 columns holding only what v1
//! means (`pricing_model` PER_UNIT or null, `free_units` 0, no tax code, no discount) pass.

use super::parse::{ServicePricingCol as C, SERVICE_PRICING};
use crate::domain::parse_decimal_strict;
use crate::error::{Error, Result};
use crate::io::discover::TableSource;
use crate::io::read::{opt, read_unit, units, Kind};
use rust_decimal::Decimal;

/// Refuse a state whose services price by a §9 model, or that carries discounts.
pub fn refuse_unpriced_plans(services: &TableSource, discounts: Option<&TableSource>) -> Result<()> {
    for file in &services.files {
        for unit in units(file)? {
            read_unit(file, SERVICE_PRICING, &unit, |b| {
                for i in 0..b.len {
                    let cell = |c: C| b.cols[c as usize].str(i).filter(|s| !s.is_empty());
                    let unsupported =
                        match (cell(C::PricingModel), cell(C::FreeUnits), cell(C::PricingPeriod), cell(C::TaxCode)) {
                            (Some(m), ..) if m != "PER_UNIT" => Some(("pricing_model", m)),
                            (_, Some(f), ..) if parse_decimal_strict(f).is_none_or(|d| d != Decimal::ZERO) => {
                                Some(("free_units", f))
                            }
                            (_, _, Some(p), _) => Some(("pricing_period", p)),
                            (_, _, _, Some(t)) => Some(("tax_code", t)),
                            _ => None,
                        };
                    if let Some((column, value)) = unsupported {
                        return Err(Error::Input {
                            file: file.name.clone(),
                            column: Some(column.into()),
                            row: Some(b.first_row + i as u64),
                            message: format!(
                                "service {:?}: {value:?} is SPEC v2 pricing, which this build does not rate yet \
                                 (issue 32); refused rather than billed as a flat price",
                                cell(C::ServiceId).unwrap_or_default()
                            ),
                        });
                    }
                }
                Ok(())
            })?;
        }
    }
    if let Some(d) = discounts {
        let mut rows = 0u64;
        for file in &d.files {
            for unit in units(file)? {
                rows += read_unit(file, &[opt("discount_id", Kind::Text)], &unit, |_| Ok(()))?;
            }
        }
        if rows > 0 {
            let file = d.files.first().map_or_else(|| d.table.to_string(), |f| f.name.clone());
            return Err(Error::input(
                file,
                format!("{rows} discounts: SPEC v2 discounts are not applied by this build yet (issue 32); refused"),
            ));
        }
    }
    Ok(())
}
