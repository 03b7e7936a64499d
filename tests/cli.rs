//! Tests that drive the `kiln` binary: exit codes, JSON diagnostics, `--allow`, `fmt`.

mod common;

use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(common::root())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn exit_codes() {
    assert_eq!(
        kiln(&["check", "experiments/llama3_405b.kiln"])
            .status
            .code(),
        Some(0)
    );
    // A warning alone still exits 0.
    let gpt3 = kiln(&["check", "experiments/gpt3_175b.kiln"]);
    assert_eq!(gpt3.status.code(), Some(0), "{}", stderr(&gpt3));
    assert!(stderr(&gpt3).contains("warning[K-S001]"));
    assert_eq!(
        kiln(&["check", "tests/cases/c002_mix_sum_low.kiln"])
            .status
            .code(),
        Some(1)
    );
    let missing = kiln(&["check", "experiments/does_not_exist.kiln"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("does_not_exist.kiln"));
    assert_eq!(kiln(&["check"]).status.code(), Some(2), "usage error");
    // Argument errors are usage errors (2), as the README documents, not failures (1).
    let zero_ranks = kiln(&["run", "experiments/tiny.kiln", "--ranks", "0"]);
    assert_eq!(zero_ranks.status.code(), Some(2), "{}", stderr(&zero_ranks));
    assert!(
        stderr(&zero_ranks).contains("--ranks"),
        "{}",
        stderr(&zero_ranks)
    );
    assert_eq!(
        kiln(&["check", "--format", "yaml", "experiments/tiny.kiln"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn json_diagnostics_have_the_documented_fields() {
    let out = kiln(&["check", "--format", "json", "experiments/gpt3_175b.kiln"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &json.as_array().unwrap()[0];
    for key in [
        "code", "severity", "message", "file", "line", "column", "help",
    ] {
        assert!(
            first.get(key).is_some_and(|v| !v.is_null()),
            "missing {key} in {first}"
        );
    }
    assert_eq!(first["code"], "K-S001");
    assert_eq!(first["severity"], "warning");
    assert_eq!(first["file"], "experiments/gpt3_175b.kiln");
    let clean = kiln(&[
        "check",
        "--format",
        "json",
        "experiments/chinchilla_70b.kiln",
    ]);
    assert_eq!(String::from_utf8_lossy(&clean.stdout).trim(), "[]");
}

#[test]
fn allow_on_the_command_line() {
    let out = kiln(&["check", "--allow", "K-S001", "experiments/gpt3_175b.kiln"]);
    assert!(
        stderr(&out).contains("0 errors, 0 warnings"),
        "{}",
        stderr(&out)
    );
    let unknown = kiln(&["check", "--allow", "K-S999", "experiments/tiny.kiln"]);
    assert!(stderr(&unknown).contains("K-A001"));
}

#[test]
fn text_is_plain_when_not_a_terminal_and_coloured_on_request() {
    let plain = kiln(&["check", "experiments/gpt3_175b.kiln"]);
    assert!(!stderr(&plain).contains('\u{1b}'));
    let colour = kiln(&["check", "--color", "always", "experiments/gpt3_175b.kiln"]);
    assert!(stderr(&colour).contains('\u{1b}'));
}

#[test]
fn works_from_any_directory() {
    let path = common::root().join("experiments/llama3_405b.kiln");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["check", path.to_str().unwrap()])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn values_show_provenance() {
    let out = kiln(&["check", "--values", "experiments/llama3_405b.kiln"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("model.layers = 126"), "{text}");
    assert!(text.contains("(preset llama3_405b)"));
    assert!(
        text.contains("parallel.accumulation = 32")
            && text.contains("(derived: batch / (seq_len × micro_batch × data)")
    );
}

#[test]
fn version_and_help() {
    let v = kiln(&["--version"]);
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("kiln "));
    let h = kiln(&["--help"]);
    let text = String::from_utf8_lossy(&h.stdout);
    for cmd in ["check", "fmt", "codes"] {
        assert!(text.contains(cmd));
    }
}

#[test]
fn fmt_check_and_rewrite() {
    let dir = std::env::temp_dir().join(format!("kiln-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("e.kiln");
    std::fs::write(
        &file,
        "model m {layers=2 hidden=64, ffn_hidden=128 heads=2 vocab=100 seq_len=16}  # m\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(kiln(&["fmt", "--check", f]).status.code(), Some(1));
    assert_eq!(kiln(&["fmt", f]).status.code(), Some(0));
    assert_eq!(kiln(&["fmt", "--check", f]).status.code(), Some(0));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("# m") && text.contains("  layers = 2\n"),
        "{text}"
    );
    std::fs::write(&file, "model m {").unwrap();
    let broken = kiln(&["fmt", f]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(stderr(&broken).contains("K-P001"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "model m {",
        "a file that does not parse is left alone"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Input nested far past the limit ends in exit 1 with K-P002, not a stack overflow.
#[test]
fn deep_nesting_is_a_diagnostic_not_a_crash() {
    let dir = std::env::temp_dir().join(format!("kiln-deep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        (
            "parens.kiln",
            format!(
                "experiment e {{ tokens = {}1{} }}",
                "(".repeat(100_000),
                ")".repeat(100_000)
            ),
        ),
        (
            "blocks.kiln",
            format!("experiment e {{ {} }}", "a { ".repeat(50_000)),
        ),
        (
            "ops.kiln",
            format!("experiment e {{ tokens = 1{} }}", " + 1".repeat(100_000)),
        ),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        let out = kiln(&["check", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("K-P002") || stderr(&out).contains("K-P001"),
            "{name}: {}",
            stderr(&out)
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `kiln emit --target megatron` predicts for Megatron-LM, whatever `engine =` says: the
/// plan it writes carries the step time `kiln explain` gives the same experiment with
/// `engine = megatron`, not kiln's own runtime's (experiments/llama3_8b.kiln declares none).
#[test]
fn emit_for_an_engine_predicts_for_that_engine() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("megatron");
    let emitted = kiln(&[
        "emit",
        "experiments/llama3_8b.kiln",
        "--target",
        "megatron",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(emitted.status.success(), "{}", stderr(&emitted));
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("plan.json")).unwrap()).unwrap();
    let emitted_step = plan["analysis"]["predicted_step_time_s"]
        .as_f64()
        .or_else(|| find_number(&plan, "predicted_step_time_s"))
        .expect("a predicted step time in plan.json");
    let step = |text: &str| {
        std::env::set_current_dir(common::root()).unwrap();
        let checked = kiln::check_source(
            "experiments/llama3_8b_engine.kiln",
            text,
            &kiln::load::FsLoader,
            &[],
        );
        let exp = checked.experiments().next().unwrap();
        let (_, a) = kiln::analyse::analyse(&exp.record).unwrap();
        a.throughput.unwrap().step_time_s
    };
    let text = std::fs::read_to_string(common::root().join("experiments/llama3_8b.kiln")).unwrap();
    let at = text
        .find("  precision")
        .expect("a precision line to put the engine before");
    let megatron = format!("{}  engine = megatron\n{}", &text[..at], &text[at..]);
    let (own, for_megatron) = (step(&text), step(&megatron));
    assert!(
        (own - for_megatron).abs() > 0.01 * own,
        "the engines predict alike"
    );
    assert!(
        (emitted_step - for_megatron).abs() <= 1e-9 * for_megatron,
        "emitted {emitted_step} s, Megatron-LM {for_megatron} s, kiln {own} s"
    );
}

/// The first number named `key` anywhere in `v`.
fn find_number(v: &serde_json::Value, key: &str) -> Option<f64> {
    match v {
        serde_json::Value::Object(m) => m
            .get(key)
            .and_then(|x| x.as_f64())
            .or_else(|| m.values().find_map(|x| find_number(x, key))),
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_number(x, key)),
        _ => None,
    }
}

/// `kiln check --target X` applies engine X's start-up rules whatever the file declares, and
/// `kiln emit --target X` refuses before writing anything: DeepSpeed with pipeline 8 and
/// ZeRO 3 (the example) passes for kiln's runtime and is K-E002 for DeepSpeed.
#[test]
fn check_and_emit_for_a_target_apply_its_start_up_rules() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pp8_zero3.kiln");
    let text = std::fs::read_to_string(common::root().join("experiments/llama3_8b.kiln")).unwrap();
    let text = text.replace("    pipeline = 1\n", "    pipeline = 8\n");
    assert!(text.contains("pipeline = 8") && text.contains("zero = 3"));
    std::fs::write(&file, text).unwrap();
    let file = file.to_str().unwrap();
    let own = kiln(&["check", file]);
    assert!(own.status.success(), "{}", stderr(&own));
    assert!(!stderr(&own).contains("K-E002"));
    let ds = kiln(&["check", "--target", "deepspeed", file]);
    assert_eq!(ds.status.code(), Some(1), "{}", stderr(&ds));
    let text = stderr(&ds);
    assert!(
        text.contains("error[K-E002]: DeepSpeed refuses pipeline = 8 with ZeRO stage 3"),
        "{text}"
    );
    assert!(text.contains("deepspeed/runtime/pipe/engine.py"), "{text}");
    let megatron = kiln(&["check", "--target", "megatron", file]);
    assert!(
        !stderr(&megatron).contains("K-E002"),
        "{}",
        stderr(&megatron)
    );
    let out = dir.path().join("emitted");
    let emit = kiln(&[
        "emit",
        file,
        "--target",
        "deepspeed",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(emit.status.code(), Some(1), "{}", stderr(&emit));
    assert!(stderr(&emit).contains("K-E002"));
    assert!(!out.exists(), "nothing is emitted for a refused layout");
    let unknown = kiln(&["check", "--target", "fairseq", file]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("unknown engine `fairseq`"));
}

/// Megatron-LM pads the tokenizer's vocabulary to a multiple of
/// make_vocab_size_divisible_by × tensor; the emitted divisor makes that padding land on the
/// declared vocabulary (GPT-2's 50,257 tokens in a model of 50,432 rows, tensor 8), where
/// `--make-vocab-size-divisible-by 1` gave the model the tokenizer's size.
#[test]
fn megatron_gets_the_declared_padded_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gpt3_padded.kiln");
    let text = std::fs::read_to_string(common::root().join("experiments/gpt3_175b.kiln")).unwrap();
    let text = text.replace(
        "  model = gpt3_175b\n",
        "  model = gpt3_175b { vocab = 50432 }\n",
    );
    assert!(text.contains("vocab = 50432"));
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("megatron");
    let emit = kiln(&[
        "emit",
        file.to_str().unwrap(),
        "--target",
        "megatron",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(emit.status.success(), "{}", stderr(&emit));
    assert!(
        !stderr(&emit).contains("cannot express a vocabulary"),
        "{}",
        stderr(&emit)
    );
    let script = std::fs::read_to_string(out.join("pretrain_main.sh")).unwrap();
    let flag = |name: &str| -> u64 {
        let at = script.find(name).unwrap_or_else(|| panic!("no {name}"));
        script[at + name.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (divisor, tensor) = (
        flag("--make-vocab-size-divisible-by"),
        flag("--tensor-model-parallel-size"),
    );
    // megatron/core/tokenizers/utils/build_tokenizer.py, vocab_size_with_padding.
    let multiple = divisor * tensor;
    assert_eq!(
        50_257u64.div_ceil(multiple) * multiple,
        50_432,
        "{divisor} × {tensor}"
    );
}

/// Korthikanti's `recompute = selective` has no torchtitan spelling: the emitted config has
/// no activation checkpointing (FlexAttention keeps no scores to drop), and K-E001 says so
/// instead of dropping it silently; `selective_op` becomes SelectiveAC.
#[test]
fn torchtitan_says_what_selective_recompute_becomes() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(common::root().join("experiments/tiny.kiln")).unwrap();
    for (mode, config, warned) in [
        ("selective", "activation_checkpoint=None", true),
        ("selective_op", "SelectiveAC.Config()", false),
    ] {
        // Beside tiny.kiln, whose calibration import is relative to experiments/.
        let file = tempfile::Builder::new()
            .prefix(".tiny_recompute")
            .suffix(".kiln")
            .tempfile_in(common::root().join("experiments"))
            .unwrap();
        let with = text.replace(
            "    data = auto\n",
            &format!("    data = auto\n    recompute = {mode}\n"),
        );
        assert!(with.contains(&format!("recompute = {mode}")));
        std::fs::write(file.path(), with).unwrap();
        let out = dir.path().join(mode);
        let emit = kiln(&[
            "emit",
            file.path().to_str().unwrap(),
            "--target",
            "torchtitan",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(emit.status.success(), "{}", stderr(&emit));
        assert_eq!(
            stderr(&emit).contains("cannot express `recompute = selective`"),
            warned,
            "{}",
            stderr(&emit)
        );
        let config_text = std::fs::read_to_string(out.join("torchtitan_main.py")).unwrap();
        assert!(config_text.contains(config), "{mode}: no {config}");
    }
}

#[test]
fn run_until_names_the_steps_it_knows() {
    // A name that is no step is refused before anything runs, with the plan's step names.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = kiln(&[
        "run",
        "experiments/tiny_quality.kiln",
        "--out",
        out.to_str().unwrap(),
        "--until",
        "quality_filtr",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("no step of the plan is called `quality_filtr`"),
        "{err}"
    );
    for kind in [
        "sample",
        "score",
        "train_classifier",
        "kl_reference",
        "quality_filter",
    ] {
        assert!(err.contains(kind), "{kind} missing from: {err}");
    }
    assert!(!out.join("ingest.web").exists());
}
