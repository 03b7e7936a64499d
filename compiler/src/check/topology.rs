//! K-C004 world-size (declared data size), K-C005 heads-tensor, K-C006 kv-heads-tensor,
//! K-C007 layers-pipeline, K-C009 tensor-across-nodes.

use super::at;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::{Provenance, Record};

pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let (Some(par), Some(model)) = (exp.record("parallel"), exp.record("model")) else { return };
    let size = |f: &str| par.num(f).unwrap_or(1.0);
    let (tensor, pipeline, context, virtual_stages) = (size("tensor"), size("pipeline"), size("context"), size("virtual_stages"));
    let declared_data = par.slot("data").is_some_and(|s| !matches!(s.provenance, Provenance::Derived(_)));
    if let (Some(world), Some(data), true) = (exp.num("world"), par.num("data"), declared_data) {
        let product = data * tensor * pipeline * context;
        if product != world {
            out.push(
                Diagnostic::new(
                    codes::WORLD_SIZE,
                    format!("data × tensor × pipeline × context = {data} × {tensor} × {pipeline} × {context} = {product}, but the cluster has {world} GPUs"),
                )
                .at(at(par, "data", exp), format!("gives {product} GPUs"))
                .help(match world / (tensor * pipeline * context) {
                    d if d.fract() == 0.0 && d >= 1.0 => format!("use `data = {d}` (or `data = auto`)"),
                    _ => format!("choose parallel sizes whose product is {world}"),
                }),
            );
        }
    }
    if let Some(heads) = model.num("heads") {
        if heads % tensor != 0.0 {
            out.push(
                Diagnostic::new(codes::HEADS_TENSOR, format!("{heads} attention heads do not split over tensor = {tensor}"))
                    .at(at(par, "tensor", exp), format!("tensor = {tensor}"))
                    .help(format!("use a tensor size that divides {heads}: {}", divisors(heads, tensor))),
            );
        }
    }
    if let Some(kv) = model.num("kv_heads") {
        if kv % tensor != 0.0 && model.num("heads").is_some_and(|h| h % tensor == 0.0) {
            out.push(
                Diagnostic::new(codes::KV_HEADS_TENSOR, format!("{kv} key/value heads do not split over tensor = {tensor}"))
                    .at(at(par, "tensor", exp), format!("tensor = {tensor}"))
                    .help(format!("use a tensor size that divides {kv}: {}", divisors(kv, tensor))),
            );
        }
    }
    if let Some(layers) = model.num("layers") {
        // Stages with a declared layer count take theirs; the rest split what remains evenly.
        let (first, last) = (par.num("first_stage_layers"), par.num("last_stage_layers"));
        let fixed = [first, last].iter().flatten().count() as f64;
        let remaining = layers - first.unwrap_or(0.0) - last.unwrap_or(0.0);
        let chunks = (pipeline - fixed) * virtual_stages;
        if fixed >= pipeline || remaining < 0.0 || (chunks > 0.0 && remaining % chunks != 0.0) {
            let what = if virtual_stages > 1.0 { format!("pipeline × virtual_stages = {pipeline} × {virtual_stages}") } else { format!("pipeline = {pipeline}") };
            let each = if chunks > 0.0 { crate::units::trim(remaining / chunks) } else { "no".into() };
            let rest = if fixed > 0.0 { " (besides the first/last stage's)" } else { "" };
            out.push(
                Diagnostic::new(codes::LAYERS_PIPELINE, format!("{remaining} layers{rest} do not divide evenly over {what} ({each} layers each)"))
                    .at(at(par, "pipeline", exp), format!("pipeline = {pipeline}"))
                    .help(format!(
                        "use stages that divide {remaining}: {}; or set `first_stage_layers` / `last_stage_layers` for an uneven pipeline",
                        divisors(remaining.max(1.0), chunks.max(1.0))
                    )),
            );
        }
    }
    let per_node = exp.record("cluster").and_then(|c| c.record("node")).and_then(|n| n.num("gpus_per_node"));
    if let Some(per_node) = per_node {
        if tensor > per_node {
            out.push(
                Diagnostic::new(codes::TENSOR_ACROSS_NODES, format!("tensor = {tensor} spans more than one node of {per_node} GPUs"))
                    .at(at(par, "tensor", exp), format!("tensor = {tensor}"))
                    .help(format!("keep tensor ≤ {per_node}, and use pipeline parallelism across nodes (pipeline = {})", tensor / per_node * pipeline)),
            );
        }
    }
}

/// The sizes near `near` that divide `n`, for help text.
fn divisors(n: f64, near: f64) -> String {
    let n = n as u64;
    let mut ds: Vec<u64> = (1..=n.min(1024)).filter(|d| n % d == 0).collect();
    ds.sort_by_key(|d| ((*d as f64).ln() - near.ln()).abs().to_bits());
    let mut pick: Vec<u64> = ds.into_iter().take(4).collect();
    pick.sort();
    pick.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}
