//! Emitting launch files: the plan rendered through minijinja templates kept in templates/.
//! Every value in an emitted file comes from the plan; what a target cannot express is a
//! diagnostic (K-E001), never silently dropped.

mod context;
mod engines;
pub mod write;

use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::plan::RunPlan;
use crate::span::Span;
use minijinja::Environment;

/// The targets `kiln emit --target` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Local,
    Slurm,
    Kubernetes,
    Megatron,
    Torchtitan,
    Deepspeed,
}

impl Target {
    pub const ALL: [Target; 6] = [
        Target::Local,
        Target::Slurm,
        Target::Kubernetes,
        Target::Megatron,
        Target::Torchtitan,
        Target::Deepspeed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Local => "local",
            Target::Slurm => "slurm",
            Target::Kubernetes => "kubernetes",
            Target::Megatron => "megatron",
            Target::Torchtitan => "torchtitan",
            Target::Deepspeed => "deepspeed",
        }
    }

    pub fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One emitted file: its path relative to the output directory, its text, and whether it
/// is a script to mark executable.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub path: String,
    pub text: String,
    pub executable: bool,
}

/// The templates, embedded from templates/ at build time.
const TEMPLATES: &[(&str, &str)] = &[
    ("local.sh", include_str!("../../../templates/local.sh.j2")),
    (
        "slurm_submit.sh",
        include_str!("../../../templates/slurm_submit.sh.j2"),
    ),
    (
        "slurm_step.sbatch",
        include_str!("../../../templates/slurm_step.sbatch.j2"),
    ),
    (
        "kubernetes.yaml",
        include_str!("../../../templates/kubernetes.yaml.j2"),
    ),
    (
        "megatron.sh",
        include_str!("../../../templates/megatron.sh.j2"),
    ),
    (
        "torchtitan.py",
        include_str!("../../../templates/torchtitan.py.j2"),
    ),
    // One sbatch script per phase for the engine targets (context::engine_sbatch).
    (
        "megatron.sbatch",
        include_str!("../../../templates/megatron.sbatch.j2"),
    ),
    (
        "torchtitan.sbatch",
        include_str!("../../../templates/torchtitan.sbatch.j2"),
    ),
    (
        "deepspeed.json",
        include_str!("../../../templates/deepspeed.json.j2"),
    ),
];

/// Quotes a value for a POSIX shell: single quotes, with each `'` closed, escaped and
/// reopened, so that no declared name, path or string can run a command.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .expect("templates parse (tested)");
    }
    env.add_filter("shell", |v: String| shell_quote(&v));
    env.add_filter("shell_words", |v: Vec<String>| {
        v.iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    });
    env
}

/// A problem the target cannot express, pointed at the experiment.
pub fn cannot_express(
    target: Target,
    what: impl Into<String>,
    help: impl Into<String>,
    at: Span,
) -> Diagnostic {
    Diagnostic::new(
        codes::CANNOT_EXPRESS,
        format!(
            "the {} target cannot express {}",
            target.name(),
            what.into()
        ),
    )
    .at(at, "declared here")
    .help(help)
}

/// Renders the files of one target. `at` names the experiment for diagnostics.
pub fn emit(
    plan: &RunPlan,
    target: Target,
    at: &dyn Fn(&str) -> Span,
) -> (Vec<File>, Vec<Diagnostic>) {
    let env = environment();
    let mut diags = Vec::new();
    let render = |name: &str, ctx: &minijinja::Value| {
        env.get_template(name)
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| panic!("template {name}: {e:#}"))
    };
    let plan_json = serde_json::to_string_pretty(plan).expect("plan serialises") + "\n";
    let mut files = vec![File {
        path: "plan.json".into(),
        text: plan_json,
        executable: false,
    }];
    match target {
        Target::Local => {
            let ctx = context::local(plan);
            files.push(File {
                path: "run.sh".into(),
                text: render("local.sh", &ctx),
                executable: true,
            });
        }
        Target::Slurm => {
            let (submit, jobs) = context::slurm(plan);
            files.push(File {
                path: "submit.sh".into(),
                text: render("slurm_submit.sh", &submit),
                executable: true,
            });
            for (name, ctx) in jobs {
                files.push(File {
                    path: format!("{name}.sbatch"),
                    text: render("slurm_step.sbatch", &ctx),
                    executable: true,
                });
            }
        }
        Target::Kubernetes => {
            let ctx = engines::kubernetes(plan, &mut diags, at);
            files.push(File {
                path: "kubernetes.yaml".into(),
                text: render("kubernetes.yaml", &ctx),
                executable: false,
            });
        }
        Target::Megatron => {
            for (name, ctx) in engines::megatron(plan, &mut diags, at) {
                let script = format!("{name}.sh");
                files.push(File {
                    path: script.clone(),
                    text: render("megatron.sh", &ctx),
                    executable: true,
                });
                if let Some(job) =
                    context::engine_sbatch(plan, context::Engine::Megatron, &script, &ctx)
                {
                    files.push(File {
                        path: format!("{name}.sbatch"),
                        text: render("megatron.sbatch", &job),
                        executable: true,
                    });
                }
            }
        }
        Target::Torchtitan => {
            for (name, ctx) in engines::torchtitan(plan, &mut diags, at) {
                let config = format!("{name}.py");
                files.push(File {
                    path: config.clone(),
                    text: render("torchtitan.py", &ctx),
                    executable: false,
                });
                if let Some(job) =
                    context::engine_sbatch(plan, context::Engine::Torchtitan, &config, &ctx)
                {
                    files.push(File {
                        path: format!("{name}.sbatch"),
                        text: render("torchtitan.sbatch", &job),
                        executable: true,
                    });
                }
            }
        }
        Target::Deepspeed => {
            for (name, ctx) in engines::deepspeed(plan, &mut diags, at) {
                files.push(File {
                    path: format!("{name}.json"),
                    text: render("deepspeed.json", &ctx),
                    executable: false,
                });
            }
        }
    }
    (files, diags)
}
