//! Golden-file tests of whole runs on the SPEC §7 worked examples and the reject fixture.
//! Expected outputs are committed under tests/golden/ as text; `BLESS=1` re-blesses.

mod util;
use std::path::PathBuf;
use util::*;

/// Run `job` (with CSV output) on `fixture` at `as_of` and compare the whole output with
/// the golden file `name`; the output directory, for the test's own assertions.
fn golden_csv_run(s: &Scratch, job: &str, fixture: &str, as_of: &str, name: &str) -> PathBuf {
    let job = s.job(&repo().join(job), "csv");
    let out = s.path("out");
    billrun(run_args(&job, &repo().join(fixture), &out, Some(as_of))).ok();
    assert_golden(name, &render_csv_run(&out));
    out
}

#[test]
fn company_zx_daily_prepaid() {
    let s = Scratch::new();
    let out = golden_csv_run(
        &s,
        "jobs/company-zx-daily.toml",
        "sample-data/company-zx",
        "2026-11-22",
        "company-zx-2026-11-22",
    );

    let tx = out.join("wallet_transactions.csv");
    let amounts = |w: &str| csv_lookup(&tx, "wallet_id", w, "amount");
    let closing = |w: &str| csv_lookup(&out.join("wallets.csv"), "wallet_id", w, "balance")[0].clone();
    // New subscriber: STARTUP 10.00 and GOLD 7.00 (2026-11-22..2026-11-29), closing 33.00.
    assert_eq!(amounts("W-NEW"), ["10.00", "7.00"]);
    assert_eq!(csv_lookup(&tx, "wallet_id", "W-NEW", "period_end")[1], "2026-11-29");
    assert_eq!(closing("W-NEW"), "33.00");
    // Paid to 2026-11-28, balance 5: one day, 1.00; closing 4.00.
    assert_eq!(amounts("W-PAID"), ["1.00"]);
    assert_eq!(closing("W-PAID"), "4.00");
    // Balance 0.50: nothing debited, NOT_COVERED, but paid to 2026-11-28: stays ACTIVE.
    assert!(amounts("W-SHORT").is_empty());
    assert_eq!(csv_lookup(&out.join("subscriptions.csv"), "subscription_id", "S-SHORT", "status"), ["ACTIVE"]);
    // Balance 0.00: disconnected.
    let disc = out.join("disconnections.csv");
    assert_eq!(csv_lookup(&disc, "subscription_id", "S-EMPTY", "reason"), ["BALANCE_AT_OR_BELOW_THRESHOLD"]);
    // DISCONNECTED, balance 20: 7.00, reconnected, closing 13.00.
    assert_eq!(amounts("W-BACK"), ["7.00"]);
    assert_eq!(closing("W-BACK"), "13.00");
    assert_eq!(
        csv_lookup(&out.join("reconnections.csv"), "subscription_id", "S-BACK", "reason"),
        ["BALANCE_ABOVE_THRESHOLD"]
    );
    // Three PPV usages, balance 10: 14.97, closing -4.97, disconnected.
    assert_eq!(amounts("W-PPV"), ["14.97"]);
    assert_eq!(closing("W-PPV"), "-4.97");
    assert_eq!(csv_lookup(&disc, "subscription_id", "S-PPV", "reason"), ["BALANCE_AT_OR_BELOW_THRESHOLD"]);
    // The fourth usage is after the cutoff: deferred.
    assert_eq!(csv_lookup(&out.join("deferred_usage.csv"), "usage_id", "U-4", "subscription_id"), ["S-PPV"]);
}

/// The Parquet outputs a warehouse loads: every table's Arrow schema and Parquet column types
/// (a change to either is a change to the data contract, docs/SCHEMAS.md), and their rows.
#[test]
fn company_zx_parquet_schemas_and_rows() {
    let s = Scratch::new();
    let out = s.path("out");
    let job = repo().join("jobs/company-zx-daily.toml");
    billrun(run_args(&job, &repo().join("sample-data/company-zx"), &out, Some("2026-11-22"))).ok();
    assert_golden("company-zx-2026-11-22-parquet", &render_parquet_run(&out));
}

#[test]
fn company_zx_one_day_in_december_costs_30_over_31() {
    let s = Scratch::new();
    let out = golden_csv_run(
        &s,
        "jobs/company-zx-daily.toml",
        "tests/fixtures/zx-nov25",
        "2026-11-25",
        "company-zx-2026-11-25",
    );
    let tx = out.join("wallet_transactions.csv");
    assert_eq!(csv_lookup(&tx, "wallet_id", "W-DEC", "amount"), ["0.97"]);
    assert_eq!(csv_lookup(&tx, "wallet_id", "W-DEC", "period_start"), ["2026-12-01"]);
    assert_eq!(csv_lookup(&tx, "wallet_id", "W-DEC", "period_end"), ["2026-12-02"]);
}

#[test]
fn livesplash_usage_at_custom_price() {
    let s = Scratch::new();
    let out = golden_csv_run(
        &s,
        "jobs/livesplash-monthly.toml",
        "sample-data/livesplash",
        "2026-07-15",
        "livesplash-2026-07-15",
    );
    let tx = out.join("wallet_transactions.csv");
    assert_eq!(csv_lookup(&tx, "kind", "POST_RATE", "amount"), ["7820.00"]);
    assert_eq!(csv_lookup(&tx, "kind", "POST_RATE", "period_start"), ["2026-06-15"]);
    assert_eq!(csv_lookup(&tx, "kind", "POST_RATE", "period_end"), ["2026-07-15"]);
    assert_eq!(csv_lookup(&tx, "kind", "PRE_RATE", "amount"), ["50.00"]);
    assert_eq!(csv_lookup(&tx, "kind", "PRE_RATE", "period_end"), ["2026-08-15"]);
    assert_eq!(csv_lookup(&out.join("wallets.csv"), "wallet_id", "W-LS", "balance"), ["2130.00"]);
    let m = manifest(&out);
    assert_eq!(m["totals"]["USD"]["debits"]["total"], "7870.00");
    assert_eq!(m["totals"]["USD"]["closing"], "2130.00");
}

#[test]
fn every_reject_reason() {
    let s = Scratch::new();
    let fx = repo().join("tests/fixtures/rejects");
    let out = s.path("out");
    billrun(run_args(&fx.join("job.toml"), &fx, &out, Some("2026-11-22"))).ok();
    assert_golden("rejects-2026-11-22", &render_csv_run(&out));
    let (_, rows) = csv_table(&out.join("rejects.csv"));
    let mut reasons: Vec<&str> = rows.iter().map(|r| r[4].as_str()).collect();
    reasons.sort();
    reasons.dedup();
    assert_eq!(
        reasons,
        [
            "CURRENCY_MISMATCH",
            "DUPLICATE_KEY",
            "EXTERNAL_USAGE",
            "INVALID_VALUE",
            "ITEM_ENDED",
            "LATE_USAGE",
            "MISSING_REQUIRED",
            "NOT_POST_RATE",
            "SOURCE_MISMATCH",
            "TERMINATED_SUBSCRIPTION",
            "UNKNOWN_ITEM",
            "UNKNOWN_SERVICE",
            "UNKNOWN_SUBSCRIPTION",
            "UNKNOWN_WALLET",
        ]
    );
    // Rows that parse but cannot be billed are carried through to the next state.
    assert_eq!(csv_lookup(&out.join("subscriptions.csv"), "subscription_id", "S2", "status"), ["ACTIVE"]);
    assert_eq!(csv_lookup(&out.join("subscription_items.csv"), "subscription_id", "S9", "service_id"), ["GOLD"]);
    // Quarantined rows are nowhere else.
    assert!(csv_lookup(&out.join("subscriptions.csv"), "subscription_id", "S5", "status").is_empty());
    assert!(csv_lookup(&out.join("wallets.csv"), "wallet_id", "W2", "balance").is_empty());
}

#[test]
fn multi_channel_store_managed_subscriptions() {
    let s = Scratch::new();
    let out = golden_csv_run(
        &s,
        "jobs/multi-channel-daily.toml",
        "sample-data/multi-channel",
        "2026-11-22",
        "multi-channel-2026-11-22",
    );
    let reason = |list: &str, sub: &str| csv_lookup(&out.join(format!("{list}.csv")), "subscription_id", sub, "reason");
    let subs = out.join("subscriptions.csv");
    // Renewal before expiry: stays ACTIVE with the new expiry, payment reported.
    assert_eq!(csv_lookup(&subs, "subscription_id", "M-APPLE", "expires_at"), ["2026-12-21T09:00:00Z"]);
    // Cancelled: entitlement runs to expires_at.
    assert_eq!(csv_lookup(&subs, "subscription_id", "M-GOOGLE", "status"), ["ACTIVE"]);
    // Expiry passed with no renewal; revoked with a refund; expired by event.
    assert_eq!(reason("disconnections", "M-ROKU"), ["EXTERNAL_EXPIRED"]);
    assert_eq!(reason("disconnections", "M-AMAZON"), ["EXTERNAL_REVOKED"]);
    assert_eq!(reason("disconnections", "M-GOOGLE2"), ["EXTERNAL_EXPIRED"]);
    // Revival and purchase of disconnected subscriptions are reconnections.
    assert_eq!(reason("reconnections", "M-SAMSUNG"), ["EXTERNAL_REVIVED"]);
    assert_eq!(reason("reconnections", "M-APPLE2"), ["EXTERNAL_PURCHASED"]);
    // The later EXPIRED event waits for the next run.
    assert_eq!(csv_lookup(&out.join("deferred_events.csv"), "event_id", "EV-007", "subscription_id"), ["M-APPLE2"]);
    // Transfer moves the subscription to an account without a wallet.
    assert_eq!(csv_lookup(&subs, "subscription_id", "M-CARRIER", "account_id"), ["A-NEW-OWNER"]);
    // TERMINATED: unchanged, its payment still reported.
    assert_eq!(csv_lookup(&subs, "subscription_id", "M-TERM", "status"), ["TERMINATED"]);
    let pay = out.join("external_payments.csv");
    assert_eq!(csv_lookup(&pay, "event_id", "EV-010", "payment_status"), ["CAPTURED"]);
    assert_eq!(csv_lookup(&pay, "event_id", "EV-004", "payment_status"), ["REFUNDED"]);
    // Store payments never reach a wallet: the only transaction is the INTERNAL GOLD day.
    let (_, tx) = csv_table(&out.join("wallet_transactions.csv"));
    assert_eq!(tx.len(), 1);
    assert_eq!(csv_lookup(&out.join("wallets.csv"), "wallet_id", "W-MIX", "balance"), ["19.00"]);
    let rej = out.join("rejects.csv");
    assert_eq!(csv_lookup(&rej, "key", "MU-1", "reason"), ["EXTERNAL_USAGE"]);
    assert_eq!(csv_lookup(&rej, "key", "EV-011", "reason"), ["SOURCE_MISMATCH"]);
    let m = manifest(&out);
    assert_eq!(m["external_payments"]["APPLE"]["USD"]["CAPTURED"]["amount"], "19.98");
    assert_eq!(m["external_payments"]["APPLE"]["USD"]["CAPTURED"]["count"], 2);
}

/// SPEC v1.1 §4 step 2, chained over two nights: a list row's reason is the event that last
/// changed the status (both orders of REVOKED/EXPIRED; REVIVED then PURCHASED and RENEWED),
/// and a TERMINATED subscription's event dated after the cutoff is deferred, its payment
/// reported by the next run exactly once.
#[test]
fn store_event_reasons_and_terminated_deferral() {
    let s = Scratch::new();
    let job = s.job(&repo().join("jobs/multi-channel-daily.toml"), "csv");
    let day1 = golden_csv_run(
        &s,
        "jobs/multi-channel-daily.toml",
        "tests/fixtures/store-events",
        "2026-11-22",
        "store-events-2026-11-22",
    );
    let reason = |dir: &PathBuf, list: &str, sub: &str| {
        csv_lookup(&dir.join(format!("{list}.csv")), "subscription_id", sub, "reason")
    };
    assert_eq!(reason(&day1, "disconnections", "X-REV-EXP"), ["EXTERNAL_REVOKED"]);
    assert_eq!(reason(&day1, "disconnections", "X-EXP-REV"), ["EXTERNAL_EXPIRED"]);
    assert_eq!(reason(&day1, "reconnections", "X-REVIVE"), ["EXTERNAL_REVIVED"]);
    // The TERMINATED subscription: the event before the cutoff consumed and its payment
    // reported, the one after it deferred (not reported).
    let pay1 = day1.join("external_payments.csv");
    assert_eq!(csv_lookup(&pay1, "subscription_id", "X-TERM", "event_id"), ["E-08"]);
    assert_eq!(csv_lookup(&day1.join("deferred_events.csv"), "subscription_id", "X-TERM", "event_id"), ["E-09"]);
    assert_eq!(csv_lookup(&day1.join("subscriptions.csv"), "subscription_id", "X-TERM", "status"), ["TERMINATED"]);

    // The next night reads the deferred event and reports its payment, once.
    let day2 = s.path("day2");
    next_run(&job, &day1, &day2);
    assert_golden("store-events-2026-11-23", &render_csv_run(&day2));
    let pay2 = day2.join("external_payments.csv");
    assert_eq!(csv_lookup(&pay2, "subscription_id", "X-TERM", "event_id"), ["E-09"]);
    assert!(csv_lookup(&day2.join("deferred_events.csv"), "subscription_id", "X-TERM", "event_id").is_empty());
    assert_eq!(csv_lookup(&day2.join("subscriptions.csv"), "subscription_id", "X-TERM", "status"), ["TERMINATED"]);
    assert!(csv_lookup(&day2.join("rejects.csv"), "key", "E-09", "reason").is_empty());
}

/// SPEC v2 §9.2's figures (from two established billing systems' own test suites) and §9.5's
/// inclusive-tax example, each as a whole run: one wallet per figure, its POST_RATE or
/// ONE_TIME line the list amount SPEC names (rounded once; the PERCENTAGE rows' exact
/// 16.142 and 18.691 in the residual). Also two 10 % discounts on 100.00 (10.00 + 9.00) and
/// a VOLUME increment that moves the period to a cheaper tier: a usage credit.
#[test]
fn pricing_figures_of_spec_9_2_as_whole_runs() {
    let s = Scratch::new();
    let fx = repo().join("tests/fixtures/pricing-figures");
    let out = s.path("out");
    billrun(run_args(&fx.join("job.toml"), &fx, &out, Some("2026-11-22"))).ok();
    assert_golden("pricing-figures-2026-11-22", &render_csv_run(&out));
    let tx = out.join("wallet_transactions.csv");
    let line = |w: &str, col: &str| csv_lookup(&tx, "wallet_id", w, col);
    for (q, a) in
        [("0", "2.00"), ("1", "12.00"), ("10", "102.00"), ("11", "110.00"), ("12", "115.00"), ("21", "163.00")]
    {
        assert_eq!(line(&format!("W-GRAD-{q}"), "amount"), [a], "GRADUATED q = {q}");
    }
    for (q, a) in [
        ("0", "10.00"),
        ("1", "12.00"),
        ("100", "210.00"),
        ("100.5", "100.50"),
        ("101", "101.00"),
        ("200", "200.00"),
        ("300", "200.00"),
    ] {
        assert_eq!(line(&format!("W-VOL-{q}"), "amount"), [a], "VOLUME q = {q}");
    }
    assert_eq!(line("W-PKG0", "amount"), ["1300.00"]);
    assert_eq!(line("W-PKG10", "amount"), ["1200.00"]);
    assert!(line("W-PKG200", "amount").is_empty(), "200 free units: A = 0, no line");
    assert_eq!(line("W-PCT", "amount"), ["16.14"]);
    assert_eq!(line("W-PCTFEE", "amount"), ["18.69"]);
    assert_eq!(line("W-PCT", "unit_price"), [""], "unit_price is null for a model other than PER_UNIT");
    // $2.99 at 4 %, tax included: net 2.88, tax 0.11.
    assert_eq!(line("W-APP", "amount"), ["2.99"]);
    assert_eq!(line("W-APP", "net_amount"), ["2.88"]);
    assert_eq!(line("W-APP", "tax_amount"), ["0.11"]);
    assert_eq!(line("W-SEAT", "discount_amount"), ["19.00"]);
    assert_eq!(line("W-SEAT", "discount_ids"), ["D-SEAT-A,D-SEAT-B"]);
    assert_eq!(line("W-VOLM", "direction"), ["CREDIT"]);
    assert_eq!(line("W-VOLM", "transaction_type"), ["USAGE_CREDIT"]);
    assert_eq!(line("W-VOLM", "amount"), ["109.00"]);
    assert_eq!(csv_lookup(&out.join("wallets.csv"), "wallet_id", "W-VOLM", "balance"), ["1109.00"]);
    let m = manifest(&out);
    assert_eq!(m["totals"]["USD"]["rounding_residual"], "0.003");
    assert_eq!(m["totals"]["USD"]["usage_credits"], "109.00");
    assert_eq!(m["totals"]["USD"]["tax_rounding_residual"], "0.005");
}

/// SPEC v2 §9.1's bad price plans, each the reject SPEC names and nothing lost: tiers out of
/// order and a null bound not last (the service and all its tiers INVALID_TIERS, its items
/// and usage UNKNOWN_SERVICE), a tier of a flat service, a tiered service without tiers, a
/// tier of an unknown service, PERCENTAGE on a PRE_RATE service, a custom price on a tiered
/// service (PRICING_MISMATCH, its usage too), unknown and not-yet-valid tax codes, a discount
/// over 100 %, a budget above its value, discounts of unknown, external or item-less
/// targets; every row that parses is carried to the next state.
#[test]
fn pricing_rejects_each_named_and_carried() {
    let s = Scratch::new();
    let fx = repo().join("tests/fixtures/pricing-rejects");
    let out = s.path("out");
    billrun(run_args(&fx.join("job.toml"), &fx, &out, Some("2026-11-22"))).ok();
    assert_golden("pricing-rejects-2026-11-22", &render_csv_run(&out));
    let rej = out.join("rejects.csv");
    let reason = |key: &str| csv_lookup(&rej, "key", key, "reason");
    assert_eq!(reason("BADORDER"), ["INVALID_TIERS"]);
    assert_eq!(reason("NULLMID"), ["INVALID_TIERS"]);
    assert_eq!(reason("NOTIERS"), ["INVALID_TIERS"]);
    assert_eq!(reason("BADORDER/2"), ["INVALID_TIERS"]);
    assert_eq!(reason("FLAT/1"), ["INVALID_TIERS"]);
    assert_eq!(reason("GHOST/1"), ["UNKNOWN_SERVICE"]);
    assert_eq!(reason("PCTPRE"), ["INVALID_VALUE"]);
    assert_eq!(reason("S1/2"), ["UNKNOWN_SERVICE"]);
    assert_eq!(reason("U2"), ["UNKNOWN_SERVICE"]);
    assert_eq!(reason("S1/9"), ["PRICING_MISMATCH"]);
    assert_eq!(reason("U4"), ["PRICING_MISMATCH"]);
    assert_eq!(reason("S1/5"), ["UNKNOWN_TAX_CODE"]);
    assert_eq!(reason("S1/6"), ["UNKNOWN_TAX_CODE"]);
    assert_eq!(reason("D-OVER"), ["INVALID_VALUE"]);
    assert_eq!(reason("D-REM"), ["INVALID_VALUE"]);
    assert_eq!(reason("D-GHOST"), ["UNKNOWN_SUBSCRIPTION"]);
    assert_eq!(reason("D-EXT"), ["SOURCE_MISMATCH"]);
    assert_eq!(reason("D-ITEM"), ["UNKNOWN_ITEM"]);
    // Carried through: the rejected service with its tiers, the items, the discounts whose
    // references failed; the FLAT service is billed (only its tier row is rejected).
    assert_eq!(csv_lookup(&out.join("services.csv"), "service_id", "BADORDER", "pricing_model"), ["GRADUATED"]);
    assert_eq!(csv_lookup(&out.join("price_tiers.csv"), "service_id", "BADORDER", "tier_no"), ["1", "2", "3"]);
    assert_eq!(csv_lookup(&out.join("discounts.csv"), "discount_id", "D-GHOST", "subscription_id"), ["S9"]);
    assert_eq!(csv_lookup(&out.join("subscription_items.csv"), "service_id", "VOLOK", "custom_price"), ["0.5"]);
    let tx = out.join("wallet_transactions.csv");
    assert_eq!(csv_lookup(&tx, "service_id", "FLAT", "amount"), ["3.00"]);
    // The AMOUNT coupon then 19 % VAT on the rest: 10.00 - 4.00 = 6.00, tax 1.14.
    assert_eq!(csv_lookup(&tx, "service_id", "TAXED", "amount"), ["7.14"]);
    assert_eq!(csv_lookup(&out.join("discounts.csv"), "discount_id", "D-OK", "remaining"), ["0.00"]);
}

/// The README's pricing example (sample-data/livesplash-pricing, reviewed by hand): the
/// usage-at-custom-price case on SPEC v2 pricing, two daily runs chained. Streams are a
/// graduated plan of their own (7.50 per 1000 up to 500,000 a month, 5.75 above) over a
/// monthly pricing period; prices include sales tax at a dated rate (6 %, 7 % from July);
/// a 20 % discount for three months and a one-off 25.00 coupon.
#[test]
fn livesplash_pricing_two_daily_runs() {
    let s = Scratch::new();
    let fx = repo().join("sample-data/livesplash-pricing");
    let job = s.job(&repo().join("jobs/livesplash-pricing-daily.toml"), "csv");
    let day1 = s.path("day1");
    billrun(run_args(&job, &fx, &day1, Some("2026-07-16"))).ok();
    assert_golden("livesplash-pricing-2026-07-16", &render_csv_run(&day1));
    let tx = day1.join("wallet_transactions.csv");
    let col = |tx: &PathBuf, svc: &str, c: &str| csv_lookup(tx, "service_id", svc, c);
    // 520,000 streams: 500 x 7.50 + 20 x 5.75 = 3865.00; the coupon (25.00, its id sorts
    // first) then 20 % of the rest (768.00); tax included at 7 %: net 2871.03, tax 200.97.
    assert_eq!(col(&tx, "STREAMS-LS", "list_amount"), ["3865.00"]);
    assert_eq!(col(&tx, "STREAMS-LS", "discount_amount"), ["793.00"]);
    assert_eq!(col(&tx, "STREAMS-LS", "amount"), ["3072.00"]);
    assert_eq!(col(&tx, "STREAMS-LS", "tax_amount"), ["200.97"]);
    assert_eq!(col(&tx, "STREAMS-LS", "tax_rate"), ["7"]);
    // One day of access at 50.00 a month: 1.61, less 20 %: 1.29 gross.
    assert_eq!(col(&tx, "ACCESS", "amount"), ["1.29"]);
    assert_eq!(csv_lookup(&day1.join("discounts.csv"), "discount_id", "LS-COUPON-25", "remaining"), ["0.00"]);
    // The finance report shows the pricing per currency and the top discounts.
    if cfg!(feature = "report") {
        let report = billrun(["report", day1.to_str().unwrap()]).ok().stdout();
        assert!(report.contains("3,866.61") && report.contains("tax SALES"), "{report}");
        assert!(report.contains("793.00 USD        1 lines  LS-COUPON-25,LS-LAUNCH-20"), "{report}");
    }

    // The next day: 480,000 more streams in the same pricing period bill the increment,
    // A(1,000,000) - 3865.00 = 2760.00, less 20 %: 2208.00.
    let day2 = s.path("day2");
    let mut args = run_args(&job, &fx, &day2, None);
    let at = |flag: &str| args.iter().position(|a| a == flag).unwrap() + 1;
    let (state_at, usage_at) = (at("--state"), at("--usage"));
    args[state_at] = day1.to_str().unwrap().to_string();
    args[usage_at] = fx.join("usage-2026-07-17.csv").to_str().unwrap().to_string();
    billrun(args).ok();
    assert_golden("livesplash-pricing-2026-07-17", &render_csv_run(&day2));
    let tx = day2.join("wallet_transactions.csv");
    assert_eq!(col(&tx, "STREAMS-LS", "list_amount"), ["2760.00"]);
    assert_eq!(col(&tx, "STREAMS-LS", "amount"), ["2208.00"]);
    let items = day2.join("subscription_items.csv");
    assert_eq!(csv_lookup(&items, "service_id", "STREAMS-LS", "period_quantity"), ["1000000"]);
    assert_eq!(csv_lookup(&items, "service_id", "STREAMS-LS", "period_charged"), ["6625.00"]);
}
