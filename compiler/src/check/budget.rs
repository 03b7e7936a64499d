//! K-C019 compute-budget: a declared `compute` is what 6·N·D spends (under `chinchilla` and
//! `fixed`; under `inference_aware` it names the quality target, and training spends more).

use crate::analyse::scaling::compute_flops;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::Record;
use crate::units::{self, Dim};

/// The relative difference beyond which 6·N·D and `compute` disagree (rounding tokens to a
/// whole number moves 6·N·D by far less).
const TOLERANCE: f64 = 0.01;

pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let (Some(compute), Some(tokens)) = (exp.num("compute"), exp.num("tokens")) else {
        return;
    };
    let Some(params) = exp.record("model").and_then(|m| m.num("params")) else {
        return;
    };
    if exp.record("objective").map(|o| o.kind.as_str()) == Some("inference_aware") {
        return;
    }
    let spent = compute_flops(params, tokens);
    if (spent / compute - 1.0).abs() <= TOLERANCE {
        return;
    }
    let at = super::at(exp, "compute", exp);
    out.push(
        Diagnostic::new(
            codes::COMPUTE_BUDGET,
            format!(
                "the budget is {} but 6 × {} parameters × {} tokens = {}",
                units::show(compute, Dim::Flops),
                units::show(params, Dim::Count),
                units::show(tokens, Dim::Count),
                units::show(spent, Dim::Flops)
            ),
        )
        .at(at, "the budget")
        .help(format!(
            "write `tokens = auto` to spend the budget ({} tokens for this model), or correct `compute`",
            units::show((compute / (6.0 * params)).round(), Dim::Count)
        )),
    );
}
