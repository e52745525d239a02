//! Finding a table's files (SPEC §1): `<name>.parquet`, `<name>.csv`, or a directory
//! `<name>/` of part files read in file-name order.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
}

/// One file of a table.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    /// The file's name as recorded in rejects and the manifest: relative to the argument
    /// that named it (`wallets.csv`, `usage/part-0001.parquet`), so identical inputs give
    /// identical manifests wherever they live.
    pub name: String,
    pub format: Format,
}

/// A table: its name (as in rejects) and its files in read order.
#[derive(Clone, Debug)]
pub struct TableSource {
    pub table: &'static str,
    pub files: Vec<SourceFile>,
}

fn format_of(p: &Path) -> Option<Format> {
    match p.extension().and_then(|e| e.to_str()) {
        Some("parquet") => Some(Format::Parquet),
        Some("csv") => Some(Format::Csv),
        _ => None,
    }
}

/// Find table `name` in a state directory: `name.parquet`, `name.csv` or `name/`.
pub fn find_table(dir: &Path, name: &'static str) -> Result<Option<TableSource>> {
    let candidates = [dir.join(format!("{name}.parquet")), dir.join(format!("{name}.csv")), dir.join(name)];
    let found: Vec<&PathBuf> = candidates.iter().filter(|p| p.exists()).collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(table_at(found[0], name)?)),
        _ => Err(Error::input(
            dir.display().to_string(),
            format!(
                "table {name} is present in more than one form ({})",
                found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// A table named by a path: a file or a directory of part files, which may sit in Hive
/// partition directories (`usage/as_of=2026-11-22/part-00000.parquet`). Files are named (in
/// rejects and the manifest) relative to that path's parent (`usage.parquet`,
/// `usage/part-0001.parquet`) and read in that name's byte order.
pub fn table_at(path: &Path, name: &'static str) -> Result<TableSource> {
    let base = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    if path.is_dir() {
        let mut files = Vec::new();
        collect_parts(path, &base, &mut files)?;
        files.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(TableSource { table: name, files })
    } else if path.is_file() {
        let format = format_of(path).ok_or_else(|| {
            Error::input(path.display().to_string(), "unknown file format (expected .parquet or .csv)")
        })?;
        Ok(TableSource { table: name, files: vec![SourceFile { path: path.to_path_buf(), name: base, format }] })
    } else {
        Err(Error::input(path.display().to_string(), "no such file or directory"))
    }
}

/// The `.parquet`/`.csv` files of `dir` and of its Hive partition directories (`key=value`).
fn collect_parts(dir: &Path, name: &str, files: &mut Vec<SourceFile>) -> Result<()> {
    let err = |e| Error::io(format!("reading directory {}", dir.display()), e);
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let p = entry.path();
        let fname = entry.file_name().to_string_lossy().into_owned();
        if p.is_dir() && fname.contains('=') && !fname.starts_with('.') {
            collect_parts(&p, &format!("{name}/{fname}"), files)?;
        } else if let Some(f) = format_of(&p).filter(|_| p.is_file()) {
            files.push(SourceFile { name: format!("{name}/{fname}"), path: p, format: f });
        }
    }
    Ok(())
}
