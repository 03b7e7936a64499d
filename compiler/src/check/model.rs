//! K-R009 field-without-effect: model fields that the model's other choices make
//! meaningless (`rope_base` without rotary positions).

use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::{Provenance, Record};

pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let Some(model) = exp.record("model") else {
        return;
    };
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
