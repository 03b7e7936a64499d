//! `kiln data …` as a user meets it: exit codes (0 done, 1 the work failed, 2 usage or IO),
//! errors that name the input and line, safe writes (an output that is an input refused
//! unless `--in-place`, the old output kept whole when a command fails midway or the disk
//! fills, temporaries of killed runs removed), threads capped to the machine, progress lines
//! off a terminal and the text summary.

mod common;
#[path = "reference/corpus.rs"]
mod corpus;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{child_command_line, child_main, execute, run_child, run_child_command};
use kiln_data::progress::Progress;

/// The child side of the tests that run a command in another process.
#[test]
fn child() {
    child_main();
}

/// JSONL of `n` distinct articles (good documents by Gopher's rules), about 2 KB each.
fn articles(n: usize, seed: u64) -> String {
    let mut rng = corpus::Rng(seed);
    (0..n)
        .map(|_| {
            let text = corpus::article(&mut rng, 4);
            serde_json::json!({ "text": text }).to_string() + "\n"
        })
        .collect()
}

fn write(path: &Path, text: &str) -> PathBuf {
    fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// Every name in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Every file under `dir` (recursively), relative path → bytes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn an_output_that_is_an_input_is_refused_unless_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = articles(20, 1);
    // Two exact copies for dedup to remove.
    text += &articles(2, 1);
    let input = write(&dir.path().join("web.jsonl"), &text);
    for command in ["dedup", "filter"] {
        let e = execute(&[command, s(&input), "--out", s(&input)]).unwrap_err();
        assert_eq!(e.1, 2, "{command}: {e}");
        assert!(e.0.contains("would replace the input"), "{e}");
        assert!(e.0.contains("--in-place"), "{command}: {e}");
        assert_eq!(fs::read_to_string(&input).unwrap(), text, "{command}");
        // Through another name for the same file (a hard link) too.
        let link = dir.path().join("link.jsonl");
        let _ = fs::remove_file(&link);
        fs::hard_link(&input, &link).unwrap();
        let e = execute(&[command, s(&input), "--out", s(&link)]).unwrap_err();
        assert_eq!(e.1, 2, "{command}: {e}");
        fs::remove_file(&link).unwrap();
        assert_eq!(fs::read_to_string(&input).unwrap(), text, "{command}");
    }
    // With --in-place the input is replaced by the kept documents, whole.
    let v = execute(&["dedup", s(&input), "--out", s(&input), "--in-place"]).unwrap();
    assert_eq!(
        (v["input_docs"].as_u64(), v["kept_docs"].as_u64()),
        (Some(22), Some(20))
    );
    let kept = fs::read_to_string(&input).unwrap();
    assert_eq!(kept.lines().count(), 20);
    let v = execute(&["filter", s(&input), "--out", s(&input), "--in-place"]).unwrap();
    assert_eq!(v["input_docs"], 20, "{v:#}");
    assert_eq!(
        fs::read_to_string(&input).unwrap().lines().count() as u64,
        v["kept_docs"].as_u64().unwrap()
    );
    assert_eq!(names(dir.path()), ["web.jsonl"]);
}

#[test]
fn tokenize_refuses_an_output_directory_that_holds_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let input = write(&out.join("docs.jsonl"), &articles(10, 2));
    let before = tree(&out);
    let e = execute(&["tokenize", s(&input), "--out", s(&out), "--vocab", "300"]).unwrap_err();
    assert_eq!(e.1, 2, "{e}");
    assert!(e.0.contains("would replace the input"), "{e}");
    assert_eq!(tree(&out), before);
    // The directory of inputs named as a directory, too.
    let e = execute(&["tokenize", s(&out), "--out", s(&out), "--vocab", "300"]).unwrap_err();
    assert_eq!(e.1, 2, "{e}");
    assert_eq!(tree(&out), before);
    assert_eq!(names(dir.path()), ["out"]);
}

#[test]
fn a_tokenize_that_fails_midway_leaves_the_old_directory_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(&dir.path().join("good.jsonl"), &articles(30, 3));
    let out = dir.path().join("tok");
    execute(&["tokenize", s(&good), "--out", s(&out), "--vocab", "300"]).unwrap();
    let before = tree(&out);
    assert!(before.iter().any(|(n, _)| n == "tokenizer.json"));
    assert!(before.iter().any(|(n, _)| n == "text_document.bin"));
    // A second input whose zstd stream is corrupt: found only while reading it, after the
    // new directory was started (an IO error: exit 2).
    let corrupt = dir.path().join("corrupt.jsonl.zst");
    let mut bytes = zstd::encode_all(articles(30, 4).as_bytes(), 3).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..].iter_mut().for_each(|b| *b ^= 0x5A);
    fs::write(&corrupt, bytes).unwrap();
    let e = execute(&[
        "tokenize",
        s(&good),
        s(&corrupt),
        "--out",
        s(&out),
        "--vocab",
        "300",
    ])
    .unwrap_err();
    assert_eq!(e.1, 2, "{e}");
    assert!(e.0.contains("corrupt.jsonl.zst"), "{e}");
    assert!(tree(&out) == before, "the old directory changed");
    // Documents without a word to train on: the training fails (exit 1) after reading.
    let empty = write(&dir.path().join("empty.jsonl"), "{\"text\": \"\"}\n");
    let e = execute(&["tokenize", s(&empty), "--out", s(&out), "--vocab", "300"]).unwrap_err();
    assert_eq!(e.1, 1, "{e}");
    assert!(tree(&out) == before, "the old directory changed");
    // Encoding with a tokenizer kept in the output directory replaces the directory whole.
    let tok = out.join("tokenizer.json");
    execute(&[
        "tokenize",
        s(&good),
        "--out",
        s(&out),
        "--tokenizer",
        s(&tok),
    ])
    .unwrap();
    assert!(tree(&out) != before);
    assert!(out.join("tokenizer.json").exists());
    // No temporary is left beside the output.
    assert_eq!(
        names(dir.path()),
        ["corrupt.jsonl.zst", "empty.jsonl", "good.jsonl", "tok"]
    );
}

/// A tmpfs of 1 MiB at `small/` in a private mount namespace (`unshare -m`, so the mount
/// vanishes with it), with `old/` copied into it; runs the command of `args` there (paths
/// relative to `dir`) and lists what `small/` holds afterwards and whether it still
/// matches `old/`. `None` where mounting is not permitted.
fn on_a_full_disk(dir: &Path, args: &[&str]) -> Option<(common::ChildRun, String)> {
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: mounting a tmpfs in a private mount namespace is not permitted here");
        return None;
    }
    let child = child_command_line("child")
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "set -e; mkdir -p small; mount -t tmpfs -o size=1m tmpfs small; cp -a old/. small/; \
         {child} || true; echo listing:; ls -A small; \
         if diff -r old small >/dev/null; then echo same-as-old; fi"
    );
    let mut command = Command::new("unshare");
    command.args(["-m", "sh", "-c", &script]).current_dir(dir);
    let run = run_child_command(command, args);
    let listing = run
        .stdout
        .split("listing:\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Some((run, listing))
}

#[test]
fn a_full_disk_keeps_the_old_output_and_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    // About 3 MB of distinct documents: their copy cannot fit on a 1 MiB disk.
    write(&dir.path().join("web.jsonl"), &articles(1500, 5));
    let old = dir.path().join("old");
    fs::create_dir(&old).unwrap();
    write(&old.join("out.jsonl"), &articles(3, 6));
    let Some((run, listing)) = on_a_full_disk(
        dir.path(),
        &["dedup", "web.jsonl", "--out", "small/out.jsonl", "--exact"],
    ) else {
        return;
    };
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("out.jsonl"), "{}", run.stderr);
    assert!(run.stderr.contains("No space left"), "{}", run.stderr);
    assert_eq!(listing.trim(), "out.jsonl\nsame-as-old", "{}", run.stdout);

    // The tokenizer's directory: the old one stays whole, no temporary directory is left.
    fs::remove_file(old.join("out.jsonl")).unwrap();
    let small = dir.path().join("small.jsonl");
    write(&small, &articles(20, 7));
    let o = execute(&[
        "tokenize",
        s(&small),
        "--out",
        s(&old.join("tok")),
        "--vocab",
        "300",
    ]);
    o.unwrap();
    let Some((run, listing)) = on_a_full_disk(
        dir.path(),
        &[
            "tokenize",
            "web.jsonl",
            "--out",
            "small/tok",
            "--vocab",
            "300",
        ],
    ) else {
        return;
    };
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("No space left"), "{}", run.stderr);
    assert_eq!(listing.trim(), "tok\nsame-as-old", "{}", run.stdout);
}

#[test]
fn a_killed_command_leaves_a_temporary_that_the_next_run_removes() {
    let dir = tempfile::tempdir().unwrap();
    // Large enough that the child is still writing when it is killed.
    write(&dir.path().join("web.jsonl"), &articles(20_000, 8));
    let line = child_command_line("child");
    let mut child = Command::new(&line[0])
        .args(&line[1..])
        .env(
            common::CHILD_ARGS,
            serde_json::to_string(&["dedup", "web.jsonl", "--out", "out.jsonl", "--exact"])
                .unwrap(),
        )
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let temporary = |dir: &Path| {
        names(dir)
            .into_iter()
            .filter(|n| n.starts_with(".out.jsonl.kiln-") && n.ends_with(".tmp"))
            .collect::<Vec<_>>()
    };
    let start = Instant::now();
    while temporary(dir.path()).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child finished too soon"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no temporary appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = temporary(dir.path());
    assert_eq!(left.len(), 1, "the killed run's temporary: {left:?}");
    assert!(!dir.path().join("out.jsonl").exists());
    // A temporary directory of a killed tokenize run (a process id that cannot exist).
    let stale_dir = dir.path().join(".tok.kiln-4194305-00000000deadbeef.tmp");
    fs::create_dir(&stale_dir).unwrap();
    fs::write(stale_dir.join("tokenizer.json"), "{").unwrap();

    let small = write(&dir.path().join("small.jsonl"), &articles(20, 9));
    execute(&[
        "dedup",
        s(&small),
        "--out",
        s(&dir.path().join("out.jsonl")),
    ])
    .unwrap();
    execute(&[
        "tokenize",
        s(&small),
        "--out",
        s(&dir.path().join("tok")),
        "--vocab",
        "300",
    ])
    .unwrap();
    assert_eq!(
        names(dir.path()),
        ["out.jsonl", "small.jsonl", "tok", "web.jsonl"]
    );
}

#[test]
fn no_document_read_is_an_error_naming_the_input_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        &dir.path().join("bad.jsonl"),
        "\n{\"body\": \"no text field\"}\n{\"body\": \"nor here\"}\n",
    );
    let out = dir.path().join("out.jsonl");
    for command in [
        &["filter", s(&bad), "--out", s(&out)][..],
        &["dedup", s(&bad), "--out", s(&out)][..],
        &[
            "tokenize",
            s(&bad),
            "--out",
            s(&dir.path().join("tok")),
            "--vocab",
            "300",
        ][..],
    ] {
        let e = execute(command).unwrap_err();
        assert_eq!(e.1, 1, "{command:?}: {e}");
        assert!(e.0.contains("no document could be read"), "{e}");
        assert!(e.0.contains("bad.jsonl"), "{e}");
        assert!(e.0.contains("line 2: no field `text`"), "{e}");
    }
    // Every document too large: the same.
    let big = write(&dir.path().join("big.jsonl"), &articles(3, 10));
    let e = execute(&[
        "filter",
        s(&big),
        "--out",
        s(&out),
        "--max-document-bytes",
        "100",
    ])
    .unwrap_err();
    assert_eq!(e.1, 1, "{e}");
    assert!(
        e.0.contains("line 1: ") && e.0.contains("more than the limit of 100"),
        "{e}"
    );
    assert_eq!(names(dir.path()), ["bad.jsonl", "big.jsonl"]);
}

#[test]
fn unusable_arguments_and_outputs_exit_2_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(&dir.path().join("web.jsonl"), &articles(5, 11));
    let inp = s(&input);
    let out = dir.path().join("out.jsonl");
    let o = s(&out);
    let tok = dir.path().join("tok");
    let t = s(&tok);
    let txt = dir.path().join("out.txt");
    let cases: [&[&str]; 10] = [
        &["dedup", "/no/such.jsonl", "--out", o],
        &["dedup", inp, "--out", o, "--false-positive", "2"],
        &["dedup", inp, "--out", o, "--near", "--bands", "0"],
        &["dedup", inp, "--out", s(&txt)],
        &["filter", inp, "--out", s(dir.path())],
        &["filter", inp, "--out", o, "--rules", "nope"],
        &["tokenize", inp, "--out", t, "--vocab", "10"],
        &[
            "tokenize",
            inp,
            "--out",
            t,
            "--tokenizer",
            "/no/tokenizer.json",
        ],
        &["tokenize", inp, "--out", inp, "--vocab", "300"],
        &["tokenize", "/no/such.jsonl", "--out", t, "--vocab", "300"],
    ];
    for args in cases {
        let e = execute(args).unwrap_err();
        assert_eq!(e.1, 2, "{args:?}: {e}");
    }
    assert_eq!(names(dir.path()), ["web.jsonl"]);
    // Zero threads is a usage error; more threads than cores are capped.
    assert_eq!(kiln_data::cli::thread_count(Some(0)).unwrap_err().1, 2);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        kiln_data::cli::thread_count(Some(100_000)).unwrap(),
        Some(cores)
    );
    assert_eq!(kiln_data::cli::thread_count(Some(1)).unwrap(), Some(1));
    assert_eq!(kiln_data::cli::thread_count(None).unwrap(), None);
}

#[test]
fn a_huge_thread_count_is_capped_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("web.jsonl"), &articles(20, 12));
    let start = Instant::now();
    let run = run_child(
        "child",
        &[
            "filter",
            "web.jsonl",
            "--out",
            "out.jsonl",
            "--threads",
            "100000",
        ],
        dir.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("note: --threads 100000 is more than the"),
        "{}",
        run.stderr
    );
    assert!(start.elapsed() < Duration::from_secs(60));
}

/// The child side of [`progress_is_logged_off_a_terminal`].
#[test]
fn progress_child() {
    if std::env::var("KILN_DATA_TEST_PROGRESS").is_err() {
        return;
    }
    let p = Progress::with_interval(true, Some(10), "encode", "docs", Duration::from_millis(50));
    p.inc(4);
    p.add_bytes(3_000_000);
    std::thread::sleep(Duration::from_millis(400));
    p.finish_and_clear();
    eprintln!("progress done");
}

#[test]
fn progress_is_logged_off_a_terminal() {
    let line = child_command_line("progress_child");
    let out = Command::new(&line[0])
        .args(&line[1..])
        .env("KILN_DATA_TEST_PROGRESS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("encode: "))
        .collect();
    assert!(lines.len() >= 3, "{stderr}");
    assert!(
        lines[0].starts_with("encode: 4 of 10 docs, 3.0 MB of text, "),
        "{stderr}"
    );
    // Nothing after the progress is finished.
    let done = stderr.find("progress done").unwrap();
    assert!(stderr[done..].lines().all(|l| !l.starts_with("encode: ")));
}

#[test]
fn the_text_summary_reports_skipped_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = articles(5, 13);
    text += "{\"text\": 3}\n";
    text += &serde_json::json!({ "text": "x".repeat(5000) }).to_string();
    text += "\n";
    write(&dir.path().join("web.jsonl"), &text);
    let run = run_child(
        "child",
        &[
            "filter",
            "web.jsonl",
            "--out",
            "out.jsonl",
            "--max-document-bytes",
            "4096",
        ],
        dir.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.summary.contains(
            "skipped 1 malformed lines (the first: web.jsonl:6: field `text` is not a string)"
        ),
        "{}",
        run.summary
    );
    assert!(
        run.summary.contains(
            "skipped 1 documents above --max-document-bytes (the first: web.jsonl:7: 5000 bytes of text"
        ),
        "{}",
        run.summary
    );
}
