//! Render any output (or input) table file as CSV text: decimals normalized, timestamps
//! RFC 3339. Used by `billrun cat`, the golden tests and `verify`.

use crate::error::{Error, Result};
use crate::model::format_ts;
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
        DataType::Decimal128(_, s) => crate::read::decimal_from_i128(a.as_primitive::<Decimal128Type>().value(i), *s)
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
    let name = path.display().to_string();
    match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => {
            let f = std::fs::File::open(path).map_err(|e| Error::io(format!("opening {name}"), e))?;
            let b =
                ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| Error::input(name.clone(), e.to_string()))?;
            let header = b.schema().fields().iter().map(|f| f.name().clone()).collect();
            let mut rows = Vec::new();
            for rb in b.build().map_err(|e| Error::input(name.clone(), e.to_string()))? {
                let rb: RecordBatch = rb.map_err(|e| Error::input(name.clone(), e.to_string()))?;
                for i in 0..rb.num_rows() {
                    rows.push(rb.columns().iter().map(|c| cell(c.as_ref(), i)).collect());
                }
            }
            Ok(TextTable { header, rows })
        }
        Some("csv") => {
            let mut r = csv::ReaderBuilder::new()
                .flexible(true)
                .from_path(path)
                .map_err(|e| Error::input(name.clone(), e.to_string()))?;
            let header = r
                .headers()
                .map_err(|e| Error::input(name.clone(), e.to_string()))?
                .iter()
                .map(str::to_string)
                .collect();
            let mut rows = Vec::new();
            for rec in r.records() {
                let rec = rec.map_err(|e| Error::input(name.clone(), e.to_string()))?;
                rows.push(
                    rec.iter()
                        .map(|s| match crate::read::parse_decimal_strict(s) {
                            Some(d) if s.contains('.') => d.normalize().to_string(),
                            _ => s.to_string(),
                        })
                        .collect(),
                );
            }
            Ok(TextTable { header, rows })
        }
        _ => Err(Error::input(name, "not a .parquet or .csv file")),
    }
}

/// Table `name` of a run directory (`name.parquet` or `name.csv`), if present.
pub fn read_run_table(dir: &Path, name: &'static str) -> Result<Option<TextTable>> {
    let Some(src) = crate::read::find_table(dir, name)? else { return Ok(None) };
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
            files.extend(crate::read::table_at(&p, "table")?.files);
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
        let m = std::fs::read_to_string(dir.join("run_manifest.json"))
            .map_err(|e| Error::io("reading run_manifest.json", e))?;
        out.push_str("== run_manifest.json\n");
        out.push_str(&m);
    }
    Ok(out)
}
