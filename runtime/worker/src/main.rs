//! `kiln-worker --plan plan.json --step ID`: runs one step of a run plan, from the run
//! directory, as the plan's step commands say; data steps through `kiln_data::steps`.
//!
//! Exit codes: 0 the step is done (now or before), 1 it failed, 2 the plan or the arguments
//! cannot be used, 3 the step's kind is not built yet (training and evaluation).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use kiln_data::plan::{Plan, StepKind};
use kiln_data::steps::{run_step, StepContext, StepOutcome};

/// The exit code of a step whose kind this worker cannot run yet.
const EXIT_NOT_BUILT: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "kiln-worker",
    version,
    about = "Runs one step of a kiln run plan"
)]
struct Cli {
    /// The run plan (`kiln plan … -o plan.json`).
    #[arg(long)]
    plan: PathBuf,
    /// The step's id (or its name, such as `encode.web`).
    #[arg(long)]
    step: String,
    /// The run directory: the plan's output paths are relative to it.
    #[arg(long, default_value = ".")]
    run_dir: PathBuf,
    /// Where the sources' relative paths are read from (the experiment's project);
    /// default: the run directory.
    #[arg(long)]
    source_root: Option<PathBuf>,
    /// Worker threads for the step's parallel work (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Hide progress bars (they are shown only on a terminal anyway).
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let plan = match Plan::load(&cli.plan) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let step = match plan.step(&cli.step) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(step.kind, StepKind::Train | StepKind::Evaluate) {
        eprintln!(
            "error: step `{}`: training steps are not built yet (issue 6)",
            step.name
        );
        return ExitCode::from(EXIT_NOT_BUILT);
    }
    if step.kind == StepKind::Other {
        eprintln!(
            "error: step `{}` has a kind this worker does not know: upgrade kiln-worker",
            step.name
        );
        return ExitCode::from(2);
    }
    let mut ctx = StepContext::new(
        cli.run_dir.clone(),
        cli.source_root
            .clone()
            .unwrap_or_else(|| cli.run_dir.clone()),
    );
    if cli.quiet {
        ctx.progress = false;
    }
    let start = Instant::now();
    let name = step.name.clone();
    let id = step.id.clone();
    let result = match cli.threads {
        Some(0) => {
            eprintln!("error: --threads must be at least 1");
            return ExitCode::from(2);
        }
        Some(n) => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
            Ok(pool) => pool.install(|| run_step(&plan, &id, &ctx)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        },
        None => run_step(&plan, &id, &ctx),
    };
    match result {
        Ok(StepOutcome::Done { output, .. }) => {
            eprintln!(
                "{name}: done in {:.1} s → {}",
                start.elapsed().as_secs_f64(),
                output.display()
            );
            ExitCode::SUCCESS
        }
        Ok(StepOutcome::AlreadyDone { output }) => {
            eprintln!("{name}: already done ({})", output.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
