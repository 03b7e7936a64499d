//! Checks: those that need no performance model (data mix, phases, topology, batch,
//! vocabulary) and, in perf.rs, those on the analyses (scaling, memory, precision).
//! Each file holds the checks of one area; each check's code and docs live in codes.rs.

mod batch;
mod budget;
pub mod cluster;
pub mod engine;
mod law;
mod limits;
pub use limits::MAX_WORLD;
mod mix;
mod model;
mod offload;
pub mod perf;
mod phases;
mod quality;
mod ramp;
mod topology;
mod vocab;

use crate::diagnostic::Diagnostic;
use crate::ir::Record;
use crate::span::Span;

/// Runs every check that applies to a declaration of `kind`.
pub fn check(kind: &str, record: &Record, out: &mut Vec<Diagnostic>) {
    match kind {
        "experiment" => {
            mix::check(record, out);
            model::check(record, out);
            phases::check(record, out);
            topology::check(record, out);
            batch::check(record, out);
            ramp::check(record, out);
            budget::check(record, out);
            cluster::check(record, out);
            vocab::check(record, out);
            limits::check(record, out);
            quality::check(record, out);
            if let Some(law) = record.record("law") {
                law::check(law, out);
            }
        }
        "law" => law::check(record, out),
        "model" => model::published_params(record, out),
        _ => {}
    }
}

/// Where to point for a field: its value, else the record, else the experiment.
fn at(record: &Record, field: &str, fallback: &Record) -> Span {
    record
        .span_of(field)
        .or(fallback.span)
        .unwrap_or(crate::span::Span::new(0, 0, 0))
}
