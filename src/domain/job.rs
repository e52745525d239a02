//! The job definition (`jobs/*.toml`, SPEC §2).

use crate::domain::{Period, Rounding};
use crate::error::{Error, Result};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::path::Path;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Parquet,
    Csv,
}

impl OutputFormat {
    pub fn ext(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::Csv => "csv",
        }
    }

    pub fn parse(s: &str) -> std::result::Result<OutputFormat, String> {
        match s {
            "parquet" => Ok(OutputFormat::Parquet),
            "csv" => Ok(OutputFormat::Csv),
            o => Err(format!("expected parquet or csv, got {o:?}")),
        }
    }
}

/// How output tables are laid out in the run directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Layout {
    /// `<table>.<ext>`: one file per table.
    #[default]
    Flat,
    /// `<table>/as_of=YYYY-MM-DD/part-NNNNN.<ext>`: a Hive-partitioned dataset per table.
    Hive,
}

impl Layout {
    pub fn parse(s: &str) -> std::result::Result<Layout, String> {
        match s {
            "flat" => Ok(Layout::Flat),
            "hive" => Ok(Layout::Hive),
            o => Err(format!("expected flat or hive, got {o:?}")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Estimation {
    Off,
    Changed,
    All,
}

#[derive(Clone, Debug)]
pub struct Steps {
    pub start_service: bool,
    pub reconnection_threshold: Decimal,
    pub stop_service: bool,
    pub disconnection_threshold: Decimal,
    pub wallet_estimation: Estimation,
    pub low_balance_days: i64,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub name: String,
    pub recurrence: Period,
    pub recurrence_text: String,
    pub threads: usize,
    pub debit_transaction_type: String,
    pub rounding: Rounding,
    pub output_format: OutputFormat,
    /// Not in SPEC §2: `output_layout = "flat" | "hive"` (default flat).
    pub output_layout: Layout,
    /// Not in SPEC §2: `lineage = true` writes `usage_lineage` (default false).
    pub lineage: bool,
    /// Not in SPEC §2: `dedupe_memory_mib`, the most memory (MiB) the usage_id duplicate
    /// check may hold; above it the check first finds the repeated ids on disk (default 1024).
    pub dedupe_memory_mib: u64,
    pub max_reject_ratio: f64,
    pub steps: Steps,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: String,
    recurrence: String,
    #[serde(default = "default_threads")]
    threads: usize,
    #[serde(default = "default_debit")]
    debit_transaction_type: String,
    #[serde(default = "default_rounding")]
    rounding: String,
    #[serde(default = "default_format")]
    output_format: String,
    #[serde(default = "default_layout")]
    output_layout: String,
    #[serde(default)]
    lineage: bool,
    #[serde(default = "default_dedupe_memory")]
    dedupe_memory_mib: u64,
    #[serde(default = "default_ratio")]
    max_reject_ratio: f64,
    #[serde(default)]
    steps: RawSteps,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSteps {
    #[serde(default = "yes")]
    start_service: bool,
    #[serde(default)]
    reconnection_threshold: Threshold,
    #[serde(default = "yes")]
    stop_service: bool,
    #[serde(default)]
    disconnection_threshold: Threshold,
    #[serde(default = "default_estimation")]
    wallet_estimation: String,
    #[serde(default = "default_low")]
    low_balance_days: i64,
}

impl Default for RawSteps {
    fn default() -> Self {
        RawSteps {
            start_service: true,
            reconnection_threshold: Threshold::default(),
            stop_service: true,
            disconnection_threshold: Threshold::default(),
            wallet_estimation: default_estimation(),
            low_balance_days: default_low(),
        }
    }
}

/// A threshold may be written as a string ("0") or a TOML integer; never a float.
#[derive(Deserialize)]
#[serde(untagged)]
enum Threshold {
    Text(String),
    Int(i64),
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold::Int(0)
    }
}

fn yes() -> bool {
    true
}
fn default_threads() -> usize {
    1
}
fn default_debit() -> String {
    "NORMAL_DEBIT".into()
}
fn default_rounding() -> String {
    "half_up".into()
}
fn default_format() -> String {
    "parquet".into()
}
fn default_layout() -> String {
    "flat".into()
}
fn default_dedupe_memory() -> u64 {
    1024
}
fn default_ratio() -> f64 {
    0.01
}
fn default_estimation() -> String {
    "changed".into()
}
fn default_low() -> i64 {
    3
}

impl Job {
    pub fn load(path: &Path) -> Result<Job> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Job { file: path.to_path_buf(), message: e.to_string() })?;
        Job::parse(&text).map_err(|message| Error::Job { file: path.to_path_buf(), message })
    }

    pub fn parse(text: &str) -> std::result::Result<Job, String> {
        let raw: RawJob = toml::from_str(text).map_err(|e| e.to_string())?;
        let recurrence =
            Period::parse(&raw.recurrence).ok_or_else(|| format!("recurrence: not a period: {:?}", raw.recurrence))?;
        let rounding = match raw.rounding.as_str() {
            "half_up" => Rounding::HalfUp,
            "half_even" => Rounding::HalfEven,
            o => return Err(format!("rounding: expected half_up or half_even, got {o:?}")),
        };
        let output_format = match OutputFormat::parse(&raw.output_format) {
            Ok(f) => f,
            Err(e) => return Err(format!("output_format: {e}")),
        };
        let output_layout = Layout::parse(&raw.output_layout).map_err(|e| format!("output_layout: {e}"))?;
        let wallet_estimation = match raw.steps.wallet_estimation.as_str() {
            "off" => Estimation::Off,
            "changed" => Estimation::Changed,
            "all" => Estimation::All,
            o => return Err(format!("steps.wallet_estimation: expected off, changed or all, got {o:?}")),
        };
        if raw.threads == 0 {
            return Err("threads: must be >= 1".into());
        }
        // (NaN is refused too.)
        if raw.max_reject_ratio.is_nan() || raw.max_reject_ratio < 0.0 {
            return Err("max_reject_ratio: must be >= 0".into());
        }
        if raw.name.is_empty() {
            return Err("name: must not be empty".into());
        }
        let threshold = |t: &Threshold, what: &str| -> std::result::Result<Decimal, String> {
            match t {
                Threshold::Int(i) => Ok(Decimal::from(*i)),
                Threshold::Text(s) => {
                    crate::domain::parse_decimal_strict(s).ok_or_else(|| format!("steps.{what}: not a decimal: {s:?}"))
                }
            }
        };
        Ok(Job {
            name: raw.name,
            recurrence,
            recurrence_text: raw.recurrence,
            threads: raw.threads,
            debit_transaction_type: raw.debit_transaction_type,
            rounding,
            output_format,
            output_layout,
            lineage: raw.lineage,
            dedupe_memory_mib: raw.dedupe_memory_mib,
            max_reject_ratio: raw.max_reject_ratio,
            steps: Steps {
                start_service: raw.steps.start_service,
                reconnection_threshold: threshold(&raw.steps.reconnection_threshold, "reconnection_threshold")?,
                stop_service: raw.steps.stop_service,
                disconnection_threshold: threshold(&raw.steps.disconnection_threshold, "disconnection_threshold")?,
                wallet_estimation,
                low_balance_days: raw.steps.low_balance_days,
            },
        })
    }
}

impl FromStr for Job {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Job::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec_example() {
        let j = Job::parse(
            r#"
name = "company-zx-daily-prepaid"
recurrence = "1 day"
threads = 32
debit_transaction_type = "NORMAL_DEBIT"
rounding = "half_up"
output_format = "parquet"
max_reject_ratio = 0.01
[steps]
start_service = true
reconnection_threshold = "0"
stop_service = true
disconnection_threshold = "0"
wallet_estimation = "changed"
low_balance_days = 3
"#,
        )
        .unwrap();
        assert_eq!(j.threads, 32);
        assert_eq!(j.steps.wallet_estimation, Estimation::Changed);
        assert_eq!(j.steps.disconnection_threshold, Decimal::ZERO);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(Job::parse("name='x'\nrecurrence='1 day'\nbogus=1").is_err());
        assert!(Job::parse("name='x'\nrecurrence='1 fortnight'").is_err());
        assert!(Job::parse("name='x'\nrecurrence='1 day'\nrounding='up'").is_err());
    }
}
