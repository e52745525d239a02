//! The `billrun` command: parse arguments, call the library, map errors to exit codes.

use billrun::run::{execute, Mode, RunArgs};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

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
    Report { dir: PathBuf },
    /// Re-check a published run from its files alone.
    Verify { dir: PathBuf },
    /// Time to merely decode a run's inputs and encode its outputs (benchmark floor).
    #[command(hide = true)]
    IoFloor(billrun::iofloor::IoFloorArgs),
    /// Print a table file (or every table of a run directory) as CSV text.
    Cat { path: PathBuf },
}

#[derive(Args)]
struct RunOpts {
    #[arg(long)]
    job: PathBuf,
    #[arg(long)]
    state: PathBuf,
    #[arg(long)]
    output: Option<PathBuf>,
    #[arg(long)]
    usage: Option<PathBuf>,
    #[arg(long)]
    credits: Option<PathBuf>,
    #[arg(long)]
    events: Option<PathBuf>,
    /// YYYY-MM-DD; defaults to the state's previous as_of + the job's recurrence.
    #[arg(long, value_parser = parse_date)]
    as_of: Option<NaiveDate>,
    #[arg(long)]
    threads: Option<usize>,
    /// Compute and report everything, publish nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace an existing output directory.
    #[arg(long)]
    force: bool,
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    billrun::read::parse_date_strict(s).ok_or_else(|| format!("not a date (YYYY-MM-DD): {s}"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let quiet = cli.quiet;
    let tty = std::io::stderr().is_terminal();
    let start = std::time::Instant::now();
    let json = matches!(cli.log_format, LogFormat::Json);
    let progress = move |msg: &str| {
        let t = start.elapsed().as_secs_f64();
        if quiet {
            return;
        }
        if json {
            eprintln!("{}", serde_json::json!({"elapsed_s": t, "message": msg}));
        } else if tty {
            eprintln!("\x1b[2m[{t:>7.2}s]\x1b[0m {msg}");
        } else {
            eprintln!("[{t:.2}s] {msg}");
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(cli.cmd, &progress)))
        .unwrap_or_else(|_| Err(billrun::Error::Internal("panicked (a bug); nothing was published".into())));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let billrun::Error::TooManyRejects { summary, .. } = &e {
                print!("{summary}");
            }
            eprintln!("billrun: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn dispatch(cmd: Cmd, progress: &(dyn Fn(&str) + Sync)) -> billrun::Result<()> {
    match cmd {
        Cmd::Run(o) => {
            let mode = if o.dry_run { Mode::DryRun } else { Mode::Run };
            run(o, mode, progress)
        }
        Cmd::Validate(o) => run(o, Mode::Validate, progress),
        Cmd::Generate(g) => billrun::generate::generate(&g).map(|s| print!("{s}")),
        Cmd::Verify { dir } => billrun::verify::verify(&dir).map(|s| print!("{s}")),
        Cmd::Report { dir } => billrun::report::report(&dir).map(|s| print!("{s}")),
        Cmd::IoFloor(a) => billrun::iofloor::io_floor(&a).map(|s| print!("{s}")),
        Cmd::Cat { path } => {
            if path.is_dir() {
                billrun::dump::render_dir(&path, false).map(|s| print!("{s}"))
            } else {
                billrun::dump::read_text_table(&path).map(|t| print!("{}", t.to_csv()))
            }
        }
    }
}

fn run(o: RunOpts, mode: Mode, progress: &(dyn Fn(&str) + Sync)) -> billrun::Result<()> {
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
    };
    let report = execute(&args, progress)?;
    print!("{}", report.summary);
    match (&report.published, mode) {
        (Some(p), _) => println!("published {}", p.display()),
        (None, Mode::DryRun) => println!("dry run: nothing published"),
        (None, _) => println!("validate: nothing written"),
    }
    Ok(())
}
