//! `run_stats.json`: thread count, host-dependent timings and memory, the one output allowed
//! to differ between identical runs.

use super::*;

/// `run_stats.json`: the one output allowed to differ between identical runs.
pub fn write_stats(c: &RunMeta, dir: &Path, timings: &[(&'static str, f64, f64)]) -> Result<()> {
    let total = timings.iter().find(|t| t.0 == "total").map_or(0.0, |t| t.1);
    let rows = c.intake.rows_read;
    let stats = json!({
        "run_id": c.run_id,
        "threads": c.threads,
        "host": std::env::var("HOSTNAME").ok().or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_string())),
        "phase_seconds": timings.iter().map(|(k, v, _)| (k.to_string(), json!(v))).collect::<Map<_, _>>(),
        "phase_cpu_seconds": timings.iter().map(|(k, _, c)| (k.to_string(), json!((c * 100.0).round() / 100.0))).collect::<Map<_, _>>(),
        "input_rows": rows,
        "rows_per_second": if total > 0.0 { rows as f64 / total } else { 0.0 },
        "peak_rss_bytes": crate::telemetry::peak_rss_bytes(),
    });
    let text = serde_json::to_string_pretty(&stats).map_err(|e| Error::Internal(e.to_string()))? + "\n";
    crate::io::write::write_durable(&dir.join("run_stats.json"), text.as_bytes())
        .map_err(|e| Error::io("writing run_stats.json", e))
}
