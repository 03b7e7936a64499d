//! K-U005 count-too-large: the counts that a plan holds as whole numbers, and that the
//! engines' launch files multiply, stay where they are exact and far beyond any real run:
//! optimizer steps, tokens, held-out tokens over the run, parameters, GPUs, pipeline
//! chunks and layers. Declared values above [`MAX_COUNT`] are K-U004 already (resolve.rs);
//! these are the counts kiln derives.

use super::at;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::Record;
use crate::resolve::MAX_COUNT;
use crate::units::{self, Dim};

/// GPUs in one run: 2^20 = 1,048,576, ten times the largest clusters built (about 100,000
/// GPUs in 2024). The plan lists every rank and its groups, about 150 bytes each, so the
/// limit also bounds a plan to about 150 MB; ranks are 32-bit numbers in the plan.
pub const MAX_WORLD: f64 = 1_048_576.0;

/// Pipeline stages × virtual stages: the analyses and the launch files list every chunk;
/// the same bound as the analyses' own ([`crate::analyse::setup::MAX_PIPELINE_STAGES`]).
pub const MAX_PIPELINE_CHUNKS: f64 = crate::analyse::setup::MAX_PIPELINE_STAGES;

/// Layers of a model: the plan's topology counts layers per stage in 32 bits (as
/// Megatron-LM's integer arguments do); the deepest published models have a few hundred.
pub const MAX_LAYERS: f64 = u32::MAX as f64;

pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let fallback = exp;
    let mut too_large = |span, label: String, message: String, help: String| {
        out.push(
            Diagnostic::new(codes::COUNT_TOO_LARGE, message)
                .at(span, label)
                .help(help),
        );
    };
    let count = |v: f64| units::show(v, Dim::Count);
    let limit = format!("{} (2^53)", count(MAX_COUNT));

    // The token budget, when kiln derived it (a declared one above the limit is K-U004).
    let tokens = exp.num("tokens");
    if let Some(tokens) = tokens.filter(|t| *t > MAX_COUNT) {
        too_large(
            at(exp, "tokens", fallback),
            "too many tokens".into(),
            format!(
                "the token budget comes to {}, more than kiln counts exactly",
                units::show(tokens, Dim::Tokens)
            ),
            format!("a budget is at most {limit} tokens; use a smaller model or write `tokens`"),
        );
        return;
    }

    // Optimizer steps: every phase trains whole steps of `batch` tokens.
    let batch = exp.num("batch");
    let phase_tokens: Option<Vec<f64>> = exp
        .entries("phase")
        .map(|(_, p, _)| p.num("tokens"))
        .collect();
    let steps = match (batch, phase_tokens) {
        (Some(batch), Some(phases)) if batch > 0.0 => {
            Some(phases.iter().map(|t| (t / batch).ceil()).sum::<f64>())
        }
        _ => None,
    };
    if let (Some(steps), Some(batch)) = (steps, batch) {
        if steps > MAX_COUNT {
            too_large(
                at(exp, "batch", fallback),
                format!("{} optimizer steps", count(steps)),
                format!(
                    "the phases come to {} optimizer steps of {}, more than kiln counts exactly",
                    count(steps),
                    units::show(batch, Dim::Tokens)
                ),
                format!("a run is at most {limit} steps: raise `batch` or lower `tokens`"),
            );
            return;
        }
    }

    // Held-out tokens over the run: each evaluation reads whole batches.
    let eval = exp.record("eval");
    if let (Some(eval), Some(steps), Some(batch)) = (eval, steps, batch) {
        if let (Some(every), Some(eval_tokens)) = (eval.num("every"), eval.num("tokens")) {
            let per_evaluation = (eval_tokens / batch).ceil().max(1.0) * batch;
            let evaluations = (steps / every).floor() + 1.0;
            let total = per_evaluation * evaluations;
            if total > MAX_COUNT {
                too_large(
                    at(eval, "every", fallback),
                    format!("{} evaluations", count(evaluations)),
                    format!(
                        "evaluating {} every {} steps reads {} held-out tokens over the run, more than kiln counts exactly",
                        units::show(per_evaluation, Dim::Tokens),
                        count(every),
                        count(total)
                    ),
                    format!("keep the held-out tokens of the run under {limit}: evaluate less often or on fewer tokens"),
                );
            }
        }
    }

    if let Some(model) = exp.record("model") {
        if let Some(params) = model.num("params").filter(|p| *p > MAX_COUNT) {
            too_large(
                at(exp, "model", fallback),
                "too many parameters".into(),
                format!(
                    "the model has {} parameters, more than kiln counts exactly",
                    count(params)
                ),
                format!("a model is at most {limit} parameters; check the shape's sizes"),
            );
        }
        if let Some(layers) = model.num("layers").filter(|l| *l > MAX_LAYERS) {
            too_large(
                at(model, "layers", fallback),
                "too many layers".into(),
                format!(
                    "the model has {} layers, more than a plan holds",
                    count(layers)
                ),
                format!("a model is at most {} layers", count(MAX_LAYERS)),
            );
        }
    }

    if let Some(world) = exp.num("world").filter(|w| *w > MAX_WORLD) {
        too_large(
            at(exp, "cluster", fallback),
            format!("{} GPUs", count(world)),
            format!(
                "the cluster has {} GPUs, more than kiln plans for one run",
                count(world)
            ),
            format!(
                "a run is at most {} GPUs (2^20); lower the cluster's `nodes`",
                count(MAX_WORLD)
            ),
        );
    }

    if let Some(par) = exp.record("parallel") {
        let (pipeline, chunks) = (
            par.num("pipeline").unwrap_or(1.0),
            par.num("virtual_stages").unwrap_or(1.0),
        );
        if pipeline * chunks > MAX_PIPELINE_CHUNKS {
            too_large(
                at(par, "pipeline", fallback),
                format!("{} chunks", count(pipeline * chunks)),
                format!(
                    "pipeline × virtual_stages = {} × {} = {} pipeline chunks, more than kiln plans",
                    count(pipeline),
                    count(chunks),
                    count(pipeline * chunks)
                ),
                format!(
                    "a pipeline is at most {} chunks; real pipelines have tens",
                    count(MAX_PIPELINE_CHUNKS)
                ),
            );
        }
    }
}
