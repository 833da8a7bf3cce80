//! Resident memory of every process of the run, sampled from /proc, and the growth judgement.

use std::collections::BTreeMap;

use crate::accounting::Check;

/// Resident set size of `pid` in KiB (`VmRSS` of /proc/PID/status); None once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The samples of one process lifetime (a restart begins a new series: a fresh process).
#[derive(Default)]
pub struct Series {
    pub samples: Vec<u64>,
}

/// Samples per process name and start.
#[derive(Default)]
pub struct Sampler {
    pub series: BTreeMap<(String, u32), Series>,
}

impl Sampler {
    pub fn sample(&mut self, name: &str, start: u32, pid: Option<u32>) {
        if let Some(kib) = pid.and_then(rss_kib) {
            let key = (name.to_string(), start);
            self.series.entry(key).or_default().samples.push(kib);
        }
    }

    /// Highest sample per process name.
    pub fn peaks(&self) -> BTreeMap<String, u64> {
        let mut peaks = BTreeMap::new();
        for ((name, _), series) in &self.series {
            let peak = series.samples.iter().copied().max().unwrap_or(0);
            let entry = peaks.entry(name.clone()).or_insert(0);
            *entry = (*entry).max(peak);
        }
        peaks
    }
}

/// Fewest samples a lifetime needs before its trend is judged.
pub const MIN_SAMPLES: usize = 12;

/// Growth of one lifetime: the mean of its last third over the mean of its middle third (the
/// first third is warm-up: caches, connection pools and allocator arenas fill). None when too
/// short to judge. A leak grows steadily, so it shows as a last third well above the middle.
pub fn growth(samples: &[u64]) -> Option<f64> {
    if samples.len() < MIN_SAMPLES {
        return None;
    }
    let third = samples.len() / 3;
    let mean = |s: &[u64]| s.iter().sum::<u64>() as f64 / s.len() as f64;
    let middle = mean(&samples[third..2 * third]);
    let last = mean(&samples[2 * third..]);
    Some(last / middle)
}

/// The test bed's own servers: sampled and shown, not judged. They are not the code under test,
/// and FerretDB's SQLite caches grow with the data the run writes (1.3 to 1.4 over a short run).
pub const PEERS: [&str; 3] = ["kafka", "ferretdb", "smtp"];

/// No lifetime of an enrollstream process whose memory grew by more than half from its middle
/// to its last third; lifetimes too short to judge are counted, not judged.
pub fn checks(sampler: &Sampler) -> Vec<Check> {
    const LIMIT: f64 = 1.5;
    let mut judged = 0;
    let mut worst: (f64, String) = (0.0, String::new());
    for ((name, start), series) in &sampler.series {
        let Some(g) = growth(&series.samples) else {
            continue;
        };
        if PEERS.contains(&name.as_str()) {
            continue;
        }
        judged += 1;
        if g > worst.0 {
            worst = (g, format!("{name}#{start}"));
        }
    }
    vec![
        Check::new(
            "process lifetimes long enough to judge RSS",
            "> 0",
            judged,
            judged > 0,
        ),
        Check::new(
            &format!("worst RSS growth, last/middle third ({})", worst.1),
            format!("<= {LIMIT}"),
            format!("{:.2}", worst.0),
            worst.0 <= LIMIT,
        ),
    ]
}

/// The growth of the test bed's servers' lifetimes, for the figures.
pub fn peer_growth(sampler: &Sampler) -> String {
    let mut peers = Vec::new();
    for ((name, _), series) in &sampler.series {
        if let (true, Some(g)) = (PEERS.contains(&name.as_str()), growth(&series.samples)) {
            peers.push(format!("{name} {g:.2}"));
        }
    }
    peers.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_memory_has_no_growth_and_a_leak_has() {
        let steady: Vec<u64> = (0..30).map(|i| 100 + (i % 3)).collect();
        let leak: Vec<u64> = (0..30).map(|i| 100 + 10 * i).collect();
        assert!(growth(&steady).unwrap() < 1.05);
        assert!(growth(&leak).unwrap() > 1.3);
        assert_eq!(growth(&steady[..5]), None);
    }

    #[test]
    fn rss_of_this_process_is_read() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
