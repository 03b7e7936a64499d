//! K-C008 batch-arithmetic: global batch = micro_batch × data × accumulation sequences, and
//! enough micro-batches to fill the pipeline.

use super::at;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::{Provenance, Record};
use crate::units::{self, Dim};

pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let Some(par) = exp.record("parallel") else {
        return;
    };
    let (Some(batch), Some(seq)) = (
        exp.num("batch"),
        exp.record("model").and_then(|m| m.num("seq_len")),
    ) else {
        return;
    };
    let (Some(micro), Some(data), Some(accumulation)) = (
        par.num("micro_batch"),
        par.num("data"),
        par.num("accumulation"),
    ) else {
        return;
    };
    let declared = par
        .slot("accumulation")
        .is_some_and(|s| !matches!(s.provenance, Provenance::Derived(_)));
    let sequences = batch / seq;
    if declared && micro * data * accumulation != sequences {
        out.push(
            Diagnostic::new(
                codes::BATCH_ARITHMETIC,
                format!(
                    "micro_batch × data × accumulation = {micro} × {data} × {accumulation} = {} sequences, but the batch is {} sequences ({} / {seq})",
                    micro * data * accumulation,
                    units::trim(sequences),
                    units::show(batch, Dim::Tokens)
                ),
            )
            .at(at(par, "accumulation", exp), "declared accumulation")
            .help(format!(
                "use `accumulation = auto`, or `batch = {} tokens`",
                units::show(micro * data * accumulation * seq, Dim::Count)
            )),
        );
        return;
    }
    let pipeline = par.num("pipeline").unwrap_or(1.0);
    if pipeline > 1.0 && accumulation < pipeline {
        out.push(
            Diagnostic::new(
                codes::BATCH_ARITHMETIC,
                format!("{accumulation} micro-batches per step cannot fill {pipeline} pipeline stages"),
            )
            .at(at(exp, "batch", exp), format!("{} micro-batches per data-parallel rank", units::trim(accumulation)))
            .help(format!(
                "the 1F1B schedule needs at least as many micro-batches as stages; raise the batch to {} or lower micro_batch",
                units::show(pipeline * micro * data * seq, Dim::Tokens)
            )),
        );
    }
}
