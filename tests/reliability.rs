//! Reliability: arbitrary and corrupted inputs never crash a run or publish a partial or
//! inconsistent result; a run killed at any point leaves either nothing or a complete,
//! verified run, and a re-run gives the bytes of an uninterrupted run. See
//! docs/RELIABILITY.md for the table of faults tried.

mod util;
use billrun::domain::job::OutputFormat;
use billrun::tools::generate::generate_to;
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
        generate_to(&data, 20, 3, as_of(), OutputFormat::Csv, false).unwrap();
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
        generate_to(&data, 40, 5, as_of(), OutputFormat::Parquet, false).unwrap();
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
    generate_to(&data, 20_000, 11, as_of(), OutputFormat::Parquet, false).unwrap();
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
    // 1e9 units at 1e-18 is 1e-9, rounded to 0.00: no line is written, and the exact amount
    // is the currency's whole rounding residual (the other lines are exact to the cent).
    assert!(csv_lookup(&tx, "service_id", "TINY", "amount").is_empty());
    assert_eq!(manifest(&out)["totals"]["EUR"]["rounding_residual"], "0.000000001");
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
        // CI sets BILLRUN_REQUIRE_MOUNT=1 where it runs as root: there the test must run.
        assert!(std::env::var_os("BILLRUN_REQUIRE_MOUNT").is_none(), "cannot mount a tmpfs at {}", mnt.display());
        eprintln!("skipped: cannot mount a tmpfs here (set BILLRUN_REQUIRE_MOUNT=1 to make this a failure)");
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

/// Every file and symlink under `dir` with its bytes (a symlink as its target), sorted.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_symlink() {
                v.push((p.clone(), std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes()));
            } else if md.is_dir() {
                v.push((p.clone(), Vec::new()));
                stack.push(p);
            } else {
                v.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    v.sort();
    v
}

/// Issue 34: an output that is an input, contains one or lies inside one is refused (exit 2,
/// naming both paths) with or without `--force`, before anything is read or written: after
/// each refusal every file under the scratch directory is byte-identical, and no lock or
/// temporary directory has appeared.
#[test]
fn an_output_overlapping_an_input_is_refused_and_every_input_is_untouched() {
    let s = Scratch::new();
    let d = s.path("s");
    copy_dir(&repo().join("sample-data/company-zx"), &d);
    std::fs::copy(repo().join("jobs/company-zx-daily.toml"), d.join("job.toml")).unwrap();
    // Usage as a directory of part files, and a symlink to the state.
    std::fs::create_dir(d.join("usage")).unwrap();
    std::fs::rename(d.join("usage.csv"), d.join("usage/part-0001.csv")).unwrap();
    std::os::unix::fs::symlink(d.join("state"), s.path("state-link")).unwrap();
    let args = |out: &Path, force: bool| {
        let p = |x: &str| d.join(x).display().to_string();
        let mut a = vec![
            "run".to_string(),
            "--job".into(),
            p("job.toml"),
            "--state".into(),
            p("state"),
            "--usage".into(),
            p("usage"),
            "--credits".into(),
            p("credits.csv"),
            "--as-of".into(),
            "2026-11-22".into(),
            "--output".into(),
            out.display().to_string(),
        ];
        if force {
            a.push("--force".into());
        }
        a
    };
    let before = tree(s.dir.path());
    let cases: [(PathBuf, &str, &str); 8] = [
        (d.join("state"), "is", "--state"),
        (d.clone(), "contains", "--job"),
        (d.join("state/next"), "lies inside", "--state"),
        (d.join("usage"), "is", "--usage"),
        (d.join("usage/part-0001.csv"), "lies inside", "--usage"),
        (d.join("credits.csv"), "is", "--credits"),
        (d.join("job.toml"), "is", "--job"),
        (s.path("state-link"), "is", "--state"),
    ];
    for (out, how, role) in &cases {
        for force in [false, true] {
            let r = billrun(args(out, force));
            assert_eq!(r.code(), 2, "--output {} (force {force}) was not refused: {}", out.display(), r.stderr());
            let err = r.stderr();
            assert!(err.contains(&format!("{how} the input {role}")), "{}: {err}", out.display());
            assert!(err.contains(&out.display().to_string()), "message does not name the output: {err}");
            assert_eq!(tree(s.dir.path()), before, "--output {} (force {force}) changed the files", out.display());
        }
    }
    // A state table that is a symlink into the output (a previous run's `services`): the
    // files actually read are checked too, before anything is written.
    let prev = s.path("prev");
    billrun(args(&prev, false)).ok();
    let linked = s.path("linked");
    copy_dir(&d, &linked);
    std::fs::remove_file(linked.join("state/services.csv")).unwrap();
    std::os::unix::fs::symlink(prev.join("services.parquet"), linked.join("state/services.parquet")).unwrap();
    let prev_files = tree(&prev);
    let mut a = args(&prev, true);
    let state_at = a.iter().position(|x| x == "--state").unwrap() + 1;
    a[state_at] = linked.join("state").display().to_string();
    let r = billrun(a).code_is(2);
    assert!(r.stderr().contains("contains the input file read"), "{}", r.stderr());
    assert_eq!(tree(&prev), prev_files);
    // A sibling of the inputs is a fine output; the inputs stay as they were.
    billrun(args(&s.path("out"), false)).ok();
    let after: Vec<_> = tree(s.dir.path()).into_iter().filter(|(p, _)| p.starts_with(&d)).collect();
    let inputs: Vec<_> = before.into_iter().filter(|(p, _)| p.starts_with(&d)).collect();
    assert_eq!(after, inputs);
}

/// `--force` replaces a previous billrun output (or an empty directory) and nothing else: a
/// foreign directory is refused with exit 4 naming the file that makes it foreign.
#[test]
fn force_replaces_only_a_previous_billrun_output() {
    let s = Scratch::new();
    let zx = repo().join("sample-data/company-zx");
    let job = repo().join("jobs/company-zx-daily.toml");
    let forced = |out: &Path| {
        let mut a = run_args(&job, &zx, out, Some("2026-11-22"));
        a.push("--force".into());
        billrun(a)
    };
    // A foreign directory: refused, untouched.
    let home = s.path("home");
    std::fs::create_dir_all(home.join("photos")).unwrap();
    std::fs::write(home.join("notes.txt"), "mine").unwrap();
    let before = tree(&home);
    let r = forced(&home).code_is(4);
    assert!(r.stderr().contains(&home.join("notes.txt").display().to_string()), "{}", r.stderr());
    assert_eq!(tree(&home), before);
    // Refused before the lock: not even a lock file appears beside it.
    assert!(!s.path(".home.lock").exists());
    // A file where the output directory would go: refused too.
    let file = s.path("a-file");
    std::fs::write(&file, "x").unwrap();
    forced(&file).code_is(4);
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    // An empty directory, then a previous run's output (with a stray file of its own): replaced.
    let out = s.path("out");
    std::fs::create_dir(&out).unwrap();
    forced(&out).ok();
    let first = dir_bytes(&out);
    std::fs::write(out.join("stray.txt"), "left by hand").unwrap();
    forced(&out).ok();
    assert!(!out.join("stray.txt").exists());
    assert_eq!(dir_bytes(&out), first);
    // A foreign `<output>.rejected` is not replaced either.
    let review = s.path("out.rejected");
    std::fs::create_dir(&review).unwrap();
    std::fs::write(review.join("keep.txt"), "mine").unwrap();
    let r = forced(&out).code_is(4);
    assert!(r.stderr().contains("keep.txt"), "{}", r.stderr());
    assert_eq!(dir_bytes(&out), first);
}

/// `generate --out` writes into a directory only when it is absent, empty or a previous
/// generated dataset; `report --html` never writes over its inputs or a file it did not write.
#[test]
fn generate_and_report_never_write_over_foreign_files() {
    let s = Scratch::new();
    let data = s.path("data");
    let gen = |out: &Path| billrun(["generate", "--accounts", "20", "--format", "csv", "--out", out.to_str().unwrap()]);
    gen(&data).ok();
    let first = tree(&data);
    gen(&data).ok();
    assert_eq!(tree(&data), first);
    std::fs::write(data.join("README.txt"), "mine").unwrap();
    let r = gen(&data).code_is(4);
    assert!(r.stderr().contains("README.txt"), "{}", r.stderr());
    std::fs::remove_file(data.join("README.txt")).unwrap();
    std::fs::write(data.join("state/ledger.csv"), "mine").unwrap();
    gen(&data).code_is(4);
    assert_eq!(std::fs::read(data.join("state/ledger.csv")).unwrap(), b"mine");

    if cfg!(feature = "report") {
        let out = s.path("run");
        billrun(run_args(
            &repo().join("jobs/company-zx-daily.toml"),
            &repo().join("sample-data/company-zx"),
            &out,
            Some("2026-11-22"),
        ))
        .ok();
        let html = |file: &Path| billrun(["report", out.to_str().unwrap(), "--html", file.to_str().unwrap()]);
        let run_files = tree(&out);
        for inside in [out.join("report.html"), out.join("wallets.csv"), out.clone()] {
            let r = html(&inside).code_is(2);
            assert!(r.stderr().contains("the input run directory"), "{}", r.stderr());
            assert_eq!(tree(&out), run_files);
        }
        let page = s.path("page.html");
        std::fs::write(&page, "<p>my notes</p>").unwrap();
        html(&page).code_is(4);
        assert_eq!(std::fs::read(&page).unwrap(), b"<p>my notes</p>");
        std::fs::remove_file(&page).unwrap();
        html(&page).ok();
        html(&page).ok();
    }
}
