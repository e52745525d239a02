//! The commands beside the billing run, each over files only: [`generate`] (synthetic
//! datasets), [`verify`] (re-checks a published run), [`report`] (the finance report, with
//! polars, behind the `report` feature), [`dump`] (`billrun cat`) and [`iofloor`] (the
//! benchmark floor: decode the inputs, encode the outputs, nothing else).

pub mod dump;
pub mod generate;
pub mod iofloor;
#[cfg(feature = "report")]
pub mod report;
pub mod verify;
