//! Benchmarks of `kiln check`: parse + resolve + derive + check in process, and the whole
//! `kiln check experiments/llama3_405b.kiln` process (target: under 20 ms median), and
//! `kiln explain` in process and as a whole process (target: under 30 ms median), and the
//! whole `kiln plan` process for 8,192 ranks (target: under 200 ms median), and one layout
//! analysed from its typed inputs (target: under 20 µs median), and `kiln tune`'s exhaustive
//! search on Llama 3 405B (8,560 layouts) and on a 1T model on 16,384 H100 (50,464 layouts;
//! target: under a second).
//! Run with `cargo bench -p kiln-cli --bench check`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn bench(c: &mut Criterion) {
    std::env::set_current_dir(root()).unwrap();
    let file = PathBuf::from("experiments/llama3_405b.kiln");
    let text = std::fs::read_to_string(&file).unwrap();
    c.bench_function("parse llama3_405b", |b| {
        b.iter(|| kiln::syntax::parse(0, &text).unwrap())
    });
    c.bench_function("check llama3_405b (parse+resolve+derive+check)", |b| {
        b.iter(|| {
            let checked =
                kiln::check_paths(std::slice::from_ref(&file), &kiln::load::FsLoader, &[]).unwrap();
            assert_eq!(checked.errors(), 0);
        })
    });
    c.bench_function(
        "explain llama3_405b (check + analyses + text report)",
        |b| {
            b.iter(|| {
                let checked =
                    kiln::check_paths(std::slice::from_ref(&file), &kiln::load::FsLoader, &[])
                        .unwrap();
                let exp = checked.experiments().next().unwrap();
                let (setup, analysis) = kiln::analyse::analyse(&exp.record).unwrap();
                kiln::explain::text(exp, &setup, &analysis)
            })
        },
    );
    // One layout analysed in process (target: under 20 µs, issue 12): what a layout search
    // pays per candidate once the experiment is checked (FLOPs, memory, communication, the
    // op-level step time, cost); and every analysis, the scaling laws' optima included.
    let checked =
        kiln::check_paths(std::slice::from_ref(&file), &kiln::load::FsLoader, &[]).unwrap();
    let exp = checked.experiments().next().unwrap();
    let setup = kiln::analyse::setup::Setup::from_record(&exp.record).unwrap();
    c.bench_function("one layout: analyse_layout llama3_405b", |b| {
        b.iter(|| kiln::analyse::analyse_layout(std::hint::black_box(&setup)))
    });
    c.bench_function("every analysis: analyse_setup llama3_405b", |b| {
        b.iter(|| kiln::analyse::analyse_setup(std::hint::black_box(&setup)))
    });
    c.bench_function("tune llama3_405b: every layout of 8,192 H100", |b| {
        b.iter(|| kiln::tune::search(std::hint::black_box(&setup), kiln::tune::Objective::Time))
    });
    let big = PathBuf::from("cli/benches/one_trillion.kiln");
    let checked =
        kiln::check_paths(std::slice::from_ref(&big), &kiln::load::FsLoader, &[]).unwrap();
    let exp = checked.experiments().next().unwrap();
    let big_setup = kiln::analyse::setup::Setup::from_record(&exp.record).unwrap();
    let mut group = c.benchmark_group("tune");
    group.sample_size(10);
    group.bench_function("tune a 1T model: every layout of 16,384 H100", |b| {
        b.iter(|| {
            kiln::tune::search(
                std::hint::black_box(&big_setup),
                kiln::tune::Objective::Time,
            )
        })
    });
    group.finish();
    c.bench_function("process: kiln explain experiments/llama3_405b.kiln", |b| {
        b.iter(|| {
            let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
                .args(["explain", "experiments/llama3_405b.kiln"])
                .output()
                .unwrap();
            assert!(out.status.success());
        })
    });
    c.bench_function(
        "process: kiln plan experiments/llama3_405b.kiln (8,192 ranks)",
        |b| {
            b.iter(|| {
                let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
                    .args(["plan", "experiments/llama3_405b.kiln"])
                    .output()
                    .unwrap();
                assert!(out.status.success());
            })
        },
    );
    c.bench_function("process: kiln check experiments/llama3_405b.kiln", |b| {
        b.iter(|| {
            let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
                .args(["check", "experiments/llama3_405b.kiln"])
                .output()
                .unwrap();
            assert!(out.status.success());
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
