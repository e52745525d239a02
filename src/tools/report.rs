//! `billrun report DIR [--html FILE] [--against PREV_DIR]`: a finance summary of a published
//! (or `--dry-run`-reviewed) run, from its files alone. The aggregations run in polars over
//! the output tables (flat or Hive layout, Parquet or CSV); the reconciliation comes from the
//! manifest and is cross-checked against the transactions file. Money stays decimal: Parquet
//! decimals are read as polars Decimal(38,18), CSV money columns are cast from text to it.
//!
//! Built only with the `report` cargo feature (on by default).

use crate::error::{Error, Result};
use polars::prelude::*;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Columns holding money or quantities (decimals) in the output schemas.
const DECIMAL_COLS: &[&str] = &[
    "amount",
    "balance",
    "balance_after",
    "quantity",
    "unit_price",
    "daily_consumption",
    "list_amount",
    "discount_amount",
    "tax_amount",
    "net_amount",
    "tax_rate",
    "period_quantity",
    "period_charged",
];
/// Integer columns in the output schemas.
const INT_COLS: &[&str] = &["item_no", "days_remaining", "row"];

fn perr(what: &str, e: PolarsError) -> Error {
    Error::Internal(format!("report: {what}: {e}"))
}

fn dec_type() -> DataType {
    DataType::Decimal(38, 18)
}

/// A run directory opened for reporting.
pub struct RunDir<'a> {
    pub dir: &'a Path,
    pub manifest: Value,
}

impl<'a> RunDir<'a> {
    pub fn open(dir: &'a Path) -> Result<RunDir<'a>> {
        let mpath = dir.join(crate::products::MANIFEST);
        let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(format!("reading {}", mpath.display()), e))?;
        let manifest =
            serde_json::from_str(&text).map_err(|e| Error::input(mpath.display().to_string(), e.to_string()))?;
        Ok(RunDir { dir, manifest })
    }

    /// Table `name` as a lazy frame with the output types normalized: decimals as
    /// Decimal(38,18), integers as Int64, dates and timestamps as text.
    /// A merged sharded run (SPEC §10.1): every shard's files of the table, in shard order.
    pub fn scan(&self, name: &'static str) -> Result<Option<LazyFrame>> {
        let dirs: Vec<std::path::PathBuf> = match self.manifest["shards"].as_array() {
            Some(shards) => shards.iter().map(|s| self.dir.join(s["dir"].as_str().unwrap_or_default())).collect(),
            None => vec![self.dir.to_path_buf()],
        };
        let mut files = Vec::new();
        for d in &dirs {
            if let Some(src) = crate::io::discover::find_table(d, name)? {
                files.extend(src.files);
            }
        }
        if files.is_empty() {
            return Ok(None);
        }
        let mut frames = Vec::new();
        for f in &files {
            let path = PlRefPath::try_from_path(&f.path).map_err(|e| perr("path", e))?;
            let lf = match f.format {
                crate::io::discover::Format::Parquet => {
                    LazyFrame::scan_parquet(path, ScanArgsParquet::default()).map_err(|e| perr(&f.name, e))?
                }
                crate::io::discover::Format::Csv => LazyCsvReader::new(path)
                    .with_has_header(true)
                    .with_infer_schema_length(Some(0))
                    .finish()
                    .map_err(|e| perr(&f.name, e))?,
            };
            frames.push(lf);
        }
        let lf = if frames.len() == 1 {
            frames.pop().unwrap()
        } else {
            concat(frames, UnionArgs::default()).map_err(|e| perr(name, e))?
        };
        let mut lf = lf;
        let schema = lf.collect_schema().map_err(|e| perr(name, e))?;
        let casts: Vec<Expr> = schema
            .iter()
            .map(|(n, dt)| {
                let c = col(n.clone());
                if DECIMAL_COLS.contains(&n.as_str()) {
                    c.cast(dec_type())
                } else if INT_COLS.contains(&n.as_str()) {
                    c.cast(DataType::Int64)
                } else if matches!(dt, DataType::String) {
                    c
                } else {
                    c.cast(DataType::String)
                }
            })
            .collect();
        Ok(Some(lf.select(casts)))
    }

    fn collect(&self, name: &'static str, f: impl FnOnce(LazyFrame) -> LazyFrame) -> Result<Option<Table>> {
        match self.scan(name)? {
            None => Ok(None),
            Some(lf) => Ok(Some(Table::from_df(f(lf).collect().map_err(|e| perr(name, e))?)?)),
        }
    }
}

/// A small collected result as text cells (decimals normalized) plus the raw decimals.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn from_df(df: DataFrame) -> Result<Table> {
        let header: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
        let mut rows = Vec::with_capacity(df.height());
        let cols = df.columns();
        for i in 0..df.height() {
            let mut r = Vec::with_capacity(cols.len());
            for c in cols {
                r.push(cell(c.get(i).map_err(|e| perr("cell", e))?));
            }
            rows.push(r);
        }
        let mut t = Table { header, rows };
        t.show_minor_units();
        Ok(t)
    }

    /// Money cells of a table with a `currency` column get at least the currency's
    /// minor-unit decimals ("4.00", not "4"), as finance reads them.
    fn show_minor_units(&mut self) {
        let Some(ci) = self.header.iter().position(|h| h == "currency") else { return };
        let money: Vec<usize> = (0..self.header.len())
            .filter(|&i| {
                matches!(self.header[i].as_str(), "amount" | "balance" | "previous" | "this" | "change" | "discount")
            })
            .collect();
        for r in &mut self.rows {
            let Some(minor) = crate::domain::minor_units(&r[ci]) else { continue };
            for &i in &money {
                if let Ok(d) = r[i].parse::<Decimal>() {
                    r[i] = crate::domain::with_minor_scale(d, minor).to_string();
                }
            }
        }
    }
    fn col(&self, name: &str) -> usize {
        self.header.iter().position(|h| h == name).unwrap_or(0)
    }
}

fn cell(v: AnyValue) -> String {
    match v {
        AnyValue::Null => String::new(),
        AnyValue::String(s) => s.to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        AnyValue::Decimal(v, _, scale) => match crate::domain::decimal_from_i128(v, scale as i8) {
            Some(d) => d.normalize().to_string(),
            // Beyond the engine's decimals: shown as stored (read back by `dec`, which fails).
            None => format!("{v}e-{scale}"),
        },
        o => o.to_string(),
    }
}

/// A money figure of the run's files or manifest: a malformed one fails the report rather
/// than showing as 0 in a finance summary.
fn dec(s: &str) -> Result<Decimal> {
    s.parse().map_err(|_| Error::input("report", format!("not a decimal figure: {s:?}")))
}

/// A figure of the manifest's totals of a currency, required.
fn manifest_dec(t: &Value, path: &[&str], cur: &str) -> Result<Decimal> {
    let v = path.iter().fold(t, |v, k| &v[*k]);
    let s = v.as_str().ok_or_else(|| {
        Error::input("run_manifest.json", format!("totals.{cur}.{} is missing or not a string", path.join(".")))
    })?;
    dec(s)
}

/// `lf` grouped by `keys`, aggregated, sorted by the keys (a deterministic report).
fn grouped<const N: usize>(lf: LazyFrame, keys: &[&str], aggs: [Expr; N]) -> LazyFrame {
    let by: Vec<Expr> = keys.iter().map(|k| col(*k)).collect();
    let names: Vec<PlSmallStr> = keys.iter().map(|k| PlSmallStr::from(*k)).collect();
    lf.group_by(by).agg(aggs).sort(names, Default::default())
}

fn sum_dec() -> Expr {
    col("amount").sum()
}

/// Everything the text and HTML reports show, aggregated once.
pub struct Figures {
    pub run_id: String,
    pub as_of: String,
    pub cutoff: String,
    /// currency -> (opening, credits, debits, closing, residual) from the manifest.
    pub reconciliation: BTreeMap<String, [Decimal; 5]>,
    /// currency -> (credits, debits) summed from the transactions file.
    pub from_files: BTreeMap<String, (Decimal, Decimal)>,
    /// currency, kind, transaction_type, lines, amount
    pub by_kind: Option<Table>,
    /// currency, service_id, lines, amount
    pub by_service: Option<Table>,
    /// transaction_id, wallet_id, currency, service_id, amount
    pub largest: Option<Table>,
    /// SPEC v2 §9.6: currency, discount_ids, lines, discount — the discounts that took the
    /// most (lines grouped by the discounts applied to them); None before v2.
    pub top_discounts: Option<Table>,
    pub disconnections: Option<Table>,
    pub reconnections: Option<Table>,
    pub estimates_by_class: Option<Table>,
    /// depletion_date, wallets
    pub depletion: Option<Table>,
    /// (bucket label, wallets) of closing balances.
    pub balance_histogram: Vec<(String, u64)>,
    pub payments: Option<Table>,
    pub rejects: Option<Table>,
    /// SPEC v2 §9.6, per currency: list, discounts, taxes and usage credits from the
    /// manifest, and the net revenue (Σ `net_amount` of the priced lines, a usage credit
    /// negative) from the transactions file; empty for a run published before v2.
    pub pricing: BTreeMap<String, [Decimal; 5]>,
    /// (currency, tax code) → taxes, from the manifest.
    pub taxes_by_code: BTreeMap<(String, String), Decimal>,
}

/// Closing-balance buckets (in major units, whatever the currency).
const BUCKETS: &[(i64, &str)] =
    &[(0, "< 0"), (1, "0 – 1"), (5, "1 – 5"), (10, "5 – 10"), (20, "10 – 20"), (50, "20 – 50"), (100, "50 – 100")];

pub fn figures(run: &RunDir) -> Result<Figures> {
    let m = &run.manifest;
    let s = |k: &str| m[k].as_str().unwrap_or("?").to_string();
    let mut reconciliation = BTreeMap::new();
    if let Some(tot) = m["totals"].as_object() {
        for (cur, t) in tot {
            let g = |k: &str| manifest_dec(t, &[k], cur);
            let debits = manifest_dec(t, &["debits", "total"], cur)?;
            reconciliation
                .insert(cur.clone(), [g("opening")?, g("credits")?, debits, g("closing")?, g("rounding_residual")?]);
        }
    }
    let by_kind = run.collect("wallet_transactions", |lf| {
        grouped(lf, &["currency", "kind", "transaction_type"], [len().alias("lines"), sum_dec().alias("amount")])
    })?;
    // The files' side of the reconciliation, from the same aggregate: CREDIT lines are the
    // credits, every other kind a debit.
    let mut from_files: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    for r in by_kind.iter().flat_map(|t| &t.rows) {
        let e = from_files.entry(r[0].clone()).or_default();
        // A usage credit (SPEC §9.3, type USAGE_CREDIT) is neither a credit received nor a
        // debit: it is checked with the usage credits.
        if r[1] == "CREDIT" {
            e.0 += dec(&r[4])?;
        } else if r[2] != "USAGE_CREDIT" {
            e.1 += dec(&r[4])?;
        }
    }
    let by_service = run.collect("wallet_transactions", |lf| {
        let debits = lf.filter(col("direction").eq(lit("DEBIT")));
        grouped(debits, &["currency", "service_id"], [len().alias("lines"), sum_dec().alias("amount")])
    })?;
    let largest = run.collect("wallet_transactions", |lf| {
        lf.filter(col("direction").eq(lit("DEBIT")))
            .select([col("transaction_id"), col("wallet_id"), col("currency"), col("service_id"), col("amount")])
            .sort_by_exprs(
                [col("amount"), col("transaction_id")],
                SortMultipleOptions::default().with_order_descending_multi([true, false]),
            )
            .limit(10)
    })?;
    let top_discounts = match crate::products::carries_pricing(&run.manifest) {
        false => None,
        true => run.collect("wallet_transactions", |lf| {
            let discounted = lf.filter(col("discount_ids").is_not_null());
            grouped(
                discounted,
                &["currency", "discount_ids"],
                [len().alias("lines"), col("discount_amount").sum().alias("discount")],
            )
            .sort_by_exprs(
                [col("discount"), col("discount_ids")],
                SortMultipleOptions::default().with_order_descending_multi([true, false]),
            )
            .limit(10)
        })?,
    };
    let by_reason =
        |name: &'static str| run.collect(name, |lf| grouped(lf, &["source", "reason"], [len().alias("subscriptions")]));
    let disconnections = by_reason("disconnections")?;
    let reconnections = by_reason("reconnections")?;
    let estimates_by_class = run.collect("wallet_estimates", |lf| grouped(lf, &["class"], [len().alias("wallets")]))?;
    let depletion = run.collect("wallet_estimates", |lf| {
        grouped(lf.filter(col("depletion_date").is_not_null()), &["depletion_date"], [len().alias("wallets")]).limit(60)
    })?;
    // Closing balances: bucketed in Rust on exact decimals (a histogram's edges are money).
    let mut balance_histogram: Vec<(String, u64)> =
        BUCKETS.iter().map(|b| (b.1.to_string(), 0)).chain([(format!(">= {}", 100), 0)]).collect();
    if let Some(lf) = run.scan("wallets")? {
        let df = lf.select([col("balance")]).collect().map_err(|e| perr("wallets", e))?;
        let c = df.column("balance").map_err(|e| perr("wallets", e))?;
        let ca = c.as_materialized_series().decimal().map_err(|e| perr("wallets", e))?.clone();
        let scale = ca.scale() as i8;
        for v in ca.physical().iter().flatten() {
            let d = crate::domain::decimal_from_i128(v, scale).unwrap_or_default();
            let i = BUCKETS
                .iter()
                .position(|&(edge, _)| if edge == 0 { d < Decimal::ZERO } else { d < Decimal::from(edge) })
                .unwrap_or(BUCKETS.len());
            balance_histogram[i].1 += 1;
        }
    }
    let payments = run.collect("external_payments", |lf| {
        grouped(lf, &["source", "currency", "payment_status"], [len().alias("events"), sum_dec().alias("amount")])
    })?;
    let rejects = run.collect("rejects", |lf| grouped(lf, &["table", "reason"], [len().alias("rows")]))?;
    let (pricing, taxes_by_code) = pricing(run)?;
    Ok(Figures {
        run_id: s("run_id"),
        as_of: s("as_of"),
        cutoff: s("cutoff"),
        reconciliation,
        from_files,
        by_kind,
        by_service,
        largest,
        top_discounts,
        disconnections,
        reconnections,
        estimates_by_class,
        depletion,
        balance_histogram,
        payments,
        rejects,
        pricing,
        taxes_by_code,
    })
}

/// Per currency: lists, discounts, taxes, usage credits, net revenue (see
/// [`Figures::pricing`]), and taxes per (currency, code); empty for a run published before
/// SPEC v2.
#[allow(clippy::type_complexity)]
fn pricing(run: &RunDir) -> Result<(BTreeMap<String, [Decimal; 5]>, BTreeMap<(String, String), Decimal>)> {
    let m = &run.manifest;
    let mut pricing = BTreeMap::new();
    let mut taxes_by_code = BTreeMap::new();
    if let Some(tot) = m["totals"].as_object().filter(|_| crate::products::carries_pricing(m)) {
        let net = run.collect("wallet_transactions", |lf| {
            grouped(
                lf.filter(col("kind").neq(lit("CREDIT"))),
                &["currency", "direction"],
                [col("net_amount").sum().alias("net")],
            )
        })?;
        let mut revenue: BTreeMap<String, Decimal> = BTreeMap::new();
        for r in net.iter().flat_map(|t| &t.rows) {
            let v = dec(&r[2])?;
            *revenue.entry(r[0].clone()).or_default() += if r[1] == "CREDIT" { -v } else { v };
        }
        for (cur, t) in tot {
            let g = |k: &str| manifest_dec(t, &[k], cur);
            let net = revenue.get(cur).copied().unwrap_or_default();
            pricing.insert(cur.clone(), [g("list")?, g("discounts")?, g("taxes")?, g("usage_credits")?, net]);
            for (code, v) in t["taxes_by_code"].as_object().into_iter().flatten() {
                let v = v.as_str().ok_or_else(|| Error::input("run_manifest.json", format!("taxes_by_code.{code}")))?;
                taxes_by_code.insert((cur.clone(), code.clone()), dec(v)?);
            }
        }
    }
    Ok((pricing, taxes_by_code))
}

impl Figures {
    /// Per currency: does opening + credits − debits = closing, and do the transactions
    /// file's credits and debits equal the manifest's? (With SPEC v2's usage credits added.)
    pub fn checks(&self, cur: &str) -> (bool, bool) {
        let Some([o, c, d, cl, _]) = self.reconciliation.get(cur) else { return (false, false) };
        let files = self.from_files.get(cur).copied().unwrap_or_default();
        let usage_credits = self.pricing.get(cur).map_or(Decimal::ZERO, |p| p[3]);
        (o + c + usage_credits - d == *cl, files == (*c, *d))
    }
}

fn total(t: &Table, col: &str) -> Result<u64> {
    t.rows
        .iter()
        .map(|r| {
            r[t.col(col)]
                .parse::<u64>()
                .map_err(|_| Error::input("report", format!("not a count: {:?}", r[t.col(col)])))
        })
        .sum()
}

/// The text report.
pub fn report(dir: &Path) -> Result<String> {
    let run = RunDir::open(dir)?;
    let f = figures(&run)?;
    let mut o = String::new();
    let _ = writeln!(o, "Billing run {}  (as_of {}, cutoff {})", f.run_id, f.as_of, f.cutoff);
    let _ = writeln!(o, "\nReconciliation per currency: opening + credits - debits = closing");
    let _ = writeln!(
        o,
        "{:<5} {:>16} {:>14} {:>14} {:>16} {:>8} {:>10} {:>16}",
        "cur", "opening", "credits", "debits", "closing", "check", "files", "rounding resid."
    );
    for (cur, [op, cr, de, cl, re]) in &f.reconciliation {
        let (ok, files) = f.checks(cur);
        let _ = writeln!(
            o,
            "{cur:<5} {:>16} {:>14} {:>14} {:>16} {:>8} {:>10} {:>16}",
            op.to_string(),
            cr.to_string(),
            de.to_string(),
            cl.to_string(),
            if ok { "ok" } else { "MISMATCH" },
            if files { "agree" } else { "DIFFER" },
            re.to_string()
        );
    }
    if !f.pricing.is_empty() {
        let _ = writeln!(
            o,
            "\nPricing per currency: list - discounts (+ exclusive taxes) = debits; net revenue excludes tax"
        );
        let _ = writeln!(
            o,
            "{:<5} {:>18} {:>16} {:>16} {:>16} {:>18}",
            "cur", "list", "discounts", "taxes", "usage credits", "net revenue"
        );
        for (cur, v) in &f.pricing {
            let t = |d: &Decimal| thousands(&d.to_string());
            let _ = writeln!(
                o,
                "{cur:<5} {:>18} {:>16} {:>16} {:>16} {:>18}",
                t(&v[0]),
                t(&v[1]),
                t(&v[2]),
                t(&v[3]),
                t(&v[4])
            );
        }
        for ((cur, code), v) in &f.taxes_by_code {
            let _ = writeln!(o, "  {cur:<5} tax {code:<12} {:>16}", thousands(&v.to_string()));
        }
    }
    if let Some(t) = &f.by_kind {
        let _ = writeln!(o, "\nTransactions by kind and type");
        for r in &t.rows {
            let _ = writeln!(o, "  {:<5} {:<10} {:<16} {:>9} lines {:>16}", r[0], r[1], r[2], r[3], r[4]);
        }
    }
    if let Some(t) = &f.by_service {
        let _ = writeln!(o, "\nDebits by service");
        for r in &t.rows {
            let _ = writeln!(o, "  {:<5} {:<16} {:>9} lines {:>16}", r[0], r[1], r[2], r[3]);
        }
    }
    if let Some(t) = &f.largest {
        let _ = writeln!(o, "\nLargest debits");
        for r in &t.rows {
            let _ = writeln!(o, "  {:>14} {:<4} {}", r[4], r[2], r[0]);
        }
    }
    if let Some(t) = &f.top_discounts {
        let _ = writeln!(o, "\nTop discounts (by the discounts applied to a line)");
        for r in &t.rows {
            let _ = writeln!(o, "  {:>14} {:<4} {:>7} lines  {}", thousands(&r[3]), r[0], r[2], r[1]);
        }
    }
    for (name, t) in [("Disconnections", &f.disconnections), ("Reconnections", &f.reconnections)] {
        if let Some(t) = t {
            let _ = writeln!(o, "\n{name} by reason ({} in all)", total(t, "subscriptions")?);
            for r in &t.rows {
                let _ = writeln!(o, "  {:<10} {:<32} {:>9}", r[0], r[1], r[2]);
            }
        }
    }
    if let Some(t) = &f.estimates_by_class {
        let _ = writeln!(o, "\nWallet estimates by class");
        for r in &t.rows {
            let _ = writeln!(o, "  {:<10} {:>9} wallets", r[0], r[1]);
        }
    }
    if f.balance_histogram.iter().any(|b| b.1 > 0) {
        let _ = writeln!(o, "\nClosing balances (wallets)");
        for (label, n) in &f.balance_histogram {
            let _ = writeln!(o, "  {label:<10} {n:>9}");
        }
    }
    if let Some(t) = &f.payments {
        let _ = writeln!(o, "\nStore-reported payments (never in wallets)");
        for r in &t.rows {
            let _ = writeln!(o, "  {:<10} {:<5} {:<10} {:>9} events {:>14}", r[0], r[1], r[2], r[3], r[4]);
        }
    }
    if let Some(t) = &f.rejects {
        let _ = writeln!(o, "\nRejects by table and reason ({} in all)", total(t, "rows")?);
        for r in &t.rows {
            let _ = writeln!(o, "  {:<20} {:<26} {:>9}", r[0], r[1], r[2]);
        }
    }
    Ok(o)
}

// ---- --against PREV_DIR ------------------------------------------------------------------

/// What changed from `prev` to `cur`: totals per currency and kind, subscriptions newly on
/// the disconnection / reconnection lists, and the accounts whose debits moved most.
pub fn against(cur_dir: &Path, prev_dir: &Path) -> Result<String> {
    let cur = RunDir::open(cur_dir)?;
    let prev = RunDir::open(prev_dir)?;
    let mut o = String::new();
    let id = |r: &RunDir| r.manifest["run_id"].as_str().unwrap_or("?").to_string();
    let _ = writeln!(o, "Changes from {} to {}", id(&prev), id(&cur));

    let zero = || lit(0).cast(dec_type());
    let empty_tx = || -> LazyFrame {
        df!("currency" => Vec::<String>::new(), "kind" => Vec::<String>::new(), "account_id" => Vec::<String>::new(),
            "direction" => Vec::<String>::new())
        .unwrap()
        .lazy()
        .with_column(zero().alias("amount"))
    };
    let tx = |r: &RunDir| -> Result<LazyFrame> { Ok(r.scan("wallet_transactions")?.unwrap_or_else(empty_tx)) };
    // `amount` summed per `keys` in both runs, side by side: previous, this, change.
    let compare = |this: LazyFrame, prev: LazyFrame, keys: [&str; 2]| -> LazyFrame {
        let sum = |lf: LazyFrame, name: &str| {
            lf.group_by([col(keys[0]), col(keys[1])]).agg([col("amount").sum().alias(name)])
        };
        sum(this, "this")
            .join(
                sum(prev, "previous"),
                [col(keys[0]), col(keys[1])],
                [col(keys[0]), col(keys[1])],
                JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
            )
            .with_columns([col("this").fill_null(zero()), col("previous").fill_null(zero())])
            .with_column((col("this") - col("previous")).alias("change"))
            .select([col(keys[0]), col(keys[1]), col("previous"), col("this"), col("change")])
    };
    let joined = compare(tx(&cur)?, tx(&prev)?, ["currency", "kind"])
        .sort(["currency", "kind"], Default::default())
        .collect()
        .map_err(|e| perr("totals", e))?;
    comparison(&mut o, "Totals per currency and kind", ["cur", "kind"], &Table::from_df(joined)?);

    // SPEC v2 §9.6: list, discounts, taxes and net revenue per currency, for runs that carry
    // them (a figure a run does not carry counts as 0).
    let (pc, pp) = (pricing(&cur)?.0, pricing(&prev)?.0);
    if !pc.is_empty() || !pp.is_empty() {
        let mut rows = Vec::new();
        let currencies: std::collections::BTreeSet<&String> = pc.keys().chain(pp.keys()).collect();
        for c in currencies {
            let get = |p: &BTreeMap<String, [Decimal; 5]>, i: usize| p.get(c).map_or(Decimal::ZERO, |v| v[i]);
            for (i, name) in [(0, "list"), (1, "discounts"), (2, "taxes"), (4, "net revenue")] {
                let (p, t) = (get(&pp, i), get(&pc, i));
                rows.push(vec![c.clone(), name.to_string(), p.to_string(), t.to_string(), (t - p).to_string()]);
            }
        }
        let t = Table { header: Vec::new(), rows };
        comparison(&mut o, "Pricing per currency (list, discounts, taxes, net revenue)", ["cur", "figure"], &t);
    }

    for (name, title) in [("disconnections", "Newly disconnected"), ("reconnections", "Newly reconnected")] {
        let (Some(c), p) = (cur.scan(name)?, prev.scan(name)?) else { continue };
        let c = c.select([col("subscription_id"), col("account_id"), col("source"), col("reason")]);
        let fresh = match p {
            None => c,
            Some(p) => c
                .join(
                    p.select([col("subscription_id"), lit(true).alias("listed_before")]),
                    [col("subscription_id")],
                    [col("subscription_id")],
                    JoinArgs::new(JoinType::Left),
                )
                .filter(col("listed_before").is_null())
                .select([col("subscription_id"), col("account_id"), col("source"), col("reason")]),
        };
        let df = fresh.sort(["subscription_id"], Default::default()).collect().map_err(|e| perr(name, e))?;
        let t = Table::from_df(df)?;
        let _ = writeln!(o, "\n{title} (not on the previous run's list): {}", t.rows.len());
        for r in t.rows.iter().take(20) {
            let _ = writeln!(o, "  {:<24} account {:<20} {:<10} {}", r[0], r[1], r[2], r[3]);
        }
        if t.rows.len() > 20 {
            let _ = writeln!(o, "  … and {} more", t.rows.len() - 20);
        }
    }

    let debits = |r: &RunDir| -> Result<LazyFrame> { Ok(tx(r)?.filter(col("direction").eq(lit("DEBIT")))) };
    let movers = compare(debits(&cur)?, debits(&prev)?, ["account_id", "currency"])
        .filter(col("change").neq(zero()))
        .sort_by_exprs(
            [col("change").abs(), col("account_id")],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
        .limit(10)
        .collect()
        .map_err(|e| perr("debits per account", e))?;
    comparison(&mut o, "Accounts whose debits moved most", ["account", "cur"], &Table::from_df(movers)?);
    Ok(o)
}

/// A previous / this / change table under `title`, keyed by two columns.
fn comparison(o: &mut String, title: &str, keys: [&str; 2], t: &Table) {
    let _ = writeln!(o, "\n{title}");
    let _ = writeln!(o, "  {:<20} {:<10} {:>16} {:>16} {:>16}", keys[0], keys[1], "previous", "this", "change");
    for r in &t.rows {
        let _ = writeln!(o, "  {:<20} {:<10} {:>16} {:>16} {:>16}", r[0], r[1], r[2], r[3], r[4]);
    }
}

// ---- --html FILE -----------------------------------------------------------------------------

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A horizontal bar chart as inline SVG. Bar lengths are display geometry (f64 is fine
/// here: no money is computed from them); the values printed are the exact decimals.
fn bar_chart(id: &str, title: &str, groups: &[Vec<(String, String)>]) -> Result<String> {
    let mut s = format!("<figure class=\"chart\" id=\"{id}\"><figcaption>{}</figcaption>", esc(title));
    for bars in groups {
        bar_group(&mut s, title, bars)?;
    }
    if groups.is_empty() {
        bar_group(&mut s, title, &[])?;
    }
    s.push_str("</figure>\n");
    Ok(s)
}

/// One scale of a chart: its own SVG, the bars scaled to the group's largest (a chart of
/// money draws one group per currency, so JPY bars do not dwarf EUR ones).
fn bar_group(s: &mut String, title: &str, bars: &[(String, String)]) -> Result<()> {
    let values = bars.iter().map(|b| dec(&b.1)).collect::<Result<Vec<Decimal>>>()?;
    let max = values.iter().copied().max().unwrap_or_default();
    let (w, row, label_w) = (720.0, 22.0, 220.0);
    let h = row * bars.len().max(1) as f64 + 10.0;
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    for (i, ((label, value), v)) in bars.iter().zip(values).enumerate() {
        let frac = if max > Decimal::ZERO {
            (v.max(Decimal::ZERO) / max).to_string().parse::<f64>().unwrap_or(0.0)
        } else {
            0.0
        };
        let y = i as f64 * row + 4.0;
        let bw = ((w - label_w - 140.0) * frac).max(1.0);
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar\" x=\"{label_w}\" y=\"{y}\" width=\"{bw:.1}\" height=\"{}\" data-value=\"{}\"></rect>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            label_w - 6.0,
            y + 14.0,
            esc(label),
            row - 6.0,
            esc(value),
            label_w + bw + 6.0,
            y + 14.0,
            esc(&thousands(value))
        );
    }
    if bars.is_empty() {
        s.push_str("<text x=\"10\" y=\"16\">nothing to show</text>");
    }
    s.push_str("</svg>");
    Ok(())
}

/// A decimal figure with thousands separators in its whole part ("1,234,567.89"), to be read
/// at a glance; anything else unchanged.
fn thousands(v: &str) -> String {
    let (sign, body) = v.strip_prefix('-').map_or(("", v), |b| ("-", b));
    let (int, frac) = body.split_once('.').map_or((body, None), |(i, f)| (i, Some(f)));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return v.to_string();
    }
    let mut out = String::from(sign);
    for (k, c) in int.chars().enumerate() {
        if k > 0 && (int.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

fn html_table(t: &Table, class: &str) -> String {
    let mut s = format!("<table class=\"{class}\"><thead><tr>");
    for h in &t.header {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>\n");
    s
}

/// What every HTML page starts with; a file holding it is an earlier report `--html` may
/// overwrite.
const HTML_MARK: &str = "<title>billrun report ";

/// `--html FILE` is checked before anything is read (issue 34): never the run directory, the
/// `--against` directory or a file inside either (exit 2), and an existing file only if it is
/// an earlier billrun report (exit 4).
pub fn check_html_target(dir: &Path, against: Option<&Path>, file: &Path) -> Result<()> {
    let mut inputs = vec![crate::io::guard::Input { role: "run directory", path: dir }];
    if let Some(prev) = against {
        inputs.push(crate::io::guard::Input { role: "--against", path: prev });
    }
    let written = [crate::io::guard::Written { what: "--html", path: file.to_path_buf(), prefix: false }];
    crate::io::guard::check_disjoint(&written, &inputs)?;
    crate::io::guard::check_file_replaceable(file, HTML_MARK)
}

/// A self-contained HTML report (inline CSS and SVG, no external resources). A small
/// inline script re-adds the per-service debits shown in the chart and compares them with
/// the manifest's debit totals, and writes the outcome into `#self-check`.
pub fn html(dir: &Path) -> Result<String> {
    let run = RunDir::open(dir)?;
    let f = figures(&run)?;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{HTML_MARK}{id}</title>\n\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}\
         td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}th{{background:#f3f3f3}}\
         td:first-child,th:first-child{{text-align:left}}.bar{{fill:#3b7dd8}}svg text{{font-size:12px}}\
         .ok{{color:#176b2c}}.bad{{color:#b00020;font-weight:bold}}figure{{margin:1em 0}}figcaption{{font-weight:600}}</style>\n\
         </head><body>\n<h1>Billing run {id}</h1><p>as_of {as_of}, cutoff {cutoff}</p>\n",
        id = esc(&f.run_id),
        as_of = esc(&f.as_of),
        cutoff = esc(&f.cutoff)
    );
    h.push_str(
        "<h2>Reconciliation</h2><table id=\"reconciliation\"><thead><tr><th>currency</th><th>opening</th>\
         <th>credits</th><th>debits</th><th>closing</th><th>opening + credits − debits = closing</th>\
         <th>transactions file agrees</th><th>rounding residual</th></tr></thead><tbody>",
    );
    for (cur, vals) in &f.reconciliation {
        let (ok, files) = f.checks(cur);
        let _ = write!(h, "<tr data-currency=\"{}\"><td>{}</td>", esc(cur), esc(cur));
        for (k, v) in ["opening", "credits", "debits", "closing"].iter().zip(vals) {
            let _ = write!(h, "<td class=\"{k}\">{}</td>", v);
        }
        let _ = write!(
            h,
            "<td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            if ok { "ok" } else { "bad" },
            if ok { "ok" } else { "MISMATCH" },
            if files { "ok" } else { "bad" },
            if files { "agree" } else { "DIFFER" },
            vals[4]
        );
    }
    h.push_str("</tbody></table>\n");
    if !f.pricing.is_empty() {
        h.push_str(
            "<h2>Pricing</h2><table id=\"pricing\"><thead><tr><th>currency</th><th>list</th><th>discounts</th>\
             <th>taxes</th><th>usage credits</th><th>net revenue</th></tr></thead><tbody>",
        );
        for (cur, v) in &f.pricing {
            let _ = write!(h, "<tr data-currency=\"{}\"><td>{}</td>", esc(cur), esc(cur));
            for (k, d) in ["list", "discounts", "taxes", "usage-credits", "net-revenue"].iter().zip(v) {
                let _ = write!(h, "<td class=\"{k}\">{}</td>", esc(&thousands(&d.to_string())));
            }
            h.push_str("</tr>");
        }
        h.push_str("</tbody></table>\n");
    }
    let _ = writeln!(h, "<p id=\"self-check\" data-status=\"pending\">self-check: needs a browser with JavaScript</p>");

    h.push_str("<h2>Charts</h2>\n");
    let service_bars: Vec<(String, String)> = f
        .by_service
        .as_ref()
        .map(|t| {
            t.rows
                .iter()
                .map(|r| (format!("{} {}", r[0], if r[1].is_empty() { "—" } else { &r[1] }), r[3].clone()))
                .collect()
        })
        .unwrap_or_default();
    // One scale per currency (the label starts with it).
    let mut by_currency: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (label, value) in service_bars {
        let cur = label.split(' ').next().unwrap_or_default().to_string();
        by_currency.entry(cur).or_default().push((label, value));
    }
    let service_groups: Vec<Vec<(String, String)>> = by_currency.into_values().collect();
    h.push_str(&bar_chart("chart-debits-by-service", "Debits by service (one scale per currency)", &service_groups)?);
    let balance_bars: Vec<(String, String)> =
        f.balance_histogram.iter().map(|(l, n)| (l.clone(), n.to_string())).collect();
    h.push_str(&bar_chart("chart-balances", "Closing balance distribution (wallets)", &[balance_bars])?);
    let depletion_bars: Vec<(String, String)> =
        f.depletion.as_ref().map(|t| t.rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect()).unwrap_or_default();
    h.push_str(&bar_chart("chart-depletion", "Depletion forecast (wallets running dry per day)", &[depletion_bars])?);

    let sections: [(&str, &Option<Table>); 9] = [
        ("Transactions by kind and type", &f.by_kind),
        ("Debits by service", &f.by_service),
        ("Largest debits", &f.largest),
        ("Top discounts", &f.top_discounts),
        ("Disconnections by reason", &f.disconnections),
        ("Reconnections by reason", &f.reconnections),
        ("Wallet estimates by class", &f.estimates_by_class),
        ("Store-reported payments (never in wallets)", &f.payments),
        ("Rejects by table and reason", &f.rejects),
    ];
    for (title, t) in sections {
        if let Some(t) = t {
            let _ = writeln!(h, "<h2>{}</h2>", esc(title));
            h.push_str(&html_table(t, "figures"));
        }
    }
    // Manifest debit totals per currency, for the in-browser self-check.
    let expected: BTreeMap<&String, String> = f.reconciliation.iter().map(|(c, v)| (c, v[2].to_string())).collect();
    let _ = write!(
        h,
        "<script>\n(function(){{\n  const expected = {};\n\
         // Sum the debit bars per currency exactly, in integer units of 10^-18.\n\
         const S = 18n;\n  function units(s){{ const neg = s.startsWith('-'); if (neg) s = s.slice(1);\n\
           const [i, f = ''] = s.split('.'); const v = BigInt(i || '0') * 10n ** S + BigInt((f + '0'.repeat(18)).slice(0, 18) || '0');\n\
           return neg ? -v : v; }}\n\
         const got = {{}};\n  document.querySelectorAll('#chart-debits-by-service rect.bar').forEach(function(r, i){{\n\
           const label = r.previousElementSibling.textContent; const cur = label.split(' ')[0];\n\
           got[cur] = (got[cur] || 0n) + units(r.getAttribute('data-value')); }});\n\
         let ok = true; for (const cur in expected) {{ if ((got[cur] || 0n) !== units(expected[cur])) ok = false; }}\n\
         for (const cur in got) {{ if (!(cur in expected)) ok = false; }}\n\
         const charts = document.querySelectorAll('figure.chart').length;\n\
         const p = document.getElementById('self-check');\n\
         p.setAttribute('data-status', ok && charts === 3 ? 'ok' : 'failed');\n\
         p.setAttribute('data-charts', String(charts));\n\
         p.textContent = ok ? 'self-check: debits by service add up to the manifest totals' : 'self-check FAILED: debits by service differ from the manifest';\n\
         p.className = ok ? 'ok' : 'bad';\n}})();\n</script>\n</body></html>\n",
        serde_json::to_string(&expected).unwrap_or_else(|_| "{}".into())
    );
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators_group_the_whole_part_only() {
        for (v, want) in [
            ("0", "0"),
            ("999.99", "999.99"),
            ("1000", "1,000"),
            ("-1234567.891", "-1,234,567.891"),
            ("12345678", "12,345,678"),
            ("n/a", "n/a"),
        ] {
            assert_eq!(thousands(v), want);
        }
    }
}
