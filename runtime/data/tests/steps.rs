//! Data steps of a hand-written plan (tests/common `plan_with`), run in this process: the ingest step's document limit
//! from its parameters (and the steps after it reading with it), and a step's output
//! directory left whole with the temporaries of killed runs removed.

use std::fs;
use std::path::Path;

mod common;

use kiln_data::plan::Plan;
use kiln_data::steps::{run_step, StepContext, StepOutcome};
use serde_json::{json, Value};

/// A plan of two steps: ingest `web.jsonl` (with `limit`, if given) and exact dedup.
fn plan(limit: Option<u64>) -> Plan {
    let mut ingest = json!({ "source": "web", "path": "web.jsonl", "text_field": "text" });
    if let Some(limit) = limit {
        ingest["max_document_bytes"] = json!(limit);
    }
    let plan = common::plan_with(
        json!([{ "name": "web", "path": "web.jsonl", "text_field": "text",
                 "unique_tokens": null, "max_epochs": 4.0 }]),
        vec![
            json!({ "id": "ing", "kind": "ingest", "name": "ingest.web", "inputs": [],
                    "outputs": ["steps/ingest.web"], "params": ingest }),
            json!({ "id": "exa", "kind": "exact_dedup", "name": "exact_dedup.web",
                    "inputs": ["ing"], "outputs": ["steps/exact_dedup.web"],
                    "params": { "false_positive": 1e-6, "expected_docs": null } }),
        ],
    );
    Plan::from_json(&plan.to_string()).unwrap()
}

fn report(outcome: StepOutcome) -> Value {
    match outcome {
        StepOutcome::Done { report, .. } => report,
        other => panic!("not run: {other:?}"),
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn the_ingest_steps_limit_comes_from_the_plan_and_carries_downstream() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut text = String::new();
    for n in [10, 150, 20, 300] {
        text += &(json!({ "text": "a".repeat(n) }).to_string() + "\n");
    }
    fs::write(src.join("web.jsonl"), text).unwrap();

    for (limit, kept) in [(Some(200), 3), (None, 4)] {
        let run = dir.path().join(format!("run-{limit:?}"));
        let mut ctx = StepContext::new(run.clone(), src.clone());
        ctx.progress = false;
        let plan = plan(limit);
        let r = report(run_step(&plan, "ingest.web", &ctx).unwrap());
        assert_eq!(r["kept_docs"], kept, "{r:#}");
        assert_eq!(r["removed"]["too_large_docs"], 4 - kept, "{r:#}");
        assert_eq!(
            r["max_document_bytes"],
            limit.unwrap_or(kiln_data::ingest::DEFAULT_MAX_DOCUMENT_BYTES)
        );
        if limit.is_some() {
            assert_eq!(r["too_large"][0]["path"], "web.jsonl");
            assert_eq!(r["too_large"][0]["line"], 4);
        }
        // The next step reads what ingest kept, all of it, with the plan's limit.
        let r = report(run_step(&plan, "exact_dedup.web", &ctx).unwrap());
        assert_eq!(
            (r["input_docs"].as_u64(), r["too_large_docs"].as_u64()),
            (Some(kept), Some(0))
        );
    }
}

#[test]
fn a_killed_steps_temporary_is_removed_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(
        src.join("web.jsonl"),
        "{\"text\": \"one\"}\n{\"text\": \"two\"}\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    let steps = run.join("steps");
    fs::create_dir_all(&steps).unwrap();
    // What a step killed midway leaves: its temporary directory, named for a process that
    // no longer runs (pid 2^22 + 1 is above Linux's largest), half filled.
    let stale = steps.join(".ingest.web.kiln-4194305-00000000deadbeef.tmp");
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("docs.jsonl.zst"), b"half").unwrap();
    let mut ctx = StepContext::new(run.clone(), src);
    ctx.progress = false;
    let plan = plan(None);
    report(run_step(&plan, "ingest.web", &ctx).unwrap());
    assert_eq!(names(&steps), ["ingest.web"]);
    assert_eq!(
        names(&steps.join("ingest.web")),
        ["docs.jsonl.zst", "report.json"]
    );
    // Done: the next run does nothing.
    assert!(matches!(
        run_step(&plan, "ingest.web", &ctx).unwrap(),
        StepOutcome::AlreadyDone { .. }
    ));
}
