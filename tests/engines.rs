//! The engines' own validators accept what `kiln emit` writes for them: DeepSpeed's config
//! class, torchtitan's config loader and megatron-core's TransformerConfig, run inside the
//! project's Python environment (.venv, made by scripts/setup).

mod common;

use std::process::Command;

#[test]
fn engines_accept_the_emitted_configs() {
    let python = common::root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "no .venv: run `bash scripts/setup` (the README's test command does)"
    );
    for exp in ["tiny", "llama3_8b", "llama3_405b", "gpt3_175b"] {
        let base = std::env::temp_dir().join(format!("kiln-engines-{}-{exp}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let mut args = vec![common::root()
            .join("tests/engines/validate.py")
            .to_str()
            .unwrap()
            .to_string()];
        for target in ["deepspeed", "torchtitan", "megatron"] {
            let dir = base.join(target);
            let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
                .args([
                    "emit",
                    &format!("experiments/{exp}.kiln"),
                    "--target",
                    target,
                    "-o",
                    dir.to_str().unwrap(),
                ])
                .current_dir(common::root())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{exp} {target}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            args.push(format!("--{target}"));
            args.push(dir.to_str().unwrap().to_string());
        }
        let out = Command::new(&python)
            .args(&args)
            .current_dir(common::root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{exp}: the engines rejected kiln's configs:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_dir_all(&base).ok();
    }
}
