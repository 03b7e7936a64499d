//! K-C024 batch-ramp: a `batch = ramp { … }` that describes one ramp (linear or staged);
//! K-C025 ramp-batch-split: every batch of the ramp splits into the layout as the full batch
//! must (K-C008).

use super::at;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::{Record, Value};
use crate::ramp::MAX_RAMP_STAGES;
use crate::span::Span;
use crate::units::{self, Dim};

pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let Some(ramp) = exp.record("batch").filter(|r| r.kind == "ramp") else {
        return;
    };
    let Some(seq) = exp.record("model").and_then(|m| m.num("seq_len")) else {
        return;
    };
    let Some(full) = ramp.num("to") else {
        return;
    };
    let form = |span: Span, label: &str, message: String, help: String| {
        Diagnostic::new(codes::BATCH_RAMP, message)
            .at(span, label.to_string())
            .help(help)
    };
    let here = |field: &str| at(ramp, field, exp);
    let linear_fields: Vec<&str> = ["from", "over", "increment"]
        .into_iter()
        .filter(|f| ramp.slot(f).is_some())
        .collect();
    let stages = match ramp.slot("stages").map(|s| &s.value) {
        Some(Value::List(items)) => Some(
            items
                .iter()
                .filter_map(|v| match v {
                    Value::Record(r) => Some(r),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        Some(_) => return, // rejected when resolved
        None => None,
    };
    // The batches to split (tokens, where written).
    let mut batches: Vec<(f64, Span, &str)> = Vec::new();
    match (&stages, linear_fields.is_empty()) {
        (Some(_), false) => {
            out.push(form(
                here(linear_fields[0]),
                "a linear ramp's field",
                "a ramp is linear (`from`, `over`, `increment`) or staged (`stages`), not both"
                    .into(),
                format!(
                    "remove `{}`, or remove `stages`",
                    linear_fields.join("`, `")
                ),
            ));
            return;
        }
        (None, true) => {
            out.push(form(
                ramp.span.or(exp.span_of("batch")).unwrap_or(Span::new(0, 0, 0)),
                "no ramp",
                format!(
                    "the ramp to {} says neither how it grows nor when",
                    units::show(full, Dim::Tokens)
                ),
                "write `from = … tokens, over = … tokens` (a linear ramp) or `stages = [{ batch = … tokens, until = … tokens }, …]`".into(),
            ));
            return;
        }
        (Some(stages), true) => {
            if stages.is_empty() {
                out.push(form(
                    here("stages"),
                    "no stages",
                    "a staged ramp needs at least one stage before its full batch".into(),
                    "write `stages = [{ batch = … tokens, until = … tokens }]`, or `batch = … tokens` without a ramp".into(),
                ));
                return;
            }
            let mut previous: Option<f64> = None;
            for s in stages {
                let (Some(batch), Some(until)) = (s.num("batch"), s.num("until")) else {
                    return;
                };
                let threshold = (until / seq).floor();
                let span = s.span_of("until").unwrap_or(here("stages"));
                if threshold < 1.0 || previous.is_some_and(|p| threshold <= p) {
                    let after = previous.map_or(seq, |p| (p + 1.0) * seq);
                    out.push(form(
                        span,
                        "stage ends too early",
                        format!(
                            "a stage ends at {} ({} sequences of {seq} tokens), not after the stage before it",
                            units::show(until, Dim::Tokens),
                            units::trim(threshold)
                        ),
                        format!(
                            "stages end in increasing order, each at least one sequence later: `until` ≥ {}",
                            units::show(after, Dim::Tokens)
                        ),
                    ));
                    return;
                }
                previous = Some(threshold);
                batches.push((batch, s.span_of("batch").unwrap_or(span), "stage batch"));
            }
        }
        (None, false) => {
            let (Some(from), Some(over)) = (ramp.num("from"), ramp.num("over")) else {
                let missing = if ramp.slot("from").is_none() {
                    "from"
                } else {
                    "over"
                };
                out.push(form(
                    here(linear_fields[0]),
                    "linear ramp",
                    format!("a linear ramp needs `{missing}`"),
                    "write `from = … tokens` (the first batch) and `over = … tokens` (the tokens the ramp lasts)".into(),
                ));
                return;
            };
            if from >= full {
                out.push(form(
                    here("from"),
                    "not below the full batch",
                    format!(
                        "the ramp starts at {}, not below its full batch of {}",
                        units::show(from, Dim::Tokens),
                        units::show(full, Dim::Tokens)
                    ),
                    "start below `to`, or write `batch = … tokens` without a ramp".into(),
                ));
                return;
            }
            let increment = ramp.num("increment").unwrap_or(from);
            let inc_span = ramp.span_of("increment").unwrap_or(here("from"));
            let steps = (full - from) / increment;
            if steps.fract() != 0.0 {
                let per_step = exp
                    .record("parallel")
                    .and_then(|p| Some(p.num("micro_batch")? * p.num("data")?));
                let fit = nearest_divisor(full - from, increment, seq, per_step.unwrap_or(1.0));
                out.push(form(
                    inc_span,
                    "increment",
                    format!(
                        "the ramp from {} to {} is not a whole number of increments of {} ({} increments)",
                        units::show(from, Dim::Tokens),
                        units::show(full, Dim::Tokens),
                        units::show(increment, Dim::Tokens),
                        units::trim(steps)
                    ),
                    match fit {
                        Some(f) => format!(
                            "the nearest increment that divides the {} between them (in whole micro_batch × data sequences) is `increment = {} tokens`",
                            units::show(full - from, Dim::Tokens),
                            units::show(f, Dim::Count)
                        ),
                        None => "choose an increment that divides `to` − `from`".into(),
                    },
                ));
                return;
            }
            if steps > MAX_RAMP_STAGES as f64 {
                out.push(form(
                    inc_span,
                    "increment",
                    format!(
                        "the ramp has {} increments, more than kiln plans ({})",
                        units::trim(steps),
                        MAX_RAMP_STAGES
                    ),
                    "use a larger increment".into(),
                ));
                return;
            }
            if over < seq {
                out.push(form(
                    here("over"),
                    "shorter than a sequence",
                    format!(
                        "the ramp lasts {}, less than one sequence of {seq} tokens",
                        units::show(over, Dim::Tokens)
                    ),
                    "`over` is the tokens the ramp lasts (GPT-3: 4–12B)".into(),
                ));
                return;
            }
            batches.push((from, here("from"), "first batch"));
            if ramp.slot("increment").is_some() {
                batches.push((increment, inc_span, "increment"));
            }
        }
    }
    split(exp, seq, &batches, out);
}

/// K-C025: each batch (or increment) a whole number of sequences and of micro_batch × data;
/// with an interleaved pipeline, at least as many micro-batches as stages.
fn split(exp: &Record, seq: f64, batches: &[(f64, Span, &str)], out: &mut Vec<Diagnostic>) {
    let Some(par) = exp.record("parallel") else {
        return;
    };
    let (Some(micro), Some(data)) = (par.num("micro_batch"), par.num("data")) else {
        return;
    };
    let quantum = micro * data * seq;
    for &(tokens, span, label) in batches {
        let sequences = tokens / seq;
        let rounded = (tokens / quantum).round().max(1.0) * quantum;
        let problem = if sequences.fract() != 0.0 {
            Some(format!(
                "the ramp's {label} of {} is {} sequences of {seq} tokens, not a whole number",
                units::show(tokens, Dim::Tokens),
                units::trim(sequences)
            ))
        } else if (sequences / (micro * data)).fract() != 0.0 {
            Some(format!(
                "the ramp's {label} of {} sequences does not split into micro_batch × data = {micro} × {data} sequences",
                units::trim(sequences)
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            out.push(
                Diagnostic::new(codes::RAMP_BATCH_SPLIT, message)
                    .at(span, label.to_string())
                    .help(format!(
                        "the nearest that splits is `{} tokens` ({} sequences)",
                        units::show(rounded, Dim::Count),
                        units::trim(rounded / seq)
                    )),
            );
            continue;
        }
        let pipeline = par.num("pipeline").unwrap_or(1.0);
        let interleaved = par.num("virtual_stages").unwrap_or(1.0) > 1.0;
        let micro_batches = sequences / (micro * data);
        if interleaved && label != "increment" && micro_batches < pipeline {
            // Megatron-LM's interleaved schedule refuses fewer micro-batches than stages
            // (megatron/core/pipeline_parallel/schedules.py,
            // forward_backward_pipelining_with_interleaving), as K-C008 says of the full batch.
            out.push(
                Diagnostic::new(
                    codes::RAMP_BATCH_SPLIT,
                    format!(
                        "the ramp's {label} runs {} micro-batches per step, fewer than the {pipeline} interleaved pipeline stages",
                        units::trim(micro_batches)
                    ),
                )
                .at(span, label.to_string())
                .help(format!(
                    "start the ramp at {} tokens or more",
                    units::show(pipeline * quantum, Dim::Count)
                )),
            );
        }
    }
}

/// The increment nearest `increment` (tokens) that divides `span` (tokens) in whole
/// sequences of `seq` tokens, each a multiple of `per_step` sequences (micro_batch × data).
fn nearest_divisor(span: f64, increment: f64, seq: f64, per_step: f64) -> Option<f64> {
    let total = span / seq;
    if total.fract() != 0.0 || !(1.0..=1e12).contains(&total) || per_step.fract() != 0.0 {
        return None;
    }
    let (total, quantum) = (total as u64, per_step.max(1.0) as u64);
    let want = (increment / seq).round().max(1.0) as u64;
    (0..=total).find_map(|d| {
        [want.checked_sub(d), want.checked_add(d)]
            .into_iter()
            .flatten()
            .find(|&k| k >= 1 && k <= total && total % k == 0 && k % quantum == 0)
            .map(|k| k as f64 * seq)
    })
}
