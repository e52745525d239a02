//! `billrun merge --out DIR SHARD_OUTPUT...` (SPEC §10.1): the commit of a sharded run.
//! Checks that the shard outputs are shards `0..N-1` of one run (same job, run_id, as_of and
//! N), each present once and each passing `verify`; copies each under `DIR/shard=I/`; and
//! publishes `DIR/run_manifest.json` (last, atomically) with the totals and counts of the
//! whole run and each shard's manifest checksum. `verify` re-checks a merged run shard by
//! shard; a merged run is the `--state` of the next night's shard runs (`shard=I/`).

use crate::error::{Error, Result};
use crate::io::storage::{LocalDir, OutputStore};
use crate::products::MANIFEST;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

fn refuse(msg: String) -> Error {
    Error::Usage(format!("merge refused: {msg}"))
}

fn read_manifest(dir: &Path) -> Result<(Value, String)> {
    let p = dir.join(MANIFEST);
    let bytes = std::fs::read(&p).map_err(|e| {
        Error::input(p.display().to_string(), format!("no run manifest (not a published run, or a killed one): {e}"))
    })?;
    let m: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::input(p.display().to_string(), format!("manifest is not JSON: {e}")))?;
    let mut h = crate::io::checksum::Sha256::default();
    h.update(&bytes);
    Ok((m, h.hex()))
}

/// Merge the shard outputs `shards` into `out`.
pub fn merge(out: &Path, shards: &[PathBuf], force: bool) -> Result<String> {
    if shards.is_empty() {
        return Err(Error::Usage("merge needs the shard outputs to merge".into()));
    }
    let inputs: Vec<crate::io::guard::Input> =
        shards.iter().map(|p| crate::io::guard::Input { role: "shard output", path: p }).collect();
    let out = crate::io::guard::resolve_parent(out)?;
    let store = LocalDir::new(out.clone());
    crate::io::guard::check_disjoint(&store.owned_paths(), &inputs)?;
    if store.exists() && !force {
        return Err(Error::OutputExists(out));
    }
    store.check_replaceable()?;

    // Each shard's manifest, checked against the first's run.
    let mut found: Vec<Option<(PathBuf, Value, String)>> = Vec::new();
    let mut first: Option<Value> = None;
    for dir in shards {
        let (m, sha) = read_manifest(dir)?;
        let shard = &m["shard"];
        let (Some(i), Some(n)) = (shard["index"].as_u64(), shard["count"].as_u64()) else {
            return Err(refuse(format!("{} is not a shard run's output (no shard in its manifest)", dir.display())));
        };
        if n == 0 || n > 100_000 || i >= n {
            return Err(refuse(format!("{}: its manifest names shard {i} of {n}", dir.display())));
        }
        let f = first.get_or_insert_with(|| m.clone());
        for key in ["run_id", "as_of", "job"] {
            if m[key] != f[key] {
                return Err(refuse(format!(
                    "{} is of another run: its {key} is {} where the first shard's is {}",
                    dir.display(),
                    m[key],
                    f[key]
                )));
            }
        }
        if Some(n) != f["shard"]["count"].as_u64() {
            return Err(refuse(format!(
                "{} is one of {n} shards, the first shard one of {}",
                dir.display(),
                f["shard"]["count"]
            )));
        }
        if found.is_empty() {
            found = vec![None; n as usize];
        }
        if let Some((other, ..)) = &found[i as usize] {
            return Err(refuse(format!("shard {i} given twice: {} and {}", other.display(), dir.display())));
        }
        crate::tools::verify::verify(dir).map_err(|e| refuse(format!("{} does not verify: {e}", dir.display())))?;
        found[i as usize] = Some((dir.clone(), m, sha));
    }
    let missing: Vec<String> =
        found.iter().enumerate().filter(|(_, f)| f.is_none()).map(|(i, _)| i.to_string()).collect();
    if !missing.is_empty() {
        return Err(refuse(format!("shards missing: {} (of {})", missing.join(", "), found.len())));
    }
    let found: Vec<(PathBuf, Value, String)> = found.into_iter().flatten().collect();
    let first = first.expect("at least one shard");

    // The shards' outputs under DIR/shard=I/, then the manifest, then publish.
    let _lock = store.lock()?;
    let tmp = store.stage()?;
    let result = (|| -> Result<()> {
        let mut totals = Value::Object(Map::new());
        let mut counts = Value::Object(Map::new());
        let mut payments = Value::Object(Map::new());
        let mut list = Vec::new();
        for (i, (dir, m, sha)) in found.iter().enumerate() {
            copy_tree(dir, &tmp.join(format!("shard={i}")))?;
            add_into(&mut totals, &m["totals"]);
            add_into(&mut counts, &m["counts"]);
            add_into(&mut payments, &m["external_payments"]);
            list.push(json!({"index": i, "dir": format!("shard={i}"), "manifest_sha256": sha}));
        }
        let manifest = json!({
            "run_id": first["run_id"],
            "job": first["job"],
            "as_of": first["as_of"],
            "cutoff": first["cutoff"],
            "shard_count": found.len(),
            "shards": list,
            "totals": totals,
            "external_payments": payments,
            "counts": counts,
        });
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))? + "\n";
        crate::io::write::write_durable(&tmp.join(MANIFEST), text.as_bytes())
            .map_err(|e| Error::io("writing run_manifest.json", e))?;
        crate::io::write::sync_dirs(&tmp)
    })();
    if let Err(e) = result {
        store.discard(&tmp);
        return Err(e);
    }
    store.publish(&tmp)?;
    Ok(format!("merged {} shards of {} into {}\n", found.len(), first["run_id"], out.display()))
}

/// Add `from` into `into`, key by key: numbers and decimal texts summed, objects merged.
fn add_into(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(x) => add_into(x, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (x @ Value::Number(_), Value::Number(n)) => {
            *x = json!(x.as_u64().unwrap_or(0) + n.as_u64().unwrap_or(0));
        }
        (x @ Value::String(_), Value::String(s)) => {
            let (a, b) = (x.as_str().unwrap_or("0").parse::<Decimal>(), s.parse::<Decimal>());
            if let (Ok(a), Ok(b)) = (a, b) {
                *x = Value::String((a + b).to_string());
            }
        }
        _ => {}
    }
}

/// Copy the files under `from` to `to`, leaving out hidden ones (a name starting with `.`,
/// at any depth: temporary files).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let err = |what: &str, p: &Path, e| Error::io(format!("{what} {}", p.display()), e);
    std::fs::create_dir_all(to).map_err(|e| err("creating", to, e))?;
    for rel in crate::io::files_under(from)? {
        if rel.split('/').any(|c| c.starts_with('.')) {
            continue;
        }
        let dest = to.join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err("creating", parent, e))?;
        }
        std::fs::copy(from.join(&rel), &dest).map_err(|e| err("copying", &from.join(&rel), e))?;
    }
    Ok(())
}

/// `verify` of a merged run: each shard verifies, its manifest is the one merged, and the
/// merged totals are the sum of the shards'.
pub fn verify_merged(dir: &Path, m: &Value) -> Result<String> {
    let shards = m["shards"].as_array().ok_or_else(|| refuse("no shards".into()))?;
    if m["shard_count"].as_u64() != Some(shards.len() as u64) {
        return Err(Error::Invariant(format!("{}: shard_count is not the number of shards listed", dir.display())));
    }
    let mut totals = Value::Object(Map::new());
    let mut counts = Value::Object(Map::new());
    for s in shards {
        let d = dir.join(s["dir"].as_str().unwrap_or_default());
        crate::tools::verify::verify(&d)?;
        let (sm, sha) = read_manifest(&d)?;
        if Some(sha.as_str()) != s["manifest_sha256"].as_str() {
            return Err(Error::Invariant(format!("{}: its manifest is not the one merged", d.display())));
        }
        if sm["shard"]["index"].as_u64() != s["index"].as_u64() {
            return Err(Error::Invariant(format!("{}: its manifest is another shard's", d.display())));
        }
        add_into(&mut totals, &sm["totals"]);
        add_into(&mut counts, &sm["counts"]);
    }
    if !decimals_equal(&counts, &m["counts"]) {
        return Err(Error::Invariant("the merged counts are not the sum of the shards'".into()));
    }
    if !decimals_equal(&totals, &m["totals"]) {
        return Err(Error::Invariant("the merged totals are not the sum of the shards'".into()));
    }
    Ok(format!("verified merged run {}: {} shards\n", dir.display(), shards.len()))
}

/// Equal as JSON, decimal texts compared as numbers.
fn decimals_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| decimals_equal(v, w)))
        }
        (Value::String(x), Value::String(y)) => match (x.parse::<Decimal>(), y.parse::<Decimal>()) {
            (Ok(p), Ok(q)) => p == q,
            _ => x == y,
        },
        _ => a == b,
    }
}
