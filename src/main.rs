//! The `billrun` command: parse arguments, call the library, map errors to exit codes.

mod cli;

use billrun::pipeline::remote::{as_given, Fetched};
use billrun::pipeline::Mode;
use billrun::progress::SharedProgress;
use clap::Parser;
use cli::args::{Cli, Cmd, LogFormat, ReportOpts, RunOpts};
use std::process::ExitCode;

fn main() -> ExitCode {
    cli::alloc::tune();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let progress = cli::logging::init_logging(cli.quiet, matches!(cli.log_format, LogFormat::Json));
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
    cli::alloc::exit_now(code)
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

fn dispatch(cmd: Cmd, progress: &SharedProgress) -> billrun::Result<()> {
    match cmd {
        Cmd::Run(o) => {
            let mode = if o.dry_run { Mode::DryRun } else { Mode::Run };
            run(o, mode, progress)
        }
        Cmd::Validate(o) => run(o, Mode::Validate, progress),
        Cmd::Generate(g) => {
            billrun::tools::generate::generate_to(&g.out, g.accounts, g.seed, g.as_of, g.format, g.pricing)
                .and_then(|s| emit(&s))
        }
        Cmd::Shard(s) => {
            let mut f = Fetched::default();
            let out = f.output(&s.out)?;
            let text = billrun::shard::split::split(&billrun::shard::split::SplitArgs {
                count: s.shard_count,
                out: out.clone(),
                state: s.state.as_deref().map(|p| f.run_dir(p, false, None)).transpose()?,
                usage: s.usage.as_deref().map(|p| f.input(p)).transpose()?,
                credits: s.credits.as_deref().map(|p| f.input(p)).transpose()?,
                events: s.events.as_deref().map(|p| f.input(p)).transpose()?,
                format: s.format,
            })?;
            if billrun::io::object::is_url(&s.out) {
                billrun::io::object::Prefix::open(&s.out)?.upload_tree(&out)?;
            }
            emit(&as_given(&text, &out, &s.out))
        }
        Cmd::Merge(m) => {
            let mut f = Fetched::default();
            let shards = m.shards.iter().map(|p| f.run_dir(p, true, None)).collect::<billrun::Result<Vec<_>>>()?;
            for (url, local) in m.shards.iter().zip(&shards).filter(|(u, _)| billrun::io::object::is_url(u)) {
                eprintln!("billrun: shard output {} read from {}", url.display(), local.display());
            }
            let remote = billrun::io::object::is_url(&m.out);
            if remote {
                billrun::io::object::Prefix::open(&m.out)?.check_output(m.force)?;
            }
            let out = f.output(&m.out)?;
            let text = billrun::shard::merge::merge(&out, &shards, m.force)?;
            if remote {
                billrun::io::object::Prefix::open(&m.out)?.publish(&out, m.force)?;
            }
            emit(&as_given(&text, &out, &m.out))
        }
        Cmd::Verify { dir } => {
            let mut f = Fetched::default();
            let local = f.run_dir(&dir, true, None)?;
            billrun::tools::verify::verify(&local).and_then(|s| emit(&as_given(&s, &local, &dir))).inspect_err(|_| {
                if billrun::io::object::is_url(&dir) {
                    eprintln!("billrun: {} was read from {}", dir.display(), local.display());
                }
            })
        }
        Cmd::Report(r) => report(r),
        Cmd::IoFloor(a) => billrun::tools::iofloor::io_floor(&a.into_args()).and_then(|s| emit(&s)),
        Cmd::Cat { path } => {
            if path.is_dir() {
                billrun::tools::dump::render_dir(&path, false).and_then(|s| emit(&s))
            } else {
                billrun::tools::dump::read_text_table(&path).and_then(|t| emit(&t.to_csv()))
            }
        }
    }
}

#[cfg(feature = "report")]
fn report(mut r: ReportOpts) -> billrun::Result<()> {
    let mut f = Fetched::default();
    r.dir = f.run_dir(&r.dir, true, None)?;
    if let Some(prev) = &r.against {
        r.against = Some(f.run_dir(prev, true, None)?);
    }
    if let Some(file) = &r.html {
        billrun::tools::report::check_html_target(&r.dir, r.against.as_deref(), file)?;
    }
    emit(&billrun::tools::report::report(&r.dir)?)?;
    if let Some(prev) = &r.against {
        emit(&format!("\n{}", billrun::tools::report::against(&r.dir, prev)?))?;
    }
    if let Some(file) = &r.html {
        let html = billrun::tools::report::html(&r.dir)?;
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

fn run(o: RunOpts, mode: Mode, progress: &SharedProgress) -> billrun::Result<()> {
    let args = o.into_args(mode);
    let report = billrun::pipeline::remote::execute_anywhere(&args, progress.clone())?;
    emit(&report.summary)?;
    match (&report.published, mode) {
        (Some(p), _) => emit(&format!("published {}\n", p.display())),
        (None, Mode::DryRun) => emit("dry run: nothing published\n"),
        (None, _) => emit("validate: nothing written\n"),
    }
}
