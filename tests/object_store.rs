//! SPEC §10.2 against a real S3-compatible server started here on localhost (moto's
//! standalone server, from PyPI; never an in-process mock): a whole run with its inputs and
//! output in a bucket is the run made locally, byte for byte; a sharded run and its merge in
//! the bucket verify, and the next night runs from the merged run; a killed run's files are
//! no run (readers refuse them) and the next run replaces them; a missing bucket, an
//! unreachable endpoint and bad credentials are a clear exit 2.
//!
//! Needs `moto_server` (`BILLRUN_MOTO`, else on the PATH) and its Python (boto3) for the test's
//! own uploads. `.ci/run` installs moto in a virtual environment and sets
//! `BILLRUN_REQUIRE_S3=1`; elsewhere the tests are skipped without it.

mod util;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use util::*;

/// A moto server on a free localhost port, stopped when dropped.
struct S3 {
    child: Child,
    endpoint: String,
    python: PathBuf,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto() -> Option<PathBuf> {
    let found = std::env::var_os("BILLRUN_MOTO").map(PathBuf::from).or_else(|| {
        Command::new("sh").args(["-c", "command -v moto_server"]).output().ok().and_then(|o| {
            let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
            (!p.is_empty()).then(|| PathBuf::from(p))
        })
    });
    if found.is_none() {
        assert!(std::env::var_os("BILLRUN_REQUIRE_S3").is_none(), "moto_server is required for the S3 tests");
        eprintln!("skipped: no moto_server");
    }
    found
}

impl S3 {
    fn start() -> Option<S3> {
        S3::start_with(&[])
    }

    /// A server with extra environment (`INITIAL_NO_AUTH_ACTION_COUNT`: moto checks
    /// credentials after that many requests).
    fn start_with(env: &[(&str, &str)]) -> Option<S3> {
        let server = moto()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The server's own Python (boto3 comes with moto) drives the test's uploads.
        let python = server.parent().unwrap().join("python");
        let python = if python.exists() { python } else { PathBuf::from("python3") };
        let s3 = S3 { child, endpoint: format!("http://127.0.0.1:{port}"), python };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(s3);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("moto_server did not start");
    }

    fn util(&self, args: &[&str]) -> String {
        let out = Command::new(&self.python)
            .arg(repo().join("tests/s3/s3util.py"))
            .arg(&self.endpoint)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "s3util {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// billrun with this server's endpoint and test credentials.
    fn billrun<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> std::process::Output {
        bin()
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .output()
            .unwrap()
    }

    fn ok<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> String {
        let o = self.billrun(args);
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "billrun failed:\n{text}");
        text
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn runs_shards_and_merges_in_a_bucket() {
    let Some(s3) = S3::start() else { return };
    s3.util(&["create-bucket", "bill"]);
    let t = Scratch::new();
    let data = t.path("data");
    billrun(["generate", "--accounts", "300", "--seed", "8", "--pricing", "--out", s(&data)]).ok();
    s3.util(&["upload", "bill", "in", s(&data)]);

    // The whole run, inputs and output in the bucket, and the same run made locally.
    let job = "s3://bill/in/job.toml".to_string();
    let args = |state: &str, usage: &str, credits: &str, events: &str, out: &str| -> Vec<String> {
        [
            "run",
            "--job",
            &job,
            "--state",
            state,
            "--usage",
            usage,
            "--credits",
            credits,
            "--events",
            events,
            "--as-of",
            "2026-11-22",
            "--output",
            out,
        ]
        .map(String::from)
        .to_vec()
    };
    s3.ok(&args(
        "s3://bill/in/state",
        "s3://bill/in/usage.parquet",
        "s3://bill/in/credits.parquet",
        "s3://bill/in/events.parquet",
        "s3://bill/runs/2026-11-22",
    ));
    let local = t.path("local");
    let local_job = data.join("job.toml");
    let local_args = |state: &str, usage: &str, credits: &str, events: &str, out: &str| -> Vec<String> {
        let mut a = args(state, usage, credits, events, out);
        a[2] = s(&local_job).to_string();
        a
    };
    billrun(local_args(
        s(&data.join("state")),
        s(&data.join("usage.parquet")),
        s(&data.join("credits.parquet")),
        s(&data.join("events.parquet")),
        s(&local),
    ))
    .ok();
    let remote_manifest = s3.util(&["get", "bill", "runs/2026-11-22/run_manifest.json"]);
    let local_manifest = std::fs::read_to_string(local.join("run_manifest.json")).unwrap();
    assert_eq!(remote_manifest, local_manifest, "the run in the bucket is the local run, file for file");
    s3.ok(&["verify", "s3://bill/runs/2026-11-22"]);
    // An output prefix holding a run is refused without --force (exit 4).
    let again = s3.billrun(&args(
        "s3://bill/in/state",
        "s3://bill/in/usage.parquet",
        "s3://bill/in/credits.parquet",
        "s3://bill/in/events.parquet",
        "s3://bill/runs/2026-11-22",
    ));
    assert_eq!(again.status.code(), Some(4));

    // Sharded: split into the bucket, run each shard there, merge there, verify.
    let split = s3.ok(&[
        "shard",
        "--shard-count",
        "2",
        "--out",
        "s3://bill/split",
        "--state",
        "s3://bill/in/state",
        "--usage",
        "s3://bill/in/usage.parquet",
        "--credits",
        "s3://bill/in/credits.parquet",
        "--events",
        "s3://bill/in/events.parquet",
    ]);
    // The reports name the URLs given, not the temporary local copies.
    assert!(split.contains("into 2 shards under s3://bill/split"), "{split}");
    for i in 0..2 {
        let p = |x: &str| format!("s3://bill/split/shard={i}/{x}");
        let mut a = args(&p("state"), &p("usage"), &p("credits"), &p("events"), &format!("s3://bill/shards/{i}"));
        a.extend(["--shard".to_string(), format!("{i}/2")]);
        s3.ok(&a);
    }
    let merged = s3.ok(&["merge", "--out", "s3://bill/merged", "s3://bill/shards/0", "s3://bill/shards/1"]);
    assert!(merged.contains("into s3://bill/merged"), "{merged}");
    let verified = s3.ok(&["verify", "s3://bill/merged"]);
    assert!(verified.contains("verified merged run s3://bill/merged"), "{verified}");
    let merged: serde_json::Value =
        serde_json::from_str(&s3.util(&["get", "bill", "merged/run_manifest.json"])).unwrap();
    let whole: serde_json::Value = serde_json::from_str(&local_manifest).unwrap();
    for (cur, t) in whole["totals"].as_object().unwrap() {
        let d = |v: &serde_json::Value| v.as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap();
        assert_eq!(d(&merged["totals"][cur]["closing"]), d(&t["closing"]), "{cur} closing");
        assert_eq!(d(&merged["totals"][cur]["debits"]["total"]), d(&t["debits"]["total"]), "{cur} debits");
    }
    // The next night, shard by shard, from the merged run in the bucket.
    for i in 0..2 {
        s3.ok(&[
            "run",
            "--job",
            "s3://bill/in/job.toml",
            "--shard",
            &format!("{i}/2"),
            "--state",
            "s3://bill/merged",
            "--output",
            &format!("s3://bill/next/{i}"),
        ]);
    }
    s3.ok(&["verify", "s3://bill/next/1"]);
}

#[test]
fn a_killed_runs_files_are_no_run_and_the_next_run_replaces_them() {
    let Some(s3) = S3::start() else { return };
    s3.util(&["create-bucket", "bill"]);
    let zx = repo().join("sample-data/company-zx");
    s3.util(&["upload", "bill", "zx", s(&zx)]);
    // What a run killed mid-upload leaves: some files, no manifest.
    s3.util(&["put", "bill", "runs/x/wallet_transactions.parquet", "half a file"]);
    s3.util(&["put", "bill", "runs/x/rejects.parquet", "junk"]);
    // And a prefix holding what no run writes.
    s3.util(&["put", "bill", "notes/readme.txt", "keep me"]);
    let o = s3.billrun(&["verify", "s3://bill/runs/x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no run_manifest.json"));
    let job = repo().join("jobs/company-zx-daily.toml");
    let run = |state: &str, out: &str| {
        s3.billrun(&[
            "run",
            "--job",
            s(&job),
            "--state",
            state,
            "--usage",
            "s3://bill/zx/usage.csv",
            "--credits",
            "s3://bill/zx/credits.csv",
            "--as-of",
            "2026-11-22",
            "--output",
            out,
        ])
    };
    // As a state, a killed run is refused too.
    assert_eq!(run("s3://bill/runs/x", "s3://bill/runs/y").status.code(), Some(2));
    // The next run there publishes, and what the killed run left is gone.
    let o = run("s3://bill/zx/state", "s3://bill/runs/x");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed = s3.util(&["list", "bill", "runs/x/"]);
    assert!(listed.contains("run_manifest.json"), "{listed}");
    assert!(s3.util(&["get", "bill", "runs/x/wallet_transactions.parquet"]).len() > 100, "the half file replaced");
    s3.ok(&["verify", "s3://bill/runs/x"]);
    // An output prefix holding what no run writes is not a run's to replace (exit 4, kept);
    // an output overlapping an input is refused (exit 2).
    assert_eq!(run("s3://bill/zx/state", "s3://bill/notes").status.code(), Some(4));
    assert_eq!(s3.util(&["get", "bill", "notes/readme.txt"]), "keep me");
    assert_eq!(run("s3://bill/zx/state", "s3://bill/zx").status.code(), Some(2));

    // A run stopped by the reject gate (exit 3) publishes nothing at the output; its rejects
    // and manifest go to `<output>.rejected/` in the bucket.
    let fx = repo().join("tests/fixtures/rejects");
    s3.util(&["upload", "bill", "rj", s(&fx)]);
    let t = Scratch::new();
    let strict = t.path("strict.toml");
    let text = std::fs::read_to_string(fx.join("job.toml"))
        .unwrap()
        .replace("max_reject_ratio = 1.0", "max_reject_ratio = 0.0");
    std::fs::write(&strict, text).unwrap();
    let o = s3.billrun(&[
        "run",
        "--job",
        s(&strict),
        "--state",
        "s3://bill/rj/state",
        "--usage",
        "s3://bill/rj/usage.csv",
        "--as-of",
        "2026-11-22",
        "--output",
        "s3://bill/gate",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("s3://bill/gate.rejected"));
    assert!(s3.util(&["list", "bill", "gate/"]).is_empty());
    let review = s3.util(&["list", "bill", "gate.rejected/"]);
    assert!(review.contains("run_manifest.json") && review.contains("rejects"), "{review}");

    // A missing bucket, and an endpoint nobody listens on: exit 2, naming the URL.
    let o = run("s3://no-such-bucket/state", "s3://bill/runs/z");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("s3://no-such-bucket/state"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = bin()
        .args(["verify", "s3://bill/runs/x"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Bad credentials are a clear exit 2 naming the URL: moto checking signatures (after the
/// test's own set-up: a user with full access, its key, the bucket), billrun with the user's
/// key reaches the bucket, with a wrong secret it is refused.
#[test]
fn bad_credentials_are_exit_2() {
    let Some(s3) = S3::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "4")]) else { return };
    let key = s3.util(&["iam-user", "bill"]);
    let (id, secret) = key.trim().split_once(' ').unwrap();
    let verify = |secret: &str| {
        bin()
            .args(["verify", "s3://bill/nothing"])
            .env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT", &s3.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .output()
            .unwrap()
    };
    let good = verify(secret);
    assert_eq!(good.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&good.stderr).contains("no run_manifest.json"),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let bad = verify("not-the-secret");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(err.contains("s3://bill/nothing") && err.contains("SignatureDoesNotMatch"), "{err}");
}
