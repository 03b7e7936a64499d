//! Progress of the long data steps on stderr: an indicatif bar on a terminal, and off one
//! (a log file, a pipe, a batch job) a plain line every [`LOG_INTERVAL`] with what is done so
//! far, so a long command is never silent until its end.
//!
//! The log lines come from a thread that wakes on the interval and reads counters the step
//! updates ([`Progress::inc`], [`Progress::add_bytes`]); it stops when the [`Progress`] is
//! finished or dropped. Nothing is printed for a step that ends within the first interval.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a progress line is printed off a terminal (assumption: often enough to see a
/// step move in a log, rarely enough not to fill it: 720 lines an hour).
pub const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// The counters the log thread reads.
#[derive(Default)]
struct Counters {
    position: AtomicU64,
    bytes: AtomicU64,
}

/// A step's progress (see the module doc); hidden when progress is off.
pub struct Progress {
    bar: Option<ProgressBar>,
    counters: Arc<Counters>,
    stop: Option<Sender<()>>,
    log: Option<JoinHandle<()>>,
}

impl Progress {
    /// Shows progress on stderr when `show` is on: a bar of `len` (or a spinner counting
    /// `unit` when `None`) on a terminal, a line every [`LOG_INTERVAL`] otherwise.
    pub fn new(show: bool, len: Option<u64>, message: &str, unit: &str) -> Progress {
        Progress::with_interval(show, len, message, unit, LOG_INTERVAL)
    }

    /// As [`Progress::new`], with the log lines' interval given (for tests).
    pub fn with_interval(
        show: bool,
        len: Option<u64>,
        message: &str,
        unit: &str,
        interval: Duration,
    ) -> Progress {
        let counters = Arc::new(Counters::default());
        let mut progress = Progress {
            bar: None,
            counters: counters.clone(),
            stop: None,
            log: None,
        };
        if !show {
            return progress;
        }
        if std::io::stderr().is_terminal() {
            progress.bar = Some(terminal_bar(len, message, unit));
            return progress;
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let (message, unit) = (message.to_string(), unit.to_string());
        let start = Instant::now();
        let log = std::thread::spawn(move || loop {
            match stopped.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => {
                    eprintln!("{}", log_line(&message, &unit, len, &counters, start));
                }
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        });
        progress.stop = Some(stop);
        progress.log = Some(log);
        progress
    }

    /// Counts `n` more of the unit done.
    pub fn inc(&self, n: u64) {
        self.counters.position.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Counts `n` more bytes of text read.
    pub fn add_bytes(&self, n: u64) {
        self.counters.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets how many of the unit are done.
    pub fn set_position(&self, n: u64) {
        self.counters.position.store(n, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_position(n);
        }
    }

    /// Ends the progress: clears the bar, stops the log lines.
    pub fn finish_and_clear(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(log) = self.log.take() {
            let _ = log.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

fn terminal_bar(len: Option<u64>, message: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    let template = match len {
        Some(_) => format!(
            "{{msg}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}} left)"
        ),
        None => format!(
            "{{spinner}} {{msg}} [{{elapsed_precise}}] {{human_pos}} {unit} ({{per_sec}})"
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `dedup: 120,000 docs, 512.3 MB of text, 40 s` (with `of N` when the total is known).
fn log_line(
    message: &str,
    unit: &str,
    len: Option<u64>,
    counters: &Counters,
    start: Instant,
) -> String {
    let position = counters.position.load(Ordering::Relaxed);
    let bytes = counters.bytes.load(Ordering::Relaxed);
    let mut line = format!("{message}: {}", thousands(position));
    if let Some(len) = len {
        line += &format!(" of {}", thousands(len));
    }
    if !unit.is_empty() {
        line += &format!(" {unit}");
    }
    if bytes > 0 {
        line += &format!(", {:.1} MB of text", bytes as f64 / 1e6);
    }
    line + &format!(", {:.0} s", start.elapsed().as_secs_f64())
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_say_what_is_done() {
        let counters = Counters::default();
        counters.position.store(1_234_567, Ordering::Relaxed);
        counters.bytes.store(2_500_000, Ordering::Relaxed);
        let line = log_line("dedup", "docs", None, &counters, Instant::now());
        assert_eq!(line, "dedup: 1,234,567 docs, 2.5 MB of text, 0 s");
        let line = log_line("mix", "tokens", Some(10_000_000), &counters, Instant::now());
        assert!(
            line.starts_with("mix: 1,234,567 of 10,000,000 tokens"),
            "{line}"
        );
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
    }
}
