//! Source spans and diagnostics: what went wrong, where, and how it is shown.
//!
//! The parser and the checker produce [`Diagnostic`]s that hold the token's [`Span`] (a
//! `proc_macro2` span, so the `conv!` macro can put a compile error on the exact token). Those are
//! not `Send`; [`Diagnostic::located`] turns one into a plain [`LocatedDiagnostic`] (line and column)
//! that can travel inside an error value and be rendered against the source text.

use std::fmt;

/// A position in a source: 1-based line, 1-based column counted in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineCol {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// A range in one source, from `start` up to (not including) `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// First character.
    pub start: LineCol,
    /// One past the last character (same line as `start` for a single token).
    pub end: LineCol,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.start.line, self.start.column)
    }
}

/// The span of a token: where it came from, in text or in the user's macro invocation.
#[derive(Clone, Copy, Debug)]
pub struct Span(proc_macro2::Span);

impl Span {
    /// Wraps a `proc_macro2` span.
    pub fn new(span: proc_macro2::Span) -> Self {
        Span(span)
    }

    /// The span of "no token": the start of the source (the macro's call site inside `conv!`).
    pub fn call_site() -> Self {
        Span(proc_macro2::Span::call_site())
    }

    /// The underlying `proc_macro2` span (for compile errors in the macro).
    pub fn raw(self) -> proc_macro2::Span {
        self.0
    }

    /// Line and column of this span (1-based both).
    pub fn location(self) -> Location {
        let start = self.0.start();
        let end = self.0.end();
        let start = LineCol { line: start.line.max(1), column: start.column + 1 };
        let end = LineCol { line: end.line.max(1), column: end.column + 1 };
        Location { start, end: end.max(start) }
    }

    /// A span covering `self` through `other` where the platform supports joining, else `self`.
    pub fn join(self, other: Span) -> Span {
        Span(self.0.join(other.0).unwrap_or(self.0))
    }
}

/// One problem found in a model, on one token.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// The token the problem is on.
    pub span: Span,
    /// Lowercase, in the user's syntax, with the numbers involved.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic on `span`.
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Diagnostic { span, message: message.into() }
    }

    /// The same diagnostic with a plain line/column location instead of a span.
    pub fn located(&self) -> LocatedDiagnostic {
        LocatedDiagnostic { location: self.span.location(), message: self.message.clone() }
    }
}

/// A [`Diagnostic`] resolved to line and column: `Send`, comparable, renderable.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocatedDiagnostic {
    /// Where the problem is.
    pub location: Location,
    /// What the problem is.
    pub message: String,
}

impl fmt::Display for LocatedDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Renders diagnostics the way rustc does: message, `--> file:line:col`, the source line and a caret
/// under the token. `source` is the text the locations refer to.
pub fn render(source_name: &str, source: &str, diagnostics: &[LocatedDiagnostic]) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    for (index, diagnostic) in diagnostics.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let Location { start, end } = diagnostic.location;
        out.push_str(&format!("error: {}\n", diagnostic.message));
        out.push_str(&format!(" --> {source_name}:{}:{}\n", start.line, start.column));
        let Some(line_text) = lines.get(start.line - 1) else {
            continue;
        };
        let gutter = start.line.to_string().len();
        let pad = " ".repeat(gutter);
        // Long lines (generated or malformed input) are cut around the token.
        let chars: Vec<char> = line_text.chars().collect();
        let window_start = start.column.saturating_sub(60).min(chars.len());
        let window_end = (start.column + 60).min(chars.len());
        let shown: String = chars[window_start..window_end].iter().collect();
        let prefix = if window_start > 0 { "…" } else { "" };
        let suffix = if window_end < chars.len() { "…" } else { "" };
        let caret_column = start.column - 1 - window_start + prefix.chars().count();
        let width = if end.line == start.line && end.column > start.column {
            (end.column - start.column).min(window_end.saturating_sub(start.column - 1)).max(1)
        } else {
            1
        };
        out.push_str(&format!("{pad} |\n"));
        out.push_str(&format!("{} | {prefix}{shown}{suffix}\n", start.line));
        out.push_str(&format!("{pad} | {}{}\n", " ".repeat(caret_column), "^".repeat(width)));
    }
    out
}
