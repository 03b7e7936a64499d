//! `kiln-worker --plan plan.json --step ID`: runs one step of a run plan, from the run
//! directory, as the plan's step commands say: data steps through `kiln_data::steps`,
//! training and evaluation through `kiln_train`. `kiln-worker calibrate` measures this
//! machine (JSON on standard output, read by `kiln calibrate`); `kiln-worker bench --plan
//! plan.json` times steps of the plan's first train step on random tokens (JSON beside the
//! plan's predictions; scripts/gpu-check runs it on a GPU).
//!
//! Exit codes: 0 the step is done (now or before), 1 it failed, 2 the plan or the arguments
//! cannot be used.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use kiln_data::plan::{Plan, StepKind};
use kiln_data::steps::{run_step, StepContext, StepOutcome};

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

/// This process's world: the MPI job that started it (kept alive until the process ends)
/// and its collectives, or one rank alone.
fn world() -> Result<
    (
        Option<kiln_train::collective::MpiRuntime>,
        kiln_train::collective::Collective,
    ),
    ExitCode,
> {
    let mpi = kiln_train::collective::init_mpi().map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    let comm = match &mpi {
        Some(rt) => kiln_train::collective::Collective::mpi(rt),
        None => kiln_train::collective::Collective::single(),
    };
    Ok((mpi, comm))
}

/// `kiln-worker bench`: times optimizer steps of a plan's first train step.
#[derive(Debug, Parser)]
#[command(name = "kiln-worker bench")]
struct BenchCli {
    /// The run plan.
    #[arg(long)]
    plan: PathBuf,
    /// Timed optimizer steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps before them.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// `cpu`, `cuda` (the first GPU) or `auto` (CUDA when libtorch sees a GPU).
    #[arg(long, default_value = "auto")]
    device: String,
    /// libtorch's intra-op threads on the CPU.
    #[arg(long)]
    threads: Option<usize>,
    /// The ZeRO stage across ranks (under mpirun); default: the plan's.
    #[arg(long)]
    zero: Option<u64>,
}

fn bench() -> ExitCode {
    let cli = BenchCli::parse_from(std::env::args().skip(1));
    let (_mpi, comm) = match world() {
        Ok(w) => w,
        Err(code) => return code,
    };
    let (rank, ranks) = (comm.rank(), comm.size());
    let device = match cli.device.as_str() {
        "cpu" => tch::Device::Cpu,
        "cuda" if tch::Cuda::is_available() => tch::Device::Cuda(0),
        "cuda" => {
            eprintln!("error: --device cuda, but libtorch sees no CUDA GPU (check the driver and LD_LIBRARY_PATH to torch/lib)");
            return ExitCode::from(2);
        }
        "auto" => tch::Device::cuda_if_available(),
        other => {
            eprintln!("error: --device {other}: use cpu, cuda or auto");
            return ExitCode::from(2);
        }
    };
    if let Some(n) = cli.threads {
        tch::set_num_threads(n as i32);
    }
    let plan = match kiln_train::Plan::load(&cli.plan) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(step) = plan.steps.iter().find(|s| s.kind == "train") else {
        eprintln!("error: the plan has no train step");
        return ExitCode::from(2);
    };
    let p: kiln_train::spec::TrainParams = match step.params() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let zero = cli.zero.unwrap_or(p.parallel.zero);
    let timing = match kiln_train::bench::time_steps(&p, device, cli.warmup, cli.steps, comm, zero)
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: rank {rank} of {ranks}: {e}");
            return ExitCode::from(1);
        }
    };
    if rank > 0 {
        return ExitCode::SUCCESS;
    }
    let times = timing.step_s;
    let step_s = kiln_train::bench::median(&times);
    let tokens = p.batch_tokens;
    let t = &plan.analysis["throughput"];
    let predicted_step_s = t["step_time_s"].as_f64();
    // MFU scales inversely with the step time at a fixed batch: measured MFU = predicted
    // MFU × predicted step / measured step (for the plan's own world size).
    let mfu = t["mfu"]
        .as_f64()
        .zip(predicted_step_s)
        .map(|(m, s)| m * s / step_s);
    let total: f64 = times.iter().sum();
    let out = serde_json::json!({
        "ranks": ranks,
        "zero": if ranks > 1 { Some(zero) } else { None },
        "collective_share": (total > 0.0).then(|| timing.collective_s / total),
        "device": format!("{device:?}").to_lowercase(),
        "precision": p.precision.name(),
        "params": p.model.params,
        "tokens_per_step": tokens,
        "step_s": times,
        "median_step_s": step_s,
        "tokens_per_s": tokens / step_s,
        "mfu": mfu,
        "peak_rss_bytes": kiln_train::metrics::peak_rss_bytes(),
        "predicted": {
            "step_time_s": predicted_step_s,
            "tokens_per_s": t["tokens_per_s"],
            "mfu": t["mfu"],
            "memory_per_gpu_bytes": plan.analysis["memory"]["per_gpu"]["total"],
        },
    });
    println!("{out}");
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("bench") {
        return bench();
    }
    if std::env::args().nth(1).as_deref() == Some("calibrate") {
        return match kiln_train::calibrate(&Default::default()) {
            Ok(c) => {
                println!(
                    "{}",
                    serde_json::to_string(&c).expect("calibration serialises")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: calibration failed: {e}");
                ExitCode::from(1)
            }
        };
    }
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
        return train(&cli);
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

/// Runs a train or evaluate step with kiln-train (libtorch): one process, or one rank of
/// an MPI job (`mpirun`, `srun --mpi=pmix`), the ranks training data-parallel.
fn train(cli: &Cli) -> ExitCode {
    let plan = match kiln_train::Plan::load(&cli.plan) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (mpi, comm) = match world() {
        Ok(w) => w,
        Err(code) => return code,
    };
    let (rank, size) = (comm.rank(), comm.size());
    // Ranks on one machine share its cores.
    let threads = cli.threads.or_else(|| {
        (size > 1).then(|| {
            let local = std::env::var("OMPI_COMM_WORLD_LOCAL_SIZE")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(size);
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / local.max(1)).max(1)
        })
    });
    let options = kiln_train::TrainOptions {
        threads,
        progress: (cli.quiet || rank > 0).then_some(false),
        predicted_tokens_per_s: plan.predicted_tokens_per_s(),
        predicted_memory_bytes: plan.predicted_memory_bytes(),
        ..Default::default()
    };
    let result = kiln_train::steps::run_step_on(&plan, &cli.step, &cli.run_dir, &options, comm);
    let (code, message) = match result {
        Ok(
            kiln_train::StepOutcome::Done(_)
            | kiln_train::StepOutcome::AlreadyDone(_)
            | kiln_train::StepOutcome::OtherRank,
        ) => (0, None),
        Ok(kiln_train::StepOutcome::Halted { next_step }) => {
            (1, Some(format!("halted before step {next_step}")))
        }
        Err(e @ (kiln_train::TrainError::Plan(_) | kiln_train::TrainError::Unsupported(_))) => {
            (2, Some(e.to_string()))
        }
        Err(e) => (1, Some(e.to_string())),
    };
    if let Some(m) = message {
        if size > 1 {
            eprintln!("error: rank {rank} of {size}: {m}");
            // The other ranks wait in a collective: end the whole job now.
            if let Some(rt) = &mpi {
                use mpi::traits::Communicator;
                rt.universe.world().abort(code);
            }
        } else {
            eprintln!("error: {m}");
        }
    }
    ExitCode::from(code as u8)
}
