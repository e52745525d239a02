//! Differential tests: billrun against a second, independent implementation of SPEC.md
//! (`tests/reference/reference.py`, plain Python with exact fractions) on generated datasets
//! mutated with edge cases and random job settings (`tests/reference/mutate.py`), then on the
//! next run chained from the first one's output (CSV and Parquet), and on that next run with
//! the same input files delivered again. Every output table is compared row by row.
//!
//! Needs `python3` >= 3.11 (for `tomllib`). `.ci/run` installs it when missing and sets
//! `BILLRUN_REQUIRE_PYTHON=1`; elsewhere the test is skipped when no such Python is found.

mod util;

use std::path::Path;
use std::process::Command;
use util::*;

fn python() -> Option<&'static str> {
    let ok = Command::new("python3")
        .args(["-c", "import sys, tomllib; sys.exit(0 if sys.version_info >= (3, 11) else 1)"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("BILLRUN_REQUIRE_PYTHON").is_none(),
            "python3 >= 3.11 is required for the differential tests"
        );
        eprintln!("skipped: no python3 >= 3.11");
        return None;
    }
    Some("python3")
}

#[track_caller]
fn py(python: &str, args: &[&str]) -> String {
    let out = Command::new(python).args(args).current_dir(repo()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} failed:\n{text}", args[0]);
    text
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Generate, mutate, run, compare; then the next run from that output, compared again.
fn differential(seed: u64, as_of: &str, accounts: u32) {
    differential_with(seed, as_of, accounts, false)
}

/// [`differential`]; with `pricing`, mutate.py adds SPEC v2 §9 price plans (every model,
/// tiers good and bad, pricing-period state on and off the grid, taxes with rate changes,
/// gross and net prices, discounts of both kinds and bad ones).
fn differential_with(seed: u64, as_of: &str, accounts: u32, pricing: bool) {
    let Some(python) = python() else { return };
    let t = Scratch::new();
    let (gen, data, out) = (t.path("gen"), t.path("data"), t.path("out"));
    billrun([
        "generate",
        "--accounts",
        &accounts.to_string(),
        "--seed",
        &seed.to_string(),
        "--as-of",
        as_of,
        "--format",
        "csv",
        "--out",
        s(&gen),
    ])
    .ok();
    let seed_arg = seed.to_string();
    let mut mutate = vec!["tests/reference/mutate.py", s(&gen), s(&data), &seed_arg];
    if pricing {
        mutate.push("--pricing");
    }
    py(python, &mutate);
    let job = data.join("job.toml");
    billrun(run_args(&job, &data, &out, Some(as_of))).ok();
    let inputs = Some(data.as_path());
    assert_agrees(python, &job, &data.join("state"), inputs, &out, "the first run");
    // The rejects are a real part of the comparison: the mutations must have produced some of
    // every table's kinds.
    let (_, rejects) = csv_table(&out.join("rejects.csv"));
    for table in ["services", "wallets", "subscriptions", "subscription_items", "usage", "credits", "external_events"] {
        assert!(rejects.iter().any(|r| r[0] == table), "no {table} rejects to compare");
    }

    // The same run written as Parquet, then the next run from each output: the output is the
    // state (deferred tables, the manifest's as_of), no new inputs. Chained from the Parquet
    // state, billrun reads its own Parquet; the reference reads the CSV twin.
    let out_pq = t.path("out-pq");
    billrun(run_args(&t.job(&job, "parquet"), &data, &out_pq, Some(as_of))).ok();
    for (state, next) in [(&out, t.path("next")), (&out_pq, t.path("next-pq"))] {
        next_run(&job, state, &next);
        assert_agrees(python, &job, &out, None, &next, &format!("the run chained from {}", state.display()));
    }

    // The next run again, with the same input files delivered a second time: the deferred
    // rows meet their own duplicates, and rated usage comes back late.
    let again = t.path("again");
    let mut args = run_args(&job, &data, &again, None);
    let state_at = args.iter().position(|a| a == "--state").unwrap() + 1;
    args[state_at] = s(&out).to_string(); // the first run's output
    billrun(args).ok();
    assert_agrees(python, &job, &out, inputs, &again, "the inputs delivered again");
    let (_, rejects) = csv_table(&again.join("rejects.csv"));
    assert!(rejects.iter().any(|r| r[0] == "usage" && r[4] == "DUPLICATE_KEY"), "no redelivered duplicates");
}

/// The reference's run of `state` (plus `inputs`' usage, credits and events CSVs, if given)
/// at the as_of of billrun's output `out` agrees with `out`, table by table.
#[track_caller]
fn assert_agrees(python: &str, job: &Path, state: &Path, inputs: Option<&Path>, out: &Path, what: &str) {
    let as_of = manifest(out)["as_of"].as_str().unwrap().to_string();
    // A path that does not exist reads as no rows.
    let input = |name: &str| inputs.map_or_else(|| "-".to_string(), |d| s(&d.join(name)).to_string());
    let (usage, credits, events) = (input("usage.csv"), input("credits.csv"), input("events.csv"));
    let report =
        py(python, &["tests/reference/reference.py", s(job), s(state), &usage, &credits, &events, &as_of, s(out)]);
    assert!(report.contains("TOTAL MISMATCHES 0"), "{what}:\n{report}");
}

#[test]
fn differential_mid_month() {
    differential(11, "2026-11-22", 700);
}

#[test]
fn differential_month_end() {
    differential(12, "2026-01-31", 700);
}

#[test]
fn differential_leap_day() {
    differential(13, "2024-02-29", 700);
}

#[test]
fn differential_year_end() {
    differential(14, "2026-12-31", 700);
}

#[test]
fn differential_pricing_mid_month() {
    differential_with(21, "2026-11-22", 700, true);
}

#[test]
fn differential_pricing_leap_day() {
    differential_with(13, "2024-02-29", 600, true);
}

#[test]
fn differential_pricing_year_end() {
    differential_with(23, "2025-12-31", 600, true);
}

/// The reference's own checks of SPEC §9: every §9.2 figure, the inclusive-tax example, two
/// 10 % discounts, the pricing-period grid, and a month of daily runs against one monthly run.
#[test]
fn reference_selftest() {
    let Some(python) = python() else { return };
    assert!(py(python, &["tests/reference/reference.py", "--selftest"]).contains("selftest: ok"));
}
