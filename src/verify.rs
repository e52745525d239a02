//! `billrun verify DIR`: re-check a published run from its files alone — the manifest's
//! checksums and row counts, every wallet's `balance_after` chain and closing balance, and
//! the per-currency totals.

use crate::dump::{read_run_table, read_text_table, TextTable};
use crate::error::{Error, Result};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::Path;

fn fail(msg: String) -> Error {
    Error::Invariant(format!("verify: {msg}"))
}

fn dec(s: &str, what: &str) -> Result<Decimal> {
    s.parse::<Decimal>().map_err(|_| fail(format!("{what}: not a decimal: {s:?}")))
}

fn find(dir: &Path, name: &'static str) -> Result<TextTable> {
    read_run_table(dir, name)?.ok_or_else(|| fail(format!("{name} is missing")))
}

fn col(t: &TextTable, name: &str) -> Result<usize> {
    t.col(name).ok_or_else(|| fail(format!("column {name} is missing")))
}

pub fn verify(dir: &Path) -> Result<String> {
    let mpath = dir.join("run_manifest.json");
    let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(format!("reading {}", mpath.display()), e))?;
    let m: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(format!("manifest is not JSON: {e}")))?;

    // Checksums and row counts.
    let outputs = m["outputs"].as_array().ok_or_else(|| fail("manifest has no outputs".into()))?;
    for o in outputs {
        let f = o["file"].as_str().unwrap_or_default();
        let p = dir.join(f);
        let sha = crate::checksum::sha256_file(&p)?;
        if Some(sha.as_str()) != o["sha256"].as_str() {
            return Err(fail(format!("{f}: checksum differs from the manifest")));
        }
        let rows = read_text_table(&p)?.rows.len() as u64;
        if Some(rows) != o["rows"].as_u64() {
            return Err(fail(format!("{f}: {rows} rows, manifest says {}", o["rows"])));
        }
    }

    // Balance chains.
    let tx = find(dir, "wallet_transactions")?;
    let wallets = find(dir, "wallets")?;
    let (tw, tn, ta, td, tb, tc, tk) = (
        col(&tx, "wallet_id")?,
        col(&tx, "transaction_id")?,
        col(&tx, "amount")?,
        col(&tx, "direction")?,
        col(&tx, "balance_after")?,
        col(&tx, "currency")?,
        col(&tx, "kind")?,
    );
    #[derive(Default)]
    struct Sum {
        opening: Decimal,
        credits: Decimal,
        debits: BTreeMap<String, Decimal>,
        closing: Decimal,
    }
    let mut per_cur: BTreeMap<String, Sum> = BTreeMap::new();
    // wallet -> (first opening, last balance, count)
    let mut chain: BTreeMap<String, (Decimal, Decimal, u64)> = BTreeMap::new();
    for r in &tx.rows {
        let a = dec(&r[ta], "amount")?;
        if a <= Decimal::ZERO {
            return Err(fail(format!("{}: amount {a} is not > 0", r[tn])));
        }
        let after = dec(&r[tb], "balance_after")?;
        let signed = if r[td] == "CREDIT" { a } else { -a };
        let e = chain.entry(r[tw].clone()).or_insert((after - signed, after - signed, 0));
        if e.1 + signed != after {
            return Err(fail(format!("{}: balance_after chain breaks", r[tn])));
        }
        e.1 = after;
        e.2 += 1;
        if !r[tn].ends_with(&format!("/{}", e.2)) {
            return Err(fail(format!("{}: transaction numbers are not 1..n in order", r[tn])));
        }
        let s = per_cur.entry(r[tc].clone()).or_default();
        if r[td] == "CREDIT" {
            s.credits += a;
        } else {
            *s.debits.entry(r[tk].clone()).or_default() += a;
        }
    }
    let (ww, wc, wb) = (col(&wallets, "wallet_id")?, col(&wallets, "currency")?, col(&wallets, "balance")?);
    for r in &wallets.rows {
        let closing = dec(&r[wb], "balance")?;
        let s = per_cur.entry(r[wc].clone()).or_default();
        s.closing += closing;
        match chain.get(&r[ww]) {
            Some((opening, last, _)) => {
                if *last != closing {
                    return Err(fail(format!("wallet {}: closing {closing} but last balance_after {last}", r[ww])));
                }
                s.opening += opening;
            }
            None => s.opening += closing,
        }
    }
    for (cur, s) in &per_cur {
        let t = &m["totals"][cur];
        let get = |k: &str| -> Result<Decimal> { dec(t[k].as_str().unwrap_or("x"), &format!("totals.{cur}.{k}")) };
        let debits: Decimal = s.debits.values().copied().sum();
        if get("opening")? != s.opening || get("credits")? != s.credits || get("closing")? != s.closing {
            return Err(fail(format!("{cur}: totals in the manifest differ from the files")));
        }
        if dec(t["debits"]["total"].as_str().unwrap_or("x"), "debits.total")? != debits {
            return Err(fail(format!("{cur}: debit total in the manifest differs from the files")));
        }
        if s.opening + s.credits - debits != s.closing {
            return Err(fail(format!("{cur}: opening + credits - debits != closing")));
        }
    }
    Ok(format!(
        "verified {}: {} files, {} transactions, {} wallets, currencies {}\n",
        dir.display(),
        outputs.len(),
        tx.rows.len(),
        wallets.rows.len(),
        per_cur.keys().cloned().collect::<Vec<_>>().join(" ")
    ))
}
