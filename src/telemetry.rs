//! What the process measures of itself for `run_stats.json` and the log lines: wall and CPU
//! time per phase, resident memory (Linux `/proc`; zero elsewhere).

/// Peak resident set size from /proc (Linux), if available.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

/// Wall and CPU time since a phase began, for `run_stats.json`.
#[derive(Clone, Copy)]
pub struct PhaseClock {
    wall: std::time::Instant,
    cpu: f64,
}

impl PhaseClock {
    pub fn start() -> Self {
        PhaseClock { wall: std::time::Instant::now(), cpu: cpu_seconds() }
    }
    /// Wall seconds so far.
    pub fn seconds(&self) -> f64 {
        self.wall.elapsed().as_secs_f64()
    }
    /// `(phase, wall seconds, CPU seconds)` so far.
    pub fn lap(&self, phase: &'static str) -> (&'static str, f64, f64) {
        (phase, self.seconds(), cpu_seconds() - self.cpu)
    }
}

/// CPU time (user + system, all threads) this process has used so far, in seconds, from
/// /proc (Linux, in clock ticks of 1/100 s; 0 elsewhere). With the wall time of a phase it
/// tells how busy the pool was.
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let Some(rest) = s.rsplit_once(')').map(|r| r.1) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = f.get(11..13).map_or(0, |v| v.iter().filter_map(|x| x.parse::<u64>().ok()).sum());
    ticks as f64 / 100.0
}

/// Resident memory now, in MiB (0 where /proc is not available), for the phase log lines.
pub fn rss_mib() -> u64 {
    proc_status_bytes("VmRSS:").unwrap_or(0) >> 20
}

fn proc_status_bytes(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
