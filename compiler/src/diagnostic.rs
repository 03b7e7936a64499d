//! The one diagnostic type, and its two renderings: rustc-style text and JSON.

use crate::codes::Code;
use crate::span::{line_column, Sources, Span};
use codespan_reporting::diagnostic as cs;
use codespan_reporting::term;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Advice,
}

impl Severity {
    pub fn word(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Advice => "advice",
        }
    }
}

/// A problem found in the user's input, with where it is and how to fix it.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub code: &'static Code,
    pub severity: Severity,
    pub message: String,
    /// The primary span and its label; `None` only for problems with no place in a file.
    pub primary: Option<(Span, String)>,
    pub labels: Vec<(Span, String)>,
    pub help: Option<String>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn new(code: &'static Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.severity,
            message: message.into(),
            primary: None,
            labels: Vec::new(),
            help: None,
            notes: Vec::new(),
        }
    }

    pub fn at(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.primary = Some((span, label.into()));
        self
    }

    pub fn label(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.labels.push((span, label.into()));
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    fn sort_key(&self) -> (usize, u32, &'static str) {
        match &self.primary {
            Some((s, _)) => (s.file, s.start, self.code.code),
            None => (usize::MAX, 0, self.code.code),
        }
    }
}

/// Sorts by file and position, and drops exact repeats.
pub fn sort(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    diags.dedup_by(|a, b| a.code == b.code && a.primary == b.primary && a.message == b.message);
}

/// Renders rustc-style; `color` only when writing to a terminal.
pub fn render_text(sources: &Sources, diags: &[Diagnostic], color: bool) -> String {
    use term::termcolor::Buffer;
    let mut buffer = if color {
        Buffer::ansi()
    } else {
        Buffer::no_color()
    };
    let config = term::Config::default();
    for d in diags {
        let _ = term::emit(&mut buffer, &config, sources, &to_codespan(d));
    }
    String::from_utf8_lossy(buffer.as_slice()).into_owned()
}

fn to_codespan(d: &Diagnostic) -> cs::Diagnostic<usize> {
    let severity = match d.severity {
        Severity::Error => cs::Severity::Error,
        Severity::Warning => cs::Severity::Warning,
        Severity::Advice => cs::Severity::Note,
    };
    let mut labels = Vec::new();
    if let Some((span, label)) = &d.primary {
        labels.push(cs::Label::primary(span.file, span.range()).with_message(label));
    }
    for (span, label) in &d.labels {
        labels.push(cs::Label::secondary(span.file, span.range()).with_message(label));
    }
    let mut notes: Vec<String> = d.notes.clone();
    if let Some(help) = &d.help {
        notes.push(format!("help: {help}"));
    }
    cs::Diagnostic::new(severity)
        .with_code(d.code.code)
        .with_message(&d.message)
        .with_labels(labels)
        .with_notes(notes)
}

/// The JSON form of one diagnostic (`kiln check --format json`).
#[derive(Serialize)]
pub struct JsonDiagnostic {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub end_line: Option<usize>,
    pub end_column: Option<usize>,
    pub label: Option<String>,
    pub help: Option<String>,
    pub notes: Vec<String>,
}

pub fn to_json(sources: &Sources, diags: &[Diagnostic]) -> Vec<JsonDiagnostic> {
    use codespan_reporting::files::Files;
    diags
        .iter()
        .map(|d| {
            let (file, start, end, label) = match &d.primary {
                Some((span, label)) => {
                    let end = Span {
                        start: span.end,
                        ..*span
                    };
                    (
                        sources.name(span.file).ok().map(|n| n.to_string()),
                        Some(line_column(sources, *span)),
                        Some(line_column(sources, end)),
                        Some(label.clone()),
                    )
                }
                None => (None, None, None, None),
            };
            JsonDiagnostic {
                code: d.code.code,
                name: d.code.name,
                severity: d.severity,
                message: d.message.clone(),
                file,
                line: start.map(|s| s.0),
                column: start.map(|s| s.1),
                end_line: end.map(|e| e.0),
                end_column: end.map(|e| e.1),
                label,
                help: d.help.clone(),
                notes: d.notes.clone(),
            }
        })
        .collect()
}

/// The closest of `candidates` to `name`, if close enough to be a likely typo.
/// Case differences count as nothing (`80gb` → `GB`); otherwise up to a third of the
/// letters may differ, and never all of them.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| {
            (
                if c.to_lowercase() == lower {
                    0
                } else {
                    strsim::damerau_levenshtein(&lower, &c.to_lowercase()) + 1
                },
                c,
            )
        })
        .filter(|(d, c)| {
            *d == 0
                || (*d - 1 < name.len().min(c.len())
                    && (*d - 1 <= (name.len().max(c.len()) / 3).max(1)
                        || (name.len() >= 3 && (c.starts_with(name) || name.starts_with(*c)))))
        })
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}
