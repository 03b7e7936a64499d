//! `kiln-worker --plan plan.json --step ID`: runs one step of a run plan, from the run
//! directory, as the plan's step commands say: data steps through `kiln_data::steps`,
//! training and evaluation through `kiln_train`. `kiln-worker calibrate` measures this
//! machine (JSON on standard output, read by `kiln calibrate`); `kiln-worker bench --plan
//! plan.json` times steps of the plan's first train step on random tokens (JSON beside the
//! plan's predictions; scripts/gpu-check runs it on a GPU); `kiln-worker collectives
//! --backend mpi|nccl` checks the collective layer's four operations on this world (the
//! NCCL smoke test of scripts/gpu-check); `kiln-worker score --input docs.jsonl --output DIR
//! --hf DIR|--checkpoint DIR` scores a JSONL file of documents outside a plan, as a plan's
//! score step does (`kiln_train::score`), and prints its report.
//!
//! Exit codes: 0 the step is done (now or before), 1 it failed, 2 the plan or the arguments
//! cannot be used, 75 (`kiln_plan::EXIT_CHECKPOINTED`, sysexits.h's EX_TEMPFAIL) a train or
//! score step asked to stop — SIGUSR1, SIGTERM, or the file `KILN_STOP_FILE` names —
//! checkpointed (a score step: its whole batches kept) and is not finished: run the same
//! command again to resume it (the emitted sbatch scripts requeue the job).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::Parser;
use kiln_data::plan::Plan;
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
    /// Where the sources' (and a score step's scorers') relative paths are read from (the
    /// experiment's project); default: the run directory.
    #[arg(long)]
    source_root: Option<PathBuf>,
    /// Worker threads for the step's parallel work (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Hide progress bars (they are shown only on a terminal anyway).
    #[arg(long)]
    quiet: bool,
    /// Where a train, evaluate or score step runs: `plan` (its GPU per rank, CUDA device =
    /// the node-local rank, ranks joined by NCCL; the CPU when the plan's device is one, and
    /// for a score step when this machine has no GPU), `cpu` or `cuda`.
    #[arg(long, default_value = "plan")]
    device: String,
}

/// This process's world: the MPI job that started it (kept alive until the process ends)
/// and its collectives, or one rank alone. With `nccl`, the buffers' collectives go
/// through NCCL on this rank's GPU (its local rank among the node's GPUs).
fn world(
    nccl: bool,
) -> Result<
    (
        Option<kiln_train::collective::MpiRuntime>,
        kiln_train::collective::Collective,
    ),
    ExitCode,
> {
    use kiln_train::collective::Collective;
    let mpi = kiln_train::collective::init_mpi().map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    let comm = if nccl {
        let gpus = tch::Cuda::device_count().max(1) as usize;
        let local = ["OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"]
            .iter()
            .find_map(|k| std::env::var(k).ok()?.parse::<usize>().ok())
            .unwrap_or(0);
        Collective::nccl(mpi.as_ref(), local % gpus).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(2)
        })?
    } else {
        match &mpi {
            Some(rt) => Collective::mpi(rt),
            None => Collective::single(),
        }
    };
    Ok((mpi, comm))
}

/// Whether `--backend` asks for NCCL (`mpi` or `nccl`; anything else is an error).
fn nccl_backend(backend: &str) -> Result<bool, ExitCode> {
    match backend {
        "mpi" => Ok(false),
        "nccl" => {
            // Before MPI starts: NCCL from PyTorch's wheel needs LD_LIBRARY_PATH at start-up.
            kiln_train::nccl::reexec_with_nccl();
            Ok(true)
        }
        other => {
            eprintln!("error: --backend {other}: use mpi (CPU) or nccl (GPU)");
            Err(ExitCode::from(2))
        }
    }
}

/// `kiln-worker collectives`: each collective of the layer on known values, checked on
/// every rank.
#[derive(Debug, Parser)]
#[command(name = "kiln-worker collectives")]
struct CollectivesCli {
    /// `mpi` (CPU buffers) or `nccl` (this rank's GPU).
    #[arg(long, default_value = "mpi")]
    backend: String,
    /// Elements per rank in each collective.
    #[arg(long, default_value_t = 1 << 20)]
    elements: usize,
}

/// Runs all-reduce, reduce-scatter, all-gather and broadcast on values whose results are
/// known, and prints (rank 0) what each gave, the bytes sent and the seconds.
fn collectives() -> ExitCode {
    let cli = CollectivesCli::parse_from(std::env::args().skip(1));
    let nccl = match nccl_backend(&cli.backend) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let (_mpi, mut comm) = match world(nccl) {
        Ok(w) => w,
        Err(code) => return code,
    };
    match check_collectives(&mut comm, cli.elements) {
        Ok(report) => {
            if comm.rank() == 0 {
                println!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: rank {} of {}: {e}", comm.rank(), comm.size());
            comm.abort(1)
        }
    }
}

fn check_collectives(
    comm: &mut kiln_train::collective::Collective,
    k: usize,
) -> Result<serde_json::Value, String> {
    use tch::{Kind, Tensor};
    let (rank, n, device) = (comm.rank(), comm.size(), comm.device());
    let opts = (Kind::Float, device);
    let sum = (n * (n + 1) / 2) as f64;
    let err = |e: kiln_train::TrainError| e.to_string();
    // Every element of `t` equals `want`, or says where not.
    let expect = |what: &str, t: &Tensor, want: &Tensor| -> Result<(), String> {
        let diff = (t - want).abs().max().double_value(&[]);
        if diff == 0.0 {
            Ok(())
        } else {
            Err(format!("{what}: off by up to {diff}"))
        }
    };
    let start = Instant::now();
    let x = Tensor::full([k as i64], (rank + 1) as f64, opts);
    comm.all_reduce(&x).map_err(err)?;
    expect("all-reduce", &x, &Tensor::full([k as i64], sum, opts))?;
    // Rank r contributes r + 1 to every part; each rank's part sums to n(n+1)/2.
    let input = Tensor::full([(k * n) as i64], (rank + 1) as f64, opts);
    let part = Tensor::zeros([k as i64], opts);
    comm.reduce_scatter(&input, &part).map_err(err)?;
    expect(
        "reduce-scatter",
        &part,
        &Tensor::full([k as i64], sum, opts),
    )?;
    // Part r of the gathered buffer is rank r's r + 1.
    let mine = Tensor::full([k as i64], (rank + 1) as f64, opts);
    let all = Tensor::zeros([(k * n) as i64], opts);
    comm.all_gather(&mine, &all).map_err(err)?;
    let want =
        Tensor::arange_start(1, n as i64 + 1, opts).repeat_interleave_self_int(k as i64, 0, None);
    expect("all-gather", &all, &want)?;
    let b = Tensor::full([k as i64], (rank + 1) as f64, opts);
    comm.broadcast(&b, 0).map_err(err)?;
    expect("broadcast", &b, &Tensor::ones([k as i64], opts))?;
    let sent = comm.sent;
    Ok(serde_json::json!({
        "backend": comm.backend_name(),
        "ranks": n,
        "device": format!("{device:?}").to_lowercase(),
        "elements": k,
        "checked": ["all_reduce", "reduce_scatter", "all_gather", "broadcast"],
        "sent_bytes": sent,
        "seconds": start.elapsed().as_secs_f64(),
    }))
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
    /// The collectives: `mpi` (CPU) or `nccl` (GPU; data-parallel even on one rank, so
    /// that its collectives run).
    #[arg(long, default_value = "mpi")]
    backend: String,
}

fn bench() -> ExitCode {
    let cli = BenchCli::parse_from(std::env::args().skip(1));
    let nccl = match nccl_backend(&cli.backend) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let (_mpi, comm) = match world(nccl) {
        Ok(w) => w,
        Err(code) => return code,
    };
    let backend = comm.backend_name();
    let (rank, ranks) = (comm.rank(), comm.size());
    let device = match cli.device.as_str() {
        _ if nccl => comm.device(),
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
    if let Err(code) = set_torch_threads(cli.threads) {
        return code;
    }
    let plan = match kiln_train::Plan::load(&cli.plan) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(p) = plan.steps.iter().find_map(|s| match &s.params {
        kiln_plan::StepParams::Train(p) => Some(p),
        _ => None,
    }) else {
        eprintln!("error: the plan has no train step");
        return ExitCode::from(2);
    };
    let zero = cli.zero.unwrap_or(u64::from(p.parallel.zero));
    let timing = match kiln_train::bench::time_steps(p, device, cli.warmup, cli.steps, comm, zero) {
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
    let predicted = &plan.predictions;
    let predicted_step_s = predicted.step_time_s;
    // MFU scales inversely with the step time at a fixed batch: measured MFU = predicted
    // MFU × predicted step / measured step (for the plan's own world size).
    let mfu = predicted
        .mfu
        .zip(predicted_step_s)
        .map(|(m, s)| m * s / step_s);
    let total: f64 = times.iter().sum();
    let out = serde_json::json!({
        "ranks": ranks,
        "backend": backend,
        "zero": if ranks > 1 || nccl { Some(zero) } else { None },
        "collective_share": (total > 0.0).then(|| timing.collective_s / total),
        "device": format!("{device:?}").to_lowercase(),
        "precision": p.precision.as_str(),
        "params": p.model.params,
        "tokens_per_step": tokens,
        "step_s": times,
        "median_step_s": step_s,
        "tokens_per_s": tokens / step_s,
        "mfu": mfu,
        "peak_rss_bytes": kiln_train::metrics::peak_rss_bytes(),
        "predicted": {
            "step_time_s": predicted_step_s,
            "tokens_per_s": predicted.tokens_per_s,
            "mfu": predicted.mfu,
            "memory_per_gpu_bytes": predicted.memory_per_gpu_bytes,
        },
    });
    println!("{out}");
    ExitCode::SUCCESS
}

/// `calibrate [--device cpu|cuda|cuda:N]`: this CPU by default; on a GPU the training-shaped
/// GEMM grid and causal attention as well (`CalibrationConfig::gpu`).
fn calibration_config(args: &[String]) -> Result<kiln_train::CalibrationConfig, String> {
    match args {
        [] => Ok(Default::default()),
        [flag, device] if flag == "--device" => match device.as_str() {
            "cpu" => Ok(Default::default()),
            "cuda" => Ok(kiln_train::CalibrationConfig::gpu(0)),
            d => d
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(kiln_train::CalibrationConfig::gpu)
                .ok_or_else(|| format!("unknown device `{d}`: use cpu, cuda or cuda:N")),
        },
        _ => Err(format!(
            "usage: kiln-worker calibrate [--device cpu|cuda|cuda:N] (got `{}`)",
            args.join(" ")
        )),
    }
}

/// `kiln-worker score`: a JSONL file of documents scored by a language model.
#[derive(Debug, Parser)]
#[command(
    name = "kiln-worker score",
    about = "Scores a JSONL file of documents with a language model (kiln-train's score step outside a plan)"
)]
struct ScoreCli {
    /// The documents: `.jsonl` or `.jsonl.zst`, one `{"id", "text"}` object a line.
    #[arg(long)]
    input: PathBuf,
    /// The output directory: `scores.jsonl` and `report.json` (the work happens in
    /// `DIR.partial/`, which a re-run after a kill resumes).
    #[arg(long)]
    output: PathBuf,
    /// The scorer: a Hugging Face Llama-family directory (config.json, *.safetensors,
    /// tokenizer.json).
    #[arg(
        long,
        conflicts_with = "checkpoint",
        required_unless_present = "checkpoint"
    )]
    hf: Option<String>,
    /// The scorer: a finished kiln train step's output directory.
    #[arg(long)]
    checkpoint: Option<String>,
    /// The general model of `likelihood_ratio`: a Hugging Face directory.
    #[arg(long, conflicts_with = "general_checkpoint")]
    general_hf: Option<String>,
    /// The general model of `likelihood_ratio`: a kiln train step's output directory.
    #[arg(long)]
    general_checkpoint: Option<String>,
    /// `perplexity`, `likelihood_ratio` or `rating`; default: `likelihood_ratio` with a
    /// general model, else `perplexity`.
    #[arg(long)]
    method: Option<String>,
    /// The rating prompt (`rating`): a text file in which `{document}` is replaced by the
    /// document.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// The highest grade (`rating`): grades are integers in 0..=scale.
    #[arg(long, default_value_t = 5)]
    scale: u32,
    /// The longest reply in tokens (`rating`).
    #[arg(long, default_value_t = 8)]
    max_new_tokens: u32,
    /// Tokens of each document read; default: the scorer's seq_len (never more).
    #[arg(long)]
    max_tokens: Option<u64>,
    /// Documents per forward pass (and per resumable unit).
    #[arg(long, default_value_t = 16)]
    batch_docs: u64,
    /// The report on standard output: `text` or `json`.
    #[arg(long, default_value = "text")]
    format: String,
    /// `cpu`, `cuda` (the first GPU) or `auto` (CUDA when libtorch sees a GPU).
    #[arg(long, default_value = "auto")]
    device: String,
    /// libtorch's intra-op threads (fix it to resume bit-identically; default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Hide the progress (shown on a terminal as a bar, otherwise as a line every 5 s).
    #[arg(long)]
    quiet: bool,
}

/// libtorch's intra-op threads as `--threads` asks (checked as kiln-data checks it); the
/// exit status to end with when it cannot be used.
fn set_torch_threads(threads: Option<usize>) -> Result<(), ExitCode> {
    match kiln_data::cli::thread_count(threads) {
        Ok(Some(n)) => tch::set_num_threads(n as i32),
        Ok(None) => {}
        Err(kiln_data::cli::Failure(message, code)) => {
            eprintln!("error: {message}");
            return Err(ExitCode::from(code));
        }
    }
    Ok(())
}

fn score_usage(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// Runs `kiln-worker score` (see [`ScoreCli`]).
fn score() -> ExitCode {
    let cli = ScoreCli::parse_from(std::env::args().skip(1));
    use kiln_train::score::{ScoreMethod, ScorerModel};
    let scorer = match (&cli.hf, &cli.checkpoint) {
        (Some(path), _) => ScorerModel::HuggingFace { path: path.clone() },
        (None, Some(path)) => ScorerModel::Checkpoint { path: path.clone() },
        (None, None) => return score_usage("give the scorer: --hf DIR or --checkpoint DIR".into()),
    };
    let general = match (&cli.general_hf, &cli.general_checkpoint) {
        (Some(path), _) => Some(ScorerModel::HuggingFace { path: path.clone() }),
        (None, Some(path)) => Some(ScorerModel::Checkpoint { path: path.clone() }),
        (None, None) => None,
    };
    let default = if general.is_some() {
        "likelihood_ratio"
    } else {
        "perplexity"
    };
    let method = match (cli.method.as_deref().unwrap_or(default), general) {
        ("perplexity", None) => ScoreMethod::Perplexity,
        ("likelihood_ratio", Some(general)) => ScoreMethod::LikelihoodRatio { general },
        ("likelihood_ratio", None) => {
            return score_usage(
                "--method likelihood_ratio needs the general model: --general-hf DIR or --general-checkpoint DIR".into(),
            )
        }
        ("rating", None) => {
            let Some(file) = &cli.prompt_file else {
                return score_usage(
                    "--method rating needs --prompt-file F (a prompt with `{document}` in it)"
                        .into(),
                );
            };
            let prompt = match std::fs::read_to_string(file) {
                Ok(p) => p,
                Err(e) => return score_usage(format!("{}: {e}", file.display())),
            };
            ScoreMethod::Rating {
                prompt,
                scale: cli.scale,
                max_new_tokens: cli.max_new_tokens,
            }
        }
        (m @ ("perplexity" | "rating"), Some(_)) => {
            return score_usage(format!(
                "--method {m} takes no general model (--general-hf, --general-checkpoint are for likelihood_ratio)"
            ))
        }
        (other, _) => {
            return score_usage(format!(
                "--method {other}: use perplexity, likelihood_ratio or rating"
            ))
        }
    };
    let json = match cli.format.as_str() {
        "text" => false,
        "json" => true,
        other => return score_usage(format!("--format {other}: use text or json")),
    };
    let device = match cli.device.as_str() {
        "cpu" => tch::Device::Cpu,
        "cuda" if tch::Cuda::is_available() => tch::Device::Cuda(0),
        "cuda" => {
            return score_usage("--device cuda, but libtorch sees no CUDA GPU (check the driver and LD_LIBRARY_PATH to torch/lib)".into())
        }
        "auto" => tch::Device::cuda_if_available(),
        other => return score_usage(format!("--device {other}: use cpu, cuda or auto")),
    };
    if let Err(code) = set_torch_threads(cli.threads) {
        return code;
    }
    catch_stop_signals();
    let here = PathBuf::from(".");
    let job = kiln_train::score::ScoreJob {
        name: "score".into(),
        id: None,
        source: None,
        input: cli.input.clone(),
        output: cli.output.clone(),
        scorer,
        method,
        max_tokens: cli.max_tokens,
        batch_docs: cli.batch_docs,
        max_document_bytes: kiln_data::ingest::DEFAULT_MAX_DOCUMENT_BYTES,
        context: kiln_train::score::ScorerContext {
            plan: None,
            run_dir: &here,
            source_root: &here,
            device,
        },
        progress: !cli.quiet,
        stop: kiln_train::StopWhen {
            flag: Some(&STOP_REQUESTED),
            file: std::env::var_os(kiln_plan::STOP_FILE_ENV)
                .filter(|f| !f.is_empty())
                .map(PathBuf::from),
        },
    };
    let report = match kiln_train::score::score_documents(&job) {
        Ok(kiln_train::score::ScoreOutcome::Done(r)) => r,
        Ok(kiln_train::score::ScoreOutcome::AlreadyDone(r)) => {
            eprintln!("score: {} exists (already scored)", cli.output.display());
            r
        }
        Ok(kiln_train::score::ScoreOutcome::Stopped { .. }) => {
            return ExitCode::from(kiln_plan::EXIT_CHECKPOINTED)
        }
        Err(e @ (kiln_train::TrainError::Plan(_) | kiln_train::TrainError::Unsupported(_))) => {
            return score_usage(e.to_string())
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!("{}", report.render());
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("bench") {
        return bench();
    }
    if std::env::args().nth(1).as_deref() == Some("score") {
        return score();
    }
    if std::env::args().nth(1).as_deref() == Some("collectives") {
        return collectives();
    }
    if std::env::args().nth(1).as_deref() == Some("calibrate") {
        let args: Vec<String> = std::env::args().skip(2).collect();
        let config = match calibration_config(&args) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        return match kiln_train::calibrate(&config) {
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
    if step.kind().is_training() {
        return train(&cli);
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
    // At least 1, at most the machine's cores (a note says when capped).
    let threads = match kiln_data::cli::thread_count(cli.threads) {
        Ok(t) => t,
        Err(kiln_data::cli::Failure(message, code)) => {
            eprintln!("error: {message}");
            return ExitCode::from(code);
        }
    };
    let result = match threads {
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

/// Set by SIGUSR1 or SIGTERM during a train step: stop after the current optimizer step
/// with a checkpoint (kiln-train's `StopWhen`).
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// The signal handler: only async-signal-safe work (an atomic store, and `sigaction` to put
/// the signal's default action back, so that a second one ends the process at once).
extern "C" fn request_stop(signal: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
    // SAFETY: sigaction is async-signal-safe (signal-safety(7)); the struct is zeroed and
    // then given SIG_DFL.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &default, std::ptr::null_mut());
    }
}

/// Catches SIGUSR1 (Slurm's warning before the time limit, `sbatch --signal`) and SIGTERM
/// (Slurm's signal at the limit, preemption or `scancel`, with KillWait seconds before
/// SIGKILL: slurm.conf(5)) for a train step. Installed after MPI starts, so that they are
/// ours; SA_RESTART keeps interrupted system calls (MPI's, libtorch's) going.
fn catch_stop_signals() {
    for signal in [libc::SIGUSR1, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with our handler, an empty mask and SA_RESTART; the
        // handler touches only an atomic and calls sigaction.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = request_stop as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                eprintln!(
                    "warning: cannot catch signal {signal}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// Runs a train, evaluate or score step with kiln-train (libtorch): one process, or one rank
/// of an MPI job (`mpirun`, `srun --mpi=pmix`), the ranks training data-parallel.
fn train(cli: &Cli) -> ExitCode {
    let plan = match kiln_train::Plan::load(&cli.plan) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let this_step = plan
        .steps
        .iter()
        .find(|s| s.id == cli.step || s.name == cli.step);
    let gpus = this_step.map_or(0, |s| s.resources.gpus_per_rank);
    let kind = this_step.map(|s| s.kind());
    // Train and score steps stop early and resume; an evaluation keeps the signals' default
    // actions.
    let resumable = matches!(
        kind,
        Some(kiln_plan::StepKind::Train | kiln_plan::StepKind::Score)
    );
    let cuda = match (cli.device.as_str(), gpus) {
        ("plan", 0) | ("cpu", _) => false,
        // A score step runs on the plan's GPU where there is one, else on this CPU.
        ("plan", _) if kind == Some(kiln_plan::StepKind::Score) => tch::Cuda::is_available(),
        ("plan" | "cuda", _) => true,
        (other, _) => {
            eprintln!("error: --device {other}: use plan, cpu or cuda");
            return ExitCode::from(2);
        }
    };
    if cuda && !tch::Cuda::is_available() {
        eprintln!(
            "error: step {} runs on a GPU per rank, and libtorch sees none here: run it on the plan's cluster, check the driver and LD_LIBRARY_PATH to torch/lib, or pass --device cpu to run it on this CPU",
            cli.step
        );
        return ExitCode::from(2);
    }
    // Ranks on GPUs exchange their buffers through NCCL (a score step runs on one rank).
    let nccl = cuda
        && kind != Some(kiln_plan::StepKind::Score)
        && kiln_train::collective::launched_by_mpi();
    if nccl {
        kiln_train::nccl::reexec_with_nccl();
    }
    let (mpi, comm) = match world(nccl) {
        Ok(w) => w,
        Err(code) => return code,
    };
    let stop = if resumable {
        catch_stop_signals();
        kiln_train::StopWhen {
            flag: Some(&STOP_REQUESTED),
            file: std::env::var_os(kiln_plan::STOP_FILE_ENV)
                .filter(|f| !f.is_empty())
                .map(PathBuf::from),
        }
    } else {
        kiln_train::StopWhen::default()
    };
    let device = if cuda {
        comm.device_or_first_gpu()
    } else {
        tch::Device::Cpu
    };
    let (rank, size) = (comm.rank(), comm.size());
    let asked = match kiln_data::cli::thread_count(cli.threads) {
        Ok(t) => t,
        Err(kiln_data::cli::Failure(message, code)) => {
            eprintln!("error: {message}");
            return ExitCode::from(code);
        }
    };
    // Ranks on one machine share its cores.
    let threads = asked.or_else(|| {
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
        predicted_tokens_per_s: plan.predictions.tokens_per_s,
        predicted_memory_bytes: plan.predictions.memory_per_gpu_bytes,
        device,
        stop,
        source_root: cli.source_root.clone(),
        ..Default::default()
    };
    let result = kiln_train::steps::run_step_on(&plan, &cli.step, &cli.run_dir, &options, comm);
    let (code, message) = match result {
        Ok(
            kiln_train::StepOutcome::Done(_)
            | kiln_train::StepOutcome::AlreadyDone(_)
            | kiln_train::StepOutcome::Scored(_)
            | kiln_train::StepOutcome::OtherRank,
        ) => (0, None),
        Ok(kiln_train::StepOutcome::AlreadyScored(_)) => {
            eprintln!("{}: already done", cli.step);
            (0, None)
        }
        Ok(kiln_train::StepOutcome::Halted { next_step }) => {
            (1, Some(format!("halted before step {next_step}")))
        }
        // Every rank stopped at the same step after the checkpoint was in place.
        Ok(kiln_train::StepOutcome::Checkpointed { .. }) => {
            (i32::from(kiln_plan::EXIT_CHECKPOINTED), None)
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
