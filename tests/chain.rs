//! Three consecutive daily runs, each reading the previous run's output as its state
//! (Parquet in and out), with credits in between and `--as-of` derived from the manifest.

mod util;
use util::*;

fn balance(dir: &std::path::Path, wallet: &str) -> String {
    let t = billrun::tools::dump::read_text_table(&dir.join("wallets.parquet")).unwrap();
    let (w, b) = (t.col("wallet_id").unwrap(), t.col("balance").unwrap());
    t.rows.iter().find(|r| r[w] == wallet).unwrap()[b].clone()
}

fn field(dir: &std::path::Path, table: &str, key_col: &str, key: &str, col: &str) -> Vec<String> {
    let t = billrun::tools::dump::read_text_table(&dir.join(format!("{table}.parquet"))).unwrap();
    let (k, c) = (t.col(key_col).unwrap(), t.col(col).unwrap());
    t.rows.iter().filter(|r| r[k] == key).map(|r| r[c].clone()).collect()
}

#[test]
fn three_daily_runs_chain() {
    let s = Scratch::new();
    let job = repo().join("jobs/company-zx-daily.toml");
    let zx = repo().join("sample-data/company-zx");
    let day1 = s.path("2026-11-22");
    billrun(run_args(&job, &zx, &day1, Some("2026-11-22"))).ok();

    // Day 2: as_of derived (2026-11-22 + 1 day); top-ups for the empty and the PPV wallet.
    let credits = s.path("credits-2.csv");
    std::fs::write(
        &credits,
        "credit_id,wallet_id,amount,transaction_type,received_at\n\
         C2-1,W-EMPTY,20.00,TOP_UP,2026-11-22T10:00:00Z\n\
         C2-2,W-PPV,10.00,PAYMENT,2026-11-22T11:00:00+01:00\n",
    )
    .unwrap();
    let day2 = s.path("2026-11-23");
    let args = [
        "run",
        "--job",
        job.to_str().unwrap(),
        "--state",
        day1.to_str().unwrap(),
        "--credits",
        credits.to_str().unwrap(),
        "--output",
        day2.to_str().unwrap(),
    ];
    let r = billrun(args).ok();
    assert!(r.stdout().contains("company-zx-daily-prepaid-2026-11-23"), "{}", r.stdout());
    assert_eq!(balance(&day2, "W-NEW"), "32");
    assert_eq!(balance(&day2, "W-PAID"), "3");
    assert_eq!(balance(&day2, "W-SHORT"), "0.5");
    // Reconnected by the top-up: two days (11-28..11-30) at 1.00.
    assert_eq!(balance(&day2, "W-EMPTY"), "18");
    assert_eq!(field(&day2, "reconnections", "subscription_id", "S-EMPTY", "reason"), ["BALANCE_ABOVE_THRESHOLD"]);
    assert_eq!(field(&day2, "subscription_items", "subscription_id", "S-EMPTY", "billed_through"), ["2026-11-30"]);
    // The deferred usage of day 1 is rated now: -4.97 + 10.00 - 4.99.
    assert_eq!(balance(&day2, "W-PPV"), "0.04");
    assert_eq!(field(&day2, "wallet_transactions", "wallet_id", "W-PPV", "kind"), ["CREDIT", "POST_RATE"]);
    assert_eq!(field(&day2, "subscriptions", "subscription_id", "S-PPV", "status"), ["ACTIVE"]);
    assert!(field(&day2, "deferred_usage", "usage_id", "U-4", "usage_id").is_empty());
    assert_eq!(balance(&day2, "W-TOPUP"), "22");

    // Day 3: nothing new.
    let day3 = s.path("2026-11-24");
    next_run(&job, &day2, &day3);
    assert_eq!(balance(&day3, "W-NEW"), "31");
    assert_eq!(balance(&day3, "W-PAID"), "2");
    assert_eq!(balance(&day3, "W-EMPTY"), "17");
    assert_eq!(balance(&day3, "W-BACK"), "11");
    assert_eq!(balance(&day3, "W-PPV"), "0.04");
    // Still paid to 2026-11-28: stays ACTIVE though it cannot pay ahead.
    assert_eq!(field(&day3, "subscriptions", "subscription_id", "S-SHORT", "status"), ["ACTIVE"]);
    assert_eq!(
        field(&day3, "subscription_items", "subscription_id", "S-NEW", "billed_through"),
        ["2026-12-01", "2026-11-22"]
    );
    let m = manifest(&day3);
    assert_eq!(m["as_of"], "2026-11-24");
}

/// SPEC v2 §9.3/§9.6: the items' pricing-period state columns are always written (null on a
/// v1 state) and carried through unchanged by a run that does not price by period.
#[test]
fn item_period_state_is_written_and_carried() {
    let s = Scratch::new();
    let zx = repo().join("sample-data/company-zx");
    // The sample's state alone, its items rewritten with the period columns below.
    let data = s.path("data");
    copy_dir(&zx.join("state"), &data.join("state"));
    let items = std::fs::read_to_string(zx.join("state/subscription_items.csv")).unwrap();
    let mut lines = items.lines();
    let mut text = format!("{},period_start,period_quantity,period_charged\n", lines.next().unwrap());
    for (i, l) in lines.enumerate() {
        let extra = if i == 0 { ",2026-11-01,12.5,3.00" } else { ",,," };
        text.push_str(&format!("{l}{extra}\n"));
    }
    std::fs::write(data.join("state/subscription_items.csv"), &text).unwrap();
    let job = s.job(&repo().join("jobs/company-zx-daily.toml"), "csv");
    let out = s.path("out");
    billrun(run_args(&job, &data, &out, Some("2026-11-22"))).ok();
    let (h, rows) = csv_table(&out.join("subscription_items.csv"));
    assert_eq!(&h[h.len() - 3..], ["period_start", "period_quantity", "period_charged"]);
    let first = text.lines().nth(1).unwrap().split(',').take(2).collect::<Vec<_>>();
    let row = rows.iter().find(|r| r[0] == first[0] && r[1] == first[1]).unwrap();
    assert_eq!(&row[row.len() - 3..], ["2026-11-01", "12.5", "3.00"]);
    assert!(rows.iter().filter(|r| r != &row).all(|r| r[r.len() - 3..].iter().all(String::is_empty)));
}

/// A run published before SPEC v2 (no priced columns, no `period_*`, v1 totals; written by
/// billrun at 8863d88) still verifies, and the next night chains from it.
#[test]
fn a_run_published_before_v2_verifies_and_chains() {
    let s = Scratch::new();
    let v1 = repo().join("tests/fixtures/v1-run");
    billrun(["verify", v1.to_str().unwrap()]).ok();
    let next = s.path("next");
    next_run(&repo().join("jobs/company-zx-daily.toml"), &v1, &next);
    billrun(["verify", next.to_str().unwrap()]).ok();
    assert_eq!(manifest(&next)["as_of"], "2026-11-23");
    assert!(manifest(&next)["totals"]["EUR"]["list"].is_string());
}
