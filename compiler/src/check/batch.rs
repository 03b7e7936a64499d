//! K-C008 batch-arithmetic: global batch = micro_batch × data × accumulation sequences, and
//! enough micro-batches for an interleaved pipeline; K-C017 pipeline-underfilled otherwise.

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
        // Megatron-LM's interleaved schedule refuses fewer micro-batches than stages
        // (megatron/core/pipeline_parallel/schedules.py,
        // forward_backward_pipelining_with_interleaving); plain 1F1B runs them with a bubble.
        let interleaved = par.num("virtual_stages").unwrap_or(1.0) > 1.0;
        let code = if interleaved {
            codes::BATCH_ARITHMETIC
        } else {
            codes::PIPELINE_UNDERFILLED
        };
        let noun = if accumulation == 1.0 {
            "micro-batch"
        } else {
            "micro-batches"
        };
        let bubble = (pipeline - 1.0) / (accumulation + pipeline - 1.0);
        let help = if interleaved {
            format!(
                "the interleaved schedule needs at least as many micro-batches as stages; raise the batch to {} or lower micro_batch",
                units::show(pipeline * micro * data * seq, Dim::Tokens)
            )
        } else {
            format!(
                "the pipeline idles {:.0} % of the step; raise the batch to {} or lower micro_batch",
                100.0 * bubble,
                units::show(pipeline * micro * data * seq, Dim::Tokens)
            )
        };
        out.push(
            Diagnostic::new(
                code,
                format!("{accumulation} {noun} per step cannot fill {pipeline} pipeline stages"),
            )
            .at(
                at(exp, "batch", exp),
                format!(
                    "{} {noun} per data-parallel rank",
                    units::trim(accumulation)
                ),
            )
            .help(help),
        );
    }
}
