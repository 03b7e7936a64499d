//! Streaming corpus readers (JSONL, plain text, each optionally zstd-compressed), input
//! expansion, and the atomic JSONL writer the data steps write their outputs with.
//!
//! # Inputs
//! An input is a file, a directory, or a path whose *file name* contains `*` (any run of
//! characters, e.g. `data/shard-*.jsonl.zst`; a `*` in a directory part is refused).
//! [`expand_inputs`] turns the list into files before anything is read: a directory gives
//! every file under it (recursively) with a known format, a pattern every matching file in
//! its directory; each in byte order of path, hidden names (starting with `.`, such as the
//! writer's temporary files) left out, a file named twice read once. A missing path, a
//! pattern or directory that yields no file, and a named file of unknown format are all
//! reported together, each naming its path, and nothing is read.
//!
//! # Formats (by file name)
//! - `.jsonl`, `.jsonl.zst`: one JSON object per line; the document is the string in the
//!   configured top-level field (`text` by default). Blank lines are skipped. A line that is
//!   not valid UTF-8, not a JSON object, or lacks the field or holds a non-string there is
//!   *malformed*: counted in [`IngestReport`] with its file, line and reason, and the step
//!   goes on; with `strict` the iterator yields [`IngestError::Malformed`] and stops.
//! - `.txt`, `.txt.zst`: the whole file is one document (a plain-text file is usually one
//!   work — a book, a page — and splitting at blank lines would cut it into fragments too
//!   short to deduplicate or to train on). A file that is not valid UTF-8 is malformed
//!   (line 1).
//!
//! A `.zst` file may hold several concatenated zstd frames (as `zstd` and `pzstd` write).
//!
//! Inputs that yield no document although they have lines — every one malformed or too
//! large — end the iteration with [`IngestError::NothingRead`], naming the first such line:
//! a wrong `text_field` or a corrupt file is an error, not an empty corpus.
//!
//! # Document size
//! A document whose text is longer than [`IngestConfig::max_document_bytes`] (UTF-8 bytes;
//! [`DEFAULT_MAX_DOCUMENT_BYTES`] unless configured) is *too large*: skipped, counted in
//! [`IngestReport::too_large_docs`] with its file, line and size, like a malformed line
//! (with `strict`, an error). The reader never holds such a document: a `.txt` file is read
//! up to the limit and the rest only counted; a JSONL line is read into a buffer of at most
//! [`max_line_bytes`] (the limit times [`JSON_BYTES_PER_TEXT_BYTE`], the most JSON's escapes
//! can add, plus [`LINE_SLACK_BYTES`] for the other fields), and a longer line is skipped
//! to its end without being kept. A shorter line whose text is still above the limit is
//! too large once parsed.
//!
//! # Memory
//! [`Ingest`] is an iterator: it holds one open file and one line (or one `.txt` document)
//! at a time, never the corpus, and never a line longer than [`max_line_bytes`]. The
//! malformed-line and too-large lists keep the first [`MAX_MALFORMED_KEPT`] entries each;
//! the counts cover them all.
//!
//! # Documents
//! [`Document::id`] is `PATH:LINE` — the file's path as expanded from the input (so
//! relative inputs give machine-independent ids) and the 1-based line; a `.txt` document
//! is line 1. With [`IngestConfig::id_field`] set (`id` for kiln's own outputs, which
//! write the original id), a string in that field is the id instead, so ids survive a
//! chain of steps. Re-reading the same files yields the same documents in the same order,
//! which the two-pass near-dedup step relies on.
//!
//! # Outputs
//! [`JsonlWriter`] writes `{"id": …, "text": …}` lines to `.jsonl` or `.jsonl.zst` (zstd
//! level [`ZSTD_LEVEL`]) through `kiln_fsio::AtomicFile`: a hidden temporary file in the
//! destination's directory, synced and renamed into place by [`JsonlWriter::finish`], so the
//! destination is the old file or the complete new one. A writer dropped without `finish`
//! removes its temporary file; one left by a killed process is hidden (no input expansion
//! picks it up) and removed by the next write to the same destination.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use kiln_fsio::AtomicFile;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The JSONL field holding the text when none is configured (Dolma's and datatrove's
/// convention).
pub const DEFAULT_TEXT_FIELD: &str = "text";

/// How many malformed lines [`IngestReport::malformed`] lists (assumption: enough to see
/// what is wrong with a file; a corrupt file must not grow the report without bound).
pub const MAX_MALFORMED_KEPT: usize = 1000;

/// The read buffer per open file (assumption: large enough to amortise system calls).
const READ_BUFFER_BYTES: usize = 1 << 20;

/// The largest document read when none is configured: 8 MiB of UTF-8 text. Assumption: it
/// holds a long book (War and Peace is 3.2 MB) and all but the rarest web pages and source
/// files (The Stack drops files above 1 MB; Kocetkov et al. 2022), while a
/// document in flight costs the steps a bounded amount of memory (the tokenizer's word
/// counting and encoding work on pieces of it, see `tokenize` and `shards`).
pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 8 << 20;

/// The most text the steps hold in one parallel batch (a larger document is a batch of its
/// own). Assumption: batches of thousands of typical documents stay far below it, and the
/// memory a batch needs stays a small multiple of it.
pub const MAX_BATCH_BYTES: u64 = 64 << 20;

/// The most bytes of JSON one byte of text can take: a control character written as
/// `\u00XX`.
pub const JSON_BYTES_PER_TEXT_BYTE: u64 = 6;

/// Room in a JSONL line for the fields other than the text (assumption: ids and metadata are
/// far smaller than this).
pub const LINE_SLACK_BYTES: u64 = 64 << 10;

/// The longest JSONL line the reader holds for a document limit of `max_document_bytes`:
/// any line whose text can be within the limit fits.
pub fn max_line_bytes(max_document_bytes: u64) -> u64 {
    max_document_bytes
        .saturating_mul(JSON_BYTES_PER_TEXT_BYTE)
        .saturating_add(LINE_SLACK_BYTES)
}

/// zstd compression level of written `.zst` outputs: zstd's own default.
pub const ZSTD_LEVEL: i32 = 3;

/// One document: a stable id and its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// `PATH:LINE` of the line (or `.txt` file, line 1) it came from.
    pub id: String,
    pub text: String,
}

/// A file format kiln reads, from the file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// The whole file is one document.
    Text,
}

/// An expanded input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: Format,
    /// Whether it is zstd-compressed (`.zst`).
    pub zstd: bool,
}

/// Reads a file name's format: `.jsonl`, `.jsonl.zst`, `.txt`, `.txt.zst`; `None` otherwise.
pub fn format_of(path: &Path) -> Option<(Format, bool)> {
    let name = path.file_name()?.to_str()?;
    let (stem, zstd) = match name.strip_suffix(".zst") {
        Some(stem) => (stem, true),
        None => (name, false),
    };
    if stem.ends_with(".jsonl") {
        Some((Format::Jsonl, zstd))
    } else if stem.ends_with(".txt") {
        Some((Format::Text, zstd))
    } else {
        None
    }
}

/// What [`Ingest::open`] reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestConfig {
    /// Files, directories and `*` patterns (see the module doc).
    pub inputs: Vec<PathBuf>,
    /// The top-level JSONL field holding the text.
    pub text_field: String,
    /// Fail at the first malformed line instead of counting it.
    pub strict: bool,
    /// A JSONL field whose string value, where present, is the document's id instead of
    /// `PATH:LINE`. The steps after ingest set it to `id` to carry the original ids through
    /// kiln's own outputs.
    pub id_field: Option<String>,
    /// Documents whose text has more bytes than this are skipped and counted (see the module
    /// doc).
    pub max_document_bytes: u64,
}

impl IngestConfig {
    /// Reads `inputs` with the default text field, not strict.
    pub fn new(inputs: Vec<PathBuf>) -> Self {
        IngestConfig {
            inputs,
            text_field: DEFAULT_TEXT_FIELD.to_string(),
            strict: false,
            id_field: None,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
        }
    }

    /// Takes ids from the `id` field of kiln's own outputs (see [`IngestConfig::id_field`]).
    pub fn with_ids(mut self) -> Self {
        self.id_field = Some("id".to_string());
        self
    }
}

/// A malformed line: where and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Malformed {
    pub path: PathBuf,
    /// 1-based.
    pub line: u64,
    pub reason: String,
}

/// What an ingest read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Files opened.
    pub files: u64,
    /// Documents yielded.
    pub docs: u64,
    /// Malformed lines skipped, all of them.
    pub malformed_lines: u64,
    /// The first [`MAX_MALFORMED_KEPT`] of them.
    pub malformed: Vec<Malformed>,
    /// Documents skipped for being longer than the limit, all of them.
    pub too_large_docs: u64,
    /// The first [`MAX_MALFORMED_KEPT`] of them (the reason gives the size).
    pub too_large: Vec<Malformed>,
    /// The first line skipped for either reason.
    #[serde(skip)]
    pub first_problem: Option<Malformed>,
}

impl IngestReport {
    /// The first line skipped, malformed or too large, in reading order (for messages).
    pub fn first_problem(&self) -> Option<&Malformed> {
        self.first_problem.as_ref()
    }

    /// Lines or files skipped, malformed or too large.
    pub fn skipped(&self) -> u64 {
        self.malformed_lines + self.too_large_docs
    }
}

/// Why an input could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputProblem {
    /// The path (or a pattern's directory) does not exist.
    Missing,
    /// A pattern or directory that yields no file of a known format.
    NoFiles,
    /// A named file whose name is not `.jsonl`, `.jsonl.zst`, `.txt` or `.txt.zst`.
    UnknownFormat,
    /// `*` outside the file name.
    PatternInDirectory,
    /// The directory could not be listed.
    Unreadable(String),
}

impl fmt::Display for InputProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputProblem::Missing => write!(f, "does not exist"),
            InputProblem::NoFiles => write!(
                f,
                "holds no .jsonl, .jsonl.zst, .txt or .txt.zst file (hidden names are skipped)"
            ),
            InputProblem::UnknownFormat => write!(
                f,
                "has an unknown format: expected .jsonl, .jsonl.zst, .txt or .txt.zst"
            ),
            InputProblem::PatternInDirectory => {
                write!(
                    f,
                    "has `*` outside the file name; only the file name may hold it"
                )
            }
            InputProblem::Unreadable(e) => write!(f, "cannot be listed: {e}"),
        }
    }
}

/// An ingest or output failure.
#[derive(Debug)]
pub enum IngestError {
    /// Inputs that cannot be read, found before any was read; every one is listed.
    Inputs(Vec<(PathBuf, InputProblem)>),
    /// No input given at all.
    NoInputs,
    /// A malformed line in strict mode.
    Malformed(Malformed),
    /// A document above the size limit in strict mode.
    TooLarge(Malformed),
    /// Not one document was read: every line was malformed or too large.
    NothingRead {
        malformed: u64,
        too_large: u64,
        /// The first line skipped.
        first: Malformed,
    },
    /// An IO failure reading or writing a file (a corrupt zstd stream included).
    Io { path: PathBuf, source: io::Error },
    /// An output name that is not `.jsonl` or `.jsonl.zst`.
    OutputFormat(PathBuf),
    /// The output could not be written (or was refused) by `kiln_fsio`.
    Output(kiln_fsio::Error),
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IngestError::Inputs(problems) => {
                for (i, (path, problem)) in problems.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "input `{}` {problem}", path.display())?;
                }
                Ok(())
            }
            IngestError::NoInputs => write!(f, "no input given"),
            IngestError::Malformed(m) => write!(
                f,
                "{}:{}: malformed line: {}",
                m.path.display(),
                m.line,
                m.reason
            ),
            IngestError::TooLarge(m) => write!(
                f,
                "{}:{}: document too large: {}",
                m.path.display(),
                m.line,
                m.reason
            ),
            IngestError::NothingRead {
                malformed,
                too_large,
                first,
            } => write!(
                f,
                "no document could be read from `{}`: every line was skipped ({malformed} \
                 malformed, {too_large} too large); the first, line {}: {}",
                first.path.display(),
                first.line,
                first.reason
            ),
            IngestError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            IngestError::Output(e) => e.fmt(f),
            IngestError::OutputFormat(path) => write!(
                f,
                "output `{}` must end in .jsonl or .jsonl.zst",
                path.display()
            ),
        }
    }
}

impl std::error::Error for IngestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IngestError::Io { source, .. } => Some(source),
            IngestError::Output(e) => Some(e),
            _ => None,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> IngestError + '_ {
    move |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Greedy matching with backtracking to the last `*` (linear in practice).
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Every file with a known format under `dir`, recursively, hidden names skipped.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    entries.sort();
    for path in entries {
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if format_of(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

/// Expands inputs into files (see the module doc); every problem is reported at once.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<InputFile>, IngestError> {
    if inputs.is_empty() {
        return Err(IngestError::NoInputs);
    }
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for input in inputs {
        let name = input.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let parent = input.parent().filter(|p| !p.as_os_str().is_empty());
        if parent.is_some_and(|p| p.to_string_lossy().contains('*')) {
            problems.push((input.clone(), InputProblem::PatternInDirectory));
        } else if name.contains('*') {
            let dir = parent.unwrap_or(Path::new("."));
            if !dir.is_dir() {
                problems.push((input.clone(), InputProblem::Missing));
                continue;
            }
            let listed = fs::read_dir(dir).and_then(|rd| {
                rd.map(|e| e.map(|e| e.path()))
                    .collect::<io::Result<Vec<PathBuf>>>()
            });
            let mut matched: Vec<PathBuf> = match listed {
                Ok(entries) => entries
                    .into_iter()
                    .filter(|p| {
                        p.is_file()
                            && !is_hidden(p)
                            && format_of(p).is_some()
                            && p.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| wildcard_match(name, n))
                    })
                    // Keep the pattern's spelling of the directory (no `./` added).
                    .map(|p| match (parent, p.file_name()) {
                        (Some(parent), Some(n)) => parent.join(n),
                        (None, Some(n)) => PathBuf::from(n),
                        _ => p,
                    })
                    .collect(),
                Err(e) => {
                    problems.push((input.clone(), InputProblem::Unreadable(e.to_string())));
                    continue;
                }
            };
            matched.sort();
            if matched.is_empty() {
                problems.push((input.clone(), InputProblem::NoFiles));
            }
            files.extend(matched);
        } else if input.is_dir() {
            let mut found = Vec::new();
            match walk(input, &mut found) {
                Ok(()) if found.is_empty() => problems.push((input.clone(), InputProblem::NoFiles)),
                Ok(()) => files.extend(found),
                Err(e) => problems.push((input.clone(), InputProblem::Unreadable(e.to_string()))),
            }
        } else if input.is_file() {
            if format_of(input).is_some() {
                files.push(input.clone());
            } else {
                problems.push((input.clone(), InputProblem::UnknownFormat));
            }
        } else {
            problems.push((input.clone(), InputProblem::Missing));
        }
    }
    if !problems.is_empty() {
        return Err(IngestError::Inputs(problems));
    }
    let mut seen = HashSet::new();
    Ok(files
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .filter_map(|path| {
            let (format, zstd) = format_of(&path)?;
            Some(InputFile { path, format, zstd })
        })
        .collect())
}

/// Counts the documents of the inputs in one streaming pass (malformed lines excluded, or
/// an error when strict) — e.g. to size the exact-dedup Bloom filter when the experiment
/// declares no `expected_docs`.
pub fn count_documents(config: &IngestConfig) -> Result<u64, IngestError> {
    let mut ingest = Ingest::open(config)?;
    for doc in ingest.by_ref() {
        doc?;
    }
    Ok(ingest.report().docs)
}

/// Opens a file for buffered reading, through a zstd decoder when it is compressed.
fn open_reader(file: &InputFile) -> Result<Box<dyn BufRead + Send>, IngestError> {
    let raw = File::open(&file.path).map_err(io_error(&file.path))?;
    let buffered = BufReader::with_capacity(READ_BUFFER_BYTES, raw);
    if file.zstd {
        let decoder =
            zstd::stream::read::Decoder::with_buffer(buffered).map_err(io_error(&file.path))?;
        Ok(Box::new(BufReader::with_capacity(
            READ_BUFFER_BYTES,
            decoder,
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

struct OpenFile {
    file: InputFile,
    reader: Box<dyn BufRead + Send>,
    line: u64,
}

/// The streaming reader: an iterator of documents over the expanded inputs, in order.
///
/// It yields `Err` for an IO failure (the file and its error) or, when strict, for a
/// malformed line, and then ends.
pub struct Ingest {
    files: Vec<InputFile>,
    next_file: usize,
    current: Option<OpenFile>,
    text_field: String,
    id_field: Option<String>,
    strict: bool,
    max_document_bytes: u64,
    report: IngestReport,
    line: Vec<u8>,
    done: bool,
}

impl Ingest {
    /// Expands the inputs (failing, before reading anything, on any that cannot be used).
    pub fn open(config: &IngestConfig) -> Result<Ingest, IngestError> {
        let files = expand_inputs(&config.inputs)?;
        Ok(Ingest {
            files,
            next_file: 0,
            current: None,
            text_field: config.text_field.clone(),
            id_field: config.id_field.clone(),
            strict: config.strict,
            max_document_bytes: config.max_document_bytes,
            report: IngestReport::default(),
            line: Vec::new(),
            done: false,
        })
    }

    /// The expanded input files.
    pub fn files(&self) -> &[InputFile] {
        &self.files
    }

    /// What has been read so far.
    pub fn report(&self) -> &IngestReport {
        &self.report
    }

    /// The final report.
    pub fn into_report(self) -> IngestReport {
        self.report
    }

    /// Records a malformed line; in strict mode returns the error to yield.
    fn malformed(&mut self, path: &Path, line: u64, reason: String) -> Option<IngestError> {
        let entry = Malformed {
            path: path.to_path_buf(),
            line,
            reason,
        };
        self.report.malformed_lines += 1;
        if self.report.first_problem.is_none() {
            self.report.first_problem = Some(entry.clone());
        }
        if self.strict {
            return Some(IngestError::Malformed(entry));
        }
        if self.report.malformed.len() < MAX_MALFORMED_KEPT {
            self.report.malformed.push(entry);
        }
        None
    }

    /// Records a document above the size limit; in strict mode returns the error to yield.
    fn too_large(&mut self, path: &Path, line: u64, reason: String) -> Option<IngestError> {
        let entry = Malformed {
            path: path.to_path_buf(),
            line,
            reason,
        };
        self.report.too_large_docs += 1;
        if self.report.first_problem.is_none() {
            self.report.first_problem = Some(entry.clone());
        }
        if self.strict {
            return Some(IngestError::TooLarge(entry));
        }
        if self.report.too_large.len() < MAX_MALFORMED_KEPT {
            self.report.too_large.push(entry);
        }
        None
    }

    fn fail(&mut self, error: IngestError) -> Option<Result<Document, IngestError>> {
        self.done = true;
        self.current = None;
        Some(Err(error))
    }

    /// Reads the open `.txt` file whole as one document, holding at most the limit; `None`
    /// when it was skipped (malformed or too large, not strict).
    fn next_text(&mut self) -> Option<Result<Document, IngestError>> {
        let limit = self.max_document_bytes;
        let open = self.current.as_mut()?;
        let path = open.file.path.clone();
        let mut bytes = Vec::new();
        let read = (&mut open.reader)
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .and_then(|n| {
                if n as u64 > limit {
                    // Too large: count the rest without keeping it.
                    bytes = Vec::new();
                    io::copy(&mut open.reader, &mut io::sink()).map(|rest| n as u64 + rest)
                } else {
                    Ok(n as u64)
                }
            });
        self.current = None;
        let size = match read {
            Ok(size) => size,
            Err(source) => return self.fail(IngestError::Io { path, source }),
        };
        if size > limit {
            let reason = too_large_reason(size, limit);
            let err = self.too_large(&path, 1, reason)?;
            return self.fail(err);
        }
        match String::from_utf8(bytes) {
            Ok(text) => {
                self.report.docs += 1;
                Some(Ok(Document {
                    id: document_id(&path, 1),
                    text,
                }))
            }
            Err(e) => {
                let reason = format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to());
                let err = self.malformed(&path, 1, reason)?;
                self.fail(err)
            }
        }
    }
}

fn document_id(path: &Path, line: u64) -> String {
    format!("{}:{}", path.display(), line)
}

fn too_large_reason(text_bytes: u64, limit: u64) -> String {
    format!("{text_bytes} bytes of text, more than the limit of {limit} (--max-document-bytes)")
}

/// What [`read_line_bounded`] found.
enum Line {
    /// The end of the file.
    End,
    /// A line, held in the buffer (with its `\n` when it has one).
    Held,
    /// A line longer than the bound, read to its end without being kept: its length in
    /// bytes, the `\n` not counted.
    Skipped(u64),
}

/// Reads the next line into `buf` as `read_until(b'\n')` does, unless it has more than
/// `max` bytes (the `\n` not counted): such a line is consumed to its end, counted and
/// not kept, so `buf` never grows past `max + 1` bytes.
fn read_line_bounded(reader: &mut dyn BufRead, buf: &mut Vec<u8>, max: u64) -> io::Result<Line> {
    buf.clear();
    let mut total = 0u64;
    let mut newline = false;
    let mut over = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        let (n, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        total += n as u64;
        if !over {
            if (buf.len() + n) as u64 > max.saturating_add(1) {
                over = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&available[..n]);
            }
        }
        reader.consume(n);
        if found {
            newline = true;
            break;
        }
    }
    let content = total - u64::from(newline);
    Ok(if total == 0 {
        Line::End
    } else if over || content > max {
        buf.clear();
        Line::Skipped(content)
    } else {
        Line::Held
    })
}

impl Iterator for Ingest {
    type Item = Result<Document, IngestError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let Some(open) = self.current.as_mut() else {
                let Some(file) = self.files.get(self.next_file).cloned() else {
                    self.done = true;
                    // Every line skipped: an error, not an empty corpus.
                    if self.report.docs == 0 {
                        if let Some(first) = self.report.first_problem.clone() {
                            return self.fail(IngestError::NothingRead {
                                malformed: self.report.malformed_lines,
                                too_large: self.report.too_large_docs,
                                first,
                            });
                        }
                    }
                    return None;
                };
                self.next_file += 1;
                let reader = match open_reader(&file) {
                    Ok(r) => r,
                    Err(e) => return self.fail(e),
                };
                self.report.files += 1;
                self.current = Some(OpenFile {
                    file,
                    reader,
                    line: 0,
                });
                continue;
            };

            if open.file.format == Format::Text {
                match self.next_text() {
                    Some(item) => return Some(item),
                    None => continue,
                }
            }

            let limit = self.max_document_bytes;
            let read =
                read_line_bounded(open.reader.as_mut(), &mut self.line, max_line_bytes(limit));
            let line = match read {
                Ok(line) => line,
                Err(source) => {
                    let path = open.file.path.clone();
                    return self.fail(IngestError::Io { path, source });
                }
            };
            if let Line::End = line {
                self.current = None;
                continue;
            }
            open.line += 1;
            let line_no = open.line;
            let path = open.file.path.clone();
            if let Line::Skipped(bytes) = line {
                let reason = format!(
                    "a line of {bytes} bytes, longer than any document within the limit of \
                     {limit} bytes of text (--max-document-bytes)"
                );
                if let Some(err) = self.too_large(&path, line_no, reason) {
                    return self.fail(err);
                }
                continue;
            }
            match parse_line(&self.line, &self.text_field, self.id_field.as_deref()) {
                Ok(None) => continue,
                Ok(Some((text, _))) if text.len() as u64 > limit => {
                    let reason = too_large_reason(text.len() as u64, limit);
                    if let Some(err) = self.too_large(&path, line_no, reason) {
                        return self.fail(err);
                    }
                }
                Ok(Some((text, id))) => {
                    self.report.docs += 1;
                    return Some(Ok(Document {
                        id: id.unwrap_or_else(|| document_id(&path, line_no)),
                        text,
                    }));
                }
                Err(reason) => {
                    if let Some(err) = self.malformed(&path, line_no, reason) {
                        return self.fail(err);
                    }
                }
            }
        }
    }
}

/// A JSONL line's text and (when `id_field` is given and holds a string) id: `Ok(None)` for
/// a blank line, `Err(reason)` when malformed.
fn parse_line(
    line: &[u8],
    field: &str,
    id_field: Option<&str>,
) -> Result<Option<(String, Option<String>)>, String> {
    let line = match std::str::from_utf8(line) {
        Ok(s) => s,
        Err(e) => return Err(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
    };
    if line.trim().is_empty() {
        return Ok(None);
    }
    let mut de = serde_json::Deserializer::from_str(line);
    let (found, id) = TextField { field, id_field }
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found))
        .map_err(|e| format!("invalid JSON: {e}"))?;
    match found {
        Found::NotObject => Err("not a JSON object".to_string()),
        Found::Missing => Err(format!("no field `{field}`")),
        Found::NotString => Err(format!("field `{field}` is not a string")),
        Found::Text(text) => Ok(Some((text, id))),
    }
}

/// What a JSONL line's object holds in the text field.
enum Found {
    NotObject,
    Missing,
    NotString,
    Text(String),
}

/// Deserialises a JSON value keeping only the text and id fields (other fields are skipped
/// without being built).
struct TextField<'f> {
    field: &'f str,
    id_field: Option<&'f str>,
}

impl<'de> DeserializeSeed<'de> for TextField<'_> {
    type Value = (Found, Option<String>);
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// The text field's value: a string or something else.
struct FieldValue;

impl<'de> Visitor<'de> for FieldValue {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

impl<'de> DeserializeSeed<'de> for FieldValue {
    type Value = Option<String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextField<'_> {
    type Value = (Found, Option<String>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Found::Missing;
        let mut id = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.field {
                found = match map.next_value_seed(FieldValue)? {
                    Some(text) => Found::Text(text),
                    None => Found::NotString,
                };
            } else if Some(key.as_ref()) == self.id_field {
                id = map.next_value_seed(FieldValue)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok((found, id))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok((Found::NotObject, None))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok((Found::NotObject, None))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok((Found::NotObject, None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok((Found::NotObject, None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok((Found::NotObject, None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok((Found::NotObject, None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((Found::NotObject, None))
    }
}

enum Sink {
    Plain(BufWriter<AtomicFile>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<AtomicFile>>),
}

impl Sink {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Plain(w) => w,
            Sink::Zstd(w) => w,
        }
    }
}

/// Writes documents as JSONL (`.jsonl` or `.jsonl.zst`), atomically (see the module doc).
pub struct JsonlWriter {
    dest: PathBuf,
    temp: PathBuf,
    sink: Option<Sink>,
    docs: u64,
}

impl JsonlWriter {
    /// Starts writing `dest` (creating its directory); nothing appears at `dest` until
    /// [`JsonlWriter::finish`].
    pub fn create(dest: &Path) -> Result<JsonlWriter, IngestError> {
        let zstd = match format_of(dest) {
            Some((Format::Jsonl, zstd)) => zstd,
            _ => return Err(IngestError::OutputFormat(dest.to_path_buf())),
        };
        if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        let file = AtomicFile::create(dest).map_err(IngestError::Output)?;
        let temp = file.temp_path().to_path_buf();
        let buffered = BufWriter::with_capacity(READ_BUFFER_BYTES, file);
        let sink = if zstd {
            match zstd::stream::write::Encoder::new(buffered, ZSTD_LEVEL) {
                Ok(encoder) => Sink::Zstd(encoder),
                Err(source) => return Err(IngestError::Io { path: temp, source }),
            }
        } else {
            Sink::Plain(buffered)
        };
        Ok(JsonlWriter {
            dest: dest.to_path_buf(),
            temp,
            sink: Some(sink),
            docs: 0,
        })
    }

    /// The temporary file being written (hidden, beside the destination).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Appends one document as a `{"id": …, "text": …}` line.
    pub fn write(&mut self, doc: &Document) -> Result<(), IngestError> {
        let dest = &self.dest;
        let Some(sink) = self.sink.as_mut() else {
            return Ok(());
        };
        let w = sink.writer();
        serde_json::to_writer(&mut *w, doc)
            .map_err(io::Error::from)
            .and_then(|()| w.write_all(b"\n"))
            .map_err(io_error(dest))?;
        self.docs += 1;
        Ok(())
    }

    /// Flushes, syncs and renames the output into place; returns the documents written.
    /// On failure the destination is as it was and the temporary file is removed.
    pub fn finish(mut self) -> Result<u64, IngestError> {
        let Some(sink) = self.sink.take() else {
            return Ok(self.docs);
        };
        let buffered = match sink {
            Sink::Plain(w) => w,
            Sink::Zstd(encoder) => encoder.finish().map_err(io_error(&self.dest))?,
        };
        let file = buffered.into_inner().map_err(|e| IngestError::Io {
            path: self.dest.clone(),
            source: e.into_error(),
        })?;
        file.commit().map_err(IngestError::Output)?;
        Ok(self.docs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.jsonl", "a.jsonl"));
        assert!(wildcard_match("shard-*-of-*.txt", "shard-1-of-9.txt"));
        assert!(!wildcard_match("*.jsonl", "a.jsonl.zst"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("a*b", "acbx"));
        assert!(wildcard_match("a*b*", "aXbYbZ"));
    }

    #[test]
    fn formats() {
        assert_eq!(
            format_of(Path::new("x/a.jsonl.zst")),
            Some((Format::Jsonl, true))
        );
        assert_eq!(format_of(Path::new("a.txt")), Some((Format::Text, false)));
        assert_eq!(format_of(Path::new("a.json")), None);
        assert_eq!(format_of(Path::new("a.zst")), None);
    }

    #[test]
    fn lines() {
        assert_eq!(
            parse_line(
                b"{\"text\": \"hi\", \"m\": [1, {\"a\": 2}]}\n",
                "text",
                None
            ),
            Ok(Some(("hi".into(), None)))
        );
        assert_eq!(
            parse_line(b"{\"id\": \"a:1\", \"text\": \"hi\"}", "text", Some("id")),
            Ok(Some(("hi".into(), Some("a:1".into()))))
        );
        assert_eq!(parse_line(b"  \r\n", "text", None), Ok(None));
        assert_eq!(
            parse_line(b"[1]", "text", None),
            Err("not a JSON object".into())
        );
        assert_eq!(
            parse_line(b"{\"t\": 1}", "text", None),
            Err("no field `text`".into())
        );
        assert_eq!(
            parse_line(b"{\"text\": 1}", "text", None),
            Err("field `text` is not a string".into())
        );
        assert!(parse_line(b"{\"text\": \"a\"} x", "text", None)
            .unwrap_err()
            .starts_with("invalid JSON"));
        assert!(parse_line(b"{\"text\": \"\xff\"}", "text", None)
            .unwrap_err()
            .starts_with("invalid UTF-8"));
    }
}
