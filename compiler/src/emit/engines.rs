//! Template contexts for the engines people already run: Kubernetes, Megatron-LM,
//! torchtitan and DeepSpeed.

use super::{cannot_express, Target};
use crate::diagnostic::Diagnostic;
use crate::plan::RunPlan;
use crate::span::Span;
use minijinja::{context, Value};

pub fn kubernetes(
    plan: &RunPlan,
    _diags: &mut Vec<Diagnostic>,
    _at: &dyn Fn(&str) -> Span,
) -> Value {
    context! { plan => Value::from_serialize(plan) }
}

pub fn megatron(
    plan: &RunPlan,
    _diags: &mut Vec<Diagnostic>,
    _at: &dyn Fn(&str) -> Span,
) -> Vec<(String, Value)> {
    plan.schedule
        .phases
        .iter()
        .map(|p| {
            (
                format!("pretrain_{}", p.name),
                context! { plan => Value::from_serialize(plan) },
            )
        })
        .collect()
}

pub fn torchtitan(
    plan: &RunPlan,
    _diags: &mut Vec<Diagnostic>,
    _at: &dyn Fn(&str) -> Span,
) -> Vec<(String, Value)> {
    plan.schedule
        .phases
        .iter()
        .map(|p| {
            (
                format!("torchtitan_{}", p.name),
                context! { plan => Value::from_serialize(plan) },
            )
        })
        .collect()
}

pub fn deepspeed(
    plan: &RunPlan,
    diags: &mut Vec<Diagnostic>,
    at: &dyn Fn(&str) -> Span,
) -> Vec<(String, Value)> {
    if plan.topology.tensor > 1 {
        diags.push(cannot_express(
            Target::Deepspeed,
            "tensor parallelism",
            "DeepSpeed's JSON has no tensor-parallel size",
            at("parallel"),
        ));
    }
    plan.schedule
        .phases
        .iter()
        .map(|p| {
            (
                format!("ds_config_{}", p.name),
                context! { plan => Value::from_serialize(plan) },
            )
        })
        .collect()
}
