//! A law has the constants its form needs (K-R004 missing-field, K-R002 unknown-field).

use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::Record;
use crate::schema::LAW_FORMS;

pub fn check(law: &Record, out: &mut Vec<Diagnostic>) {
    let Some(form) = law.sym("form") else { return };
    let span = law
        .span_of("form")
        .or(law.span)
        .unwrap_or(crate::span::Span::new(0, 0, 0));
    for (name, needs) in LAW_FORMS {
        for field in *needs {
            let present = law.slot(field).is_some();
            if *name == form && !present {
                out.push(
                    Diagnostic::new(
                        codes::MISSING_FIELD,
                        format!("a `{form}` law needs `{field}`"),
                    )
                    .at(span, format!("needs `{field}`"))
                    .help(format!("a {form} law has {}", needs.join(", "))),
                );
            } else if *name != form
                && present
                && !LAW_FORMS
                    .iter()
                    .any(|(n, f)| *n == form && f.contains(field))
            {
                out.push(
                    Diagnostic::new(
                        codes::UNKNOWN_FIELD,
                        format!("`{field}` belongs to a `{name}` law, not a `{form}` law"),
                    )
                    .at(law.span_of(field).unwrap_or(span), "not used by this form")
                    .help(format!(
                        "a {form} law has {}",
                        LAW_FORMS
                            .iter()
                            .find(|(n, _)| *n == form)
                            .map(|(_, f)| f.join(", "))
                            .unwrap_or_default()
                    )),
                );
            }
        }
    }
}
