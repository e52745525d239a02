//! `run_manifest.json` (SPEC §5): what was read and written with checksums, the totals per
//! currency and the counts. Deterministic like every other output.

use super::*;

/// The file whose presence makes a directory a published run (SPEC §5, §10.2).
pub const MANIFEST: &str = "run_manifest.json";

/// Whether a manifest carries SPEC v2 §9.6's totals (`list`, ...): a run published before
/// v2 does not.
pub fn carries_pricing(manifest: &Value) -> bool {
    manifest["totals"].as_object().is_none_or(|t| t.values().all(|c| c.get("list").is_some()))
}

pub(super) fn dec(d: Decimal) -> Value {
    Value::String(d.to_string())
}

/// The residual is an exact sum of non-terminating fractions: shown to 12 decimals.
pub(super) fn residual_text(d: Decimal) -> Value {
    Value::String(Rounding::HalfEven.round(d, 12).normalize().to_string())
}

pub fn totals_json(totals: &BTreeMap<String, Totals>) -> Value {
    let mut m = Map::new();
    for (cur, t) in totals {
        let minor = minor_units(cur).unwrap_or(0);
        let mut debits = Map::new();
        for (k, v) in &t.debits_by_name() {
            debits.insert(k.to_string(), dec(with_minor_scale(*v, minor)));
        }
        debits.insert("total".into(), dec(with_minor_scale(t.debit_total(), minor)));
        m.insert(
            cur.clone(),
            json!({
                "opening": dec(with_minor_scale(t.opening, minor)),
                "credits": dec(with_minor_scale(t.credits, minor)),
                "debits": Value::Object(debits),
                "closing": dec(with_minor_scale(t.closing, minor)),
                "rounding_residual": residual_text(t.residual),
                // SPEC §9.6, for v1 data too.
                "list": dec(with_minor_scale(t.priced.list, minor)),
                "discounts": dec(with_minor_scale(t.priced.discounts, minor)),
                "taxes": dec(with_minor_scale(t.priced.taxes, minor)),
                "taxes_by_code": Value::Object(
                    t.priced.taxes_by_code.iter().map(|(c, v)| (c.clone(), dec(with_minor_scale(*v, minor)))).collect()
                ),
                "usage_credits": dec(with_minor_scale(t.priced.usage_credits, minor)),
                "discount_rounding_residual": residual_text(t.priced.discount_residual),
                "tax_rounding_residual": residual_text(t.priced.tax_residual),
            }),
        );
    }
    Value::Object(m)
}

/// `run_manifest.json` into `dir`, once the run's tables (`files`, hashed as they were
/// written) are: deterministic (no clock, host or thread count). The inputs' checksums come
/// from `inputs` (taken meanwhile off the pool), one per input file, in the intake's order.
pub fn write_manifest(
    c: &RunMeta,
    p: &Products,
    dir: &Path,
    files: &[OutFile],
    inputs: crate::io::checksum::InputHashes,
) -> Result<()> {
    let input_sha256 = inputs.wait()?;
    let inputs: Vec<Value> = c
        .intake
        .files
        .iter()
        .zip(&input_sha256)
        .map(|(f, sha)| json!({"table": f.table, "file": f.name, "rows": f.rows, "sha256": sha}))
        .collect();
    let outputs: Vec<Value> = files
        .iter()
        .map(|f| {
            json!({
                "table": f.name.split(['/', '.']).next().unwrap_or_default(),
                "file": f.name,
                "rows": f.rows,
                "sha256": f.sha256,
            })
        })
        .collect();
    let mut payments = Map::new();
    for (src, by_cur) in &p.payments {
        let mut cm = Map::new();
        for (cur, by_status) in by_cur {
            let mut sm = Map::new();
            for (status, t) in by_status {
                sm.insert(status.clone(), json!({"count": t.count, "amount": dec(t.amount)}));
            }
            cm.insert(cur.clone(), Value::Object(sm));
        }
        payments.insert(src.clone(), Value::Object(cm));
    }
    let j = &c.job;
    let manifest = json!({
        "run_id": c.run_id,
        "job": {
            "name": j.name,
            "recurrence": j.recurrence_text,
            "debit_transaction_type": j.debit_transaction_type,
            "rounding": match j.rounding { Rounding::HalfUp => "half_up", Rounding::HalfEven => "half_even" },
            "output_format": j.output_format.ext(),
            "max_reject_ratio": j.max_reject_ratio,
            "steps": {
                "start_service": j.steps.start_service,
                "reconnection_threshold": dec(j.steps.reconnection_threshold),
                "stop_service": j.steps.stop_service,
                "disconnection_threshold": dec(j.steps.disconnection_threshold),
                "wallet_estimation": match j.steps.wallet_estimation { Estimation::Off => "off", Estimation::Changed => "changed", Estimation::All => "all" },
                "low_balance_days": j.steps.low_balance_days,
            }
        },
        "as_of": c.as_of.to_string(),
        "cutoff": format_ts(midnight(c.as_of)),
        "inputs": inputs,
        "outputs": outputs,
        "totals": totals_json(&p.totals),
        "external_payments": Value::Object(payments),
        "counts": {
            "input_rows": c.intake.rows_read,
            "transactions": p.n_transactions,
            "disconnections": p.n_disconnections,
            "reconnections": p.n_reconnections,
            "rejects": p.rejects_by_reason,
            "rejected_rows": c.intake.rejects.len(),
        }
    });
    let mut manifest = manifest;
    if let Some(s) = c.shard {
        manifest["shard"] = json!({"index": s.index, "count": s.count});
    }
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))? + "\n";
    crate::io::write::write_durable(&dir.join(MANIFEST), text.as_bytes())
        .map_err(|e| Error::io("writing run_manifest.json", e))
}
