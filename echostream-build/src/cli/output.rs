//! Where a command writes: standard output and error, and whether colour is wanted.

use std::io::{self, IsTerminal, Write};

/// The streams of a command.
pub struct Output {
    /// Results (such as the names of unformatted files).
    pub stdout: Box<dyn Write>,
    /// Diagnostics and summaries.
    pub stderr: Box<dyn Write>,
    /// Whether diagnostics may use ANSI colours.
    pub color: bool,
}

impl Output {
    /// The process's streams; colour when standard error is a terminal and `NO_COLOR` is
    /// unset.
    pub fn stdio() -> Self {
        let color = io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Output {
            stdout: Box::new(io::stdout()),
            stderr: Box::new(io::stderr()),
            color,
        }
    }

    /// Writes to standard error, ignoring failures (a closed pipe must not panic).
    pub fn err(&mut self, text: &str) {
        let _ = self.stderr.write_all(text.as_bytes());
    }

    /// Writes to standard output, ignoring failures.
    pub fn out(&mut self, text: &str) {
        let _ = self.stdout.write_all(text.as_bytes());
    }
}
