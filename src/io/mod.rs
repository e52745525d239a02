//! Everything that touches files: finding a table's files ([`discover`]), decoding CSV and
//! Parquet into columns ([`read`]), encoding output tables ([`write`], with [`spool`] for
//! the Parquet files written off the pool), checksums ([`checksum`]), what a command may
//! overwrite ([`guard`]) and where a run's output is published ([`storage`]). The only modules that know file formats.

pub mod checksum;
pub(crate) mod discover;
pub(crate) mod guard;
pub(crate) mod read;
pub(crate) mod spool;
pub(crate) mod storage;
pub(crate) mod write;
