//! `kiln run` and `kiln calibrate`: the commands that execute. kiln never links libtorch; it
//! finds the `kiln-worker` program and starts it, one step (and one process per rank) at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// `kiln-worker` beside the running `kiln` (a cargo build puts both in target/…), else on PATH.
pub fn find_worker() -> Option<PathBuf> {
    let beside = std::env::current_exe().ok()?.parent()?.join("kiln-worker");
    if beside.exists() {
        return Some(beside);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("kiln-worker"))
            .find(|p| p.exists())
    })
}

fn no_worker() -> ExitCode {
    eprintln!("error: cannot find `kiln-worker` beside kiln or on PATH; build it with `cargo build --release -p kiln-worker`");
    ExitCode::from(2)
}

/// Executes every step of a plan in graph order, skipping steps whose output exists.
/// `source_root` is the directory the sources' relative paths start from (the project).
pub fn run(
    plan_json: &str,
    plan: &serde_json::Value,
    out: &Path,
    source_root: &Path,
    ranks: Option<u32>,
) -> ExitCode {
    let Some(worker) = find_worker() else {
        return no_worker();
    };
    if let Err(e) =
        std::fs::create_dir_all(out).and_then(|_| write_atomic(&out.join("plan.json"), plan_json))
    {
        eprintln!("error: cannot write the plan to `{}`: {e}", out.display());
        return ExitCode::from(2);
    }
    let steps = plan["steps"].as_array().cloned().unwrap_or_default();
    for step in &steps {
        let name = step["name"].as_str().unwrap_or("?");
        let output = step["outputs"][0].as_str().unwrap_or("");
        if !output.is_empty() && out.join(output).exists() {
            eprintln!("kiln: {name} is done, skipping");
            continue;
        }
        let id = step["id"].as_str().unwrap_or("");
        // Data steps are one process; training steps run as the plan's ranks, or as many as
        // `--ranks` asks for on this machine.
        let training = matches!(step["kind"].as_str(), Some("train" | "evaluate"));
        let planned = step["resources"]["ranks"].as_u64().unwrap_or(1) as u32;
        let ranks = if training {
            ranks.unwrap_or(planned)
        } else {
            1
        };
        eprintln!(
            "kiln: running {name} ({id}){}",
            if ranks > 1 {
                format!(" on {ranks} ranks")
            } else {
                String::new()
            }
        );
        let mut cmd = if ranks > 1 {
            let mut c = Command::new("mpirun");
            c.args([
                "--allow-run-as-root",
                "--oversubscribe",
                "-np",
                &ranks.to_string(),
            ])
            .arg(&worker);
            c
        } else {
            Command::new(&worker)
        };
        cmd.args(["--plan", "plan.json", "--step", id])
            .arg("--source-root")
            .arg(source_root)
            .current_dir(out);
        match cmd.status() {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("error: step {name} failed ({s}); its output is not written, so `kiln run` resumes from it");
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("error: cannot start the worker for {name}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    eprintln!(
        "kiln: all {} steps of {} are done in {}",
        steps.len(),
        plan["experiment"]["name"].as_str().unwrap_or("?"),
        out.display()
    );
    ExitCode::SUCCESS
}

/// Writes a file whole through kiln's safe-write rule (kiln-fsio).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    kiln_fsio::write(path, text.as_bytes()).map_err(std::io::Error::from)
}

/// Measures this machine with the worker and writes it as a kiln preset (a `cpu` GPU, a
/// one-device node and a one-node cluster) that experiments can import.
pub fn calibrate(out: &Path) -> ExitCode {
    let Some(worker) = find_worker() else {
        return no_worker();
    };
    let result = match Command::new(&worker).arg("calibrate").output() {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => {
            eprintln!(
                "error: the worker's calibration failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("error: cannot start the worker: {e}");
            return ExitCode::from(2);
        }
    };
    let m: serde_json::Value = match serde_json::from_slice(&result) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: the worker's calibration is not JSON: {e}");
            return ExitCode::from(1);
        }
    };
    let num = |k: &str| m[k].as_f64().unwrap_or(0.0);
    let text = format!(
        "# This machine, measured by `kiln calibrate` ({date}; {threads} threads). Regenerate it with\n\
         # `kiln calibrate -o {path}`. Peaks are the median matmul rates the worker measured\n\
         # with libtorch, bandwidth the median of large tensor copies (bytes read + written / s),\n\
         # matmul_half_dim the width at which [4096, d] x [d, d] fp32 matmuls reach half the rate\n\
         # (Hockney's n1/2, fitted), runtime_memory the worker's resident memory before any model.\n\n\
         gpu this_cpu {{\n  arch = cpu\n  memory = {mem} GB  # MemTotal\n  hbm_bandwidth = {bw} GB/s  # measured copy bandwidth\n  \
         peak_fp32 = {fp32} TFLOP/s  # measured fp32 matmul\n  peak_bf16 = {bf16} TFLOP/s  # measured bf16 matmul\n  peak_fp16 = {fp16} TFLOP/s  # measured fp16 matmul\n  \
         matmul_half_dim = {half}  # fitted to measured matmuls of widths 64 to 1024\n  runtime_memory = {runtime} MB  # measured VmRSS\n}}\n\n\
         node this_machine {{\n  gpu = this_cpu\n  gpus_per_node = 1\n  nvlink_bandwidth = {bw} GB/s  # ranks on one machine share memory\n  network_bandwidth = {bw} GB/s\n}}\n\n\
         cluster this_machine_cluster {{\n  node = this_machine\n  nodes = 1\n}}\n",
        date = m["date"].as_str().unwrap_or("unknown date"),
        threads = m["threads"].as_u64().unwrap_or(0),
        path = out.display(),
        mem = trim(num("memory_bytes") / 1e9),
        bw = trim(num("memory_bytes_per_s") / 1e9),
        fp32 = trim(num("matmul_fp32_flops_per_s") / 1e12),
        bf16 = trim(num("matmul_bf16_flops_per_s") / 1e12),
        fp16 = trim(num("matmul_fp16_flops_per_s") / 1e12),
        half = num("matmul_half_dim").round(),
        runtime = trim(num("runtime_bytes") / 1e6),
    );
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match write_atomic(out, &text) {
        Ok(()) => {
            eprintln!("kiln: wrote {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write `{}`: {e}", out.display());
            ExitCode::from(2)
        }
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The project an experiment file belongs to: the nearest directory above it with
/// `kiln.toml` or `.git`, else its own directory (as imports resolve, load.rs).
pub fn project_root(file: &Path) -> PathBuf {
    let dir = std::path::absolute(file)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    dir.ancestors()
        .find(|d| d.join("kiln.toml").exists() || d.join(".git").exists())
        .unwrap_or(&dir)
        .to_path_buf()
}
