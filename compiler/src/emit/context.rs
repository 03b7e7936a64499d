//! Template contexts for the launch targets that run kiln's own worker (local and Slurm) and
//! for the sbatch scripts that launch the Megatron-LM and torchtitan targets under Slurm.
//!
//! Long training under a partition's time limit (`cluster.max_job_time`): each training job
//! asks for that limit and `--signal=B:USR1@lead` (sbatch(1): the batch shell alone gets
//! SIGUSR1 `lead` seconds, give or take 60, before the end) and `--requeue`. The run then
//! checkpoints — kiln's worker on its stop file, Megatron-LM at `--exit-duration-in-mins`,
//! torchtitan at its periodic checkpoints — and the script calls `scontrol requeue
//! $SLURM_JOB_ID` (scontrol(1)): the same job id returns to the queue and starts again with
//! a fresh time limit, resuming from the checkpoint. Requeueing keeps the job id, so the
//! `afterok` dependencies of later steps wait for its final completion (a requeued job is
//! pending, not completed: sbatch(1), `--dependency`), which a chain of `singleton` jobs
//! would not give without knowing the number of jobs in advance.

use crate::plan::graph::Step;
use crate::plan::RunPlan;
use kiln_plan::StepKind;
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
    sbatch_time(seconds)
}

/// Seconds as sbatch's `--time` (D-HH:MM:SS), at most a year.
fn sbatch_time(seconds: u64) -> String {
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

/// The `#SBATCH` lines every job of the plan carries: the cluster's account, partition and
/// QoS, each only where declared.
fn site_headers(plan: &RunPlan) -> Vec<String> {
    let s = &plan.scheduler;
    [
        ("account", &s.account),
        ("partition", &s.partition),
        ("qos", &s.qos),
    ]
    .into_iter()
    .filter_map(|(flag, v)| v.as_ref().map(|v| format!("--{flag}={v}")))
    .collect()
}

/// How a training job outlives the time limit, when the cluster declares `max_job_time`:
/// its `--time` (whole minutes), the warning's lead in seconds, and the limit in minutes.
fn requeue(plan: &RunPlan) -> Option<Value> {
    let s = &plan.scheduler;
    let minutes = s.job_minutes()?;
    let lead = s.stop_lead_seconds(plan.schedule.predicted_step_time_s)?;
    Some(context! {
        time => sbatch_time(minutes * 60),
        minutes => minutes,
        lead_seconds => lead,
        // Megatron-LM's --exit-duration-in-mins, counted from its own start: the job less
        // twice the warning (start-up, the last iteration and the save), whole minutes, at
        // least one, so that it has checkpointed before the warning arrives.
        exit_minutes => ((minutes * 60).saturating_sub(2 * lead) / 60).max(1),
        exit_code => kiln_plan::EXIT_CHECKPOINTED,
        stop_file_env => kiln_plan::STOP_FILE_ENV,
    })
}

/// `submit.sh` and one sbatch script per step, chained with --dependency=afterok. Training
/// steps run as requeued jobs of at most `max_job_time` (module docs); every other step
/// asks for its own limit, capped at `max_job_time`.
pub fn slurm(plan: &RunPlan) -> (Value, Vec<(String, Value)>) {
    let headers = site_headers(plan);
    let requeue = requeue(plan);
    let max_job_seconds = plan.scheduler.job_minutes().map(|m| m * 60);
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
        let resumable = s.kind() == StepKind::Train;
        let time = match (&requeue, max_job_seconds) {
            (Some(q), _) if resumable => q
                .get_attr("time")
                .map_or_else(|_| String::new(), |t| t.to_string()),
            (_, Some(max)) => {
                let own = match r.predicted_seconds {
                    Some(p) if p.is_finite() => (p * 1.25 + 600.0).max(3600.0) as u64,
                    _ => 24 * 3600,
                };
                sbatch_time(own.min(max))
            }
            _ => time_limit(r.predicted_seconds),
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
                time => time,
                training => training,
                headers => headers,
                requeue => if resumable { requeue.clone() } else { None },
            },
        ));
        submits.push(context! { index => i, file => format!("{file}.sbatch"), deps => deps, output => s.outputs[0] });
    }
    (
        context! { experiment => plan.experiment.name, jobs => submits },
        jobs,
    )
}

/// The engine whose launch script an sbatch script runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Megatron,
    Torchtitan,
}

/// The context of one phase's sbatch script for an engine target: `script` is the file the
/// target emitted for the phase (`pretrain_main.sh`, `torchtitan_main.py`). One task per node
/// runs torchrun, which rendezvouses through c10d on the first node of the allocation.
/// `engine_ctx` is the phase's own template context (torchtitan's config `function`).
pub fn engine_sbatch(
    plan: &RunPlan,
    engine: Engine,
    script: &str,
    engine_ctx: &Value,
) -> Option<Value> {
    let phase = engine_ctx.get_attr("phase").ok()?.as_str()?.to_string();
    let phase = phase.as_str();
    let p = plan.schedule.phases.iter().find(|p| p.name == phase)?;
    let train = plan
        .steps
        .iter()
        .find(|s| s.kind() == StepKind::Train && s.name == format!("train.{phase}"))?;
    let t = &plan.topology;
    let end = p.start_step + p.steps;
    let (module, ext) = script.rsplit_once('.').unwrap_or((script, ""));
    let gpus_per_node = if runs_on_cpu(plan) {
        0
    } else {
        t.gpus_per_node
    };
    Some(context! {
        engine => match engine { Engine::Megatron => "megatron", Engine::Torchtitan => "torchtitan" },
        job_name => format!("{}.{}.{}", plan.experiment.name, match engine { Engine::Megatron => "megatron", Engine::Torchtitan => "torchtitan" }, phase)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .collect::<String>(),
        experiment => plan.experiment.name,
        phase => phase,
        script => script,
        sbatch_file => format!("{}.sbatch", script.rsplit_once('.').map_or(script, |(stem, _)| stem)),
        function => engine_ctx.get_attr("function").ok().filter(|f| !f.is_undefined()),
        module => if ext == "py" { module } else { script },
        nodes => t.nodes,
        gpus_per_node => gpus_per_node,
        procs_per_node => t.gpus_per_node,
        end => end,
        output => train.outputs[0],
        time => match plan.scheduler.job_minutes() {
            Some(m) => sbatch_time(m * 60),
            None => time_limit(train.resources.predicted_seconds),
        },
        headers => site_headers(plan),
        requeue => requeue(plan),
        rdzv_port => RDZV_PORT,
    })
}

/// torchrun's c10d rendezvous port on the first node (torchrun's default master port).
const RDZV_PORT: u16 = 29500;
