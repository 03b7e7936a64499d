//! Source files and byte spans into them, shared by every stage.

use codespan_reporting::files::SimpleFiles;

/// An index into [`Sources`].
pub type FileId = usize;

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span {
            file,
            start: start as u32,
            end: end as u32,
        }
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    /// The smallest span covering both (they must be in the same file).
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// Every source text the compiler has read, by name (a path, or `std/models.kiln`).
pub type Sources = SimpleFiles<String, String>;

/// Line and column (both 1-based) of a byte offset.
pub fn line_column(sources: &Sources, span: Span) -> (usize, usize) {
    use codespan_reporting::files::Files;
    match sources.location(span.file, span.start as usize) {
        Ok(loc) => (loc.line_number, loc.column_number),
        Err(_) => (1, 1),
    }
}
