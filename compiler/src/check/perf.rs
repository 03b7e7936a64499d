//! Checks on the analyses: K-S001 under-trained, K-S002 over-trained, K-S003 repeated-data,
//! K-M001 out-of-memory (with the cheapest changes that fit), K-H001–K-H003 precision.

use crate::analyse::setup::{Objective, Precision, Recompute, Setup};
use crate::analyse::{analyse_setup, Analysis};
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::Record;
use crate::span::Span;
use crate::units::{self, Dim};

/// A loss difference worth a diagnostic: 0.01 nats, about 0.5 % of a large model's loss and
/// well inside the disagreement between Hoffmann et al.'s three approaches, so only runs
/// clearly off the optimum are flagged. A judgement, named here.
pub const LOSS_EXCESS_NATS: f64 = 0.01;

/// The most layouts (counted without partial recompute, which the search bisects) K-M001
/// searches for its proposal inside a check (about 0.1 s in a debug build); beyond it the help
/// points at `kiln tune`. A judgement, named here.
pub const CHECK_SEARCH_LAYOUTS: usize = 20_000;

pub fn check(exp: &Record, setup: &Setup, a: &Analysis, out: &mut Vec<Diagnostic>) {
    let here = |field: &str| {
        exp.span_of(field)
            .or(exp.span)
            .unwrap_or(Span::new(0, 0, 0))
    };
    scaling(setup, a, here("tokens"), out);
    for e in &a.scaling.epochs {
        if let Some(epochs) = e.epochs.filter(|ep| *ep > e.max_epochs) {
            let span = exp
                .entries("source")
                .find(|(n, _, _)| **n == e.source)
                .map(|(_, r, s)| r.span_of("unique_tokens").unwrap_or(s));
            out.push(
                Diagnostic::new(codes::REPEATED_DATA, format!("source `{}` is repeated {} times, more than its max_epochs = {}", e.source, units::trim(epochs), e.max_epochs))
                    .at(span.unwrap_or(here("tokens")), format!("{} unique tokens", count(e.unique_tokens.unwrap_or(0.0))))
                    .help(format!(
                        "the phases draw {} tokens from it; lower its mix weights, add unique data, or raise `max_epochs` if the repetition is intended",
                        count(e.drawn_tokens)
                    )),
            );
        }
    }
    precision(setup, here("precision"), out);
    super::offload::check(exp, setup, out);
    super::cluster::check_times(exp, a, out);
    // The memory model's validated band (stdlib/fitted.json): a layout that fits by less
    // than the band is a warning, with the changes that leave the band free.
    let band = crate::analyse::time::fitted().memory.relative;
    if !a.memory.fits {
        memory(setup, a, here("parallel"), 1.0, out);
    } else if a.memory.per_gpu.total * (1.0 + band) > a.memory.capacity_bytes {
        memory(setup, a, here("parallel"), 1.0 + band, out);
    }
}

fn count(v: f64) -> String {
    units::show(v, Dim::Count)
}

fn gb(v: f64) -> String {
    format!("{} GB", units::trim(v / 1e9))
}

fn scaling(setup: &Setup, a: &Analysis, at: Span, out: &mut Vec<Diagnostic>) {
    let s = &a.scaling;
    let n = setup.params.total;
    let (target, what) = match (setup.objective, &s.inference_aware) {
        (Objective::InferenceAware { .. }, Some(ia)) => (
            ia,
            "the inference-aware optimum for the same loss (Sardana et al. 2024)",
        ),
        (Objective::InferenceAware { .. }, None) => return,
        _ => (&s.chinchilla, "the compute-optimal size for this compute"),
    };
    let ratio = target.optimal_tokens / target.optimal_params;
    let excess = s.predicted_loss - s.chinchilla.loss;
    let suggestion = format!(
        "{what} under the `{}` law is {} parameters on {} tokens ({} per parameter)",
        s.law,
        count(target.optimal_params),
        count(target.optimal_tokens),
        units::trim(ratio)
    );
    let inference_aware = matches!(setup.objective, Objective::InferenceAware { .. });
    let under = if inference_aware {
        s.tokens_per_param * 2.0 < ratio
    } else {
        s.tokens_per_param < ratio && excess > LOSS_EXCESS_NATS
    };
    if under {
        let loss = if inference_aware {
            String::new()
        } else {
            format!(
                ", reaching loss {:.3} instead of {:.3}",
                s.chinchilla.loss, s.predicted_loss
            )
        };
        out.push(
            Diagnostic::new(
                codes::UNDER_TRAINED,
                format!(
                    "{} tokens for {} parameters is {} tokens per parameter: under-trained",
                    count(s.tokens),
                    count(n),
                    units::trim(s.tokens_per_param)
                ),
            )
            .at(
                at,
                format!("{} tokens per parameter", units::trim(s.tokens_per_param)),
            )
            .help(format!("{suggestion}{loss}")),
        );
    } else if !inference_aware && s.tokens_per_param > ratio && excess > LOSS_EXCESS_NATS {
        out.push(
            Diagnostic::new(codes::OVER_TRAINED, format!("{} tokens per parameter is past the compute-optimal {}", units::trim(s.tokens_per_param), units::trim(ratio)))
                .at(at, format!("{} tokens per parameter", units::trim(s.tokens_per_param)))
                .help(format!(
                    "{suggestion}, reaching loss {:.3} instead of {:.3}; if the model will serve many tokens, say so: `objective = inference_aware {{ serve_tokens = … }}`",
                    s.chinchilla.loss, s.predicted_loss
                )),
        );
    }
}

/// GPU families by the precisions their tensor cores run.
fn supports(arch: &str, precision: Precision) -> bool {
    match precision {
        Precision::Fp32 | Precision::Fp16Mixed => true,
        Precision::Bf16Mixed => arch != "volta",
        Precision::Fp8Mixed => matches!(arch, "hopper" | "blackwell" | "cdna3"),
    }
}

fn precision(setup: &Setup, at: Span, out: &mut Vec<Diagnostic>) {
    let arch = &setup.hardware.arch;
    let name = match setup.precision {
        Precision::Fp32 => "fp32",
        Precision::Bf16Mixed => "bf16_mixed",
        Precision::Fp16Mixed => "fp16_mixed",
        Precision::Fp8Mixed => "fp8_mixed",
    };
    if !supports(arch, setup.precision) {
        let needs = if setup.precision == Precision::Fp8Mixed {
            "Hopper or newer (or CDNA3)"
        } else {
            "Ampere or newer"
        };
        out.push(
            Diagnostic::new(
                codes::PRECISION_HARDWARE,
                format!(
                    "`{name}` needs {needs}; the {} is {arch}",
                    setup.hardware.gpu
                ),
            )
            .at(at, format!("not supported on {arch}"))
            .help(if arch == "volta" {
                "use `precision = fp16_mixed` (with loss scaling) on Volta"
            } else {
                "use `precision = bf16_mixed`"
            }),
        );
    } else if setup.peak_flops().is_none() {
        out.push(
            Diagnostic::new(codes::NO_PEAK, format!("the {} declares no peak FLOP/s for `{name}`", setup.hardware.gpu))
                .at(at, "no peak for this precision")
                .help("declare it in the GPU preset, e.g. `peak_bf16 = 989 TFLOP/s`, from the vendor's datasheet (dense, without sparsity)"),
        );
    }
    if setup.precision == Precision::Fp16Mixed {
        out.push(
            Diagnostic::new(codes::FP16_LOSS_SCALING, "fp16 needs loss scaling: its range ends at 65504 and small gradients underflow")
                .at(at, "fp16")
                .help(if supports(arch, Precision::Bf16Mixed) {
                    "kiln's runtime scales the loss dynamically; bf16_mixed, which this GPU runs, needs no scaling"
                } else {
                    "kiln's runtime scales the loss dynamically; enable it in other engines (Megatron-LM --loss-scale unset, DeepSpeed fp16.loss_scale = 0)"
                }),
        );
    }
}

/// Changes to try when the most loaded GPU does not fit, cheapest first by predicted step time.
/// K-M001 (does not fit) or, with `margin` > 1, K-M002 (fits by less than the memory band):
/// the breakdown and the cheapest single changes after which `margin` × the total fits.
fn memory(setup: &Setup, a: &Analysis, at: Span, margin: f64, out: &mut Vec<Diagnostic>) {
    let mem = &a.memory;
    let g = &mem.per_gpu;
    let mut candidates: Vec<(String, Setup)> = Vec::new();
    let par = &setup.parallel;
    let mut try_change = |label: String, change: &dyn Fn(&mut Setup)| {
        let mut s = setup.clone();
        change(&mut s);
        candidates.push((label, s));
    };
    if par.tensor > 1.0 && !par.sequence_parallel {
        try_change("sequence_parallel = true".into(), &|s| {
            s.parallel.sequence_parallel = true
        });
    }
    for zero in par.zero + 1..=3 {
        try_change(format!("zero = {zero}"), &|s| s.parallel.zero = zero);
    }
    if par.recompute < Recompute::Selective && !par.flash_attention {
        try_change("recompute = selective".into(), &|s| {
            s.parallel.recompute = Recompute::Selective
        });
    }
    if par.recompute < Recompute::SelectiveOp {
        try_change("recompute = selective_op".into(), &|s| {
            s.parallel.recompute = Recompute::SelectiveOp
        });
    }
    if par.recompute < Recompute::Full {
        try_change("recompute = full".into(), &|s| {
            s.parallel.recompute = Recompute::Full
        });
    }
    if par.micro_batch > 1.0 && (par.micro_batch / 2.0).fract() == 0.0 {
        let micro = par.micro_batch / 2.0;
        try_change(format!("micro_batch = {micro}"), &|s| {
            s.parallel.micro_batch = micro;
            s.parallel.accumulation *= 2.0;
        });
    }
    let m = &setup.shape;
    let t2 = par.tensor * 2.0;
    if t2 <= setup.hardware.gpus_per_node
        && m.heads % t2 == 0.0
        && m.kv_heads % t2 == 0.0
        && (par.data / 2.0).fract() == 0.0
    {
        try_change(format!("tensor = {t2}"), &|s| {
            s.parallel.tensor = t2;
            s.parallel.data /= 2.0;
            s.parallel.accumulation *= 2.0;
        });
    }
    let p2 = par.pipeline * 2.0;
    if par.first_stage_layers.is_none()
        && par.last_stage_layers.is_none()
        && m.layers % (p2 * par.virtual_stages) == 0.0
        && (par.data / 2.0).fract() == 0.0
    {
        try_change(format!("pipeline = {p2}"), &|s| {
            s.parallel.pipeline = p2;
            s.parallel.data /= 2.0;
            s.parallel.accumulation *= 2.0;
        });
    }
    let base = a.throughput.as_ref().map(|t| t.step_time_s);
    let mut fits: Vec<(f64, String)> = candidates
        .into_iter()
        .filter_map(|(label, s)| {
            let r = analyse_setup(&s);
            (r.memory.per_gpu.total * margin <= r.memory.capacity_bytes).then(|| {
                let time = r.throughput.as_ref().map(|t| t.step_time_s);
                let cost = match (base, time) {
                    (Some(b), Some(t)) => format!(
                        "{label} ({} GB, step time {}{}%)",
                        units::trim(r.memory.per_gpu.total / 1e9),
                        if t >= b { "+" } else { "" },
                        units::trim((t / b - 1.0) * 100.0)
                    ),
                    _ => format!("{label} ({} GB)", units::trim(r.memory.per_gpu.total / 1e9)),
                };
                (time.unwrap_or(f64::MAX), cost)
            })
        })
        .collect();
    fits.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (one, many) = if margin > 1.0 {
        ("leaves the band free", "leave the band free")
    } else {
        ("fits", "fit")
    };
    // For K-M001, the best layout of any combination (`kiln tune`'s search), where the
    // search is small enough for a check (`kiln tune` runs any size). K-M002 (a layout that
    // fits) keeps the check fast: its help lists single changes and points at `kiln tune`.
    let (layouts, base_layouts) = if margin > 1.0 {
        (usize::MAX, usize::MAX)
    } else {
        crate::tune::count_with_base(setup)
    };
    let searched = if base_layouts <= CHECK_SEARCH_LAYOUTS {
        crate::tune::search(setup, crate::tune::Objective::Time)
    } else {
        crate::tune::Search {
            layouts: 0,
            evaluated: 0,
            fitting: 0,
            ranked: Vec::new(),
            declared: None,
        }
    };
    let best = searched
        .ranked
        .iter()
        .find(|c| c.memory_bytes * margin <= c.capacity_bytes)
        .map(|c| {
            let vs = base.map_or(String::new(), |b| {
                let d = (c.step_time_s / b - 1.0) * 100.0;
                format!(
                    ", step time {}{}%",
                    if d >= 0.0 { "+" } else { "" },
                    units::trim(d)
                )
            });
            format!(
                "the best layout that {one} of {} searched: {} ({} GB{vs}; `kiln tune` lists more)",
                searched.layouts,
                c.layout(),
                units::trim(c.memory_bytes / 1e9)
            )
        });
    let help = match (fits.is_empty(), best) {
        (true, None) if base_layouts <= CHECK_SEARCH_LAYOUTS => format!("no layout of this cluster {one} (`kiln tune` searched {layouts}): use more GPUs or GPUs with more memory"),
        (true, None) => format!("no single change {one}; `kiln tune` searches every layout of this cluster"),
        (true, Some(best)) => format!("no single change {one}; {best}"),
        (false, best) => format!(
            "cheapest changes that {many}: {}{}",
            fits.iter()
                .take(3)
                .map(|f| f.1.clone())
                .collect::<Vec<_>>()
                .join("; "),
            best.map_or_else(
                || "; `kiln tune` ranks every layout of this cluster".to_string(),
                |b| format!("; {b}")
            )
        ),
    };
    let fitted = crate::analyse::time::fitted();
    let diagnostic = if margin > 1.0 {
        Diagnostic::new(
            codes::MEMORY_HEADROOM,
            format!(
                "the most loaded GPU needs {} of the {}'s {}: it fits by {:.1} %, inside kiln's memory band of ±{:.1} % ({} measured peaks)",
                gb(g.total),
                setup.hardware.gpu,
                gb(mem.capacity_bytes),
                (1.0 - g.total / mem.capacity_bytes) * 100.0,
                fitted.memory.relative * 100.0,
                fitted.memory.runs
            ),
        )
    } else {
        Diagnostic::new(
            codes::MEMORY,
            format!(
                "the most loaded GPU needs {} but the {} has {}",
                gb(g.total),
                setup.hardware.gpu,
                gb(mem.capacity_bytes)
            ),
        )
    };
    out.push(
        diagnostic
        .at(at, format!("pipeline stage {} needs {}", mem.stage + 1, gb(g.total)))
        .note(format!(
            "weights {}, gradients {}, optimizer states {}, activations {} ({} {} in flight), runtime reserve {}",
            gb(g.weights),
            gb(g.gradients),
            gb(g.optimizer),
            gb(g.activations),
            units::trim(mem.micro_batches_in_flight),
            if mem.micro_batches_in_flight == 1.0 { "micro-batch" } else { "micro-batches" },
            gb(g.reserve)
        ))
        .help(help),
    );
}
