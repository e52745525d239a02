//! The `billrun` command: parse arguments, call the library, map errors to exit codes.

use billrun::run::{execute, Mode, Progress, RunArgs};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Allocation-heavy ingestion (millions of small strings) runs markedly faster on mimalloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "billrun", version, about = "Batch billing-run processor")]
struct Cli {
    /// No progress on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Progress lines as plain text or as JSON objects (one per line, for schedulers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a billing run and publish its outputs atomically.
    Run(RunOpts),
    /// Validate the same inputs: report every reject and the totals, write nothing.
    Validate(RunOpts),
    /// Generate a deterministic synthetic dataset for a run.
    Generate(billrun::generate::GenArgs),
    /// A finance summary of a published run's output directory.
    Report(ReportOpts),
    /// Re-check a published run from its files alone.
    Verify {
        /// A published run's output directory.
        dir: PathBuf,
    },
    /// Time to merely decode a run's inputs and encode its outputs (benchmark floor).
    #[command(hide = true)]
    IoFloor(billrun::iofloor::IoFloorArgs),
    /// Print a table file (or every table of a run directory) as CSV text.
    Cat {
        /// A table file (.parquet or .csv) or a run directory.
        path: PathBuf,
    },
}

#[derive(Args)]
struct ReportOpts {
    /// A published run's output directory.
    dir: PathBuf,
    /// Also write a self-contained HTML report (charts included) to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Show what changed since a previous run's output directory (review a --dry-run).
    #[arg(long, value_name = "PREV_DIR")]
    against: Option<PathBuf>,
}

#[derive(Args)]
struct RunOpts {
    /// The job definition (`jobs/*.toml`: name, recurrence, steps, thresholds, rounding).
    #[arg(long, value_name = "FILE")]
    job: PathBuf,
    /// The state: `services`, `wallets`, `subscriptions`, `subscription_items` (and
    /// optionally `deferred_usage`, `deferred_events`), each `<name>.parquet`, `<name>.csv`
    /// or a directory of part files. A previous run's output is one.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// Where the run is published, all at once (required by `run` unless --dry-run).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Usage recorded since the previous run: a .parquet or .csv file, or a directory of parts.
    #[arg(long, value_name = "PATH")]
    usage: Option<PathBuf>,
    /// Credits (top-ups and payments received), likewise.
    #[arg(long, value_name = "PATH")]
    credits: Option<PathBuf>,
    /// Store events of externally managed subscriptions, likewise.
    #[arg(long, value_name = "PATH")]
    events: Option<PathBuf>,
    /// The run's date (cutoff = its 00:00 UTC); defaults to the state's previous as_of +
    /// the job's recurrence.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    as_of: Option<NaiveDate>,
    /// Worker threads; defaults to the job's `threads`. Outputs do not depend on it.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Compute and report everything, publish nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace an existing output directory.
    #[arg(long)]
    force: bool,
    /// Output layout: `flat` (one file per table) or `hive`
    /// (`<table>/as_of=YYYY-MM-DD/part-NNNNN.parquet`); overrides the job's `output_layout`.
    #[arg(long, value_parser = billrun::job::Layout::parse)]
    layout: Option<billrun::job::Layout>,
    /// Also write `usage_lineage`: every rated usage_id with the transaction that charged it.
    #[arg(long)]
    lineage: bool,
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    billrun::read::parse_date_strict(s).ok_or_else(|| format!("not a date (YYYY-MM-DD): {s}"))
}

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e` of `mimalloc.h`, the
/// same in mimalloc 2 and 3; `libmimalloc-sys` names only some options). Checked in the tests.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keep freed memory for 3 s before returning it to the OS (mimalloc 3's default: 1 s). A
/// run frees and reallocates hundreds of MiB from one phase to the next; memory returned
/// too early comes back as page faults on zeroed pages. 1M accounts, 2 threads, two rounds:
/// 1 s: 21.4–23.0 s wall, 2.5–3.5 s system time, 160–176k faults, peak 1.39 GiB; 3 s:
/// 19.0–19.4 s, 1.7–1.8 s, 78k, 1.45 GiB; 10 s: 20.9–21.5 s, 1.4 s, 31k, 1.51 GiB.
/// `MIMALLOC_PURGE_DELAY` in the environment wins.
///
/// The allocator asks for no transparent huge pages (mimalloc built with `no_thp`; it used
/// to advise them on its arenas, and this kernel's default grants them on request): every
/// first touch of a 2 MiB page zeroes it whole, and a purge inside one splits it, so the
/// state phase, which allocates ~1 GiB of small rows at 1M accounts, spent its time in the
/// kernel. Four interleaved rounds at 1M accounts, 2 threads: with THP 14.6–16.4 s wall,
/// 5.7–5.9 s system time, state phase 4.0–4.6 s; without 13.6–15.6 s, 2.4–2.9 s, 2.1–2.8 s;
/// peaks equal. At 10M: 196.9 → 187.5 s, peak 11.63 → 11.50 GiB. (Session 7 turned THP off
/// for the whole process with `prctl(PR_SET_THP_DISABLE)`, which also refused the one table
/// that wants huge pages, the usage duplicate check's: see `index::FpSet`.)
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an integer option of the allocator; any value is valid.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 3000) };
    }
}

/// Return the memory freed so far to the OS now rather than after the purge delay
/// (`mi_collect(true)`: the calling thread's heap and the shared arenas). A run calls it once
/// the state is read: the state phase frees a few hundred MiB that the usage phase, where
/// the 1M peak was, would otherwise find still held. 1M accounts, 2 threads, four
/// interleaved pairs: peak 1,515,544–1,532,044 → 1,445,960–1,489,968 KB (`/usr/bin/time`),
/// the peak moving to the end of the rate phase; wall 7.74–8.11 → 7.33–8.13 s.
fn release_memory() {
    // SAFETY: a request to the allocator; valid on any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let progress = init_logging(cli.quiet, matches!(cli.log_format, LogFormat::Json));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(cli.cmd, &progress)))
        .unwrap_or_else(|_| Err(billrun::Error::Internal("panicked (a bug); nothing was published".into())));
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            if let billrun::Error::TooManyRejects { summary, .. } = &e {
                let _ = emit(summary);
            }
            eprintln!("billrun: error: {e}");
            e.exit_code()
        }
    };
    exit_now(code)
}

/// Flush stdout and stderr and end the process, skipping the at-exit handlers: mimalloc
/// (linked statically) collects and returns every free span to the OS at exit, which the
/// kernel's teardown of the process does anyway (1M run: ~60 ms of `madvise` calls after
/// the output was published). Everything the run writes is closed and fsynced before.
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process; nothing runs after it.
    unsafe { libc::_exit(code) }
}

/// Log lines through `tracing` on stderr: plain text with the time since start, or one JSON
/// object per line (`--log-format json`); nothing but warnings with `--quiet`. On a terminal
/// (plain format) each phase also gets a progress bar with rows/s, and log lines print above it.
fn init_logging(quiet: bool, json: bool) -> Progress {
    let level = if quiet { tracing::Level::WARN } else { tracing::Level::INFO };
    let builder = tracing_subscriber::fmt().with_max_level(level).with_target(false);
    if json {
        builder.json().flatten_event(true).with_writer(std::io::stderr).init();
        return Arc::new(billrun::progress::Silent);
    }
    if quiet || !std::io::stderr().is_terminal() {
        builder
            .with_ansi(false)
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_writer(std::io::stderr)
            .init();
        return Arc::new(billrun::progress::Silent);
    }
    let bars = Bars { mp: indicatif::MultiProgress::new(), current: Mutex::new(None) };
    let mp = bars.mp.clone();
    builder
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_writer(move || AboveBars { mp: mp.clone(), buf: Vec::new() })
        .init();
    Arc::new(bars)
}

/// Terminal progress bars, one per phase.
struct Bars {
    mp: indicatif::MultiProgress,
    current: Mutex<Option<indicatif::ProgressBar>>,
}

impl billrun::progress::Progress for Bars {
    fn begin(&self, phase: &'static str, total: Option<u64>) {
        use indicatif::{ProgressBar, ProgressState, ProgressStyle};
        // The rate phase counts accounts; read and write count rows.
        let unit = if phase == "rate" { "accounts" } else { "rows" };
        let rate = move |st: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} {unit}/s", st.per_sec());
        };
        let style = |template: String| {
            ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key("rate", rate)
        };
        let pb = match total {
            Some(n) => ProgressBar::new(n).with_style(style(format!(
                "{{prefix:>5}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} ({{rate}})"
            ))),
            None => ProgressBar::new_spinner().with_style(style(format!(
                "{{prefix:>5}} [{{elapsed_precise}}] {{spinner}} {{human_pos}} {unit} ({{rate}})"
            ))),
        };
        pb.set_prefix(phase);
        let pb = self.mp.add(pb);
        pb.enable_steady_tick(std::time::Duration::from_millis(100));
        if let Ok(mut c) = self.current.lock() {
            *c = Some(pb);
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(c) = self.current.lock() {
            if let Some(pb) = c.as_ref() {
                pb.inc(n);
            }
        }
    }
    fn end(&self) {
        if let Some(pb) = self.current.lock().ok().and_then(|mut c| c.take()) {
            pb.finish();
        }
    }
}

/// One log line, printed above the progress bars when dropped.
struct AboveBars {
    mp: indicatif::MultiProgress,
    buf: Vec<u8>,
}

impl std::io::Write for AboveBars {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for AboveBars {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.mp.suspend(|| {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), &buf);
        });
    }
}

/// Write to stdout; a closed pipe (`billrun cat f | head`) ends the output quietly.
fn emit(s: &str) -> billrun::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(billrun::Error::io("writing to stdout", e)),
        _ => Ok(()),
    }
}

fn dispatch(cmd: Cmd, progress: &Progress) -> billrun::Result<()> {
    match cmd {
        Cmd::Run(o) => {
            let mode = if o.dry_run { Mode::DryRun } else { Mode::Run };
            run(o, mode, progress)
        }
        Cmd::Validate(o) => run(o, Mode::Validate, progress),
        Cmd::Generate(g) => billrun::generate::generate(&g).and_then(|s| emit(&s)),
        Cmd::Verify { dir } => billrun::verify::verify(&dir).and_then(|s| emit(&s)),
        Cmd::Report(r) => report(r),
        Cmd::IoFloor(a) => billrun::iofloor::io_floor(&a).and_then(|s| emit(&s)),
        Cmd::Cat { path } => {
            if path.is_dir() {
                billrun::dump::render_dir(&path, false).and_then(|s| emit(&s))
            } else {
                billrun::dump::read_text_table(&path).and_then(|t| emit(&t.to_csv()))
            }
        }
    }
}

#[cfg(feature = "report")]
fn report(r: ReportOpts) -> billrun::Result<()> {
    if let Some(file) = &r.html {
        billrun::report::check_html_target(&r.dir, r.against.as_deref(), file)?;
    }
    emit(&billrun::report::report(&r.dir)?)?;
    if let Some(prev) = &r.against {
        emit(&format!("\n{}", billrun::report::against(&r.dir, prev)?))?;
    }
    if let Some(file) = &r.html {
        let html = billrun::report::html(&r.dir)?;
        std::fs::write(file, html).map_err(|e| billrun::Error::io(format!("writing {}", file.display()), e))?;
        emit(&format!("\nwrote {}\n", file.display()))?;
    }
    Ok(())
}

#[cfg(not(feature = "report"))]
fn report(_: ReportOpts) -> billrun::Result<()> {
    Err(billrun::Error::Usage(
        "this billrun was built without the `report` feature (polars); rebuild with default features".into(),
    ))
}

fn run(o: RunOpts, mode: Mode, progress: &Progress) -> billrun::Result<()> {
    let args = RunArgs {
        job: o.job,
        state: o.state,
        output: o.output,
        usage: o.usage,
        credits: o.credits,
        events: o.events,
        as_of: o.as_of,
        threads: o.threads,
        force: o.force,
        mode,
        layout: o.layout,
        lineage: o.lineage,
        release_memory: Some(release_memory),
        leave_memory_to_exit: true,
    };
    let report = execute(&args, progress.clone())?;
    emit(&report.summary)?;
    match (&report.published, mode) {
        (Some(p), _) => emit(&format!("published {}\n", p.display())),
        (None, Mode::DryRun) => emit("dry run: nothing published\n"),
        (None, _) => emit("validate: nothing written\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_before_use_numa_nodes_with_its_default() {
        // mimalloc.h: `..., mi_option_purge_delay, mi_option_use_numa_nodes, ...`.
        assert_eq!(MI_OPTION_PURGE_DELAY + 1, libmimalloc_sys::mi_option_use_numa_nodes);
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads an integer option (mimalloc 3's default purge delay: 1000 ms).
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, 1000);
            tune_allocator();
            // SAFETY: as above.
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, 3000);
        }
    }
}
