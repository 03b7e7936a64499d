//! The run directory's layout: where each step writes and the names of the files steps read
//! from each other (and that the emitted engine configs point at). Every file in it is
//! written by [`crate::write_atomic`] or a directory renamed into place whole.

/// The plan a run directory executes (`kiln plan -o`, `kiln run`).
pub const PLAN_FILE: &str = "plan.json";
/// Where the steps' outputs live, one directory each.
pub const STEPS_DIR: &str = "steps";
/// Every data step's report (counts, never times or machine paths).
pub const REPORT_FILE: &str = "report.json";
/// The documents a text step writes (`{"id", "text"}` lines, zstd).
pub const DOCS_FILE: &str = "docs.jsonl.zst";
/// An encoded or mixed token stream: an indexed dataset prefix (`.bin`, `.idx`), the name
/// Megatron-LM's tools/preprocess_data.py gives a document-level dataset.
pub const DATA_PREFIX: &str = "text_document";
/// The mix step's held-out set (an indexed dataset prefix).
pub const HELD_OUT_PREFIX: &str = "held_out_document";
/// A training or evaluation step's summary.
pub const SUMMARY_FILE: &str = "summary.json";
/// A training step's metrics, one JSON line per optimizer step.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Appended to a train or score step's output directory while it works (rank 0 renames the
/// working directory to the output when the phase ends): where a running step's
/// `metrics.jsonl` is.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// A training step's checkpoints, one directory each.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// The output directory of step `name` with id `id`, relative to the run directory.
pub fn step_output(name: &str, id: &str) -> String {
    format!("{STEPS_DIR}/{name}-{id}")
}
