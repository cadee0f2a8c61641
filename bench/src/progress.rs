//! The progress display on stderr: `[3/8] rpc throughput, 16 KiB, concurrency 64 ... 6.4 s`,
//! the line started when a measurement starts and ended with its time when it is done.

use std::io::Write;
use std::time::Instant;

/// Where the run is.
pub struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    step: Instant,
}

impl Progress {
    /// A run of `total` measurements.
    pub fn new(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            started: Instant::now(),
            step: Instant::now(),
        }
    }

    /// Shows that measurement `title` started.
    pub fn start(&mut self, title: &str) {
        self.step = Instant::now();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "[{}/{}] {title} ... ", self.done + 1, self.total);
        let _ = err.flush();
    }

    /// Shows that the current measurement is done, with its time.
    pub fn done(&mut self) {
        self.done += 1;
        eprintln!("{:.1} s", self.step.elapsed().as_secs_f64());
    }

    /// Shows the total time.
    pub fn finish(&self) {
        eprintln!(
            "{} measurement(s) in {:.1} s",
            self.done,
            self.started.elapsed().as_secs_f64()
        );
    }
}
