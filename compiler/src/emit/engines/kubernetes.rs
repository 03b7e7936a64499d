//! Kubernetes: one Job per step of the plan and a headless Service through which training
//! pods reach rank 0, every pod in the run directory on a shared PersistentVolumeClaim.

use super::*;

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
