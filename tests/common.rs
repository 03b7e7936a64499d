//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository root (tests run with the package directory, compiler/, as cwd).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `.kiln` file directly in `dir` (relative to the root), sorted.
pub fn kiln_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kiln"))
        // Hidden files are other tests' temporaries (tests/cli.rs writes beside tiny.kiln).
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Checks files given relative to the root, as `kiln check` run from the root would.
pub fn check(paths: &[&Path]) -> kiln::Checked {
    std::env::set_current_dir(root()).unwrap();
    let paths: Vec<PathBuf> = paths
        .iter()
        .map(|p| p.strip_prefix(root()).unwrap_or(p).to_path_buf())
        .collect();
    kiln::check_paths(&paths, &kiln::load::FsLoader, &[]).expect("readable")
}

pub fn render(checked: &kiln::Checked) -> String {
    kiln::diagnostic::render_text(&checked.program.sources, &checked.diagnostics, false)
}

/// Checks and lowers files given relative to the root, as `kiln plan` does.
pub fn plan(paths: &[&Path]) -> kiln::Checked {
    std::env::set_current_dir(root()).unwrap();
    let paths: Vec<PathBuf> = paths
        .iter()
        .map(|p| p.strip_prefix(root()).unwrap_or(p).to_path_buf())
        .collect();
    kiln::plan_paths(&paths, &kiln::load::FsLoader, &[])
        .expect("readable")
        .0
}

/// A two-rank CPU experiment (a "node" of two CPU devices, ZeRO 1) small enough to run
/// every step in seconds: 8 optimizer steps of a 2-layer model on `web.jsonl`
/// ([`small_corpus`]).
pub const TWO_RANK_CPU_EXPERIMENT: &str = r#"
gpu cpu_rank {
  arch = cpu
  memory = 4 GB
  hbm_bandwidth = 10 GB/s
  peak_fp32 = 0.1 TFLOP/s
}

node cpu_pair {
  gpu = cpu_rank
  gpus_per_node = 2
  nvlink_bandwidth = 10 GB/s
  network_bandwidth = 10 GB/s
}

cluster cpu_pair_cluster {
  node = cpu_pair
  nodes = 1
}

model slurm_small {
  layers = 2
  hidden = 64
  ffn_hidden = 192
  heads = 4
  kv_heads = 2
  vocab = 512
  seq_len = 32
  activation = swiglu
  tied_embeddings = true
}

experiment slurm_check {
  model = slurm_small
  objective = fixed
  tokens = 8192
  batch = 1024 tokens
  cluster = cpu_pair_cluster
  parallel {
    data = auto
    micro_batch = 4
    accumulation = auto
    zero = 1
  }
  precision = fp32
  tokenizer = bpe { vocab = 512 }
  seed = 3
  checkpoint { every = 4 steps, keep = 2 }
  eval { every = 4 steps, tokens = 2K }
  source web { path = "web.jsonl", unique_tokens = 100K }

  phase main {
    tokens = auto
    mix { web = 100% }
    lr = cosine { peak = 3e-3, warmup = 2 steps, final = 3e-4 }
  }
}
"#;

/// A small corpus of distinct documents (the data steps deduplicate and filter it).
pub fn small_corpus(path: &Path) {
    let words = [
        "the", "model", "reads", "tokens", "from", "shards", "and", "learns", "which", "word",
        "comes", "next", "in", "every", "sentence", "of", "this", "small", "corpus", "written",
        "for", "a", "test", "run", "on", "two", "ranks", "under", "slurm", "today",
    ];
    let mut state = 11u64;
    let mut lines = String::new();
    for doc in 0..600 {
        let mut text = format!("Document {doc}.");
        for _ in 0..80 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push(' ');
            text.push_str(words[(state >> 33) as usize % words.len()]);
        }
        text.push('.');
        lines += &serde_json::json!({ "id": doc, "text": text }).to_string();
        lines.push('\n');
    }
    std::fs::write(path, lines).unwrap();
}
