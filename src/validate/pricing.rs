//! SPEC v2 §9.1's state tables: `price_tiers` and `tax_rates` (configuration: a bad row stops
//! the run), the tier-set rules that reject a service `INVALID_TIERS`, and `discounts`
//! (rows: a bad one is rejected, one with a bad reference carried through).

use super::*;
use crate::error::Error;
use chrono::NaiveDate;

/// `price_tiers` rows in (service_id, tier_no) order, each with its reject (carried).
pub type TierRows = Vec<(TierRow, Option<Reason>)>;
/// `tax_rates` rows (None: no table) and each code's rate at `as_of`.
type TaxTables = (Option<Vec<TaxRate>>, HashMap<Text, Decimal>);
/// `discounts` rows (None: no table) and per subscription the ones that apply (CSR).
type DiscountTables = (Option<Vec<Discount>>, Vec<u32>, Vec<u32>);

/// The §9.1 tables of a state, checked. Each table is None when the state had none (then
/// the next state has none either).
#[derive(Default)]
pub struct PriceTables {
    /// `price_tiers` rows in (service_id, tier_no) order, each with its reject (carried).
    pub tiers: Option<TierRows>,
    /// `tax_rates` rows in (tax_code, valid_from) order.
    pub tax_rates: Option<Vec<TaxRate>>,
    /// Each tax code's rate at `as_of` (codes with no rate yet are absent).
    pub tax_at: HashMap<Text, Decimal>,
    /// `discounts` rows that parsed (first of each id), in discount_id order.
    pub discounts: Option<Vec<Discount>>,
    /// Per subscription, its valid discounts in discount_id order (CSR, empty without any).
    disc_idx: Vec<u32>,
    disc_at: Vec<u32>,
    /// Whether the services input had a §9.1 column, and the items input a tax_code: the
    /// next state writes them only then (a v1 state's tables stay byte-identical).
    pub services_v2: bool,
    pub items_tax_code: bool,
}

impl PriceTables {
    /// The valid discounts of subscription `si`, in discount_id order.
    pub fn discounts_of(&self, si: usize) -> &[u32] {
        if self.disc_at.is_empty() {
            return &[];
        }
        &self.disc_idx[self.disc_at[si] as usize..self.disc_at[si + 1] as usize]
    }

    /// The rate of tax `code` at the run's `as_of`.
    pub fn rate(&self, code: &str) -> Option<Decimal> {
        if self.tax_at.is_empty() {
            return None;
        }
        self.tax_at.get(code).copied()
    }
}

/// Load a configuration table (SPEC §9.1: `price_tiers`, `tax_rates`): every row must parse,
/// be in its domain and have a key of its own, else the run stops (exit 2) naming the file,
/// the row and the column. Its files count among the run's inputs.
fn load_config<T: Send + Sync>(
    intake: &mut Intake,
    src: &TableSource,
    specs: &[ColSpec],
    parse: impl Fn(&Row) -> Result<T, Fail> + Sync,
    key: impl for<'x> Fn(&'x T) -> (&'x str, i64) + Sync,
    show_key: impl Fn(&T) -> String,
) -> Result<Loaded<T>> {
    let mut part = intake.fork();
    let rows = part.load(src, specs, parse);
    let bad = part.rejects.first().map(|r| (part.file_of(r).to_string(), r.row, r.detail.to_string()));
    let rows = intake.adopt(part, rows)?;
    if let Some((file, row, detail)) = bad {
        let column = detail.split([':', ' ']).next().map(str::to_string);
        return Err(Error::Input {
            file,
            column,
            row: Some(row),
            message: format!("{detail} ({} is configuration: no row of it may be skipped)", src.table),
        });
    }
    let (_, dups) = IdIndex::build(rows.len(), |i| Some(key(&rows.rows[i])));
    if let Some(&d) = dups.first() {
        let o = rows.origins[d];
        return Err(Error::Input {
            file: intake.files[o.file_ord as usize].name.clone(),
            column: None,
            row: Some(o.row),
            message: format!(
                "duplicate key {} ({} is configuration: a key may appear once)",
                show_key(&rows.rows[d]),
                src.table
            ),
        });
    }
    Ok(rows)
}

/// `price_tiers`: loaded as configuration, then each service's tier set checked (SPEC §9.1).
/// A GRADUATED or VOLUME service whose tiers break the rules (or that has none) is rejected
/// `INVALID_TIERS` with all its tiers (`service_ok` false: its items become UNKNOWN_SERVICE);
/// a good set is attached to its service. Returns the tier rows with their rejects.
pub(super) fn check_tiers(
    intake: &mut Intake,
    src: Option<&TableSource>,
    services: &mut Loaded<Service>,
    service_idx: &HashMap<Text, usize>,
    service_ok: &mut [bool],
) -> Result<Option<TierRows>> {
    let loaded = match src {
        Some(src) => load_config(
            intake,
            src,
            PRICE_TIERS,
            parse_tier,
            |t| (&t.service_id, t.tier_no),
            |t| format!("{}/{}", t.service_id, t.tier_no),
        )?,
        None => Loaded::default(),
    };
    let mut rows: Vec<(TierRow, Origin)> = loaded.rows.into_iter().zip(loaded.origins).collect();
    rows.sort_by(|a, b| (a.0.service_id.as_bytes(), a.0.tier_no).cmp(&(b.0.service_id.as_bytes(), b.0.tier_no)));
    let mut by_service: HashMap<usize, Vec<usize>> = HashMap::default();
    let mut fate: Vec<Option<(Reason, String)>> = vec![None; rows.len()];
    for (k, (t, _)) in rows.iter().enumerate() {
        match service_idx.get(&t.service_id).copied() {
            None => {
                fate[k] = Some((Reason::UnknownService, format!("service {} is unknown or rejected", t.service_id)))
            }
            Some(v) if !services.rows[v].model().tiered() => {
                let model = services.rows[v].model().as_str();
                fate[k] = Some((Reason::InvalidTiers, format!("service {} is {model}: it has no tiers", t.service_id)))
            }
            Some(v) => by_service.entry(v).or_default().push(k),
        }
    }
    for (v, svc) in services.rows.iter_mut().enumerate() {
        if !svc.model().tiered() {
            continue;
        }
        let mine: &[usize] = by_service.get(&v).map_or(&[], |x| x);
        let tiers: Vec<Tier> = mine.iter().map(|&k| rows[k].0.tier).collect();
        match tier_set_error(&tiers) {
            None => {
                if let Some(p) = svc.pricing.as_mut() {
                    p.tiers = tiers;
                }
            }
            Some(why) => {
                service_ok[v] = false;
                intake.reject(
                    "services",
                    services.origins[v],
                    svc.service_id.clone(),
                    Reason::InvalidTiers,
                    why.clone(),
                );
                for &k in mine {
                    fate[k] = Some((
                        Reason::InvalidTiers,
                        format!("the tiers of service {} are invalid: {why}", svc.service_id),
                    ));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for ((t, o), f) in rows.into_iter().zip(fate) {
        let reason = f.map(|(reason, detail)| {
            intake.reject("price_tiers", o, format!("{}/{}", t.service_id, t.tier_no), reason, detail);
            reason
        });
        out.push((t, reason));
    }
    Ok(src.map(|_| out))
}

/// Why a tier set breaks SPEC §9.1's rules (in `tier_no` order: `up_to >= 0` and strictly
/// increasing, the last one's null and no other's, at least one tier), or None.
pub fn tier_set_error(tiers: &[Tier]) -> Option<String> {
    let Some(last) = tiers.last() else {
        return Some("a GRADUATED or VOLUME service needs at least one tier".into());
    };
    if last.up_to.is_some() {
        return Some("the last tier's up_to must be null (unbounded)".into());
    }
    let mut prev: Option<Decimal> = None;
    for (i, t) in tiers[..tiers.len() - 1].iter().enumerate() {
        let Some(u) = t.up_to else {
            return Some(format!("tier {} of {} has a null up_to but is not the last", i + 1, tiers.len()));
        };
        if u < Decimal::ZERO {
            return Some(format!("up_to {u} is negative"));
        }
        if prev.is_some_and(|p| u <= p) {
            return Some(format!("up_to {u} does not increase on {}", prev.unwrap()));
        }
        prev = Some(u);
    }
    None
}

/// `tax_rates`, loaded as configuration; returns the rows in (tax_code, valid_from) order and
/// each code's rate at `as_of` (the row of the latest `valid_from <= as_of`).
pub(super) fn load_tax_rates(intake: &mut Intake, src: Option<&TableSource>, as_of: NaiveDate) -> Result<TaxTables> {
    let Some(src) = src else { return Ok((None, HashMap::default())) };
    let mut rows = load_config(
        intake,
        src,
        TAX_RATES,
        parse_tax_rate,
        |t| (&t.tax_code, t.valid_from.num_days_from_ce() as i64),
        |t| format!("{}/{}", t.tax_code, t.valid_from),
    )?
    .rows;
    rows.sort_by(|a, b| (a.tax_code.as_bytes(), a.valid_from).cmp(&(b.tax_code.as_bytes(), b.valid_from)));
    let mut at = HashMap::default();
    for t in rows.iter().filter(|t| t.valid_from <= as_of) {
        // In valid_from order: the latest one in effect wins.
        at.insert(t.tax_code.clone(), t.rate);
    }
    Ok((Some(rows), at))
}

use chrono::Datelike;

/// `discounts` (SPEC §9.1): parsed (bad rows quarantined), deduplicated on discount_id, and
/// checked against the subscriptions and items: `UNKNOWN_SUBSCRIPTION`, `SOURCE_MISMATCH`,
/// `UNKNOWN_ITEM` (carried through, never applied). Returns the rows in discount_id order,
/// and per subscription the ones that apply (CSR).
pub(super) fn check_discounts(
    intake: &mut Intake,
    src: Option<&TableSource>,
    subs: &[Subscription],
    sub_ok: &[bool],
    find_sub: impl Fn(&str) -> Option<usize>,
    has_item: impl Fn(usize, i64) -> bool,
) -> Result<DiscountTables> {
    let Some(src) = src else { return Ok((None, Vec::new(), Vec::new())) };
    let rows = intake.load(src, DISCOUNTS, parse_discount)?;
    let (rows, _) = intake.dedupe("discounts", rows, |d| (&d.discount_id, 0));
    let mut linked: Vec<(Discount, Option<usize>)> = Vec::with_capacity(rows.len());
    for (d, o) in rows.rows.into_iter().zip(rows.origins) {
        let si = find_sub(&d.subscription_id).filter(|&s| sub_ok[s]);
        let fail = match si {
            None => Some((
                Reason::UnknownSubscription,
                format!("subscription {} is unknown or rejected", d.subscription_id),
            )),
            Some(s) if !subs[s].is_internal() => Some((
                Reason::SourceMismatch,
                format!(
                    "subscription {} is managed by {}: its prices are the store's",
                    d.subscription_id, subs[s].source
                ),
            )),
            Some(s) => match d.item_no {
                Some(no) if !has_item(s, no) => {
                    Some((Reason::UnknownItem, format!("subscription {} has no item {no}", d.subscription_id)))
                }
                _ => None,
            },
        };
        if let Some((reason, detail)) = fail {
            intake.reject("discounts", o, d.discount_id.clone(), reason, detail);
            linked.push((d, None));
        } else {
            linked.push((d, si));
        }
    }
    linked.sort_by(|a, b| a.0.discount_id.as_bytes().cmp(b.0.discount_id.as_bytes()));
    let members = linked.iter().enumerate().filter_map(|(k, (_, s))| s.map(|s| (k as u32, s)));
    let (idx, at) = group_csr(subs.len(), members);
    Ok((Some(linked.into_iter().map(|(d, _)| d).collect()), idx, at))
}

/// Build [`PriceTables`] from its parts.
pub(super) fn price_tables(
    tiers: Option<TierRows>,
    (tax_rates, tax_at): TaxTables,
    (discounts, disc_idx, disc_at): DiscountTables,
    services_v2: bool,
    items_tax_code: bool,
) -> PriceTables {
    PriceTables { tiers, tax_rates, tax_at, discounts, disc_idx, disc_at, services_v2, items_tax_code }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(up_to: Option<&str>) -> Tier {
        Tier { up_to: up_to.map(|u| u.parse().unwrap()), unit_price: Decimal::ONE, flat_fee: Decimal::ZERO }
    }

    /// SPEC §9.1's tier-set rules, each breach found.
    #[test]
    fn tier_sets_follow_the_rules() {
        assert_eq!(tier_set_error(&[t(Some("10")), t(Some("20")), t(None)]), None);
        assert_eq!(tier_set_error(&[t(None)]), None);
        assert_eq!(tier_set_error(&[t(Some("0")), t(None)]), None);
        for bad in [
            vec![],
            vec![t(Some("10"))],
            vec![t(None), t(None)],
            vec![t(Some("20")), t(Some("10")), t(None)],
            vec![t(Some("10")), t(Some("10")), t(None)],
            vec![t(Some("-1")), t(None)],
            vec![t(None), t(Some("10"))],
        ] {
            assert!(tier_set_error(&bad).is_some(), "{bad:?}");
        }
    }
}
