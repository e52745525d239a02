//! Everything that touches files: finding a table's files ([`discover`]), decoding CSV and
//! Parquet into columns ([`read`]), encoding output tables ([`write`], with [`spool`] for
//! the Parquet files written off the pool), checksums ([`checksum`]), what a command may
//! overwrite ([`guard`]), where a run's output is published ([`storage`]) and object-store
//! URLs ([`object`], SPEC §10.2). The only modules that know file formats and stores.

pub mod checksum;
pub(crate) mod discover;
pub(crate) mod guard;
pub mod object;
pub(crate) mod read;
pub(crate) mod spool;
pub(crate) mod storage;
pub(crate) mod write;

/// The files under `dir` (at any depth), relative to it and `/`-separated.
pub(crate) fn files_under(dir: &std::path::Path) -> crate::error::Result<Vec<String>> {
    fn walk(dir: &std::path::Path, rel: &str, out: &mut Vec<String>) -> crate::error::Result<()> {
        let err = |e| crate::error::Error::io(format!("reading {}", dir.display()), e);
        for e in std::fs::read_dir(dir).map_err(err)? {
            let e = e.map_err(err)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if e.path().is_dir() {
                walk(&e.path(), &r, out)?;
            } else {
                out.push(r);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    Ok(out)
}
