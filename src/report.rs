//! `billrun report DIR`: a finance summary of a published run, from its files alone:
//! the reconciliation per currency, debits by kind, transaction type and service, the
//! lists by reason, the largest debits, store payments and rejects by reason.

use crate::dump::{read_run_table, TextTable};
use crate::error::{Error, Result};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or_default()
}

/// Sum `value` grouped by the given key columns.
fn group_sum(
    t: &TextTable,
    keys: &[&str],
    value: &str,
    filter: impl Fn(&[String]) -> bool,
) -> BTreeMap<Vec<String>, (u64, Decimal)> {
    let ki: Vec<usize> = keys.iter().filter_map(|k| t.col(k)).collect();
    let vi = t.col(value);
    let mut m: BTreeMap<Vec<String>, (u64, Decimal)> = BTreeMap::new();
    for r in t.rows.iter().filter(|r| filter(r)) {
        let e = m.entry(ki.iter().map(|&i| r[i].clone()).collect()).or_default();
        e.0 += 1;
        if let Some(v) = vi {
            e.1 += dec(&r[v]);
        }
    }
    m
}

pub fn report(dir: &Path) -> Result<String> {
    let mpath = dir.join("run_manifest.json");
    let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(format!("reading {}", mpath.display()), e))?;
    let m: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::input(mpath.display().to_string(), e.to_string()))?;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Billing run {}  (as_of {}, cutoff {})",
        m["run_id"].as_str().unwrap_or("?"),
        m["as_of"].as_str().unwrap_or("?"),
        m["cutoff"].as_str().unwrap_or("?")
    );
    let _ = writeln!(o, "\nReconciliation per currency: opening + credits - debits = closing");
    if let Some(tot) = m["totals"].as_object() {
        let _ = writeln!(
            o,
            "{:<5} {:>16} {:>14} {:>14} {:>16} {:>8} {:>16}",
            "cur", "opening", "credits", "debits", "closing", "check", "rounding resid."
        );
        for (cur, t) in tot {
            let g = |k: &str| dec(t[k].as_str().unwrap_or("0"));
            let debits = dec(t["debits"]["total"].as_str().unwrap_or("0"));
            let ok = g("opening") + g("credits") - debits == g("closing");
            let _ = writeln!(
                o,
                "{cur:<5} {:>16} {:>14} {:>14} {:>16} {:>8} {:>16}",
                g("opening").to_string(),
                g("credits").to_string(),
                debits.to_string(),
                g("closing").to_string(),
                if ok { "ok" } else { "MISMATCH" },
                t["rounding_residual"].as_str().unwrap_or("")
            );
        }
    }
    if let Some(tx) = read_run_table(dir, "wallet_transactions")? {
        let _ = writeln!(o, "\nTransactions by kind and type");
        for (k, (n, sum)) in group_sum(&tx, &["currency", "kind", "transaction_type"], "amount", |_| true) {
            let _ = writeln!(o, "  {:<5} {:<10} {:<16} {:>9} lines {:>16}", k[0], k[1], k[2], n, sum.to_string());
        }
        let dir_i = tx.col("direction");
        let _ = writeln!(o, "\nDebits by service");
        for (k, (n, sum)) in
            group_sum(&tx, &["currency", "service_id"], "amount", |r| dir_i.is_some_and(|d| r[d] == "DEBIT"))
        {
            let _ = writeln!(o, "  {:<5} {:<16} {:>9} lines {:>16}", k[0], k[1], n, sum.to_string());
        }
        if let (Some(a), Some(d), Some(id)) = (tx.col("amount"), dir_i, tx.col("transaction_id")) {
            let mut debits: Vec<&Vec<String>> = tx.rows.iter().filter(|r| r[d] == "DEBIT").collect();
            debits.sort_by(|x, y| dec(&y[a]).cmp(&dec(&x[a])).then_with(|| x[id].cmp(&y[id])));
            let _ = writeln!(o, "\nLargest debits");
            let cur = tx.col("currency").unwrap_or(0);
            for r in debits.iter().take(10) {
                let _ = writeln!(o, "  {:>14} {:<4} {}", r[a], r[cur], r[id]);
            }
        }
    }
    for list in ["disconnections", "reconnections"] {
        if let Some(t) = read_run_table(dir, list)? {
            let _ = writeln!(o, "\n{} by reason ({} in all)", list[..1].to_uppercase() + &list[1..], t.rows.len());
            for (k, (n, _)) in group_sum(&t, &["source", "reason"], "", |_| true) {
                let _ = writeln!(o, "  {:<10} {:<32} {:>9}", k[0], k[1], n);
            }
        }
    }
    if let Some(t) = read_run_table(dir, "wallet_estimates")? {
        let _ = writeln!(o, "\nWallet estimates by class");
        for (k, (n, sum)) in group_sum(&t, &["class"], "balance", |_| true) {
            let _ = writeln!(o, "  {:<10} {:>9} wallets, balance {}", k[0], n, sum);
        }
    }
    if let Some(t) = read_run_table(dir, "external_payments")? {
        let _ = writeln!(o, "\nStore-reported payments (never in wallets)");
        for (k, (n, sum)) in group_sum(&t, &["source", "currency", "payment_status"], "amount", |_| true) {
            let _ = writeln!(o, "  {:<10} {:<5} {:<10} {:>9} events {:>14}", k[0], k[1], k[2], n, sum.to_string());
        }
    }
    if let Some(t) = read_run_table(dir, "rejects")? {
        let _ = writeln!(o, "\nRejects by table and reason ({} in all)", t.rows.len());
        for (k, (n, _)) in group_sum(&t, &["table", "reason"], "", |_| true) {
            let _ = writeln!(o, "  {:<20} {:<26} {:>9}", k[0], k[1], n);
        }
    }
    Ok(o)
}
