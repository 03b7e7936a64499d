//! The one diagnostic type, and its two renderings: rustc-style text and JSON.

use crate::codes::Code;
use crate::span::{Sources, Span};
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

/// Diagnostics rendered as text in one run; the rest are counted in one closing line.
/// A hundred is more than anyone reads before fixing the first, and it bounds the time and
/// memory of rendering whatever the input: 10,000 unknown fields on one line are 10,000
/// diagnostics, and `--format json` still lists every one.
pub const MAX_RENDERED: usize = 100;

/// Source lines longer than this many bytes are clipped around the labels in snippets:
/// codespan-reporting prints whole lines, so a diagnostic on a 60 KB line would print 60 KB.
pub const MAX_SNIPPET_LINE_BYTES: usize = 200;

/// Characters kept either side of a label's start and end on a clipped line.
const CLIP_CONTEXT_CHARS: usize = 60;

/// Marks text left out of a clipped line.
const CLIP_MARK: &str = "…";

/// Renders rustc-style, at most [`MAX_RENDERED`] diagnostics and then one line counting the
/// rest; `color` only when writing to a terminal.
pub fn render_text(sources: &Sources, diags: &[Diagnostic], color: bool) -> String {
    render_text_at_most(sources, diags, color, MAX_RENDERED)
}

/// [`render_text`] with another cap. Errors are shown before warnings and advice when not
/// all fit (in their order of position); the closing line counts those left out by severity.
pub fn render_text_at_most(
    sources: &Sources,
    diags: &[Diagnostic],
    color: bool,
    max: usize,
) -> String {
    use term::termcolor::Buffer;
    let mut buffer = if color {
        Buffer::ansi()
    } else {
        Buffer::no_color()
    };
    let config = term::Config::default();
    let shown = pick(diags, max);
    for &i in &shown {
        let (excerpt, diagnostic) = Excerpt::of(sources, &diags[i], &config);
        let _ = term::emit(&mut buffer, &config, &excerpt, &diagnostic);
    }
    let mut text = String::from_utf8_lossy(buffer.as_slice()).into_owned();
    if let Some(line) = omitted_line(diags, shown.len()) {
        text += &line;
        text.push('\n');
    }
    text
}

/// The indices of the diagnostics to render: errors first, then warnings, then advice, up to
/// `max`, returned in their original order.
fn pick(diags: &[Diagnostic], max: usize) -> Vec<usize> {
    let mut picked: Vec<usize> = Vec::with_capacity(max.min(diags.len()));
    for severity in [Severity::Error, Severity::Warning, Severity::Advice] {
        let room = max - picked.len();
        picked.extend(
            diags
                .iter()
                .enumerate()
                .filter(|(_, d)| d.severity == severity)
                .map(|(i, _)| i)
                .take(room),
        );
    }
    picked.sort_unstable();
    picked
}

/// The closing line when only `shown` of `diags` were rendered: how many of each severity
/// were left out, and where to see them all.
pub fn omitted_line(diags: &[Diagnostic], shown: usize) -> Option<String> {
    let left = diags.len().saturating_sub(shown);
    if left == 0 {
        return None;
    }
    let picked = pick(diags, shown);
    let mut counts = [0usize; 3];
    for d in diags {
        counts[d.severity as usize] += 1;
    }
    for &i in &picked {
        counts[diags[i].severity as usize] -= 1;
    }
    let words = [
        ("error", "errors"),
        ("warning", "warnings"),
        ("advice", "advice"),
    ];
    let parts: Vec<String> = counts
        .iter()
        .zip(words)
        .filter(|(n, _)| **n > 0)
        .map(|(n, (one, many))| format!("{n} {}", if *n == 1 { one } else { many }))
        .collect();
    Some(format!(
        "… and {} more not shown ({}); fix the ones above first, or see every one with `--format json`",
        left,
        parts.join(", ")
    ))
}

/// One diagnostic's view of the files its labels point into, as codespan-reporting renders
/// it: only the lines it prints (labelled lines, the context lines of multi-line labels, and
/// two empty stand-ins where lines are skipped, so codespan still draws its `·` break), and
/// lines longer than [`MAX_SNIPPET_LINE_BYTES`] clipped around the labels' ends, with `…`
/// where text was left out. Line numbers and the `file:line:column` header are the
/// original's. Building it costs the labels' neighbourhoods, not the files' sizes.
struct Excerpt<'s> {
    sources: &'s Sources,
    files: Vec<ExcerptFile>,
}

/// Original line index → the byte ranges to keep on that line.
type KeptLines = std::collections::BTreeMap<usize, Vec<(usize, usize)>>;

struct ExcerptFile {
    /// The file in `Sources`.
    file: usize,
    name: String,
    text: String,
    /// The start of each line of `text`.
    starts: Vec<usize>,
    lines: Vec<ExcerptLine>,
}

struct ExcerptLine {
    /// The original 1-based line number.
    number: usize,
    /// Each kept piece of the original line: (start in `text`, start in the original, length).
    pieces: Vec<(usize, usize, usize)>,
}

impl<'s> Excerpt<'s> {
    fn of(
        sources: &'s Sources,
        d: &Diagnostic,
        config: &term::Config,
    ) -> (Excerpt<'s>, cs::Diagnostic<usize>) {
        use codespan_reporting::files::Files;
        let mut excerpt = Excerpt {
            sources,
            files: Vec::new(),
        };
        let all: Vec<(Span, &String, bool)> = d
            .primary
            .iter()
            .map(|(s, l)| (*s, l, true))
            .chain(d.labels.iter().map(|(s, l)| (*s, l, false)))
            .collect();
        // Per file: the original lines to keep, and on each the byte ranges to keep.
        let mut wanted: Vec<(usize, KeptLines)> = Vec::new();
        let mut spans = Vec::new();
        for (span, _, _) in &all {
            let Ok(text) = sources.source(span.file) else {
                spans.push(None);
                continue;
            };
            let clamp = |o: usize| {
                let mut o = o.min(text.len());
                while !text.is_char_boundary(o) {
                    o -= 1;
                }
                o
            };
            let (start, end) = (clamp(span.start as usize), clamp(span.end as usize));
            let end = end.max(start);
            let (Ok(first), Ok(last)) = (
                sources.line_index(span.file, start),
                sources.line_index(span.file, end),
            ) else {
                spans.push(None);
                continue;
            };
            spans.push(Some((start, end, first, last)));
            let lines = match wanted.iter_mut().find(|(f, _)| *f == span.file) {
                Some((_, lines)) => lines,
                None => {
                    wanted.push((span.file, Default::default()));
                    &mut wanted.last_mut().expect("just pushed").1
                }
            };
            let around = |o: usize| {
                (
                    back(text, o, CLIP_CONTEXT_CHARS),
                    ahead(text, o, CLIP_CONTEXT_CHARS),
                )
            };
            if first == last {
                let keep = if end - start <= 2 * CLIP_CONTEXT_CHARS {
                    vec![(around(start).0, around(end).1)]
                } else {
                    vec![around(start), around(end)]
                };
                lines.entry(first).or_default().extend(keep);
            } else {
                lines.entry(first).or_default().push(around(start));
                lines.entry(last).or_default().push(around(end));
                // codespan prints the first lines of a multi-line label and the last ones.
                let head = (first + 1)..=(first + config.start_context_lines + 1).min(last);
                let tail = (last.saturating_sub(config.end_context_lines + 1)).max(first)..last;
                for line in head.chain(tail) {
                    lines.entry(line).or_default();
                }
            }
        }
        for (file, lines) in wanted {
            excerpt.files.push(ExcerptFile::build(sources, file, lines));
        }
        let local = |file: usize| excerpt.files.iter().position(|f| f.file == file);
        let mut labels = Vec::new();
        for ((span, label, primary), at) in all.iter().zip(&spans) {
            let Some((start, end, first, last)) = *at else {
                continue;
            };
            let Some(id) = local(span.file) else {
                continue;
            };
            let f = &excerpt.files[id];
            let range = f.map(first, start)..f.map(last, end);
            labels.push(if *primary {
                cs::Label::primary(id, range).with_message(label.as_str())
            } else {
                cs::Label::secondary(id, range).with_message(label.as_str())
            });
        }
        let severity = match d.severity {
            Severity::Error => cs::Severity::Error,
            Severity::Warning => cs::Severity::Warning,
            Severity::Advice => cs::Severity::Note,
        };
        let mut notes: Vec<String> = d.notes.clone();
        if let Some(help) = &d.help {
            notes.push(format!("help: {help}"));
        }
        let diagnostic = cs::Diagnostic::new(severity)
            .with_code(d.code.code)
            .with_message(&d.message)
            .with_labels(labels)
            .with_notes(notes);
        (excerpt, diagnostic)
    }
}

/// The byte offset `n` characters before `o` in `text` (or its start).
fn back(text: &str, o: usize, n: usize) -> usize {
    text[..o]
        .char_indices()
        .rev()
        .take(n)
        .last()
        .map_or(o, |(i, _)| i)
}

/// The byte offset `n` characters after `o` in `text` (or its end).
fn ahead(text: &str, o: usize, n: usize) -> usize {
    text[o..]
        .char_indices()
        .nth(n)
        .map_or(text.len(), |(i, _)| o + i)
}

impl ExcerptFile {
    /// Keeps `lines` (original line index → byte ranges to keep on it) of `file`.
    fn build(sources: &Sources, file: usize, mut lines: KeptLines) -> ExcerptFile {
        use codespan_reporting::files::Files;
        // A single skipped line is printed by codespan; more become a break.
        let indices: Vec<usize> = lines.keys().copied().collect();
        for pair in indices.windows(2) {
            if pair[1] - pair[0] == 2 {
                lines.entry(pair[0] + 1).or_default();
            }
        }
        let source = sources.source(file).unwrap_or("");
        let mut out = ExcerptFile {
            file,
            name: sources
                .name(file)
                .map(|n| n.to_string())
                .unwrap_or_default(),
            text: String::new(),
            starts: Vec::new(),
            lines: Vec::new(),
        };
        let mut previous: Option<usize> = None;
        for (index, keep) in lines {
            if previous.is_some_and(|p| index - p > 2) {
                for _ in 0..2 {
                    out.starts.push(out.text.len());
                    out.text.push('\n');
                    out.lines.push(ExcerptLine {
                        number: previous.unwrap_or(0) + 2,
                        pieces: Vec::new(),
                    });
                }
            }
            previous = Some(index);
            let Ok(range) = sources.line_range(file, index) else {
                continue;
            };
            let content = source[range.clone()].trim_end_matches(['\n', '\r']);
            let (line_start, line_end) = (range.start, range.start + content.len());
            let mut kept: Vec<(usize, usize)> = if content.len() <= MAX_SNIPPET_LINE_BYTES {
                vec![(line_start, line_end)]
            } else if keep.is_empty() {
                vec![(
                    line_start,
                    ahead(source, line_start, 2 * CLIP_CONTEXT_CHARS).min(line_end),
                )]
            } else {
                keep.iter()
                    .map(|&(a, b)| (a.max(line_start), b.min(line_end)))
                    .collect()
            };
            kept.sort_unstable();
            let mut merged: Vec<(usize, usize)> = Vec::new();
            for (a, b) in kept {
                match merged.last_mut() {
                    Some(last) if a <= last.1 + CLIP_MARK.len() => last.1 = last.1.max(b),
                    _ => merged.push((a, b)),
                }
            }
            out.starts.push(out.text.len());
            let mut line = ExcerptLine {
                number: index + 1,
                pieces: Vec::new(),
            };
            let mut at = line_start;
            for (a, b) in merged {
                if a > at {
                    out.text.push_str(CLIP_MARK);
                }
                line.pieces.push((out.text.len(), a, b - a));
                out.text.push_str(&source[a..b]);
                at = b;
            }
            if at < line_end {
                out.text.push_str(CLIP_MARK);
            }
            out.text.push('\n');
            out.lines.push(line);
        }
        out
    }

    /// Where the original byte `o` on original line `line` is in the excerpt.
    fn map(&self, line: usize, o: usize) -> usize {
        let Some(l) = self
            .lines
            .iter()
            .position(|l| l.number == line + 1 && !l.pieces.is_empty())
        else {
            return 0;
        };
        let pieces = &self.lines[l].pieces;
        let piece = pieces
            .iter()
            .rev()
            .find(|(_, orig, _)| *orig <= o)
            .unwrap_or(&pieces[0]);
        piece.0 + (o.saturating_sub(piece.1)).min(piece.2)
    }

    /// Where the excerpt's byte `b` on its line `l` was in the original.
    fn unmap(&self, l: usize, b: usize) -> Option<usize> {
        let pieces = &self.lines.get(l)?.pieces;
        let piece = pieces
            .iter()
            .rev()
            .find(|(synth, _, _)| *synth <= b)
            .or(pieces.first())?;
        Some(piece.1 + b.saturating_sub(piece.0).min(piece.2))
    }
}

impl<'a> codespan_reporting::files::Files<'a> for Excerpt<'_> {
    type FileId = usize;
    type Name = &'a str;
    type Source = &'a str;

    fn name(&'a self, id: usize) -> Result<&'a str, codespan_reporting::files::Error> {
        Ok(self.file(id)?.name.as_str())
    }

    fn source(&'a self, id: usize) -> Result<&'a str, codespan_reporting::files::Error> {
        Ok(self.file(id)?.text.as_str())
    }

    fn line_index(
        &'a self,
        id: usize,
        byte: usize,
    ) -> Result<usize, codespan_reporting::files::Error> {
        let f = self.file(id)?;
        Ok(f.starts.partition_point(|&s| s <= byte).saturating_sub(1))
    }

    fn line_number(
        &'a self,
        id: usize,
        line: usize,
    ) -> Result<usize, codespan_reporting::files::Error> {
        let f = self.file(id)?;
        Ok(f.lines.get(line).map_or(line + 1, |l| l.number))
    }

    fn location(
        &'a self,
        id: usize,
        byte: usize,
    ) -> Result<codespan_reporting::files::Location, codespan_reporting::files::Error> {
        let f = self.file(id)?;
        let line = self.line_index(id, byte)?;
        let original = f.unmap(line, byte).unwrap_or(0);
        self.sources.location(f.file, original)
    }

    fn line_range(
        &'a self,
        id: usize,
        line: usize,
    ) -> Result<std::ops::Range<usize>, codespan_reporting::files::Error> {
        let f = self.file(id)?;
        let start = *f
            .starts
            .get(line)
            .ok_or(codespan_reporting::files::Error::LineTooLarge {
                given: line,
                max: f.starts.len().saturating_sub(1),
            })?;
        Ok(start..f.starts.get(line + 1).copied().unwrap_or(f.text.len()))
    }
}

impl Excerpt<'_> {
    fn file(&self, id: usize) -> Result<&ExcerptFile, codespan_reporting::files::Error> {
        self.files
            .get(id)
            .ok_or(codespan_reporting::files::Error::FileMissing)
    }
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
    // Starts come in order of position (diagnostics are sorted), ends nearly so.
    let (mut starts, mut ends) = (Columns::new(sources), Columns::new(sources));
    diags
        .iter()
        .map(|d| {
            let (file, start, end, label) = match &d.primary {
                Some((span, label)) => (
                    sources.name(span.file).ok().map(|n| n.to_string()),
                    Some(starts.at(span.file, span.start as usize)),
                    Some(ends.at(span.file, span.end as usize)),
                    Some(label.clone()),
                ),
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

/// Line and column (both 1-based) of byte offsets asked mostly in increasing order: the
/// characters are counted from the last offset asked on the same line rather than from the
/// line's start, so the columns of 10,000 diagnostics on one long line cost the line's
/// length once, not 10,000 times.
struct Columns<'s> {
    sources: &'s Sources,
    /// The last answer: file, line index, byte offset, line number, column.
    last: Option<(usize, usize, usize, usize, usize)>,
}

impl<'s> Columns<'s> {
    fn new(sources: &'s Sources) -> Columns<'s> {
        Columns {
            sources,
            last: None,
        }
    }

    fn at(&mut self, file: usize, byte: usize) -> (usize, usize) {
        use codespan_reporting::files::Files;
        let Ok(text) = self.sources.source(file) else {
            return (1, 1);
        };
        let mut byte = byte.min(text.len());
        while !text.is_char_boundary(byte) {
            byte -= 1;
        }
        let Ok(line) = self.sources.line_index(file, byte) else {
            return (1, 1);
        };
        let (from, column) = match self.last {
            Some((f, l, b, _, c)) if f == file && l == line && b <= byte => (b, c),
            _ => match self.sources.line_range(file, line) {
                Ok(range) => (range.start.min(byte), 1),
                Err(_) => return (1, 1),
            },
        };
        let column = column + text[from..byte].chars().count();
        let number = self.sources.line_number(file, line).unwrap_or(line + 1);
        self.last = Some((file, line, byte, number, column));
        (number, column)
    }
}

/// Names longer than this get no suggestion: no schema or preset name is near it, and the
/// edit distance costs the product of the two lengths in time and memory.
const MAX_SUGGESTION_CHARS: usize = 64;

/// The closest of `candidates` to `name`, if close enough to be a likely typo.
/// Case differences count as nothing (`80gb` → `GB`); otherwise up to a third of the
/// letters may differ, and never all of them.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let chars = lower.chars().count();
    if chars > MAX_SUGGESTION_CHARS {
        return None;
    }
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .filter_map(|c| {
            let other = c.to_lowercase();
            if other == lower {
                return Some((0, c));
            }
            // The distance is at least the difference in length, and must stay below the
            // shorter name's length: skip the candidates that cannot pass before measuring.
            let others = other.chars().count();
            if others > MAX_SUGGESTION_CHARS || chars.abs_diff(others) >= name.len().min(c.len()) {
                return None;
            }
            Some((strsim::damerau_levenshtein(&lower, &other) + 1, c))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;

    /// What codespan-reporting renders from the whole files, for comparison.
    fn whole(sources: &Sources, d: &Diagnostic) -> String {
        let mut buffer = term::termcolor::Buffer::no_color();
        let mut labels = Vec::new();
        if let Some((span, label)) = &d.primary {
            labels.push(cs::Label::primary(span.file, span.range()).with_message(label));
        }
        for (span, label) in &d.labels {
            labels.push(cs::Label::secondary(span.file, span.range()).with_message(label));
        }
        let diagnostic = cs::Diagnostic::error()
            .with_code(d.code.code)
            .with_message(&d.message)
            .with_labels(labels);
        term::emit(&mut buffer, &term::Config::default(), sources, &diagnostic).unwrap();
        String::from_utf8(buffer.into_inner()).unwrap()
    }

    /// On files of short lines the excerpt renders exactly what codespan renders from the
    /// whole files: single- and multi-line labels, near and far apart, in two files.
    #[test]
    fn excerpts_of_short_lines_render_as_the_whole_file() {
        let mut sources = Sources::new();
        let text: String = (1..=40)
            .map(|i| format!("line {i} of the first file\n"))
            .collect();
        let a = sources.add("a.kiln".to_string(), text.clone());
        let b = sources.add("b.kiln".to_string(), "one\ntwo\nthree".to_string());
        let at = |line: usize, col: usize| {
            text.lines()
                .take(line - 1)
                .map(|l| l.len() + 1)
                .sum::<usize>()
                + col
        };
        let spans: Vec<Vec<Span>> = vec![
            vec![Span::new(a, at(3, 0), at(3, 4))],
            vec![
                Span::new(a, at(3, 0), at(3, 4)),
                Span::new(a, at(5, 2), at(5, 6)),
            ],
            vec![
                Span::new(a, at(3, 0), at(3, 4)),
                Span::new(a, at(4, 2), at(4, 6)),
            ],
            vec![
                Span::new(a, at(3, 0), at(3, 4)),
                Span::new(a, at(30, 2), at(30, 6)),
            ],
            vec![Span::new(a, at(2, 3), at(20, 5))],
            vec![
                Span::new(a, at(2, 3), at(6, 5)),
                Span::new(a, at(9, 0), at(9, 2)),
            ],
            vec![Span::new(a, at(10, 0), at(12, 2)), Span::new(b, 4, 7)],
            vec![Span::new(b, 8, 13), Span::new(a, at(40, 0), at(40, 4))],
            vec![Span::new(a, at(1, 0), text.len())],
        ];
        for (i, spans) in spans.iter().enumerate() {
            let mut d = Diagnostic::new(codes::SYNTAX, format!("case {i}")).at(spans[0], "here");
            for s in &spans[1..] {
                d = d.label(*s, "and here");
            }
            assert_eq!(
                render_text(&sources, std::slice::from_ref(&d), false),
                whole(&sources, &d),
                "case {i}"
            );
        }
    }

    /// A label on a long line shows its neighbourhood, with the true line and column.
    #[test]
    fn long_lines_are_clipped_with_honest_positions() {
        let mut sources = Sources::new();
        let line = "x = 1, ".repeat(10_000);
        let at = line.len() / 2;
        let text = format!("first\n{line}\nlast\n");
        let file = sources.add("long.kiln".to_string(), text);
        let start = 6 + at;
        let d = Diagnostic::new(codes::SYNTAX, "somewhere in the middle")
            .at(Span::new(file, start, start + 1), "this one");
        let out = render_text(&sources, &[d], false);
        assert!(out.contains(&format!("long.kiln:2:{}", at + 1)), "{out}");
        assert!(
            out.lines()
                .all(|l| l.chars().count() < 2 * MAX_SNIPPET_LINE_BYTES),
            "{out}"
        );
        assert!(out.contains("2 │ …") && out.contains("x = 1…"), "{out}");
        // A label wider than the clip keeps both of its ends.
        let d = Diagnostic::new(codes::SYNTAX, "most of the line")
            .at(Span::new(file, 6 + 700, 6 + line.len() - 700), "wide");
        let out = render_text(&sources, &[d], false);
        assert!(out.contains(":2:701"), "{out}");
        assert!(
            out.lines()
                .all(|l| l.chars().count() < 2 * MAX_SNIPPET_LINE_BYTES),
            "{out}"
        );
    }

    #[test]
    fn at_most_the_cap_is_rendered_errors_first() {
        let mut sources = Sources::new();
        let file = sources.add("f.kiln".to_string(), "a b c d e f".to_string());
        let mut diags =
            vec![Diagnostic::new(codes::VOCAB_PADDING, "a warning").at(Span::new(file, 0, 1), "w")];
        for i in 0..5 {
            diags.push(
                Diagnostic::new(codes::SYNTAX, format!("error {i}"))
                    .at(Span::new(file, 2 + 2 * i, 3 + 2 * i), "e"),
            );
        }
        let out = render_text_at_most(&sources, &diags, false, 3);
        assert_eq!(out.matches("error[").count(), 3, "{out}");
        assert!(!out.contains("a warning"), "{out}");
        assert!(out.ends_with("… and 3 more not shown (2 errors, 1 warning); fix the ones above first, or see every one with `--format json`\n"), "{out}");
        assert!(omitted_line(&diags, diags.len()).is_none());
    }

    #[test]
    fn json_columns_match_codespan() {
        use codespan_reporting::files::Files;
        let mut sources = Sources::new();
        let text = "aé b\n  ccc dd\u{1F600} e\n";
        let file = sources.add("f.kiln".to_string(), text.to_string());
        let offsets: Vec<usize> = (0..=text.len())
            .filter(|o| text.is_char_boundary(*o))
            .collect();
        let mut columns = Columns::new(&sources);
        for &o in offsets.iter().chain(offsets.iter().rev()) {
            let loc = sources.location(file, o).unwrap();
            assert_eq!(
                columns.at(file, o),
                (loc.line_number, loc.column_number),
                "at {o}"
            );
        }
    }

    #[test]
    fn suggestions_skip_long_names() {
        assert_eq!(did_you_mean("layres", ["layers", "heads"]), Some("layers"));
        assert_eq!(did_you_mean(&"a".repeat(100_000), ["a"]), None);
        let long = "b".repeat(1_000_000);
        assert_eq!(did_you_mean(&long, [long.as_str()]), None);
        assert_eq!(did_you_mean("x", [long.as_str()]), None);
    }
}
