//! K-C018 activation-offload: `offload_layers` only where the engine offloads activations,
//! under that engine's own conditions, and on a GPU whose host link kiln knows.

use crate::analyse::engine::Engine;
use crate::analyse::setup::{Recompute, Setup};
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::Record;
use crate::span::Span;

pub fn check(exp: &Record, setup: &Setup, out: &mut Vec<Diagnostic>) {
    let Some(par) = exp.record("parallel") else {
        return;
    };
    let Some(n) = setup.parallel.offload_layers else {
        return;
    };
    let at = par
        .span_of("offload_layers")
        .or(par.span)
        .unwrap_or(Span::new(0, 0, 0));
    let stage_layers = setup
        .stage_layers()
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let pipeline = setup.parallel.pipeline;
    let recompute = setup.parallel.recompute;
    let problem: Option<(String, String)> = match setup.engine {
        _ if n < 1.0 => Some((
            "offload_layers = 0 offloads nothing".into(),
            "remove `offload_layers`, or give the layers to offload (1 or more)".into(),
        )),
        // megatron/core/transformer/transformer_config.py, TransformerConfig.__post_init__:
        // cpu_offloading_num_layers in [0, num_layers), no pipeline parallelism, no
        // recompute granularity.
        Engine::Megatron | Engine::Nemo if pipeline > 1.0 => Some((
            format!("Megatron-LM's CPU offloading does not run with pipeline = {pipeline}"),
            "use `pipeline = 1`, or remove `offload_layers` and recompute instead".into(),
        )),
        Engine::Megatron | Engine::Nemo if n >= stage_layers => Some((
            format!("Megatron-LM offloads at most {} of the model's {stage_layers} layers; offload_layers = {n}", stage_layers - 1.0),
            format!("use `offload_layers` from 1 to {}", stage_layers - 1.0),
        )),
        Engine::Megatron | Engine::Nemo if recompute != Recompute::None => Some((
            "Megatron-LM's CPU offloading does not run with activation recomputation".into(),
            "use `recompute = none` with `offload_layers`, or one of them".into(),
        )),
        Engine::Megatron | Engine::Nemo => None,
        // DeepSpeed's activation_checkpointing.cpu_checkpointing acts only on the
        // checkpoints of models that call deepspeed.checkpointing with partition_activations
        // (Megatron-DeepSpeed), not on the models its config drives: not modelled.
        other => Some((
            format!("engine `{}` does not offload activations to host memory", other.name()),
            "remove `offload_layers`, or use `engine = megatron` (offloads layers of an unpipelined model without recompute)".into(),
        )),
    };
    let problem = problem.or_else(|| {
        setup.hardware.host_bytes_per_s.is_none().then(|| {
            (
                format!("the GPU preset `{}` declares no host_bandwidth, so kiln cannot time the offload", setup.hardware.gpu),
                "declare the GPU's host link, one direction (`host_bandwidth = 64 GB/s` for PCIe Gen5 x16)".into(),
            )
        })
    });
    if let Some((message, help)) = problem {
        out.push(
            Diagnostic::new(codes::ACTIVATION_OFFLOAD, message)
                .at(at, "offloaded here")
                .help(help),
        );
    }
}
