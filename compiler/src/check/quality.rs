//! K-C022 unknown-entry and K-C023 quality-model: the model-based quality filter's chain
//! (scorer → sample → score → classifier → filter) and the KL rule name what exists and
//! give every step what it needs.

use super::at;
use crate::codes;
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::ir::Record;

pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let sources: Vec<&str> = exp.entries("source").map(|(n, _, _)| n.as_str()).collect();
    let scorers: Vec<&str> = exp.entries("scorer").map(|(n, _, _)| n.as_str()).collect();
    for (name, sc, span) in exp.entries("scorer") {
        scorer(exp, name, sc, span, &sources, out);
    }
    let Some(quality) = exp.record("quality") else {
        return;
    };
    if let Some(c) = quality.record("classifier") {
        match c.sym("scorer") {
            None => out.push(
                Diagnostic::new(
                    codes::QUALITY_MODEL,
                    "the classifier has no scorer to learn from",
                )
                .at(at(c, "keep", c), "a classifier without `scorer`")
                .help(
                    "declare `scorer NAME { model = …, source = …, tokens = …, lr = … }` (or \
                     `{ hf = \"DIR\" }`) and write `scorer = NAME` in the classifier",
                ),
            ),
            Some(s) => known(c, "scorer", s, "scorer", &scorers, out),
        }
        match (c.num("keep").is_some(), c.num("threshold").is_some()) {
            (true, true) => out.push(
                Diagnostic::new(
                    codes::QUALITY_MODEL,
                    "the classifier has both `keep` and `threshold`",
                )
                .at(at(c, "threshold", c), "second rule")
                .help("keep a fraction (`keep = 70%`) or a score (`threshold = 0.5`), not both"),
            ),
            (false, false) => out.push(
                Diagnostic::new(
                    codes::QUALITY_MODEL,
                    "the classifier does not say which documents it keeps",
                )
                .at(c.span.unwrap_or(at(quality, "classifier", exp)), "no rule")
                .help("add `keep = 70%` (a fraction of documents) or `threshold = 0.5`"),
            ),
            _ => {}
        }
        if let Some(method) = c.record("method") {
            if let Some(general) = method.sym("general") {
                known(method, "general", general, "scorer", &scorers, out);
                if Some(general) == c.sym("scorer") {
                    out.push(
                        Diagnostic::new(
                            codes::QUALITY_MODEL,
                            "a likelihood ratio of a scorer against itself is 0 for every document",
                        )
                        .at(at(method, "general", c), "the same scorer")
                        .help("name a general-domain scorer as `general`"),
                    );
                }
            }
        }
    }
    if let Some(k) = quality.record("kl") {
        if let Some(r) = k.sym("reference") {
            known(k, "reference", r, "source", &sources, out);
        }
        if k.sym("max").is_some() && k.num("max_nats").is_some() {
            out.push(
                Diagnostic::new(codes::QUALITY_MODEL, "the KL rule has two thresholds")
                    .at(at(k, "max_nats", k), "second threshold")
                    .help(
                        "give a quantile of the reference (`max = p99`) or nats (`max_nats = 3.5`)",
                    ),
            );
        }
    }
}

fn scorer(
    exp: &Record,
    name: &str,
    sc: &Record,
    span: crate::span::Span,
    sources: &[&str],
    out: &mut Vec<Diagnostic>,
) {
    let given: Vec<&str> = ["model", "hf", "checkpoint"]
        .into_iter()
        .filter(|f| sc.slot(f).is_some())
        .collect();
    if given.len() != 1 {
        out.push(
            Diagnostic::new(
                codes::QUALITY_MODEL,
                format!(
                    "scorer `{name}` needs exactly one of `model`, `hf` and `checkpoint`{}",
                    if given.is_empty() {
                        String::new()
                    } else {
                        format!(" (has {})", given.join(", "))
                    }
                ),
            )
            .at(span, "declared here")
            .help(
                "`model = tiny, source = …, tokens = …, lr = …` trains it in the plan; `hf = \
                 \"DIR\"` loads a Hugging Face Llama directory; `checkpoint = \"DIR\"` a kiln \
                 training output",
            ),
        );
        return;
    }
    if let Some(s) = sc.sym("source") {
        known(sc, "source", s, "source", sources, out);
    }
    if given[0] != "model" {
        return;
    }
    let missing: Vec<&str> = ["source", "tokens", "lr"]
        .into_iter()
        .filter(|f| sc.slot(f).is_none())
        .collect();
    if !missing.is_empty() {
        out.push(
            Diagnostic::new(
                codes::QUALITY_MODEL,
                format!(
                    "scorer `{name}` is trained by the plan but has no {}",
                    missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )
            .at(span, "declared here")
            .help("a trained scorer needs the source it learns (`source = NAME`), its `tokens` and its `lr`"),
        );
    }
    if let Some(lr) = sc.record("lr") {
        if lr.kind == "linear" && lr.num("from").is_none() {
            out.push(
                Diagnostic::new(
                    codes::QUALITY_MODEL,
                    format!("scorer `{name}`'s `linear` learning rate has no `from`"),
                )
                .at(at(sc, "lr", sc), "no phase before it to start from")
                .help("write `linear { from = 1e-3, to = 0 }`, or use `cosine { … }`"),
            );
        }
    }
    let seq_len = sc.record("model").and_then(|m| m.num("seq_len"));
    let batch = exp.num("batch");
    if let (Some(seq_len), Some(batch)) = (seq_len, batch) {
        if seq_len > 0.0 && (batch / seq_len).fract() != 0.0 {
            out.push(
                Diagnostic::new(
                    codes::QUALITY_MODEL,
                    format!(
                        "scorer `{name}`'s sequences of {seq_len} tokens do not divide the batch of {batch} tokens"
                    ),
                )
                .at(at(sc, "model", sc), "its model's seq_len")
                .help("the scorer trains on the experiment's batch: pick a model whose seq_len divides it"),
            );
        }
    }
}

/// K-C022 when `value` is not one of `declared` (entries of `kind`).
fn known(
    record: &Record,
    field: &str,
    value: &str,
    kind: &str,
    declared: &[&str],
    out: &mut Vec<Diagnostic>,
) {
    if declared.contains(&value) {
        return;
    }
    let help = match did_you_mean(value, declared.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if declared.is_empty() => {
            format!("declare `{kind} {value} {{ … }}` in the experiment")
        }
        None => format!("the declared {kind}s are {}", declared.join(", ")),
    };
    out.push(
        Diagnostic::new(
            codes::UNKNOWN_ENTRY,
            format!("no {kind} `{value}` is declared"),
        )
        .at(at(record, field, record), format!("not a declared {kind}"))
        .help(help),
    );
}
