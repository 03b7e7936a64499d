//! A score step's `scores.jsonl` (kiln-train's `score` step, or any file of the same shape
//! for `kiln data classify train`): one `{"id", "text", "score", "tokens"}` line per scored
//! document, `score` null where the scorer could not grade it.
//!
//! These files are read whole (a scored sample is small: the plan samples a few thousand
//! documents per source) and strictly: a line that is not such an object is an error naming
//! the file and line, not a skipped document, since a score file is kiln's own output.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;

use crate::ops::DataError;

/// The file a score step writes (kiln-train's `score`).
pub const SCORES_FILE: &str = "scores.jsonl";

/// One scored document.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ScoredDocument {
    pub id: String,
    pub text: String,
    /// The scorer's score (higher is better); `None` where it could not grade the document.
    pub score: Option<f64>,
    /// The scorer's token count of the document (needed for the good-token counts; absent in
    /// a file of the user's that has none).
    #[serde(default)]
    pub tokens: Option<u64>,
}

/// Reads every line of a score file (`.jsonl`, or `.jsonl.zst` compressed); blank lines are
/// skipped, a non-finite score is an error.
pub fn read_scores(path: &Path) -> Result<Vec<ScoredDocument>, DataError> {
    let io = |e: std::io::Error| DataError {
        message: format!("{}: {e}", path.display()),
        io: true,
    };
    let file = File::open(path).map_err(io)?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "zst") {
        Box::new(zstd::stream::read::Decoder::new(file).map_err(io)?)
    } else {
        Box::new(file)
    };
    let mut docs = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let doc: ScoredDocument = serde_json::from_str(&line).map_err(|e| {
            DataError::work(format!(
                "{}:{}: not a scored document ({{\"id\", \"text\", \"score\", \"tokens\"}}): {e}",
                path.display(),
                i + 1
            ))
        })?;
        if let Some(s) = doc.score.filter(|s| !s.is_finite()) {
            return Err(DataError::work(format!(
                "{}:{}: the score {s} is not a finite number",
                path.display(),
                i + 1
            )));
        }
        docs.push(doc);
    }
    Ok(docs)
}
