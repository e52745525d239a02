//! SHA-256 checksums for the manifest (SPEC §5: every input and output file with its
//! SHA-256): a digest in progress, a reader/writer that hashes what goes through it, and a
//! whole file's digest.

use crate::error::{Error, Result};
use std::path::Path;

/// A file (or any reader or writer) that hashes (SHA-256) every byte read from or written
/// to it: a file's checksum for the manifest comes with its one pass, not from a second
/// read (CSV inputs as they are read, every output as it is written).
pub struct Hashed<T> {
    pub inner: T,
    pub hash: Sha256,
}

impl<T> Hashed<T> {
    pub fn new(inner: T) -> Hashed<T> {
        Hashed { inner, hash: Sha256::default() }
    }
}

impl<R: std::io::Read> std::io::Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<W: std::io::Write> std::io::Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut h = Sha256::default();
    let mut fh = std::fs::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = fh.read(&mut buf).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.hex())
}

/// The SHA-256 of each of a run's input files, taken on a thread of its own (off the rayon
/// pool, like the fsyncs) from when the run has read its inputs until the manifest is
/// written. A file hashed as it was read (CSV) is not read again; a Parquet file, read only
/// in part, is read whole here. On the pool, the hashing of a large input held a thread
/// through the write phase, blocked on the disk where the file had left the page cache;
/// here its CPU time falls in the pool's idle moments and its waits cost no thread.
pub struct InputHashes(std::thread::JoinHandle<Result<Vec<String>>>);

impl InputHashes {
    /// Start hashing `files` (path, and the checksum already taken, if any), in order.
    pub fn start(files: Vec<(std::path::PathBuf, Option<String>)>) -> Result<InputHashes> {
        std::thread::Builder::new()
            .name("billrun-hash".into())
            .spawn(move || files.into_iter().map(|(path, sha)| sha.map_or_else(|| sha256_file(&path), Ok)).collect())
            .map(InputHashes)
            .map_err(|e| Error::io("starting the input checksum thread", e))
    }

    /// The files' checksums, in the order given (the first failure, if any).
    pub fn wait(self) -> Result<Vec<String>> {
        self.0.join().unwrap_or_else(|_| Err(Error::Internal("the input checksum thread panicked".into())))
    }
}

/// A SHA-256 in progress, for the manifest's checksums. ring's implementation: it uses the
/// CPU's SHA instructions where there are some, and on a machine without them its AVX path
/// hashed 190 MB/s against 105 MB/s for the `sha2` crate's portable code; a run hashes
/// every input and output byte.
pub struct Sha256(ring::digest::Context);

impl Default for Sha256 {
    fn default() -> Self {
        Sha256(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Sha256 {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes)
    }

    /// The hex digest (the form the manifest records).
    pub fn hex(self) -> String {
        use std::fmt::Write;
        self.0.finish().as_ref().iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}
