//! `kiln compare A B`: two experiments' analyses side by side with B − A and B/A, and every
//! resolved input whose value differs.

use std::io::IsTerminal;
use std::path::Path;

use kiln::analyse::setup::{Recompute, Setup};
use kiln::analyse::Analysis;
use kiln::ir::{Record, Value};
use kiln::load::FsLoader;
use kiln::units::{self, Dim};
use serde_json::{json, Map, Value as Json};

use crate::error::{Failure, Outcome};

/// One experiment of a comparison: where it came from, its record and its analysis.
pub struct Side<'a> {
    pub file: String,
    pub name: String,
    pub record: &'a Record,
    pub setup: Setup,
    pub analysis: Analysis,
}

/// How a number reads in the text output; its B − A reads the same way, signed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Parameters, tokens, GPUs: `8.03B`.
    Count,
    /// A layout size or stage: exact.
    Whole,
    /// Tokens per parameter: three decimals.
    Ratio,
    /// `3.2e23 FLOPs`.
    Flops,
    /// Nats per token, four decimals.
    Loss,
    Bytes,
    Seconds,
    /// MFU: a share shown in percent; its difference in percentage points.
    Share,
    Usd,
}

/// One quantity of both analyses.
#[derive(Clone, Debug, PartialEq)]
enum Row {
    /// A number on each side (`None` where that side has none: no price, no throughput).
    Num {
        kind: Kind,
        a: Option<f64>,
        b: Option<f64>,
    },
    /// A word on each side (the recompute mode, the GPU).
    Text { a: String, b: String },
}

/// A quantity with its stable key (the JSON's) and its label (the text's).
#[derive(Clone, Debug, PartialEq)]
struct Metric {
    key: &'static str,
    label: &'static str,
    row: Row,
}

/// A group of metrics under a title.
struct Section {
    title: &'static str,
    metrics: Vec<Metric>,
}

/// One resolved input field whose value differs (or that only one side has).
#[derive(Clone, Debug, PartialEq)]
pub struct InputDiff {
    pub path: String,
    pub a: Option<Shown>,
    pub b: Option<Shown>,
}

/// A resolved value as JSON (numbers in kiln's base units) and as `kiln check --values`
/// prints it.
#[derive(Clone, Debug, PartialEq)]
pub struct Shown {
    pub json: Json,
    pub text: String,
    /// The dimension of a number.
    pub dim: Option<Dim>,
}

/// The comparison of two analysed experiments.
pub struct Comparison {
    a: (String, String),
    b: (String, String),
    sections: Vec<Section>,
    pub inputs: Vec<InputDiff>,
}

/// Compares two analysed experiments: every metric of both, and the inputs that differ.
pub fn compare(a: &Side, b: &Side) -> Comparison {
    Comparison {
        a: (a.file.clone(), a.name.clone()),
        b: (b.file.clone(), b.name.clone()),
        sections: sections(a, b),
        inputs: input_diffs(a.record, b.record),
    }
}

fn num(
    key: &'static str,
    label: &'static str,
    kind: Kind,
    f: impl Fn(&Side) -> Option<f64>,
    a: &Side,
    b: &Side,
) -> Metric {
    Metric {
        key,
        label,
        row: Row::Num {
            kind,
            a: f(a),
            b: f(b),
        },
    }
}

fn text(
    key: &'static str,
    label: &'static str,
    f: impl Fn(&Side) -> String,
    a: &Side,
    b: &Side,
) -> Metric {
    Metric {
        key,
        label,
        row: Row::Text { a: f(a), b: f(b) },
    }
}

/// The recompute mode as the language writes it.
fn recompute(s: &Side) -> String {
    match s.record.record("parallel").and_then(|p| p.sym("recompute")) {
        Some(name) => name.to_string(),
        None => match s.setup.parallel.recompute {
            Recompute::None => "none",
            Recompute::Selective => "selective",
            Recompute::SelectiveOp => "selective_op",
            Recompute::Full => "full",
        }
        .to_string(),
    }
}

fn sections(a: &Side, b: &Side) -> Vec<Section> {
    use Kind::*;
    vec![
        Section {
            title: "Model and data",
            metrics: vec![
                num(
                    "model.params",
                    "parameters",
                    Count,
                    |s| Some(s.analysis.model.params),
                    a,
                    b,
                ),
                num(
                    "scaling.tokens",
                    "tokens",
                    Count,
                    |s| Some(s.analysis.scaling.tokens),
                    a,
                    b,
                ),
                num(
                    "scaling.tokens_per_param",
                    "tokens per parameter",
                    Ratio,
                    |s| Some(s.analysis.scaling.tokens_per_param),
                    a,
                    b,
                ),
                num(
                    "scaling.compute_flops",
                    "compute, 6·N·D",
                    Flops,
                    |s| Some(s.analysis.scaling.compute_flops),
                    a,
                    b,
                ),
                num(
                    "scaling.predicted_loss",
                    "predicted loss",
                    Loss,
                    |s| Some(s.analysis.scaling.predicted_loss),
                    a,
                    b,
                ),
            ],
        },
        Section {
            title: "Layout",
            metrics: vec![
                text(
                    "hardware.gpu",
                    "GPU",
                    |s| s.setup.hardware.gpu.clone(),
                    a,
                    b,
                ),
                num(
                    "hardware.gpus",
                    "GPUs",
                    Whole,
                    |s| Some(s.setup.world()),
                    a,
                    b,
                ),
                text(
                    "engine",
                    "engine",
                    |s| s.setup.engine.name().to_string(),
                    a,
                    b,
                ),
                num(
                    "parallel.tensor",
                    "tensor",
                    Whole,
                    |s| Some(s.setup.parallel.tensor),
                    a,
                    b,
                ),
                num(
                    "parallel.pipeline",
                    "pipeline",
                    Whole,
                    |s| Some(s.setup.parallel.pipeline),
                    a,
                    b,
                ),
                num(
                    "parallel.context",
                    "context",
                    Whole,
                    |s| Some(s.setup.parallel.context),
                    a,
                    b,
                ),
                num(
                    "parallel.data",
                    "data",
                    Whole,
                    |s| Some(s.setup.parallel.data),
                    a,
                    b,
                ),
                num(
                    "parallel.micro_batch",
                    "micro-batch",
                    Whole,
                    |s| Some(s.setup.parallel.micro_batch),
                    a,
                    b,
                ),
                num(
                    "parallel.accumulation",
                    "accumulation",
                    Whole,
                    |s| Some(s.setup.parallel.accumulation),
                    a,
                    b,
                ),
                num(
                    "parallel.zero",
                    "ZeRO stage",
                    Whole,
                    |s| Some(f64::from(s.setup.parallel.zero)),
                    a,
                    b,
                ),
                text("parallel.recompute", "recompute", recompute, a, b),
            ],
        },
        Section {
            title: "Memory per GPU (the most loaded stage)",
            metrics: vec![
                num(
                    "memory.per_gpu.total",
                    "total",
                    Bytes,
                    |s| Some(s.analysis.memory.per_gpu.total),
                    a,
                    b,
                ),
                num(
                    "memory.capacity_bytes",
                    "capacity",
                    Bytes,
                    |s| Some(s.analysis.memory.capacity_bytes),
                    a,
                    b,
                ),
                num(
                    "memory.headroom_bytes",
                    "headroom",
                    Bytes,
                    |s| Some(s.analysis.memory.capacity_bytes - s.analysis.memory.per_gpu.total),
                    a,
                    b,
                ),
                text(
                    "memory.fits",
                    "fits",
                    |s| if s.analysis.memory.fits { "yes" } else { "no" }.to_string(),
                    a,
                    b,
                ),
            ],
        },
        Section {
            title: "Time and cost",
            metrics: vec![
                num(
                    "throughput.step_time_s",
                    "step time",
                    Seconds,
                    |s| s.analysis.throughput.as_ref().map(|t| t.step_time_s),
                    a,
                    b,
                ),
                num(
                    "throughput.mfu",
                    "MFU",
                    Share,
                    |s| s.analysis.throughput.as_ref().map(|t| t.mfu),
                    a,
                    b,
                ),
                num(
                    "throughput.tokens_per_s",
                    "tokens per second",
                    Count,
                    |s| s.analysis.throughput.as_ref().map(|t| t.tokens_per_s),
                    a,
                    b,
                ),
                num(
                    "cost.steps",
                    "optimizer steps",
                    Count,
                    |s| s.analysis.cost.as_ref().map(|c| c.steps),
                    a,
                    b,
                ),
                num(
                    "cost.wall_clock_s",
                    "training time",
                    Seconds,
                    |s| s.analysis.cost.as_ref().map(|c| c.wall_clock_s),
                    a,
                    b,
                ),
                num(
                    "cost.gpu_hours",
                    "GPU-hours",
                    Count,
                    |s| s.analysis.cost.as_ref().map(|c| c.gpu_hours),
                    a,
                    b,
                ),
                num(
                    "cost.usd",
                    "cost",
                    Usd,
                    |s| s.analysis.cost.as_ref().and_then(|c| c.usd),
                    a,
                    b,
                ),
            ],
        },
    ]
}

/// B − A and B/A of two numbers, where both exist (B/A where A is not 0).
fn differences(a: Option<f64>, b: Option<f64>) -> (Option<f64>, Option<f64>) {
    match (a, b) {
        (Some(a), Some(b)) => (Some(b - a), (a != 0.0).then(|| b / a)),
        _ => (None, None),
    }
}

/// Every field of a record by path, as `kiln check --values` walks it.
fn fields(record: &Record) -> Vec<(String, Shown)> {
    let mut out = Vec::new();
    record.walk(&mut |path, slot| out.push((path.to_string(), shown(&slot.value))));
    out
}

fn shown(v: &Value) -> Shown {
    let (json, dim) = match v {
        Value::Num(x, d) => (json!(x), Some(*d)),
        Value::Str(s) | Value::Sym(s) => (json!(s), None),
        Value::Bool(b) => (json!(b), None),
        Value::List(items) => (
            Json::Array(items.iter().map(|i| shown(i).json).collect()),
            None,
        ),
        Value::Record(r) => (
            json!(r.preset.clone().unwrap_or_else(|| r.kind.clone())),
            None,
        ),
        // Only in a record with errors, which is never compared.
        Value::Pending { .. } | Value::Auto | Value::Invalid => (Json::Null, None),
    };
    let text = match v {
        Value::Record(r) => match &r.preset {
            Some(p) => format!("{} {p}", r.kind),
            None => r.kind.clone(),
        },
        v => kiln::report::show(v),
    };
    Shown { json, text, dim }
}

/// The resolved input fields whose values differ: A's fields in A's order, then those only B
/// has. Numbers are compared exactly, with their dimension.
fn input_diffs(a: &Record, b: &Record) -> Vec<InputDiff> {
    let fa = fields(a);
    let fb = fields(b);
    let mut out = Vec::new();
    for (path, va) in &fa {
        let vb = fb.iter().find(|(p, _)| p == path).map(|(_, v)| v);
        if vb != Some(va) {
            out.push(InputDiff {
                path: path.clone(),
                a: Some(va.clone()),
                b: vb.cloned(),
            });
        }
    }
    for (path, vb) in &fb {
        if !fa.iter().any(|(p, _)| p == path) {
            out.push(InputDiff {
                path: path.clone(),
                a: None,
                b: Some(vb.clone()),
            });
        }
    }
    out
}

/// A value of a kind, for the text.
fn show(kind: Kind, v: f64) -> String {
    match kind {
        Kind::Count => units::show(v, Dim::Count),
        Kind::Whole | Kind::Ratio => units::trim(v),
        Kind::Flops => format!("{v:.3e}"),
        Kind::Loss => format!("{v:.4}"),
        Kind::Bytes => {
            if v.abs() >= 1e9 || v == 0.0 {
                format!("{} GB", units::trim(v / 1e9))
            } else {
                format!("{} MB", units::trim(v / 1e6))
            }
        }
        Kind::Seconds => match v.abs() {
            a if a >= 2.0 * 86400.0 => format!("{} days", units::trim(v / 86400.0)),
            a if a >= 2.0 * 3600.0 => format!("{} h", units::trim(v / 3600.0)),
            a if a >= 1.0 => format!("{} s", units::trim(v)),
            _ => format!("{} ms", units::trim(v * 1e3)),
        },
        Kind::Share => format!("{}%", units::trim(v * 100.0)),
        Kind::Usd => format!("{} USD", units::show(v, Dim::Count)),
    }
}

/// B − A for the text: signed, 0 unsigned; a share's difference in percentage points.
fn show_delta(kind: Kind, d: f64) -> String {
    if d == 0.0 {
        return "0".into();
    }
    let magnitude = match kind {
        Kind::Share => format!("{} pp", units::trim(d.abs() * 100.0)),
        Kind::Flops => format!("{:.3e}", d.abs()),
        _ => show(kind, d.abs()),
    };
    format!("{}{magnitude}", if d > 0.0 { "+" } else { "−" })
}

fn show_ratio(r: f64) -> String {
    format!("×{}", units::trim(r))
}

/// The comparison as text: a table of both analyses, then the inputs that differ.
pub fn render_text(c: &Comparison) -> String {
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut titles: Vec<(usize, &str)> = Vec::new();
    for section in &c.sections {
        titles.push((rows.len(), section.title));
        for m in &section.metrics {
            rows.push(match &m.row {
                Row::Num { kind, a, b } => {
                    // Equal values leave the difference columns empty, so changes stand out.
                    let (d, r) = match differences(*a, *b) {
                        (Some(0.0), _) => (None, None),
                        dr => dr,
                    };
                    let side = |v: &Option<f64>| v.map_or("—".to_string(), |v| show(*kind, v));
                    [
                        m.label.to_string(),
                        side(a),
                        side(b),
                        d.map_or(String::new(), |d| show_delta(*kind, d)),
                        r.map_or(String::new(), show_ratio),
                    ]
                }
                Row::Text { a, b } => [
                    m.label.to_string(),
                    a.clone(),
                    b.clone(),
                    if a == b {
                        String::new()
                    } else {
                        "changed".into()
                    },
                    String::new(),
                ],
            });
        }
    }
    let header = [
        String::new(),
        "A".to_string(),
        "B".to_string(),
        "B − A".to_string(),
        "B/A".to_string(),
    ];
    let width = |i: usize| {
        rows.iter()
            .chain(std::iter::once(&header))
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..5).map(width).collect();
    let line = |r: &[String; 5]| {
        let mut s = format!("  {:<w$}", r[0], w = widths[0]);
        for (i, cell) in r.iter().enumerate().skip(1) {
            s += &format!("  {:<w$}", cell, w = widths[i]);
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = format!(
        "kiln compare\n  A  experiment {} ({})\n  B  experiment {} ({})\n\n",
        c.a.1, c.a.0, c.b.1, c.b.0
    );
    out += &line(&header);
    let mut next = titles.iter().peekable();
    for (i, r) in rows.iter().enumerate() {
        if let Some((_, title)) = next.next_if(|(at, _)| *at == i) {
            out += &format!("{title}\n");
        }
        out += &line(r);
    }
    out += "\nInputs that differ (A → B)\n";
    if c.inputs.is_empty() {
        out += "  none: every resolved value is the same\n";
    }
    let path_width = c
        .inputs
        .iter()
        .map(|d| d.path.chars().count())
        .max()
        .unwrap_or(0);
    for d in &c.inputs {
        let side = |s: &Option<Shown>| {
            s.as_ref()
                .map_or("(absent)".to_string(), |s| s.text.clone())
        };
        out += &format!(
            "  {:<path_width$}  {} → {}\n",
            d.path,
            side(&d.a),
            side(&d.b)
        );
    }
    out
}

/// The comparison as JSON with stable keys: `a` and `b` (file, experiment); `metrics`, an
/// object by key (`throughput.step_time_s`) of `{a, b, delta, ratio}` (numbers in kiln's base
/// units: bytes, seconds, FLOPs, USD; null where a side has none) or `{a, b, changed}` for
/// words; `inputs`, a list of `{path, a, b, a_shown, b_shown, unit}` for every resolved field
/// whose value differs (null where a side lacks the field).
pub fn render_json(c: &Comparison) -> Json {
    let mut metrics = Map::new();
    for m in c.sections.iter().flat_map(|s| &s.metrics) {
        let value = match &m.row {
            Row::Num { a, b, .. } => {
                let (d, r) = differences(*a, *b);
                json!({ "a": a, "b": b, "delta": d, "ratio": r })
            }
            Row::Text { a, b } => json!({ "a": a, "b": b, "changed": a != b }),
        };
        metrics.insert(m.key.to_string(), value);
    }
    let inputs: Vec<Json> = c
        .inputs
        .iter()
        .map(|d| {
            let unit =
                d.a.as_ref()
                    .or(d.b.as_ref())
                    .and_then(|s| s.dim)
                    .filter(|&d| d != Dim::Count);
            json!({
                "path": d.path,
                "a": d.a.as_ref().map_or(Json::Null, |s| s.json.clone()),
                "b": d.b.as_ref().map_or(Json::Null, |s| s.json.clone()),
                "a_shown": d.a.as_ref().map(|s| s.text.clone()),
                "b_shown": d.b.as_ref().map(|s| s.text.clone()),
                "unit": unit,
            })
        })
        .collect();
    json!({
        "a": { "file": c.a.0, "experiment": c.a.1 },
        "b": { "file": c.b.0, "experiment": c.b.1 },
        "metrics": metrics,
        "inputs": inputs,
    })
}

/// The output formats of `kiln compare`.
#[derive(Clone, Copy)]
pub enum Format {
    Text,
    Json,
}

/// Checks one file and prints its diagnostics; `Err` when it cannot be read, has errors or
/// declares no experiment.
fn checked(file: &Path, allow: &[String]) -> Result<kiln::Checked, Failure> {
    let checked = kiln::check_paths(&[file.to_path_buf()], &FsLoader, allow)
        .map_err(|e| Failure::unusable(e.to_string()))?;
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprint!(
        "{}",
        kiln::diagnostic::render_text(&checked.program.sources, &checked.diagnostics, color)
    );
    let errors = checked.errors();
    if errors > 0 {
        return Err(Failure::refused(format!(
            "`{}` has {errors} error{}: nothing compared",
            file.display(),
            if errors == 1 { "" } else { "s" }
        )));
    }
    let count = checked.experiments().count();
    if count == 0 {
        return Err(Failure::refused(format!(
            "`{}` declares no experiment to compare",
            file.display()
        )));
    }
    if count > 1 {
        let first = checked.experiments().next().map(|e| e.name.clone());
        eprintln!(
            "kiln: `{}` declares {count} experiments; comparing the first, `{}`",
            file.display(),
            first.unwrap_or_default()
        );
    }
    Ok(checked)
}

/// The first experiment of a checked file, analysed.
fn side<'a>(file: &Path, checked: &'a kiln::Checked) -> Result<Side<'a>, Failure> {
    let exp = checked.experiments().next().ok_or_else(|| {
        Failure::refused(format!(
            "`{}` declares no experiment to compare",
            file.display()
        ))
    })?;
    let (setup, analysis) = kiln::analyse::analyse(&exp.record).ok_or_else(|| {
        Failure::refused(format!(
            "experiment `{}` in `{}` lacks an input the analyses need",
            exp.name,
            file.display()
        ))
    })?;
    Ok(Side {
        file: file.display().to_string(),
        name: exp.name.clone(),
        record: &exp.record,
        setup,
        analysis,
    })
}

/// `kiln compare A B`: checks both files (each must pass), analyses the first experiment of
/// each and prints the comparison.
pub fn run(a: &Path, b: &Path, format: Format, allow: &[String]) -> Outcome {
    let checked_a = checked(a, allow)?;
    let checked_b = checked(b, allow)?;
    let side_a = side(a, &checked_a)?;
    let side_b = side(b, &checked_b)?;
    let comparison = compare(&side_a, &side_b);
    match format {
        Format::Text => print!("{}", render_text(&comparison)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&render_json(&comparison)).expect("JSON serialises")
        ),
    }
    Ok(())
}
