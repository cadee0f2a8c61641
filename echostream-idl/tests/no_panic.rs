//! Hostile input never panics the parser, the checker or the formatter: they return
//! diagnostics. Three sources of input, all seeded (the same on every run) and bounded:
//! random bytes, every prefix of every valid golden schema, and random mutations of them.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use echostream_idl::{Compilation, Diagnostic, FileId, compile_source, format_source, parse};

/// A small deterministic generator (xorshift64*), so that failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces of the language that make mutations reach deep into the grammar and the checker.
const PIECES: &[&str] = &[
    "message",
    "enum",
    "service",
    "oneof",
    "reserved",
    "optional",
    "repeated",
    "map<",
    ">",
    "rpc",
    "event",
    "stream",
    "returns",
    "package",
    "import",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ";",
    "=",
    ",",
    ".",
    "to",
    "max",
    "0",
    "-1",
    "19000",
    "536870912",
    "0x",
    "\"",
    "//",
    "/*",
    "*/",
    "///",
    "\n",
    " ",
    "string",
    "A",
    "A.B",
    ".x.y",
    "delivery = datagram",
    "timeout_ms = 0",
    "é",
    "\r",
];

/// Runs everything a user can run on `text`; panics propagate and fail the test.
fn exercise(text: &str) {
    // The formatter stops at the syntax error, as `parse` does.
    if check(text).is_none() {
        let formatted = format_source(FileId::default(), text).expect("a file that parses");
        let again = format_source(FileId::default(), &formatted).expect("formatted text parses");
        assert_eq!(formatted, again, "formatting is idempotent on:\n{text}");
    }
}

/// Checks `text` and renders the diagnostics; returns the syntax error [`parse`] stops at, if
/// any, after asserting that checking (which recovers from syntax errors) reports it too.
fn check(text: &str) -> Option<Box<Diagnostic>> {
    let compilation = check_only(text);
    let syntax = parse(FileId::default(), text).err()?;
    assert!(
        compilation
            .diagnostics
            .iter()
            .any(|d| d.message == syntax.message && d.span == syntax.span),
        "checking does not report the syntax error {syntax:?} of:\n{text}"
    );
    Some(syntax)
}

/// Checks `text` and renders the diagnostics.
fn check_only(text: &str) -> Compilation {
    let compilation = compile_source("fuzz.echo", text);
    // Rendering touches every span: they must all fit the source.
    let _ = compilation.render_diagnostics(false);
    assert_eq!(compilation.schema.is_some(), !compilation.has_errors());
    compilation
}

fn corpus() -> Vec<String> {
    common::echo_files(Path::new("tests/valid"), true)
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("readable"))
        .collect()
}

#[test]
fn random_bytes_do_not_panic() {
    let mut rng = Rng(0x5EED_0001);
    let deadline = Instant::now() + Duration::from_secs(5);
    for _ in 0..1_500 {
        let len = rng.below(120);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        exercise(&String::from_utf8_lossy(&bytes));
        // Random sequences of language pieces get past the first token.
        let text: String = (0..rng.below(40))
            .map(|_| PIECES[rng.below(PIECES.len())])
            .collect::<Vec<_>>()
            .join(" ");
        exercise(&text);
        if Instant::now() > deadline {
            break;
        }
    }
}

#[test]
fn every_truncation_of_the_valid_schemas_does_not_panic() {
    // Two threads: the machine has two cores and this is the longest test.
    let corpus = corpus();
    let (even, odd): (Vec<_>, Vec<_>) = corpus.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    std::thread::scope(|scope| {
        for half in [even, odd] {
            scope.spawn(move || {
                for (_, text) in half {
                    for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                        // Every truncation is checked (the parser recovers in each); one in
                        // eight also goes through `parse` and the formatter, which for all of
                        // them would make this, the longest test, twice as long.
                        if end % 8 == 0 || end == text.len() {
                            exercise(&text[..end]);
                        } else {
                            check_only(&text[..end]);
                        }
                    }
                }
            });
        }
    });
}

#[test]
fn mutations_of_the_valid_schemas_do_not_panic() {
    let mut rng = Rng(0x5EED_0002);
    for text in corpus() {
        for _ in 0..60 {
            let mut bytes = text.clone().into_bytes();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len() + 1).min(bytes.len());
                match rng.below(4) {
                    0 => {
                        let piece = PIECES[rng.below(PIECES.len())].as_bytes();
                        bytes.splice(at..at, piece.iter().copied());
                    }
                    1 => {
                        let end = (at + rng.below(20)).min(bytes.len());
                        bytes.drain(at..end);
                    }
                    2 if at < bytes.len() => bytes[at] = rng.next() as u8,
                    _ => {
                        let end = (at + rng.below(40)).min(bytes.len());
                        let copy = bytes[at..end].to_vec();
                        bytes.splice(at..at, copy);
                    }
                }
            }
            exercise(&String::from_utf8_lossy(&bytes));
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 10_000;
    let text = format!(
        "package deep;\n{}{}",
        "message M {\n".repeat(depth),
        "}\n".repeat(depth)
    );
    let compilation = compile_source("deep.echo", &text);
    assert_eq!(compilation.error_count(), 1);
    assert_eq!(
        compilation.diagnostics[0].message,
        "declarations nest too deeply (more than 64 levels)"
    );
}
