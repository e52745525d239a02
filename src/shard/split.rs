//! `billrun shard` (SPEC §10.1): split a state and/or new inputs into `N` shard directories,
//! `DIR/shard=I/state/<table>/`, `DIR/shard=I/usage/`, `DIR/shard=I/credits/`,
//! `DIR/shard=I/events/`, each a directory of part files (SPEC §1).
//!
//! Streaming: each input file is read a batch at a time, every column as stored, and each
//! batch's rows are handed to the shards' writers (one part file per input file and shard,
//! named after the input file, so invocations over disjoint input files never collide and a
//! repeated one writes the same bytes). Memory: the batch in flight, the writers' row groups,
//! and the routing maps of the state's subscriptions and wallets ([`super::Router`]). Every
//! shard gets a part of every input file, empty or not. A part is written under a temporary
//! name and renamed when complete.

use super::{routing_columns, Router};
use crate::domain::job::OutputFormat;
use crate::error::{Error, Result};
use crate::io::discover::{find_table, table_at, Format, SourceFile, TableSource};
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchReader, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The state tables a shard directory holds (those the state has).
const STATE_TABLES: [&str; 9] = [
    "services",
    "price_tiers",
    "tax_rates",
    "wallets",
    "subscriptions",
    "subscription_items",
    "discounts",
    "deferred_usage",
    "deferred_events",
];

/// What to split, into how many shards, where.
#[derive(Clone, Debug)]
pub struct SplitArgs {
    pub count: u32,
    pub out: PathBuf,
    pub state: Option<PathBuf>,
    pub usage: Option<PathBuf>,
    pub credits: Option<PathBuf>,
    pub events: Option<PathBuf>,
    pub format: OutputFormat,
}

/// Rows a batch holds while it is split.
const BATCH_ROWS: usize = 65_536;

pub fn split(a: &SplitArgs) -> Result<String> {
    if a.count == 0 {
        return Err(Error::Usage("--shard-count must be >= 1".into()));
    }
    let mut inputs: Vec<crate::io::guard::Input> = Vec::new();
    for (role, p) in [("--state", &a.state), ("--usage", &a.usage), ("--credits", &a.credits), ("--events", &a.events)]
    {
        if let Some(path) = p {
            inputs.push(crate::io::guard::Input { role, path });
        }
    }
    let written =
        [crate::io::guard::Written { what: "--out", path: crate::io::guard::resolve(&a.out)?, prefix: false }];
    crate::io::guard::check_disjoint(&written, &inputs)?;

    // Usage, items, credits and events route through the state's subscriptions and wallets.
    let needs_state = a.usage.is_some() || a.credits.is_some() || a.events.is_some();
    // A merged run routes the new inputs (its subscriptions and wallets, from every shard)
    // and is not split again: each shard run reads its own `shard=I/` of it.
    let merged = a.state.as_deref().and_then(super::merged_shards).is_some();
    match &a.state {
        Some(_) if merged => {}
        Some(state) => {
            for t in ["wallets", "subscriptions"] {
                if find_table(state, t)?.is_none() {
                    return Err(Error::Usage(format!("--state {}: no {t} table", state.display())));
                }
            }
        }
        None if needs_state => {
            return Err(Error::Usage(
                "--state is required to split usage, credits or events: they go to their account's shard".into(),
            ))
        }
        None => {}
    }
    let router = Router::from_state(a.state.as_deref(), a.count)?;
    let mut jobs: Vec<(TableSource, String)> = Vec::new();
    if let Some(state) = a.state.as_ref().filter(|_| !merged) {
        for name in STATE_TABLES {
            if let Some(src) = find_table(state, name)? {
                jobs.push((src, format!("state/{name}")));
            }
        }
    }
    for (p, name, dir) in
        [(&a.usage, "usage", "usage"), (&a.credits, "credits", "credits"), (&a.events, "external_events", "events")]
    {
        if let Some(p) = p {
            jobs.push((table_at(p, name)?, dir.to_string()));
        }
    }
    // Every shard gets every table's directory, even from an input of no files.
    for (_, dir) in &jobs {
        for i in 0..a.count {
            let d = a.out.join(format!("shard={i}")).join(dir);
            std::fs::create_dir_all(&d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
    }
    // The tables side by side (each one's files in order): a table's split is mostly one
    // thread's decoding, and the state's tables would otherwise wait for one another.
    use rayon::prelude::*;
    let rows: u64 = jobs
        .par_iter()
        .map(|(src, dir)| -> Result<u64> {
            let mut rows = 0;
            for file in &src.files {
                rows += split_file(file, src.table, &router, &a.out, dir, a.format)?;
            }
            Ok(rows)
        })
        .collect::<Result<Vec<u64>>>()?
        .into_iter()
        .sum();
    Ok(format!("split {rows} rows of {} tables into {} shards under {}\n", jobs.len(), a.count, a.out.display()))
}

/// The part name of an input file: its name (relative to the argument that named it), its
/// separators made dashes, and a digest of its bytes, so that two inputs of one name (from
/// two invocations, or `x.csv` beside `x.parquet`) never write one part, and the same input
/// split again writes the same part.
fn part_name(file: &SourceFile, format: OutputFormat) -> Result<String> {
    let stem = file.name.rsplit_once('.').map_or(file.name.as_str(), |(s, _)| s);
    let safe: String = stem.chars().map(|c| if c == '/' || c == '\\' || c == '=' { '-' } else { c }).collect();
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut f =
        std::fs::File::open(&file.path).map_err(|e| Error::input(file.name.clone(), format!("cannot open: {e}")))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        use std::io::Read;
        let n = f.read(&mut buf).map_err(|e| Error::input(file.name.clone(), format!("reading: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("part-{safe}-{:016x}.{}", h.digest(), format.ext()))
}

/// Split one input file of `table` among the shards; returns its rows.
fn split_file(
    file: &SourceFile,
    table: &str,
    router: &Router,
    out: &Path,
    dir: &str,
    format: OutputFormat,
) -> Result<u64> {
    let name = part_name(file, format)?;
    let mut writers: Vec<Option<PartWriter>> = (0..router.n).map(|_| None).collect();
    let mut rows = 0u64;
    let cols = routing_columns(table);
    let mut handle = |batch: RecordBatch, writers: &mut Vec<Option<PartWriter>>| -> Result<()> {
        for (s, w) in writers.iter_mut().enumerate() {
            if w.is_none() {
                let path = out.join(format!("shard={s}")).join(dir).join(&name);
                *w = Some(PartWriter::create(path, batch.schema(), format)?);
            }
        }
        rows += batch.num_rows() as u64;
        let keys: Vec<Option<StringArray>> = cols.iter().map(|c| text_column(&batch, c)).collect();
        let every = super::REFERENCE_TABLES.contains(&table);
        let mut per_shard =
            if every { vec![Vec::new(); writers.len()] } else { route_rows(router, table, &keys, batch.num_rows()) };
        // Each shard's rows taken and encoded on the pool, the shards side by side (the
        // encoding is most of a split).
        use rayon::prelude::*;
        writers.par_iter_mut().zip(per_shard.par_iter_mut()).try_for_each(|(w, rows)| -> Result<()> {
            let w = w.as_mut().expect("created above");
            if every {
                w.write(&batch)?;
            } else if !rows.is_empty() {
                let idx = UInt32Array::from(std::mem::take(rows));
                let part = arrow_select::take::take_record_batch(&batch, &idx)
                    .map_err(|e| Error::Internal(format!("splitting {}: {e}", file.name)))?;
                w.write(&part)?;
            }
            Ok(())
        })
    };
    match file.format {
        Format::Parquet => {
            let fh = std::fs::File::open(&file.path)
                .map_err(|e| Error::input(file.name.clone(), format!("cannot open: {e}")))?;
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(fh)
                .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
                .map_err(|e| Error::input(file.name.clone(), format!("not a readable Parquet file: {e}")))?;
            let schema = reader.schema();
            let mut reader = reader;
            let mut any = false;
            // The next batch decoded while this one is routed and written.
            let mut next = reader.next();
            while let Some(batch) = next {
                let batch = batch.map_err(|e| Error::input(file.name.clone(), format!("reading: {e}")))?;
                any = true;
                let (n, done) = rayon::join(|| reader.next(), || handle(batch, &mut writers));
                done?;
                next = n;
            }
            if !any {
                handle(RecordBatch::new_empty(schema), &mut writers)?;
            }
        }
        Format::Csv => {
            let fh = std::fs::File::open(&file.path)
                .map_err(|e| Error::input(file.name.clone(), format!("cannot open: {e}")))?;
            let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(std::io::BufReader::new(fh));
            let header: Vec<String> = rdr
                .headers()
                .map_err(|e| Error::input(file.name.clone(), format!("cannot read CSV header: {e}")))?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').to_string())
                .collect();
            let schema =
                Arc::new(Schema::new(header.iter().map(|h| Field::new(h, DataType::Utf8, true)).collect::<Vec<_>>()));
            let mut cols: Vec<Vec<Option<String>>> = vec![Vec::new(); header.len()];
            let mut rec = csv::StringRecord::new();
            let mut flush = |cols: &mut Vec<Vec<Option<String>>>, writers: &mut Vec<Option<PartWriter>>| {
                let arrays: Vec<ArrayRef> =
                    cols.iter_mut().map(|c| Arc::new(StringArray::from(std::mem::take(c))) as ArrayRef).collect();
                let batch = RecordBatch::try_new(schema.clone(), arrays)
                    .map_err(|e| Error::Internal(format!("splitting {}: {e}", file.name)))?;
                handle(batch, writers)
            };
            let mut n = 0usize;
            loop {
                let more = rdr
                    .read_record(&mut rec)
                    .map_err(|e| Error::input(file.name.clone(), format!("unreadable CSV: {e}")))?;
                if !more {
                    break;
                }
                for (k, c) in cols.iter_mut().enumerate() {
                    c.push(rec.get(k).filter(|v| !v.is_empty()).map(str::to_string));
                }
                n += 1;
                if n == BATCH_ROWS {
                    flush(&mut cols, &mut writers)?;
                    n = 0;
                }
            }
            if n > 0 || writers.iter().all(Option::is_none) {
                flush(&mut cols, &mut writers)?;
            }
        }
    }
    for w in writers.into_iter().flatten() {
        w.finish()?;
    }
    Ok(rows)
}

/// The rows of a batch of `table` (its routing columns `keys`) by shard, each shard's in
/// order: routed on the pool in chunks, and a row whose routing cells are the previous
/// row's (usage comes grouped by subscription) without a lookup.
fn route_rows(router: &Router, table: &str, keys: &[Option<StringArray>], rows: usize) -> Vec<Vec<u32>> {
    use rayon::prelude::*;
    const CHUNK: usize = 8192;
    fn cell(i: usize, k: &Option<StringArray>) -> Option<&str> {
        k.as_ref().filter(|a| a.is_valid(i)).map(|a| a.value(i)).filter(|v| !v.is_empty())
    }
    let chunks: Vec<Vec<u32>> = (0..rows.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let (mut cells, mut last) = (Vec::with_capacity(keys.len()), Vec::with_capacity(keys.len()));
            let mut shard = 0;
            (c * CHUNK..(c * CHUNK + CHUNK).min(rows))
                .map(|i| {
                    cells.clear();
                    cells.extend(keys.iter().map(|k| cell(i, k)));
                    if last.is_empty() || cells != last {
                        shard = router.shard(table, &cells);
                        std::mem::swap(&mut cells, &mut last);
                    }
                    shard
                })
                .collect()
        })
        .collect();
    let mut per_shard = vec![Vec::new(); router.n as usize];
    for (i, s) in chunks.into_iter().flatten().enumerate() {
        per_shard[s as usize].push(i as u32);
    }
    per_shard
}

/// Column `name` of `batch` as text (any string or integer type cast), if it has one.
fn text_column(batch: &RecordBatch, name: &str) -> Option<StringArray> {
    let c = batch.column_by_name(name)?;
    let s = arrow_cast::cast(c, &DataType::Utf8).ok()?;
    s.as_any().downcast_ref::<StringArray>().cloned()
}

/// A part is an intermediate file, read once by its shard's run: written for speed, with
/// LZ4 rather than zstd, without dictionaries (ids and times, most of a part, are unique)
/// and without statistics (nothing reads them).
fn part_properties() -> parquet::file::properties::WriterProperties {
    use parquet::basic::Compression;
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_max_row_group_row_count(Some(crate::io::write::ROW_GROUP_ROWS))
        .build()
}

/// One part file being written, under a temporary name until [`PartWriter::finish`].
struct PartWriter {
    path: PathBuf,
    tmp: PathBuf,
    sink: Sink,
}

enum Sink {
    Parquet(Box<parquet::arrow::ArrowWriter<std::fs::File>>),
    Csv(Box<csv::Writer<std::io::BufWriter<std::fs::File>>>),
}

impl PartWriter {
    fn create(path: PathBuf, schema: Arc<Schema>, format: OutputFormat) -> Result<PartWriter> {
        let dir = path.parent().expect("a part file lies in a directory");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let tmp = dir.join(format!(".{}.tmp", path.file_name().unwrap_or_default().to_string_lossy()));
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let sink = match format {
            OutputFormat::Parquet => Sink::Parquet(Box::new(
                parquet::arrow::ArrowWriter::try_new(f, schema, Some(part_properties()))
                    .map_err(|e| Error::Internal(format!("writing {}: {e}", tmp.display())))?,
            )),
            OutputFormat::Csv => {
                let mut w = csv::Writer::from_writer(std::io::BufWriter::new(f));
                w.write_record(schema.fields().iter().map(|f| f.name().as_str()))
                    .map_err(|e| Error::Internal(format!("writing {}: {e}", tmp.display())))?;
                Sink::Csv(Box::new(w))
            }
        };
        Ok(PartWriter { path, tmp, sink })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let err = |e: String| Error::Internal(format!("writing {}: {e}", self.tmp.display()));
        match &mut self.sink {
            Sink::Parquet(w) => w.write(batch).map_err(|e| err(e.to_string())),
            Sink::Csv(w) => {
                let opts = arrow_cast::display::FormatOptions::default();
                let fmts = batch
                    .columns()
                    .iter()
                    .map(|c| arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &opts))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| err(e.to_string()))?;
                for i in 0..batch.num_rows() {
                    let row: Vec<String> = batch
                        .columns()
                        .iter()
                        .zip(&fmts)
                        .map(|(c, f)| if c.is_valid(i) { f.value(i).to_string() } else { String::new() })
                        .collect();
                    w.write_record(&row).map_err(|e| err(e.to_string()))?;
                }
                Ok(())
            }
        }
    }

    fn finish(self) -> Result<()> {
        let err = |e: String| Error::Internal(format!("writing {}: {e}", self.tmp.display()));
        match self.sink {
            Sink::Parquet(w) => {
                w.close().map_err(|e| err(e.to_string()))?;
            }
            Sink::Csv(mut w) => w.flush().map_err(|e| err(e.to_string()))?,
        }
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| Error::io(format!("renaming {} to {}", self.tmp.display(), self.path.display()), e))
    }
}
