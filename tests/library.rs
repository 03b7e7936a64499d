//! Tests of the compiler through its library API: the standard library, the experiments,
//! derivation and provenance, and `kiln fmt` over every real file.

mod common;

use kiln::ir::{Provenance, Record, Value};

fn decl<'a>(checked: &'a kiln::Checked, name: &str) -> &'a Record {
    &checked
        .decls
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no declaration {name}"))
        .record
}

fn models() -> kiln::Checked {
    common::check(&[&common::root().join("stdlib/models.kiln")])
}

/// Every model preset's counted parameters against the count its paper reports.
#[test]
fn model_presets_match_published_params() {
    let checked = models();
    let mut report = Vec::new();
    let mut worst: f64 = 0.0;
    for d in checked.decls.iter().filter(|d| d.record.kind == "model") {
        let params = d.record.num("params").unwrap();
        let Some(published) = d.record.num("published_params") else {
            continue;
        };
        let diff = params / published - 1.0;
        worst = worst.max(diff.abs());
        report.push(format!(
            "{:<16} {:>16.0} {:>16.0} {:+.2}%",
            d.name,
            params,
            published,
            diff * 100.0
        ));
        // The papers round their names to two or three figures; GPT-3 350M and 2.7B are the
        // loosest (+1.7 %, −1.8 %: Table 2.1's labels are rounded).
        assert!(
            diff.abs() < 0.02,
            "{} counts {params}, published {published}\n{}",
            d.name,
            report.join("\n")
        );
    }
    assert!(report.len() >= 20, "{}", report.join("\n"));
}

/// Exact counts where the released checkpoints give them, and the headline models.
#[test]
fn pinned_param_counts() {
    let checked = models();
    let params = |name: &str| decl(&checked, name).num("params").unwrap();
    // Llama 3 8B: 8.03B (Dubey et al. 2024, Table 3; 8,030,261,248 in the released weights).
    assert_eq!(params("llama3_8b"), 8_030_261_248.0);
    assert_eq!(params("llama3_405b"), 405_853_388_800.0);
    assert_eq!(params("mistral_7b"), 7_241_732_096.0);
    let near = |name: &str, published: f64, tolerance: f64| {
        let p = params(name);
        assert!(
            (p / published - 1.0).abs() < tolerance,
            "{name}: {p} vs {published}"
        );
    };
    near("gpt3_175b", 175e9, 0.003); // Brown et al. 2020, Table 2.1
    near("chinchilla_70b", 70e9, 0.005); // Hoffmann et al. 2022, Table 4
    near("gopher_280b", 280e9, 0.001); // Rae et al. 2021, Table 1
    near("llama2_70b", 68_976_653_312.0, 1e-6); // released checkpoint (RoPE buffers aside)
                                                // The recipe features (partial rotary, the parallel block, the embedding norm): each
                                                // within 0.1 % of its published count, and exact where the released weights are.
                                                // GPT-NeoX-20B: Black et al. 2022, Table 1 (partial rotary, parallel block, two norms).
    assert_eq!(params("gpt_neox_20b"), 20_554_567_680.0);
    // BLOOM-176B: BigScience 2022 (ALiBi, embedding LayerNorm, tied embeddings).
    assert_eq!(params("bloom_176b"), 176_247_271_424.0);
    // GPT-J-6B: the mesh-transformer-jax README's 6,053,381,344 counts its 8 shards' copies of
    // the norms (models.kiln says how); kiln counts 6,051,291,136 (−0.035 %).
    near("gpt_j_6b", 6_053_381_344.0, 0.001);
    assert_eq!(params("gpt_j_6b"), 6_051_291_136.0);
}

#[test]
fn stdlib_checks_clean() {
    for path in common::kiln_files("stdlib") {
        let checked = common::check(&[&path]);
        let codes: Vec<&str> = checked.diagnostics.iter().map(|d| d.code.code).collect();
        // GPT-3's Table 2.1 labels three sizes by rounded names more than 1 % from their
        // shapes (350M, 1.3B, 2.7B; the comments in models.kiln say why): K-R010 says so.
        let expected: &[&str] = match path.file_stem().and_then(|s| s.to_str()) {
            Some("models") => &["K-R010", "K-R010", "K-R010"],
            _ => &[],
        };
        assert_eq!(
            codes,
            expected,
            "{}:\n{}",
            path.display(),
            common::render(&checked)
        );
        assert!(!checked.decls.is_empty());
    }
}

/// Every experiment checks with exactly the diagnostics it deserves.
#[test]
fn experiments_check_with_only_deserved_warnings() {
    for path in common::kiln_files("experiments") {
        let checked = common::check(&[&path]);
        let codes: Vec<&str> = checked.diagnostics.iter().map(|d| d.code.code).collect();
        let name = path.file_stem().unwrap().to_str().unwrap();
        let expected: &[&str] = match name {
            // 300B tokens for 175B parameters: under-trained by Chinchilla's measure; fp16 on
            // V100 needs loss scaling (advice).
            "gpt3_175b" => &["K-S001", "K-H003"],
            // Trained far past the compute-optimal point without an inference-aware objective.
            "llama3_8b" => &["K-S002"],
            // The CPU demo trains for minutes, far short of its compute-optimal tokens.
            "tiny" | "tiny_quality" => &["K-S001"],
            // The GPU check trains a few dozen steps of a 316M model.
            "gpu_check" => &["K-S001"],
            // Meta's layout fits the 80 GB by 8.6 %, inside the memory model's validated
            // band (docs/validation.md): a warning, with the changes that leave it free.
            "llama3_405b" => &["K-M002"],
            // The same layout with Llama 3's staged batch ramp: the same memory.
            "llama3_405b_ramp" => &["K-M002"],
            // 366B tokens for 176B parameters (BigScience 2022): under-trained by Chinchilla's
            // measure.
            "bloom_176b" => &["K-S001"],
            // GPT-NeoX-20B trained in fp16 (Black et al. 2022, Sec. 3): loss scaling (advice).
            "gpt_neox_20b" => &["K-H003"],
            _ => &[],
        };
        assert_eq!(codes, expected, "{name}:\n{}", common::render(&checked));
        assert_eq!(
            checked.experiments().count(),
            1,
            "{name} declares one experiment"
        );
    }
}

#[test]
fn llama3_405b_derives_the_published_topology() {
    let checked = common::check(&[&common::root().join("experiments/llama3_405b.kiln")]);
    let exp = &checked.experiments().next().unwrap().record;
    let par = exp.record("parallel").unwrap();
    assert_eq!(exp.num("world"), Some(8192.0));
    assert_eq!(par.num("data"), Some(64.0));
    // Table 4: 32 sequences per data-parallel group, one per micro-batch.
    assert_eq!(par.num("accumulation"), Some(32.0));
    assert!(matches!(
        par.slot("accumulation").unwrap().provenance,
        Provenance::Derived(_)
    ));
    let main = exp
        .lookup(&["phase".into(), "main".into(), "tokens".into()])
        .unwrap();
    assert!(matches!(main.value, Value::Num(t, _) if t == 15.6e12 - 40e6));
}

fn inline(text: &str) -> kiln::Checked {
    std::env::set_current_dir(common::root()).unwrap();
    kiln::check_source("tests/inline.kiln", text, &kiln::load::FsLoader, &[])
}

const BASE: &str = r#"
import std.models.tiny
import std.clusters.dgx_h100_pod
experiment e {
  model = tiny { seq_len = 256 }
  tokens = 40M
  batch = 2 * 131072 tokens
  cluster = dgx_h100_pod { nodes = 1 }
  parallel { tensor = 2, data = auto }
  source web { path = "web.jsonl" }
  phase main { mix { web = 100% }, lr = cosine { peak = 1e-3, final = 1e-4 } }
  phase anneal { tokens = 10% * tokens, mix { web = 100% }, lr = linear { to = 0 } }
}
"#;

#[test]
fn provenance_of_every_kind() {
    let checked = inline(BASE);
    // The demo model on 40M tokens is over-trained (advice); nothing else is reported.
    assert!(
        checked
            .diagnostics
            .iter()
            .all(|d| d.code == kiln::codes::OVER_TRAINED),
        "{}",
        common::render(&checked)
    );
    let exp = &checked.experiments().next().unwrap().record;
    let model = exp.record("model").unwrap();
    assert_eq!(
        model.slot("seq_len").unwrap().provenance,
        Provenance::Declared
    );
    assert_eq!(
        model.slot("layers").unwrap().provenance,
        Provenance::Preset("tiny".into())
    );
    assert_eq!(model.slot("norm").unwrap().provenance, Provenance::Default);
    assert!(matches!(
        model.slot("params").unwrap().provenance,
        Provenance::Derived(_)
    ));
    // Arithmetic over quantities and references: 10 % of 40M tokens, the rest to `main`.
    let tokens = |phase: &str| {
        exp.lookup(&["phase".into(), phase.into(), "tokens".into()])
            .map(|s| s.value.clone())
    };
    assert!(matches!(tokens("anneal"), Some(Value::Num(t, _)) if (t - 4e6).abs() < 1e-6));
    assert!(matches!(tokens("main"), Some(Value::Num(t, _)) if (t - 36e6).abs() < 1e-6));
    // data = world / tensor = 8 / 2; accumulation = 1024 sequences / (1 × 4).
    assert_eq!(exp.record("parallel").unwrap().num("data"), Some(4.0));
    assert_eq!(
        exp.record("parallel").unwrap().num("accumulation"),
        Some(256.0)
    );
    // The anneal starts where the cosine ended.
    let from = exp
        .lookup(&["phase".into(), "anneal".into(), "lr".into(), "from".into()])
        .unwrap();
    assert!(matches!(from.value, Value::Num(v, _) if v == 1e-4));
}

#[test]
fn allow_in_the_file_silences_a_warning_but_not_an_error() {
    let text = BASE
        .replace(
            "tokens = 40M",
            "tokens = 40M\n  allow = [\"under-trained\", \"K-C001\"]",
        )
        .replace("40M", "4M")
        .replace("10% * tokens", "1M");
    let checked = inline(&text);
    let codes: Vec<&str> = checked.diagnostics.iter().map(|d| d.code.code).collect();
    // K-S001 is silenced by name; naming the error K-C001 is itself reported.
    assert_eq!(codes, ["K-A001"], "{}", common::render(&checked));
}

#[test]
fn the_cli_allow_list_silences_warnings() {
    std::env::set_current_dir(common::root()).unwrap();
    let path = std::path::PathBuf::from("experiments/gpt3_175b.kiln");
    let allow = ["K-S001".to_string(), "fp16-loss-scaling".to_string()];
    let checked = kiln::check_paths(&[path], &kiln::load::FsLoader, &allow).unwrap();
    assert!(
        checked.diagnostics.is_empty(),
        "{}",
        common::render(&checked)
    );
}

/// `kiln fmt` is idempotent, keeps every comment, and changes no value.
#[test]
fn fmt_is_idempotent_and_keeps_comments_and_values() {
    let mut files = common::kiln_files("experiments");
    files.extend(common::kiln_files("stdlib"));
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let ast = kiln::syntax::parse(0, &text).unwrap();
        let once = kiln::syntax::fmt::format(&ast, &text);
        let ast2 = kiln::syntax::parse(0, &once).unwrap_or_else(|d| {
            panic!(
                "{}: formatted output does not parse: {}",
                path.display(),
                d.message
            )
        });
        let twice = kiln::syntax::fmt::format(&ast2, &once);
        assert_eq!(once, twice, "{}: fmt is not idempotent", path.display());
        let comments = |a: &kiln::syntax::ast::File| {
            a.comments
                .iter()
                .map(|c| c.text.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            comments(&ast),
            comments(&ast2),
            "{}: comments changed",
            path.display()
        );
        let values = |t: &str| {
            let checked = inline(t);
            checked
                .decls
                .iter()
                .map(|d| kiln::report::values(&d.record))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            values(&text),
            values(&once),
            "{}: formatting changed a value",
            path.display()
        );
    }
}

#[test]
fn fmt_layout() {
    let text = "import std.models.tiny\nexperiment e {   # head\n  model = tiny{seq_len=64}   # override\n\n\n  # about the mix\n  phase main {mix{web=60%,code=40%} lr=cosine{peak=3e-4,warmup=100 steps}}\n  allow = [\"K-C013\",]\n}\n";
    let ast = kiln::syntax::parse(0, text).unwrap();
    insta::assert_snapshot!(kiln::syntax::fmt::format(&ast, text), @r###"
    import std.models.tiny

    experiment e {  # head
      model = tiny { seq_len = 64 }  # override

      # about the mix
      phase main { mix { web = 60%, code = 40% }, lr = cosine { peak = 3e-4, warmup = 100 steps } }
      allow = ["K-C013"]
    }
    "###);
}

/// Blocks left out take their defaults, and their `auto` values are still derived.
#[test]
fn an_omitted_parallel_block_is_derived() {
    let text = BASE.replace("  parallel { tensor = 2, data = auto }\n", "");
    let checked = inline(&text);
    assert!(
        checked
            .diagnostics
            .iter()
            .all(|d| d.code == kiln::codes::OVER_TRAINED),
        "{}",
        common::render(&checked)
    );
    let par = checked
        .experiments()
        .next()
        .unwrap()
        .record
        .record("parallel")
        .unwrap()
        .clone();
    assert_eq!(par.kind, "parallel");
    assert_eq!(par.num("data"), Some(8.0));
    assert_eq!(par.num("accumulation"), Some(128.0));
}

/// Absurd but well-formed sizes end in diagnostics or numbers, never a crash or a hang.
#[test]
fn absurd_sizes_do_not_crash() {
    for (from, to) in [
        (
            "model = tiny { seq_len = 256 }",
            "model = tiny { seq_len = 256, layers = 1000000000000 }",
        ),
        (
            "parallel { tensor = 2, data = auto }",
            "parallel { tensor = 2, pipeline = 1000000000000, data = auto }",
        ),
        (
            "model = tiny { seq_len = 256 }",
            "model = tiny { seq_len = 256, hidden = 4000000000000000, heads = 4000000000000000 }",
        ),
        ("tokens = 40M", "tokens = 1e300"),
    ] {
        let text = BASE.replace(from, to);
        let checked = inline(&text);
        let exp = checked.experiments().next();
        if let Some((setup, analysis)) = exp.and_then(|e| kiln::analyse::analyse(&e.record)) {
            kiln::explain::text(exp.unwrap(), &setup, &analysis);
        }
    }
}

/// The recipe features in the analysis, each against the same model without it: the
/// parallel block keeps fewer activations outside the tensor-parallel regions (one norm
/// input; one linear input with a shared norm) and all-reduces once in the forward instead
/// of twice (3 of 4 all-reduces per layer per micro-batch, 4 of 6 under full recompute); the
/// embedding norm adds its 2·hidden parameters to the first stage and its input to the
/// first stage's activations; partial rotary moves fewer bytes (eager) and counts nothing.
#[test]
fn recipe_features_in_the_analysis() {
    let text = |model: &str, recompute: &str| {
        format!(
            r#"
import std.models.gpt3_1_3b
import std.clusters.dgx_h100_pod
experiment e {{
  model = gpt3_1_3b {{ {model} }}
  objective = fixed
  tokens = 10B
  batch = 1048576 tokens
  cluster = dgx_h100_pod {{ nodes = 1 }}
  parallel {{ tensor = 2, pipeline = 2, data = auto, micro_batch = 1, recompute = {recompute} }}
  source web {{ path = "data/web.jsonl" }}
  phase main {{ mix {{ web = 100% }}, lr = cosine {{ peak = 2e-4 }} }}
}}
"#
        )
    };
    let analyse = |model: &str, recompute: &str| {
        let checked = inline(&text(model, recompute));
        assert_eq!(checked.errors(), 0, "{}", common::render(&checked));
        let exp = checked.experiments().next().unwrap();
        kiln::analyse::analyse(&exp.record).unwrap().1
    };
    let base = analyse("", "none");
    let two_norms = analyse("block = parallel { shared_norm = false }", "none");
    let shared = analyse("block = parallel", "none");
    let (l0, l2, l1) = (
        base.memory.layer_activations,
        two_norms.memory.layer_activations,
        shared.memory.layer_activations,
    );
    // GPT-3 1.3B without dropout, 16-bit: 2 norm inputs + 2 linear inputs of sbh · 2 bytes.
    let sbh_bytes = 2048.0 * 2048.0 * 2.0;
    assert_eq!(l0.outside_tp, 4.0 * sbh_bytes);
    assert_eq!(l2.outside_tp, 3.0 * sbh_bytes);
    assert_eq!(l1.outside_tp, 2.0 * sbh_bytes);
    assert_eq!(l0.inside_tp, l1.inside_tp);
    let tensor = |a: &kiln::analyse::Analysis| a.communication.detail.tensor.bytes;
    assert!((tensor(&two_norms) / tensor(&base) - 0.75).abs() < 1e-12);
    assert_eq!(tensor(&two_norms), tensor(&shared));
    let full = |model: &str| analyse(model, "full");
    assert!((tensor(&full("block = parallel")) / tensor(&full("")) - 4.0 / 6.0).abs() < 1e-12);
    // Same matmuls: the parallel block changes no FLOPs; the shared norm drops one norm's
    // 2 · hidden parameters per layer.
    assert_eq!(two_norms.model.flops_per_token, base.model.flops_per_token);
    assert_eq!(two_norms.model.params, base.model.params);
    assert_eq!(base.model.params - shared.model.params, 24.0 * 2.0 * 2048.0);
    // The embedding norm: parameters and saved input on the first stage only.
    let emb = analyse("embedding_norm = true", "none");
    let (s0, s) = (&base.memory.per_stage, &emb.memory.per_stage);
    assert_eq!(
        s[0].params_per_gpu - s0[0].params_per_gpu,
        2.0 * 2048.0 / 2.0
    );
    assert_eq!(s[1].params_per_gpu, s0[1].params_per_gpu);
    assert!(s[0].per_gpu.activations > s0[0].per_gpu.activations);
    assert_eq!(s[1].per_gpu.activations, s0[1].per_gpu.activations);
    // Partial rotary: no parameters, no FLOPs, and no more time than rotating everything.
    let rope = analyse("position = rope", "none");
    let quarter = analyse("position = rope, rotary_fraction = 25%", "none");
    assert_eq!(quarter.model.params, rope.model.params);
    let step = |a: &kiln::analyse::Analysis| a.throughput.as_ref().unwrap().step_time_s;
    assert!(step(&quarter) <= step(&rope));
}
