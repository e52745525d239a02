//! Render any output (or input) table file as CSV text: decimals normalized, timestamps
//! RFC 3339. Used by `billrun cat`, the golden tests and `verify`.

use crate::domain::format_ts;
use crate::error::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::Path;

/// A table as text: header and rows of cells.
pub struct TextTable {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl TextTable {
    pub fn col(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }
    pub fn to_csv(&self) -> String {
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        let _ = w.write_record(&self.header);
        for r in &self.rows {
            let _ = w.write_record(r);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

fn cell(a: &dyn Array, i: usize) -> String {
    if a.is_null(i) {
        return String::new();
    }
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(i).to_string(),
        DataType::LargeUtf8 => a.as_string::<i64>().value(i).to_string(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).to_string(),
        DataType::Boolean => a.as_boolean().value(i).to_string(),
        DataType::Decimal128(_, s) => crate::domain::decimal_from_i128(a.as_primitive::<Decimal128Type>().value(i), *s)
            .map(|d| d.normalize().to_string())
            .unwrap_or_else(|| "<out of range>".into()),
        DataType::Date32 => a.as_primitive::<Date32Type>().value_as_date(i).map(|d| d.to_string()).unwrap_or_default(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            format_ts(a.as_primitive::<TimestampMicrosecondType>().value(i))
        }
        _ => arrow_cast::display::ArrayFormatter::try_new(a, &Default::default())
            .map(|f| f.value(i).to_string())
            .unwrap_or_default(),
    }
}

/// Read a whole `.parquet` or `.csv` file as text cells.
pub fn read_text_table(path: &Path) -> Result<TextTable> {
    let mut rows = Vec::new();
    let (header, _) = visit_rows(path, None, |cells| {
        rows.push(cells.to_vec());
        Ok(())
    })?;
    Ok(TextTable { header, rows })
}

/// Visit the rows of a `.parquet` or `.csv` file as text cells (rendered as in
/// [`read_text_table`]) of the columns `names`, in that order, or of every column: batch by
/// batch, decoding only those columns, keeping nothing. Returns the columns' names and the
/// number of rows. A column not in the file is an error that names it.
pub fn visit_rows(
    path: &Path,
    names: Option<&[&str]>,
    mut f: impl FnMut(&[String]) -> Result<()>,
) -> Result<(Vec<String>, u64)> {
    let name = path.display().to_string();
    let err = |e: &dyn std::fmt::Display| Error::input(name.clone(), e.to_string());
    // Each wanted column's position among `all` (every column of the file, in file order).
    let pick = |all: &[String]| -> Result<(Vec<String>, Vec<usize>)> {
        let Some(names) = names else { return Ok((all.to_vec(), (0..all.len()).collect())) };
        let at =
            names.iter().map(|n| all.iter().position(|h| h == n).ok_or_else(|| err(&format!("column {n} is missing"))));
        Ok((names.iter().map(|n| n.to_string()).collect(), at.collect::<Result<_>>()?))
    };
    let mut cells: Vec<String> = Vec::new();
    let mut rows = 0u64;
    match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => {
            let file = std::fs::File::open(path).map_err(|e| Error::io(format!("opening {name}"), e))?;
            let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(&e))?;
            let all: Vec<String> = b.schema().fields().iter().map(|f| f.name().clone()).collect();
            let (header, at) = pick(&all)?;
            // Only the wanted columns are decoded; a batch holds them in file order.
            let mut wanted: Vec<usize> = at.clone();
            wanted.sort_unstable();
            wanted.dedup();
            let mask = parquet::arrow::ProjectionMask::roots(b.parquet_schema(), wanted.iter().copied());
            let at: Vec<usize> = at.iter().map(|c| wanted.binary_search(c).unwrap_or_default()).collect();
            for rb in b.with_projection(mask).build().map_err(|e| err(&e))? {
                let rb: RecordBatch = rb.map_err(|e| err(&e))?;
                for i in 0..rb.num_rows() {
                    cells.clear();
                    cells.extend(at.iter().map(|&c| cell(rb.column(c).as_ref(), i)));
                    f(&cells)?;
                }
                rows += rb.num_rows() as u64;
            }
            Ok((header, rows))
        }
        Some("csv") => {
            let mut r = csv::ReaderBuilder::new().flexible(true).from_path(path).map_err(|e| err(&e))?;
            let all: Vec<String> = r.headers().map_err(|e| err(&e))?.iter().map(str::to_string).collect();
            let (header, at) = pick(&all)?;
            let mut rec = csv::StringRecord::new();
            while r.read_record(&mut rec).map_err(|e| err(&e))? {
                cells.clear();
                cells.extend(at.iter().map(|&c| {
                    let s = rec.get(c).unwrap_or_default();
                    match crate::domain::parse_decimal_strict(s) {
                        Some(d) if s.contains('.') => d.normalize().to_string(),
                        _ => s.to_string(),
                    }
                }));
                f(&cells)?;
                rows += 1;
            }
            Ok((header, rows))
        }
        _ => Err(Error::input(name, "not a .parquet or .csv file")),
    }
}

/// Table `name` of a run directory (`name.parquet` or `name.csv`), if present.
pub fn read_run_table(dir: &Path, name: &'static str) -> Result<Option<TextTable>> {
    let Some(src) = crate::io::discover::find_table(dir, name)? else { return Ok(None) };
    let mut out: Option<TextTable> = None;
    for f in &src.files {
        let t = read_text_table(&f.path)?;
        match &mut out {
            None => out = Some(t),
            Some(o) => o.rows.extend(t.rows),
        }
    }
    Ok(out)
}

/// Every table file of a run directory (Hive part files included) rendered as text, in
/// file-name order, with the manifest.
pub fn render_dir(dir: &Path, with_manifest: bool) -> Result<String> {
    let mut out = String::new();
    // The run directory read as one "table": its files and those of any subdirectory.
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?.flatten() {
        let p = e.path();
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        let table_file = matches!(p.extension().and_then(|e| e.to_str()), Some("parquet" | "csv"));
        if (p.is_dir() && !hidden) || table_file {
            files.extend(crate::io::discover::table_at(&p, "table")?.files);
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    for f in files {
        let t = read_text_table(&f.path)?;
        out.push_str(&format!("== {} ({} rows)\n", f.name, t.rows.len()));
        out.push_str(&t.to_csv());
        out.push('\n');
    }
    if with_manifest {
        let m = std::fs::read_to_string(dir.join(crate::products::MANIFEST))
            .map_err(|e| Error::io("reading run_manifest.json", e))?;
        out.push_str("== run_manifest.json\n");
        out.push_str(&m);
    }
    Ok(out)
}
