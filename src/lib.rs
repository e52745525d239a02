//! billrun: a batch billing-run processor.
//!
//! The folder tree is the pipeline (docs/ARCHITECTURE.md):
//! [`io`] reads the tables → [`validate`] turns rows into records or rejects →
//! [`partition`] groups them into accounts → [`rating`] rates each account (SPEC §4, one
//! file per step) → [`products`] folds the results into the output tables, manifest and
//! summary → [`io`] writes them; [`pipeline`] runs it all and publishes. [`domain`] holds
//! what every stage shares (periods, money, grammars, records, reasons, the job); [`tools`]
//! the commands beside the run (generate, verify, report, cat, io-floor); [`shard`] the
//! split of a night into shards and their merge (SPEC §10.1); [`perf`] the few performance
//! devices, each stated once.

pub mod domain;
pub mod error;
pub mod io;
pub(crate) mod partition;
pub mod perf;
pub mod pipeline;
pub(crate) mod products;
pub mod progress;
pub mod rating;
pub mod shard;
pub(crate) mod telemetry;
pub mod tools;
pub(crate) mod validate;

pub use error::{Error, Result};
