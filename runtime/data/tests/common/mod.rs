//! Helpers shared by the `kiln data` command tests: running a command in this process
//! (`kiln_data::cli::execute`) or in a child process (this test binary again, to measure its
//! peak memory and exit code apart from the tests around it).

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use clap::Parser;
use kiln_data::cli::{self, DataCommand, Failure};
use serde_json::Value;

/// `kiln data …` as the `kiln` binary parses it.
#[derive(Debug, Parser)]
#[command(name = "kiln data")]
pub struct DataCli {
    #[command(subcommand)]
    pub cmd: DataCommand,
}

/// Parses `args` (without `kiln data`), panicking on a usage error.
pub fn parse(args: &[&str]) -> DataCommand {
    let mut all = vec!["kiln data"];
    all.extend_from_slice(args);
    DataCli::try_parse_from(all)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .cmd
}

/// Runs `kiln data ARGS` in this process: the summary, or the failure.
pub fn execute(args: &[&str]) -> Result<Value, Failure> {
    cli::execute(&parse(args))
}

/// The environment variable that makes [`child_main`] run a command.
pub const CHILD_ARGS: &str = "KILN_DATA_TEST_CHILD_ARGS";

/// Printed by the child before the command's own output.
const BEGIN: &str = "child-output-begin\n";

/// What a child run of a command gave.
#[derive(Debug)]
pub struct ChildRun {
    pub code: i32,
    /// What the command printed on stdout (its summary).
    pub summary: String,
    pub stdout: String,
    pub stderr: String,
    /// The child's peak resident memory (`VmHWM`), in bytes.
    pub peak_rss_bytes: u64,
}

/// The command line that runs only the test `child_test` of this test binary (which must
/// call [`child_main`]).
pub fn child_command_line(child_test: &str) -> Vec<String> {
    let exe = std::env::current_exe().expect("the test binary");
    let mut line = vec![exe.to_string_lossy().into_owned()];
    line.extend(["--exact", child_test, "--nocapture", "--test-threads", "1"].map(String::from));
    line
}

/// Runs `kiln data ARGS` in a child process: this test binary, running only the test
/// `child_test` (which must call [`child_main`]), with the arguments in [`CHILD_ARGS`].
pub fn run_child(child_test: &str, args: &[&str], cwd: &Path) -> ChildRun {
    let line = child_command_line(child_test);
    let mut command = Command::new(&line[0]);
    command.args(&line[1..]).current_dir(cwd);
    run_child_command(command, args)
}

/// Runs `command` (which runs [`child_main`], directly or from a script) with `args` in
/// [`CHILD_ARGS`].
pub fn run_child_command(mut command: Command, args: &[&str]) -> ChildRun {
    let out = command
        .env(CHILD_ARGS, serde_json::to_string(args).unwrap())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let field = |name: &str| -> Option<i64> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let code = field("child-exit-code:").unwrap_or_else(|| {
        panic!(
            "the child did not finish: {:?}\n{stdout}\n{stderr}",
            out.status
        )
    }) as i32;
    let summary = match (stdout.find(BEGIN), stdout.find("child-exit-code:")) {
        (Some(a), Some(b)) if a + BEGIN.len() <= b => stdout[a + BEGIN.len()..b].to_string(),
        _ => String::new(),
    };
    ChildRun {
        code,
        summary,
        peak_rss_bytes: field("child-peak-rss-kib:").unwrap_or(0) as u64 * 1024,
        stdout,
        stderr,
    }
}

/// The child side of [`run_child`]: runs the command of [`CHILD_ARGS`] through
/// `kiln_data::cli::run` and prints its exit code and peak memory; does nothing when the
/// variable is not set (the test then passes trivially).
pub fn child_main() {
    let Ok(args) = std::env::var(CHILD_ARGS) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).expect("child arguments");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = parse(&args);
    print!("{BEGIN}");
    let code = cli::run(cmd);
    // ExitCode has no accessor: compare with the codes kiln uses.
    let code = [0u8, 1, 2]
        .into_iter()
        .find(|c| std::process::ExitCode::from(*c) == code)
        .map_or(-1, i32::from);
    println!("child-exit-code: {code}");
    println!("child-peak-rss-kib: {}", peak_rss_kib());
}

/// This process's peak resident memory in KiB (`VmHWM` of /proc/self/status).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A whole plan of the current version around hand-written data `steps` (each with `id`,
/// `kind`, `name`, `inputs`, `outputs` and `params`; resources and command are filled in) and
/// the experiment's `sources`: what the plan crate's loader reads.
pub fn plan_with(sources: Value, steps: Vec<Value>) -> Value {
    let steps: Vec<Value> = steps
        .into_iter()
        .map(|mut s| {
            let id = s["id"].clone();
            s["resources"] =
                serde_json::json!({"ranks": 1, "nodes": 1, "gpus_per_rank": 0, "predicted_seconds": null});
            s["command"] = serde_json::json!(["kiln-worker", "--plan", "plan.json", "--step", id]);
            s
        })
        .collect();
    serde_json::json!({
        "version": kiln_plan::PLAN_VERSION,
        "experiment": {
            "name": "t", "seed": 0,
            "model": {"layers": 1, "hidden": 8, "ffn_hidden": 16, "heads": 1, "kv_heads": 1,
                      "head_dim": 8, "vocab": 300, "seq_len": 8, "tied_embeddings": true,
                      "activation": "swiglu", "norm": "rmsnorm", "position": "rope",
                      "bias": false, "dropout": 0.0, "rope_base": 10000.0,
                      "norm_eps": 1e-5, "init_std": 0.02, "params": 0,
                      "rotary_fraction": 1.0, "block": {"kind": "sequential"},
                      "embedding_norm": false},
            "optimizer": {"kind": "adamw", "beta1": 0.9, "beta2": 0.95, "eps": 1e-8,
                          "weight_decay": 0.1, "grad_clip": 1.0},
            "precision": "fp32",
            "parallel": {"zero": 0, "recompute": "none", "sequence_parallel": false,
                         "flash_attention": true, "micro_batch": 1, "accumulation": 1,
                         "first_stage_layers": null, "last_stage_layers": null},
            "tokenizer": null, "sources": sources,
            "dedup": {"exact": null, "near": null},
            "quality": {"heuristics": [], "thresholds": {}, "classifier": null, "kl": null},
            "gpu": "cpu", "values": []
        },
        "predictions": {"tokens_per_s": null, "step_time_s": null, "memory_per_gpu_bytes": null,
                        "mfu": null, "data_bytes_per_step": null, "state_bytes": null},
        "analysis": null,
        "scheduler": {"max_job_seconds": null, "account": null, "partition": null, "qos": null},
        "topology": {"world": 1, "nodes": 1, "gpus_per_node": 1, "tensor": 1, "context": 1,
                     "data": 1, "pipeline": 1, "virtual_stages": 1, "stage_layers": [1],
                     "ranks": [{"rank": 0, "node": 0, "local_rank": 0, "tensor": 0, "context": 0,
                                "data": 0, "pipeline": 0}],
                     "groups": {"tensor": [[0]], "context": [[0]], "data": [[0]], "pipeline": [[0]]}},
        "schedule": {"batch_tokens": 8.0, "seq_len": 8, "global_batch": 1, "micro_batch": 1,
                     "accumulation": 1, "batch_ramp": [], "total_steps": 0, "phases": [],
                     "checkpoint_every_steps": 1, "checkpoint_keep": 1, "eval_every_steps": 1,
                     "eval_tokens": 0.0, "predicted_step_time_s": null},
        "steps": steps
    })
}
