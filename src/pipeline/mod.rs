//! The run (SPEC §1, §4, §5): read → validate → partition → rate → write, on a rayon pool
//! of exactly the job's threads, then the publish protocol ([`publish`]).

mod publish;
pub mod remote;

use publish::*;

use crate::domain::job::Job;
use crate::domain::*;
use crate::error::{Error, Result};
use crate::io::discover::{find_table, table_at, TableSource};
use crate::io::guard;
use crate::io::storage::{LocalDir, OutputStore};
use crate::partition;
use crate::perf;
use crate::products;
use crate::rating::step2_external::{apply_external, ExtOut};
use crate::rating::{rate_account, AccountOut, RateCtx};
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
    pub layout: Option<crate::domain::job::Layout>,
    /// Write `usage_lineage` (also on when the job says `lineage = true`).
    pub lineage: bool,
    /// `--shard I/N` (SPEC §10.1): run one shard; every row read must belong to it.
    pub shard: Option<crate::shard::ShardSpec>,
}

/// What a finished run reports.
pub struct RunReport {
    pub summary: String,
    pub published: Option<PathBuf>,
}

use crate::progress::SharedProgress as Progress;

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

/// Refuse a state that is one shard's output unless this run is that shard of that N.
fn check_state_shard(state: &Path, shard: Option<crate::shard::ShardSpec>) -> Result<()> {
    let p = state.join(products::MANIFEST);
    let Ok(text) = std::fs::read_to_string(&p) else { return Ok(()) };
    let Ok(m) = serde_json::from_str::<serde_json::Value>(&text) else { return Ok(()) };
    let was = (m["shard"]["index"].as_u64(), m["shard"]["count"].as_u64());
    let this = shard.map(|s| (u64::from(s.index), u64::from(s.count)));
    match (was, this) {
        ((Some(i), Some(n)), Some(t)) if (i, n) != t => Err(Error::Usage(format!(
            "{} is shard {i} of {n}: it is the state of --shard {i}/{n} only, not {}/{}",
            state.display(),
            t.0,
            t.1
        ))),
        ((Some(i), Some(n)), None) => Err(Error::Usage(format!(
            "{} is shard {i} of {n} of a run: a whole run's state is a whole run (or merge the shards)",
            state.display()
        ))),
        _ => Ok(()),
    }
}

/// The previous run's as_of, if the state is a previous run's output.
pub fn previous_as_of(state: &Path) -> Result<Option<NaiveDate>> {
    let p = state.join(products::MANIFEST);
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::input(p.display().to_string(), format!("not JSON: {e}")))?;
    let s = v.get("as_of").and_then(|x| x.as_str()).ok_or_else(|| Error::input(p.display().to_string(), "no as_of"))?;
    crate::domain::parse_date_strict(s)
        .map(Some)
        .ok_or_else(|| Error::input(p.display().to_string(), format!("bad as_of {s:?}")))
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
    let store = args.output.clone().map(LocalDir::new);
    // Before anything is read or written: no path the run writes overlaps an input.
    if let Some(store) = &store {
        guard::check_disjoint(&store.owned_paths(), &inputs(args))?;
    }
    // One run per output at a time: the lock is held until the output is published.
    let _lock = match (&args.mode, &store) {
        (Mode::Run, None) => return Err(Error::Usage("--output is required".into())),
        (Mode::Run, Some(store)) => {
            // Refused before the lock (which creates a file beside the output), and checked
            // again under it.
            let refuse = || -> Result<()> {
                if store.exists() && !args.force {
                    return Err(Error::OutputExists(store.path().to_path_buf()));
                }
                // `--force` replaces a previous run's output, nothing else.
                store.check_replaceable()?;
                store.review().check_replaceable()
            };
            refuse()?;
            let lock = store.lock()?;
            refuse()?;
            store.clean_stale();
            store.review().clean_stale();
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
    // Its threads stay parked until the exit when the binary exits next.
    perf::memory::leave_to_exit(pool);
    report
}

fn execute_in_pool(args: &RunArgs, job: Job, threads: usize, progress: Progress) -> Result<RunReport> {
    let t0 = crate::telemetry::PhaseClock::start();
    let mut timings = Vec::new();
    if !args.state.is_dir() {
        return Err(Error::Usage(format!("state directory {} does not exist", args.state.display())));
    }
    // A merged run as the state of a shard run: its `shard=I/` (SPEC §10.1). Without
    // `--shard`, a merged run is no state (its tables are in the shards).
    let merged_state;
    let args = match (crate::shard::merged_shards(&args.state), args.shard) {
        (Some(_), None) => {
            return Err(Error::Usage(format!(
                "{} is a merged sharded run: run its next night as shards (--shard I/N), each reading shard=I/",
                args.state.display()
            )))
        }
        (Some(_), Some(s)) => {
            merged_state = RunArgs { state: args.state.join(format!("shard={}", s.index)), ..args.clone() };
            &merged_state
        }
        (None, _) => args,
    };
    // A shard run's output is the state of the same shard of the same N only (SPEC §10.1):
    // anything else would bill some accounts twice or not at all.
    check_state_shard(&args.state, args.shard)?;
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
    let tiers_src = find_table(&args.state, "price_tiers")?;
    let tax_src = find_table(&args.state, "tax_rates")?;
    let discounts_src = find_table(&args.state, "discounts")?;
    let deferred_usage_src = find_table(&args.state, "deferred_usage")?;
    let deferred_events_src = find_table(&args.state, "deferred_events")?;
    let arg_table = |p: &Option<PathBuf>, name: &'static str| -> Result<Option<TableSource>> {
        p.as_ref().map(|p| table_at(p, name)).transpose()
    };
    let usage_src = arg_table(&args.usage, "usage")?;
    let credits_src = arg_table(&args.credits, "credits")?;
    let events_src = arg_table(&args.events, "external_events")?;

    let all_sources: Vec<&TableSource> = [&services_src, &wallets_src, &subs_src, &items_src]
        .into_iter()
        .chain(
            [
                &tiers_src,
                &tax_src,
                &discounts_src,
                &deferred_usage_src,
                &usage_src,
                &credits_src,
                &deferred_events_src,
                &events_src,
            ]
            .into_iter()
            .flatten(),
        )
        .collect();
    // A shard run reads only its shard's rows: a misrouted one stops it (exit 2).
    if let Some(spec) = args.shard {
        crate::shard::check_routing(&args.state, &all_sources, spec)?;
    }
    let mut intake = Intake { progress: Some(progress.clone()), ..Intake::default() };
    let (rows, all_known) = crate::io::read::metadata_rows(all_sources.iter().flat_map(|t| &t.files))?;
    progress.begin("read", all_known.then_some(rows));
    let st = validate_state(
        &mut intake,
        &StateSources {
            services: Some(&services_src),
            wallets: Some(&wallets_src),
            subscriptions: Some(&subs_src),
            items: Some(&items_src),
            price_tiers: tiers_src.as_ref(),
            tax_rates: tax_src.as_ref(),
            discounts: discounts_src.as_ref(),
            as_of,
        },
    )?;

    tracing::info!(
        phase = "read",
        services = st.services.len(),
        wallets = st.wallets.len(),
        subscriptions = st.subs.len(),
        items = st.items.len(),
        elapsed_s = t0.seconds(),
        rss_mib = crate::telemetry::rss_mib(),
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
    perf::memory::release_freed_memory();
    let t_usage = crate::telemetry::PhaseClock::start();
    // Usage: streamed, classified in parallel, deduplicated on usage_id and aggregated into
    // per-item sums. Nothing but the sums and the deferred rows is kept.
    let sources: Vec<&TableSource> = [deferred_usage_src.as_ref(), usage_src.as_ref()].into_iter().flatten().collect();
    let lineage = args.lineage || job.lineage;
    let usage =
        ingest_usage(&mut intake, &sources, &st, cutoff, lineage && args.mode == Mode::Run, &dedupe_limit(args, &job))?;
    let usage_rated = usage.rated_rows;
    let usage_qty = usage.qty;
    let usage_detail = usage.detail;
    let deferred_usage = usage.deferred;
    let lineage_rows = usage.lineage;
    tracing::info!(
        phase = "read",
        usage_rated,
        usage_deferred = deferred_usage.len(),
        elapsed_s = t0.seconds(),
        rss_mib = crate::telemetry::rss_mib(),
        "read: usage {usage_rated} rows rated, {} deferred ({:.2}s)",
        deferred_usage.len(),
        t0.seconds()
    );

    timings.push(t_usage.lap("read_usage"));
    let event_sources: Vec<&TableSource> =
        [deferred_events_src.as_ref(), events_src.as_ref()].into_iter().flatten().collect();
    let ((credits, credit_wallet), events) =
        validate_credits_and_events(&mut intake, credits_src.as_ref(), &event_sources, &st)?;
    if let Some(spec) = args.shard {
        crate::shard::count_reference_rows_once(&mut intake, spec);
    }
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
    let t1 = crate::telemetry::PhaseClock::start();
    let plan = partition::Plan::new(&st, &credits, &credit_wallet, &usage_qty, &usage_detail);
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
        rss_mib = crate::telemetry::rss_mib(),
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
    let syncer = crate::io::write::Syncer::start()?;
    // The inputs' checksums, for the manifest of a run that writes one, are taken on a thread
    // of their own while the run rates and writes.
    let input_hashes = (args.mode == Mode::Run)
        .then(|| {
            crate::io::checksum::InputHashes::start(
                intake.files.iter().map(|f| (f.path.clone(), f.sha256.clone())).collect(),
            )
        })
        .transpose()?;
    let dest = |dir| products::Dest {
        dir,
        progress: progress.as_ref(),
        format: job.output_format,
        layout: args.layout.unwrap_or(job.output_layout),
        as_of,
        syncer: &syncer,
    };
    let out = args.output.clone().unwrap_or_default();
    let store = LocalDir::new(out.clone());
    // The files actually read, symlinks followed (a state table may link into the output):
    // none may lie under what publishing replaces or removes. Checked before anything is
    // written.
    if args.mode == Mode::Run {
        let read: Vec<guard::Input> =
            intake.files.iter().map(|f| guard::Input { role: "file read", path: &f.path }).collect();
        guard::check_disjoint(&store.owned_paths(), &read)?;
    }
    let tmp = if publish { store.stage()? } else { PathBuf::new() };
    let remove_tmp = |e: Error| {
        if publish {
            store.discard(&tmp);
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
        rss_mib = crate::telemetry::rss_mib(),
        "rate: done ({:.2}s)",
        t1.seconds()
    );

    let t2 = crate::telemetry::PhaseClock::start();
    let asm = products::assemble(
        products::BuildInput {
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
    tracing::info!(phase = "assemble", elapsed_s = t0.seconds(), rss_mib = crate::telemetry::rss_mib(), "assembled");
    let meta = products::RunMeta { job: &job, run_id: &run_id, as_of, threads, intake: &intake, shard: args.shard };

    let mut summary = products::summary(&meta, &asm.products, ratio);
    if args.mode == Mode::Validate {
        summary.push_str(&products::reject_report(&intake, 3));
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
        let review = store.review();
        review.check_replaceable()?;
        let tmp = review.stage()?;
        let inputs = input_hashes.ok_or_else(|| Error::Internal("a run's input checksums were not taken".into()))?;
        products::write_manifest(&meta, &asm.products, &tmp, &asm.write_rejects(dest(&tmp))?, inputs)?;
        syncer.wait()?;
        crate::io::write::sync_dirs(&tmp)?;
        review.publish(&tmp)?;
        return Err(too_many(review.location()));
    }

    let t_write = crate::telemetry::PhaseClock::start();
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
            products::write_manifest(&meta, &asm.products, &tmp, &asm.write_tables(dest(&tmp), lineage, rated)?, inputs)
        })
        // The tables' fsyncs belong to the write phase: waited for before it is timed.
        .and_then(|()| syncer.wait())
        .and_then(|()| {
            timings.push(t_write.lap("write"));
            timings.push(t0.lap("total"));
            products::write_stats(&meta, &tmp, &timings)
        })
        .and_then(|()| crate::io::write::sync_dirs(&tmp));
    // Checked again: the output may have appeared (or changed) while the run ran.
    let result = result.and_then(|()| {
        if store.exists() && !args.force {
            Err(Error::OutputExists(out.clone()))
        } else {
            store.check_replaceable()
        }
    });
    if let Err(e) = result {
        store.discard(&tmp);
        return Err(e);
    }
    store.publish(&tmp)?;
    progress.end();
    tracing::info!(
        phase = "done",
        elapsed_s = t0.seconds(),
        peak_rss_mib = crate::telemetry::peak_rss_bytes().unwrap_or(0) >> 20,
        output = %out.display(),
        "done in {:.2}s",
        t0.seconds()
    );
    // Left to the process exit when it comes next (each after what borrows it).
    perf::memory::leave_to_exit(asm);
    perf::memory::leave_to_exit(plan);
    perf::memory::leave_to_exit(ext);
    perf::memory::leave_to_exit(deferred_usage);
    perf::memory::leave_to_exit(st);
    perf::memory::leave_to_exit(intake);
    Ok(RunReport { summary, published: Some(out) })
}

/// Accounts rated per chunk: the accounts, results and rows of the chunks in flight (about
/// three) are what the rating holds beyond the books, so a chunk is kept small enough for
/// that to stay a small part of a run's memory and large enough for its tasks to fill the
/// pool.
const ACCOUNTS_PER_CHUNK: usize = 8_192;

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

/// Rate every account, a chunk at a time, folding the results into a [`products::Books`]
/// and (when publishing) writing each chunk's rows of the tables in account order (see
/// [`products::RatedWriters`]). Chunk i+1 is rated on the pool while chunk i is folded and
/// encoded, so writing overlaps rating. Output order is account order whatever the thread
/// count.
fn rate_and_write<'a>(
    ctx: &RateCtx<'a>,
    plan: &partition::Plan<'a>,
    st: &'a State,
    lineage: bool,
    dest: Option<products::Dest>,
    run_id: &'a str,
    progress: &dyn crate::progress::Progress,
) -> Result<(products::Books<'a>, Option<products::RatedFiles>)> {
    use crate::rating::AccountIn;
    let as_of = ctx.as_of;
    let mut ledger = products::Books::new(st, lineage);
    // The rate phase's progress counts accounts, not the rows written.
    let mut writer = match dest {
        Some(d) => {
            let d = products::Dest { progress: &crate::progress::Silent, ..d };
            Some(products::RatedWriters::create(d, run_id, as_of)?)
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
    products::pipelined((0..plan.len()).step_by(ACCOUNTS_PER_CHUNK), rate, fold)?;
    Ok((ledger, writer.map(products::RatedWriters::finish).transpose()?))
}

/// The usage_id check's memory limit (the job's `dedupe_memory_mib`) and where it spills:
/// beside the output, named like the run's other temporary files so that a killed run's are
/// removed by the next; the system's temporary directory without one.
fn dedupe_limit(args: &RunArgs, job: &Job) -> crate::validate::DedupeLimit {
    let bytes = job.dedupe_memory_mib.saturating_mul(1 << 20);
    let beside_output = args.output.clone().map(LocalDir::new).and_then(|o| o.scratch());
    let (dir, prefix) = beside_output.unwrap_or_else(|| (std::env::temp_dir(), ".billrun-dedupe-".into()));
    crate::validate::DedupeLimit { bytes, dir, prefix }
}
