//! Template contexts for the engines people already run: Kubernetes, Megatron-LM,
//! torchtitan and DeepSpeed, one file per target; this one holds what they share (the step
//! lookups, K-E001 notes, model parts, learning-rate schedules in global steps).
//!
//! Every value comes from the plan. Where an engine has no way to say what the plan says,
//! the context carries the closest thing the engine can run and a K-E001 diagnostic says
//! what was emitted instead; nothing is dropped silently.
//!
//! Learning-rate schedules: the engines count steps from the start of the run, and a later
//! phase resumes from the previous phase's checkpoint (iteration, optimizer and scheduler
//! state). Each phase's schedule is therefore written in global steps: its "warm-up"
//! reaches to the phase's first step (a ramp that lies before the phase and never runs)
//! and its decay ends at the phase's last step, so the decay the engine computes over
//! (start, end) is the phase's own. tests/engines/validate.py replays every schedule with
//! the engines' own scheduler classes against kiln's `LrSchedule::at`.

mod deepspeed;
mod kubernetes;
mod megatron;
mod torchtitan;

pub use deepspeed::deepspeed;
pub use kubernetes::kubernetes;
pub use megatron::megatron;
pub use torchtitan::torchtitan;

use super::{cannot_express, Target};
use crate::diagnostic::Diagnostic;
use crate::plan::graph::{Step, StepKind};
use crate::plan::schedule::{LrSchedule, PhaseSchedule};
use crate::plan::{Block, RunPlan};
use crate::span::Span;
use minijinja::{context, Value};

/// The port ranks rendezvous on (the Slurm target uses the same).
const MASTER_PORT: u32 = 29500;

/// The prefix of an encoded or mixed dataset in its step's directory (kiln-plan's run
/// directory layout): what Megatron-LM's `--data-path` names.
pub use kiln_plan::run_dir::DATA_PREFIX as MEGATRON_DATA_PREFIX;

/// Where a Kubernetes pod mounts the run directory (plan.json and steps/).
const K8S_RUN_DIR: &str = "/kiln";

/// A number as JSON, Python and argparse all read it back exactly: the shortest
/// round-trip form (`8e-7`, `0.0003`, `1.0`).
fn num(v: f64) -> String {
    format!("{v:?}")
}

/// A string as a Python (and JSON, and YAML) literal: JSON's escaping is a subset of
/// Python's and of YAML's double-quoted scalars, so no declared string can break out.
fn py_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// The step of a kind and name (`train.main`), if the plan has it.
fn step<'a>(plan: &'a RunPlan, kind: StepKind, name: &str) -> Option<&'a Step> {
    plan.steps
        .iter()
        .find(|s| s.kind() == kind && s.name == name)
}

fn train_step<'a>(plan: &'a RunPlan, phase: &PhaseSchedule) -> Option<&'a Step> {
    step(plan, StepKind::Train, &format!("train.{}", phase.name))
}

fn encode_output(plan: &RunPlan, source: &str) -> Option<String> {
    step(plan, StepKind::Encode, &format!("encode.{source}")).map(|s| s.outputs[0].clone())
}

fn tokenizer_output(plan: &RunPlan) -> Option<String> {
    plan.steps
        .iter()
        .find(|s| s.kind() == StepKind::TrainTokenizer)
        .map(|s| s.outputs[0].clone())
}

/// Whether the plan filters a source's text before encoding it (dedup or quality steps).
fn filters_text(plan: &RunPlan) -> bool {
    plan.steps.iter().any(|s| {
        matches!(
            s.kind(),
            StepKind::ExactDedup | StepKind::NearDedup | StepKind::QualityFilter
        )
    })
}

/// The phase before `i`, if any.
fn previous(plan: &RunPlan, i: usize) -> Option<&PhaseSchedule> {
    i.checked_sub(1).map(|j| &plan.schedule.phases[j])
}

/// Pushes each diagnostic once (phases repeat what they cannot express).
struct Diags<'a> {
    target: Target,
    diags: &'a mut Vec<Diagnostic>,
    at: &'a dyn Fn(&str) -> Span,
    seen: Vec<String>,
}

impl<'a> Diags<'a> {
    fn new(target: Target, diags: &'a mut Vec<Diagnostic>, at: &'a dyn Fn(&str) -> Span) -> Self {
        Diags {
            target,
            diags,
            at,
            seen: Vec::new(),
        }
    }

    fn say(&mut self, what: impl Into<String>, help: impl Into<String>, field: &str) {
        let what = what.into();
        if self.seen.contains(&what) {
            return;
        }
        self.seen.push(what.clone());
        self.diags
            .push(cannot_express(self.target, what, help, (self.at)(field)));
    }
}

/// Layers of each model part, in the order Megatron-LM and torchtitan's looped schedules
/// number them (chunk c of pipeline rank r is part c·p + r). `None` when the stages cannot
/// be cut into `virtual_stages` equal chunks.
fn model_parts(plan: &RunPlan) -> Option<Vec<u32>> {
    let t = &plan.topology;
    let v = t.virtual_stages.max(1);
    if v == 1 {
        return Some(t.stage_layers.clone());
    }
    let first = *t.stage_layers.first()?;
    if t.stage_layers.iter().any(|&l| l != first) || first % v != 0 {
        return None;
    }
    Some(vec![first / v; (t.pipeline * v) as usize])
}

// ---------------------------------------------------------------------------------------
// Learning-rate schedules in global steps

/// A phase's schedule as engines with a warm-up-then-decay scheduler count it, in global
/// steps: warm-up `init → peak` over `[0, warmup_end]`, then a decay from `peak` to `end_lr`
/// that ends at `decay_end`. `init` is chosen so the warm-up line passes through 0 at the
/// phase's first step (or through the phase's start value for an increasing linear phase).
struct GlobalLr {
    style: &'static str,
    peak: f64,
    end_lr: f64,
    init: f64,
    warmup_end: u64,
    decay_end: u64,
    wsd_decay: Option<u64>,
}

fn global_lr(p: &PhaseSchedule) -> GlobalLr {
    let start = p.start_step;
    let end = p.start_step + p.steps;
    // A ramp from 0 at `start` to `peak` at `start + w`, on a line that starts at step 0.
    let ramp = |peak: f64, w: u64| {
        if w <= 1 {
            // kiln's warm-up reaches (step + 1) / warmup: one step of warm-up is none.
            (start, 0.0)
        } else {
            (start + w, -peak * start as f64 / w as f64)
        }
    };
    match p.lr {
        LrSchedule::Constant {
            value,
            warmup_steps,
        } => {
            let (warmup_end, init) = ramp(value, warmup_steps);
            GlobalLr {
                style: "constant",
                peak: value,
                end_lr: value,
                init,
                warmup_end,
                decay_end: end.max(warmup_end + 1),
                wsd_decay: None,
            }
        }
        LrSchedule::Cosine {
            peak,
            warmup_steps,
            final_lr,
        } => {
            let (warmup_end, init) = ramp(peak, warmup_steps);
            GlobalLr {
                style: "cosine",
                peak,
                end_lr: final_lr,
                init,
                warmup_end,
                decay_end: end,
                wsd_decay: None,
            }
        }
        LrSchedule::Wsd {
            peak,
            warmup_steps,
            decay_steps,
        } => {
            let (warmup_end, init) = ramp(peak, warmup_steps);
            GlobalLr {
                style: "WSD",
                peak,
                end_lr: 0.0,
                init,
                warmup_end,
                decay_end: end,
                wsd_decay: Some(decay_steps),
            }
        }
        LrSchedule::Linear { from, to } if from >= to => GlobalLr {
            style: "linear",
            peak: from,
            end_lr: to,
            init: 0.0,
            warmup_end: start,
            decay_end: end,
            wsd_decay: None,
        },
        LrSchedule::Linear { from, to } => GlobalLr {
            // Rising: a warm-up whose line passes through `from` at the phase's start.
            style: "constant",
            peak: to,
            end_lr: to,
            init: (from * end as f64 - to * start as f64) / p.steps.max(1) as f64,
            warmup_end: end,
            decay_end: end + 1,
            wsd_decay: None,
        },
    }
}

/// Words of `text` in lines of at most `width` characters (for comments).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `a / b`, 0 where `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}
