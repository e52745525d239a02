//! SPEC §10.1, shards: which shard a row belongs to ([`Router`]), the `shard` command that
//! splits a state and new inputs ([`split`]), the check a shard run makes of its rows
//! ([`check_routing`]), and the `merge` of the shard runs' outputs ([`merge`]).
//!
//! The shard of an id is `domain::shard::shard_of` (Spark's `pmod(xxhash64(id), N)`).

pub mod merge;
pub mod split;

use crate::domain::shard::shard_of;
use crate::domain::Text;
use crate::error::{Error, Result};
use crate::io::discover::{find_table, TableSource};
use crate::io::read::{opt, read_unit, units, Kind};
use rustc_hash::FxHashMap as HashMap;
use std::path::Path;

/// `--shard I/N`: this run is shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: u32,
    pub count: u32,
}

/// The environment variables `--shard auto/N` reads the index from, in order: a Kubernetes
/// Indexed Job, an AWS Batch array job, a Slurm array job.
pub const INDEX_VARS: [&str; 3] = ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "SLURM_ARRAY_TASK_ID"];

impl ShardSpec {
    /// `I/N` or `auto/N` (the index from the first of [`INDEX_VARS`] set), `0 <= I < N`.
    pub fn parse(s: &str) -> std::result::Result<ShardSpec, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("--shard {s:?}: expected I/N or auto/N"))?;
        let count: u32 = n.parse().map_err(|_| format!("--shard {s:?}: N is not a whole number"))?;
        let index: u32 = if i == "auto" {
            let (var, v) = INDEX_VARS
                .iter()
                .find_map(|v| std::env::var(v).ok().map(|x| (*v, x)))
                .ok_or_else(|| format!("--shard auto/{n}: none of {} is set", INDEX_VARS.join(", ")))?;
            v.trim().parse().map_err(|_| format!("--shard auto/{n}: {var}={v:?} is not a whole number"))?
        } else {
            i.parse().map_err(|_| format!("--shard {s:?}: I is not a whole number"))?
        };
        if count == 0 || index >= count {
            return Err(format!("--shard {index}/{count}: I must be in 0..N-1 and N >= 1"));
        }
        Ok(ShardSpec { index, count })
    }
}

/// The tables that go to every shard (SPEC §10.1).
pub const REFERENCE_TABLES: [&str; 3] = ["services", "price_tiers", "tax_rates"];

/// The columns a table's rows are routed by.
pub fn routing_columns(table: &str) -> &'static [&'static str] {
    match table {
        "wallets" => &["account_id"],
        "subscriptions" => &["subscription_id", "account_id", "source"],
        "credits" => &["wallet_id"],
        t if REFERENCE_TABLES.contains(&t) => &[],
        // Items, discounts, usage and events follow their subscription.
        _ => &["subscription_id"],
    }
}

/// The routing of rows to `n` shards: the shard of every subscription (an INTERNAL one's
/// account's, a store-managed one's own) and every wallet (its account's), from the state.
pub struct Router {
    pub n: u32,
    subs: HashMap<Text, u32>,
    wallets: HashMap<Text, u32>,
}

impl Router {
    /// The router of the state in `state` (its subscriptions and wallets; none without one).
    /// A merged run's state is read from each of its `shard=I/` folders.
    pub fn from_state(state: Option<&Path>, n: u32) -> Result<Router> {
        let mut r = Router { n, subs: HashMap::default(), wallets: HashMap::default() };
        let Some(dir) = state else { return Ok(r) };
        match merged_shards(dir) {
            Some(dirs) => {
                for d in dirs {
                    r.add_state(&d)?;
                }
            }
            None => r.add_state(dir)?,
        }
        Ok(r)
    }

    /// Add the subscriptions and wallets of the state in `dir` (the two read side by side).
    fn add_state(&mut self, dir: &Path) -> Result<()> {
        let n = self.n;
        let (subs, wallets) = rayon::join(
            || {
                shard_map(dir, "subscriptions", routing_columns("subscriptions"), |c| {
                    Some(subscription_shard(n, c[0]?, c[1], c[2]))
                })
            },
            || shard_map(dir, "wallets", &["wallet_id", "account_id"], |c| Some(shard_of(c[1]?, n))),
        );
        // The first row of an id routes it, across the shards of a merged run too.
        for (into, from) in [(&mut self.subs, subs?), (&mut self.wallets, wallets?)] {
            match from {
                Some(m) if into.is_empty() => *into = m,
                Some(m) => {
                    for (k, v) in m {
                        into.entry(k).or_insert(v);
                    }
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The shard of a row of a table other than the reference tables (they go to every shard)
    /// whose routing columns ([`routing_columns`]) hold `c`.
    /// A reference that cannot be resolved routes by the id it names; a row without that id
    /// (a row that cannot be read) goes to shard 0.
    pub fn shard(&self, table: &str, c: &[Option<&str>]) -> u32 {
        debug_assert!(!REFERENCE_TABLES.contains(&table), "{table} goes to every shard");
        let id = |k: usize| c.get(k).copied().flatten();
        match table {
            "wallets" => id(0).map_or(0, |a| shard_of(a, self.n)),
            "subscriptions" => id(0).map_or(0, |s| subscription_shard(self.n, s, id(1), id(2))),
            "credits" => id(0).map_or(0, |w| self.wallets.get(w).copied().unwrap_or(shard_of(w, self.n))),
            _ => id(0).map_or(0, |s| self.subs.get(s).copied().unwrap_or(shard_of(s, self.n))),
        }
    }
}

/// The shard of every id (the first column of `columns`) of a state table, by `shard` of a
/// row's cells (None: the row routes nothing); the first row of an id wins. None when the
/// state has no such table. The map is sized from the Parquet metadata.
fn shard_map(
    dir: &Path,
    table: &'static str,
    columns: &[&'static str],
    shard: impl Fn(&[Option<&str>]) -> Option<u32> + Sync,
) -> Result<Option<HashMap<Text, u32>>> {
    let Some(src) = find_table(dir, table)? else { return Ok(None) };
    let (rows, _) = crate::io::read::metadata_rows(&src.files)?;
    let mut m = HashMap::with_capacity_and_hasher(rows as usize, Default::default());
    for_each_row(&src, columns, |c| {
        if let (Some(id), Some(s)) = (c[0], shard(c)) {
            m.entry(Text::from(id)).or_insert(s);
        }
    })?;
    Ok(Some(m))
}

/// The shard of a subscription: an INTERNAL one goes with its account, a store-managed one
/// by its own id.
fn subscription_shard(n: u32, id: &str, account: Option<&str>, source: Option<&str>) -> u32 {
    match (source, account) {
        (Some("INTERNAL"), Some(acc)) => shard_of(acc, n),
        _ => shard_of(id, n),
    }
}

/// The `shard=I/` folders of a merged run (None: `dir` is no merged run).
pub fn merged_shards(dir: &Path) -> Option<Vec<std::path::PathBuf>> {
    let text = std::fs::read_to_string(dir.join(crate::products::MANIFEST)).ok()?;
    let m: serde_json::Value = serde_json::from_str(&text).ok()?;
    let shards = m.get("shards")?.as_array()?;
    Some(shards.iter().map(|s| dir.join(s["dir"].as_str().unwrap_or_default())).collect())
}

/// Call `f` with the routing columns' cells of every row of `src`, in read order.
fn for_each_row(src: &TableSource, columns: &[&'static str], mut f: impl FnMut(&[Option<&str>]) + Send) -> Result<()> {
    for_each_row_at(src, columns, |_, _, c| {
        f(c);
        Ok(())
    })
}

/// [`for_each_row`], with each row's file name and 1-based row number; `f` may stop it.
fn for_each_row_at(
    src: &TableSource,
    columns: &[&'static str],
    mut f: impl FnMut(&str, u64, &[Option<&str>]) -> Result<()> + Send,
) -> Result<()> {
    let specs: Vec<_> = columns.iter().map(|c| opt(c, Kind::Text)).collect();
    for file in &src.files {
        for unit in units(file)? {
            read_unit(file, &specs, &unit, |b| {
                let mut cells: Vec<Option<&str>> = Vec::with_capacity(columns.len());
                for i in 0..b.len {
                    cells.clear();
                    cells.extend(b.cols.iter().map(|c| c.str(i)));
                    f(&file.name, b.first_row + i as u64, &cells)?;
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Every shard reads the reference tables whole, but shard 0 alone counts their rows and
/// reports their rejects, so that the shards' rejects and counts add up to the whole run's
/// (SPEC §10.1's union, row for row). The other shards still use the rows that passed.
pub fn count_reference_rows_once(intake: &mut crate::validate::Intake, spec: ShardSpec) {
    if spec.index == 0 {
        return;
    }
    let reference_rows: u64 = intake.files.iter().filter(|f| REFERENCE_TABLES.contains(&f.table)).map(|f| f.rows).sum();
    intake.rows_read -= reference_rows;
    intake.rejects.retain(|r| !REFERENCE_TABLES.contains(&r.table));
}

/// A shard run's check of its inputs (SPEC §10.1): every row of `sources` belongs to shard
/// `spec.index`, else the run stops (exit 2) naming the file and row. The reference tables
/// belong to every shard and are not read.
pub fn check_routing(state: &Path, sources: &[&TableSource], spec: ShardSpec) -> Result<()> {
    let router = Router::from_state(Some(state), spec.count)?;
    for src in sources.iter().filter(|s| !REFERENCE_TABLES.contains(&s.table)) {
        let cols = routing_columns(src.table);
        for_each_row_at(src, cols, |file, row, c| match router.shard(src.table, c) {
            s if s != spec.index => Err(Error::Input {
                file: file.to_string(),
                column: cols.first().map(|c| c.to_string()),
                row: Some(row),
                message: format!(
                    "row belongs to shard {s} of {}, not to this run's shard {} (misrouted: nothing is dropped \
                     silently; re-split the inputs with `billrun shard`)",
                    spec.count, spec.index
                ),
            }),
            _ => Ok(()),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs_parse_strictly() {
        assert_eq!(ShardSpec::parse("2/8"), Ok(ShardSpec { index: 2, count: 8 }));
        for bad in ["8/8", "1/0", "x/2", "1", "-1/2", "1/2/3"] {
            assert!(ShardSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rows_follow_their_account_or_their_own_id() {
        let r = Router { n: 7, subs: HashMap::default(), wallets: HashMap::default() };
        let a = shard_of("A1", 7);
        assert_eq!(r.shard("wallets", &[Some("A1")]), a);
        assert_eq!(r.shard("subscriptions", &[Some("S1"), Some("A1"), Some("INTERNAL")]), a);
        assert_eq!(r.shard("subscriptions", &[Some("S1"), Some("A1"), Some("APPLE")]), shard_of("S1", 7));
        assert_eq!(r.shard("usage", &[Some("S9")]), shard_of("S9", 7));
        assert!(REFERENCE_TABLES.contains(&"services"));
    }
}
