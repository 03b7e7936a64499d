//! Template contexts for the launch targets that run kiln's own worker: local and Slurm.

use crate::plan::graph::Step;
use crate::plan::RunPlan;
use minijinja::{context, Value};

/// The launcher prefix of one step on this machine (kiln-plan's one definition): training
/// steps with several ranks run under mpirun, one process per rank.
fn local_launcher(step: &Step) -> Vec<String> {
    kiln_plan::launch::local_prefix(step.resources.ranks)
}

pub fn local(plan: &RunPlan) -> Value {
    let steps: Vec<Value> = plan
        .steps
        .iter()
        .map(|s| {
            let mut argv = local_launcher(s);
            argv.extend(s.command.iter().cloned());
            context! { id => s.id, name => s.name, output => s.outputs[0], argv => argv }
        })
        .collect();
    context! { experiment => plan.experiment.name, steps => steps }
}

/// Slurm's time limit, D-HH:MM:SS: the predicted duration plus a quarter and ten minutes,
/// at least an hour (data steps have no prediction: 24 hours).
pub fn time_limit(predicted_seconds: Option<f64>) -> String {
    let seconds = match predicted_seconds {
        Some(s) if s.is_finite() => (s * 1.25 + 600.0).max(3600.0),
        _ => 24.0 * 3600.0,
    } as u64;
    let seconds = seconds.min(365 * 86400);
    format!(
        "{}-{:02}:{:02}:{:02}",
        seconds / 86400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// A job name Slurm and shells accept: letters, digits, `-`, `_`, `.`.
fn job_name(plan: &RunPlan, step: &Step) -> String {
    format!("{}.{}", plan.experiment.name, step.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether the plan's device is a CPU (`cluster.node.gpu.arch = cpu`).
fn runs_on_cpu(plan: &RunPlan) -> bool {
    plan.experiment
        .values
        .iter()
        .any(|v| v.path == "cluster.node.gpu.arch" && v.value == "cpu")
}

/// `submit.sh` and one sbatch script per step, chained with --dependency=afterok.
pub fn slurm(plan: &RunPlan) -> (Value, Vec<(String, Value)>) {
    let mut jobs = Vec::new();
    let mut submits = Vec::new();
    for (i, s) in plan.steps.iter().enumerate() {
        let file = format!("{:02}-{}", i + 1, s.name.replace('.', "-"));
        let deps: Vec<usize> = s
            .inputs
            .iter()
            .filter_map(|id| plan.steps.iter().position(|t| &t.id == id))
            .collect();
        let training = s.kind().is_training();
        let r = &s.resources;
        // A CPU device (`arch = cpu`, as `kiln calibrate` writes) runs its ranks as
        // processes: no GPUs to request.
        let gpus_per_node = if training && !runs_on_cpu(plan) {
            plan.topology.gpus_per_node
        } else {
            0
        };
        jobs.push((
            file.clone(),
            context! {
                job_name => job_name(plan, s),
                step => context! { id => s.id, name => s.name, output => s.outputs[0], command => s.command },
                nodes => r.nodes,
                tasks => r.ranks,
                tasks_per_node => if training { plan.topology.gpus_per_node } else { 1 },
                gpus_per_node => gpus_per_node,
                time => time_limit(r.predicted_seconds),
                training => training,
            },
        ));
        submits.push(context! { index => i, file => format!("{file}.sbatch"), deps => deps, output => s.outputs[0] });
    }
    (
        context! { experiment => plan.experiment.name, jobs => submits },
        jobs,
    )
}
