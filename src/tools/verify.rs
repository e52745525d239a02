//! `billrun verify DIR`: re-check a published run from its files alone — the manifest's
//! checksums and row counts, every wallet's `balance_after` chain and closing balance, and
//! the per-currency totals.

use crate::error::{Error, Result};
use crate::tools::dump::visit_rows;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fail(msg: String) -> Error {
    Error::Invariant(format!("verify: {msg}"))
}

fn dec(s: &str, what: &str) -> Result<Decimal> {
    s.parse::<Decimal>().map_err(|_| fail(format!("{what}: not a decimal: {s:?}")))
}

/// The files of table `name` of the run directory, in read order (Hive part files by name).
fn files(dir: &Path, name: &'static str) -> Result<Vec<PathBuf>> {
    let src = crate::io::discover::find_table(dir, name)?.ok_or_else(|| fail(format!("{name} is missing")))?;
    Ok(src.files.into_iter().map(|f| f.path).collect())
}

/// Visit the rows of every file of a table (see [`visit_rows`]).
fn visit_table(files: &[PathBuf], names: &[&str], mut f: impl FnMut(&[String]) -> Result<()>) -> Result<()> {
    for p in files {
        visit_rows(p, Some(names), &mut f)?;
    }
    Ok(())
}

/// A file's SHA-256 and its rows, in one read of its bytes where it takes one: a Parquet
/// file's rows come from its footer (its bytes are the ones the checksum names), a CSV
/// file's are counted as its bytes are hashed.
fn checksum_and_rows(path: &Path) -> Result<(String, u64)> {
    let file = crate::io::discover::table_at(path, "output")?;
    if let (n, true) = crate::io::read::metadata_rows(&file.files)? {
        return Ok((crate::io::checksum::sha256_file(path)?, n));
    }
    let name = path.display().to_string();
    let fh = std::fs::File::open(path).map_err(|e| Error::io(format!("opening {name}"), e))?;
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(crate::io::checksum::Hashed::new(fh));
    let mut rec = csv::ByteRecord::new();
    let mut rows = 0u64;
    while r.read_byte_record(&mut rec).map_err(|e| Error::input(name.clone(), e.to_string()))? {
        rows += 1;
    }
    // The reader stops at the end of the file; anything it left unread is hashed too.
    let mut hashed = r.into_inner();
    std::io::copy(&mut hashed, &mut std::io::sink()).map_err(|e| Error::io(format!("reading {name}"), e))?;
    Ok((hashed.hash.hex(), rows))
}

/// One wallet's transactions, summed as they stream by.
struct Chain {
    wallet: String,
    currency: String,
    opening: Decimal,
    last: Decimal,
}

#[derive(Default)]
struct Sum {
    opening: Decimal,
    credits: Decimal,
    debits: BTreeMap<String, Decimal>,
    closing: Decimal,
    /// CREDIT-direction usage lines (SPEC §9.3).
    usage_credits: Decimal,
    /// Σ list amounts, signed (a usage credit counts negative).
    list: Decimal,
}

/// The sums of currency `cur` (a key is allocated once per currency, not per row).
fn sums<'m>(per_cur: &'m mut BTreeMap<String, Sum>, cur: &str) -> &'m mut Sum {
    if !per_cur.contains_key(cur) {
        per_cur.insert(cur.to_string(), Sum::default());
    }
    per_cur.get_mut(cur).expect("inserted above")
}

/// Wallets handed from the reader to the merge at a time.
const BLOCK: usize = 4096;

/// The per-currency sums, transactions and wallets of a run: `wallet_transactions` (its
/// files, in key order) merged with `wallets` (rows of wallet_id, currency, balance, in
/// key order), checking each wallet's chain against its closing balance.
fn merge_chains(
    tx_files: &[PathBuf],
    mut wallets: impl Iterator<Item = [String; 3]>,
    priced: bool,
) -> Result<(BTreeMap<String, Sum>, u64, u64)> {
    let mut per_cur: BTreeMap<String, Sum> = BTreeMap::new();
    let (mut n_tx, mut n_wallets) = (0u64, 0u64);
    let mut last_wallet: Option<String> = None;
    // The next wallet row, checked for order; its closing balance counted.
    let mut next_wallet = |per_cur: &mut BTreeMap<String, Sum>| -> Result<Option<[String; 3]>> {
        let Some(w) = wallets.next() else { return Ok(None) };
        if last_wallet.as_ref().is_some_and(|l| *l >= w[0]) {
            return Err(fail(format!("wallets are not in wallet_id order at {}", w[0])));
        }
        last_wallet = Some(w[0].clone());
        n_wallets += 1;
        sums(per_cur, &w[1]).closing += dec(&w[2], "balance")?;
        Ok(Some(w))
    };
    // A wallet without transactions opens at its closing balance.
    let untouched = |w: &[String; 3], per_cur: &mut BTreeMap<String, Sum>| -> Result<()> {
        sums(per_cur, &w[1]).opening += dec(&w[2], "balance")?;
        Ok(())
    };
    // A wallet's chain is done: its row must be next in `wallets`, after any without
    // transactions.
    let mut settle = |c: Chain, per_cur: &mut BTreeMap<String, Sum>| -> Result<()> {
        let missing = || {
            fail(format!("wallet {} has transactions but is not in wallets (where wallet_id order puts it)", c.wallet))
        };
        loop {
            let w = next_wallet(per_cur)?.ok_or_else(missing)?;
            match w[0].cmp(&c.wallet) {
                std::cmp::Ordering::Less => untouched(&w, per_cur)?,
                std::cmp::Ordering::Greater => return Err(missing()),
                std::cmp::Ordering::Equal => {
                    let closing = dec(&w[2], "balance")?;
                    if c.last != closing {
                        return Err(fail(format!(
                            "wallet {}: closing {closing} but last balance_after {}",
                            c.wallet, c.last
                        )));
                    }
                    if c.currency != w[1] {
                        return Err(fail(format!(
                            "wallet {}: transactions in {}, wallet in {}",
                            c.wallet, c.currency, w[1]
                        )));
                    }
                    sums(per_cur, &w[1]).opening += c.opening;
                    return Ok(());
                }
            }
        }
    };
    // A run published before SPEC v2 has no priced columns: its lines are checked as v1's.
    let cols: &[&str] = if priced {
        &[
            "wallet_id",
            "transaction_id",
            "amount",
            "direction",
            "balance_after",
            "currency",
            "kind",
            "list_amount",
            "discount_amount",
            "tax_amount",
            "net_amount",
        ]
    } else {
        &["wallet_id", "transaction_id", "amount", "direction", "balance_after", "currency", "kind"]
    };
    let mut chain: Option<Chain> = None;
    let mut n = 0u64;
    let mut num = itoa::Buffer::new();
    visit_table(tx_files, cols, |r| {
        let (wallet, id, direction, currency, kind) = (&r[0], &r[1], &r[3], &r[5], &r[6]);
        let a = dec(&r[2], "amount")?;
        // A priced line (SPEC §9.6): amount = list - discount (+ tax when prices exclude it);
        // only a fully discounted line has amount 0.
        let is_priced = kind != "CREDIT";
        let (list, discount) = if is_priced && priced {
            let (l, d, t) = (dec(&r[7], "list_amount")?, dec(&r[8], "discount_amount")?, dec(&r[9], "tax_amount")?);
            if a != l - d && a != l - d + t {
                return Err(fail(format!("{id}: amount {a} is not list {l} - discount {d} (+ tax {t})")));
            }
            if dec(&r[10], "net_amount")? != a - t {
                return Err(fail(format!("{id}: net_amount is not amount {a} - tax {t}")));
            }
            (l, d)
        } else if is_priced {
            (a, Decimal::ZERO)
        } else {
            (Decimal::ZERO, Decimal::ZERO)
        };
        if a < Decimal::ZERO || (a.is_zero() && discount.is_zero()) {
            return Err(fail(format!("{id}: amount {a} is not > 0")));
        }
        let after = dec(&r[4], "balance_after")?;
        let signed = if direction == "CREDIT" { a } else { -a };
        if chain.as_ref().is_none_or(|c| c.wallet != *wallet) {
            if let Some(done) = chain.take() {
                if done.wallet > *wallet {
                    return Err(fail(format!("wallet_transactions are not in wallet_id order at {id}")));
                }
                settle(done, &mut per_cur)?;
            }
            let opening = after - signed;
            chain = Some(Chain { wallet: wallet.clone(), currency: currency.clone(), opening, last: opening });
            n = 0;
        }
        let Some(c) = chain.as_mut() else { unreachable!("set above") };
        if c.last + signed != after {
            return Err(fail(format!("{id}: balance_after chain breaks")));
        }
        if *currency != c.currency {
            return Err(fail(format!("{id}: currency {currency}, the wallet's transactions are in {}", c.currency)));
        }
        c.last = after;
        n += 1;
        if !id.strip_suffix(num.format(n)).is_some_and(|p| p.ends_with('/')) {
            return Err(fail(format!("{id}: transaction numbers are not 1..n in order")));
        }
        n_tx += 1;
        let s = sums(&mut per_cur, currency);
        if direction == "CREDIT" {
            s.list -= list;
        } else {
            s.list += list;
        }
        if direction == "CREDIT" && is_priced {
            s.usage_credits += a;
        } else if direction == "CREDIT" {
            s.credits += a;
        } else if let Some(d) = s.debits.get_mut(kind.as_str()) {
            *d += a;
        } else {
            s.debits.insert(kind.clone(), a);
        }
        Ok(())
    })?;
    if let Some(done) = chain.take() {
        settle(done, &mut per_cur)?;
    }
    // The wallets after the last with transactions.
    while let Some(w) = next_wallet(&mut per_cur)? {
        untouched(&w, &mut per_cur)?;
    }
    Ok((per_cur, n_tx, n_wallets))
}

/// Every output's checksum and row count against the manifest's `outputs`: the files are
/// read in parallel, and the first in the manifest's order that differs is reported.
fn check_files(dir: &Path, outputs: &[serde_json::Value]) -> Result<()> {
    // The files read in parallel; the first in the manifest's order that fails is reported.
    let checked: Vec<Result<(String, u64)>> = {
        use rayon::prelude::*;
        outputs.par_iter().map(|o| checksum_and_rows(&dir.join(o["file"].as_str().unwrap_or_default()))).collect()
    };
    for (o, got) in outputs.iter().zip(checked) {
        let f = o["file"].as_str().unwrap_or_default();
        let (sha, rows) = got?;
        if Some(sha.as_str()) != o["sha256"].as_str() {
            return Err(fail(format!("{f}: checksum differs from the manifest")));
        }
        if Some(rows) != o["rows"].as_u64() {
            return Err(fail(format!("{f}: {rows} rows, manifest says {}", o["rows"])));
        }
    }
    Ok(())
}

/// The per-currency sums, transactions and wallets of the run in `dir` ([`merge_chains`]):
/// `wallets` is read on a thread of its own and handed over in blocks.
fn chains(dir: &Path, priced: bool) -> Result<(BTreeMap<String, Sum>, u64, u64)> {
    let tx_files = files(dir, "wallet_transactions")?;
    let wallet_files = files(dir, "wallets")?;
    std::thread::scope(|scope| {
        let (send, recv) = std::sync::mpsc::sync_channel::<Vec<[String; 3]>>(4);
        let reader = scope.spawn(move || {
            let mut block = Vec::with_capacity(BLOCK);
            let mut stopped = false;
            let read = visit_table(&wallet_files, &["wallet_id", "currency", "balance"], |r| {
                block.push([r[0].clone(), r[1].clone(), r[2].clone()]);
                if block.len() == BLOCK && send.send(std::mem::replace(&mut block, Vec::with_capacity(BLOCK))).is_err()
                {
                    stopped = true;
                    return Err(fail("stopped".into()));
                }
                Ok(())
            });
            match read {
                // The merge stopped at an error of its own, the one reported.
                Err(_) if stopped => Ok(()),
                Err(e) => Err(e),
                Ok(()) => {
                    let _ = send.send(block);
                    Ok(())
                }
            }
        });
        // The merge owns the receiver: it is gone when the merge ends, so a reader blocked
        // on a full channel stops before the join.
        let merged = merge_chains(&tx_files, recv.into_iter().flatten(), priced);
        // A wallets file that failed to read is the cause of whatever the merge then saw.
        reader.join().map_err(|_| fail("the wallets' reader panicked".into()))??;
        merged
    })
}

/// Re-check a published run from its files: the manifest's checksums and row counts, every
/// wallet's `balance_after` chain (amounts > 0, numbered 1..n) ending at its closing
/// balance, and the per-currency totals. `wallet_transactions` (by wallet_id, then n) and
/// `wallets` (by wallet_id) are published in key order, which is checked too: the two are
/// read side by side as a merge, so memory does not grow with the run ([`chains`]), while
/// the files' checksums are taken on other threads ([`check_files`]).
pub fn verify(dir: &Path) -> Result<String> {
    let mpath = dir.join(crate::products::MANIFEST);
    let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(format!("reading {}", mpath.display()), e))?;
    let m: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(format!("manifest is not JSON: {e}")))?;
    // A merged sharded run (SPEC §10.1): each shard, and the totals' sum.
    if m.get("shards").is_some() {
        return crate::shard::merge::verify_merged(dir, &m);
    }

    let outputs = m["outputs"].as_array().ok_or_else(|| fail("manifest has no outputs".into()))?;
    // SPEC v2 §9.6 runs carry the list and usage credits in their totals; earlier runs do not.
    let priced = crate::products::carries_pricing(&m);
    // The checksums and row counts on one thread, the chains on others, at once; a file
    // that differs from the manifest is the error reported, before anything the chains saw.
    let (checked, merged) = std::thread::scope(|scope| {
        let checked = scope.spawn(|| check_files(dir, outputs));
        let merged = chains(dir, priced);
        (checked.join(), merged)
    });
    checked.map_err(|_| fail("the checksums' thread panicked".into()))??;
    let (per_cur, n_tx, n_wallets) = merged?;

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
        if priced && (get("usage_credits")? != s.usage_credits || get("list")? != s.list) {
            return Err(fail(format!("{cur}: usage credits or list total in the manifest differ from the files")));
        }
        if s.opening + s.credits + s.usage_credits - debits != s.closing {
            return Err(fail(format!("{cur}: opening + credits + usage_credits - debits != closing")));
        }
    }
    Ok(format!(
        "verified {}: {} files, {} transactions, {} wallets, currencies {}\n",
        dir.display(),
        outputs.len(),
        n_tx,
        n_wallets,
        per_cur.keys().cloned().collect::<Vec<_>>().join(" ")
    ))
}
