//! The one error type of kiln-train: what failed, in words, with the path or step it concerns.

use std::fmt;
use std::path::{Path, PathBuf};

/// A training, evaluation or calibration failure.
#[derive(Debug)]
pub enum TrainError {
    /// The plan, or a step in it, cannot be used (wrong version, missing step, bad params).
    Plan(String),
    /// A model, optimizer or precision the runtime does not build (what, and what it does).
    Unsupported(String),
    /// An input that is missing or malformed: token shards, a previous step's checkpoint.
    Input(String),
    /// A file operation failed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// libtorch refused an operation (its message).
    Torch(String),
    /// The loss or the gradients became non-finite where no loss scaling can recover.
    Diverged { step: u64, why: String },
    /// Another process holds the step's working directory.
    Busy(PathBuf),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Plan(why) => write!(f, "plan: {why}"),
            TrainError::Unsupported(why) => write!(f, "not supported: {why}"),
            TrainError::Input(why) => write!(f, "input: {why}"),
            TrainError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            TrainError::Torch(why) => write!(f, "libtorch: {why}"),
            TrainError::Diverged { step, why } => write!(f, "step {step}: {why}"),
            TrainError::Busy(dir) => write!(
                f,
                "{} is in use by another process running the same step",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for TrainError {}

impl From<tch::TchError> for TrainError {
    fn from(e: tch::TchError) -> Self {
        TrainError::Torch(e.to_string())
    }
}

/// Maps an IO error to [`TrainError::Io`] naming `path`.
pub fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs `f`, turning a panic inside libtorch's wrappers (tch's infallible methods panic on a
/// C++ exception, such as an allocation failure) into [`TrainError::Torch`], so no panic
/// leaves the crate's entry points.
pub fn catch_torch<T>(f: impl FnOnce() -> Result<T, TrainError>) -> Result<T, TrainError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let why = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "an operation failed".into());
            Err(TrainError::Torch(first_line(&why)))
        }
    }
}

/// libtorch's message without tch's `unwrap` wrapper and the C++ stack frames.
fn first_line(message: &str) -> String {
    let text = message
        .split_once("Torch(\"")
        .map_or(message, |(_, rest)| rest);
    let text = text.split("\\n").next().unwrap_or(text);
    text.lines()
        .next()
        .unwrap_or(text)
        .trim_end_matches("\")")
        .to_string()
}
