//! SPEC §10.1's contract on whole runs: a dataset run whole and as N shards (split by
//! `billrun shard`, each shard run by its own `billrun run --shard I/N` process, then
//! `billrun merge`) gives the same tables row for row (after sorting; `rejects` without the
//! `file` and `row` that name the shard's own files; the reference tables, which every
//! shard holds, once; their rejects, which shard 0 alone reports, as they are), the merged totals equal the whole run's, and the next
//! night run from the merged run, shard by shard, equals the next night run whole.

mod util;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use util::*;

/// Tables every shard holds in full (SPEC §10.1: they go to every shard).
const EVERY_SHARD: [&str; 3] = ["services", "price_tiers", "tax_rates"];

/// The rows of every table of a CSV run directory, sorted; `rejects` without file and row.
fn tables(dir: &Path) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "csv") {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let (h, mut rows) = csv_table(&p);
            if name == "rejects" {
                let (f, r) = (h.iter().position(|c| c == "file").unwrap(), h.iter().position(|c| c == "row").unwrap());
                for row in &mut rows {
                    row[f].clear();
                    row[r].clear();
                }
            }
            rows.sort();
            out.insert(name, rows);
        }
    }
    out
}

/// The union of the shards' tables, the reference tables once.
fn union(dirs: &[PathBuf]) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut out: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for d in dirs {
        for (name, rows) in tables(d) {
            let e = out.entry(name.clone()).or_default();
            if EVERY_SHARD.contains(&name.as_str()) {
                *e = rows;
            } else {
                e.extend(rows);
            }
        }
    }
    for rows in out.values_mut() {
        rows.sort();
    }
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Input `f` (`usage`, `credits`, `events`) of a generated dataset, in its format.
fn input(data: &Path, f: &str) -> PathBuf {
    let ext = if data.join("usage.csv").exists() { "csv" } else { "parquet" };
    data.join(format!("{f}.{ext}"))
}

/// `data` (a generated dataset, either format) run whole into `out`, as of 2026-11-22.
fn whole_run(job: &Path, data: &Path, out: &Path) {
    billrun([
        "run",
        "--job",
        s(job),
        "--state",
        s(&data.join("state")),
        "--usage",
        s(&input(data, "usage")),
        "--credits",
        s(&input(data, "credits")),
        "--events",
        s(&input(data, "events")),
        "--as-of",
        "2026-11-22",
        "--output",
        s(out),
    ])
    .ok();
}

/// Split `data` (a generated dataset, either format) into `n` shards and run each in its own process; the
/// shard outputs, and their merge.
fn sharded(t: &Scratch, job: &Path, data: &Path, n: u32, tag: &str) -> (Vec<PathBuf>, PathBuf) {
    let split = t.path(&format!("split-{tag}"));
    let input = |f: &str| input(data, f);
    billrun([
        "shard",
        "--shard-count",
        &n.to_string(),
        "--out",
        s(&split),
        "--state",
        s(&data.join("state")),
        "--usage",
        s(&input("usage")),
        "--credits",
        s(&input("credits")),
        "--events",
        s(&input("events")),
    ])
    .ok();
    let mut outs = Vec::new();
    for i in 0..n {
        let sh = split.join(format!("shard={i}"));
        let out = t.path(&format!("out-{tag}-{i}"));
        billrun([
            "run",
            "--job",
            s(job),
            "--shard",
            &format!("{i}/{n}"),
            "--state",
            s(&sh.join("state")),
            "--usage",
            s(&sh.join("usage")),
            "--credits",
            s(&sh.join("credits")),
            "--events",
            s(&sh.join("events")),
            "--as-of",
            "2026-11-22",
            "--output",
            s(&out),
        ])
        .ok();
        outs.push(out);
    }
    let merged = t.path(&format!("merged-{tag}"));
    let mut args = vec!["merge".to_string(), "--out".into(), s(&merged).into()];
    args.extend(outs.iter().map(|o| s(o).to_string()));
    billrun(&args).ok();
    billrun(["verify", s(&merged)]).ok();
    (outs, merged)
}

/// The manifest's totals without the rounding residuals (the merge sums each shard's,
/// shown to 12 decimals), decimals as numbers.
fn totals(m: &serde_json::Value) -> BTreeMap<String, String> {
    fn walk(v: &serde_json::Value, path: String, out: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    if !k.ends_with("residual") {
                        walk(x, format!("{path}.{k}"), out);
                    }
                }
            }
            serde_json::Value::String(t) => {
                out.insert(path, t.parse::<rust_decimal::Decimal>().map_or(t.clone(), |d| d.normalize().to_string()));
            }
            other => {
                out.insert(path, other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&m["totals"], String::new(), &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, ..ProptestConfig::default() })]

    #[test]
    fn shards_union_equals_the_whole_run(seed in 0u64..1_000_000, pricing in any::<bool>()) {
        let t = Scratch::new();
        let data = t.path("data");
        let mut gen = vec![
            "generate".to_string(), "--accounts".into(), "400".into(), "--seed".into(), seed.to_string(),
            "--out".into(), s(&data).into(),
        ];
        if pricing {
            gen.push("--pricing".into());
        }
        billrun(&gen).ok();
        let job = t.job(&data.join("job.toml"), "csv");
        let text = std::fs::read_to_string(&job).unwrap().replace("max_reject_ratio = 0.05", "max_reject_ratio = 1.0");
        std::fs::write(&job, text).unwrap();
        let whole = t.path("whole");
        whole_run(&job, &data, &whole);
        let want = tables(&whole);
        for n in [1u32, 2, 3, 7] {
            let (outs, merged) = sharded(&t, &job, &data, n, &n.to_string());
            let got = union(&outs);
            prop_assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
            for (name, rows) in &want {
                prop_assert!(&got[name] == rows, "N = {}: table {} differs ({} rows whole, {} sharded)", n, name, rows.len(), got[name].len());
            }
            prop_assert_eq!(totals(&manifest(&merged)), totals(&manifest(&whole)), "N = {}: merged totals", n);
        }

        // The next night, from the merged run, shard by shard, equals the next night whole.
        let next_whole = t.path("next-whole");
        next_run(&job, &whole, &next_whole);
        let merged = t.path("merged-3");
        let mut outs = Vec::new();
        for i in 0..3 {
            let out = t.path(&format!("next-{i}"));
            billrun(["run", "--job", s(&job), "--shard", &format!("{i}/3"), "--state", s(&merged), "--output", s(&out)]).ok();
            outs.push(out);
        }
        let got = union(&outs);
        for (name, rows) in &tables(&next_whole) {
            prop_assert!(&got[name] == rows, "next night: table {} differs", name);
        }

        // A third night, from the second night's merge, against the third night whole.
        let merged2 = t.path("merged-night2");
        let mut args = vec!["merge".to_string(), "--out".into(), s(&merged2).into()];
        args.extend(outs.iter().map(|o| s(o).to_string()));
        billrun(&args).ok();
        let third_whole = t.path("third-whole");
        next_run(&job, &next_whole, &third_whole);
        let mut outs = Vec::new();
        for i in 0..3 {
            let out = t.path(&format!("third-{i}"));
            billrun(["run", "--job", s(&job), "--shard", &format!("{i}/3"), "--state", s(&merged2), "--output", s(&out)]).ok();
            outs.push(out);
        }
        let got = union(&outs);
        for (name, rows) in &tables(&third_whole) {
            prop_assert!(&got[name] == rows, "third night: table {} differs", name);
        }
    }
}

/// Bad rows of the reference tables, which every shard reads, are reported by shard 0 alone
/// and counted once: the union of the rejects and the merged counts are the whole run's.
#[test]
fn reference_table_rejects_are_reported_once() {
    let t = Scratch::new();
    let data = t.path("data");
    billrun(["generate", "--accounts", "120", "--seed", "4", "--pricing", "--format", "csv", "--out", s(&data)]).ok();
    let services = data.join("state/services.csv");
    let mut text = std::fs::read_to_string(&services).unwrap();
    let header: Vec<String> = text.lines().next().unwrap().split(',').map(str::to_string).collect();
    let first = text.lines().nth(1).unwrap().to_string();
    // A service whose price is no number, and a repeated service_id.
    let mut bad: Vec<String> = first.split(',').map(str::to_string).collect();
    bad[0] = "BADSVC".into();
    bad[header.iter().position(|h| h == "price").unwrap()] = "abc".into();
    text.push_str(&format!("{}\n{first}\n", bad.join(",")));
    std::fs::write(&services, &text).unwrap();
    // A tier of a service priced per unit: INVALID_TIERS on that tier row.
    let model = header.iter().position(|h| h == "pricing_model").unwrap();
    let per_unit =
        text.lines().skip(1).map(|l| l.split(',').collect::<Vec<_>>()).find(|c| c[model].is_empty()).unwrap()[0]
            .to_string();
    let tiers = data.join("state/price_tiers.csv");
    let mut text = std::fs::read_to_string(&tiers).unwrap();
    text.push_str(&format!("{per_unit},1,,1.00,\n"));
    std::fs::write(&tiers, text).unwrap();

    let job = t.job(&data.join("job.toml"), "csv");
    let whole = t.path("whole");
    whole_run(&job, &data, &whole);
    let want = tables(&whole);
    let of = |table: &str| want["rejects"].iter().filter(|r| r[0] == table).count();
    assert_eq!((of("services"), of("price_tiers")), (2, 1), "{:?}", want["rejects"]);
    let (outs, merged) = sharded(&t, &job, &data, 3, "ref");
    assert_eq!(union(&outs)["rejects"], want["rejects"]);
    assert_eq!(manifest(&merged)["counts"], manifest(&whole)["counts"]);
}

/// `--shard auto/N` takes the index from a Kubernetes Indexed Job's, an AWS Batch array
/// job's or a Slurm array task's variable: the same output as `--shard I/N`.
#[test]
fn shard_auto_reads_the_schedulers_index() {
    let t = Scratch::new();
    let data = t.path("data");
    billrun(["generate", "--accounts", "200", "--seed", "6", "--out", s(&data)]).ok();
    let job = t.job(&data.join("job.toml"), "csv");
    let (outs, _) = sharded(&t, &job, &data, 3, "auto");
    let sh = t.path("split-auto").join("shard=2");
    for var in ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "SLURM_ARRAY_TASK_ID"] {
        let out = t.path(&format!("auto-{var}"));
        let o = bin()
            .args(["run", "--job", s(&job), "--shard", "auto/3", "--state", s(&sh.join("state")), "--usage"])
            .arg(sh.join("usage"))
            .args(["--credits", s(&sh.join("credits")), "--events", s(&sh.join("events")), "--as-of", "2026-11-22"])
            .args(["--output", s(&out)])
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env(var, "2")
            .output()
            .unwrap();
        assert!(o.status.success(), "{var}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(tables(&out), tables(&outs[2]), "{var}");
    }
}

/// A row that does not belong to the shard stops the shard run (exit 2, naming file and row).
#[test]
fn a_misrouted_row_stops_the_shard_run() {
    let t = Scratch::new();
    let data = t.path("data");
    billrun(["generate", "--accounts", "60", "--seed", "3", "--format", "csv", "--out", s(&data)]).ok();
    // The whole state given as shard 0 of 2: some wallets belong to shard 1.
    let out = t.path("out");
    let r = billrun([
        "run",
        "--job",
        s(&data.join("job.toml")),
        "--shard",
        "0/2",
        "--state",
        s(&data.join("state")),
        "--as-of",
        "2026-11-22",
        "--output",
        s(&out),
    ])
    .code_is(2);
    assert!(
        r.stderr().contains("wallets.csv") && r.stderr().contains("row ") && r.stderr().contains("shard 1"),
        "{}",
        r.stderr()
    );
    assert!(!out.exists());
}

/// A shard killed mid-run leaves nothing a reader takes for its output; re-running only that
/// shard and merging gives what an undisturbed sharded run gives.
#[test]
fn a_killed_shard_rerun_alone_merges_as_if_undisturbed() {
    let t = Scratch::new();
    let data = t.path("data");
    billrun(["generate", "--accounts", "3000", "--seed", "12", "--pricing", "--out", s(&data)]).ok();
    let job = t.job(&data.join("job.toml"), "csv");
    let (outs, merged) = sharded(&t, &job, &data, 2, "calm");
    let split = t.path("split-calm");
    // Shard 1 again into a fresh output, killed a moment after it starts.
    let sh = split.join("shard=1");
    let out = t.path("killed-1");
    let run_args = |out: &Path| -> Vec<String> {
        [
            "run",
            "--job",
            s(&job),
            "--shard",
            "1/2",
            "--state",
            s(&sh.join("state")),
            "--usage",
            s(&sh.join("usage")),
            "--credits",
            s(&sh.join("credits")),
            "--events",
            s(&sh.join("events")),
            "--as-of",
            "2026-11-22",
            "--output",
            s(out),
            "--force",
        ]
        .map(String::from)
        .to_vec()
    };
    let mut child = bin()
        .args(run_args(&out))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    let _ = child.kill();
    let _ = child.wait();
    // Whatever it left is no output: either nothing, or a whole published run.
    assert!(!out.exists() || out.join("run_manifest.json").exists());
    billrun(run_args(&out)).ok();
    let again = t.path("merged-again");
    billrun(["merge", "--out", s(&again), s(&outs[0]), s(&out)]).ok();
    assert_eq!(
        union(&[again.join("shard=0"), again.join("shard=1")]),
        union(&[merged.join("shard=0"), merged.join("shard=1")])
    );
    assert_eq!(totals(&manifest(&again)), totals(&manifest(&merged)));
    // The finance report reads a merged run (every shard's files).
    if cfg!(feature = "report") {
        let r = billrun(["report", s(&again)]).ok().stdout();
        assert!(r.contains("Reconciliation per currency") && !r.contains("DIFFER"), "{r}");
    }
}

/// A merged run is the state of shard runs only: without `--shard` it is refused (exit 2).
#[test]
fn a_merged_run_is_the_state_of_shard_runs_only() {
    let t = Scratch::new();
    let data = t.path("data");
    billrun(["generate", "--accounts", "50", "--seed", "2", "--out", s(&data)]).ok();
    let job = t.job(&data.join("job.toml"), "csv");
    let (_, merged) = sharded(&t, &job, &data, 2, "m");
    let out = t.path("next");
    let r = billrun(["run", "--job", s(&job), "--state", s(&merged), "--output", s(&out)]).code_is(2);
    assert!(r.stderr().contains("merged sharded run") && r.stderr().contains("--shard"), "{}", r.stderr());
    assert!(!out.exists());
}

/// What a sharded night must refuse: a shard's output as the state of another shard or of
/// another N (accounts would be billed twice or not at all), new inputs split without the
/// state that routes them, a manifest naming an impossible shard; and what it must keep:
/// two inputs of one name split into one directory both land, each in its own part.
#[test]
fn sharded_nights_refuse_what_would_lose_or_double_rows() {
    let t = Scratch::new();
    let data = t.path("data");
    billrun(["generate", "--accounts", "80", "--seed", "9", "--format", "csv", "--out", s(&data)]).ok();
    let job = t.job(&data.join("job.toml"), "csv");
    let (outs, merged) = sharded(&t, &job, &data, 2, "csv");
    // Shard 0 of a 2-shard merge as the state of shard 0 of 4, or of a whole run: exit 2.
    for (shard, what) in [(Some("0/4"), "another N"), (None, "a whole run")] {
        let out = t.path(&format!("bad-{what}"));
        let mut a = vec!["run".to_string(), "--job".into(), s(&job).into(), "--state".into(), s(&outs[0]).into()];
        a.extend(["--output".to_string(), s(&out).into()]);
        if let Some(sh) = shard {
            a.extend(["--shard".to_string(), sh.into()]);
        }
        let r = billrun(&a).code_is(2);
        assert!(r.stderr().contains("shard 0 of 2"), "{what}: {}", r.stderr());
        assert!(!out.exists());
    }
    // A merged manifest whose counts are not the shards' sum does not verify.
    let tampered = t.path("tampered");
    copy_dir(&merged, &tampered);
    let text = std::fs::read_to_string(tampered.join("run_manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = m["counts"]["transactions"].as_u64().unwrap();
    m["counts"]["transactions"] = serde_json::json!(n + 1);
    std::fs::write(tampered.join("run_manifest.json"), serde_json::to_string_pretty(&m).unwrap()).unwrap();
    billrun(["verify", s(&merged)]).ok();
    let r = billrun(["verify", s(&tampered)]);
    assert_ne!(r.code(), 0, "a tampered merged manifest verified");
    // Usage split without a state: refused.
    let r = billrun(["shard", "--shard-count", "2", "--out", s(&t.path("x")), "--usage", s(&data.join("usage.csv"))])
        .code_is(2);
    assert!(r.stderr().contains("--state is required"), "{}", r.stderr());
    // A shard manifest naming shard 5 of 2: refused, not a panic.
    let bad = t.path("bad-shard");
    copy_dir(&outs[1], &bad);
    let m = std::fs::read_to_string(bad.join("run_manifest.json")).unwrap().replace("\"index\": 1", "\"index\": 5");
    std::fs::write(bad.join("run_manifest.json"), m).unwrap();
    let r = billrun(["merge", "--out", s(&t.path("m2")), s(&outs[0]), s(&bad)]).code_is(2);
    assert!(r.stderr().contains("shard 5 of 2"), "{}", r.stderr());
    // Two usage files of one name, from two folders, split into one directory: both kept.
    let (a, b) = (t.path("a"), t.path("b"));
    for (d, seed) in [(&a, "1"), (&b, "2")] {
        billrun(["generate", "--accounts", "30", "--seed", seed, "--format", "csv", "--out", s(d)]).ok();
    }
    let out = t.path("two");
    for d in [&a, &b] {
        billrun([
            "shard",
            "--shard-count",
            "2",
            "--out",
            s(&out),
            "--state",
            s(&a.join("state")),
            "--usage",
            s(&d.join("usage.csv")),
        ])
        .ok();
    }
    let parts = std::fs::read_dir(out.join("shard=0/usage")).unwrap().count();
    assert_eq!(parts, 2, "one part per input file");
}

/// The nightly flow of docs/SCALE-OUT.md and deploy/: the next night's new inputs are split
/// with the previous night's merged run as the routing state (not split again), each shard
/// runs on its `shard=I/` of that merged run, and the union equals the next night run whole.
#[test]
fn the_next_nights_inputs_route_through_the_merged_run() {
    let t = Scratch::new();
    let data = t.path("data");
    billrun(["generate", "--accounts", "300", "--seed", "21", "--pricing", "--out", s(&data)]).ok();
    let job = t.job(&data.join("job.toml"), "csv");
    let text = std::fs::read_to_string(&job).unwrap().replace("max_reject_ratio = 0.05", "max_reject_ratio = 1.0");
    std::fs::write(&job, text).unwrap();
    let (_, merged) = sharded(&t, &job, &data, 3, "n1");
    let whole1 = t.path("whole1");
    whole_run(&job, &data, &whole1);
    // Night 2's new usage and credits (another generated night over the same account ids).
    let night2 = t.path("night2");
    billrun(["generate", "--accounts", "300", "--seed", "22", "--as-of", "2026-11-23", "--out", s(&night2)]).ok();
    let split = t.path("split-n2");
    billrun([
        "shard",
        "--shard-count",
        "3",
        "--out",
        s(&split),
        "--state",
        s(&merged),
        "--usage",
        s(&night2.join("usage.parquet")),
        "--credits",
        s(&night2.join("credits.parquet")),
    ])
    .ok();
    assert!(!split.join("shard=0/state").exists(), "a merged state routes, it is not split again");
    let mut outs = Vec::new();
    for i in 0..3 {
        let sh = split.join(format!("shard={i}"));
        let out = t.path(&format!("n2-{i}"));
        billrun([
            "run",
            "--job",
            s(&job),
            "--shard",
            &format!("{i}/3"),
            "--state",
            s(&merged),
            "--usage",
            s(&sh.join("usage")),
            "--credits",
            s(&sh.join("credits")),
            "--output",
            s(&out),
        ])
        .ok();
        outs.push(out);
    }
    let whole2 = t.path("whole2");
    billrun([
        "run",
        "--job",
        s(&job),
        "--state",
        s(&whole1),
        "--usage",
        s(&night2.join("usage.parquet")),
        "--credits",
        s(&night2.join("credits.parquet")),
        "--output",
        s(&whole2),
    ])
    .ok();
    let got = union(&outs);
    for (name, rows) in &tables(&whole2) {
        assert!(&got[name] == rows, "night 2: table {name} differs");
    }
}
