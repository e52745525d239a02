//! Encoding output tables (SPEC §5) as Parquet (Decimal128(38,18), Date32,
//! Timestamp(µs, UTC), zstd) or CSV. The only module that knows output file formats.

use crate::domain::job::OutputFormat;
use crate::domain::{format_ts, Micros};
use crate::error::{Error, Result};
use crate::io::spool::Spool;
use arrow_array::builder::{Date32Builder, Decimal128Builder, Int64Builder, TimestampMicrosecondBuilder};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::NaiveDate;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rust_decimal::Decimal;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

/// Scale of every Decimal128 output column.
pub const OUT_SCALE: u32 = 18;
pub const OUT_PRECISION: u8 = 38;
/// Rows per Parquet row group: large enough for warehouse loaders (DuckDB writes 122,880),
/// small enough that the groups a run encodes at once (a writer holds its group's pages
/// until the group ends) stay a small part of its memory; a group is one read unit
/// (`io::read::UNIT_ROWS`).
pub const ROW_GROUP_ROWS: usize = 1 << 18;

pub enum ColData {
    Str(arrow_array::StringArray),
    Dec(Vec<Option<Decimal>>),
    Date(Vec<Option<NaiveDate>>),
    Ts(Vec<Option<Micros>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
}

impl ColData {
    fn len(&self) -> usize {
        match self {
            ColData::Bool(v) => v.len(),
            ColData::Str(v) => v.len(),
            ColData::Dec(v) => v.len(),
            ColData::Date(v) => v.len(),
            ColData::Ts(v) => v.len(),
            ColData::Int(v) => v.len(),
        }
    }
}

pub struct OutCol {
    pub name: &'static str,
    pub nullable: bool,
    pub data: ColData,
}

impl OutCol {
    pub fn str<S: AsRef<str>>(name: &'static str, nullable: bool, v: impl IntoIterator<Item = Option<S>>) -> Self {
        // Values sized for ids up front (collect() starts at 1 KiB and doubles: ~10 copies
        // of a 100k-row chunk's text); the unused tail of the reservation is never touched.
        let v = v.into_iter();
        let rows = v.size_hint().0;
        let mut b = arrow_array::builder::StringBuilder::with_capacity(rows, rows * 24);
        v.for_each(|x| b.append_option(x));
        OutCol { name, nullable, data: ColData::Str(b.finish()) }
    }
    pub fn dec(name: &'static str, nullable: bool, v: impl IntoIterator<Item = Option<Decimal>>) -> Self {
        OutCol { name, nullable, data: ColData::Dec(v.into_iter().collect()) }
    }
    pub fn date(name: &'static str, nullable: bool, v: impl IntoIterator<Item = Option<NaiveDate>>) -> Self {
        OutCol { name, nullable, data: ColData::Date(v.into_iter().collect()) }
    }
    pub fn ts(name: &'static str, nullable: bool, v: impl IntoIterator<Item = Option<Micros>>) -> Self {
        OutCol { name, nullable, data: ColData::Ts(v.into_iter().collect()) }
    }
    pub fn int(name: &'static str, nullable: bool, v: impl IntoIterator<Item = Option<i64>>) -> Self {
        OutCol { name, nullable, data: ColData::Int(v.into_iter().collect()) }
    }
    pub fn bool(name: &'static str, nullable: bool, v: impl IntoIterator<Item = Option<bool>>) -> Self {
        OutCol { name, nullable, data: ColData::Bool(v.into_iter().collect()) }
    }
}

/// A column-major output table.
pub struct OutTable {
    pub name: &'static str,
    pub cols: Vec<OutCol>,
}

impl OutTable {
    pub fn new(name: &'static str) -> Self {
        OutTable { name, cols: Vec::new() }
    }
    /// A table whose columns are built in parallel, one task per column builder.
    pub fn par_columns(name: &'static str, builders: &[&(dyn Fn() -> OutCol + Sync)]) -> Self {
        use rayon::prelude::*;
        OutTable { name, cols: builders.par_iter().map(|f| f()).collect() }
    }
    /// A string column, built straight into an Arrow array (no per-cell `String`).
    pub fn str<S: AsRef<str>>(
        mut self,
        name: &'static str,
        nullable: bool,
        v: impl IntoIterator<Item = Option<S>>,
    ) -> Self {
        self.cols.push(OutCol::str(name, nullable, v));
        self
    }
    pub fn dec(mut self, name: &'static str, nullable: bool, v: impl IntoIterator<Item = Option<Decimal>>) -> Self {
        self.cols.push(OutCol::dec(name, nullable, v));
        self
    }
    pub fn date(mut self, name: &'static str, nullable: bool, v: impl IntoIterator<Item = Option<NaiveDate>>) -> Self {
        self.cols.push(OutCol::date(name, nullable, v));
        self
    }
    pub fn ts(mut self, name: &'static str, nullable: bool, v: impl IntoIterator<Item = Option<Micros>>) -> Self {
        self.cols.push(OutCol::ts(name, nullable, v));
        self
    }
    pub fn int(mut self, name: &'static str, nullable: bool, v: impl IntoIterator<Item = Option<i64>>) -> Self {
        self.cols.push(OutCol::int(name, nullable, v));
        self
    }
    pub fn bool(mut self, name: &'static str, nullable: bool, v: impl IntoIterator<Item = Option<bool>>) -> Self {
        self.cols.push(OutCol::bool(name, nullable, v));
        self
    }
    pub fn rows(&self) -> usize {
        self.cols.first().map_or(0, |c| c.data.len())
    }

    pub fn schema(&self) -> Schema {
        Schema::new(
            self.cols
                .iter()
                .map(|c| {
                    let dt = match c.data {
                        ColData::Str(_) => DataType::Utf8,
                        ColData::Dec(_) => DataType::Decimal128(OUT_PRECISION, OUT_SCALE as i8),
                        ColData::Date(_) => DataType::Date32,
                        ColData::Ts(_) => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                        ColData::Int(_) => DataType::Int64,
                        ColData::Bool(_) => DataType::Boolean,
                    };
                    Field::new(c.name, dt, c.nullable)
                })
                .collect::<Vec<_>>(),
        )
    }

    fn record_batch(&self) -> Result<RecordBatch> {
        use rayon::prelude::*;
        // Columns are converted in parallel (a chunk's are independent).
        let arrays: Vec<ArrayRef> = self
            .cols
            .par_iter()
            .map(|c| -> Result<ArrayRef> {
                Ok(match &c.data {
                    ColData::Str(v) => Arc::new(v.clone()),
                    ColData::Dec(v) => {
                        let mut b = Decimal128Builder::with_capacity(v.len());
                        for x in v {
                            match x {
                                Some(d) => b.append_value(to_i128_scaled(*d).ok_or_else(|| {
                                    Error::Internal(format!(
                                        "{}.{}: {d} does not fit Decimal128(38,18)",
                                        self.name, c.name
                                    ))
                                })?),
                                None => b.append_null(),
                            }
                        }
                        Arc::new(
                            b.finish()
                                .with_precision_and_scale(OUT_PRECISION, OUT_SCALE as i8)
                                .map_err(|e| Error::Internal(e.to_string()))?,
                        )
                    }
                    ColData::Date(v) => {
                        let mut b = Date32Builder::with_capacity(v.len());
                        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
                        for x in v {
                            b.append_option(x.map(|d| (d - epoch).num_days() as i32));
                        }
                        Arc::new(b.finish())
                    }
                    ColData::Ts(v) => {
                        let mut b = TimestampMicrosecondBuilder::with_capacity(v.len());
                        for x in v {
                            b.append_option(*x);
                        }
                        Arc::new(b.finish().with_timezone("UTC"))
                    }
                    ColData::Int(v) => {
                        let mut b = Int64Builder::with_capacity(v.len());
                        for x in v {
                            b.append_option(*x);
                        }
                        Arc::new(b.finish())
                    }
                    ColData::Bool(v) => Arc::new(arrow_array::BooleanArray::from(v.clone())),
                })
            })
            .collect::<Result<_>>()?;
        RecordBatch::try_new(Arc::new(self.schema()), arrays)
            .map_err(|e| Error::Internal(format!("building {}: {e}", self.name)))
    }

    /// Write the table to `dir/<name>.<ext>`; returns the file name.
    pub fn write(&self, dir: &Path, format: OutputFormat) -> Result<String> {
        let fname = format!("{}.{}", self.name, format.ext());
        let mut w = TableWriter::create(&dir.join(&fname), &self.schema(), format)?;
        w.append(self)?;
        w.finish()?;
        Ok(fname)
    }
}

/// Parquet writer settings of every output: zstd level 1 (measured: level 3 costs ~45 %
/// more encode time for a few percent of size), dictionary pages, large row groups.
pub fn writer_properties() -> WriterProperties {
    let plain = PLAIN_COLUMNS.iter().map(|c| parquet::schema::types::ColumnPath::from(*c));
    plain
        .fold(WriterProperties::builder(), |b, c| b.set_column_dictionary_enabled(c, false))
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// Output columns written without a dictionary: ids and times, unique or nearly so per row.
/// Interning them cost ~4 % of a run's instructions for nothing: their dictionary outgrows
/// its 1 MiB page and the writer falls back to plain encoding anyway (and zstd packs the
/// plain ids smaller).
/// Columns whose values repeat (codes, currencies, services, dates, run ids) keep it, and
/// so do the decimals: balances and amounts repeat enough that dropping theirs made files
/// larger.
const PLAIN_COLUMNS: &[&str] = &[
    "transaction_id",
    "usage_id",
    "event_id",
    "wallet_id",
    "account_id",
    "subscription_id",
    "key",
    "detail",
    "row",
    "event_time",
    "updated_at",
    "expires_at",
];

/// Encode `batches` (each with `schema`) as one Parquet file with the writer every output
/// uses, and fsync it (the I/O floor's encode: the same work a run's writing does).
pub fn write_parquet(path: &Path, schema: &Schema, batches: &[RecordBatch]) -> Result<()> {
    let mut w = TableWriter::create(path, schema, OutputFormat::Parquet)?;
    let ctx = || format!("writing {}", path.display());
    if let Sink::Parquet(sink) = &mut w.sink {
        for b in batches {
            sink.write(b).map_err(|e| parquet_io(ctx(), e))?;
        }
    }
    w.finish().map(drop)
}

/// A file being written chunk by chunk (every chunk with the same columns).
pub struct TableWriter {
    path: std::path::PathBuf,
    sink: Sink,
}

enum Sink {
    Parquet(Box<ParquetSink>),
    /// CSV: the header is written at creation, rows by [`csv_rows`].
    Csv(Box<FileOut>),
}

/// Rows of a CSV piece (see `TableWriter::append`).
const CSV_PIECE_ROWS: usize = 8192;

/// Rows `rows` of `t` as CSV records (the crate's default writer: quoted where needed).
fn csv_rows(t: &OutTable, rows: std::ops::Range<usize>) -> std::io::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::with_capacity(rows.len() * 32 * t.cols.len()));
    let mut cell = String::new();
    for i in rows {
        for c in &t.cols {
            cell.clear();
            write_cell(&c.data, i, &mut cell);
            w.write_field(&cell)?;
        }
        w.write_record(None::<&[u8]>)?;
    }
    w.into_inner().map_err(|e| e.into_error())
}

/// An output file's bytes, hashed (SHA-256, for the manifest) as they go out: by the thread
/// that writes them, or by a thread of the file's own ([`Spool`]).
enum FileOut {
    Here(std::io::BufWriter<crate::io::checksum::Hashed<std::fs::File>>),
    Spooled(Spool),
}

impl FileOut {
    /// Write the rest: the file (all written) and its SHA-256, hex.
    fn close(self) -> std::io::Result<(std::fs::File, String)> {
        match self {
            FileOut::Here(w) => {
                let crate::io::checksum::Hashed { inner, hash } = w.into_inner().map_err(|e| e.into_error())?;
                Ok((inner, hash.hex()))
            }
            FileOut::Spooled(s) => s.close(),
        }
    }
}

impl std::io::Write for FileOut {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            FileOut::Here(w) => w.write(bytes),
            FileOut::Spooled(s) => s.write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            FileOut::Here(w) => w.flush(),
            FileOut::Spooled(s) => s.flush(),
        }
    }
}

/// A Parquet file whose columns are encoded in parallel (one task per column), through
/// parquet's low-level column writers — the path `ArrowWriter` takes, with the same row group
/// boundaries ([`ROW_GROUP_ROWS`]), so the bytes are those `ArrowWriter` writes.
struct ParquetSink {
    file: SerializedFileWriter<FileOut>,
    factory: ArrowRowGroupWriterFactory,
    fields: Vec<arrow_schema::FieldRef>,
    /// The row group being encoded: its column writers and rows.
    group: Option<(Vec<ArrowColumnWriter>, usize)>,
}

impl ParquetSink {
    fn create(buf: FileOut, schema: &Schema) -> parquet::errors::Result<ParquetSink> {
        // ArrowWriter sets up the schema, the properties and the embedded Arrow schema.
        let (file, factory) =
            ArrowWriter::try_new(buf, Arc::new(schema.clone()), Some(writer_properties()))?.into_serialized_writer()?;
        Ok(ParquetSink { file, factory, fields: schema.fields().iter().cloned().collect(), group: None })
    }

    fn write(&mut self, batch: &RecordBatch) -> parquet::errors::Result<()> {
        use rayon::prelude::*;
        let mut rest = batch.clone();
        while rest.num_rows() > 0 {
            let (writers, rows) = match &mut self.group {
                Some(g) => g,
                g => g.insert((self.factory.create_column_writers(self.file.flushed_row_groups().len())?, 0)),
            };
            let take = rest.num_rows().min(ROW_GROUP_ROWS - *rows);
            let part = rest.slice(0, take);
            rest = rest.slice(take, rest.num_rows() - take);
            // A flat schema: one leaf, so one column writer, per field.
            writers.par_iter_mut().zip(self.fields.par_iter()).zip(part.columns().par_iter()).try_for_each(
                |((w, field), col)| -> parquet::errors::Result<()> {
                    for leaf in compute_leaves(field, col)? {
                        w.write(&leaf)?;
                    }
                    Ok(())
                },
            )?;
            *rows += take;
            if *rows >= ROW_GROUP_ROWS {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> parquet::errors::Result<()> {
        use rayon::prelude::*;
        let Some((writers, _)) = self.group.take() else { return Ok(()) };
        let chunks = writers.into_par_iter().map(|w| w.close()).collect::<parquet::errors::Result<Vec<_>>>()?;
        let mut rg = self.file.next_row_group()?;
        for c in chunks {
            c.append_to_row_group(&mut rg)?;
        }
        rg.close()?;
        Ok(())
    }

    fn into_inner(mut self) -> parquet::errors::Result<FileOut> {
        self.flush()?;
        self.file.into_inner()
    }
}

impl TableWriter {
    /// A file written (and hashed) by the threads that append to it.
    pub fn create(path: &Path, schema: &Schema, format: OutputFormat) -> Result<TableWriter> {
        TableWriter::open(path, schema, format, false)
    }

    /// A run's output file: a Parquet one is [`Spool`]ed.
    pub fn create_for_run(path: &Path, schema: &Schema, format: OutputFormat) -> Result<TableWriter> {
        TableWriter::open(path, schema, format, format == OutputFormat::Parquet)
    }

    fn open(path: &Path, schema: &Schema, format: OutputFormat, spooled: bool) -> Result<TableWriter> {
        let ctx = || format!("writing {}", path.display());
        let file = std::fs::File::create(path).map_err(|e| Error::io(ctx(), e))?;
        let mut buf = if spooled {
            FileOut::Spooled(Spool::new(file).map_err(|e| Error::io(ctx(), e))?)
        } else {
            FileOut::Here(std::io::BufWriter::with_capacity(1 << 20, crate::io::checksum::Hashed::new(file)))
        };
        let sink = match format {
            OutputFormat::Parquet => Sink::Parquet(Box::new(
                ParquetSink::create(buf, schema).map_err(|e| Error::Internal(format!("{}: {e}", ctx())))?,
            )),
            OutputFormat::Csv => {
                let mut header = csv::WriterBuilder::new().from_writer(Vec::new());
                header.write_record(schema.fields().iter().map(|f| f.name())).map_err(|e| csv_err(ctx(), e))?;
                let header = header.into_inner().map_err(|e| Error::io(ctx(), e.into_error()))?;
                buf.write_all(&header).map_err(|e| Error::io(ctx(), e))?;
                Sink::Csv(Box::new(buf))
            }
        };
        Ok(TableWriter { path: path.to_path_buf(), sink })
    }

    pub fn append(&mut self, t: &OutTable) -> Result<()> {
        let ctx = || format!("writing {}", self.path.display());
        match &mut self.sink {
            Sink::Parquet(w) => {
                let batch = t.record_batch()?;
                w.write(&batch).map_err(|e| parquet_io(ctx(), e))?;
            }
            Sink::Csv(w) => {
                // Pieces of rows formatted in parallel, each by a writer of the same settings
                // into its own buffer, then written in order: the bytes one writer gives.
                use rayon::prelude::*;
                let n = t.rows();
                let pieces = (0..n.div_ceil(CSV_PIECE_ROWS))
                    .into_par_iter()
                    .map(|p| csv_rows(t, p * CSV_PIECE_ROWS..((p + 1) * CSV_PIECE_ROWS).min(n)))
                    .collect::<std::io::Result<Vec<_>>>()
                    .map_err(|e| Error::io(ctx(), e))?;
                for piece in &pieces {
                    w.write_all(piece).map_err(|e| Error::io(ctx(), e))?;
                }
            }
        }
        Ok(())
    }

    /// Flush, close and fsync the file; returns its SHA-256 (hex).
    pub fn finish(self) -> Result<String> {
        let (path, file, sha256) = self.close()?;
        file.sync_all().map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(sha256)
    }

    /// Flush the file and hand it to `syncer` to be made durable off this thread; returns
    /// its SHA-256 (hex).
    pub fn finish_with(self, syncer: &Syncer) -> Result<String> {
        let (path, file, sha256) = self.close()?;
        syncer.submit(path, file)?;
        Ok(sha256)
    }

    fn close(self) -> Result<(std::path::PathBuf, std::fs::File, String)> {
        let ctx = || format!("writing {}", self.path.display());
        let out = match self.sink {
            Sink::Parquet(w) => w.into_inner().map_err(|e| parquet_io(ctx(), e))?,
            Sink::Csv(w) => *w,
        };
        let (file, sha256) = out.close().map_err(|e| Error::io(ctx(), e))?;
        Ok((self.path, file, sha256))
    }
}

/// Makes a run's finished files durable off the rayon pool: each file a writer finishes is
/// handed (still open) to one thread of its own that fsyncs it, and the publish waits for
/// all of them ([`Syncer::wait`]) before the rename. A pool thread blocked in `fsync` idles
/// a core while the disk catches up.
pub struct Syncer {
    tx: std::sync::mpsc::Sender<(std::path::PathBuf, std::fs::File)>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Syncer {
    pub fn start() -> Result<Syncer> {
        let (tx, rx) = std::sync::mpsc::channel::<(std::path::PathBuf, std::fs::File)>();
        let thread = std::thread::Builder::new()
            .name("billrun-fsync".into())
            .spawn(move || {
                // Every file is synced; the first failure is the one reported.
                let mut first = Ok(());
                for (path, file) in rx {
                    if let Err(e) = file.sync_all() {
                        if first.is_ok() {
                            first = Err(Error::io(format!("writing {}", path.display()), e));
                        }
                    }
                }
                first
            })
            .map_err(|e| Error::io("starting the fsync thread", e))?;
        Ok(Syncer { tx, thread })
    }

    /// Queue `file` (at `path`) to be fsynced; if the thread is gone, fsync it here.
    pub fn submit(&self, path: std::path::PathBuf, file: std::fs::File) -> Result<()> {
        if let Err(std::sync::mpsc::SendError((path, file))) = self.tx.send((path, file)) {
            file.sync_all().map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Wait until every file submitted is durable (the first fsync error, if any).
    pub fn wait(self) -> Result<()> {
        drop(self.tx);
        self.thread.join().unwrap_or_else(|_| Err(Error::Internal("the fsync thread panicked".into())))
    }
}

/// Write `bytes` to `path` and fsync it (the small JSON files beside the tables).
pub fn write_durable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Fsync `dir` and every directory below it (their entries: the files' names), once the
/// files themselves are durable (the tables by the [`Syncer`], the manifest and stats as
/// written): what is then renamed into place is on disk.
pub fn sync_dirs(dir: &Path) -> Result<()> {
    fn sync(dir: &Path) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                sync(&e.path())?;
            }
        }
        std::fs::File::open(dir)?.sync_all()
    }
    sync(dir).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

fn csv_err(ctx: String, e: csv::Error) -> Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(ctx, io),
        other => Error::Internal(format!("{ctx}: {other:?}")),
    }
}

fn parquet_io(ctx: String, e: parquet::errors::ParquetError) -> Error {
    match e {
        parquet::errors::ParquetError::External(inner) => match inner.downcast::<std::io::Error>() {
            Ok(io) => Error::io(ctx, *io),
            Err(other) => Error::Internal(format!("{ctx}: {other}")),
        },
        other => Error::Internal(format!("{ctx}: {other}")),
    }
}

/// Append the text form of a cell (as written to CSV and shown in golden files) to `out`;
/// a null appends nothing.
pub fn write_cell(c: &ColData, i: usize, out: &mut String) {
    use std::fmt::Write;
    match c {
        ColData::Str(v) => {
            if v.is_valid(i) {
                out.push_str(v.value(i));
            }
        }
        ColData::Dec(v) => {
            if let Some(d) = v[i] {
                let _ = write!(out, "{d}");
            }
        }
        ColData::Date(v) => {
            if let Some(d) = v[i] {
                crate::domain::write_date(out, d);
            }
        }
        ColData::Ts(v) => {
            if let Some(t) = v[i] {
                out.push_str(&format_ts(t));
            }
        }
        ColData::Int(v) => {
            if let Some(n) = v[i] {
                out.push_str(itoa::Buffer::new().format(n));
            }
        }
        ColData::Bool(v) => {
            if let Some(b) = v[i] {
                out.push_str(if b { "true" } else { "false" });
            }
        }
    }
}

/// `10^k` for `k` in `0..=OUT_SCALE`.
const POW10: [i128; OUT_SCALE as usize + 1] = {
    let mut t = [1i128; OUT_SCALE as usize + 1];
    let mut k = 1;
    while k < t.len() {
        t[k] = t[k - 1] * 10;
        k += 1;
    }
    t
};

/// The value's mantissa at scale [`OUT_SCALE`] (`None` if it does not fit, or has more
/// decimals than that scale holds). A table of powers and, for a mantissa below 2^64 (every
/// value of a run but extreme ones), a multiply that cannot overflow: this runs for every
/// decimal of every output row, where `checked_pow` and a checked 128-bit multiply were
/// ~1 % of a run.
pub fn to_i128_scaled(d: Decimal) -> Option<i128> {
    let m = d.mantissa();
    let s = d.scale();
    if s <= OUT_SCALE {
        let p = POW10[(OUT_SCALE - s) as usize];
        // |m| < 2^64 and p <= 10^18 < 2^60: the product is below 2^124.
        if m.unsigned_abs() < 1 << 64 {
            Some(m * p)
        } else {
            m.checked_mul(p)
        }
    } else {
        let div = 10i128.pow(s - OUT_SCALE);
        if m % div == 0 {
            Some(m / div)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::spool::SPOOL_BLOCK;

    /// A spooled file holds exactly the bytes written, in order, across and within blocks,
    /// and its checksum is the file's; a file its thread cannot write is an error at close.
    #[test]
    fn a_spool_writes_every_byte_in_order_and_hashes_them() {
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        for sizes in [vec![], vec![1, 2, 3], vec![SPOOL_BLOCK - 1, 2, SPOOL_BLOCK * 2 + 5, 7]] {
            let path = tmp.path().join("f");
            let mut spool = Spool::new(std::fs::File::create(&path).unwrap()).unwrap();
            let mut want = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let piece: Vec<u8> = (0..*n).map(|j| (i * 31 + j) as u8).collect();
                spool.write_all(&piece).unwrap();
                want.extend(piece);
            }
            let (_, sha) = spool.close().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), want, "{sizes:?}");
            assert_eq!(sha, crate::io::checksum::sha256_file(&path).unwrap(), "{sizes:?}");
        }
        // A file opened read-only: its thread's first write fails, and the writer gets that
        // error, the OS's (EBADF), from whichever call comes first after it: a later block's
        // or the close.
        let path = tmp.path().join("ro");
        std::fs::write(&path, b"").unwrap();
        let mut spool = Spool::new(std::fs::File::open(&path).unwrap()).unwrap();
        let err = match spool.write_all(&vec![0u8; SPOOL_BLOCK * 8]) {
            Err(e) => e,
            Ok(()) => spool.close().unwrap_err(),
        };
        assert_eq!(err.raw_os_error(), Some(9), "{err}");
    }

    /// The syncer fsyncs what it is handed and reports the first failure with its file.
    #[test]
    fn syncer_syncs_every_file_and_reports_a_failure_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let syncer = Syncer::start().unwrap();
        for i in 0..3 {
            let path = dir.join(format!("f{i}"));
            std::fs::write(&path, b"x").unwrap();
            syncer.submit(path.clone(), std::fs::File::open(&path).unwrap()).unwrap();
        }
        syncer.wait().unwrap();
        sync_dirs(dir).unwrap();

        // A pipe cannot be fsynced (EINVAL): the error names the path it was handed with.
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::FromRawFd;
            let mut fds = [0; 2];
            // SAFETY: a new pipe; both ends are owned by the `File`s below.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            let (r, w) = unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) };
            let syncer = Syncer::start().unwrap();
            syncer.submit(dir.join("a-pipe"), w).unwrap();
            let err = syncer.wait().unwrap_err().to_string();
            assert!(err.contains("a-pipe"), "{err}");
            drop(r);
        }
    }

    /// Every scale and the mantissa sizes on both sides of the fast multiply's bound: the
    /// scaled value is the decimal's exact value at scale 18, or `None` when it is not.
    #[test]
    fn to_i128_scaled_is_the_exact_value_at_scale_18() {
        use std::str::FromStr;
        let max96 = (1i128 << 96) - 1;
        for m in [0i128, 1, -1, 7, -123456789, (1 << 64) - 1, 1 << 64, -(1 << 64), max96, -max96] {
            for s in 0..=28u32 {
                let d = Decimal::from_i128_with_scale(m, s);
                let want = if s <= OUT_SCALE {
                    m.checked_mul(10i128.pow(OUT_SCALE - s))
                } else {
                    let div = 10i128.pow(s - OUT_SCALE);
                    (m % div == 0).then(|| m / div)
                };
                assert_eq!(to_i128_scaled(d), want, "{m} at scale {s}");
            }
        }
        assert_eq!(to_i128_scaled(Decimal::from_str("-12.5").unwrap()), Some(-125 * 10i128.pow(17)));
    }
}
