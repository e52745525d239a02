//! `billrun verify DIR`: re-check a published run from its files alone.
use crate::error::Result;
use std::path::Path;

pub fn verify(_dir: &Path) -> Result<String> {
    Err(crate::Error::Usage("verify: not implemented yet".into()))
}
