//! Bad input and the exit codes of SPEC §6: unreadable files stop the run (exit 2) with a
//! message naming file and column; bad rows are rejected; the reject gate (exit 3) and an
//! existing output (exit 4) publish nothing.

mod util;
use arrow_array::{
    ArrayRef, BinaryArray, Decimal128Array, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use std::path::Path;
use std::sync::Arc;
use util::*;

fn zx_copy(s: &Scratch) -> std::path::PathBuf {
    let d = s.path("zx");
    copy_dir(&repo().join("sample-data/company-zx"), &d);
    d
}

fn write_parquet(path: &Path, cols: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn job() -> std::path::PathBuf {
    repo().join("jobs/company-zx-daily.toml")
}

#[test]
fn csv_with_a_missing_required_column_is_exit_2() {
    let s = Scratch::new();
    let d = zx_copy(&s);
    std::fs::write(d.join("state/wallets.csv"), "wallet_id,account_id,currency\nW1,A1,EUR\n").unwrap();
    let out = s.path("out");
    let r = billrun(run_args(&job(), &d, &out, Some("2026-11-22"))).code_is(2);
    assert!(r.stderr().contains("wallets.csv") && r.stderr().contains("balance"), "{}", r.stderr());
    assert!(!out.exists());
}

#[test]
fn truncated_parquet_is_exit_2_naming_the_file() {
    let s = Scratch::new();
    let d = zx_copy(&s);
    let out1 = s.path("out1");
    // Produce a real Parquet wallets table, then cut it in half.
    billrun(run_args(&job(), &d, &out1, Some("2026-11-22"))).ok();
    let bytes = std::fs::read(out1.join("wallets.parquet")).unwrap();
    std::fs::remove_file(d.join("state/wallets.csv")).unwrap();
    std::fs::write(d.join("state/wallets.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    let out = s.path("out");
    let r = billrun(run_args(&job(), &d, &out, Some("2026-11-22"))).code_is(2);
    assert!(r.stderr().contains("wallets.parquet"), "{}", r.stderr());
    assert!(!out.exists());
}

#[test]
fn floating_point_money_in_parquet_is_exit_2() {
    let s = Scratch::new();
    let d = zx_copy(&s);
    std::fs::remove_file(d.join("state/wallets.csv")).unwrap();
    write_parquet(
        &d.join("state/wallets.parquet"),
        vec![
            ("wallet_id", Arc::new(StringArray::from(vec!["W-NEW"])) as ArrayRef),
            ("account_id", Arc::new(StringArray::from(vec!["A-NEW"]))),
            ("currency", Arc::new(StringArray::from(vec!["EUR"]))),
            ("balance", Arc::new(Float64Array::from(vec![50.0]))),
        ],
    );
    let r = billrun(run_args(&job(), &d, &s.path("out"), Some("2026-11-22"))).code_is(2);
    assert!(r.stderr().contains("balance") && r.stderr().contains("floating point"), "{}", r.stderr());
}

#[test]
fn parquet_physical_types_are_normalized() {
    // Decimal128 at another scale, timestamps in ns with a zone, strings as binary.
    let s = Scratch::new();
    let d = zx_copy(&s);
    std::fs::remove_file(d.join("state/wallets.csv")).unwrap();
    let ids = ["W-NEW", "W-PAID", "W-SHORT", "W-EMPTY", "W-BACK", "W-PPV", "W-TOPUP"];
    let accts: Vec<String> = ids.iter().map(|w| w.replace("W-", "A-")).collect();
    let bal = Decimal128Array::from(vec![50_0000i128, 5_0000, 5000, 0, 20_0000, 10_0000, 0])
        .with_precision_and_scale(12, 4)
        .unwrap();
    write_parquet(
        &d.join("state/wallets.parquet"),
        vec![
            ("wallet_id", Arc::new(StringArray::from(ids.to_vec())) as ArrayRef),
            ("account_id", Arc::new(StringArray::from(accts))),
            // BYTE_ARRAY without the UTF8 annotation, as older Hive/Impala writers store strings.
            ("currency", Arc::new(BinaryArray::from(vec![b"EUR".as_slice(); 7]))),
            ("balance", Arc::new(bal)),
            (
                "updated_at",
                Arc::new(
                    TimestampNanosecondArray::from(vec![
                        Some(1_763_700_000_000_000_000i64),
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                    ])
                    .with_timezone("+01:00"),
                ),
            ),
        ],
    );
    let job_csv = s.job(&job(), "csv");
    let out = s.path("out");
    billrun(run_args(&job_csv, &d, &out, Some("2026-11-22"))).ok();
    assert_eq!(csv_lookup(&out.join("wallets.csv"), "wallet_id", "W-NEW", "balance"), ["33.00"]);
    assert_eq!(csv_lookup(&out.join("wallets.csv"), "wallet_id", "W-PPV", "balance"), ["-4.97"]);
    assert_eq!(csv_lookup(&out.join("wallets.csv"), "wallet_id", "W-NEW", "updated_at"), ["2025-11-21T04:40:00Z"]);
}

#[test]
fn bad_values_are_rejected_not_fatal() {
    let s = Scratch::new();
    let d = zx_copy(&s);
    std::fs::write(
        d.join("credits.csv"),
        "credit_id,wallet_id,amount,transaction_type,received_at\n\
         C-1,W-TOPUP,30.00,TOP_UP,2026-11-21T12:00:00Z\n\
         C-2,W-TOPUP,thirty,TOP_UP,2026-11-21T12:00:00Z\n\
         C-3,W-TOPUP,123456789012345678901234567890.5,TOP_UP,2026-11-21T12:00:00Z\n\
         C-4,W-TOPUP,0.0000000000000000001,TOP_UP,2026-11-21T12:00:00Z\n",
    )
    .unwrap();
    let job = s.job(&job(), "csv");
    let text = std::fs::read_to_string(&job).unwrap().replace("max_reject_ratio = 0.01", "max_reject_ratio = 0.5");
    std::fs::write(&job, text).unwrap();
    let out = s.path("out");
    billrun(run_args(&job, &d, &out, Some("2026-11-22"))).ok();
    let rej = out.join("rejects.csv");
    assert_eq!(csv_lookup(&rej, "key", "C-2", "reason"), ["INVALID_VALUE"]);
    assert_eq!(csv_lookup(&rej, "key", "C-3", "reason"), ["INVALID_VALUE"]);
    assert!(csv_lookup(&rej, "key", "C-3", "detail")[0].contains("out of range"));
    assert_eq!(csv_lookup(&rej, "key", "C-4", "reason"), ["INVALID_VALUE"]);
    assert_eq!(csv_lookup(&out.join("wallets.csv"), "wallet_id", "W-TOPUP", "balance"), ["23.00"]);
}

#[test]
fn reject_gate_is_exit_3_and_publishes_nothing() {
    let s = Scratch::new();
    let fx = repo().join("tests/fixtures/rejects");
    let job = s.path("strict.toml");
    std::fs::write(
        &job,
        std::fs::read_to_string(fx.join("job.toml"))
            .unwrap()
            .replace("max_reject_ratio = 1.0", "max_reject_ratio = 0.01"),
    )
    .unwrap();
    let out = s.path("out");
    let r = billrun(run_args(&job, &fx, &out, Some("2026-11-22"))).code_is(3);
    assert!(r.stderr().contains("rejected"), "{}", r.stderr());
    assert!(!out.exists());
    let review = s.path("out.rejected");
    assert!(review.join("rejects.csv").exists() && review.join("run_manifest.json").exists());
    // validate reports the same and writes nothing.
    let mut a = run_args(&job, &fx, &s.path("v"), Some("2026-11-22"));
    a[0] = "validate".into();
    let v = billrun(a).code_is(3);
    assert!(v.stderr().contains("rejected"));
    // ... with counts per table and reason and the first examples of each.
    assert!(v.stdout().contains("rejects by table and reason"), "{}", v.stdout());
    assert!(v.stdout().contains("usage.csv row 10 key \"U9\""), "{}", v.stdout());
    assert!(!s.path("v").exists());
}

#[test]
fn existing_output_is_exit_4_unless_forced() {
    let s = Scratch::new();
    let out = s.path("out");
    std::fs::create_dir(&out).unwrap();
    // A previous output (its manifest) with a file of someone's beside: replaced with --force
    // (a directory that is not a billrun output is not: tests/reliability.rs).
    std::fs::write(out.join("run_manifest.json"), "{}").unwrap();
    std::fs::write(out.join("marker"), "x").unwrap();
    let zx = repo().join("sample-data/company-zx");
    billrun(run_args(&job(), &zx, &out, Some("2026-11-22"))).code_is(4);
    assert!(out.join("marker").exists());
    let mut a = run_args(&job(), &zx, &out, Some("2026-11-22"));
    a.push("--force".into());
    billrun(a).ok();
    assert!(!out.join("marker").exists() && out.join("run_manifest.json").exists());
}

#[test]
fn dry_run_and_validate_write_nothing() {
    let s = Scratch::new();
    let zx = repo().join("sample-data/company-zx");
    let out = s.path("out");
    let mut a = run_args(&job(), &zx, &out, Some("2026-11-22"));
    a.push("--dry-run".into());
    let r = billrun(a).ok();
    assert!(r.stdout().contains("debits 46.97"), "{}", r.stdout());
    assert!(!out.exists());
    let mut a = run_args(&job(), &zx, &out, Some("2026-11-22"));
    a[0] = "validate".into();
    billrun(a).ok();
    assert!(!out.exists());
    // Progress as JSON lines for schedulers.
    let mut a = run_args(&job(), &zx, &out, Some("2026-11-22"));
    a.insert(0, "--log-format=json".into());
    a.push("--dry-run".into());
    let r = bin().args(&a).current_dir(repo()).output().unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.lines().count() >= 3, "{stderr}");
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["message"].is_string() && v["elapsed_s"].is_number(), "{line}");
    }
}

#[test]
fn bad_job_and_missing_as_of_are_exit_2() {
    let s = Scratch::new();
    let zx = repo().join("sample-data/company-zx");
    let bad = s.path("bad.toml");
    std::fs::write(&bad, "name = \"x\"\nrecurrence = \"1 fortnight\"\n").unwrap();
    let r = billrun(run_args(&bad, &zx, &s.path("o1"), Some("2026-11-22"))).code_is(2);
    assert!(r.stderr().contains("bad.toml") && r.stderr().contains("recurrence"), "{}", r.stderr());
    let r = billrun(run_args(&job(), &zx, &s.path("o2"), None)).code_is(2);
    assert!(r.stderr().contains("--as-of"), "{}", r.stderr());
    billrun(["run", "--job"]).code_is(2);
}

#[test]
fn verify_and_report_read_a_published_run() {
    let s = Scratch::new();
    let job = s.job(&job(), "csv");
    let out = s.path("out");
    billrun(run_args(&job, &repo().join("sample-data/company-zx"), &out, Some("2026-11-22"))).ok();
    let v = billrun(["verify", out.to_str().unwrap()]).ok();
    assert!(v.stdout().contains("7 transactions"), "{}", v.stdout());
    // `report` is polars' (the default `report` feature); the lean engine build has none.
    if cfg!(feature = "report") {
        let r = billrun(["report", out.to_str().unwrap()]).ok();
        let line = r.stdout().lines().find(|l| l.starts_with("EUR")).unwrap().to_string();
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells, ["EUR", "85.50", "30.00", "46.97", "68.53", "ok", "agree", "0"]);
        assert!(r.stdout().contains("BALANCE_AT_OR_BELOW_THRESHOLD"));
    }
    // Tampering with a published file is caught.
    let w = out.join("wallets.csv");
    let text = std::fs::read_to_string(&w).unwrap().replace("33.00", "34.00");
    std::fs::write(&w, text).unwrap();
    let t = billrun(["verify", out.to_str().unwrap()]).code_is(1);
    assert!(t.stderr().contains("checksum"), "{}", t.stderr());
}

/// Rewrite one published CSV file with `edit` and give the manifest its new checksum and
/// row count, as a tampering that knows the manifest would: only the checks of the rows can
/// catch it.
fn tamper(out: &Path, file: &str, edit: impl Fn(&str) -> String) {
    let p = out.join(file);
    std::fs::write(&p, edit(&std::fs::read_to_string(&p).unwrap())).unwrap();
    let mut m = manifest(out);
    let sha = billrun::io::checksum::sha256_file(&p).unwrap();
    let rows = std::fs::read_to_string(&p).unwrap().lines().count() - 1;
    for o in m["outputs"].as_array_mut().unwrap() {
        if o["file"] == file {
            o["sha256"] = sha.clone().into();
            o["rows"] = rows.into();
        }
    }
    std::fs::write(out.join("run_manifest.json"), serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

#[test]
fn verify_checks_the_rows_behind_a_manifest_that_agrees() {
    let s = Scratch::new();
    let job = s.job(&job(), "csv");
    let run = |name: &str| {
        let out = s.path(name);
        billrun(run_args(&job, &repo().join("sample-data/company-zx"), &out, Some("2026-11-22"))).ok();
        out
    };
    let fails_with = |out: &Path, what: &str| {
        let t = billrun(["verify", out.to_str().unwrap()]).code_is(1);
        assert!(t.stderr().contains(what), "expected {what:?}: {}", t.stderr());
    };
    // A row count that is not the file's (counted as the CSV file is hashed).
    let out = run("rows");
    let mut m = manifest(&out);
    let o = m["outputs"].as_array_mut().unwrap().iter_mut().find(|o| o["file"] == "wallets.csv").unwrap();
    o["rows"] = (o["rows"].as_u64().unwrap() + 1).into();
    std::fs::write(out.join("run_manifest.json"), serde_json::to_string_pretty(&m).unwrap()).unwrap();
    fails_with(&out, "wallets.csv: 7 rows, manifest says 8");
    // A balance_after off by a cent breaks its wallet's chain.
    let out = run("chain");
    tamper(&out, "wallet_transactions.csv", |t| t.replacen(",33.00\n", ",33.01\n", 1));
    fails_with(&out, "chain breaks");
    // A closing balance that is not the chain's end (the totals then differ as well).
    let out = run("closing");
    tamper(&out, "wallets.csv", |t| t.replacen(",33.00,", ",34.00,", 1));
    fails_with(&out, "closing 34 but last balance_after 33");
    // Rows out of key order (W-EMPTY, which has no transactions, after W-NEW).
    let out = run("order");
    tamper(&out, "wallets.csv", |t| {
        let mut lines: Vec<&str> = t.lines().collect();
        assert!(lines[2].starts_with("W-EMPTY,") && lines[3].starts_with("W-NEW,"), "{t}");
        lines.swap(2, 3);
        lines.join("\n") + "\n"
    });
    fails_with(&out, "not in wallet_id order");
    // Transactions of a wallet that is not published.
    let out = run("missing");
    tamper(&out, "wallets.csv", |t| t.lines().filter(|l| !l.starts_with("W-NEW,")).map(|l| format!("{l}\n")).collect());
    fails_with(&out, "wallet W-NEW has transactions but is not in wallets");
}

/// SPEC v2 is backward compatible: v2 columns holding v1's meaning (PER_UNIT, no free
/// units, no tax code) and empty `discounts` and `tax_rates` tables bill exactly what v1
/// bills, and the next state carries the new columns and tables (empty).
#[test]
fn v2_columns_with_v1_meaning_bill_as_v1() {
    let s = Scratch::new();
    let job = s.job(&job(), "csv");
    let data = zx_copy(&s);
    let v1 = s.path("v1");
    billrun(run_args(&job, &data, &v1, Some("2026-11-22"))).ok();
    let services = std::fs::read_to_string(data.join("state/services.csv")).unwrap();
    let mut lines = services.lines();
    let mut t = format!("{},pricing_model,free_units,tax_code,price_includes_tax\n", lines.next().unwrap());
    for (i, l) in lines.enumerate() {
        t.push_str(&format!("{l},{}\n", ["PER_UNIT,0,,false", ",,,", "PER_UNIT,,,"][i % 3]));
    }
    std::fs::write(data.join("state/services.csv"), t).unwrap();
    std::fs::write(
        data.join("state/discounts.csv"),
        "discount_id,subscription_id,item_no,kind,value,remaining,start_date,end_date\n",
    )
    .unwrap();
    std::fs::write(data.join("state/tax_rates.csv"), "tax_code,rate,valid_from\n").unwrap();
    let v2 = s.path("v2");
    billrun(run_args(&job, &data, &v2, Some("2026-11-22"))).ok();
    for table in ["wallet_transactions.csv", "wallets.csv", "subscription_items.csv", "disconnections.csv"] {
        assert_eq!(std::fs::read(v1.join(table)).unwrap(), std::fs::read(v2.join(table)).unwrap(), "{table}");
    }
    let (header, _) = csv_table(&v2.join("services.csv"));
    assert!(header.iter().any(|h| h == "price_includes_tax"), "{header:?}");
    assert_eq!(csv_table(&v2.join("discounts.csv")).1.len(), 0);
    assert!(v2.join("tax_rates.csv").exists() && !v1.join("tax_rates.csv").exists());
}

/// SPEC §9.1: `price_tiers` and `tax_rates` are configuration. A row that cannot be read,
/// is out of its domain or repeats its key stops the run (exit 2, naming file, row and
/// column): a price plan or a tax table is never applied with a row missing.
#[test]
fn a_bad_price_tier_or_tax_rate_row_is_exit_2() {
    let fx = repo().join("tests/fixtures/pricing-figures");
    let cases: [(&str, &str, &str, &[&str]); 4] = [
        (
            "price_tiers.csv",
            "service_id,tier_no,up_to,unit_price,flat_fee\nGRAD,1,10,10,2\nGRAD,2,20,-5,3\nGRAD,3,,5,3\n",
            "a negative tier price",
            &["price_tiers.csv", "row 2", "unit_price"],
        ),
        (
            "price_tiers.csv",
            "service_id,tier_no,up_to,unit_price,flat_fee\nGRAD,1,10,10,2\nGRAD,1,20,5,3\nGRAD,3,,5,3\n",
            "a repeated tier",
            &["price_tiers.csv", "row 2", "GRAD/1"],
        ),
        (
            "tax_rates.csv",
            "tax_code,rate,valid_from\nT4,4,2026-01-01\nT4,5,2026-01-01\n",
            "a repeated rate",
            &["tax_rates.csv", "row 2", "T4/2026-01-01"],
        ),
        (
            "tax_rates.csv",
            "tax_code,rate,valid_from\nT4,four,2026-01-01\n",
            "an unreadable rate",
            &["tax_rates.csv", "row 1", "rate"],
        ),
    ];
    for (file, text, what, names) in cases {
        let s = Scratch::new();
        let d = s.path("fx");
        copy_dir(&fx, &d);
        std::fs::write(d.join("state").join(file), text).unwrap();
        let out = s.path("out");
        let r = billrun(run_args(&d.join("job.toml"), &d, &out, Some("2026-11-22"))).code_is(2);
        for n in names {
            assert!(r.stderr().contains(n), "{what}: {n} not in {}", r.stderr());
        }
        assert!(!out.exists(), "{what}: published");
    }
}
