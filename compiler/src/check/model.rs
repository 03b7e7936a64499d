//! K-R009 field-without-effect: model fields that the model's other choices make
//! meaningless (`rope_base` without rotary positions); K-R010 published-params: a model's
//! stated parameter count against the count of its shape.

use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::{Provenance, Record, Value};
use crate::units::{self, Dim};

/// The largest relative difference between `published_params` and kiln's count that is
/// rounding (assumption: papers state counts to two or three significant figures).
pub const PUBLISHED_PARAMS_TOLERANCE: f64 = 0.01;

/// K-R010 on a model declaration, or on an experiment's model where its `published_params`
/// is written there (a preset's count stays the preset's, checked where it is declared, and
/// an override of the shape makes it another model).
pub fn published_params(model: &Record, out: &mut Vec<Diagnostic>) {
    let Some(slot) = model.slot("published_params") else {
        return;
    };
    let (Value::Num(published, _), Some(shape)) =
        (&slot.value, crate::model::ModelShape::from_record(model))
    else {
        return;
    };
    let counted = shape.params().total;
    let diff = counted / published - 1.0;
    if diff.abs() <= PUBLISHED_PARAMS_TOLERANCE {
        return;
    }
    let mut d = Diagnostic::new(
        codes::PUBLISHED_PARAMS,
        format!(
            "the shape counts {} parameters, {:+.1} % from `published_params = {}`",
            units::show(counted, Dim::Count),
            100.0 * diff,
            units::show(*published, Dim::Count)
        ),
    )
    .help(
        "check the shape (vocab, ffn_hidden, kv_heads, tied_embeddings, bias) against the \
         paper; if the count is the paper's rounding or another model's, correct or remove it",
    );
    if let Some(span) = slot.span.or(model.span) {
        d = d.at(span, "the published count");
    }
    out.push(d);
}

pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let Some(model) = exp.record("model") else {
        return;
    };
    if model
        .slot("published_params")
        .is_some_and(|s| matches!(s.provenance, Provenance::Declared))
    {
        published_params(model, out);
    }
    let Some(position) = model.sym("position") else {
        return;
    };
    let Some(slot) = model.slot("rope_base") else {
        return;
    };
    if position == "rope" || !matches!(slot.provenance, Provenance::Declared) {
        return;
    }
    let mut d = Diagnostic::new(
        codes::FIELD_WITHOUT_EFFECT,
        format!("`rope_base` has no effect with `position = {position}`"),
    )
    .help("remove `rope_base`, or use `position = rope`");
    if let Some(span) = model.span_of("rope_base").or(exp.span) {
        d = d.at(span, "declared here");
    }
    out.push(d);
}
