//! What operators and the warehouse get besides the core tables: the Hive-partitioned
//! layout, the `usage_lineage` audit trail, the finance report (text, HTML in a real
//! headless browser, and `--against` a previous run), and the log formats.

mod util;
use billrun::tools::dump::read_run_table;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use util::*;

fn zx() -> (PathBuf, PathBuf) {
    (repo().join("jobs/company-zx-daily.toml"), repo().join("sample-data/company-zx"))
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// Every table of a run, as text rows keyed by table name (layout-independent).
fn tables(dir: &Path) -> BTreeMap<&'static str, Vec<Vec<String>>> {
    let names = [
        "services",
        "wallets",
        "subscriptions",
        "subscription_items",
        "deferred_usage",
        "deferred_events",
        "wallet_transactions",
        "disconnections",
        "reconnections",
        "wallet_estimates",
        "external_payments",
        "rejects",
    ];
    names.iter().map(|&n| (n, read_run_table(dir, n).unwrap().unwrap_or_else(|| panic!("{n} missing")).rows)).collect()
}

#[test]
fn hive_layout_holds_the_same_rows_and_chains_as_state() {
    let s = Scratch::new();
    let (job, data) = zx();
    let flat = s.path("flat");
    let hive = s.path("hive");
    billrun(run_args(&job, &data, &flat, Some("2026-11-22"))).ok();
    let mut a = run_args(&job, &data, &hive, Some("2026-11-22"));
    a.extend(["--layout".into(), "hive".into()]);
    billrun(&a).ok();

    // Every table is a dataset directory with one as_of partition.
    let tx = hive.join("wallet_transactions/as_of=2026-11-22/part-00000.parquet");
    assert!(tx.is_file(), "{} missing", tx.display());
    assert!(!hive.join("wallet_transactions.parquet").exists());
    let m = manifest(&hive);
    for o in m["outputs"].as_array().unwrap() {
        let f = o["file"].as_str().unwrap();
        assert!(f.starts_with(&format!("{}/as_of=2026-11-22/part-", o["table"].as_str().unwrap())), "{f}");
    }
    billrun(["verify", hive.to_str().unwrap()]).ok();
    assert_eq!(tables(&flat), tables(&hive));

    // The Hive output is a valid state for the next run: same result as from the flat one.
    next_run(&job, &flat, &s.path("flat-2"));
    next_run(&job, &hive, &s.path("hive-2"));
    assert_eq!(tables(&s.path("flat-2")), tables(&s.path("hive-2")));
}

#[test]
fn lineage_traces_every_rated_usage_row_to_its_transaction() {
    let s = Scratch::new();
    let (job, data) = zx();
    let out = s.path("out");
    let mut a = run_args(&job, &data, &out, Some("2026-11-22"));
    a.push("--lineage".into());
    billrun(&a).ok();
    let lin = read_run_table(&out, "usage_lineage").unwrap().expect("usage_lineage written");
    let tx = read_run_table(&out, "wallet_transactions").unwrap().unwrap();
    let (lu, lt) = (lin.col("usage_id").unwrap(), lin.col("transaction_id").unwrap());
    assert!(!lin.rows.is_empty());

    // The input usage quantities, by usage_id.
    let (uh, urows) = csv_table(&data.join("usage.csv"));
    let (ui, uq) = (uh.iter().position(|h| h == "usage_id").unwrap(), uh.iter().position(|h| h == "quantity").unwrap());
    let mut qty: BTreeMap<&str, Decimal> = BTreeMap::new();
    for r in &urows {
        if let Ok(q) = r[uq].parse() {
            qty.entry(r[ui].as_str()).or_insert(q); // the first occurrence wins
        }
    }

    // Summing each transaction's usage gives its quantity; every POST_RATE line is covered.
    let mut summed: BTreeMap<&str, Decimal> = BTreeMap::new();
    for r in &lin.rows {
        assert!(!r[lt].is_empty(), "usage {} has no transaction", r[lu]);
        *summed.entry(r[lt].as_str()).or_default() += qty[r[lu].as_str()];
    }
    let (ti, tk, tq) = (tx.col("transaction_id").unwrap(), tx.col("kind").unwrap(), tx.col("quantity").unwrap());
    let post: BTreeMap<&str, Decimal> =
        tx.rows.iter().filter(|r| r[tk] == "POST_RATE").map(|r| (r[ti].as_str(), dec(&r[tq]))).collect();
    for (t, q) in &summed {
        assert_eq!(post.get(t), Some(q), "transaction {t}");
    }
    for (t, q) in &post {
        if *q > Decimal::ZERO {
            assert!(summed.contains_key(t), "POST_RATE {t} has no lineage");
        }
    }
    // Rejected usage (late, unknown, ...) is not in the lineage; a duplicate's first
    // occurrence may be, once.
    let rejects = read_run_table(&out, "rejects").unwrap().unwrap();
    let (rt, rk, rr) = (rejects.col("table").unwrap(), rejects.col("key").unwrap(), rejects.col("reason").unwrap());
    for r in rejects.rows.iter().filter(|r| r[rt] == "usage") {
        let n = lin.rows.iter().filter(|l| l[lu] == r[rk]).count();
        let most = if r[rr] == "DUPLICATE_KEY" { 1 } else { 0 };
        assert!(n <= most, "usage {} ({}) is in the lineage {n} times", r[rk], r[rr]);
    }
    let ids: std::collections::BTreeSet<&str> = lin.rows.iter().map(|r| r[lu].as_str()).collect();
    assert_eq!(ids.len(), lin.rows.len(), "a usage_id appears twice in the lineage");
    // Without --lineage there is no such table.
    let plain = s.path("plain");
    billrun(run_args(&job, &data, &plain, Some("2026-11-22"))).ok();
    assert!(read_run_table(&plain, "usage_lineage").unwrap().is_none());
}

#[cfg(feature = "report")]
fn manifest_totals(dir: &Path) -> BTreeMap<String, serde_json::Value> {
    let m = manifest(dir);
    m["totals"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(feature = "report")]
#[test]
fn report_reconciles_with_the_manifest_and_diffs_against_a_previous_run() {
    let s = Scratch::new();
    let (job, data) = zx();
    let day1 = s.path("day1");
    billrun(run_args(&job, &data, &day1, Some("2026-11-22"))).ok();
    let text = billrun(["report", day1.to_str().unwrap()]).ok().stdout();
    for (cur, t) in manifest_totals(&day1) {
        let line = text.lines().find(|l| l.starts_with(&format!("{cur} "))).unwrap_or_else(|| panic!("{cur}:\n{text}"));
        assert!(line.contains(" ok ") && line.contains("agree"), "{line}");
        assert!(line.contains(t["closing"].as_str().unwrap()), "{line}");
    }
    for section in
        ["Transactions by kind and type", "Debits by service", "Largest debits", "Rejects by table and reason"]
    {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    // SPEC v2 §9.6: list, discounts, taxes and net revenue per currency; on v1 data the list
    // and the net revenue are the debits.
    let pricing = text.lines().skip_while(|l| !l.starts_with("Pricing per currency")).nth(2).unwrap_or_default();
    let f: Vec<&str> = pricing.split_whitespace().collect();
    let m = manifest_totals(&day1);
    let debits = m["EUR"]["debits"]["total"].as_str().unwrap();
    assert_eq!(f, ["EUR", debits, "0.00", "0.00", "0.00", debits], "{text}");

    // Day 2 from day 1's state; --against shows the per-kind change as this - previous.
    let day2 = s.path("day2");
    next_run(&job, &day1, &day2);
    let diff = billrun(["report", day2.to_str().unwrap(), "--against", day1.to_str().unwrap()]).ok().stdout();
    let t1 = manifest_totals(&day1);
    let t2 = manifest_totals(&day2);
    let kind_total = |t: &BTreeMap<String, serde_json::Value>, cur: &str, kind: &str| {
        t.get(cur).and_then(|v| v["debits"][kind].as_str()).map_or(Decimal::ZERO, dec)
    };
    let mut checked = 0;
    for line in diff.lines().skip_while(|l| !l.starts_with("Totals per currency and kind")).skip(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 {
            break;
        }
        let (cur, kind) = (f[0], f[1]);
        if kind == "CREDIT" {
            continue;
        }
        assert_eq!(dec(f[2]), kind_total(&t1, cur, kind), "{line}");
        assert_eq!(dec(f[3]), kind_total(&t2, cur, kind), "{line}");
        assert_eq!(dec(f[4]), dec(f[3]) - dec(f[2]), "{line}");
        checked += 1;
    }
    assert!(checked > 0, "no totals lines:\n{diff}");
    assert!(diff.contains("Newly disconnected") && diff.contains("Accounts whose debits moved most"), "{diff}");
    // The list compared too: on v1 data it is the debits, so its change is theirs.
    let list = diff
        .lines()
        .skip_while(|l| !l.starts_with("Pricing per currency (list"))
        .find(|l| l.split_whitespace().nth(1) == Some("list"))
        .unwrap_or_else(|| panic!("no pricing comparison:\n{diff}"));
    let f: Vec<&str> = list.split_whitespace().collect();
    let total = |t: &BTreeMap<String, serde_json::Value>| dec(t["EUR"]["debits"]["total"].as_str().unwrap());
    assert_eq!((dec(f[2]), dec(f[3])), (total(&t1), total(&t2)), "{list}");
}

/// The HTML report opened in a real headless Chromium: the page's own script re-adds the
/// chart's debits and compares them with the manifest, the three charts are present, and
/// the reconciliation cells carry the manifest's totals. CI installs Debian's chromium and
/// sets BILLRUN_REQUIRE_BROWSER=1; elsewhere the test is skipped when no browser is found.
#[cfg(feature = "report")]
#[test]
fn html_report_renders_in_headless_chromium() {
    let s = Scratch::new();
    let (job, data) = zx();
    let out = s.path("out");
    billrun(run_args(&job, &data, &out, Some("2026-11-22"))).ok();
    let html = s.path("report.html");
    billrun(["report", out.to_str().unwrap(), "--html", html.to_str().unwrap()]).ok();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"), "not self-contained");

    let browser = std::env::var("BILLRUN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&browser).exists() {
        assert!(std::env::var_os("BILLRUN_REQUIRE_BROWSER").is_none(), "no browser at {browser}");
        eprintln!("skipped: no headless browser at {browser}");
        return;
    }
    let profile = s.path("chromium-profile");
    let dom = std::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(dom.contains("data-status=\"ok\""), "self-check did not pass in the browser:\n{dom}");
    assert!(dom.contains("data-charts=\"3\""), "charts missing:\n{dom}");
    assert!(dom.contains("<table id=\"pricing\">"), "pricing table missing");
    for id in ["chart-debits-by-service", "chart-balances", "chart-depletion"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    for (cur, t) in manifest_totals(&out) {
        for k in ["opening", "credits", "closing"] {
            let cell = format!("<td class=\"{k}\">{}</td>", t[k].as_str().unwrap());
            assert!(dom.contains(&cell), "{cur} {k}: {cell} not in the page");
        }
        let cell = format!("<td class=\"debits\">{}</td>", t["debits"]["total"].as_str().unwrap());
        assert!(dom.contains(&cell), "{cur} debits: {cell} not in the page");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let s = Scratch::new();
    let (job, data) = zx();
    let out = s.path("out");
    let a = run_args(&job, &data, &out, Some("2026-11-22"));
    let o = bin().args(&a).args(["--log-format", "json"]).output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<serde_json::Value> = err.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    assert!(lines.iter().any(|v| v["phase"] == "read" && v["rows"].is_u64()), "{err}");
    assert!(lines.iter().any(|v| v["phase"] == "done" && v["elapsed_s"].is_f64()), "{err}");
    assert!(lines.iter().all(|v| v["level"] == "INFO"), "{err}");
    // --quiet: nothing on stderr for a successful run.
    let o = bin().args(&a).args(["--force", "--quiet"]).output().unwrap();
    assert!(o.status.success() && o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `generate` gives the same bytes for the same arguments, with `--pricing` too; and
/// `--pricing` draws from a stream of its own: the tables it does not price (wallets,
/// subscriptions, usage, credits, events) are byte for byte those of the data without it.
#[test]
fn generate_is_deterministic_and_pricing_adds_only_prices() {
    let s = Scratch::new();
    let gen = |name: &str, pricing: bool| {
        let out = s.path(name);
        let mut args = vec!["generate", "--accounts", "300", "--seed", "4", "--format", "csv", "--out"];
        let o = out.to_str().unwrap().to_string();
        args.push(&o);
        if pricing {
            args.push("--pricing");
        }
        billrun(&args).ok();
        out
    };
    let (a, b, plain) = (gen("a", true), gen("b", true), gen("plain", false));
    assert_eq!(dir_bytes(&a.join("state")), dir_bytes(&b.join("state")));
    for f in ["usage.csv", "credits.csv", "events.csv", "job.toml"] {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f}");
    }
    for f in ["state/wallets.csv", "state/subscriptions.csv", "usage.csv", "credits.csv", "events.csv", "job.toml"] {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(plain.join(f)).unwrap(), "{f}");
    }
    for t in ["price_tiers.csv", "tax_rates.csv", "discounts.csv"] {
        assert!(a.join("state").join(t).exists() && !plain.join("state").join(t).exists(), "{t}");
    }
    let (header, _) = csv_table(&a.join("state/services.csv"));
    assert!(header.iter().any(|h| h == "pricing_model"));
}
