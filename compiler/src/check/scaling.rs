//! K-S001 under-trained: tokens per parameter against Chinchilla's ~20.

use super::at;
use crate::codes;
use crate::derive::CHINCHILLA_TOKENS_PER_PARAM;
use crate::diagnostic::Diagnostic;
use crate::ir::Record;
use crate::units::{self, Dim};

/// Warn only below half the ratio: the loss is flat near the optimum (Hoffmann et al. 2022,
/// Fig. 3 IsoFLOP curves), so a run within a factor of two of 20:1 is not worth a warning.
pub const UNDER_TRAINED_FACTOR: f64 = 2.0;

pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let (Some(tokens), Some(params)) = (
        exp.num("tokens"),
        exp.record("model").and_then(|m| m.num("params")),
    ) else {
        return;
    };
    let ratio = tokens / params;
    if ratio * UNDER_TRAINED_FACTOR >= CHINCHILLA_TOKENS_PER_PARAM {
        return;
    }
    // Training compute C ≈ 6·N·D (Kaplan et al. 2020, Sec. 2.1; Hoffmann et al. 2022, Sec. 3.3).
    // At D = 20·N the same C gives N = sqrt(C / (6 · 20)).
    let compute = 6.0 * params * tokens;
    let n_opt = (compute / (6.0 * CHINCHILLA_TOKENS_PER_PARAM)).sqrt();
    let d_opt = CHINCHILLA_TOKENS_PER_PARAM * n_opt;
    out.push(
        Diagnostic::new(
            codes::UNDER_TRAINED,
            format!(
                "{} tokens for {} parameters is {} tokens per parameter; Chinchilla's compute-optimal ratio is about {}",
                units::show(tokens, Dim::Count),
                units::show(params, Dim::Count),
                units::trim(ratio),
                CHINCHILLA_TOKENS_PER_PARAM
            ),
        )
        .at(at(exp, "tokens", exp), format!("{} tokens per parameter", units::trim(ratio)))
        .help(format!(
            "for the same compute ({:.2e} FLOPs = 6·N·D), about {} parameters on {} tokens; or train these parameters on {} tokens",
            compute,
            units::show(n_opt, Dim::Count),
            units::show(d_opt, Dim::Count),
            units::show(CHINCHILLA_TOKENS_PER_PARAM * params, Dim::Count)
        )),
    );
}
