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
