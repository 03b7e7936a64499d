//! Megatron-LM: `pretrain_gpt.py` flags, one script per phase, resuming from the previous
//! phase's checkpoint.

use super::*;

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
    if position == "rope" {
        // megatron/training/arguments.py: --rotary-base is an int (its default 10,000).
        let base = m.rope_base.round();
        if base != m.rope_base {
            d.say(
                format!("a RoPE base of {}", m.rope_base),
                format!("Megatron-LM's --rotary-base is an integer; emitted {base}"),
                "model",
            );
        }
        model.push(vec![w("--rotary-base"), n(base as u64)]);
        // megatron/training/arguments.py --rotary-percent (a float, default 1.0): the
        // rotated dimensions are int(kv_channels × rotary_percent)
        // (megatron/core/models/common/embeddings/rotary_pos_embedding.py, RotaryEmbedding),
        // whole by K-R011.
        if m.rotary_fraction < 1.0 {
            model.push(vec![w("--rotary-percent"), num(m.rotary_fraction)]);
        }
    }
    // megatron-core's TransformerLayer (megatron/core/transformer/transformer_layer.py) runs
    // attention, its residual add, then the MLP on the sum; no argument makes them parallel.
    if let Block::Parallel { shared_norm } = m.block {
        d.say(
            format!(
                "the parallel attention + MLP block{}",
                if shared_norm {
                    " with one shared norm"
                } else {
                    ""
                }
            ),
            format!(
                "megatron-core's TransformerLayer runs attention and then the MLP on its output; \
                 emitted that sequential block{}",
                if shared_norm {
                    " with its two norms (2 × hidden more parameters per layer)"
                } else {
                    ", same parameters, another function"
                }
            ),
            "model",
        );
    }
    // megatron-core's GPTModel (megatron/core/models/gpt/gpt_model.py) passes the embedding
    // straight to the first layer.
    if m.embedding_norm {
        d.say(
            "a norm on the embeddings",
            "megatron-core's GPTModel has no embedding norm (Megatron-DeepSpeed's \
             --embed-layernorm, which BLOOM used, is not in Megatron-LM); emitted without it \
             (2 × hidden fewer parameters for LayerNorm)",
            "model",
        );
    }
    // TransformerConfig.layernorm_epsilon and init_method_std (megatron/core/transformer/
    // transformer_config.py); the output layers' std is scaled by 1/√(2·layers) there as in
    // kiln's runtime.
    model.push(vec![w("--norm-epsilon"), num(m.norm_eps)]);
    model.push(vec![w("--init-method-std"), num(m.init_std)]);
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
    // The vocabulary: Megatron-LM pads the tokenizer's vocabulary up to a multiple of
    // make_vocab_size_divisible_by × tensor (megatron/core/tokenizers/utils/build_tokenizer.py,
    // vocab_size_with_padding); the divisor is chosen so that the padding lands exactly on
    // the model's declared (padded) vocabulary.
    let tokenizer_vocab = match tokenizer_output(plan) {
        Some(_) => e.tokenizer.as_ref().map_or(m.vocab, |t| t.vocab),
        // NullTokenizer: --vocab-size plus its one end-of-document token.
        None => m.vocab,
    };
    match vocab_divisor(tokenizer_vocab, m.vocab, t.tensor as u64) {
        Some(divisor) => {
            model.push(vec![w("--make-vocab-size-divisible-by"), n(divisor)]);
        }
        None => {
            let multiple = t.tensor as u64;
            let padded = tokenizer_vocab.div_ceil(multiple) * multiple;
            model.push(vec![w("--make-vocab-size-divisible-by"), w("1")]);
            d.say(
                format!(
                    "a vocabulary of {} tokens with tensor parallelism {}",
                    m.vocab, t.tensor
                ),
                format!(
                    "Megatron-LM pads the tokenizer's {tokenizer_vocab} tokens to a multiple of \
                     the tensor-parallel size: the model has {padded} embedding rows, not {}",
                    m.vocab
                ),
                "model",
            );
        }
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

    // A batch ramp runs sample-based: Megatron-LM steps its scheduler by each iteration's
    // samples (training.py, `opt_param_scheduler.step(increment=…)`), and iteration-based
    // marks convert at --global-batch-size, which a batch schedule leaves at micro × data
    // (get_optimizer_param_scheduler, validate_args). So: --step-batch-size-schedule,
    // --train-samples and the learning rate in samples (--lr-warmup-samples,
    // --lr-decay-samples), the marks at the samples the plan's steps reach: kiln's sample
    // clock (PhaseSchedule::lr_at).
    let ramp = !sched.batch_ramp.is_empty();
    let ramp_schedule = sched
        .batch_ramp
        .iter()
        .map(|s| format!("{}:{}", s.from_samples * sched.seq_len, s.global_batch))
        .collect::<Vec<_>>()
        .join(" ");
    // Samples the run has trained before each phase.
    let mut samples_before_phase = Vec::new();
    let mut samples = 0u64;
    for p in &sched.phases {
        samples_before_phase.push(samples);
        samples = samples.saturating_add(p.samples_before(p.steps));
    }
    let mut out = Vec::new();
    for (i, p) in sched.phases.iter().enumerate() {
        let start = p.start_step;
        let end = p.start_step + p.steps;
        let lr = global_lr(p);
        // The global samples before global step `step` of this phase.
        let at = |step: u64| {
            samples_before_phase[i].saturating_add(p.samples_before(step.saturating_sub(start)))
        };
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
        let mut schedule = vec![vec![w("--micro-batch-size"), n(sched.micro_batch)]];
        if ramp {
            // Marks past the phase's end (a constant schedule's decay end, a warm-up longer
            // than the phase) continue at its last batch, as kiln's clock does.
            let samples_at = at;
            let (warmup_start, warmup_end) = (samples_at(start), samples_at(lr.warmup_end));
            // The warm-up line through 0 (or a rising linear phase's `from`) at the phase's
            // first sample, as `global_lr` draws it through the phase's first step.
            let init = match p.lr {
                _ if lr.init == 0.0 || warmup_end == warmup_start => lr.init,
                LrSchedule::Linear { from, to } if from < to => {
                    (from * warmup_end as f64 - to * warmup_start as f64)
                        / (warmup_end - warmup_start) as f64
                }
                _ => -lr.peak * warmup_start as f64 / (warmup_end - warmup_start) as f64,
            };
            schedule.extend([
                vec![w("--step-batch-size-schedule"), ramp_schedule.clone()],
                vec![w("--eval-global-batch-size"), n(sched.global_batch)],
                vec![w("--train-samples"), n(at(end))],
                vec![w("--lr"), num(lr.peak)],
                vec![w("--min-lr"), num(lr.end_lr.min(lr.peak))],
                vec![w("--lr-decay-style"), w(lr.style)],
                vec![w("--lr-warmup-samples"), n(warmup_end)],
                vec![w("--lr-decay-samples"), n(samples_at(lr.decay_end))],
            ]);
            if init != 0.0 {
                schedule.push(vec![w("--lr-warmup-init"), num(init)]);
            }
            if let Some(decay) = lr.wsd_decay {
                schedule.push(vec![w("--lr-wsd-decay-style"), w("linear")]);
                schedule.push(vec![
                    w("--lr-wsd-decay-samples"),
                    n(at(end) - samples_at(end.saturating_sub(decay))),
                ]);
            }
        } else {
            schedule.extend([
                vec![w("--global-batch-size"), n(sched.global_batch)],
                vec![w("--train-iters"), n(end)],
                vec![w("--lr"), num(lr.peak)],
                vec![w("--min-lr"), num(lr.end_lr.min(lr.peak))],
                vec![w("--lr-decay-style"), w(lr.style)],
                vec![w("--lr-warmup-iters"), n(lr.warmup_end)],
                vec![w("--lr-decay-iters"), n(lr.decay_end)],
            ]);
            if lr.init != 0.0 {
                schedule.push(vec![w("--lr-warmup-init"), num(lr.init)]);
            }
            if let Some(decay) = lr.wsd_decay {
                schedule.push(vec![w("--lr-wsd-decay-style"), w("linear")]);
                schedule.push(vec![w("--lr-wsd-decay-iters"), n(decay)]);
            }
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
        if (eval_iters * batch_tokens) as f64 != sched.eval_tokens {
            d.say(
                format!(
                    "evaluating on {}",
                    crate::units::show(sched.eval_tokens, crate::units::Dim::Tokens)
                ),
                format!(
                    "Megatron-LM evaluates whole global batches (--eval-iters); emitted \
                     --eval-iters {eval_iters}, {} per evaluation",
                    crate::units::show(
                        (eval_iters * batch_tokens) as f64,
                        crate::units::Dim::Tokens
                    )
                ),
                "eval",
            );
        }
        let evaluations = end / sched.eval_every_steps.max(1) + 1;
        let valid_tokens = eval_iters * batch_tokens * evaluations;
        let train_tokens = if ramp {
            at(end) * sched.seq_len
        } else {
            end * batch_tokens
        };
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
        if ramp {
            notes.push(format!(
                "The batch ramps: --step-batch-size-schedule gives the global batch (sequences) \
                 from each consumed-token threshold, and the run is sample-based, so the \
                 learning rate moves with the samples trained; this phase's iterations \
                 {start}-{end} are samples {}-{}.",
                at(start),
                at(end)
            ));
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

/// The `--make-vocab-size-divisible-by` that pads `tokenizer_vocab` to exactly `model_vocab`
/// under tensor parallelism `tensor` (padding to a multiple of divisor × tensor): the
/// largest power of two that does, else `model_vocab / tensor`; `None` when no divisor can
/// (the model's vocabulary is not a multiple of the tensor size, or is smaller than the
/// tokenizer's).
pub(super) fn vocab_divisor(tokenizer_vocab: u64, model_vocab: u64, tensor: u64) -> Option<u64> {
    let tensor = tensor.max(1);
    if tokenizer_vocab == 0 || model_vocab < tokenizer_vocab || !model_vocab.is_multiple_of(tensor)
    {
        return None;
    }
    let per_rank = model_vocab / tensor;
    let pads_to = |d: u64| tokenizer_vocab.div_ceil(d * tensor) * d * tensor == model_vocab;
    let largest_power = 1u64 << per_rank.trailing_zeros();
    std::iter::successors(Some(largest_power), |d| (*d > 1).then_some(d / 2))
        .find(|&d| pads_to(d))
        .or(Some(per_rank))
}

#[cfg(test)]
mod tests {
    use super::vocab_divisor;

    #[test]
    fn the_divisor_pads_to_the_declared_vocabulary() {
        // GPT-2's 50,257 tokens (+1 end-of-document: 50,258) padded to 50,432 = 197 × 256.
        assert_eq!(vocab_divisor(50_258, 50_432, 1), Some(256));
        assert_eq!(vocab_divisor(50_258, 50_432, 8), Some(32));
        assert_eq!(vocab_divisor(50_257, 50_304, 1), Some(128));
        // Llama 3's 128,256 is its own padding at tensor 8: 16,032 per rank.
        assert_eq!(vocab_divisor(128_256, 128_256, 8), Some(32));
        for (tv, mv, tp) in [
            (50_258, 50_432, 4),
            (128_256, 128_256, 8),
            (2_048, 2_048, 2),
        ] {
            let d = vocab_divisor(tv, mv, tp).unwrap();
            assert_eq!(tv.div_ceil(d * tp) * d * tp, mv, "{tv} {mv} {tp}: {d}");
        }
        assert_eq!(
            vocab_divisor(50_258, 50_257, 1),
            None,
            "smaller than the tokenizer"
        );
        assert_eq!(
            vocab_divisor(50_257, 50_257, 8),
            None,
            "not a multiple of the tensor size"
        );
    }
}
