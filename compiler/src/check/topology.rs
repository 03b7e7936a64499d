//! K-C004 world-size (declared data size), K-C005 heads-tensor, K-C006 kv-heads-tensor,
//! K-C007 layers-pipeline, K-C009 tensor-across-nodes, K-C016 recompute-layers.

use super::at;
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::{Provenance, Record};

pub fn check(exp: &Record, out: &mut Vec<Diagnostic>) {
    let (Some(par), Some(model)) = (exp.record("parallel"), exp.record("model")) else {
        return;
    };
    let size = |f: &str| par.num(f).unwrap_or(1.0);
    let (tensor, pipeline, context) = (size("tensor"), size("pipeline"), size("context"));
    let declared_data = par
        .slot("data")
        .is_some_and(|s| !matches!(s.provenance, Provenance::Derived(_)));
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
    if let Some(k) = par.num("recompute_layers") {
        let mode = par.sym("recompute").unwrap_or("none");
        if mode != "full" || k < 1.0 {
            out.push(
                Diagnostic::new(
                    codes::RECOMPUTE_LAYERS,
                    if k < 1.0 {
                        "recompute_layers = 0 recomputes nothing".to_string()
                    } else {
                        format!("recompute_layers = {k} needs `recompute = full` (it is `{mode}`)")
                    },
                )
                .at(at(par, "recompute_layers", exp), "here")
                .help("set `recompute = full` and `recompute_layers` to the layers of each stage to recompute (1 or more), or remove `recompute_layers`"),
            );
        }
    }
    if let Some(heads) = model.num("heads") {
        if heads % tensor != 0.0 {
            out.push(
                Diagnostic::new(
                    codes::HEADS_TENSOR,
                    format!("{heads} attention heads do not split over tensor = {tensor}"),
                )
                .at(at(par, "tensor", exp), format!("tensor = {tensor}"))
                .help(format!(
                    "use a tensor size that divides {heads}: {}",
                    divisors(heads, tensor)
                )),
            );
        }
    }
    if let Some(kv) = model.num("kv_heads") {
        if kv % tensor != 0.0 && model.num("heads").is_some_and(|h| h % tensor == 0.0) {
            out.push(
                Diagnostic::new(
                    codes::KV_HEADS_TENSOR,
                    format!("{kv} key/value heads do not split over tensor = {tensor}"),
                )
                .at(at(par, "tensor", exp), format!("tensor = {tensor}"))
                .help(format!(
                    "use a tensor size that divides {kv}: {}",
                    divisors(kv, tensor)
                )),
            );
        }
    }
    if let Some(layers) = model.num("layers") {
        layers_over_stages(layers, par, exp, out);
    }
    let per_node = exp
        .record("cluster")
        .and_then(|c| c.record("node"))
        .and_then(|n| n.num("gpus_per_node"));
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
    let mut ds: Vec<u64> = (1..=n.min(1024)).filter(|d| n.is_multiple_of(*d)).collect();
    ds.sort_by_key(|d| ((*d as f64).ln() - near.ln()).abs().to_bits());
    let mut pick: Vec<u64> = ds.into_iter().take(4).collect();
    pick.sort();
    pick.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Layers over pipeline stages: stages with a declared count (`first_stage_layers`,
/// `last_stage_layers`) take theirs; the other stages, times the virtual stages, split the
/// rest evenly with at least one layer each.
fn layers_over_stages(layers: f64, par: &Record, exp: &Record, out: &mut Vec<Diagnostic>) {
    let size = |f: &str| par.num(f).unwrap_or(1.0);
    let (pipeline, virtual_stages) = (size("pipeline"), size("virtual_stages"));
    if let Some(stages) = par.nums("stage_layers") {
        let here = at(par, "stage_layers", exp);
        let sum: f64 = stages.iter().sum();
        let problem = if stages.len() as f64 != pipeline {
            Some(format!(
                "{} stage counts for pipeline = {pipeline}",
                stages.len()
            ))
        } else if sum != layers {
            Some(format!(
                "the stages hold {sum} layers, but the model has {layers}"
            ))
        } else if virtual_stages > 1.0 {
            Some("stage_layers with virtual_stages > 1".to_string())
        } else if par.num("first_stage_layers").is_some() || par.num("last_stage_layers").is_some()
        {
            Some("stage_layers beside first_stage_layers / last_stage_layers".to_string())
        } else {
            None
        };
        if let Some(message) = problem {
            out.push(
                Diagnostic::new(codes::LAYERS_PIPELINE, message)
                    .at(here, "stage_layers")
                    .help(format!(
                        "give one layer count per pipeline stage ({pipeline}), summing to {layers}, without virtual stages or first/last_stage_layers"
                    )),
            );
        }
        return;
    }
    let (first, last) = (par.num("first_stage_layers"), par.num("last_stage_layers"));
    let fixed_stages = [first, last].iter().flatten().count() as f64;
    let fixed_layers = first.unwrap_or(0.0) + last.unwrap_or(0.0);
    let here = at(par, "pipeline", exp);
    let error = |message: String, help: String| {
        Diagnostic::new(codes::LAYERS_PIPELINE, message)
            .at(here, format!("pipeline = {pipeline}"))
            .help(help)
    };
    if fixed_stages > 0.0 && (fixed_stages > pipeline || fixed_layers > layers) {
        out.push(error(
            format!("the first/last stages take {fixed_layers} of {layers} layers on {pipeline} pipeline stages"),
            "first_stage_layers and last_stage_layers need a pipeline of their own stages and at most the model's layers".into(),
        ));
        return;
    }
    let middle = pipeline - fixed_stages;
    let remaining = layers - fixed_layers;
    let chunks = middle * virtual_stages;
    if middle == 0.0 {
        if remaining != 0.0 {
            out.push(error(
                format!("the first and last stages take {fixed_layers} layers, but the model has {layers}"),
                format!("make first_stage_layers + last_stage_layers = {layers}"),
            ));
        }
        return;
    }
    if remaining % chunks == 0.0 && remaining >= chunks {
        return;
    }
    let over = match (fixed_stages > 0.0, virtual_stages > 1.0) {
        (false, false) => format!("pipeline = {pipeline} stages"),
        (false, true) => {
            format!("pipeline × virtual_stages = {pipeline} × {virtual_stages} chunks")
        }
        (true, false) => format!("the {middle} other pipeline stages"),
        (true, true) => {
            format!("the {middle} other pipeline stages × {virtual_stages} virtual stages")
        }
    };
    let rest = if fixed_stages > 0.0 {
        format!(" left after the first/last stages' {fixed_layers}")
    } else {
        String::new()
    };
    out.push(error(
        format!("{remaining} layers{rest} do not divide evenly over {over} ({} each)", crate::units::trim(remaining / chunks)),
        format!(
            "use a number of stages that divides {remaining} ({}), or set `first_stage_layers` / `last_stage_layers` for an uneven pipeline",
            divisors(remaining.max(1.0), chunks)
        ),
    ));
}
