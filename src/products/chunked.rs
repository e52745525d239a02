//! Writing a table a chunk at a time (bounded memory), flat or as Hive part files, and the
//! tables written while the accounts are rated.

use super::tables::*;
use super::*;

/// Rows per written chunk (two in flight, beside the row group being encoded).
pub(super) const CHUNK: usize = 32_768;

/// Rows per part file of a Hive-partitioned table: sixteen full row groups (~4.2M rows).
pub(super) const PART_ROWS: usize = 16 * crate::io::write::ROW_GROUP_ROWS;

/// Where and how a run's tables are written.
#[derive(Clone, Copy)]
pub struct Dest<'p> {
    pub dir: &'p Path,
    pub progress: &'p dyn crate::progress::Progress,
    pub format: OutputFormat,
    pub layout: Layout,
    pub as_of: NaiveDate,
    /// Where finished files go to be fsynced (the publish waits for it).
    pub syncer: &'p crate::io::write::Syncer,
}

impl Dest<'_> {
    /// The file of `table` (part `part` in the Hive layout), relative to the run directory.
    fn file(&self, table: &str, part: usize) -> String {
        let ext = self.format.ext();
        match self.layout {
            Layout::Flat => format!("{table}.{ext}"),
            Layout::Hive => format!("{table}/as_of={}/part-{part:05}.{ext}", self.as_of),
        }
    }
}

/// One output table being written chunk by chunk. Flat: one file. Hive: part files of about
/// [`PART_ROWS`] rows (at least one, so an empty table still has its schema on disk).
pub struct ChunkedWriter<'p> {
    d: Dest<'p>,
    name: &'static str,
    schema: arrow_schema::Schema,
    current: Option<(String, TableWriter, usize)>,
    files: Vec<OutFile>,
}

/// One output file written: its name in the run directory, rows and SHA-256 (hex).
#[derive(Debug, Clone)]
pub struct OutFile {
    pub name: String,
    pub rows: usize,
    pub sha256: String,
}

impl<'p> ChunkedWriter<'p> {
    /// Start table `like.name` with the columns of `like` (any chunk of it; no rows are
    /// written).
    pub fn create(d: Dest<'p>, like: &OutTable) -> Result<ChunkedWriter<'p>> {
        let mut w = ChunkedWriter { d, name: like.name, schema: like.schema(), current: None, files: Vec::new() };
        w.open()?;
        Ok(w)
    }

    fn open(&mut self) -> Result<()> {
        let fname = self.d.file(self.name, self.files.len());
        let path = self.d.dir.join(&fname);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        self.current = Some((fname, TableWriter::create_for_run(&path, &self.schema, self.d.format)?, 0));
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((name, w, rows)) = self.current.take() {
            let sha256 = w.finish_with(self.d.syncer)?;
            self.files.push(OutFile { name, rows, sha256 });
        }
        Ok(())
    }

    /// Append a chunk of rows. In the Hive layout a new part starts once the current one
    /// holds [`PART_ROWS`] rows (so a part ends on a chunk boundary, a little over the limit).
    pub fn append(&mut self, t: &OutTable) -> Result<()> {
        let full = self.d.layout == Layout::Hive && self.current.as_ref().is_some_and(|c| c.2 >= PART_ROWS);
        if full {
            self.close()?;
            self.open()?;
        }
        let (_, w, rows) = self.current.as_mut().expect("a part is open");
        w.append(t)?;
        *rows += t.rows();
        self.d.progress.advance(t.rows() as u64);
        Ok(())
    }

    /// Finish the table: every file written, in order.
    pub fn finish(mut self) -> Result<Vec<OutFile>> {
        self.close()?;
        Ok(self.files)
    }
}

/// One output table to write: `n` rows, built [`CHUNK`] rows at a time by `build`.
pub(super) struct Chunked<'j> {
    pub(super) n: usize,
    pub(super) build: Box<dyn Fn(std::ops::Range<usize>) -> OutTable + Sync + 'j>,
}

impl<'j> Chunked<'j> {
    pub(super) fn new(n: usize, build: impl Fn(std::ops::Range<usize>) -> OutTable + Sync + 'j) -> Self {
        Chunked { n, build: Box::new(build) }
    }
}

/// Write `tables` one after another, [`CHUNK`] rows at a time, through one pipeline: each
/// chunk is built while the one before it is encoded (both column-parallel), across tables
/// too, so a table's first chunk is built while the table before it encodes its last chunk
/// and writes its last row group and footer. One chunk more in flight. Returns each table's
/// files, in order (an empty table is written as one chunk of no rows: its schema).
pub(super) fn write_all(d: Dest, tables: &[Chunked]) -> Result<Vec<Vec<OutFile>>> {
    let chunks = tables
        .iter()
        .enumerate()
        .flat_map(|(t, c)| (0..c.n.div_ceil(CHUNK).max(1)).map(move |k| (t, k * CHUNK..((k + 1) * CHUNK).min(c.n))));
    let mut files = Vec::with_capacity(tables.len());
    let mut open: Option<ChunkedWriter> = None;
    pipelined(
        chunks,
        |(t, r)| Ok((r.end == tables[t].n, (tables[t].build)(r))),
        |(last, chunk)| {
            if open.is_none() {
                open = Some(ChunkedWriter::create(d, &chunk)?);
            }
            let w = open.as_mut().expect("opened above");
            if chunk.rows() > 0 {
                w.append(&chunk)?;
            }
            if last {
                files.push(open.take().expect("opened above").finish()?);
            }
            Ok(())
        },
    )?;
    Ok(files)
}

/// The tables whose rows come in account order (wallet_id order: `wallets`,
/// `wallet_transactions`, `wallet_estimates`), written a rated chunk at a time while the
/// next chunk is rated: none of them is held for the whole run.
pub struct RatedWriters<'p> {
    run_id: &'p str,
    as_of: NaiveDate,
    wallets: ChunkedWriter<'p>,
    transactions: ChunkedWriter<'p>,
    estimates: ChunkedWriter<'p>,
}

/// The files of [`RatedWriters`]' tables.
pub struct RatedFiles {
    pub wallets: Vec<OutFile>,
    pub transactions: Vec<OutFile>,
    pub estimates: Vec<OutFile>,
}

impl<'p> RatedWriters<'p> {
    pub fn create(d: Dest<'p>, run_id: &'p str, as_of: NaiveDate) -> Result<RatedWriters<'p>> {
        Ok(RatedWriters {
            run_id,
            as_of,
            wallets: ChunkedWriter::create(d, &wallets_table(&[], &[]))?,
            transactions: ChunkedWriter::create(d, &transactions_table(run_id, as_of, &[], &[]))?,
            estimates: ChunkedWriter::create(d, &estimates_table(&[], &[]))?,
        })
    }

    /// The rows of a rated chunk, built (column-parallel for the transactions) but not yet
    /// written: built before the ledger takes the results, written beside it.
    pub fn build(&self, accounts: &[AccountIn<'p>], rated: &[AccountOut<'p>]) -> [OutTable; 3] {
        let (run_id, as_of) = (self.run_id, self.as_of);
        let ((w, t), e) = rayon::join(
            || rayon::join(|| wallets_table(accounts, rated), || transactions_table(run_id, as_of, accounts, rated)),
            || estimates_table(accounts, rated),
        );
        [w, t, e]
    }

    pub fn append(&mut self, [w, t, e]: &[OutTable; 3]) -> Result<()> {
        self.wallets.append(w)?;
        self.transactions.append(t)?;
        self.estimates.append(e)
    }

    pub fn finish(self) -> Result<RatedFiles> {
        Ok(RatedFiles {
            wallets: self.wallets.finish()?,
            transactions: self.transactions.finish()?,
            estimates: self.estimates.finish()?,
        })
    }
}
