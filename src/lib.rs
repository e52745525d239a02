//! billrun: a batch billing-run processor.
//!
//! The pipeline follows the modules: [`read`] → [`validate`] → [`partition`] → [`rate`]
//! (and [`external`]) → [`output`] / [`write`], orchestrated by [`run`].
//! See docs/ARCHITECTURE.md.

pub mod checksum;
pub mod dump;
pub mod error;
pub mod external;
pub mod generate;
pub mod guard;
pub mod index;
pub mod iofloor;
pub mod job;
pub mod model;
pub mod output;
pub mod partition;
pub mod progress;
pub mod rate;
pub mod read;
#[cfg(feature = "report")]
pub mod report;
pub mod run;
pub mod validate;
pub mod verify;
pub mod write;

pub use error::{Error, Result};
