//! K-R009 field-without-effect: model fields that the model's other choices make
//! meaningless (`rope_base`, `rotary_fraction` without rotary positions); K-R010
//! published-params: a model's stated parameter count against the count of its shape;
//! K-R011 rotary-dims: a `rotary_fraction` that does not rotate whole pairs.

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
    if position == "rope" {
        rotary_dims(exp, model, out);
        return;
    }
    for field in ["rope_base", "rotary_fraction"] {
        let Some(slot) = model.slot(field) else {
            continue;
        };
        if !matches!(slot.provenance, Provenance::Declared) {
            continue;
        }
        let mut d = Diagnostic::new(
            codes::FIELD_WITHOUT_EFFECT,
            format!("`{field}` has no effect with `position = {position}`"),
        )
        .help(format!("remove `{field}`, or use `position = rope`"));
        if let Some(span) = model.span_of(field).or(exp.span) {
            d = d.at(span, "declared here");
        }
        out.push(d);
    }
}

/// K-R011: rotary embeddings rotate pairs of dimensions, so `rotary_fraction × head_dim` must
/// be a whole, even number of at least 2 (Su et al. 2021, Eq. 34 rotates (x_2i, x_2i+1);
/// Megatron-LM's `RotaryEmbedding` takes `int(kv_channels × rotary_percent)` and Hugging
/// Face's GPT-NeoX `int(head_size × rotary_pct)`, which would silently truncate).
fn rotary_dims(exp: &Record, model: &Record, out: &mut Vec<Diagnostic>) {
    let (Some(fraction), Some(head_dim)) = (model.num("rotary_fraction"), model.num("head_dim"))
    else {
        return;
    };
    // A whole head (the default) is the model's own head_dim: the runtime's and the engines'
    // checks of RoPE on an odd head_dim stand as before.
    if fraction >= 1.0 {
        return;
    }
    let dims = fraction * head_dim;
    let whole = (dims - dims.round()).abs() < 1e-9;
    if whole && dims.round() >= 2.0 && dims.round() % 2.0 == 0.0 {
        return;
    }
    // The nearest fraction that rotates a whole even number of dimensions (at least 2).
    let even = ((dims / 2.0).round() * 2.0)
        .min((head_dim / 2.0).floor() * 2.0)
        .max(2.0);
    let mut d = Diagnostic::new(
        codes::ROTARY_DIMS,
        format!(
            "`rotary_fraction = {fraction}` rotates {} of the {head_dim} dimensions of each \
             head, which is not a whole even number",
            units::show(dims, Dim::Count)
        ),
    )
    .help(format!(
        "rotary embeddings rotate pairs of dimensions: use `rotary_fraction = {}%` ({even} \
         dimensions)",
        100.0 * even / head_dim
    ));
    if let Some(span) = model.span_of("rotary_fraction").or(exp.span) {
        d = d.at(span, "declared here");
    }
    out.push(d);
}
