//! K-C003 phase-tokens-sum, K-C012 anneal-not-zero, K-C014 no-phase.

use super::at;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::Record;
use crate::units::{self, Dim};

pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let phases: Vec<_> = exp.entries("phase").collect();
    if phases.is_empty() {
        out.push(
            Diagnostic::new(codes::NO_PHASE, "the experiment has no phase")
                .at(
                    exp.span.unwrap_or(crate::span::Span::new(0, 0, 0)),
                    "no `phase` here",
                )
                .help("add `phase main { mix { SOURCE = 100% }, lr = cosine { peak = 3e-4 } }`"),
        );
        return;
    }
    if let Some(budget) = exp.num("tokens") {
        let tokens: Option<Vec<f64>> = phases.iter().map(|(_, r, _)| r.num("tokens")).collect();
        if let Some(tokens) = tokens {
            let sum: f64 = tokens.iter().sum();
            if (sum - budget).abs() > 1e-9 * budget {
                let parts: Vec<String> = phases
                    .iter()
                    .zip(&tokens)
                    .map(|((n, _, _), t)| format!("{n} {}", units::show(*t, Dim::Count)))
                    .collect();
                let last = phases.last().unwrap();
                out.push(
                    Diagnostic::new(
                        codes::PHASE_TOKENS_SUM,
                        format!("the phases add up to {}, but the experiment's budget is {}", units::show(sum, Dim::Tokens), units::show(budget, Dim::Tokens)),
                    )
                    .at(at(exp, "tokens", exp), format!("budget {}", units::show(budget, Dim::Tokens)))
                    .label(last.2, format!("phases: {}", parts.join(" + ")))
                    .help(format!(
                        "make them agree: set `tokens = {}`, or leave one phase's tokens out so kiln gives it the rest",
                        units::show(sum, Dim::Count)
                    )),
                );
            }
        }
    }
    for (name, record, span) in &phases {
        if record.bool("anneal") != Some(true) {
            continue;
        }
        let Some(lr) = record.record("lr") else {
            continue;
        };
        let end = match lr.kind.as_str() {
            "linear" => lr.num("to"),
            "cosine" => lr.num("final"),
            "constant" => lr.num("value"),
            _ => Some(0.0),
        };
        if let Some(end) = end.filter(|e| *e != 0.0) {
            out.push(
                Diagnostic::new(
                    codes::ANNEAL_NOT_ZERO,
                    format!("anneal phase `{name}` ends at learning rate {end:e}, not 0"),
                )
                .at(
                    record.span_of("lr").unwrap_or(*span),
                    format!("ends at {end:e}"),
                )
                .help("anneal to zero: `lr = linear { to = 0 }`"),
            );
        }
    }
}
