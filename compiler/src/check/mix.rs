//! K-C001 mix-unknown-source, K-C002 mix-sum, K-C013 source-unused.

use super::at;
use crate::codes;
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::ir::{Record, Value};
use crate::units;
use std::collections::HashSet;

pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let sources: Vec<&str> = exp.entries("source").map(|(n, _, _)| n.as_str()).collect();
    let mut used = HashSet::new();
    for (phase, record, _) in exp.entries("phase") {
        let Some(mix) = record.record("mix") else {
            continue;
        };
        let mut sum = 0.0;
        let mut complete = true;
        for (name, slot) in &mix.fields {
            if name == "source" {
                continue;
            }
            used.insert(name.as_str());
            let Value::Num(weight, _) = slot.value else {
                complete = false;
                continue;
            };
            sum += weight;
            if !sources.contains(&name.as_str()) {
                let span = slot
                    .span
                    .or(record.span_of("mix"))
                    .unwrap_or(at(record, "mix", exp));
                let mut d = Diagnostic::new(
                    codes::MIX_UNKNOWN_SOURCE,
                    format!("phase `{phase}` mixes `{name}`, which is not a declared source"),
                )
                .at(span, "no such source");
                d = d.help(match did_you_mean(name, sources.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if sources.is_empty() => {
                        format!("declare it: `source {name} {{ path = \"…\" }}`")
                    }
                    None => format!(
                        "declare `source {name} {{ … }}`, or use one of {}",
                        sources.join(", ")
                    ),
                });
                out.push(d);
            }
        }
        if complete && (sum - 1.0).abs() > 1e-9 {
            let preset = mix
                .preset
                .as_ref()
                .map(|p| format!(" (preset `{p}`)"))
                .unwrap_or_default();
            out.push(
                Diagnostic::new(
                    codes::MIX_SUM,
                    format!(
                        "the mix of phase `{phase}`{preset} adds up to {}%, not 100%",
                        units::trim(sum * 100.0)
                    ),
                )
                .at(
                    at(record, "mix", exp),
                    format!("sums to {}%", units::trim(sum * 100.0)),
                )
                .help(if sum < 1.0 {
                    format!("add {}% to the mix", units::trim((1.0 - sum) * 100.0))
                } else {
                    format!("remove {}% from the mix", units::trim((sum - 1.0) * 100.0))
                }),
            );
        }
    }
    // Only when every phase's mix resolved: a rejected mix says nothing about which sources it uses.
    let mixes_known = exp.entries("phase").next().is_some()
        && exp
            .entries("phase")
            .all(|(_, r, _)| r.record("mix").is_some());
    // A source that teaches a scorer or makes the KL reference is used without a mix.
    for (_, scorer, _) in exp.entries("scorer") {
        used.extend(scorer.sym("source"));
    }
    used.extend(
        exp.record("quality")
            .and_then(|q| q.record("kl"))
            .and_then(|k| k.sym("reference")),
    );
    for (name, _, span) in exp.entries("source") {
        if !used.contains(name.as_str()) && mixes_known {
            out.push(
                Diagnostic::new(
                    codes::SOURCE_UNUSED,
                    format!("source `{name}` is in no phase's mix"),
                )
                .at(span, "declared but never mixed")
                .help(format!(
                    "add `{name} = …%` to a phase's mix, name it as a scorer's or the KL \
                     rule's source, or remove the source"
                )),
            );
        }
    }
}
