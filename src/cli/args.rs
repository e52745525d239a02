//! The command line (SPEC §8), as clap parses it; the library never sees clap.

use billrun::pipeline::{Mode, RunArgs};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "billrun", version, about = "Batch billing-run processor")]
pub struct Cli {
    /// No progress on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Progress lines as plain text or as JSON objects (one per line, for schedulers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run a billing run and publish its outputs atomically.
    Run(RunOpts),
    /// Validate the same inputs: report every reject and the totals, write nothing.
    Validate(RunOpts),
    /// Generate a deterministic synthetic dataset for a run.
    Generate(GenOpts),
    /// Split a state and/or new inputs into N shards (SPEC §10.1).
    Shard(ShardOpts),
    /// Merge the outputs of a sharded run's shards into one run (SPEC §10.1).
    Merge(MergeOpts),
    /// A finance summary of a published run's output directory.
    Report(ReportOpts),
    /// Re-check a published run from its files alone.
    Verify {
        /// A published run's output directory.
        dir: PathBuf,
    },
    /// Time to merely decode a run's inputs and encode its outputs (benchmark floor).
    #[command(hide = true)]
    IoFloor(IoFloorOpts),
    /// Print a table file (or every table of a run directory) as CSV text.
    Cat {
        /// A table file (.parquet or .csv) or a run directory.
        path: PathBuf,
    },
}

#[derive(Args)]
pub struct ReportOpts {
    /// A published run's output directory.
    pub dir: PathBuf,
    /// Also write a self-contained HTML report (charts included) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Show what changed since a previous run's output directory (review a --dry-run).
    #[arg(long, value_name = "PREV_DIR")]
    pub against: Option<PathBuf>,
}

#[derive(Args)]
pub struct RunOpts {
    /// The job definition (`jobs/*.toml`: name, recurrence, steps, thresholds, rounding).
    #[arg(long, value_name = "FILE")]
    pub job: PathBuf,
    /// The state: `services`, `wallets`, `subscriptions`, `subscription_items` (and
    /// optionally `deferred_usage`, `deferred_events`), each `<name>.parquet`, `<name>.csv`
    /// or a directory of part files. A previous run's output is one.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// Where the run is published, all at once (required by `run` unless --dry-run).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Usage recorded since the previous run: a .parquet or .csv file, or a directory of parts.
    #[arg(long, value_name = "PATH")]
    pub usage: Option<PathBuf>,
    /// Credits (top-ups and payments received), likewise.
    #[arg(long, value_name = "PATH")]
    pub credits: Option<PathBuf>,
    /// Store events of externally managed subscriptions, likewise.
    #[arg(long, value_name = "PATH")]
    pub events: Option<PathBuf>,
    /// The run's date (cutoff = its 00:00 UTC); defaults to the state's previous as_of +
    /// the job's recurrence.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub as_of: Option<NaiveDate>,
    /// Worker threads; defaults to the job's `threads`. Outputs do not depend on it.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Compute and report everything, publish nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace an existing output directory.
    #[arg(long)]
    pub force: bool,
    /// Output layout: `flat` (one file per table) or `hive`
    /// (`<table>/as_of=YYYY-MM-DD/part-NNNNN.parquet`); overrides the job's `output_layout`.
    #[arg(long, value_parser = billrun::domain::job::Layout::parse)]
    pub layout: Option<billrun::domain::job::Layout>,
    /// Also write `usage_lineage`: every rated usage_id with the transaction that charged it.
    #[arg(long)]
    pub lineage: bool,
    /// Run shard I of N (SPEC §10.1): `I/N`, or `auto/N` with I from JOB_COMPLETION_INDEX,
    /// AWS_BATCH_JOB_ARRAY_INDEX or SLURM_ARRAY_TASK_ID. Every row read must belong to it.
    #[arg(long, value_name = "I/N", value_parser = billrun::shard::ShardSpec::parse)]
    pub shard: Option<billrun::shard::ShardSpec>,
}

#[derive(Args)]
pub struct ShardOpts {
    /// The number of shards N.
    #[arg(long, value_name = "N")]
    pub shard_count: u32,
    /// Where the shards go: `DIR/shard=I/state/<table>/`, `usage/`, `credits/`, `events/`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    #[arg(long, value_name = "PATH")]
    pub usage: Option<PathBuf>,
    #[arg(long, value_name = "PATH")]
    pub credits: Option<PathBuf>,
    #[arg(long, value_name = "PATH")]
    pub events: Option<PathBuf>,
    #[arg(long, default_value = "parquet", value_parser = billrun::domain::job::OutputFormat::parse)]
    pub format: billrun::domain::job::OutputFormat,
}

#[derive(Args)]
pub struct MergeOpts {
    /// The merged run's directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace a previous merged run at `--out`.
    #[arg(long)]
    pub force: bool,
    /// The shard runs' output directories, one per shard.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
}

pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    billrun::domain::parse_date_strict(s).ok_or_else(|| format!("not a date (YYYY-MM-DD): {s}"))
}

#[derive(Args)]
pub struct GenOpts {
    /// Number of accounts (each with one wallet).
    #[arg(long)]
    pub accounts: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The as_of of the run the data is for.
    #[arg(long, default_value = "2026-11-22", value_parser = parse_date)]
    pub as_of: NaiveDate,
    #[arg(long, default_value = "parquet", value_parser = billrun::domain::job::OutputFormat::parse)]
    pub format: billrun::domain::job::OutputFormat,
    #[arg(long)]
    pub out: PathBuf,
    /// Also generate SPEC v2 §9 price plans: every pricing model with its tiers, taxes with
    /// a rate change, gross and net prices, and discounts of both kinds (without the flag the
    /// bytes are those of a v1 dataset).
    #[arg(long)]
    pub pricing: bool,
}

#[derive(Args)]
pub struct IoFloorOpts {
    #[arg(long)]
    pub state: PathBuf,
    #[arg(long)]
    pub usage: Option<PathBuf>,
    #[arg(long)]
    pub credits: Option<PathBuf>,
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// A published run directory whose Parquet outputs are re-encoded.
    #[arg(long)]
    pub outputs: PathBuf,
    /// Worker threads (decode by row group and encode by file in parallel, like a run).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

impl IoFloorOpts {
    pub fn into_args(self) -> billrun::tools::iofloor::IoFloorArgs {
        let IoFloorOpts { state, usage, credits, events, outputs, threads } = self;
        billrun::tools::iofloor::IoFloorArgs { state, usage, credits, events, outputs, threads }
    }
}

impl RunOpts {
    /// The library's arguments of a run in `mode`.
    pub fn into_args(self, mode: Mode) -> RunArgs {
        RunArgs {
            job: self.job,
            state: self.state,
            output: self.output,
            usage: self.usage,
            credits: self.credits,
            events: self.events,
            as_of: self.as_of,
            threads: self.threads,
            force: self.force,
            shard: self.shard,
            mode,
            layout: self.layout,
            lineage: self.lineage,
        }
    }
}
