//! Reading input tables (SPEC §3): decoding CSV and Parquet files (found by
//! [`super::discover`]) into a uniform column view. CSV text is checked against the strict
//! grammars of [`crate::domain::grammar`].
//!
//! This is the only module that knows input file formats. Everything downstream sees
//! [`Batch`]es of [`Col`]umns and asks them for typed cells.

use super::discover::{Format, SourceFile};
use crate::domain::*;
use crate::error::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, TimeUnit};
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::ProjectionMask;
use rust_decimal::Decimal;

/// Rows per decoded batch.
pub const BATCH_ROWS: usize = 65_536;

/// What a column's cells are read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Decimal,
    Date,
    Timestamp,
    Int,
}

#[derive(Clone, Copy, Debug)]
pub struct ColSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
}

pub const fn req(name: &'static str, kind: Kind) -> ColSpec {
    ColSpec { name, kind, required: true }
}
pub const fn opt(name: &'static str, kind: Kind) -> ColSpec {
    ColSpec { name, kind, required: false }
}

/// A decoded column in one of a few normalized physical forms.
pub enum Col {
    Missing,
    Str(StringArray),
    /// Parquet strings, decoded as views into the pages (no copy of their bytes).
    View(arrow_array::StringViewArray),
    Dec(Decimal128Array, i8),
    Int(Int64Array),
    Date(Date32Array),
    /// Timestamps converted to UTC microseconds.
    Ts(Vec<Option<Micros>>),
}

/// A batch of rows: the spec's columns in spec order.
pub struct Batch {
    pub cols: Vec<Col>,
    pub len: usize,
    /// 1-based row number of the batch's first row within its file.
    pub first_row: u64,
}

impl Batch {
    /// Drop every column but `cols` (the others read as missing from then on).
    pub fn keep_only(&mut self, cols: &[usize]) {
        for (c, col) in self.cols.iter_mut().enumerate() {
            if !cols.contains(&c) {
                *col = Col::Missing;
            }
        }
    }
}

/// Why a cell could not be read.
pub type CellErr = String;

impl Col {
    fn text(&self, i: usize) -> Option<&str> {
        match self {
            Col::Str(a) if a.is_valid(i) => Some(a.value(i)).filter(|s| !s.is_empty()),
            Col::View(a) if a.is_valid(i) => Some(a.value(i)).filter(|s| !s.is_empty()),
            _ => None,
        }
    }

    /// The raw cell as text, for reject details.
    pub fn raw(&self, i: usize) -> String {
        match self {
            Col::Missing => String::new(),
            Col::Str(_) | Col::View(_) => self.text(i).unwrap_or_default().to_string(),
            Col::Dec(a, s) => {
                if a.is_valid(i) {
                    format_i128_scaled(a.value(i), *s)
                } else {
                    String::new()
                }
            }
            Col::Int(a) => {
                if a.is_valid(i) {
                    a.value(i).to_string()
                } else {
                    String::new()
                }
            }
            Col::Date(a) => {
                if a.is_valid(i) {
                    a.value_as_date(i).map(|d| d.to_string()).unwrap_or_default()
                } else {
                    String::new()
                }
            }
            Col::Ts(v) => v[i].map(crate::domain::format_ts).unwrap_or_default(),
        }
    }

    pub fn is_null(&self, i: usize) -> bool {
        match self {
            Col::Missing => true,
            Col::Str(_) | Col::View(_) => self.text(i).is_none(),
            Col::Dec(a, _) => !a.is_valid(i),
            Col::Int(a) => !a.is_valid(i),
            Col::Date(a) => !a.is_valid(i),
            Col::Ts(v) => v[i].is_none(),
        }
    }

    pub fn str(&self, i: usize) -> Option<&str> {
        self.text(i)
    }

    pub fn decimal(&self, i: usize) -> Result<Option<Decimal>, CellErr> {
        if self.is_null(i) {
            return Ok(None);
        }
        match self {
            Col::Str(_) | Col::View(_) => {
                let s = self.text(i).unwrap();
                parse_decimal_strict(s).map(Some).ok_or_else(|| {
                    if is_decimal_text(s) {
                        format!("decimal out of range (at most 28 significant digits and {MAX_SCALE} decimals): {s:?}")
                    } else {
                        format!("not a decimal: {s:?}")
                    }
                })
            }
            Col::Dec(a, scale) => normalized_from_i128(a.value(i), *scale)
                .map(Some)
                .ok_or_else(|| format!("decimal out of range: {}", format_i128_scaled(a.value(i), *scale))),
            Col::Int(a) => Ok(Some(Decimal::from(a.value(i)))),
            _ => Err("not a decimal".into()),
        }
    }

    pub fn date(&self, i: usize) -> Result<Option<NaiveDate>, CellErr> {
        if self.is_null(i) {
            return Ok(None);
        }
        match self {
            Col::Str(_) | Col::View(_) => {
                let s = self.text(i).unwrap();
                parse_date_strict(s).map(Some).ok_or_else(|| format!("not a date: {s:?}"))
            }
            Col::Date(a) => a.value_as_date(i).map(Some).ok_or_else(|| "date out of range".into()),
            Col::Ts(v) => chrono::DateTime::from_timestamp_micros(v[i].unwrap())
                .map(|d| Some(d.date_naive()))
                .ok_or_else(|| "date out of range".into()),
            _ => Err("not a date".into()),
        }
    }

    pub fn timestamp(&self, i: usize) -> Result<Option<Micros>, CellErr> {
        if self.is_null(i) {
            return Ok(None);
        }
        match self {
            Col::Str(_) | Col::View(_) => {
                let s = self.text(i).unwrap();
                parse_timestamp_strict(s).map(Some).ok_or_else(|| format!("not a timestamp: {s:?}"))
            }
            Col::Ts(v) => Ok(v[i]),
            Col::Date(a) => {
                a.value_as_date(i).map(|d| Some(crate::domain::midnight(d))).ok_or_else(|| "date out of range".into())
            }
            _ => Err("not a timestamp".into()),
        }
    }

    pub fn int(&self, i: usize) -> Result<Option<i64>, CellErr> {
        if self.is_null(i) {
            return Ok(None);
        }
        match self {
            Col::Str(_) | Col::View(_) => {
                let s = self.text(i).unwrap();
                parse_int_strict(s).map(Some).ok_or_else(|| format!("not an integer: {s:?}"))
            }
            Col::Int(a) => Ok(Some(a.value(i))),
            Col::Dec(a, scale) => {
                let d = decimal_from_i128(a.value(i), *scale).ok_or("not an integer")?;
                if d.fract().is_zero() {
                    i64::try_from(d.trunc().mantissa() / 10i128.pow(d.trunc().scale()))
                        .map(Some)
                        .map_err(|_| "integer out of range".into())
                } else {
                    Err(format!("not an integer: {d}"))
                }
            }
            _ => Err("not an integer".into()),
        }
    }
}

fn format_i128_scaled(v: i128, scale: i8) -> String {
    if scale <= 0 {
        let mut s = v.to_string();
        for _ in 0..(-scale) {
            s.push('0');
        }
        return s;
    }
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded =
        if digits.len() <= scale { format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits) } else { digits };
    let (i, f) = padded.split_at(padded.len() - scale);
    format!("{}{}.{}", if neg { "-" } else { "" }, i, f)
}

fn unreadable(file: &SourceFile, column: &str, message: impl Into<String>) -> Error {
    Error::Input { file: file.name.clone(), column: Some(column.to_string()), row: None, message: message.into() }
}

/// Normalize one Arrow column into a [`Col`] of the requested kind; incompatible physical
/// types (floating point money above all) make the input unreadable.
fn normalize(file: &SourceFile, spec: &ColSpec, a: &ArrayRef) -> Result<Col> {
    let dt = a.data_type().clone();
    let bad = |what: &str| {
        unreadable(file, spec.name, format!("{what} column of type {dt} cannot be read as {:?}", spec.kind))
    };
    let as_utf8 = |a: &ArrayRef| -> Result<Col> {
        let c = arrow_cast::cast(a, &DataType::Utf8).map_err(|e| unreadable(file, spec.name, e.to_string()))?;
        Ok(Col::Str(c.as_string::<i32>().clone()))
    };
    match &dt {
        DataType::Utf8 => return Ok(Col::Str(a.as_string::<i32>().clone())),
        DataType::Utf8View => return Ok(Col::View(a.as_string_view().clone())),
        DataType::LargeUtf8 => return as_utf8(a),
        DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => {
            return as_utf8(a)
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => return Ok(Col::Str(binary_as_utf8(a))),
        DataType::Null => return Ok(Col::Missing),
        _ => {}
    }
    // Integers of any width as Int64 (a value beyond i64 is an unreadable input).
    let as_int64 = |a: &ArrayRef| -> Result<Col> {
        let c = arrow_cast::cast_with_options(
            a,
            &DataType::Int64,
            &arrow_cast::CastOptions { safe: false, ..Default::default() },
        )
        .map_err(|e| unreadable(file, spec.name, e.to_string()))?;
        Ok(Col::Int(c.as_primitive::<Int64Type>().clone()))
    };
    match spec.kind {
        Kind::Text => match dt {
            DataType::Boolean => as_utf8(a),
            d if d.is_integer() => as_utf8(a),
            _ => Err(bad("a")),
        },
        Kind::Decimal => match dt {
            DataType::Decimal128(_, s) => Ok(Col::Dec(a.as_primitive::<Decimal128Type>().clone(), s)),
            DataType::Decimal32(_, s) | DataType::Decimal64(_, s) => {
                let c = arrow_cast::cast(a, &DataType::Decimal128(38, s))
                    .map_err(|e| unreadable(file, spec.name, e.to_string()))?;
                Ok(Col::Dec(c.as_primitive::<Decimal128Type>().clone(), s))
            }
            DataType::Decimal256(_, s) => {
                let c = arrow_cast::cast_with_options(
                    a,
                    &DataType::Decimal128(38, s),
                    &arrow_cast::CastOptions { safe: false, ..Default::default() },
                )
                .map_err(|e| unreadable(file, spec.name, format!("Decimal256 values beyond Decimal128: {e}")))?;
                Ok(Col::Dec(c.as_primitive::<Decimal128Type>().clone(), s))
            }
            d if d.is_integer() => as_int64(a),
            DataType::Float16 | DataType::Float32 | DataType::Float64 => Err(unreadable(
                file,
                spec.name,
                format!("money/quantity column stored as floating point ({dt}); store it as Decimal128 or string"),
            )),
            _ => Err(bad("a")),
        },
        Kind::Int => match dt {
            d if d.is_integer() => as_int64(a),
            DataType::Decimal128(_, s) => Ok(Col::Dec(a.as_primitive::<Decimal128Type>().clone(), s)),
            _ => Err(bad("an")),
        },
        Kind::Date => match dt {
            DataType::Date32 => Ok(Col::Date(a.as_primitive::<Date32Type>().clone())),
            DataType::Date64 => {
                let c =
                    arrow_cast::cast(a, &DataType::Date32).map_err(|e| unreadable(file, spec.name, e.to_string()))?;
                Ok(Col::Date(c.as_primitive::<Date32Type>().clone()))
            }
            DataType::Timestamp(u, _) => Ok(Col::Ts(ts_micros(a, &u))),
            _ => Err(bad("a")),
        },
        Kind::Timestamp => match dt {
            DataType::Timestamp(u, _) => Ok(Col::Ts(ts_micros(a, &u))),
            DataType::Date32 => Ok(Col::Date(a.as_primitive::<Date32Type>().clone())),
            _ => Err(bad("a")),
        },
    }
}

/// Strings stored as BYTE_ARRAY without the UTF8 annotation (older Hive and Impala
/// writers), read as text: invalid UTF-8 is replaced, and then fails its column's grammar,
/// as in a CSV file.
fn binary_as_utf8(a: &ArrayRef) -> arrow_array::StringArray {
    let values: Box<dyn Iterator<Item = Option<&[u8]>>> = match a.data_type() {
        DataType::Binary => Box::new(a.as_binary::<i32>().iter()),
        DataType::LargeBinary => Box::new(a.as_binary::<i64>().iter()),
        _ => Box::new(a.as_binary_view().iter()),
    };
    values.map(|v| v.map(String::from_utf8_lossy)).collect()
}

/// Raw timestamp values are UTC instants whether or not the column carries a zone.
fn ts_micros(a: &ArrayRef, unit: &TimeUnit) -> Vec<Option<Micros>> {
    fn conv<T: ArrowPrimitiveType<Native = i64>>(a: &ArrayRef, f: impl Fn(i64) -> Option<i64>) -> Vec<Option<Micros>> {
        a.as_primitive::<T>().iter().map(|v| v.and_then(&f)).collect()
    }
    match unit {
        TimeUnit::Second => conv::<TimestampSecondType>(a, |v| v.checked_mul(1_000_000)),
        TimeUnit::Millisecond => conv::<TimestampMillisecondType>(a, |v| v.checked_mul(1_000)),
        TimeUnit::Microsecond => conv::<TimestampMicrosecondType>(a, Some),
        TimeUnit::Nanosecond => conv::<TimestampNanosecondType>(a, |v| Some(v.div_euclid(1_000))),
    }
}

/// A corrupt Parquet file can make the decoder panic; that is an unreadable input (exit 2),
/// not a crash.
fn guarded<T>(file: &SourceFile, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("decoder panicked");
            Err(Error::input(file.name.clone(), format!("corrupt Parquet file: {msg}")))
        }
    }
}

/// Rows of `files` known from their metadata (Parquet footers), and whether every file's
/// count was known (a CSV file's is not). For sizing buffers and progress totals.
pub fn metadata_rows<'f>(files: impl IntoIterator<Item = &'f SourceFile>) -> Result<(u64, bool)> {
    let (mut rows, mut all) = (0, true);
    for f in files {
        for u in units(f)? {
            rows += u.rows.unwrap_or(0);
            all &= u.rows.is_some();
        }
    }
    Ok((rows, all))
}

/// An independently decodable piece of a file: a range of at most [`UNIT_ROWS`] rows of
/// one Parquet row group (a CSV file is one unit of unknown length). Units bound what a
/// reader holds in flight whatever the writer's row-group size (a 1M-row row group is four
/// units), and give the pool work to share even in a file of one row group.
#[derive(Clone, Debug)]
pub struct ReadUnit {
    /// The file's footer, parsed once for all its units (None: CSV).
    meta: Option<ArrowReaderMetadata>,
    pub row_group: usize,
    /// Rows of the row group before this unit.
    pub skip: u64,
    /// The 1-based data row of the file the unit starts at.
    pub first_row: u64,
    /// Rows in the unit (None: a CSV file, length unknown).
    pub rows: Option<u64>,
}

/// The most rows in a [`ReadUnit`]: four batches.
pub const UNIT_ROWS: u64 = 4 * BATCH_ROWS as u64;

/// The units of a file, in read order (see [`ReadUnit`]).
pub fn units(file: &SourceFile) -> Result<Vec<ReadUnit>> {
    units_of(file, UNIT_ROWS)
}

/// [`units`] of at most `max_rows` rows.
fn units_of(file: &SourceFile, max_rows: u64) -> Result<Vec<ReadUnit>> {
    let whole = ReadUnit { meta: None, row_group: 0, skip: 0, first_row: 1, rows: None };
    match file.format {
        Format::Csv => Ok(vec![whole]),
        Format::Parquet => guarded(file, || {
            let meta = load_metadata(file, &open(file)?)?;
            let mut first_row = 1u64;
            let mut out = Vec::new();
            for (row_group, rg) in meta.metadata().row_groups().iter().enumerate() {
                let n = rg.num_rows().max(0) as u64;
                let mut skip = 0;
                while skip < n {
                    let rows = (n - skip).min(max_rows.max(1));
                    out.push(ReadUnit { meta: Some(meta.clone()), row_group, skip, first_row, rows: Some(rows) });
                    (skip, first_row) = (skip + rows, first_row + rows);
                }
            }
            if out.is_empty() {
                out.push(ReadUnit { meta: Some(meta), rows: Some(0), ..whole });
            }
            Ok(out)
        }),
    }
}

/// The footer of Parquet `file` (open as `fh`), with its string columns to be decoded as
/// views into the pages (`Utf8View`): their bytes are not copied into one buffer per batch.
fn load_metadata(file: &SourceFile, fh: &std::fs::File) -> Result<ArrowReaderMetadata> {
    let meta = ArrowReaderMetadata::load(fh, ArrowReaderOptions::new()).map_err(|e| not_parquet(file, e))?;
    let schema = meta.schema();
    if !schema.fields().iter().any(|f| f.data_type() == &DataType::Utf8) {
        return Ok(meta);
    }
    let fields: Vec<arrow_schema::Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    let views = std::sync::Arc::new(arrow_schema::Schema::new_with_metadata(fields, schema.metadata().clone()));
    ArrowReaderMetadata::try_new(meta.metadata().clone(), ArrowReaderOptions::new().with_schema(views))
        .map_err(|e| not_parquet(file, e))
}

fn open(file: &SourceFile) -> Result<std::fs::File> {
    std::fs::File::open(&file.path).map_err(|e| Error::input(file.name.clone(), format!("cannot open: {e}")))
}

fn not_parquet(file: &SourceFile, e: parquet::errors::ParquetError) -> Error {
    Error::input(file.name.clone(), format!("not a readable Parquet file: {e}"))
}

/// Decode one unit (see [`units`]) of a file.
pub fn read_unit(
    file: &SourceFile,
    specs: &[ColSpec],
    unit: &ReadUnit,
    f: impl FnMut(Batch) -> Result<()> + Send,
) -> Result<u64> {
    read_unit_hashed(file, specs, unit, f).map(|(rows, _)| rows)
}

/// [`read_unit`], with the file's SHA-256 when the unit's reading read every byte of the
/// file (a CSV file, read whole), so the manifest need not read it again.
pub fn read_unit_hashed(
    file: &SourceFile,
    specs: &[ColSpec],
    unit: &ReadUnit,
    mut f: impl FnMut(Batch) -> Result<()> + Send,
) -> Result<(u64, Option<String>)> {
    match file.format {
        Format::Parquet => guarded(file, || read_parquet(file, specs, Some(unit), &mut f)).map(|rows| (rows, None)),
        Format::Csv => read_csv(file, specs, &mut f).map(|(rows, sha256)| (rows, Some(sha256))),
    }
}

fn missing_column(file: &SourceFile, name: &str) -> Error {
    unreadable(file, name, "required column is missing")
}

fn read_parquet(
    file: &SourceFile,
    specs: &[ColSpec],
    unit: Option<&ReadUnit>,
    f: &mut dyn FnMut(Batch) -> Result<()>,
) -> Result<u64> {
    let fh = open(file)?;
    // A unit's file footer is parsed already (once for all the file's units).
    let meta = match unit.and_then(|u| u.meta.clone()) {
        Some(meta) => meta,
        None => load_metadata(file, &fh)?,
    };
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(fh, meta);
    let schema = builder.schema().clone();
    // Map spec columns to root field indices.
    let mut roots = Vec::new();
    let mut positions: Vec<Option<usize>> = Vec::with_capacity(specs.len());
    for s in specs {
        match schema.fields().iter().position(|fl| fl.name() == s.name) {
            Some(idx) => {
                positions.push(Some(idx));
                roots.push(idx);
            }
            None if s.required => return Err(missing_column(file, s.name)),
            None => positions.push(None),
        }
    }
    roots.sort_unstable();
    roots.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let mut builder = builder.with_projection(mask).with_batch_size(BATCH_ROWS);
    let mut row: u64 = 1;
    if let Some(u) = unit {
        let Some(rg) = builder.metadata().row_groups().get(u.row_group) else {
            return Ok(0);
        };
        let all = rg.num_rows().max(0) as u64;
        let rows = u.rows.unwrap_or(all);
        if (u.skip, rows) != (0, all) {
            // Pages wholly before the range are skipped undecompressed.
            let pick = vec![RowSelector::skip(u.skip as usize), RowSelector::select(rows as usize)];
            builder = builder.with_row_selection(RowSelection::from(pick));
        }
        builder = builder.with_row_groups(vec![u.row_group]);
        row = u.first_row;
    }
    let start = row;
    let reader =
        builder.build().map_err(|e| Error::input(file.name.clone(), format!("not a readable Parquet file: {e}")))?;
    for rb in reader {
        let rb: RecordBatch = rb.map_err(|e| Error::Input {
            file: file.name.clone(),
            column: None,
            row: Some(row),
            message: format!("cannot decode Parquet data: {e}"),
        })?;
        let mut cols = Vec::with_capacity(specs.len());
        for (s, pos) in specs.iter().zip(&positions) {
            match pos {
                Some(idx) => {
                    let pos_in_batch = roots.iter().position(|r| r == idx).unwrap();
                    cols.push(normalize(file, s, rb.column(pos_in_batch))?);
                }
                None => cols.push(Col::Missing),
            }
        }
        let len = rb.num_rows();
        f(Batch { cols, len, first_row: row })?;
        row += len as u64;
    }
    Ok(row - start)
}

/// Read a CSV file whole: its rows (batch by batch, to `f`) and its SHA-256, taken from the
/// bytes as they are read.
fn read_csv(
    file: &SourceFile,
    specs: &[ColSpec],
    f: &mut (dyn FnMut(Batch) -> Result<()> + Send),
) -> Result<(u64, String)> {
    let fh =
        std::fs::File::open(&file.path).map_err(|e| Error::input(file.name.clone(), format!("cannot open: {e}")))?;
    let fh = crate::io::checksum::Hashed::new(fh);
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(std::io::BufReader::with_capacity(1 << 20, fh));
    let headers = rdr
        .byte_headers()
        .map_err(|e| Error::input(file.name.clone(), format!("cannot read CSV header: {e}")))?
        .clone();
    let header_text: Vec<String> =
        headers.iter().map(|h| String::from_utf8_lossy(h).trim_start_matches('\u{feff}').to_string()).collect();
    let mut positions = Vec::with_capacity(specs.len());
    for s in specs {
        match header_text.iter().position(|h| h == s.name) {
            Some(i) => positions.push(Some(i)),
            None if s.required => return Err(missing_column(file, s.name)),
            None => positions.push(None),
        }
    }
    let mut row: u64 = 1;
    let mut rec = csv::ByteRecord::new();
    // The next batch of up to BATCH_ROWS records (None at the end of the file).
    let mut next = || -> Result<Option<Batch>> {
        let mut builders: Vec<_> = specs
            .iter()
            .map(|_| arrow_array::builder::StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 12))
            .collect();
        let mut n = 0usize;
        while n < BATCH_ROWS {
            match rdr.read_byte_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    return Err(Error::Input {
                        file: file.name.clone(),
                        column: None,
                        row: Some(row + n as u64),
                        message: format!("cannot read CSV: {e}"),
                    })
                }
            }
            for (b, p) in builders.iter_mut().zip(&positions) {
                // An empty field is null; invalid UTF-8 is replaced (and then fails its grammar).
                match p.and_then(|i| rec.get(i)).filter(|v| !v.is_empty()) {
                    None => b.append_null(),
                    Some(v) => match std::str::from_utf8(v) {
                        Ok(s) => b.append_value(s),
                        Err(_) => b.append_value(String::from_utf8_lossy(v)),
                    },
                }
            }
            n += 1;
        }
        if n == 0 {
            return Ok(None);
        }
        let cols = builders
            .iter_mut()
            .zip(&positions)
            .map(|(b, p)| if p.is_some() { Col::Str(b.finish()) } else { Col::Missing })
            .collect();
        let batch = Batch { cols, len: n, first_row: row };
        row += n as u64;
        Ok(Some(batch))
    };
    // A CSV file is one unit, decoded by one thread: the next batch is decoded while `f`
    // handles this one (on the pool, beside it).
    let mut cur = next()?;
    while let Some(b) = cur.take() {
        let (decoded, handled) = rayon::join(&mut next, || f(b));
        handled?;
        cur = decoded?;
    }
    // The reader is at the end of the file: every byte went through the hash.
    Ok((row - 1, rdr.into_inner().into_inner().hash.hex()))
}

/// Whether any file of a table has a column of one of `names` (its Parquet schema or CSV
/// header): the next state writes a table's optional v2 columns only when its input had them.
pub fn has_any_column<'f>(files: impl IntoIterator<Item = &'f SourceFile>, names: &[&str]) -> Result<bool> {
    for file in files {
        let found = match file.format {
            Format::Parquet => guarded(file, || {
                let meta = load_metadata(file, &open(file)?)?;
                Ok(meta.schema().fields().iter().any(|f| names.contains(&f.name().as_str())))
            })?,
            Format::Csv => {
                let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(open(file)?);
                let headers = rdr
                    .byte_headers()
                    .map_err(|e| Error::input(file.name.clone(), format!("cannot read CSV header: {e}")))?;
                headers.iter().any(|h| {
                    let h = String::from_utf8_lossy(h);
                    names.contains(&h.trim_start_matches('\u{feff}'))
                })
            }
        };
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CSV file of several batches (decoded one batch ahead of their handling) comes out
    /// in file order, every row numbered, empty fields null, and its SHA-256 with it.
    #[test]
    fn csv_batches_come_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.csv");
        let rows = 2 * BATCH_ROWS + 123;
        let mut text = String::from("\u{feff}b,a\r\n");
        for i in 0..rows {
            text.push_str(&if i.is_multiple_of(7) { format!(",{i}\r\n") } else { format!("x{i},{i}\r\n") });
        }
        std::fs::write(&path, text).unwrap();
        let file = SourceFile { path, name: "usage.csv".into(), format: Format::Csv };
        let specs = [
            ColSpec { name: "a", kind: Kind::Text, required: true },
            ColSpec { name: "b", kind: Kind::Text, required: false },
            ColSpec { name: "c", kind: Kind::Text, required: false },
        ];
        let mut seen = 0u64;
        let unit = &units(&file).unwrap()[0];
        let (n, sha256) = read_unit_hashed(&file, &specs, unit, |b| {
            assert_eq!(b.first_row, seen + 1);
            for i in 0..b.len {
                let k = seen as usize;
                assert_eq!(b.cols[0].str(i), Some(k.to_string().as_str()));
                assert_eq!(b.cols[1].str(i).map(str::to_string), (!k.is_multiple_of(7)).then(|| format!("x{k}")));
                assert_eq!(b.cols[2].str(i), None);
                seen += 1;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!((n, seen), (rows as u64, rows as u64));
        // Hashed as it was read: the manifest's checksum of the whole file.
        assert_eq!(sha256, Some(crate::io::checksum::sha256_file(&file.path).unwrap()));
    }

    /// A file of three row groups (10, 10 and 5 rows, pages of 3 rows) read in units of at
    /// most 4 rows gives the rows and row numbers of reading each row group whole: units that
    /// start inside a row group (and inside a page) skip exactly the rows before them.
    #[test]
    fn units_inside_row_groups_read_the_rows_of_the_whole_groups() {
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::WriterProperties;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.parquet");
        let ids: Vec<String> = (1..=25).map(|i| format!("u{i:02}")).collect();
        let batch =
            RecordBatch::try_from_iter([("usage_id", std::sync::Arc::new(StringArray::from(ids.clone())) as ArrayRef)])
                .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(10))
            .set_data_page_row_count_limit(3)
            .set_write_batch_size(1)
            .build();
        let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let file = SourceFile { path, name: "usage.parquet".into(), format: Format::Parquet };
        let specs = [ColSpec { name: "usage_id", kind: Kind::Text, required: true }];
        let read = |units: &[ReadUnit]| {
            let mut rows = Vec::new();
            for u in units {
                let n = read_unit(&file, &specs, u, |b| {
                    for i in 0..b.len {
                        rows.push((b.first_row + i as u64, b.cols[0].str(i).unwrap().to_string()));
                    }
                    Ok(())
                })
                .unwrap();
                assert_eq!(Some(n), u.rows);
            }
            rows
        };
        let whole = units_of(&file, 1000).unwrap();
        assert_eq!(whole.iter().map(|u| u.rows.unwrap()).collect::<Vec<_>>(), [10, 10, 5]);
        let small = units_of(&file, 4).unwrap();
        let shape: Vec<_> = small.iter().map(|u| (u.row_group, u.skip, u.first_row, u.rows.unwrap())).collect();
        assert_eq!(
            shape,
            [
                (0, 0, 1, 4),
                (0, 4, 5, 4),
                (0, 8, 9, 2),
                (1, 0, 11, 4),
                (1, 4, 15, 4),
                (1, 8, 19, 2),
                (2, 0, 21, 4),
                (2, 4, 25, 1)
            ]
        );
        let expected: Vec<_> = ids.into_iter().enumerate().map(|(i, id)| (i as u64 + 1, id)).collect();
        assert_eq!(read(&whole), expected);
        assert_eq!(read(&small), expected);
    }

    #[test]
    fn strict_decimals() {
        assert_eq!(parse_decimal_strict("12.50").unwrap().to_string(), "12.50");
        assert_eq!(parse_decimal_strict("-0.5").unwrap().to_string(), "-0.5");
        for bad in ["", "1.", ".5", "+1", "1e3", "1,5", " 1", "abc", "99999999999999999999999999999"] {
            assert!(parse_decimal_strict(bad).is_none(), "{bad:?}");
        }
        assert!(parse_decimal_strict("0.1234567890123456789").is_none());
    }

    #[test]
    fn fast_normalization_agrees_with_rust_decimal() {
        let values = [
            123_500_000_000_000_000_000i128,
            -42_000_000_000_000_000_000_000_000_000,
            99_999_999_999_999_999_999_999_999_999_999_999_999,
            10i128.pow(37),
            1_000_000_001_000_000_000_000_000_000,
            0,
            1,
            -1,
            10,
            1_500_000_000_000_000_000,
            -2_000_000_000_000_000_000,
            123_456_789_000,
            18_446_744_073_709_551_615,
            18_446_744_073_709_551_616_000,
            -99_990_000,
            7_000_000_000_000_000_000_000_000,
            i64::MIN as i128,
        ];
        for &v in &values {
            for scale in [-2i8, 0, 1, 2, 6, 18, 20, 28] {
                let slow = decimal_from_i128(v, scale).map(|d| d.normalize());
                let fast = normalized_from_i128(v, scale);
                assert_eq!(fast.map(|d| d.to_string()), slow.map(|d| d.to_string()), "{v} scale {scale}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn div_rem_1e9_agrees_with_u128(m in proptest::num::u128::ANY) {
            proptest::prop_assert_eq!(div_rem_1e9(m), (m / 1_000_000_000, (m % 1_000_000_000) as u64));
        }

        /// Mantissas as Parquet Decimal(38, s) columns hold them: a value with trailing
        /// zeros from the scale (the common case), and arbitrary ones.
        #[test]
        fn fast_normalization_agrees_on_any_mantissa(m in proptest::num::i64::ANY, zeros in 0u32..=20, raw in proptest::num::i128::ANY, scale in 0i8..=38) {
            for v in [(m as i128) * 10i128.pow(zeros), raw / 10, raw] {
                let slow = decimal_from_i128(v, scale).map(|d| d.normalize());
                let fast = normalized_from_i128(v, scale);
                proptest::prop_assert_eq!(fast.map(|d| d.to_string()), slow.map(|d| d.to_string()), "{} scale {}", v, scale);
            }
        }
    }

    #[test]
    fn strict_dates_and_timestamps() {
        assert!(parse_date_strict("2026-02-29").is_none());
        assert!(parse_date_strict("2026-2-28").is_none());
        assert_eq!(parse_date_strict("2024-02-29").unwrap().to_string(), "2024-02-29");
        let z = parse_timestamp_strict("2026-11-22T00:00:00Z").unwrap();
        assert_eq!(parse_timestamp_strict("2026-11-22 00:00:00").unwrap(), z);
        assert_eq!(parse_timestamp_strict("2026-11-22T01:30:00+01:30").unwrap(), z);
        assert_eq!(parse_timestamp_strict("2026-11-22T00:00:00.5Z").unwrap(), z + 500_000);
        for bad in [
            "2026-11-22",
            "2026-11-22T24:00:00",
            "2026-11-22T00:00:00+1:00",
            "2026-11-22T00:00:00.Z",
            "2026-11-2\u{fffd}T00:00:00Z",
            "\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}",
        ] {
            assert!(parse_timestamp_strict(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn decimal128_normalization() {
        assert_eq!(decimal_from_i128(2130_000000000000000000, 18).unwrap().to_string(), "2130.000000000000000000");
        assert!(decimal_from_i128(i128::MAX, 0).is_none());
        assert_eq!(
            decimal_from_i128(1_000_000_000_000_000_000_000_000_000_000, 18).unwrap().normalize().to_string(),
            "1000000000000"
        );
    }
}
