//! `kiln tune`: the exhaustive layout search, on Llama 3 8B on one DGX A100 node of 40 GB
//! GPUs at micro-batch 4 (the issue's example: the declared layout is out of memory).

mod common;

use serde_json::Value;
use std::process::Command;

const EXPERIMENT: &str = r#"import std.models.llama3_8b
import std.nodes.dgx_a100
import std.gpus.a100_40gb

experiment e {
  model = llama3_8b
  objective = fixed
  allow = ["over-trained", "under-trained"]
  tokens = 10B
  batch = 1048576 tokens
  cluster { node = dgx_a100 { gpu = a100_40gb }, nodes = 1 }
  precision = bf16_mixed
  engine = megatron
  parallel { micro_batch = 4 }
  tokenizer = bpe { vocab = 128256 }
  source web { path = "data/web.jsonl" }
  phase main { mix { web = 100% }, lr = cosine { peak = 3e-4 } }
}
"#;

fn tune(args: &[&str]) -> Value {
    tune_text(EXPERIMENT, args)
}

fn tune_text(experiment: &str, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e.kiln");
    std::fs::write(&file, experiment).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("tune")
        .arg(&file)
        .args(["--format", "json"])
        .args(args)
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Writes `experiment` to a file, runs `kiln tune --write --top 1` on it (which must
/// succeed), and returns the directory (kept alive), the file and what was written.
fn tune_write(experiment: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e.kiln");
    std::fs::write(&file, experiment).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["tune", "--write", "--top", "1"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&file).unwrap();
    (dir, file, written)
}

fn divisors(n: u64) -> Vec<u64> {
    (1..=n).filter(|d| n.is_multiple_of(*d)).collect()
}

/// The brute force's experiment: Llama 3 8B on four 40 GB A100s, 32 sequences a step; only
/// layouts with ZeRO 3 and partial recompute fit, so every dimension matters.
const BRUTE: &str = r#"import std.models.llama3_8b
import std.nodes.dgx_a100
import std.gpus.a100_40gb

experiment NAME {
  model = llama3_8b
  objective = fixed
  allow = ["over-trained", "under-trained"]
  tokens = 10B
  batch = 262144 tokens
  cluster { node = dgx_a100 { gpu = a100_40gb, gpus_per_node = 4 }, nodes = 1 }
  precision = bf16_mixed
  engine = megatron
  parallel { LAYOUT }
  tokenizer = bpe { vocab = 128256 }
  source web { path = "data/web.jsonl" }
  phase main { mix { web = 100% }, lr = cosine { peak = 3e-4 } }
}
"#;

/// Every layout of BRUTE, enumerated here independently of tune.rs: tensor within the node
/// dividing 32 heads and 8 KV heads; pipeline stages splitting 32 layers evenly, or with the
/// first and last stage one or two layers short (Megatron-LM's uneven stages); virtual
/// stages dividing an even stage's layers, with as many micro-batches as stages; context
/// rings; data the rest; every micro-batch of a rank's 32/data sequences; ZeRO 0-3;
/// recompute none or full (Megatron-LM; selective is `none` under FlashAttention), full of
/// every layer or of k = 1 … chunk − 1 layers a stage; sequence parallelism with tensor > 1.
/// Each as the text of a `parallel` block.
fn every_layout() -> Vec<String> {
    let (gpus, layers, sequences) = (4, 32, 32);
    let mut out = Vec::new();
    for t in divisors(gpus)
        .into_iter()
        .filter(|t| 32 % t == 0 && 8 % t == 0)
    {
        for p in divisors(gpus / t) {
            let mut splits: Vec<(Option<u64>, u64)> = Vec::new();
            if layers % p == 0 {
                splits.push((None, layers / p));
            }
            for short in [1, 2] {
                let total = layers + 2 * short;
                if p >= 3 && total % p == 0 && total / p > short {
                    splits.push((Some(total / p - short), total / p));
                }
            }
            for (edge, middle) in splits {
                let virtuals = match edge {
                    None if p > 1 => divisors(middle),
                    _ => vec![1],
                };
                for v in virtuals {
                    for c in divisors(gpus / (t * p)) {
                        let d = gpus / (t * p * c);
                        for mb in divisors(sequences / d) {
                            if v > 1 && sequences / d / mb < p {
                                continue;
                            }
                            for zero in 0..=3 {
                                for sp in [false, true] {
                                    if sp && t == 1 {
                                        continue;
                                    }
                                    let mut base = format!(
                                        "tensor = {t}, pipeline = {p}, virtual_stages = {v}, context = {c}, micro_batch = {mb}, zero = {zero}, sequence_parallel = {sp}"
                                    );
                                    if let Some(e) = edge {
                                        base += &format!(
                                            ", first_stage_layers = {e}, last_stage_layers = {e}"
                                        );
                                    }
                                    out.push(format!("{base}, recompute = none"));
                                    out.push(format!("{base}, recompute = full"));
                                    for k in 1..middle / v {
                                        out.push(format!(
                                            "{base}, recompute = full, recompute_layers = {k}"
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn tune_finds_what_a_brute_force_over_every_layout_finds() {
    // The brute force: every layout written into one file as its own experiment, resolved,
    // derived and analysed as `kiln explain` analyses it (the layout checks' errors would
    // show as derive errors); the best is the fastest that fits, ties to less memory.
    let layouts = every_layout();
    let text: String = layouts
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let exp = BRUTE.replace("NAME", &format!("e{i}")).replace("LAYOUT", l);
            // One import block for the whole file.
            if i == 0 {
                exp
            } else {
                exp.lines().skip(3).collect::<Vec<_>>().join("\n") + "\n"
            }
        })
        .collect();
    std::env::set_current_dir(common::root()).unwrap();
    let (program, diags) = kiln::load::load_text("tests/brute.kiln", &text, &kiln::load::FsLoader);
    assert!(diags.is_empty(), "{diags:?}");
    let (mut decls, diags) = kiln::resolve::resolve(&program);
    assert!(diags.is_empty(), "{diags:?}");
    let mut best: Option<(f64, f64, String)> = None;
    let mut analysed = 0;
    for decl in decls.iter_mut().filter(|d| d.record.kind == "experiment") {
        let kind = kiln::schema::kind("experiment").unwrap();
        let errors = kiln::derive::derive(&mut decl.record, kind);
        assert!(errors.is_empty(), "{}: {errors:?}", decl.name);
        let (_, a) = kiln::analyse::analyse(&decl.record).expect("analysable");
        analysed += 1;
        let memory = a.memory.per_gpu.total;
        if memory > a.memory.capacity_bytes {
            continue;
        }
        let time = a.throughput.expect("timed").step_time_s;
        if best
            .as_ref()
            .is_none_or(|(t, m, _)| time < *t || time == *t && memory < *m)
        {
            let i: usize = decl.name[1..].parse().unwrap();
            best = Some((time, memory, layouts[i].clone()));
        }
    }
    assert_eq!(analysed, layouts.len());
    let (time, memory, layout) = best.expect("a layout fits");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("brute.kiln");
    std::fs::write(
        &file,
        BRUTE
            .replace("NAME", "e")
            .replace("LAYOUT", "micro_batch = 4"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["tune", "--format", "json", "--top", "10"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["search"];
    assert_eq!(
        s["layouts"].as_u64().unwrap(),
        layouts.len() as u64,
        "exhaustive, not sampled"
    );
    assert!(
        s["evaluated"].as_u64() < s["layouts"].as_u64(),
        "the bound prunes: {s}"
    );
    let first = &s["ranked"][0];
    assert_eq!(
        first["step_time_s"].as_f64().unwrap(),
        time,
        "{first} vs {layout}"
    );
    assert_eq!(
        first["memory_bytes"].as_f64().unwrap(),
        memory,
        "{first} vs {layout}"
    );
    for field in [
        "tensor",
        "pipeline",
        "context",
        "micro_batch",
        "zero",
        "virtual_stages",
    ] {
        assert!(
            layout.contains(&format!("{field} = {},", first[field])),
            "{field}: {first} vs {layout}"
        );
    }
    match first["recompute_layers"].as_u64() {
        Some(k) => assert!(
            layout.ends_with(&format!("recompute_layers = {k}")),
            "{first} vs {layout}"
        ),
        None => assert!(!layout.contains("recompute_layers"), "{first} vs {layout}"),
    }
}

#[test]
fn the_ranking_keeps_the_batch_and_the_world() {
    let v = tune(&["--top", "10"]);
    let s = &v["search"];
    let ranked = s["ranked"].as_array().unwrap();
    assert_eq!(ranked.len(), 10);
    let times: Vec<f64> = ranked
        .iter()
        .map(|c| c["step_time_s"].as_f64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    for c in ranked {
        assert!(
            c["memory_bytes"].as_f64() <= c["capacity_bytes"].as_f64(),
            "{c}"
        );
        let product: u64 = ["tensor", "pipeline", "context", "data"]
            .iter()
            .map(|k| c[k].as_u64().unwrap())
            .product();
        assert_eq!(product, 8, "{c}");
        let sequences = c["data"].as_u64().unwrap()
            * c["micro_batch"].as_u64().unwrap()
            * c["accumulation"].as_u64().unwrap();
        assert_eq!(sequences, 128, "the batch is kept: {c}");
    }
    let declared = &s["declared"];
    assert!(
        declared["memory_bytes"].as_f64() > declared["capacity_bytes"].as_f64(),
        "the declared layout is out of memory: {declared}"
    );
}

#[test]
fn an_engine_restricts_the_search_to_what_it_runs() {
    let v = tune(&["--engine", "deepspeed", "--top", "200"]);
    assert_eq!(v["engine"], "deepspeed");
    let ranked = v["search"]["ranked"].as_array().unwrap();
    assert!(!ranked.is_empty());
    for c in ranked {
        assert_eq!(
            c["tensor"], 1,
            "DeepSpeed's config has no tensor parallelism: {c}"
        );
        assert!(
            !(c["pipeline"].as_u64() > Some(1) && c["zero"].as_u64() >= Some(2)),
            "DeepSpeed runs no pipeline with ZeRO 2 or 3: {c}"
        );
    }
    let by_memory = tune(&["--objective", "memory", "--top", "5"]);
    let memory: Vec<f64> = by_memory["search"]["ranked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["memory_bytes"].as_f64().unwrap())
        .collect();
    assert!(memory.windows(2).all(|w| w[0] <= w[1]), "{memory:?}");
}

#[test]
fn write_puts_the_best_layout_into_the_file_keeping_its_comments() {
    let best = tune(&["--top", "1"])["search"]["ranked"][0].clone();
    let text = EXPERIMENT.replace(
        "  parallel { micro_batch = 4 }",
        "  # the layout, before tuning\n  parallel { micro_batch = 4, virtual_stages = 1 }  # trailing",
    );
    let (_dir, file, written) = tune_write(&text);
    let kiln = env!("CARGO_BIN_EXE_kiln");
    assert!(written.contains("# the layout, before tuning"), "{written}");
    assert!(written.contains("# trailing"), "{written}");
    for field in [
        "tensor",
        "pipeline",
        "context",
        "micro_batch",
        "zero",
        "virtual_stages",
    ] {
        assert!(
            written.contains(&format!("{field} = {}", best[field])),
            "{field} = {} missing in:\n{written}",
            best[field]
        );
    }
    assert!(written.contains(&format!(
        "recompute = {}",
        best["recompute"].as_str().unwrap()
    )));
    // The written file checks (it fits now) and is already in the canonical layout.
    let check = Command::new(kiln).arg("check").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let fmt = Command::new(kiln)
        .args(["fmt", "--check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        fmt.status.success(),
        "{}",
        String::from_utf8_lossy(&fmt.stderr)
    );
}

#[test]
fn auto_sizes_take_the_fastest_layout_that_keeps_the_written_ones() {
    // The whole search, filtered here to the layouts that keep what the auto file writes
    // (micro-batch 4; context 1, even stages and every layer recomputed by default; sequence
    // parallelism goes with the searched tensor size), and to those that
    // fit with kiln's memory band free: the first of them is what `auto` must choose.
    let all = tune(&["--top", "100000"]);
    let band = all["memory_band"].as_f64().unwrap();
    let ranked = all["search"]["ranked"].as_array().unwrap();
    let expected = ranked
        .iter()
        .find(|c| {
            c["micro_batch"] == 4
                && c["context"] == 1
                && c["virtual_stages"] == 1
                && c["first_stage_layers"].is_null()
                && c["recompute_layers"].is_null()
                && c["memory_bytes"].as_f64().unwrap() * (1.0 + band)
                    <= c["capacity_bytes"].as_f64().unwrap()
        })
        .expect("a layout at micro-batch 4 fits")
        .clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auto.kiln");
    std::fs::write(
        &file,
        EXPERIMENT.replace(
            "parallel { micro_batch = 4 }",
            "parallel { micro_batch = 4, tensor = auto, pipeline = auto, zero = auto, recompute = auto }",
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["check", "--values", "--color", "never"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("0 errors, 0 warnings"),
        "the chosen layout leaves the band free: {summary}"
    );
    let line = |field: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(&format!("parallel.{field} ")))
            .unwrap_or_else(|| panic!("no parallel.{field} in {text}"))
            .to_string()
    };
    for field in ["tensor", "pipeline", "zero"] {
        let l = line(field);
        assert!(
            l.contains(&format!("= {} ", expected[field])),
            "{l} vs {expected}"
        );
        assert!(l.contains("searched: best of"), "{l}");
    }
    assert!(line("recompute").contains(&format!("= {} ", expected["recompute"].as_str().unwrap())));
    assert!(line("sequence_parallel").contains(&format!("= {} ", expected["sequence_parallel"])));
    assert!(line("micro_batch").contains("(declared)"));
    assert!(line("data").contains(&format!("= {} ", expected["data"])));
    assert!(line("accumulation").contains(&format!("= {} ", expected["accumulation"])));
}

#[test]
fn under_a_batch_ramp_every_offered_layout_splits_each_of_its_batches() {
    // The ramp starts at 64Ki tokens, 8 sequences of 8,192: a layout whose micro_batch × data
    // does not divide 8 cannot run it (K-C025), however well it runs the full batch.
    let ramped = EXPERIMENT
        .replace(
            "batch = 1048576 tokens",
            "batch = ramp { stages = [{ batch = 64Ki tokens, until = 1B tokens }], to = 1Mi tokens }",
        )
        .replace("parallel { micro_batch = 4 }", "parallel { micro_batch = 1, tensor = 8 }");
    let splits = |c: &Value| {
        let per_step = c["micro_batch"].as_u64().unwrap() * c["data"].as_u64().unwrap();
        8 % per_step == 0
            && (c["virtual_stages"] == 1 || 8 / per_step >= c["pipeline"].as_u64().unwrap())
    };
    let all = tune(&["--top", "100000"]);
    let all = all["search"]["ranked"].as_array().unwrap();
    let with_ramp = tune_text(&ramped, &["--top", "100000"]);
    let with_ramp = with_ramp["search"]["ranked"].as_array().unwrap();
    assert!(
        all.iter().any(|c| !splits(c)),
        "without the ramp, some fitting layouts would not split it (so the test can fail)"
    );
    assert!(!with_ramp.is_empty());
    for c in with_ramp {
        assert!(
            splits(c),
            "offered under the ramp, but it does not split 8 sequences: {c}"
        );
    }
    // The filter removes exactly the layouts that do not split (the full batch is the same).
    assert_eq!(with_ramp.len(), all.iter().filter(|c| splits(c)).count());
    // The best of them, written into the file, checks.
    let (_dir, file, _) = tune_write(&ramped);
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let check = Command::new(kiln).arg("check").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "{}\n{}",
        std::fs::read_to_string(&file).unwrap(),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn write_marks_the_comments_of_the_values_it_changes() {
    let best = tune(&["--top", "1"])["search"]["ranked"][0].clone();
    let text = EXPERIMENT.replace(
        "  parallel { micro_batch = 4 }",
        "  parallel {\n    tensor = 1  # no tensor parallelism\n    micro_batch = 4  # the issue's example\n    zero = 0\n  }",
    );
    let (_dir, _, written) = tune_write(&text);
    let mut changed = 0;
    for (field, old, comment) in [
        ("tensor", 1, "no tensor parallelism"),
        ("micro_batch", 4, "the issue's example"),
    ] {
        let new = best[field].as_u64().unwrap();
        let line = written
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{field} =")))
            .unwrap();
        if new == old {
            assert!(line.ends_with(&format!("# {comment}")), "{line}");
        } else {
            changed += 1;
            assert!(
                line.ends_with(&format!("# was {old} before `kiln tune`: {comment}")),
                "{line}"
            );
        }
    }
    assert!(
        changed > 0,
        "the best layout keeps both values: the test shows nothing\n{written}"
    );
}
