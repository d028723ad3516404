//! What the CLI prints: JSON from the library's `Serialize` types, or aligned tables
//! and `key value` blocks for people, and errors as one line (or one JSON object).

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Error;

/// A CLI failure: a code for `--json` and one line of text.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    code: &'static str,
    message: String,
    silent: bool,
}

impl CliError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            silent: false,
        }
    }

    /// Bad arguments (exit status 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError::new("usage", message)
    }

    /// An error already reported on stdout: exit 1 without printing more.
    pub(crate) fn silent(mut self) -> Self {
        self.silent = true;
        self
    }

    /// Whether it was already reported.
    pub(crate) fn is_silent(&self) -> bool {
        self.silent
    }

    /// Names the database in errors that came from it (a query failing on an open
    /// connection does not say which database it was).
    pub(crate) fn in_database(mut self, url: &str) -> Self {
        if self.code == "database" {
            self.message = format!("{} (database {url})", self.message);
        }
        self
    }

    /// The machine-readable code printed with `--json`.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let code = e.code();
        CliError::new(code, e.to_string())
    }
}

impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> Self {
        CliError::new("invalid_config", e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader went away (`kairos runs list | head`): not an error.
            return CliError::new("broken_pipe", "");
        }
        CliError::new("io", format!("cannot write the output: {e}"))
    }
}

/// Prints `{"error": {"code", "message"}}` on stdout.
pub(crate) fn print_error_json(code: &str, message: &str) {
    let v = serde_json::json!({"error": {"code": code, "message": message}});
    let _ = writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(&v).unwrap_or_default()
    );
}

/// The output of one command.
pub(crate) struct Out<'a> {
    w: &'a mut dyn Write,
    json: bool,
}

impl<'a> Out<'a> {
    pub(crate) fn new(w: &'a mut dyn Write, json: bool) -> Self {
        Out { w, json }
    }

    /// Prints `value` as JSON, or `text()` for people.
    pub(crate) fn print<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> Result<(), CliError> {
        let s = if self.json {
            serde_json::to_string_pretty(value)
                .map_err(|e| CliError::new("internal", format!("cannot print JSON: {e}")))?
        } else {
            text()
        };
        writeln!(self.w, "{s}")?;
        Ok(())
    }
}

impl Out<'_> {
    /// Whether the output is JSON.
    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as one line of JSON (for streams), or `text()`; flushed at once.
    pub(crate) fn print_line<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> Result<(), CliError> {
        let s = if self.json {
            serde_json::to_string(value)
                .map_err(|e| CliError::new("internal", format!("cannot print JSON: {e}")))?
        } else {
            text()
        };
        writeln!(self.w, "{s}")?;
        self.w.flush()?;
        Ok(())
    }
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

pub(crate) fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), rfc3339)
}

pub(crate) use crate::error::clip;

/// Clips every quoted value (`'...'` or `` `...` ``) longer than ~80 characters in a
/// message that echoes user input (clap's usage errors do).
pub(crate) fn clip_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(4096));
    let mut rest = msg;
    while let Some(i) = rest.find(['\'', '`']) {
        let q = rest[i..].chars().next().unwrap_or('\'');
        out.push_str(&rest[..=i]);
        let after = &rest[i + 1..];
        match after.find(q) {
            Some(j) => {
                out.push_str(&clip(&after[..j]));
                out.push(q);
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(&clip(after));
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The first line of `s`, at most `n` characters.
pub(crate) fn truncate(s: &str, n: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() <= n && !s.contains('\n') {
        return line.to_string();
    }
    format!("{}…", line.chars().take(n).collect::<String>())
}

/// An aligned table, or `(none)`.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    if rows.is_empty() {
        return "(none)".into();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let fmt = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut lines = vec![fmt(headers.iter().map(|h| h.to_string()).collect())];
    lines.extend(rows.into_iter().map(fmt));
    lines.join("\n")
}

/// `key  value` lines, keys aligned.
pub(crate) fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<w$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}
