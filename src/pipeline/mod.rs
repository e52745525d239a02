//! The run: read → validate → partition → rate → write, and the publish protocol.

use crate::error::{Error, Result};
use crate::external::{apply_external, ExtOut};
use crate::guard;
use crate::job::Job;
use crate::model::*;
use crate::output;
use crate::partition;
use crate::rate::{rate_account, AccountOut, RateCtx};
use crate::read::{find_table, table_at, TableSource};
use crate::validate::*;
use chrono::NaiveDate;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Compute and publish.
    Run,
    /// Compute and report; publish nothing.
    DryRun,
    /// Validate and report rejects and totals; publish nothing.
    Validate,
}

#[derive(Clone, Debug)]
pub struct RunArgs {
    pub job: PathBuf,
    pub state: PathBuf,
    pub output: Option<PathBuf>,
    pub usage: Option<PathBuf>,
    pub credits: Option<PathBuf>,
    pub events: Option<PathBuf>,
    pub as_of: Option<NaiveDate>,
    pub threads: Option<usize>,
    pub force: bool,
    pub mode: Mode,
    /// Overrides the job's `output_layout`.
    pub layout: Option<crate::job::Layout>,
    /// Write `usage_lineage` (also on when the job says `lineage = true`).
    pub lineage: bool,
    /// Hands memory freed so far back to the OS; called on every pool thread once the state
    /// is read. The allocator's owner (the binary) provides it.
    pub release_memory: Option<fn()>,
    /// The caller exits right after the run (the binary): a published run leaves its large
    /// structures and its thread pool to the process exit instead of freeing them piece by
    /// piece (1M: ~0.15 s of freeing and of the allocator returning spans; 10M: ~1.4 s).
    pub leave_memory_to_exit: bool,
}

/// What a finished run reports.
pub struct RunReport {
    pub summary: String,
    pub published: Option<PathBuf>,
}

/// Progress sink: phase row counts (log lines go through `tracing`).
pub type Progress = std::sync::Arc<dyn crate::progress::Progress>;

/// `as_of` from the command line, else the state's manifest `as_of` + recurrence.
fn resolve_as_of(args: &RunArgs, job: &Job, prev: Option<NaiveDate>) -> Result<NaiveDate> {
    if let Some(a) = args.as_of {
        return Ok(a);
    }
    match prev {
        Some(p) => Ok(job.recurrence.add(p)),
        None => Err(Error::Usage(format!(
            "--as-of is required: {} holds no run_manifest.json to derive it from",
            args.state.display()
        ))),
    }
}

/// The previous run's as_of, if the state is a previous run's output.
pub fn previous_as_of(state: &Path) -> Result<Option<NaiveDate>> {
    let p = state.join(output::MANIFEST);
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::input(p.display().to_string(), format!("not JSON: {e}")))?;
    let s = v.get("as_of").and_then(|x| x.as_str()).ok_or_else(|| Error::input(p.display().to_string(), "no as_of"))?;
    crate::read::parse_date_strict(s)
        .map(Some)
        .ok_or_else(|| Error::input(p.display().to_string(), format!("bad as_of {s:?}")))
}

/// What the manifest, stats and summary say about the run besides its products.
pub struct RunMeta<'a> {
    pub job: &'a Job,
    pub run_id: &'a str,
    pub as_of: NaiveDate,
    pub threads: usize,
    pub intake: &'a Intake,
}

/// Run, dry-run or validate, and publish per SPEC §5. Everything runs on a rayon pool of
/// exactly `threads` workers (the job's, or `--threads`).
pub fn execute(args: &RunArgs, progress: Progress) -> Result<RunReport> {
    // The output as an absolute path ending in a name (`--output .` included), so that its
    // lock and temporary directories sit beside it.
    let resolved;
    let args = match &args.output {
        Some(out) => {
            resolved = RunArgs { output: Some(guard::resolve_parent(out)?), ..args.clone() };
            &resolved
        }
        None => args,
    };
    // Before anything is read or written: no path the run writes overlaps an input.
    if let Some(out) = &args.output {
        guard::check_disjoint(&owned_paths(out), &inputs(args))?;
    }
    // One run per output at a time: the lock is held until the output is published.
    let _lock = match (&args.mode, &args.output) {
        (Mode::Run, None) => return Err(Error::Usage("--output is required".into())),
        (Mode::Run, Some(out)) => {
            let lock = lock_output(out)?;
            if out.exists() && !args.force {
                return Err(Error::OutputExists(out.clone()));
            }
            // `--force` replaces a previous run's output, nothing else.
            guard::check_replaceable(out, output::MANIFEST)?;
            guard::check_replaceable(&sibling(out, "rejected"), output::MANIFEST)?;
            clean_stale(out);
            Some(lock)
        }
        _ => None,
    };
    let job = Job::load(&args.job)?;
    let threads = args.threads.unwrap_or(job.threads);
    if threads == 0 {
        return Err(Error::Usage("--threads must be >= 1".into()));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Internal(format!("thread pool: {e}")))?;
    let report = pool.install(|| execute_in_pool(args, job, threads, progress));
    if args.leave_memory_to_exit {
        // Its threads stay parked until the exit (each thread's exit would tidy its heap).
        std::mem::forget(pool);
    }
    report
}

fn execute_in_pool(args: &RunArgs, job: Job, threads: usize, progress: Progress) -> Result<RunReport> {
    let t0 = output::PhaseClock::start();
    let mut timings = Vec::new();
    if !args.state.is_dir() {
        return Err(Error::Usage(format!("state directory {} does not exist", args.state.display())));
    }
    let prev = previous_as_of(&args.state)?;
    let as_of = resolve_as_of(args, &job, prev)?;
    let prev_cutoff_date = prev.unwrap_or_else(|| job.recurrence.sub(as_of));
    let cutoff = midnight(as_of);
    let run_id = format!("{}-{}", job.name, as_of);

    // ---- read + validate -------------------------------------------------------------
    tracing::info!(phase = "read", elapsed_s = 0.0, state = %args.state.display(), "read: state {}", args.state.display());
    let need = |name: &'static str| -> Result<TableSource> {
        find_table(&args.state, name)?
            .ok_or_else(|| Error::input(args.state.display().to_string(), format!("state table {name} is missing")))
    };
    let services_src = need("services")?;
    let wallets_src = need("wallets")?;
    let subs_src = need("subscriptions")?;
    let items_src = need("subscription_items")?;
    let deferred_usage_src = find_table(&args.state, "deferred_usage")?;
    let deferred_events_src = find_table(&args.state, "deferred_events")?;
    let arg_table = |p: &Option<PathBuf>, name: &'static str| -> Result<Option<TableSource>> {
        p.as_ref().map(|p| table_at(p, name)).transpose()
    };
    let usage_src = arg_table(&args.usage, "usage")?;
    let credits_src = arg_table(&args.credits, "credits")?;
    let events_src = arg_table(&args.events, "external_events")?;

    let mut intake = Intake { progress: Some(progress.clone()), ..Intake::default() };
    let all_sources = [&services_src, &wallets_src, &subs_src, &items_src].into_iter().chain(
        [&deferred_usage_src, &usage_src, &credits_src, &deferred_events_src, &events_src].into_iter().flatten(),
    );
    let (rows, all_known) = crate::read::metadata_rows(all_sources.flat_map(|t| &t.files))?;
    progress.begin("read", all_known.then_some(rows));
    let st = validate_state(
        &mut intake,
        &StateSources {
            services: Some(&services_src),
            wallets: Some(&wallets_src),
            subscriptions: Some(&subs_src),
            items: Some(&items_src),
        },
    )?;

    tracing::info!(
        phase = "read",
        services = st.services.len(),
        wallets = st.wallets.len(),
        subscriptions = st.subs.len(),
        items = st.items.len(),
        elapsed_s = t0.seconds(),
        rss_mib = output::rss_mib(),
        "read: state {} services, {} wallets, {} subscriptions, {} items ({:.2}s)",
        st.services.len(),
        st.wallets.len(),
        st.subs.len(),
        st.items.len(),
        t0.seconds()
    );
    timings.push(t0.lap("read_state"));
    // The state phase frees a few hundred MiB (decoded batches, rows before their checks),
    // which the allocator would hold into the usage phase, where the run's peak was.
    if let Some(release) = args.release_memory {
        rayon::broadcast(|_| release());
    }
    let t_usage = output::PhaseClock::start();
    // Usage: streamed, classified in parallel, deduplicated on usage_id and aggregated into
    // per-item sums. Nothing but the sums and the deferred rows is kept.
    let sources: Vec<&TableSource> = [deferred_usage_src.as_ref(), usage_src.as_ref()].into_iter().flatten().collect();
    let lineage = args.lineage || job.lineage;
    let usage =
        ingest_usage(&mut intake, &sources, &st, cutoff, lineage && args.mode == Mode::Run, &dedupe_limit(args, &job))?;
    let usage_rated = usage.rated_rows;
    let usage_qty = usage.qty;
    let deferred_usage = usage.deferred;
    let lineage_rows = usage.lineage;
    tracing::info!(
        phase = "read",
        usage_rated,
        usage_deferred = deferred_usage.len(),
        elapsed_s = t0.seconds(),
        rss_mib = output::rss_mib(),
        "read: usage {usage_rated} rows rated, {} deferred ({:.2}s)",
        deferred_usage.len(),
        t0.seconds()
    );

    timings.push(t_usage.lap("read_usage"));
    let event_sources: Vec<&TableSource> =
        [deferred_events_src.as_ref(), events_src.as_ref()].into_iter().flatten().collect();
    let ((credits, credit_wallet), events) =
        validate_credits_and_events(&mut intake, credits_src.as_ref(), &event_sources, &st)?;
    timings.push(t0.lap("read_validate"));
    progress.end();
    tracing::info!(
        phase = "read",
        rows = intake.rows_read,
        files = intake.files.len(),
        rejects = intake.rejects.len(),
        elapsed_s = t0.seconds(),
        "read: {} rows from {} files, {} usage rows rated, {} rejects ({:.2}s)",
        intake.rows_read,
        intake.files.len(),
        usage_rated,
        intake.rejects.len(),
        t0.seconds()
    );

    // ---- partition + rate ------------------------------------------------------------
    let t1 = output::PhaseClock::start();
    let plan = partition::Plan::new(&st, &credits, &credit_wallet, &usage_qty);
    let ctx = RateCtx {
        as_of,
        steps: &job.steps,
        rounding: job.rounding,
        debit_type: &job.debit_transaction_type,
        recurrence: job.recurrence,
        prev_cutoff: midnight(prev_cutoff_date),
    };
    tracing::info!(
        phase = "rate",
        accounts = plan.len(),
        threads,
        elapsed_s = t0.seconds(),
        "rate: {} accounts on {} threads",
        plan.len(),
        threads
    );
    // The reject gate depends on the intake only: decide before rating whether this run
    // publishes, so the transactions can be written as they are rated.
    let rejected = intake.rejects.len() as u64;
    let total = intake.rows_read;
    let ratio = if total == 0 { 0.0 } else { rejected as f64 / total as f64 };
    let gate_failed = ratio > job.max_reject_ratio;
    let publish = args.mode == Mode::Run && !gate_failed;
    // Files are fsynced on the syncer's thread as they are finished; a publish waits for it.
    let syncer = crate::write::Syncer::start()?;
    // The inputs' checksums, for the manifest of a run that writes one, are taken on a thread
    // of their own while the run rates and writes.
    let input_hashes = (args.mode == Mode::Run)
        .then(|| {
            crate::checksum::InputHashes::start(
                intake.files.iter().map(|f| (f.path.clone(), f.sha256.clone())).collect(),
            )
        })
        .transpose()?;
    let dest = |dir| output::Dest {
        dir,
        progress: progress.as_ref(),
        format: job.output_format,
        layout: args.layout.unwrap_or(job.output_layout),
        as_of,
        syncer: &syncer,
    };
    let out = args.output.clone().unwrap_or_default();
    let tmp = sibling(&out, &format!("tmp-{}", std::process::id()));
    if publish {
        fresh_dir(&tmp)?;
    }
    let remove_tmp = |e: Error| {
        if publish {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        e
    };

    progress.begin("rate", Some(plan.len() as u64));
    // The store events touch no wallet: they are applied beside the rating, a task the
    // pool picks up between chunks (run after it, they left one thread idle).
    let (rated, ext) = rayon::join(
        || rate_and_write(&ctx, &plan, &st, lineage, publish.then(|| dest(&tmp)), &run_id, progress.as_ref()),
        || external_subscriptions(&st, &events, cutoff),
    );
    let (ledger, rated_files) = rated.map_err(remove_tmp)?;
    timings.push(t1.lap("rate"));
    progress.end();
    tracing::info!(
        phase = "rate",
        elapsed_s = t0.seconds(),
        rss_mib = output::rss_mib(),
        "rate: done ({:.2}s)",
        t1.seconds()
    );

    let t2 = output::PhaseClock::start();
    let asm = output::assemble(
        output::BuildInput {
            run_id: &run_id,
            as_of,
            state: &st,
            plan: &plan,
            ext: &ext,
            deferred_usage: &deferred_usage,
            intake: &intake,
            lineage: lineage_rows.as_ref(),
        },
        ledger,
    )
    .map_err(remove_tmp)?;
    timings.push(t2.lap("assemble"));
    tracing::info!(phase = "assemble", elapsed_s = t0.seconds(), rss_mib = output::rss_mib(), "assembled");
    let meta = RunMeta { job: &job, run_id: &run_id, as_of, threads, intake: &intake };

    let mut summary = output::summary(&meta, &asm.products, ratio);
    if args.mode == Mode::Validate {
        summary.push_str(&output::reject_report(&intake, 3));
    }
    let too_many = |review_dir: String| Error::TooManyRejects {
        rejected,
        total,
        ratio,
        max: job.max_reject_ratio,
        review_dir,
        summary: summary.clone(),
    };

    if args.mode != Mode::Run {
        if gate_failed {
            return Err(too_many("(not written: validate/dry-run)".into()));
        }
        return Ok(RunReport { summary, published: None });
    }
    if gate_failed {
        let review = sibling(&out, "rejected");
        let tmp = sibling(&out, &format!("rejected.tmp-{}", std::process::id()));
        fresh_dir(&tmp)?;
        let inputs = input_hashes.ok_or_else(|| Error::Internal("a run's input checksums were not taken".into()))?;
        output::write_manifest(&meta, &asm.products, &tmp, &asm.write_rejects(dest(&tmp))?, inputs)?;
        syncer.wait()?;
        crate::write::sync_dirs(&tmp)?;
        replace_dir(&tmp, &review)?;
        return Err(too_many(review.display().to_string()));
    }

    let t_write = output::PhaseClock::start();
    tracing::info!(
        phase = "write",
        elapsed_s = t0.seconds(),
        output = %out.display(),
        "write: {}",
        out.display()
    );
    progress.begin("write", None);
    let result = rated_files
        .zip(input_hashes)
        .ok_or_else(|| Error::Internal("a published run's rated tables or input checksums are missing".into()))
        .and_then(|(rated, inputs)| {
            output::write_manifest(&meta, &asm.products, &tmp, &asm.write_tables(dest(&tmp), lineage, rated)?, inputs)
        })
        // The tables' fsyncs belong to the write phase: waited for before it is timed.
        .and_then(|()| syncer.wait())
        .and_then(|()| {
            timings.push(t_write.lap("write"));
            timings.push(t0.lap("total"));
            output::write_stats(&meta, &tmp, &timings)
        })
        .and_then(|()| crate::write::sync_dirs(&tmp));
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Checked again: the output may have appeared (or changed) while the run ran.
    let replaceable = if out.exists() && !args.force {
        Err(Error::OutputExists(out.clone()))
    } else {
        guard::check_replaceable(&out, output::MANIFEST)
    };
    if let Err(e) = replaceable {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    replace_dir(&tmp, &out)?;
    progress.end();
    tracing::info!(
        phase = "done",
        elapsed_s = t0.seconds(),
        peak_rss_mib = output::peak_rss_bytes().unwrap_or(0) >> 20,
        output = %out.display(),
        "done in {:.2}s",
        t0.seconds()
    );
    if args.leave_memory_to_exit {
        // The process exits next and hands all of its memory back at once; freeing these
        // piece by piece first (and the allocator returning each freed span) is wasted time.
        std::mem::forget(asm);
        std::mem::forget(plan);
        std::mem::forget(ext);
        std::mem::forget(deferred_usage);
        std::mem::forget(st);
        std::mem::forget(intake);
    }
    Ok(RunReport { summary, published: Some(out) })
}

/// Accounts rated per chunk: the transactions of one chunk are all that is held at a time.
const ACCOUNTS_PER_CHUNK: usize = 32_768;

/// Every externally managed subscription with its events applied in (event_time, event_id)
/// order (SPEC §4 step 2).
fn external_subscriptions<'a>(st: &'a State, events: &'a ValidEvents, cutoff: Micros) -> Vec<(usize, ExtOut<'a>)> {
    let mut ev_by_sub: BTreeMap<usize, Vec<&Event>> = BTreeMap::new();
    for (e, s) in events.0.iter().zip(&events.1) {
        ev_by_sub.entry(*s).or_default().push(e);
    }
    for v in ev_by_sub.values_mut() {
        v.sort_by(|a, b| (a.event_time, &a.event_id).cmp(&(b.event_time, &b.event_id)));
    }
    let empty: Vec<&Event> = Vec::new();
    st.subs
        .par_iter()
        .enumerate()
        .filter(|(_, s)| !s.is_internal())
        .map(|(i, s)| (i, apply_external(s, ev_by_sub.get(&i).unwrap_or(&empty), cutoff)))
        .collect()
}

/// Rate every account, a chunk at a time, folding the results into a [`output::Ledger`]
/// and (when publishing) writing each chunk's rows of the tables in account order (see
/// [`output::RatedWriters`]). Chunk i+1 is rated on the pool while chunk i is folded and
/// encoded, so writing overlaps rating. Output order is account order whatever the thread
/// count.
fn rate_and_write<'a>(
    ctx: &RateCtx<'a>,
    plan: &partition::Plan<'a>,
    st: &'a State,
    lineage: bool,
    dest: Option<output::Dest>,
    run_id: &'a str,
    progress: &dyn crate::progress::Progress,
) -> Result<(output::Ledger<'a>, Option<output::RatedFiles>)> {
    use crate::rate::AccountIn;
    let as_of = ctx.as_of;
    let mut ledger = output::Ledger::new(st, lineage);
    // The rate phase's progress counts accounts, not the rows written.
    let mut writer = match dest {
        Some(d) => {
            let d = output::Dest { progress: &crate::progress::Silent, ..d };
            Some(output::RatedWriters::create(d, run_id, as_of)?)
        }
        None => None,
    };
    // A chunk's accounts are built from the plan, rated, then dropped with their results.
    type Rated<'a> = (usize, Vec<AccountIn<'a>>, Vec<AccountOut<'a>>);
    let rate = |first: usize| -> Result<Rated<'a>> {
        let accounts = plan.accounts(first..(first + ACCOUNTS_PER_CHUNK).min(plan.len()));
        // Collected indexed (one allocation), then checked: collecting a parallel iterator
        // into a `Result` gathers per-task vectors and appends them, growing and copying.
        let mut r = Vec::with_capacity(accounts.len());
        accounts.par_iter().with_min_len(64).map(|a| rate_account(ctx, a)).collect_into_vec(&mut r);
        let r =
            r.into_iter().collect::<std::result::Result<Vec<_>, _>>().map_err(|e| Error::Invariant(e.to_string()))?;
        progress.advance(accounts.len() as u64);
        Ok((first, accounts, r))
    };
    // The chunk's rows are built, then encoded while the ledger absorbs the chunk (both on
    // the pool, beside the next chunk's rating).
    let fold = |(first, accounts, rated): Rated<'a>| -> Result<()> {
        let tables = writer.as_ref().map(|w| w.build(&accounts, &rated));
        let (written, absorbed) = rayon::join(
            || match (writer.as_mut(), &tables) {
                (Some(w), Some(t)) => w.append(t),
                _ => Ok(()),
            },
            || ledger.absorb(&accounts, first, rated),
        );
        written.and(absorbed)
    };
    output::pipelined((0..plan.len()).step_by(ACCOUNTS_PER_CHUNK), rate, fold)?;
    Ok((ledger, writer.map(output::RatedWriters::finish).transpose()?))
}

/// The usage_id check's memory limit (the job's `dedupe_memory_mib`) and where it spills:
/// beside the output, named like the run's other temporary files so that a killed run's are
/// removed by the next ([`clean_stale`]); the system's temporary directory without one.
fn dedupe_limit(args: &RunArgs, job: &Job) -> crate::validate::DedupeLimit {
    let bytes = job.dedupe_memory_mib.saturating_mul(1 << 20);
    let beside_output = args.output.as_deref().and_then(|o| {
        let p = sibling(o, &format!("tmp-dedupe-{}-", std::process::id()));
        let dir = p.parent().filter(|d| d.is_dir())?.to_path_buf();
        Some(crate::validate::DedupeLimit { bytes, dir, prefix: p.file_name()?.to_string_lossy().into_owned() })
    });
    beside_output.unwrap_or_else(|| crate::validate::DedupeLimit {
        bytes,
        dir: std::env::temp_dir(),
        prefix: ".billrun-dedupe-".into(),
    })
}

/// The inputs a run reads, by the flag that names them.
fn inputs(args: &RunArgs) -> Vec<guard::Input<'_>> {
    let mut v =
        vec![guard::Input { role: "--job", path: &args.job }, guard::Input { role: "--state", path: &args.state }];
    for (role, p) in [("--usage", &args.usage), ("--credits", &args.credits), ("--events", &args.events)] {
        if let Some(path) = p {
            v.push(guard::Input { role, path });
        }
    }
    v
}

/// Every path a run of `out` creates, replaces or removes: the output, its review directory
/// (`<out>.rejected`), the lock, and the temporary and set-aside directories named by process
/// id (`.<name>.tmp-*`, `.<name>.old-*`, `.<name>.rejected.tmp-*`), which [`clean_stale`]
/// removes after a killed run.
fn owned_paths(out: &Path) -> Vec<guard::Written> {
    let w = |what, path, prefix| guard::Written { what, path, prefix };
    vec![
        w("output", out.to_path_buf(), false),
        w("review directory", sibling(out, "rejected"), false),
        w("lock", sibling(out, "lock"), false),
        w("temporary directory", sibling(out, "tmp-"), true),
        w("set-aside directory", sibling(out, "old-"), true),
        w("temporary review directory", sibling(out, "rejected.tmp-"), true),
    ]
}

/// `<dir>/<.name>.<suffix>` beside `target`.
fn sibling(target: &Path, suffix: &str) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if suffix == "rejected" {
        parent.join(format!("{name}.rejected"))
    } else {
        parent.join(format!(".{name}.{suffix}"))
    }
}

/// Take `.<name>.lock` beside the output; a second run of the same output is refused
/// (exit 4) instead of racing the first.
fn lock_output(out: &Path) -> Result<std::fs::File> {
    let path = sibling(out, "lock");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening lock {}", path.display()), e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy(out.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
    }
}

/// Remove what a killed run of this output left behind (under the lock, so never a live
/// run's files).
fn clean_stale(out: &Path) {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(rd) = std::fs::read_dir(parent) else { return };
    for e in rd.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        if f.starts_with(&format!(".{name}.tmp-")) || f.starts_with(&format!(".{name}.old-")) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn fresh_dir(p: &Path) -> Result<()> {
    if p.exists() {
        std::fs::remove_dir_all(p).map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
    }
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    std::fs::create_dir(p).map_err(|e| Error::io(format!("creating {}", p.display()), e))
}

/// Move `tmp` into place at `target`, replacing an existing `target`.
fn replace_dir(tmp: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        let old = sibling(target, &format!("old-{}", std::process::id()));
        std::fs::rename(target, &old).map_err(|e| Error::io(format!("moving aside {}", target.display()), e))?;
        std::fs::rename(tmp, target).map_err(|e| Error::io(format!("publishing {}", target.display()), e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(tmp, target).map_err(|e| Error::io(format!("publishing {}", target.display()), e))?;
    }
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
