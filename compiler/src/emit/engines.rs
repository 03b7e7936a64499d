//! Template contexts for the engines people already run: Kubernetes, Megatron-LM,
//! torchtitan and DeepSpeed.
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

use super::{cannot_express, Target};
use crate::diagnostic::Diagnostic;
use crate::plan::graph::{Step, StepKind};
use crate::plan::schedule::{LrSchedule, PhaseSchedule};
use crate::plan::RunPlan;
use crate::span::Span;
use minijinja::{context, Value};

/// The port ranks rendezvous on (the Slurm target uses the same).
const MASTER_PORT: u32 = 29500;

/// The file each encode step leaves in its output directory for Megatron-LM: an indexed
/// dataset `text_document.bin` / `text_document.idx` (the name Megatron-LM's
/// tools/preprocess_data.py gives a document-level dataset). `--data-path` takes the prefix.
pub const MEGATRON_DATA_PREFIX: &str = "text_document";

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
// Kubernetes

/// A DNS-1123 label (lowercase letters, digits, `-`; a letter first), at most `max` long.
fn dns_label(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out = out.trim_matches('-').to_string();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out = format!("kiln-{out}");
    }
    out.truncate(max);
    out.trim_end_matches('-').to_string()
}

/// A Job's name: `<experiment>-<step>`, short enough that `<name>-<index>` (the pods'
/// hostnames) stays a DNS label; a shortened name keeps the step id's start to stay unique.
fn job_name(plan: &RunPlan, s: &Step) -> String {
    const MAX: usize = 52;
    let full = dns_label(&format!("{}-{}", plan.experiment.name, s.name), 63);
    if full.len() <= MAX {
        return full;
    }
    let head = dns_label(&full, MAX - 9);
    format!("{head}-{}", &s.id[..8])
}

/// Seconds a training Job may run: the predicted duration plus a quarter and ten minutes,
/// at least an hour (the Slurm target's time limit).
fn deadline_seconds(predicted: Option<f64>) -> Option<u64> {
    predicted
        .filter(|s| s.is_finite())
        .map(|s| (s * 1.25 + 600.0).max(3600.0) as u64)
}

pub fn kubernetes(plan: &RunPlan, diags: &mut Vec<Diagnostic>, at: &dyn Fn(&str) -> Span) -> Value {
    let mut d = Diags::new(Target::Kubernetes, diags, at);
    let service = dns_label(&format!("{}-rendezvous", plan.experiment.name), 63);
    let label = dns_label(&plan.experiment.name, 63);
    let claim = dns_label(&format!("{}-run", plan.experiment.name), 63);
    let names: Vec<String> = plan.steps.iter().map(|s| job_name(plan, s)).collect();
    let name_of = |id: &String| {
        plan.steps
            .iter()
            .position(|t| &t.id == id)
            .map(|i| names[i].clone())
    };
    let mut jobs = Vec::new();
    let mut order = Vec::new();
    for (i, s) in plan.steps.iter().enumerate() {
        let after: Vec<String> = s.inputs.iter().filter_map(name_of).collect();
        let training = s.kind().is_training();
        let name = &names[i];
        order.push(context! { name => name, step => s.name, after => after.join(", ") });
        jobs.push(context! {
            name => name,
            step => s.name,
            id => s.id,
            after => after.join(" "),
            training => training,
            nodes => s.resources.nodes,
            deadline => if training { deadline_seconds(s.resources.predicted_seconds) } else { None },
            command => s.command,
            image => s.command[0],
            world => s.resources.ranks.to_string(),
            master_addr => format!("{name}-0.{service}"),
        });
    }
    if plan.steps.iter().any(|s| !s.inputs.is_empty()) {
        d.say(
            "dependencies between steps",
            "Kubernetes starts every Job at once; apply them in the order the comment at the top \
             of kubernetes.yaml lists, each after the Jobs it reads from have completed \
             (`kubectl wait --for=condition=complete job/NAME`), or hand the manifests to a \
             workflow engine (Argo Workflows, Kueue with a DAG)",
            "phase",
        );
    }
    context! {
        experiment => plan.experiment.name,
        label => label,
        service => service,
        claim => claim,
        run_dir => K8S_RUN_DIR,
        master_port => MASTER_PORT,
        gpus_per_node => plan.topology.gpus_per_node,
        order => order,
        jobs => jobs,
    }
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

// ---------------------------------------------------------------------------------------
// Megatron-LM

pub fn megatron(
    plan: &RunPlan,
    diags: &mut Vec<Diagnostic>,
    at: &dyn Fn(&str) -> Span,
) -> Vec<(String, Value)> {
    let mut d = Diags::new(Target::Megatron, diags, at);
    let e = &plan.experiment;
    let m = &e.model;
    let par = &e.parallel;
    let t = &plan.topology;
    let sched = &plan.schedule;
    let w = |s: &str| s.to_string();
    let n = |v: u64| v.to_string();

    // Parallel layout.
    let mut parallel = vec![
        vec![w("--tensor-model-parallel-size"), n(t.tensor as u64)],
        vec![w("--pipeline-model-parallel-size"), n(t.pipeline as u64)],
        vec![w("--context-parallel-size"), n(t.context as u64)],
    ];
    if par.sequence_parallel {
        parallel.push(vec![w("--sequence-parallel")]);
    }
    let stages = &t.stage_layers;
    let uneven = stages.iter().any(|&l| l != stages[0]);
    if uneven {
        let (first, last) = (stages[0], stages[stages.len() - 1]);
        let middle = &stages[1..stages.len() - 1];
        if middle.iter().any(|&l| l != middle[0]) {
            d.say(
                "pipeline stages with different layer counts between the first and the last",
                "Megatron-LM's --decoder-first/last-pipeline-num-layers split the other stages \
                 evenly; emitted the first and last stages' counts, so Megatron-LM divides the \
                 rest evenly (or use --pipeline-model-parallel-layout)",
                "parallel",
            );
        }
        parallel.push(vec![
            w("--decoder-first-pipeline-num-layers"),
            n(first as u64),
        ]);
        parallel.push(vec![
            w("--decoder-last-pipeline-num-layers"),
            n(last as u64),
        ]);
    }
    if t.virtual_stages > 1 {
        if uneven {
            parallel.push(vec![
                w("--num-virtual-stages-per-pipeline-rank"),
                n(t.virtual_stages as u64),
            ]);
        } else {
            match model_parts(plan) {
                Some(parts) => parallel.push(vec![
                    w("--num-layers-per-virtual-pipeline-stage"),
                    n(parts[0] as u64),
                ]),
                None => {
                    parallel.push(vec![
                        w("--num-virtual-stages-per-pipeline-rank"),
                        n(t.virtual_stages as u64),
                    ]);
                }
            }
        }
    }
    if par.zero >= 1 {
        parallel.push(vec![w("--use-distributed-optimizer")]);
    }
    if par.zero >= 2 {
        d.say(
            format!("ZeRO stage {} with the distributed optimizer", par.zero),
            format!(
                "Megatron-LM's distributed optimizer shards the optimizer states across the \
                 data-parallel group (ZeRO 1); emitted --use-distributed-optimizer, which keeps \
                 full gradients{} on every GPU, so each GPU holds more than kiln's memory \
                 estimate; Megatron-FSDP (--use-megatron-fsdp --data-parallel-sharding-strategy \
                 {}) shards them, with its own constraints",
                if par.zero >= 3 { " and parameters" } else { "" },
                if par.zero >= 3 {
                    "optim_grads_params"
                } else {
                    "optim_grads"
                }
            ),
            "parallel",
        );
    }

    // The model.
    let mut model = vec![
        vec![w("--num-layers"), n(m.layers)],
        vec![w("--hidden-size"), n(m.hidden)],
        vec![w("--ffn-hidden-size"), n(m.ffn_hidden)],
        vec![w("--num-attention-heads"), n(m.heads)],
    ];
    if m.kv_heads != m.heads {
        model.push(vec![w("--group-query-attention")]);
        model.push(vec![w("--num-query-groups"), n(m.kv_heads)]);
    }
    model.push(vec![w("--kv-channels"), n(m.head_dim)]);
    model.push(vec![w("--seq-length"), n(m.seq_len)]);
    model.push(vec![w("--max-position-embeddings"), n(m.seq_len)]);
    match m.activation.as_str() {
        "swiglu" => model.push(vec![w("--swiglu")]),
        "gelu" => {} // Megatron-LM's default MLP activation
        other => d.say(
            format!("the `{other}` activation"),
            "Megatron-LM's arguments offer gelu (the default), --swiglu, --squared-relu and \
             --quick-geglu; emitted gelu",
            "model",
        ),
    }
    model.push(vec![
        w("--normalization"),
        w(if m.norm.as_str() == "layernorm" {
            "LayerNorm"
        } else {
            "RMSNorm"
        }),
    ]);
    let position = match m.position.as_str() {
        "rope" => "rope",
        "learned" => "learned_absolute",
        other => {
            d.say(
                format!("`{other}` positions"),
                if other == "relative" {
                    "Megatron-LM's `relative` position type is T5's bucketed attention bias, not \
                     Transformer-XL's relative positions; emitted --position-embedding-type none \
                     (no position information beyond the causal mask)"
                } else {
                    "Megatron-LM has no ALiBi; emitted --position-embedding-type none (no \
                     position information beyond the causal mask)"
                },
                "model",
            );
            "none"
        }
    };
    model.push(vec![w("--position-embedding-type"), w(position)]);
    if !m.tied_embeddings {
        model.push(vec![w("--untie-embeddings-and-output-weights")]);
    }
    if !m.bias {
        model.push(vec![w("--disable-bias-linear")]);
        if m.norm.as_str() == "layernorm" {
            d.say(
                "LayerNorm without a bias",
                "Megatron-LM's LayerNorm always has a bias; emitted LayerNorm with one (2 × \
                 hidden more parameters per layer)",
                "model",
            );
        }
    }
    model.push(vec![w("--attention-dropout"), num(m.dropout)]);
    model.push(vec![w("--hidden-dropout"), num(m.dropout)]);
    model.push(vec![
        w("--attention-backend"),
        w(if par.flash_attention {
            "flash"
        } else {
            "unfused"
        }),
    ]);
    // The vocabulary: padded only to the tensor-parallel size, so the model's vocabulary
    // is the plan's whenever the tensor size divides it.
    model.push(vec![w("--make-vocab-size-divisible-by"), w("1")]);
    if !m.vocab.is_multiple_of(t.tensor as u64) {
        let padded = m.vocab.div_ceil(t.tensor as u64) * t.tensor as u64;
        d.say(
            format!(
                "a vocabulary of {} tokens with tensor parallelism {}",
                m.vocab, t.tensor
            ),
            format!(
                "Megatron-LM pads the vocabulary to a multiple of the tensor-parallel size: the \
                 model has {padded} embedding rows ({} unused)",
                padded - m.vocab
            ),
            "model",
        );
    }
    match tokenizer_output(plan) {
        Some(dir) => {
            model.push(vec![w("--tokenizer-type"), w("HuggingFaceTokenizer")]);
            model.push(vec![w("--tokenizer-model"), dir]);
        }
        None => {
            // The data is tokenized already; NullTokenizer adds one end-of-document token
            // to --vocab-size, so the model's vocabulary is exactly the plan's.
            model.push(vec![w("--tokenizer-type"), w("NullTokenizer")]);
            model.push(vec![w("--vocab-size"), n(m.vocab.saturating_sub(1))]);
        }
    }

    // Precision.
    let mut precision = Vec::new();
    match e.precision.as_str() {
        "bf16_mixed" => precision.push(vec![w("--bf16")]),
        // No --loss-scale: Megatron-LM scales the fp16 loss dynamically.
        "fp16_mixed" => precision.push(vec![w("--fp16")]),
        "fp8_mixed" => {
            precision.push(vec![w("--bf16")]);
            // E4M3 forward, E5M2 backward (Transformer Engine's hybrid recipe).
            precision.push(vec![w("--fp8-format"), w("hybrid")]);
        }
        _ => {} // fp32: Megatron-LM's default
    }

    // Activation recomputation.
    let mut recompute = Vec::new();
    match par.recompute.as_str() {
        "selective" => {
            recompute.push(vec![w("--recompute-granularity"), w("selective")]);
        }
        "full" | "selective_op" => {
            if par.recompute.as_str() == "selective_op" {
                d.say(
                    "torchtitan's op-level selective recomputation (`selective_op`)",
                    "Megatron-LM recomputes whole layers or its listed submodules; emitted \
                     --recompute-granularity full, which keeps less and recomputes more than \
                     selective_op (slower steps than kiln predicts, within its memory estimate)",
                    "parallel",
                );
            }
            recompute.push(vec![w("--recompute-granularity"), w("full")]);
            // kiln's `recompute_layers`: the first k layers of each stage (the block method);
            // without it every layer, one at a time.
            match par.recompute_layers {
                Some(k) => {
                    recompute.push(vec![w("--recompute-method"), w("block")]);
                    recompute.push(vec![w("--recompute-num-layers"), w(&k.to_string())]);
                }
                None => {
                    recompute.push(vec![w("--recompute-method"), w("uniform")]);
                    recompute.push(vec![w("--recompute-num-layers"), w("1")]);
                }
            }
        }
        _ => {}
    }

    // Activation offload: Transformer Engine's CPU offload of the first N layers'
    // activations (Megatron-LM's arguments.py turns --cpu-offloading on when N > 0).
    if let Some(k) = par.offload_layers {
        recompute.push(vec![w("--cpu-offloading-num-layers"), w(&k.to_string())]);
    }

    // Optimizer (Megatron-LM's `adam` decouples weight decay: AdamW).
    let o = &e.optimizer;
    let optimizer = vec![
        vec![w("--optimizer"), w("adam")],
        vec![w("--adam-beta1"), num(o.beta1)],
        vec![w("--adam-beta2"), num(o.beta2)],
        vec![w("--adam-eps"), num(o.eps)],
        vec![w("--weight-decay"), num(o.weight_decay)],
        vec![w("--clip-grad"), num(o.grad_clip)],
    ];
    if sched.checkpoint_keep > 0 {
        d.say(
            format!(
                "keeping only the last {} checkpoints",
                sched.checkpoint_keep
            ),
            "Megatron-LM keeps every checkpoint it saves to --save; delete older iter_* \
             directories yourself",
            "checkpoint",
        );
    }

    let mut out = Vec::new();
    for (i, p) in sched.phases.iter().enumerate() {
        let start = p.start_step;
        let end = p.start_step + p.steps;
        let lr = global_lr(p);
        if lr.end_lr > lr.peak {
            d.say(
                format!("phase `{}`'s schedule rising to its final value", p.name),
                format!(
                    "Megatron-LM's decay styles fall from --lr to --min-lr; emitted a constant {}",
                    num(lr.peak)
                ),
                "phase",
            );
        }
        let mut schedule = vec![
            vec![w("--micro-batch-size"), n(sched.micro_batch)],
            vec![w("--global-batch-size"), n(sched.global_batch)],
            vec![w("--train-iters"), n(end)],
            vec![w("--lr"), num(lr.peak)],
            vec![w("--min-lr"), num(lr.end_lr.min(lr.peak))],
            vec![w("--lr-decay-style"), w(lr.style)],
            vec![w("--lr-warmup-iters"), n(lr.warmup_end)],
            vec![w("--lr-decay-iters"), n(lr.decay_end)],
        ];
        if lr.init != 0.0 {
            schedule.push(vec![w("--lr-warmup-init"), num(lr.init)]);
        }
        if let Some(decay) = lr.wsd_decay {
            schedule.push(vec![w("--lr-wsd-decay-style"), w("linear")]);
            schedule.push(vec![w("--lr-wsd-decay-iters"), n(decay)]);
        }
        if i > 0 {
            // The checkpoint carries the previous phase's schedule; this phase's replaces it.
            schedule.push(vec![w("--override-opt-param-scheduler")]);
        }
        schedule.push(vec![w("--seed"), n(e.seed)]);

        // Data: the phase's mix over the encode steps' indexed datasets.
        let mut data = vec![vec![w("--data-path")]];
        for (source, weight) in &p.mix {
            match encode_output(plan, source) {
                Some(dir) => {
                    data.push(vec![num(*weight), format!("{dir}/{MEGATRON_DATA_PREFIX}")]);
                }
                None => d.say(
                    format!("source `{source}` of phase `{}`", p.name),
                    "the plan has no encode step for it; it is left out of --data-path",
                    "source",
                ),
            }
        }
        // Tokens this phase trains on and evaluates: Megatron-LM draws its validation set
        // from a --split of each source, so the split is the ratio of the two.
        let batch_tokens = sched.global_batch * sched.seq_len;
        let eval_iters = (sched.eval_tokens / batch_tokens as f64).ceil().max(1.0) as u64;
        let evaluations = end / sched.eval_every_steps.max(1) + 1;
        let valid_tokens = eval_iters * batch_tokens * evaluations;
        let train_tokens = end * batch_tokens;
        data.extend([
            vec![w("--split"), format!("{train_tokens},{valid_tokens},0")],
            vec![w("--eval-interval"), n(sched.eval_every_steps)],
            vec![w("--eval-iters"), n(eval_iters)],
            vec![w("--save-interval"), n(sched.checkpoint_every_steps)],
        ]);

        let Some(train) = train_step(plan, p) else {
            continue;
        };
        let prev = previous(plan, i).and_then(|q| train_step(plan, q));
        let groups = vec![
            context! { title => "parallel layout", args => parallel },
            context! { title => "model", args => model },
            context! { title => "precision", args => precision },
            context! { title => "activation recomputation", args => recompute },
            context! { title => "optimizer (Megatron-LM's adam is AdamW)", args => optimizer },
            context! {
                title => format!("batch and learning-rate schedule of phase {}, in iterations from the run's start", p.name),
                args => schedule,
            },
            context! { title => "data: the phase's mix over the encode steps' indexed datasets; evaluation and checkpoints", args => data },
        ];
        let groups: Vec<Value> = groups
            .into_iter()
            .filter(|g| g.get_attr("args").ok().and_then(|a| a.len()).unwrap_or(0) > 0)
            .collect();
        let mut env = Vec::new();
        if t.tensor > 1 || t.context > 1 {
            // Megatron-LM requires it with tensor or context parallelism before Blackwell.
            env.push(context! { name => "CUDA_DEVICE_MAX_CONNECTIONS", value => "1" });
        }
        let mut notes = Vec::new();
        if i > 0 {
            notes.push(format!(
                "Megatron-LM counts iterations from the run's start: the warm-up reaches to \
                 iteration {} and the decay ends at iteration {}, so the schedule over this \
                 phase's iterations {start}-{end} is the phase's own.",
                lr.warmup_end, lr.decay_end
            ));
        }
        if lr.init != 0.0 {
            notes.push(
                "--lr-warmup-init starts the warm-up line where it passes through the phase's \
                 first value at the phase's first iteration."
                    .to_string(),
            );
        }
        if i > 0 {
            notes.push(
                "Megatron-LM resumes the data at the checkpoint's consumed-sample count in this \
                 phase's own blend of the sources."
                    .to_string(),
            );
        }
        let notes: Vec<String> = notes.iter().flat_map(|n| wrap(n, 88)).collect();
        out.push((
            format!("pretrain_{}", p.name),
            context! {
                experiment => e.name,
                phase => p.name,
                start => start,
                end => end,
                steps => p.steps,
                nodes => t.nodes,
                last_node => t.nodes.saturating_sub(1),
                gpus_per_node => t.gpus_per_node,
                master_port => MASTER_PORT,
                env => env,
                save => train.outputs[0],
                previous => prev.map(|s| s.outputs[0].clone()),
                previous_phase => previous(plan, i).map(|q| q.name.clone()),
                groups => groups,
                notes => notes,
            },
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// torchtitan

/// torchtitan's Llama 3 flavors (torchtitan/models/llama3/__init__.py in 0.3.0): layers,
/// dim, heads, kv heads, FFN hidden size, vocabulary, tied embeddings.
const LLAMA3_FLAVORS: &[(&str, [u64; 6], bool)] = &[
    ("debugmodel", [6, 256, 16, 16, 768, 2048], false),
    ("1B", [16, 2048, 32, 8, 8192, 128256], true),
    ("3B", [28, 3072, 24, 8, 8192, 128256], true),
    ("8B", [32, 4096, 32, 8, 14336, 128256], false),
    ("70B", [80, 8192, 64, 8, 28672, 128256], false),
    ("405B", [126, 16384, 128, 8, 53248, 128256], false),
];

pub fn torchtitan(
    plan: &RunPlan,
    diags: &mut Vec<Diagnostic>,
    at: &dyn Fn(&str) -> Span,
) -> Vec<(String, Value)> {
    let mut d = Diags::new(Target::Torchtitan, diags, at);
    let e = &plan.experiment;
    let m = &e.model;
    let par = &e.parallel;
    let t = &plan.topology;
    let sched = &plan.schedule;

    // The model: a named flavor when the shape is one, else a flavor registered from the
    // plan's shape (torchtitan's model registry only builds named flavors).
    let shape = [
        m.layers,
        m.hidden,
        m.heads,
        m.kv_heads,
        m.ffn_hidden,
        m.vocab,
    ];
    let named = LLAMA3_FLAVORS
        .iter()
        .find(|(_, s, tied)| {
            *s == shape && *tied == m.tied_embeddings && m.head_dim * m.heads == m.hidden
        })
        .map(|(f, _, _)| f.to_string());
    let flavor = named.clone().unwrap_or_else(|| format!("kiln_{}", e.name));
    if m.activation.as_str() != "swiglu" {
        d.say(
            format!("the `{}` activation", m.activation),
            format!(
                "torchtitan's Llama 3 model has a SwiGLU MLP; emitted SwiGLU with an FFN size of \
                 {}, which has 1.5 × the MLP parameters of a {} MLP of that size",
                m.ffn_hidden, m.activation
            ),
            "model",
        );
    }
    if m.norm.as_str() != "rmsnorm" {
        d.say(
            format!("`{}` normalization", m.norm),
            "torchtitan's Llama 3 model uses RMSNorm; emitted RMSNorm",
            "model",
        );
    }
    if m.position.as_str() != "rope" {
        d.say(
            format!("`{}` positions", m.position),
            "torchtitan's Llama 3 model uses rotary embeddings; emitted RoPE",
            "model",
        );
    }
    if m.bias {
        d.say(
            "biases",
            "torchtitan's Llama 3 model has no biases in its linear layers and norms; emitted \
             none",
            "model",
        );
    }
    if m.dropout > 0.0 {
        d.say(
            "dropout",
            "torchtitan's Llama 3 model has no dropout; emitted none",
            "model",
        );
    }
    if m.head_dim * m.heads != m.hidden {
        d.say(
            format!(
                "a head size of {} with {} heads and hidden size {}",
                m.head_dim, m.heads, m.hidden
            ),
            format!(
                "torchtitan's Llama 3 layers use hidden / heads = {}; emitted that",
                m.hidden / m.heads.max(1)
            ),
            "model",
        );
    }
    if !par.flash_attention {
        d.say(
            "attention without FlashAttention",
            "torchtitan's Llama 3 attention is FlexAttention, which never stores the scores; \
             emitted that (less memory than kiln's estimate)",
            "parallel",
        );
    }

    // Precision.
    let (param_dtype, float8) = match e.precision.as_str() {
        "fp32" => ("float32", false),
        "fp8_mixed" => ("bfloat16", true),
        "fp16_mixed" => {
            d.say(
                "fp16 mixed precision",
                "torchtitan's mixed precision is bf16 (or fp32); emitted bf16, which needs a GPU \
                 with bf16 units (Ampere or later)",
                "precision",
            );
            ("bfloat16", false)
        }
        _ => ("bfloat16", false),
    };

    // Data parallelism: FSDP for ZeRO 1-3, replication (DDP) for ZeRO 0.
    let data = t.data as u64;
    let (replicate, shard, reshard) = match par.zero {
        0 => (data, 1, "default"),
        3 => (1, data, "always"),
        _ => (1, data, "never"),
    };
    if par.zero == 1 {
        d.say(
            "ZeRO stage 1 (sharded optimizer states only)",
            "torchtitan shards with FSDP; emitted FSDP that keeps parameters gathered from the \
             forward to the backward pass, which also shards gradients (ZeRO 2, less memory than \
             kiln's estimate)",
            "parallel",
        );
    }

    // Activation checkpointing.
    if let Some(k) = par.recompute_layers {
        d.say(
            format!(
                "`recompute_layers = {k}` (full recompute of the first {k} layers of each stage)"
            ),
            "torchtitan's full activation checkpointing wraps every block; emitted FullAC, which \
             keeps less and recomputes more than kiln predicts",
            "parallel",
        );
    }
    if let Some(k) = par.offload_layers {
        d.say(
            format!("`offload_layers = {k}` (activations of {k} layers in host memory)"),
            "torchtitan has no activation offload; emitted without it, so each GPU holds those \
             activations too (more memory than kiln's estimate)",
            "parallel",
        );
    }
    let ac = match par.recompute.as_str() {
        "selective_op" => "SelectiveAC.Config()",
        "full" => "FullAC.Config()",
        // Korthikanti's selective recompute only drops the attention scores, which
        // FlexAttention never stores: nothing to recompute.
        _ => "None",
    };

    // Pipeline: the model parts, named by torchtitan's module names.
    let mut pipeline_parts = "None".to_string();
    let mut schedule_name = "1F1B";
    if t.pipeline > 1 {
        match model_parts(plan) {
            Some(parts) => {
                let total = parts.len();
                let mut layer = 0u32;
                let mut out = Vec::new();
                for (k, &count) in parts.iter().enumerate() {
                    let mut names = Vec::new();
                    if k == 0 {
                        names.push(py_str("tok_embeddings"));
                    }
                    for _ in 0..count {
                        names.push(py_str(&format!("layers.{layer}")));
                        layer += 1;
                    }
                    if k + 1 == total {
                        names.push(py_str("norm"));
                        names.push(py_str("lm_head"));
                    }
                    out.push(format!("[{}]", names.join(", ")));
                }
                let lines: Vec<String> = out
                    .iter()
                    .map(|p| format!("                {p},"))
                    .collect();
                pipeline_parts = format!("[\n{}\n            ]", lines.join("\n"));
            }
            None => d.say(
                format!(
                    "{} virtual stages over pipeline stages of {:?} layers",
                    t.virtual_stages, t.stage_layers
                ),
                "torchtitan's looped schedules cut each stage into equal chunks; emitted its own \
                 split (pipeline_parallel_layers_per_stage unset)",
                "parallel",
            ),
        }
        if t.virtual_stages > 1 {
            schedule_name = "Interleaved1F1B";
        }
    }
    // With a pipeline, each data-parallel rank's batch is split into the micro-batches in
    // flight; without one, torchtitan accumulates gradients over micro-batches.
    let (local_batch, pp_micro) = if t.pipeline > 1 {
        (sched.micro_batch * sched.accumulation, sched.micro_batch)
    } else {
        (sched.micro_batch, 1)
    };
    let validation_steps = (sched.eval_tokens / (local_batch * data * sched.seq_len) as f64)
        .ceil()
        .max(1.0) as u64;

    // Data: the sources, registered as torchtitan datasets.
    let sources: Vec<Value> = e
        .sources
        .iter()
        .map(|s| {
            context! {
                key => py_str(&format!("{}.{}", e.name, s.name)),
                path => py_str(&s.path),
                text_field => py_str(&s.text_field),
            }
        })
        .collect();
    if filters_text(plan) {
        d.say(
            "training on the plan's deduplicated and filtered text",
            "torchtitan reads and tokenizes text itself; the registered datasets read the \
             sources' own files, before the plan's dedup and quality steps: point their paths at \
             those steps' outputs",
            "dedup",
        );
    }
    d.say(
        "evaluation on the mix steps' held-out tokens",
        "torchtitan's validator reads a registered dataset and the mix steps' held-out split is \
         kiln's own format; emitted Validator.Config with the plan's interval and steps, \
         disabled: register the held-out data, set it as the validator's dataloader and enable it",
        "eval",
    );
    let hf_assets = tokenizer_output(plan).map(|p| py_str(&p));
    if hf_assets.is_none() {
        d.say(
            "a model without a declared tokenizer",
            "torchtitan tokenizes text with the tokenizer in hf_assets_path; set it to the \
             model's Hugging Face tokenizer files",
            "tokenizer",
        );
    }
    let keep = match sched.checkpoint_keep {
        1 => {
            d.say(
                "keeping only the last checkpoint",
                "torchtitan keeps at least 2 (the last may still be being written); emitted 2",
                "checkpoint",
            );
            2
        }
        k => k,
    };

    let mut out = Vec::new();
    for (i, p) in sched.phases.iter().enumerate() {
        let Some(train) = train_step(plan, p) else {
            continue;
        };
        let end = p.start_step + p.steps;
        // torchtitan's scheduler: lr × factor(step), warm-up (step + 1) / warmup_steps, a
        // virtual stable step, then the decay over the rest to `total_steps`.
        let (lr, warmup, decay_ratio, decay_type, min_factor) = match p.lr {
            LrSchedule::Constant {
                value,
                warmup_steps,
            } => (value, warmup_steps, Some(0.0), "linear", 0.0),
            LrSchedule::Cosine {
                peak,
                warmup_steps,
                final_lr,
            } => (peak, warmup_steps, None, "cosine", ratio(final_lr, peak)),
            LrSchedule::Wsd {
                peak,
                warmup_steps,
                decay_steps,
            } => (
                peak,
                warmup_steps,
                Some(decay_steps as f64 / end.max(1) as f64),
                "linear",
                0.0,
            ),
            LrSchedule::Linear { from, to } => (from, 0, None, "linear", ratio(to, from)),
        };
        if lr == 0.0 && p.lr.end() != 0.0 {
            d.say(
                format!(
                    "phase `{}`'s schedule rising from a learning rate of 0",
                    p.name
                ),
                "torchtitan scales the optimizer's learning rate by a factor; emitted a constant \
                 0",
                "phase",
            );
        }
        if p.start_step > 0 && warmup > 1 {
            d.say(
                format!(
                    "a warm-up in phase `{}`, which does not start at step 0",
                    p.name
                ),
                format!(
                    "torchtitan warms up from step 0 of the run; emitted warmup_steps = {} (start \
                     + warm-up), so the phase starts at {:.0}% of its peak",
                    p.start_step + warmup,
                    100.0 * (p.start_step + 1) as f64 / (p.start_step + warmup) as f64
                ),
                "phase",
            );
        }
        let warmup_steps = if warmup > 1 {
            p.start_step + warmup
        } else {
            p.start_step
        };
        let prev = previous(plan, i);
        let initial_load = prev.and_then(|q| {
            train_step(plan, q).map(|s| {
                py_str(&format!(
                    "{}/checkpoint/step-{}",
                    s.outputs[0],
                    q.start_step + q.steps
                ))
            })
        });
        // A phase over other sources cannot continue the previous phase's data stream.
        let same_sources = prev.is_none_or(|q| q.mix.keys().eq(p.mix.keys()));
        let mix: Vec<Value> = p
            .mix
            .iter()
            .map(|(s, w)| context! { key => py_str(&format!("{}.{}", e.name, s)), weight => num(*w) })
            .collect();
        out.push((
            format!("torchtitan_{}", p.name),
            context! {
                experiment => e.name,
                phase => p.name,
                function => format!("{}_{}", e.name, p.name),
                module => format!("torchtitan_{}", p.name),
                start => p.start_step,
                end => end,
                steps => p.steps,
                nodes => t.nodes,
                gpus_per_node => t.gpus_per_node,
                flavor => py_str(&flavor),
                custom => named.is_none(),
                shape => context! {
                    layers => m.layers,
                    dim => m.hidden,
                    heads => m.heads,
                    kv_heads => m.kv_heads,
                    head_dim => m.hidden / m.heads.max(1),
                    ffn => m.ffn_hidden,
                    vocab => m.vocab,
                    seq_len => m.seq_len,
                    tied => py_bool(m.tied_embeddings),
                },
                float8 => float8,
                hf_assets => hf_assets,
                dump_folder => py_str(&train.outputs[0]),
                sources => sources,
                mix => mix,
                seed => e.seed,
                optimizer => context! {
                    lr => num(lr),
                    beta1 => num(e.optimizer.beta1),
                    beta2 => num(e.optimizer.beta2),
                    eps => num(e.optimizer.eps),
                    weight_decay => num(e.optimizer.weight_decay),
                },
                scheduler => context! {
                    warmup_steps => warmup_steps,
                    total_steps => end,
                    decay_ratio => decay_ratio.map(num).unwrap_or_else(|| "None".into()),
                    decay_type => py_str(decay_type),
                    min_lr_factor => num(min_factor),
                },
                training => context! {
                    local_batch_size => local_batch,
                    global_batch_size => sched.global_batch,
                    seq_len => sched.seq_len,
                    max_norm => num(e.optimizer.grad_clip),
                    steps => end,
                    mixed_precision_param => py_str(param_dtype),
                    disable_cuda_graphs => py_bool(t.pipeline > 1),
                },
                parallelism => context! {
                    replicate => replicate,
                    shard => shard,
                    reshard => py_str(reshard),
                    tensor => t.tensor,
                    sequence_parallel => py_bool(par.sequence_parallel),
                    pipeline => t.pipeline,
                    schedule => py_str(schedule_name),
                    parts => pipeline_parts,
                    pp_micro => pp_micro,
                    context => t.context,
                },
                activation_checkpoint => ac,
                checkpoint => context! {
                    interval => sched.checkpoint_every_steps,
                    keep => keep,
                    initial_load => initial_load,
                    exclude => if same_sources { "[]" } else { "[\"dataloader\"]" },
                },
                validation => context! {
                    freq => sched.eval_every_steps,
                    steps => validation_steps,
                },
            },
        ));
    }
    out
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

// ---------------------------------------------------------------------------------------
// DeepSpeed

pub fn deepspeed(
    plan: &RunPlan,
    diags: &mut Vec<Diagnostic>,
    at: &dyn Fn(&str) -> Span,
) -> Vec<(String, Value)> {
    let mut d = Diags::new(Target::Deepspeed, diags, at);
    let e = &plan.experiment;
    let t = &plan.topology;
    let sched = &plan.schedule;
    let par = &e.parallel;
    if t.tensor > 1 {
        d.say(
            "tensor parallelism",
            format!(
                "DeepSpeed's JSON has no tensor-parallel size: the training script's model code \
                 (Megatron-DeepSpeed) splits the model {} ways and passes its mpu; the batch \
                 sizes here assume {} data-parallel ranks",
                t.tensor, t.data
            ),
            "parallel",
        );
    }
    if t.pipeline > 1 {
        d.say(
            "pipeline parallelism",
            format!(
                "DeepSpeed's JSON has no pipeline size: build the model as a PipelineModule with \
                 {} stages ({:?} layers) in the training script",
                t.pipeline, t.stage_layers
            ),
            "parallel",
        );
    }
    if t.context > 1 {
        d.say(
            "context parallelism",
            "DeepSpeed's JSON has no context-parallel size (its Ulysses sequence parallelism is \
             set up in the training script and splits attention heads, not the sequence ring)",
            "parallel",
        );
    }
    // Korthikanti's selective recomputation with FlashAttention recomputes nothing.
    if par.recompute.as_str() != "none"
        && !(par.recompute.as_str() == "selective" && par.flash_attention)
    {
        d.say(
            format!("`{}` activation recomputation", par.recompute),
            "DeepSpeed checkpoints the activations the model code wraps with \
             deepspeed.checkpointing.checkpoint; its JSON does not choose them",
            "parallel",
        );
    }
    if let Some(k) = par.offload_layers {
        d.say(
            format!("`offload_layers = {k}` (activations of {k} layers in host memory)"),
            "DeepSpeed's cpu_checkpointing moves only checkpoints the model code makes with \
             deepspeed.checkpointing and partition_activations; emitted without it, so each GPU \
             holds those activations too (more memory than kiln's estimate)",
            "parallel",
        );
    }
    let precision = match e.precision.as_str() {
        "bf16_mixed" => "bf16",
        "fp16_mixed" => "fp16",
        "fp8_mixed" => {
            d.say(
                "fp8 mixed precision",
                "DeepSpeed's JSON has no fp8 setting (Transformer Engine layers in the model code \
                 run fp8); emitted bf16",
                "precision",
            );
            "bf16"
        }
        _ => "fp32",
    };
    d.say(
        "the model, the data mix, the number of steps, the seed, and the checkpoint and \
         evaluation intervals",
        format!(
            "DeepSpeed's JSON configures the engine only; the training script takes them from \
             plan.json next to these files (each phase's steps, mix and end step in \
             schedule.phases; checkpoints every {} steps, keeping {}; evaluation every {} \
             steps); a later phase loads the previous phase's checkpoint",
            sched.checkpoint_every_steps, sched.checkpoint_keep, sched.eval_every_steps
        ),
        "phase",
    );

    let o = &e.optimizer;
    let mut out = Vec::new();
    for p in &sched.phases {
        let start = p.start_step;
        let end = start + p.steps;
        let linear_warmup = || context! { key => "warmup_type", value => "linear" };
        let pair = |k: &str, v: f64| context! { key => k, value => v };
        let int = |k: &str, v: u64| context! { key => k, value => v };
        // DeepSpeed's schedulers count steps from the run's start, warm up over at least 2
        // steps, and set the learning rate after each step: step t runs at the scheduler's
        // iteration t - 1. A later phase's warm-up runs on a line whose zero (or starting
        // value) falls at the phase's first step; the part before the phase never runs.
        // WarmupLR family: the warm-up of w steps, as (warmup_num_steps, warmup_min_lr / peak).
        let ramp = |w: u64| -> (u64, f64) {
            if w <= 1 {
                (start.max(1), 1.0)
            } else {
                (start + w - 2, (2.0 - start as f64) / w as f64)
            }
        };
        // WarmupCosineLR: its decay counts from the end of the warm-up, which is the
        // phase's decay exactly when the warm-up ends at start + w; the warm-up line then
        // starts from zero at iteration start - 2, so the phase's first step runs at
        // peak / (w + 2) (kiln's: peak / w) and never below 0.
        let cosine_ramp = |w: u64| -> (u64, f64) {
            if w <= 1 {
                (start.max(1), 1.0)
            } else {
                (start + w, (2.0 - start as f64) / (w + 2) as f64)
            }
        };
        let (kind, lr, params): (&str, f64, Vec<Value>) =
            match p.lr {
                LrSchedule::Constant {
                    value,
                    warmup_steps,
                } => {
                    let (steps, from) = ramp(warmup_steps);
                    (
                        "WarmupLR",
                        value,
                        vec![
                            pair("warmup_min_lr", value * from),
                            pair("warmup_max_lr", value),
                            int("warmup_num_steps", steps),
                            linear_warmup(),
                        ],
                    )
                }
                LrSchedule::Cosine {
                    peak,
                    warmup_steps,
                    final_lr,
                } => {
                    let (steps, from) = cosine_ramp(warmup_steps);
                    if final_lr > peak {
                        d.say(
                        format!("phase `{}`'s cosine rising to its final value", p.name),
                        "DeepSpeed's WarmupCosineLR decays from the optimizer's learning rate; \
                         emitted a ratio above 1, which it applies as written",
                        "phase",
                    );
                    }
                    (
                        "WarmupCosineLR",
                        peak,
                        vec![
                            int("total_num_steps", end),
                            pair("warmup_min_ratio", from),
                            int("warmup_num_steps", steps),
                            pair("cos_min_ratio", ratio(final_lr, peak)),
                            linear_warmup(),
                        ],
                    )
                }
                LrSchedule::Wsd {
                    peak,
                    warmup_steps,
                    decay_steps,
                } => {
                    d.say(
                        format!("phase `{}`'s warmup-stable-decay schedule", p.name),
                        format!(
                        "DeepSpeed has no WSD scheduler; emitted WarmupLR (warm-up, then constant \
                         at the peak), without the linear decay to 0 over the last {decay_steps} \
                         steps"
                    ),
                        "phase",
                    );
                    let (steps, from) = ramp(warmup_steps);
                    (
                        "WarmupLR",
                        peak,
                        vec![
                            pair("warmup_min_lr", peak * from),
                            pair("warmup_max_lr", peak),
                            int("warmup_num_steps", steps),
                            linear_warmup(),
                        ],
                    )
                }
                LrSchedule::Linear { from, to } if from > to => {
                    // Decaying to `to` at iteration end - 1, from `from` at iteration start - 1.
                    if start < 3 {
                        d.say(
                        format!("phase `{}`'s linear decay from the run's first steps", p.name),
                        "DeepSpeed's WarmupDecayLR warms up over at least 2 steps from the value \
                         it decays to; the phase's first steps run below its schedule",
                        "phase",
                    );
                    }
                    (
                        "WarmupDecayLR",
                        from,
                        vec![
                            int("total_num_steps", end.saturating_sub(1).max(1)),
                            pair("warmup_min_lr", to),
                            pair("warmup_max_lr", from),
                            int("warmup_num_steps", start.saturating_sub(1).max(1)),
                            linear_warmup(),
                        ],
                    )
                }
                LrSchedule::Linear { from, to } => (
                    // Flat or rising: a warm-up that passes through `from` at the phase's first
                    // step and reaches `to` at its end.
                    "WarmupLR",
                    to,
                    vec![
                        pair(
                            "warmup_min_lr",
                            from + (to - from) * (1.0 - start as f64) / p.steps.max(1) as f64,
                        ),
                        pair("warmup_max_lr", to),
                        int("warmup_num_steps", end.saturating_sub(1).max(1)),
                        linear_warmup(),
                    ],
                ),
            };
        out.push((
            format!("ds_config_{}", p.name),
            context! {
                train_batch_size => sched.global_batch,
                micro_batch => sched.micro_batch,
                accumulation => sched.accumulation,
                steps_per_print => sched.eval_every_steps,
                grad_clip => o.grad_clip,
                zero => par.zero,
                precision => precision,
                lr => lr,
                beta1 => o.beta1,
                beta2 => o.beta2,
                eps => o.eps,
                weight_decay => o.weight_decay,
                scheduler => kind,
                params => params,
            },
        ));
    }
    out
}
