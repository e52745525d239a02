//! The integration-test harness: runs the real `billrun` binary on fixtures in temporary
//! directories, renders run directories as text and compares them with golden files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_billrun"))
}

/// A scratch directory, removed on drop.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch::new()
    }
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::Builder::new().prefix("billrun-test-").tempdir().unwrap() }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    /// A copy of a job file with `output_format` (and optionally `threads`) replaced.
    pub fn job(&self, job: &Path, format: &str) -> PathBuf {
        let text = std::fs::read_to_string(job).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            if line.trim_start().starts_with("output_format") {
                out.push_str(&format!("output_format = \"{format}\"\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        let p = self.path(&format!("job-{format}.toml"));
        std::fs::write(&p, out).unwrap();
        p
    }
}

/// The result of one command.
pub struct Run {
    pub out: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code(), 0, "billrun failed\nstdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
        self
    }
    #[track_caller]
    pub fn code_is(self, code: i32) -> Run {
        assert_eq!(self.code(), code, "unexpected exit code\nstdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
        self
    }
}

pub fn billrun<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = bin().args(args).arg("--quiet").current_dir(repo()).output().unwrap();
    Run { out }
}

/// Arguments of a `run` over a fixture directory holding `state/` and optional
/// `usage.csv`, `credits.csv`, `events.csv`.
pub fn run_args(job: &Path, fixture: &Path, out: &Path, as_of: Option<&str>) -> Vec<String> {
    let mut a = vec![
        "run".to_string(),
        "--job".into(),
        job.display().to_string(),
        "--state".into(),
        fixture.join("state").display().to_string(),
        "--output".into(),
        out.display().to_string(),
    ];
    for (flag, f) in [("--usage", "usage.csv"), ("--credits", "credits.csv"), ("--events", "events.csv")] {
        if fixture.join(f).exists() {
            a.push(flag.into());
            a.push(fixture.join(f).display().to_string());
        }
    }
    if let Some(d) = as_of {
        a.push("--as-of".into());
        a.push(d.into());
    }
    a
}

/// The next run of `job` from a previous run's output (`--as-of` derived from its manifest),
/// with no new inputs.
#[track_caller]
pub fn next_run(job: &Path, state: &Path, out: &Path) -> Run {
    billrun([
        "run",
        "--job",
        job.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ])
    .ok()
}

/// A run directory's `run_manifest.json`.
pub fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("run_manifest.json")).unwrap()).unwrap()
}

/// Every CSV output of a run directory verbatim, then the manifest.
pub fn render_csv_run(dir: &Path) -> String {
    let mut out = String::new();
    for p in files_with_extension(dir, "csv") {
        out.push_str(&format!("== {}\n", p.file_name().unwrap().to_string_lossy()));
        out.push_str(&std::fs::read_to_string(&p).unwrap());
        out.push('\n');
    }
    out.push_str("== run_manifest.json\n");
    out.push_str(&std::fs::read_to_string(dir.join("run_manifest.json")).unwrap());
    out
}

/// Every Parquet file of a run directory, in name order: its Arrow schema (what a warehouse
/// loader sees) and each column's Parquet physical and logical type, compression and
/// encodings, then its rows as `billrun cat` prints them.
pub fn render_parquet_run(dir: &Path) -> String {
    let mut out = String::new();
    for p in files_with_extension(dir, "parquet") {
        let file = std::fs::File::open(&p).unwrap();
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        out.push_str(&format!("== {}\n", p.file_name().unwrap().to_string_lossy()));
        for f in builder.schema().fields() {
            let null = if f.is_nullable() { "nullable" } else { "not null" };
            out.push_str(&format!("{}: {} {null}\n", f.name(), f.data_type()));
        }
        let meta = builder.metadata();
        for (i, c) in meta.file_metadata().schema_descr().columns().iter().enumerate() {
            let chunk = meta.row_groups().first().map(|rg| rg.column(i));
            out.push_str(&format!(
                "  {}: {} {:?}{}\n",
                c.name(),
                c.physical_type(),
                c.logical_type_ref(),
                chunk.map_or(String::new(), |k| format!(
                    " {} {:?}",
                    k.compression(),
                    k.encodings().collect::<Vec<_>>()
                )),
            ));
        }
    }
    out.push_str(&billrun([std::ffi::OsStr::new("cat"), dir.as_os_str()]).ok().stdout());
    out
}

/// The files of `dir` (not its subdirectories) ending in `.ext`, in name order.
fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    names.sort();
    names
}

/// Compare with `tests/golden/<name>.txt`; `BLESS=1` rewrites it.
#[track_caller]
pub fn assert_golden(name: &str, actual: &str) {
    let path = repo().join("tests/golden").join(format!("{name}.txt"));
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden file {}; run with BLESS=1", path.display()));
    if expected != actual {
        // A unified diff: one inserted line shows as one line, not as every line after it.
        let diff = similar::TextDiff::from_lines(expected.as_str(), actual);
        let shown: String = diff
            .unified_diff()
            .context_radius(3)
            .header(&format!("tests/golden/{name}.txt"), "actual")
            .to_string()
            .lines()
            .take(200)
            .collect::<Vec<_>>()
            .join("\n");
        panic!("golden mismatch for {name}; rerun with BLESS=1 to accept\n{shown}");
    }
}

/// Read a CSV output table as (header, rows).
pub fn csv_table(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let h = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r.records().map(|x| x.unwrap().iter().map(str::to_string).collect()).collect();
    (h, rows)
}

/// Column `name` of every row of a CSV output whose `key_col` equals `key`.
pub fn csv_lookup(path: &Path, key_col: &str, key: &str, name: &str) -> Vec<String> {
    let (h, rows) = csv_table(path);
    let k = h.iter().position(|c| c == key_col).unwrap();
    let c = h.iter().position(|c| c == name).unwrap();
    rows.iter().filter(|r| r[k] == key).map(|r| r[c].clone()).collect()
}

/// Copy a directory tree (a fixture or a sample, into a scratch directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Every file of a directory with its bytes, `run_stats.json` aside.
pub fn dir_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "run_stats.json")
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}
