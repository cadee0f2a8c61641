//! Doc comments of generated code: the schema's `///` text made safe for rustdoc, and a short
//! generated line for items the schema leaves undocumented (so that a crate with
//! `#![warn(missing_docs)]` builds without warnings).
//!
//! Schema docs are Markdown written for readers of the schema, not Rust doc tests: a code block
//! without a language (or with `rust`) would be compiled and run by `cargo test` in the user's
//! crate, so such blocks become `text` blocks, and indented code blocks become fenced `text`
//! blocks. `<` that would open an HTML tag is escaped. Lines then get the same escaping prost-build
//! applies to message docs (URLs as autolinks, `[x]` that is not a link escaped), so that every
//! doc of a generated file reads the same.

use std::sync::LazyLock;

use regex::Regex;

/// The schema doc `text` (lines joined with `\n`, without the `///` marker and the space after
/// it) as rustdoc-safe lines. Empty text gives no line.
pub fn rustdoc_lines(text: &str) -> Vec<String> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    let mut indented = false;
    let mut previous_blank = true;
    // The content column of the list item being written, if any.
    let mut list: Option<usize> = None;
    for line in text.lines() {
        // Tabs are spaces in rustdoc's eyes (and clippy's `tabs_in_doc_comments`).
        let line = line.replace('\t', "    ");
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(marker) = &fence {
            if trimmed.starts_with(marker.as_str()) && trimmed.trim_end() == marker.as_str() {
                fence = None;
            }
            out.push(line.clone());
            previous_blank = false;
            continue;
        }
        if indented {
            if line.trim().is_empty() || indent >= 4 {
                out.push(line.get(4..).unwrap_or("").to_string());
                continue;
            }
            close_indented(&mut out);
            indented = false;
            previous_blank = true;
        }
        if trimmed.is_empty() {
            out.push(String::new());
            previous_blank = true;
            continue;
        }
        if let Some(marker) = fence_marker(trimmed) {
            let info = trimmed[marker.len()..].trim();
            out.push(format!(
                "{}{marker}{}",
                &line[..indent],
                if is_rust_info(info) { "text" } else { info }
            ));
            fence = Some(marker);
            previous_blank = false;
            continue;
        }
        if let Some(marker) = list_marker(trimmed) {
            list = Some(indent + marker);
            out.push(escape_html(&line));
            previous_blank = false;
            continue;
        }
        if let Some(content) = list {
            if !previous_blank {
                // A continuation of the item: indented to its content, neither less (a "lazy"
                // continuation) nor more.
                out.push(format!("{}{}", " ".repeat(content), escape_html(trimmed)));
                continue;
            }
            if indent >= content {
                // Another paragraph of the item (an indented block in an item is written as one
                // too: never a doc test).
                out.push(format!("{}{}", " ".repeat(content), escape_html(trimmed)));
                previous_blank = false;
                continue;
            }
            list = None;
        }
        if previous_blank && indent >= 4 {
            out.push("```text".to_string());
            out.push(line[4..].to_string());
            indented = true;
            continue;
        }
        out.push(escape_html(&line));
        previous_blank = false;
    }
    if indented {
        close_indented(&mut out);
    }
    if let Some(marker) = fence {
        // An unclosed fence would swallow what follows it in the generated doc.
        out.push(marker);
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    out
}

/// Where the content of the list item that starts `trimmed` begins, if it starts one: after the
/// marker (`- `, `* `, `+ `, `1. `, `1) `) and up to four spaces, as CommonMark has it.
fn list_marker(trimmed: &str) -> Option<usize> {
    let bytes = trimmed.as_bytes();
    let marker = if matches!(bytes.first(), Some(b'-' | b'*' | b'+')) {
        1
    } else {
        let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) || !matches!(bytes.get(digits), Some(b'.' | b')')) {
            return None;
        }
        digits + 1
    };
    let spaces = bytes[marker..].iter().take_while(|b| **b == b' ').count();
    match spaces {
        0 => None,
        1..=4 if marker + spaces < bytes.len() => Some(marker + spaces),
        _ => Some(marker + 1),
    }
}

/// Ends an indented block turned fenced: blank lines it took belong after the fence.
fn close_indented(out: &mut Vec<String>) {
    let mut blanks = 0;
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
        blanks += 1;
    }
    out.push("```".to_string());
    out.extend(std::iter::repeat_n(String::new(), blanks));
}

/// The fence (three or more backticks or tildes) that opens a code block on this line.
fn fence_marker(trimmed: &str) -> Option<String> {
    let c = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = trimmed.chars().take_while(|x| *x == c).count();
    (n >= 3).then(|| c.to_string().repeat(n))
}

/// Whether rustdoc would compile a code block with this info string: no language, or only
/// rustdoc's own attributes.
fn is_rust_info(info: &str) -> bool {
    info.split([',', ' ', '\t'])
        .filter(|t| !t.is_empty())
        .all(|t| {
            matches!(
                t,
                "rust"
                    | "ignore"
                    | "should_panic"
                    | "no_run"
                    | "compile_fail"
                    | "standalone_crate"
                    | "test_harness"
            ) || t.starts_with("edition")
        })
}

/// Escapes `<` that would start an HTML tag outside inline code (`map<string, string>`).
fn escape_html(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if c == '`' {
            in_code = !in_code;
        } else if c == '<'
            && !in_code
            && !rest.starts_with("<http")
            && rest[1..].starts_with(|n: char| n.is_ascii_alphabetic() || n == '/')
        {
            out.push('\\');
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Escapes a doc line as prost-build escapes message docs: URLs become autolinks and square
/// brackets that are not a link are escaped. For schema text only: generated text has real
/// intra-doc links.
pub fn escape_like_prost(line: &str) -> String {
    static URL: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"https?://[^\s)]+").expect("valid regex"));
    static BRACKETS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(^|[^\]\\])\[(([^\]]*[^\\])?)\]([^(\[]|$)").expect("valid regex")
    });
    let s = URL.replace_all(line, r"<$0>");
    BRACKETS.replace_all(&s, r"$1\[$2\]$4").into_owned()
}

/// The schema doc `text` as lines for `#[doc]` attributes of generated code: rustdoc-safe
/// ([`rustdoc_lines`]) and escaped as prost-build escapes message docs.
pub fn schema_lines(text: &str) -> Vec<String> {
    rustdoc_lines(text)
        .iter()
        .map(|l| escape_like_prost(l))
        .collect()
}

/// Generated doc text wrapped at spaces into lines of at most `width` characters, for docs that
/// read well in the source as in rustdoc. Inline code (between backticks) is never split, and a
/// word or code span longer than `width` stays whole.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    // Words, with the spaces inside inline code kept.
    let mut words: Vec<String> = Vec::new();
    let mut in_code = false;
    let mut word = String::new();
    for c in text.chars() {
        if c == '`' {
            in_code = !in_code;
        }
        if c == ' ' && !in_code {
            words.push(std::mem::take(&mut word));
        } else {
            word.push(c);
        }
    }
    words.push(word);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in words.iter().filter(|w| !w.is_empty()) {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The leading comment of a descriptor location (protoc's form: each line after a space,
/// newline-terminated), for the lines of `doc`, or of `fallback` when `doc` is empty.
pub fn leading_comment(doc: &str, fallback: impl FnOnce() -> String) -> String {
    let mut lines = rustdoc_lines(doc);
    if lines.is_empty() {
        lines.push(fallback());
    }
    let mut out = String::new();
    for line in lines {
        // protoc's form has a space after `//`; prost-build adds one more before a line that
        // starts with two spaces (to keep the indentation of lists and code), so an indented
        // line gets no space of ours, or it would end up one column too deep.
        if !line.is_empty() && !line.starts_with(' ') {
            out.push(' ');
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_kept() {
        assert_eq!(
            rustdoc_lines("One line.\n\nAnother."),
            ["One line.", "", "Another."]
        );
        assert!(rustdoc_lines("").is_empty());
        assert!(rustdoc_lines("  \n").is_empty());
    }

    #[test]
    fn rust_code_blocks_become_text() {
        assert_eq!(
            rustdoc_lines("Example:\n```\nlet x = 1;\n```\nafter"),
            ["Example:", "```text", "let x = 1;", "```", "after"]
        );
        assert_eq!(rustdoc_lines("```rust,ignore\nx\n```")[0], "```text");
        assert_eq!(rustdoc_lines("```json\n{}\n```")[0], "```json");
        assert_eq!(rustdoc_lines("~~~~\nx\n~~~~")[0], "~~~~text");
    }

    #[test]
    fn unclosed_fences_are_closed() {
        assert_eq!(rustdoc_lines("```\ncode"), ["```text", "code", "```"]);
    }

    #[test]
    fn indented_code_becomes_fenced_text() {
        assert_eq!(
            rustdoc_lines("Call it so:\n\n    login(x)\n    again\n\nDone."),
            [
                "Call it so:",
                "",
                "```text",
                "login(x)",
                "again",
                "```",
                "",
                "Done."
            ]
        );
        assert_eq!(
            rustdoc_lines("    first"),
            ["```text", "first", "```"],
            "at the very start"
        );
        // A continuation line of a paragraph is not code.
        assert_eq!(rustdoc_lines("para\n    more"), ["para", "    more"]);
    }

    #[test]
    fn list_continuations_are_indented_to_the_item() {
        assert_eq!(
            rustdoc_lines(
                "Kinds:\n- one,\nlazily continued;\n-  two\n        over-indented\n10. ten\nx\n\nAfter."
            ),
            [
                "Kinds:",
                "- one,",
                "  lazily continued;",
                "-  two",
                "   over-indented",
                "10. ten",
                "    x",
                "",
                "After."
            ]
        );
        // A paragraph of an item after a blank line stays in the item, not as code.
        assert_eq!(
            rustdoc_lines("- item\n\n  more of it\n\n      code\n\nOut."),
            ["- item", "", "  more of it", "", "  code", "", "Out."]
        );
        assert_eq!(list_marker("-5 degrees"), None);
        assert_eq!(list_marker("2) b"), Some(3));
        assert_eq!(list_marker("-     code"), Some(2));
    }

    #[test]
    fn tabs_become_spaces() {
        assert_eq!(rustdoc_lines("a\tb\n\tc"), ["a    b", "    c"]);
    }

    #[test]
    fn html_like_text_is_escaped_outside_code() {
        assert_eq!(
            rustdoc_lines("a map<string, Point> or `map<K, V>` <http://x.y> 1 < 2"),
            ["a map\\<string, Point> or `map<K, V>` <http://x.y> 1 < 2"]
        );
    }

    #[test]
    fn prost_escaping() {
        assert_eq!(
            escape_like_prost("see https://a.b/c"),
            "see <https://a.b/c>"
        );
        assert_eq!(escape_like_prost("a [note] here"), "a \\[note\\] here");
        assert_eq!(escape_like_prost("a [link](x)"), "a [link](x)");
        assert_eq!(schema_lines("x [y]\n\nz"), ["x \\[y\\]", "", "z"]);
    }

    #[test]
    fn wrapping() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("a verylongword b", 4), ["a", "verylongword", "b"]);
        assert_eq!(wrap("see `a b c` now", 6), ["see", "`a b c`", "now"]);
        assert!(wrap("", 10).is_empty());
    }

    #[test]
    fn leading_comments_in_protoc_form() {
        assert_eq!(leading_comment("a\n\nb", String::new), " a\n\n b\n");
        assert_eq!(leading_comment("- a\n  b", String::new), " - a\n  b\n");
        assert_eq!(leading_comment("", || "Generated.".into()), " Generated.\n");
    }
}
