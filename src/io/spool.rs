//! A performance device: a run's Parquet outputs are hashed and written by a thread per
//! file, off the rayon pool, which would otherwise wait on the page cache.

/// Bytes a [`Spool`] gathers before handing them to its thread.
pub(crate) const SPOOL_BLOCK: usize = 4 << 20;

/// A file written off the rayon pool: the bytes are gathered into blocks of [`SPOOL_BLOCK`]
/// bytes, each handed to a thread of the file's own that hashes it (SHA-256, for the
/// manifest) and writes it, at most two blocks queued ahead of it. A run's Parquet outputs
/// are spooled (`TableWriter::create_for_run`), so that the copy into the page cache and the
/// hashing do not hold a pool thread. Files written where the pool has no idle moments (a
/// run's CSV outputs, formatted on the whole pool; the I/O floor's) are not: there the
/// file's thread would only compete with the pool. Measured in docs/BENCHMARKS-HISTORY.md.
pub struct Spool {
    buf: Vec<u8>,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    /// Blocks the thread has written, handed back empty to be filled again.
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    /// None once joined (when it stopped early: see [`Spool::stopped`]).
    thread: Option<std::thread::JoinHandle<std::io::Result<crate::io::checksum::Hashed<std::fs::File>>>>,
}

impl Spool {
    pub(crate) fn new(file: std::fs::File) -> std::io::Result<Spool> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (back, spare) = std::sync::mpsc::channel::<Vec<u8>>();
        let thread = std::thread::Builder::new().name("billrun-write".into()).spawn(move || {
            use std::io::Write;
            let mut f = crate::io::checksum::Hashed::new(file);
            for mut block in rx {
                f.write_all(&block)?;
                block.clear();
                let _ = back.send(block);
            }
            Ok(f)
        })?;
        Ok(Spool { buf: Vec::with_capacity(SPOOL_BLOCK), tx: Some(tx), spare, thread: Some(thread) })
    }

    /// Hand the gathered bytes to the thread (an emptied block, if one is back, to gather
    /// the next); if the thread has stopped, its error.
    pub(crate) fn send(&mut self) -> std::io::Result<()> {
        let next = self.spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(SPOOL_BLOCK));
        let block = std::mem::replace(&mut self.buf, next);
        match self.tx.as_ref().map(|tx| tx.send(block)) {
            Some(Ok(())) => Ok(()),
            _ => Err(self.stopped()),
        }
    }

    /// The error the thread stopped on (a full disk), when a block could not be queued: the
    /// writer reports the first failure with its cause.
    pub(crate) fn stopped(&mut self) -> std::io::Error {
        match self.join() {
            Err(e) => e,
            Ok(_) => std::io::Error::other("the file's writer thread stopped"),
        }
    }

    /// Let the thread finish the blocks queued and wait for it: the file, hashed.
    pub(crate) fn join(&mut self) -> std::io::Result<crate::io::checksum::Hashed<std::fs::File>> {
        drop(self.tx.take());
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(written)) => written,
            Some(Err(_)) => Err(std::io::Error::other("the file's writer thread panicked")),
            None => Err(std::io::Error::other("the file's writer thread stopped")),
        }
    }

    /// Write the rest and wait for the thread: the file (all written) and its SHA-256, hex.
    pub(crate) fn close(mut self) -> std::io::Result<(std::fs::File, String)> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        let f = self.join()?;
        Ok((f.inner, f.hash.hex()))
    }
}

impl std::io::Write for Spool {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= SPOOL_BLOCK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    /// The bytes go out by blocks and at [`Spool::close`].
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
