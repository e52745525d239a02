//! Performance devices, each behind one small module with what it buys stated once:
//! [`pages`] (page faults taken on the pool), [`memory`] (when freed memory goes back to the
//! OS). The others sit with what they serve: `io::spool` (Parquet outputs written off the
//! pool), `validate::index::FpSet` (the usage_id check's table, on 2 MiB pages, prefetched
//! ahead of its lookups), and the allocator itself in the binary (`cli::alloc`).

pub mod memory;
pub(crate) mod pages;
