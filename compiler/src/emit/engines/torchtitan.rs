//! torchtitan: a Python module per phase whose function returns its job configuration
//! (`Trainer.Config`, torchtitan/config/manager.py), the model as one of its Llama 3 flavors.

use super::*;

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
    // Always a flavor of the plan's own: torchtitan's named Llama 3 flavors scale RoPE for
    // long context (ComplexRoPE scaling = "llama", max_seq_len 131,072), which the plan
    // does not, and fix θ and ε; a registered flavor carries the plan's.
    let flavor = format!("kiln_{}", e.name);
    // torchtitan's Llama 3 initialisation (torchtitan/models/llama3/__init__.py): truncated
    // normals of std 0.02 scaled by depth, embeddings of std 1, the output layer dim^-0.5.
    d.say(
        format!("an initialisation of std {}", m.init_std),
        "torchtitan's Llama 3 models initialise with their own rule (truncated normal of std \
         0.02 scaled by layer depth, embeddings of std 1.0, the output layer of std dim^-0.5); \
         emitted that",
        "model",
    );
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
    // torchtitan's Llama 3 attention rotates every dimension of each head
    // (torchtitan/models/llama3/model.py, apply_rotary_emb), in one block of attention then
    // feed-forward (TransformerBlock.forward), on the embeddings as they are.
    if m.position.as_str() == "rope" && m.rotary_fraction < 1.0 {
        d.say(
            format!("rotary embeddings on {} of each head", m.rotary_fraction),
            "torchtitan's Llama 3 rotates every dimension of each head; emitted full rotary \
             embeddings",
            "model",
        );
    }
    if let Block::Parallel { .. } = m.block {
        d.say(
            "the parallel attention + MLP block",
            "torchtitan's Llama 3 TransformerBlock runs attention and then the feed-forward \
             layer on its output, each with its own norm; emitted that sequential block",
            "model",
        );
    }
    if m.embedding_norm {
        d.say(
            "a norm on the embeddings",
            "torchtitan's Llama 3 passes the token embeddings straight to the first layer; \
             emitted without the norm",
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
    if par.recompute.as_str() == "selective" {
        d.say(
            "`recompute = selective` (Korthikanti's: recompute the attention core)",
            "torchtitan has no attention-only checkpointing; its FlexAttention never stores the \
             attention scores that selective recompute drops, so the closest is none: emitted \
             activation_checkpoint None (the memory kiln predicts for selective with \
             FlashAttention), not SelectiveAC (its op-level policy keeps matmul outputs and \
             recomputes the rest: `recompute = selective_op`)",
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
    if !sched.batch_ramp.is_empty() {
        let ramp_steps = sched.ramp_steps();
        d.say(
            "a batch ramp",
            format!(
                "torchtitan's `training.global_batch_size` is one number for the whole run (torchtitan/config/configs.py, `Training`); emitted the full batch of {} sequences for each of the plan's {} steps, so \
                 the ramp's {ramp_steps} steps train full batches (more tokens than planned) on \
                 a learning-rate schedule in steps; Megatron-LM runs the ramp \
                 (--step-batch-size-schedule)",
                sched.global_batch, sched.total_steps
            ),
            "batch",
        );
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
                like => named.clone().map(|f| py_str(&f)),
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
                    rope_base => num(m.rope_base),
                    norm_eps => num(m.norm_eps),
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
