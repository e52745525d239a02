//! What a person or a scheduler sees on stderr: `tracing` log lines (plain or JSON) and, on a
//! terminal, a progress bar per phase.

use billrun::progress::SharedProgress;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

/// Log lines through `tracing` on stderr: plain text with the time since start, or one JSON
/// object per line (`--log-format json`); nothing but warnings with `--quiet`. On a terminal
/// (plain format) each phase also gets a progress bar with rows/s, and log lines print above it.
pub fn init_logging(quiet: bool, json: bool) -> SharedProgress {
    let level = if quiet { tracing::Level::WARN } else { tracing::Level::INFO };
    let builder = tracing_subscriber::fmt().with_max_level(level).with_target(false);
    if json {
        builder.json().flatten_event(true).with_writer(std::io::stderr).init();
        return Arc::new(billrun::progress::Silent);
    }
    if quiet || !std::io::stderr().is_terminal() {
        builder
            .with_ansi(false)
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_writer(std::io::stderr)
            .init();
        return Arc::new(billrun::progress::Silent);
    }
    let bars = Bars { mp: indicatif::MultiProgress::new(), current: Mutex::new(None) };
    let mp = bars.mp.clone();
    builder
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_writer(move || AboveBars { mp: mp.clone(), buf: Vec::new() })
        .init();
    Arc::new(bars)
}

/// Terminal progress bars, one per phase.
struct Bars {
    mp: indicatif::MultiProgress,
    current: Mutex<Option<indicatif::ProgressBar>>,
}

impl billrun::progress::Progress for Bars {
    fn begin(&self, phase: &'static str, total: Option<u64>) {
        use indicatif::{ProgressBar, ProgressState, ProgressStyle};
        // The rate phase counts accounts; read and write count rows.
        let unit = if phase == "rate" { "accounts" } else { "rows" };
        let rate = move |st: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} {unit}/s", st.per_sec());
        };
        let style = |template: String| {
            ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key("rate", rate)
        };
        let pb = match total {
            Some(n) => ProgressBar::new(n).with_style(style(format!(
                "{{prefix:>5}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} ({{rate}})"
            ))),
            None => ProgressBar::new_spinner().with_style(style(format!(
                "{{prefix:>5}} [{{elapsed_precise}}] {{spinner}} {{human_pos}} {unit} ({{rate}})"
            ))),
        };
        pb.set_prefix(phase);
        let pb = self.mp.add(pb);
        pb.enable_steady_tick(std::time::Duration::from_millis(100));
        if let Ok(mut c) = self.current.lock() {
            *c = Some(pb);
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(c) = self.current.lock() {
            if let Some(pb) = c.as_ref() {
                pb.inc(n);
            }
        }
    }
    fn end(&self) {
        if let Some(pb) = self.current.lock().ok().and_then(|mut c| c.take()) {
            pb.finish();
        }
    }
}

/// One log line, printed above the progress bars when dropped.
struct AboveBars {
    mp: indicatif::MultiProgress,
    buf: Vec<u8>,
}

impl std::io::Write for AboveBars {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for AboveBars {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.mp.suspend(|| {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), &buf);
        });
    }
}
