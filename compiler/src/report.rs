//! `kiln check --values`: every value of a resolved declaration with where it came from.

use crate::ir::{Record, Value};
use crate::units;

/// One line per value: `path = value    (provenance)`.
pub fn values(record: &Record) -> String {
    let mut lines = Vec::new();
    walk(record, &mut Vec::new(), &mut lines);
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

fn walk(record: &Record, path: &mut Vec<String>, out: &mut Vec<(String, String)>) {
    for (name, slot) in &record.fields {
        path.push(name.clone());
        match &slot.value {
            Value::Record(r) => {
                let what = match &r.preset {
                    Some(p) => format!("{} {p}", r.kind),
                    None => r.kind.clone(),
                };
                out.push((
                    format!("{} = {what}", path.join(".")),
                    slot.provenance.to_string(),
                ));
                walk(r, path, out);
            }
            v => out.push((
                format!("{} = {}", path.join("."), show(v)),
                slot.provenance.to_string(),
            )),
        }
        path.pop();
    }
    for (kind, entries) in &record.named {
        for (name, (r, _)) in entries {
            path.push(kind.clone());
            path.push(name.clone());
            walk(r, path, out);
            path.pop();
            path.pop();
        }
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Num(x, d) => units::show(*x, *d),
        Value::Str(s) => format!("{s:?}"),
        Value::Bool(b) => b.to_string(),
        Value::Sym(s) => s.clone(),
        Value::List(items) => format!(
            "[{}]",
            items.iter().map(show).collect::<Vec<_>>().join(", ")
        ),
        Value::Record(r) => r.kind.clone(),
        Value::Pending { .. } | Value::Auto => "(not derived)".into(),
        Value::Invalid => "(invalid)".into(),
    }
}
