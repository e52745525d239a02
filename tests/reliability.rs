//! Reliability: arbitrary and corrupted inputs never crash a run or publish a partial or
//! inconsistent result; a run killed at any point leaves either nothing or a complete,
//! verified run, and a re-run gives the bytes of an uninterrupted run. See
//! docs/RELIABILITY.md for the table of faults tried.

mod util;
use billrun::generate::generate_to;
use billrun::job::OutputFormat;
use chrono::NaiveDate;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;
use util::*;

fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
}

fn data_args(data: &Path, out: &Path, ext: &str) -> Vec<String> {
    let p = |s: &str| data.join(s).display().to_string();
    vec![
        "run".into(),
        "--job".into(),
        p("job.toml"),
        "--state".into(),
        p("state"),
        "--usage".into(),
        p(&format!("usage.{ext}")),
        "--credits".into(),
        p(&format!("credits.{ext}")),
        "--events".into(),
        p(&format!("events.{ext}")),
        "--as-of".into(),
        "2026-11-22".into(),
        "--output".into(),
        out.display().to_string(),
        "--force".into(),
    ]
}

/// Exit 0 (and then the output verifies), 2 or 3; never a panic, a signal or exit 1.
#[track_caller]
fn assert_clean_outcome(r: &Run, out: &Path) {
    match r.code() {
        0 => {
            billrun(["verify", out.to_str().unwrap()]).ok();
        }
        2 | 3 => assert!(!out.exists(), "failed run left output behind"),
        c => panic!("exit {c}\nstderr:\n{}", r.stderr()),
    }
}

fn lenient_job(data: &Path) {
    let job = std::fs::read_to_string(data.join("job.toml"))
        .unwrap()
        .replace("max_reject_ratio = 0.05", "max_reject_ratio = 1.0");
    std::fs::write(data.join("job.toml"), job).unwrap();
}

proptest! {
    // 48 cases per CI run; PROPTEST_CASES=N asks for more in a longer local session.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    /// Arbitrary bytes, and CSV-shaped garbage, as the usage and wallets tables.
    #[test]
    fn arbitrary_csv_never_crashes(
        raw in proptest::collection::vec(any::<u8>(), 0..400),
        fields in proptest::collection::vec(proptest::collection::vec("[ -~]{0,12}|-?[0-9]{1,40}(\\.[0-9]{0,30})?|2026-1[0-2]-[0-3][0-9]T[0-2][0-9]:00:00Z", 0..7), 0..12),
        target in 0usize..2,
    ) {
        let s = Scratch::new();
        let data = s.path("d");
        generate_to(&data, 20, 3, as_of(), OutputFormat::Csv).unwrap();
        lenient_job(&data);
        let file = if target == 0 { data.join("usage.csv") } else { data.join("state/wallets.csv") };
        let header = std::fs::read_to_string(&file).unwrap().lines().next().unwrap().to_string();
        let mut text = if raw.len() % 2 == 0 { header + "\n" } else { String::new() };
        text.push_str(&String::from_utf8_lossy(&raw));
        text.push('\n');
        for row in &fields {
            text.push_str(&row.join(","));
            text.push('\n');
        }
        std::fs::write(&file, text).unwrap();
        let out = s.path("out");
        let r = billrun(data_args(&data, &out, "csv"));
        assert_clean_outcome(&r, &out);
    }

    /// Valid Parquet files with bytes flipped or cut off.
    #[test]
    fn mutated_parquet_never_crashes(
        which in 0usize..4,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let s = Scratch::new();
        let data = s.path("d");
        generate_to(&data, 40, 5, as_of(), OutputFormat::Parquet).unwrap();
        lenient_job(&data);
        let file: PathBuf = match which {
            0 => data.join("usage.parquet"),
            1 => data.join("state/wallets.parquet"),
            2 => data.join("state/subscription_items.parquet"),
            _ => data.join("events.parquet"),
        };
        let mut bytes = std::fs::read(&file).unwrap();
        for (i, b) in &flips {
            let k = i.index(bytes.len());
            bytes[k] ^= b | 1;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        std::fs::write(&file, bytes).unwrap();
        let out = s.path("out");
        let r = billrun(data_args(&data, &out, "parquet"));
        assert_clean_outcome(&r, &out);
    }
}

/// SIGKILL at spread-out moments of a run: afterwards the output either does not exist or
/// is a complete run that verifies and equals the uninterrupted one; a re-run always does.
#[test]
fn killed_runs_leave_nothing_or_everything() {
    let s = Scratch::new();
    let data = s.path("d");
    generate_to(&data, 20_000, 11, as_of(), OutputFormat::Parquet).unwrap();
    let reference = s.path("reference");
    let t = Instant::now();
    billrun(data_args(&data, &reference, "parquet")).ok();
    let full = t.elapsed();
    let expected = dir_bytes(&reference);
    let out = s.path("out");
    for k in 0..10u32 {
        let wait = full.mul_f64(k as f64 / 9.0 * 1.1);
        let mut child = bin()
            .args(data_args(&data, &out, "parquet"))
            .arg("--quiet")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(wait);
        let _ = child.kill();
        let _ = child.wait();
        if out.exists() {
            billrun(["verify", out.to_str().unwrap()]).ok();
            assert!(dir_bytes(&out) == expected, "kill {k}: a published output differs from the uninterrupted run");
        }
        billrun(data_args(&data, &out, "parquet")).ok();
        assert!(dir_bytes(&out) == expected, "kill {k}: re-run differs from the uninterrupted run");
        std::fs::remove_dir_all(&out).unwrap();
    }
    // Nothing a killed run left behind survives the next run.
    let leftovers: Vec<String> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.contains(".old-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn unwritable_output_is_a_clear_error_and_leaves_nothing() {
    let s = Scratch::new();
    let blocker = s.path("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let out = blocker.join("out");
    let zx = repo().join("sample-data/company-zx");
    let r = billrun(run_args(&repo().join("jobs/company-zx-daily.toml"), &zx, &out, Some("2026-11-22")));
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert!(r.stderr().contains("not-a-dir"), "{}", r.stderr());
    assert!(!out.exists());
}

#[test]
fn a_second_run_of_the_same_output_is_refused_while_the_first_holds_the_lock() {
    let s = Scratch::new();
    let out = s.path("out");
    let lock = s.path(".out.lock");
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock).unwrap();
    f.lock().unwrap();
    let zx = repo().join("sample-data/company-zx");
    let r = billrun(run_args(&repo().join("jobs/company-zx-daily.toml"), &zx, &out, Some("2026-11-22")));
    assert_eq!(r.code(), 4, "{}", r.stderr());
    assert!(r.stderr().contains("another billrun"), "{}", r.stderr());
    f.unlock().unwrap();
    billrun(run_args(&repo().join("jobs/company-zx-daily.toml"), &zx, &out, Some("2026-11-22"))).ok();
}

/// Hostile values: each is a reject with a reason, never a crash or a wrong figure.
#[test]
fn hostile_values_are_rejected_or_handled() {
    let s = Scratch::new();
    let d = s.path("h");
    std::fs::create_dir_all(d.join("state/subscription_items")).unwrap();
    std::fs::write(
        d.join("state/services.csv"),
        "service_id,billing_method,price,currency,rate_period,advance_period,unit_size\n\
         GOLD,PRE_RATE,30.00,EUR,1 month,7 days,\n\
         NEG,PRE_RATE,-1.00,EUR,1 month,,\n\
         ZERO,PRE_RATE,1.00,EUR,0 months,,\n\
         LONG,PRE_RATE,1200.00,EUR,10000 months,10000 months,\n\
         TINY,POST_RATE,0.000000000000000001,EUR,,,\n\
         HUGE,POST_RATE,99999999999999999999999999999,EUR,,,\n\
         DEEP,POST_RATE,0.1234567890123456789012345678901,EUR,,,\n\
         ,ONE_TIME,1.00,EUR,,,\n",
    )
    .unwrap();
    std::fs::write(
        d.join("state/wallets.csv"),
        "wallet_id,account_id,currency,balance,updated_at\nW-ü,A-日本,EUR,10000.00,\nW-9999,A-9999,EUR,5.00,9999-12-31T23:59:59Z\n",
    )
    .unwrap();
    std::fs::write(
        d.join("state/subscriptions.csv"),
        "subscription_id,account_id,source,status,expires_at\nS-日本,A-日本,INTERNAL,ACTIVE,\nS-9999,A-9999,INTERNAL,ACTIVE,\n",
    )
    .unwrap();
    // Items split over part files, with a duplicate key across them.
    std::fs::write(
        d.join("state/subscription_items/part-0001.csv"),
        "subscription_id,item_no,service_id,quantity,custom_price,start_date,end_date,billed_through\n\
         S-日本,1,GOLD,,,2026-11-01,,2026-11-22\n\
         S-日本,2,LONG,,,2026-11-22,,\n\
         S-日本,3,TINY,,,2026-11-01,,2026-11-21\n",
    )
    .unwrap();
    std::fs::write(
        d.join("state/subscription_items/part-0002.csv"),
        "subscription_id,item_no,service_id,quantity,custom_price,start_date,end_date,billed_through\n\
         S-日本,1,GOLD,,,2026-11-01,,2026-11-22\n\
         S-9999,1,GOLD,,,9999-12-01,,9999-12-31\n",
    )
    .unwrap();
    std::fs::write(
        d.join("usage.csv"),
        "usage_id,subscription_id,service_id,event_time,quantity\n\
         U1,S-日本,TINY,2026-11-21T10:00:00Z,1000000000\n\
         U2,S-日本,TINY,2026-11-21T10:00:00Z,0.0000000000000000001\n",
    )
    .unwrap();
    let job = s.path("job.toml");
    std::fs::write(&job, "name = \"hostile\"\nrecurrence = \"1 day\"\noutput_format = \"csv\"\nmax_reject_ratio = 1.0\n[steps]\nwallet_estimation = \"all\"\n").unwrap();
    let out = s.path("out");
    billrun(run_args(&job, &d, &out, Some("2026-11-22"))).ok();
    billrun(["verify", out.to_str().unwrap()]).ok();
    let rej = out.join("rejects.csv");
    let reason = |k: &str| csv_lookup(&rej, "key", k, "reason");
    assert_eq!(reason("NEG"), ["INVALID_VALUE"]);
    assert_eq!(reason("ZERO"), ["INVALID_VALUE"]);
    assert_eq!(reason("HUGE"), ["INVALID_VALUE"]);
    assert_eq!(reason("DEEP"), ["INVALID_VALUE"]);
    assert_eq!(reason(""), ["MISSING_REQUIRED"]);
    assert_eq!(reason("S-日本/1"), ["DUPLICATE_KEY"]);
    assert_eq!(reason("U2"), ["INVALID_VALUE"]);
    let tx = out.join("wallet_transactions.csv");
    // 10000-month period billed from 2026-11-22 to as_of + 10000 months: exactly one period.
    let amounts = csv_lookup(&tx, "wallet_id", "W-ü", "amount");
    assert!(amounts.contains(&"1200.00".to_string()), "{amounts:?}");
    // 1e9 units at 1e-18 rounds to 0.00: no line, but the residual counts.
    assert!(!csv_lookup(&tx, "service_id", "TINY", "amount").iter().any(|a| a != "0.00"));
    // Year 9999: billed through the end of the calendar without overflow.
    assert_eq!(csv_lookup(&out.join("wallets.csv"), "wallet_id", "W-9999", "balance"), ["5.00"]);
}

/// A full disk: the output directory on a 16 KiB tmpfs. Needs root and mount(2); skipped
/// (with a note) where the sandbox does not allow it.
#[test]
fn disk_full_is_a_clear_error_and_leaves_nothing() {
    let s = Scratch::new();
    let mnt = s.path("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs", mnt.to_str().unwrap()])
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    let out = mnt.join("out");
    let zx = repo().join("sample-data/company-zx");
    let r = billrun(run_args(&repo().join("jobs/company-zx-daily.toml"), &zx, &out, Some("2026-11-22")));
    let leftovers: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert!(r.stderr().contains("No space left on device"), "{}", r.stderr());
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}
