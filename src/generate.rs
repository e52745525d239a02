//! `billrun generate`: deterministic synthetic datasets.
use crate::error::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct GenArgs {
    #[arg(long)]
    pub accounts: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value = "2026-11-22")]
    pub as_of: String,
    #[arg(long, default_value = "parquet")]
    pub format: String,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn generate(_a: &GenArgs) -> Result<String> {
    Err(crate::Error::Usage("generate: not implemented yet".into()))
}
