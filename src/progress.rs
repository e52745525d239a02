//! Progress of a run, as the library reports it: phases (read, rate, write) with row counts.
//! The library only counts; the binary decides how to show it (a terminal progress bar, or
//! nothing while `tracing` log lines carry the timings). Log lines themselves go through
//! `tracing` events emitted by the run.

/// A sink for phase progress. Every method has a no-op default.
pub trait Progress: Send + Sync {
    /// A phase begins; `total` is the number of rows it will process, when known.
    fn begin(&self, _phase: &'static str, _total: Option<u64>) {}
    /// `n` more rows of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// The current phase is over.
    fn end(&self) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {}

/// A progress sink shared by the run's threads.
pub type SharedProgress = std::sync::Arc<dyn Progress>;
