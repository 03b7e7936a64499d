//! `kiln explain`: the analyses as compact tables (text or markdown) or as JSON with stable
//! field paths, and where every value came from.

use crate::analyse::comm::{Link, Traffic};
use crate::analyse::setup::Setup;
use crate::analyse::Analysis;
use crate::ir::Resolved;
use crate::units::{self, Dim};

/// JSON with the documented paths: `model.params`, `scaling.predicted_loss`,
/// `memory.per_gpu.total`, `communication.per_step.data`, `throughput.mfu`, `cost.gpu_hours`…
pub fn json(name: &str, analysis: &Analysis) -> String {
    let mut value = serde_json::to_value(analysis).expect("analyses serialise");
    value["experiment"] = serde_json::Value::String(name.to_string());
    serde_json::to_string_pretty(&value).expect("json")
}

pub fn text(exp: &Resolved, setup: &Setup, a: &Analysis) -> String {
    let mut out = format!("kiln explain: experiment {}\n", exp.name);
    for section in sections(setup, a) {
        out += &format!("\n{}\n", section.title);
        let width = section
            .rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(0);
        for (label, value) in &section.rows {
            out += &format!("  {label:<width$}  {value}\n");
        }
    }
    out += "\nValues and where they came from\n";
    for line in crate::report::values(&exp.record).lines() {
        out += &format!("  {line}\n");
    }
    out
}

pub fn markdown(exp: &Resolved, setup: &Setup, a: &Analysis) -> String {
    let mut out = format!("# kiln explain: experiment `{}`\n", exp.name);
    for section in sections(setup, a) {
        out += &format!(
            "\n## {}\n\n| quantity | value |\n| --- | --- |\n",
            section.title
        );
        for (label, value) in &section.rows {
            out += &format!("| {label} | {} |\n", value.replace('|', "\\|"));
        }
    }
    out += "\n## Values and where they came from\n\n```\n";
    out += &crate::report::values(&exp.record);
    out += "```\n";
    out
}

struct Section {
    title: String,
    rows: Vec<(String, String)>,
}

fn count(v: f64) -> String {
    units::show(v, Dim::Count)
}

fn bytes(v: f64) -> String {
    if v >= 1e9 || v == 0.0 {
        format!("{} GB", units::trim(v / 1e9))
    } else {
        format!("{} MB", units::trim(v / 1e6))
    }
}

fn seconds(v: f64) -> String {
    match v {
        v if v >= 2.0 * 86400.0 => format!("{} days", units::trim(v / 86400.0)),
        v if v >= 2.0 * 3600.0 => format!("{} h", units::trim(v / 3600.0)),
        v if v >= 1.0 => format!("{} s", units::trim(v)),
        v => format!("{} ms", units::trim(v * 1e3)),
    }
}

fn sci(v: f64) -> String {
    format!("{v:.3e}")
}

fn traffic(t: &Traffic) -> String {
    match t.link {
        Link::None => "none (size 1)".into(),
        Link::Nvlink => format!("{} over NVLink, {}", bytes(t.bytes), seconds(t.seconds)),
        Link::Network => format!(
            "{} over the network, {}",
            bytes(t.bytes),
            seconds(t.seconds)
        ),
    }
}

fn sections(setup: &Setup, a: &Analysis) -> Vec<Section> {
    let mut out = Vec::new();
    let m = &a.model;
    out.push(Section {
        title: "Model".into(),
        rows: vec![
            (
                "parameters".into(),
                format!(
                    "{} (non-embedding {}, embedding {})",
                    count(m.params),
                    count(m.params_non_embedding),
                    count(m.params_embedding)
                ),
            ),
            (
                "model FLOPs per token".into(),
                format!(
                    "{} (6N = {}; the rest is attention)",
                    sci(m.flops_per_token),
                    sci(6.0 * m.params)
                ),
            ),
            (
                "hardware FLOPs per token".into(),
                format!("{} (with recomputation)", sci(m.hardware_flops_per_token)),
            ),
        ],
    });
    let s = &a.scaling;
    let mut rows = vec![
        (
            "tokens".into(),
            format!(
                "{} ({} per parameter)",
                count(s.tokens),
                units::trim(s.tokens_per_param)
            ),
        ),
        (
            "compute, 6·N·D".into(),
            format!("{} FLOPs", sci(s.compute_flops)),
        ),
        (
            format!("predicted loss ({})", s.law),
            format!("{:.4} nats/token", s.predicted_loss),
        ),
        (
            "compute-optimal for this compute".into(),
            format!(
                "{} parameters on {} tokens, loss {:.4}",
                count(s.chinchilla.optimal_params),
                count(s.chinchilla.optimal_tokens),
                s.chinchilla.loss
            ),
        ),
        (
            "Kaplan et al. 2020, for contrast".into(),
            format!(
                "{} parameters on {} tokens",
                count(s.kaplan.optimal_params),
                count(s.kaplan.optimal_tokens)
            ),
        ),
    ];
    if let (Some(ia), Some(serve)) = (&s.inference_aware, s.serve_tokens) {
        rows.push((
            format!("inference-aware, {} served tokens", count(serve)),
            format!(
                "{} parameters on {} tokens for loss {:.4}",
                count(ia.optimal_params),
                count(ia.optimal_tokens),
                ia.loss
            ),
        ));
    }
    if let Some(saving) = &s.inference_saving {
        rows.push((
            "saving against the compute-optimal model of that loss".into(),
            format!(
                "{}, {:.1} % of {} training and serving ({} parameters on {} tokens; Sardana et al. 2024)",
                units::show(saving.saving_flops, Dim::Flops),
                saving.saving_fraction * 100.0,
                units::show(saving.chinchilla_total_flops, Dim::Flops),
                count(saving.chinchilla_params),
                count(saving.chinchilla_tokens)
            ),
        ));
    }
    for e in &s.epochs {
        let value = match (e.epochs, e.unique_tokens) {
            (Some(ep), Some(u)) => format!(
                "{} epochs ({} of {} unique tokens)",
                units::trim(ep),
                count(e.drawn_tokens),
                count(u)
            ),
            _ => format!(
                "{} tokens drawn (no unique_tokens declared)",
                count(e.drawn_tokens)
            ),
        };
        rows.push((format!("source {}", e.source), value));
    }
    out.push(Section {
        title: "Scaling".into(),
        rows,
    });
    let mem = &a.memory;
    let g = &mem.per_gpu;
    let st = &mem.states;
    let mut rows = vec![
        (
            "parameters held".into(),
            format!(
                "{} ({} / {} / {} bytes each for weights / gradients / optimizer after sharding; {})",
                count(mem.params_per_gpu),
                units::trim(st.weights),
                units::trim(st.gradients),
                units::trim(st.optimizer),
                st.convention
            ),
        ),
        ("weights".into(), bytes(g.weights)),
        ("gradients".into(), bytes(g.gradients)),
        ("optimizer states".into(), bytes(g.optimizer)),
        (
            "activations".into(),
            format!(
                "{} ({} per layer per micro-batch × {} in flight{}; logits {})",
                bytes(g.activations),
                bytes(mem.layer_activations.stored),
                units::trim(mem.micro_batches_in_flight),
                if mem.recompute_transient > 0.0 {
                    format!(
                        "; {} for the layer being recomputed",
                        bytes(mem.recompute_transient)
                    )
                } else {
                    String::new()
                } + &match mem.per_stage.get(mem.stage).map(|s| s.offloaded) {
                    Some(off) if off > 0.0 => format!(
                        "; {} more offloaded to host memory, one layer's in transit counted here",
                        bytes(off)
                    ),
                    _ => String::new(),
                },
                bytes(mem.logits)
            ),
        ),
        (
            "runtime reserve".into(),
            format!(
                "{} (allocated tensors {}; allocator fragmentation {}; runtime outside the allocator {})",
                bytes(g.reserve),
                bytes(g.allocated),
                bytes(g.fragmentation),
                bytes(g.runtime)
            ),
        ),
        (
            "total".into(),
            {
                let fit = &crate::analyse::time::fitted().memory;
                format!(
                    "{} of {} ({}; ±{:.1} %, the 80th percentile of the error over {} measured peaks, docs/validation.md)",
                    bytes(g.total),
                    bytes(mem.capacity_bytes),
                    if mem.fits { "fits" } else { "DOES NOT FIT" },
                    fit.relative * 100.0,
                    fit.runs
                )
            },
        ),
    ];
    if mem.per_stage.len() > 1 {
        for (i, s) in mem.per_stage.iter().enumerate() {
            let why = match i {
                0 => "; the embedding, and the most micro-batches in flight",
                i if i + 1 == mem.per_stage.len() => "; the output layer and the loss",
                _ => "",
            };
            rows.push((
                format!("stage {}", i + 1),
                format!(
                    "{} ({} layers, {} parameters, {} micro-batch{} in flight{why}){}",
                    bytes(s.per_gpu.total),
                    units::trim(s.layers),
                    count(s.params_per_gpu),
                    units::trim(s.micro_batches_in_flight),
                    if s.micro_batches_in_flight == 1.0 {
                        ""
                    } else {
                        "es"
                    },
                    if s.fits { "" } else { " DOES NOT FIT" }
                ),
            ));
        }
    }
    out.push(Section {
        title: format!(
            "Memory per GPU (pipeline stage {} of {}, the most loaded)",
            mem.stage + 1,
            setup.parallel.pipeline
        ),
        rows,
    });
    let c = &a.communication.detail;
    out.push(Section {
        title: "Communication per optimizer step per GPU".into(),
        rows: vec![
            (
                format!("data (ZeRO {})", setup.parallel.zero),
                traffic(&c.data),
            ),
            ("tensor".into(), traffic(&c.tensor)),
            ("pipeline".into(), traffic(&c.pipeline)),
            ("context (ring attention)".into(), traffic(&c.context)),
        ],
    });
    let rows = match (&a.throughput, &a.cost) {
        (Some(t), Some(cost)) => {
            let mut rows = vec![
                (
                    "engine".into(),
                    format!("{} (the step time assumes its kernels and overlaps; `engine =` to change)", t.engine),
                ),
                (
                    "step time".into(),
                    format!(
                        "{} (GEMMs and attention {} of which attention {}, memory-bound {}, bubble {} = {}%, exposed communication {}{})",
                        seconds(t.step_time_s),
                        seconds(t.compute_s),
                        seconds(t.attention_s),
                        seconds(t.memory_bound_s),
                        seconds(t.bubble_s),
                        units::trim(t.bubble_fraction * 100.0),
                        seconds(t.exposed_communication_s),
                        if t.offload_exposed_s > 0.0 {
                            format!(", activation offload not hidden {}", seconds(t.offload_exposed_s))
                        } else {
                            String::new()
                        }
                    ),
                ),
                ("tokens per second".into(), format!("{}{}", count(t.tokens_per_s), band(t))),
                ("MFU".into(), format!("{}% ({} of {} TFLOP/s per GPU{})", units::trim(t.mfu * 100.0), units::trim(t.tflops_per_gpu), units::trim(t.peak_flops / 1e12), t.mfu_fp8_peak.map_or(String::new(), |m| format!(", the bf16 peak; {}% of the fp8 peak", units::trim(m * 100.0))))),
                ("hardware FLOP/s per GPU".into(), format!("{} TFLOP/s (recomputation included)", units::trim(t.hardware_tflops_per_gpu))),
                ("matmul efficiency".into(), format!("{}% of peak on average over the GEMMs ({})", units::trim(t.matmul_efficiency * 100.0), setup.hardware.arch)),
                ("steps".into(), count(cost.steps)),
                ("wall clock".into(), seconds(cost.wall_clock_s)),
                ("GPU-hours".into(), count(cost.gpu_hours)),
            ];
            if let Some(r) = &cost.ramp {
                // Inserted after `steps`: what the batch ramp adds (time.rs, `ramped`).
                let at = rows
                    .iter()
                    .position(|(k, _)| k == "steps")
                    .map_or(rows.len(), |i| i + 1);
                rows.insert(
                    at,
                    (
                        "batch ramp".into(),
                        format!(
                            "{} of the steps below the full batch ({}, {}; the first step {})",
                            count(r.steps),
                            units::show(r.tokens, units::Dim::Tokens),
                            seconds(r.wall_clock_s),
                            seconds(r.first_step_time_s)
                        ),
                    ),
                );
            }
            rows.push((
                "cost".into(),
                match cost.usd {
                    Some(usd) => format!("{} USD", count(usd)),
                    None => "— (the cluster declares no gpu_hour_price)".into(),
                },
            ));
            rows
        }
        _ => vec![(
            "step time".into(),
            "— (the GPU has no peak FLOP/s for this precision)".into(),
        )],
    };
    out.push(Section {
        title: format!(
            "Time and cost on {} × {}",
            units::trim(setup.world()),
            setup.hardware.gpu
        ),
        rows,
    });
    out
}

/// "±9.5 % (80th percentile over 24 validated megatron runs on hopper)", or why none.
fn band(t: &crate::analyse::time::Throughput) -> String {
    match &t.band {
        Some(b) => format!(
            " ±{}% (80th percentile of the error over {} validated {} runs on {}, docs/validation.md)",
            units::trim(b.relative * 100.0),
            b.runs,
            b.engine,
            b.arch
        ),
        None => format!(" (no validated {} runs on this arch: no error band)", t.engine),
    }
}
