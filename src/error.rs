//! Typed errors. Each carries what an operator needs to find the problem (file, row, column,
//! value) and maps to one exit code of SPEC §6.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command line or job file (exit 2).
    #[error("{0}")]
    Usage(String),

    #[error("job file {file}: {message}")]
    Job { file: PathBuf, message: String },

    /// An input that cannot be read at all: missing file or column, truncated Parquet,
    /// a money column stored as floating point (exit 2).
    #[error("{file}: {}{}{message}", column.as_ref().map(|c| format!("column {c}: ")).unwrap_or_default(), row.map(|r| format!("row {r}: ")).unwrap_or_default())]
    Input { file: String, column: Option<String>, row: Option<u64>, message: String },

    /// The reject gate failed (exit 3).
    #[error("{rejected} of {total} input rows rejected (ratio {ratio:.6} > max_reject_ratio {max}); nothing published, rejects and manifest in {review_dir}")]
    TooManyRejects { rejected: u64, total: u64, ratio: f64, max: f64, review_dir: String, summary: String },

    /// The output directory exists and `--force` was not given (exit 4).
    #[error("output {0} exists (use --force to replace it)")]
    OutputExists(PathBuf),

    /// An output (or a file kept beside it) is, contains or lies inside one of the
    /// command's inputs (exit 2): refused with or without `--force`.
    #[error("{0}")]
    Overlap(String),

    /// `--force` (or an overwrite) refused: the path is not a previous billrun output
    /// (exit 4). `foreign` is the entry that makes it foreign.
    #[error("{} is not a billrun output ({} is not billrun's); refused, nothing replaced", dir.display(), foreign.display())]
    NotAnOutput { dir: PathBuf, foreign: PathBuf },

    /// Another run holds the output's lock (exit 4).
    #[error("another billrun is writing {0}; refused")]
    Busy(PathBuf),

    /// A run-level invariant broke: a bug (exit 1).
    #[error("invariant broken: {0}")]
    Invariant(String),

    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },

    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Job { .. } | Error::Input { .. } | Error::Overlap(_) => 2,
            Error::TooManyRejects { .. } => 3,
            Error::OutputExists(_) | Error::NotAnOutput { .. } | Error::Busy(_) => 4,
            Error::Invariant(_) | Error::Io { .. } | Error::Internal(_) => 1,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }

    pub fn input(file: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Input { file: file.into(), column: None, row: None, message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
