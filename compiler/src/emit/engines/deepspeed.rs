//! DeepSpeed: the JSON config of each phase (`deepspeed.initialize`), ZeRO stage, batch
//! sizes, precision, optimizer and scheduler.

use super::*;

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
    if !sched.batch_ramp.is_empty() {
        let ramp_steps = sched.ramp_steps();
        d.say(
            "a batch ramp",
            format!(
                "DeepSpeed's config has one `train_batch_size` for the whole run (train_batch_size = train_micro_batch_size_per_gpu × gradient_accumulation_steps × GPUs, deepspeed/runtime/config.py); emitted the full batch of {} sequences for each of the plan's {} steps, so \
                 the ramp's {ramp_steps} steps train full batches (more tokens than planned) on \
                 a learning-rate schedule in steps; Megatron-LM runs the ramp \
                 (--step-batch-size-schedule)",
                sched.global_batch, sched.total_steps
            ),
            "batch",
        );
    }
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
