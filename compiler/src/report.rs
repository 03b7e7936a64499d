//! `kiln check --values`: every value of a resolved declaration with where it came from.

use crate::ir::{Record, Value};
use crate::units;

/// One line per value: `path = value    (provenance)`.
pub fn values(record: &Record) -> String {
    let mut lines = Vec::new();
    record.walk(&mut |path, slot| {
        let value = match &slot.value {
            Value::Record(r) => match &r.preset {
                Some(p) => format!("{} {p}", r.kind),
                None => r.kind.clone(),
            },
            v => show(v),
        };
        lines.push((format!("{path} = {value}"), slot.provenance.to_string()));
    });
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    lines
        .into_iter()
        .map(|(l, p)| format!("{l:<width$}  ({p})\n"))
        .collect()
}

/// One value as `--values` prints it: `16M tokens`, `"data/web.jsonl"`, `[a, b]`.
pub fn show(v: &Value) -> String {
    match v {
        Value::Num(x, d) => units::show(*x, *d),
        Value::Str(s) => format!("{s:?}"),
        Value::Bool(b) => b.to_string(),
        Value::Sym(s) => s.clone(),
        Value::List(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|item| match item {
                    // A block in a list (a ramp's stages) has no path of its own: its fields.
                    Value::Record(r) if r.preset.is_none() => format!(
                        "{{ {} }}",
                        r.fields
                            .iter()
                            .map(|(k, s)| format!("{k} = {}", show(&s.value)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    v => show(v),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Record(r) => r.kind.clone(),
        Value::Pending { .. } | Value::Auto => "(not derived)".into(),
        Value::Invalid => "(invalid)".into(),
    }
}
