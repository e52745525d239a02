//! `billrun io-floor`: the time to merely decode a run's inputs (same files, same column
//! projection and type normalization as a run) and to encode its outputs (same writer
//! settings), with no validation or rating. The benchmark compares runs against it.

use crate::error::{Error, Result};
use crate::io::discover::{find_table, table_at, TableSource};
use crate::validate::{CREDITS, EVENTS, ITEMS, SERVICES, SUBSCRIPTIONS, USAGE, WALLETS};
use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct IoFloorArgs {
    pub state: std::path::PathBuf,
    pub usage: Option<std::path::PathBuf>,
    pub credits: Option<std::path::PathBuf>,
    pub events: Option<std::path::PathBuf>,
    /// A published run directory whose Parquet outputs are re-encoded.
    pub outputs: std::path::PathBuf,
    /// Worker threads (decode by row group and encode by file in parallel, like a run).
    pub threads: usize,
}

pub fn io_floor(a: &IoFloorArgs) -> Result<String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.max(1))
        .build()
        .map_err(|e| Error::Internal(e.to_string()))?;
    pool.install(|| io_floor_in_pool(a))
}

fn io_floor_in_pool(a: &IoFloorArgs) -> Result<String> {
    use rayon::prelude::*;
    let mut tables: Vec<(TableSource, &[crate::io::read::ColSpec])> = Vec::new();
    for (name, specs) in [
        ("services", SERVICES),
        ("wallets", WALLETS),
        ("subscriptions", SUBSCRIPTIONS),
        ("subscription_items", ITEMS),
        ("deferred_usage", USAGE),
        ("deferred_events", EVENTS),
    ] {
        if let Some(t) = find_table(&a.state, name)? {
            tables.push((t, specs));
        }
    }
    for (p, name, specs) in
        [(&a.usage, "usage", USAGE), (&a.credits, "credits", CREDITS), (&a.events, "external_events", EVENTS)]
    {
        if let Some(p) = p {
            tables.push((table_at(p, name)?, specs));
        }
    }
    let t = Instant::now();
    let mut units = Vec::new();
    for (src, specs) in &tables {
        for f in &src.files {
            for u in crate::io::read::units(f)? {
                units.push((f, *specs, u));
            }
        }
    }
    let rows: u64 = units
        .par_iter()
        .map(|(f, specs, u)| crate::io::read::read_unit(f, specs, u, |_| Ok(())))
        .collect::<Result<Vec<u64>>>()?
        .into_iter()
        .sum();
    let decode = t.elapsed().as_secs_f64();

    // Encode: load every Parquet output first (untimed), then time writing it again.
    let mut loaded: Vec<Vec<RecordBatch>> = Vec::new();
    let mut out_rows = 0usize;
    let mut entries: Vec<_> = std::fs::read_dir(&a.outputs)
        .map_err(|e| Error::io(format!("reading {}", a.outputs.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    entries.sort();
    for p in &entries {
        let f = std::fs::File::open(p).map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
        // Batches of 100k rows, like the chunks a run hands its writers.
        let r = ParquetRecordBatchReaderBuilder::try_new(f)
            .and_then(|b| b.with_batch_size(100_000).build())
            .map_err(|e| Error::input(p.display().to_string(), e.to_string()))?;
        let batches: Vec<RecordBatch> =
            r.collect::<std::result::Result<_, _>>().map_err(|e| Error::Internal(e.to_string()))?;
        out_rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
        loaded.push(batches);
    }
    let tmp = tempdir_beside(&a.outputs)?;
    let t = Instant::now();
    loaded.par_iter().enumerate().try_for_each(|(i, batches)| -> Result<()> {
        let Some(first) = batches.first() else { return Ok(()) };
        crate::io::write::write_parquet(&tmp.join(format!("{i}.parquet")), &first.schema(), batches)
    })?;
    let encode = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(format!(
        "{{\"input_rows\": {rows}, \"decode_seconds\": {decode:.3}, \"output_rows\": {out_rows}, \"encode_seconds\": {encode:.3}, \"total_seconds\": {:.3}}}\n",
        decode + encode
    ))
}

fn tempdir_beside(p: &Path) -> Result<std::path::PathBuf> {
    let d = p.with_file_name(format!(".io-floor-{}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    Ok(d)
}
