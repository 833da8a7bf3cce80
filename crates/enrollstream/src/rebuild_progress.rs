//! How far a rebuild is, told to whoever runs it: a bar with rate and ETA on a terminal, plain
//! lines otherwise (a bar's redraws in a log file or a CI capture are noise, and a log reader wants
//! one line per step it can grep).
//!
//! Progress counts topic offsets, not events: the goal is the live projector group's committed
//! offsets, and offsets are what the rebuild can compare to it exactly. On Kafka a transaction's
//! commit marker takes an offset too, so the count can run ahead of the events projected.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A plain line at most this often: enough to see it move, few enough for a log.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub enum Progress {
    Bar(ProgressBar),
    Lines {
        total: u64,
        done: u64,
        /// Where this run started: the rate counts only its own work.
        from: u64,
        started: Instant,
        last_line: Instant,
    },
}

impl Progress {
    /// On stderr, where the rebuild's other reports go (stdout stays free for a caller's pipe).
    /// From `done` (a resumed rebuild has done some already) of `total`.
    pub fn start(done: u64, total: u64) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            bar.set_position(done);
            bar.set_style(
                ProgressStyle::with_template(
                    "rebuild {bar:40} {pos}/{len} offsets, {per_sec}, eta {eta}",
                )
                .expect("the template is valid"),
            );
            Self::Bar(bar)
        } else {
            eprintln!("rebuild progress: {done}/{total} offsets");
            let now = Instant::now();
            Self::Lines {
                total,
                done,
                from: done,
                started: now,
                last_line: now,
            }
        }
    }

    /// `total` may grow as the goal moves (a rebuild beside a live projector chases it).
    pub fn set(&mut self, done: u64, goal: u64) {
        match self {
            Self::Bar(bar) => {
                bar.set_length(goal);
                bar.set_position(done);
            }
            Self::Lines {
                total,
                done: at,
                from,
                started,
                last_line,
            } => {
                (*total, *at) = (goal, done);
                if last_line.elapsed() >= LINE_EVERY {
                    *last_line = Instant::now();
                    eprintln!("{}", line(done, *from, *total, started.elapsed()));
                }
            }
        }
    }

    /// The last position, shown for good.
    pub fn finish(self) {
        match self {
            Self::Bar(bar) => bar.finish(),
            Self::Lines {
                total,
                done,
                from,
                started,
                ..
            } => eprintln!("{}", line(done, from, total, started.elapsed())),
        }
    }
}

fn line(done: u64, from: u64, total: u64, elapsed: Duration) -> String {
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let rate = done.saturating_sub(from) as f64 / elapsed.as_secs_f64().max(0.001);
    let eta = if rate > 0.0 {
        let left = total.saturating_sub(done) as f64 / rate;
        format!("{}s", left.ceil() as u64)
    } else {
        "unknown".to_string()
    };
    format!("rebuild progress: {done}/{total} offsets ({percent}%), {rate:.0}/s, eta {eta}")
}

#[cfg(test)]
mod tests {
    use super::line;
    use std::time::Duration;

    #[test]
    fn a_line_names_position_share_rate_and_time_left() {
        assert_eq!(
            line(50, 0, 200, Duration::from_secs(5)),
            "rebuild progress: 50/200 offsets (25%), 10/s, eta 15s"
        );
    }

    #[test]
    fn nothing_done_yet_has_no_eta_and_nothing_to_do_is_complete() {
        assert!(line(0, 0, 10, Duration::from_secs(1)).ends_with("eta unknown"));
        assert!(line(0, 0, 0, Duration::from_secs(1)).contains("(100%)"));
    }

    #[test]
    fn a_resumed_run_counts_only_its_own_rate() {
        assert_eq!(
            line(150, 100, 200, Duration::from_secs(5)),
            "rebuild progress: 150/200 offsets (75%), 10/s, eta 5s"
        );
    }
}
