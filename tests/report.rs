//! `kiln report` in a real browser: the reports of `experiments/tiny.kiln`,
//! `experiments/llama3_405b.kiln` and a finished small run opened in Debian's headless
//! Chromium (tests/cdp.rs), each chart's points checked against numbers read independently
//! (`kiln plan`, `kiln explain`, `kiln tune`, `stdlib/validation.json`, `metrics.jsonl`), no
//! console message, no request but the file itself; screenshots taken
//! (`KILN_UPDATE_SCREENSHOTS=1` rewrites `docs/report-*.png`). Fails, never skips, without
//! Chromium. Also: the HTML of tiny.kiln's report (an insta snapshot), `--watch` over a run
//! that finishes, and the refusals.

mod cdp;
mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const GIB: f64 = (1u64 << 30) as f64;

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(common::root())
        .output()
        .unwrap()
}

fn json_of(args: &[&str]) -> Value {
    let out = kiln(args);
    assert!(
        out.status.success(),
        "kiln {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn report(path: &Path, out: &Path) {
    let o = kiln(&[
        "report",
        path.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Every chart of the page: its id, declared point count, title, description, axis labels,
/// its points as [series, x, y, count] and the rows of its table.
const CHARTS_JS: &str = r#"JSON.stringify([...document.querySelectorAll('svg.chart')].map(s => ({
  chart: s.dataset.chart,
  declared: +s.dataset.points,
  title: (s.querySelector('title') || {}).textContent || '',
  desc: (s.querySelector('desc') || {}).textContent || '',
  labels: [...s.querySelectorAll('text.label')].map(t => t.textContent),
  role: s.getAttribute('role'),
  width: s.getBoundingClientRect().width,
  points: [...s.querySelectorAll('.point')].map(p => [p.dataset.series, +p.dataset.x, +p.dataset.y, +(p.dataset.count || 1)]),
  rows: s.closest('section').querySelectorAll('tbody tr').length
})))"#;

struct Chart {
    declared: usize,
    points: Vec<(String, f64, f64, usize)>,
    rows: usize,
}

/// Opens a page, checks what every report must (no complaint, no request but the file,
/// accessible charts, no horizontal scrolling at 1280 px or 760 px) and returns its charts.
fn open(browser: &mut cdp::Browser, file: &Path) -> (String, Vec<(String, Chart)>) {
    let session = browser.page(1280, 900);
    let since = browser.events.len();
    let url = browser.open(&session, file);
    let charts: Vec<Value> =
        serde_json::from_str(browser.eval(&session, CHARTS_JS).as_str().unwrap()).unwrap();
    let wide = browser.eval(
        &session,
        "document.documentElement.scrollWidth <= window.innerWidth",
    );
    assert_eq!(
        wide,
        Value::Bool(true),
        "{} scrolls sideways",
        file.display()
    );
    let mut out = Vec::new();
    for c in &charts {
        let id = c["chart"].as_str().unwrap().to_string();
        assert_eq!(c["role"], "img", "{id}");
        assert!(
            !c["title"].as_str().unwrap().is_empty(),
            "{id} has no title"
        );
        assert!(
            !c["desc"].as_str().unwrap().is_empty(),
            "{id} has no description"
        );
        assert!(
            c["labels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| !l.as_str().unwrap().is_empty()),
            "{id} has no axis label"
        );
        assert!(c["width"].as_f64().unwrap() > 600.0, "{id} is not drawn");
        let points: Vec<(String, f64, f64, usize)> = c["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap_or("").to_string(),
                    p[1].as_f64().unwrap(),
                    p[2].as_f64().unwrap(),
                    p[3].as_u64().unwrap() as usize,
                )
            })
            .collect();
        assert!(!points.is_empty(), "{id} has no points");
        let chart = Chart {
            declared: c["declared"].as_u64().unwrap() as usize,
            rows: c["rows"].as_u64().unwrap() as usize,
            points,
        };
        assert_eq!(chart.declared, chart.points.len(), "{id}");
        assert!(chart.rows > 0, "{id}'s table is empty");
        out.push((id, chart));
    }
    // Narrower than a laptop: still no sideways scrolling.
    browser.call(
        Some(&session),
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({ "width": 760, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
    );
    let narrow = browser.eval(
        &session,
        "document.documentElement.scrollWidth <= window.innerWidth",
    );
    assert_eq!(
        narrow,
        Value::Bool(true),
        "{} scrolls at 760 px",
        file.display()
    );
    browser.call(
        Some(&session),
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({ "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
    );
    browser.drain(Duration::from_millis(300));
    let complaints = browser.complaints(&session, since);
    assert!(complaints.is_empty(), "{}: {complaints:#?}", file.display());
    let requests = browser.requests(&session, since);
    assert_eq!(requests, vec![url.clone()], "{}", file.display());
    (session, out)
}

fn chart<'a>(charts: &'a [(String, Chart)], id: &str) -> &'a Chart {
    &charts
        .iter()
        .find(|(c, _)| c == id)
        .unwrap_or_else(|| panic!("no chart {id}"))
        .1
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

/// The learning-rate chart against kiln-plan's formula, and the mix chart against the plan.
fn check_schedule(charts: &[(String, Chart)], plan: &Value) {
    let schedule: kiln_plan::schedule::Schedule =
        serde_json::from_value(plan["schedule"].clone()).unwrap();
    let lr = chart(charts, "lr");
    let expected: usize = schedule
        .phases
        .iter()
        .map(|p| p.steps.min(120) as usize)
        .sum();
    assert_eq!(lr.points.len(), expected);
    for (_, x, y, _) in &lr.points {
        let step = *x as u64;
        let p = schedule
            .phases
            .iter()
            .find(|p| step >= p.start_step && step < p.start_step + p.steps)
            .unwrap();
        let want = p.lr_at(step - p.start_step);
        assert_eq!(*y, want, "learning rate at step {step}");
    }
    // Under a batch ramp, one point per batch segment of the plan, at its tokens.
    if !schedule.batch_ramp.is_empty() {
        let batch = chart(charts, "batch");
        let segments: Vec<(f64, f64)> = schedule
            .phases
            .iter()
            .flat_map(|p| p.batch.iter())
            .map(|s| (s.first_step as f64, s.batch_tokens as f64))
            .collect();
        let points: Vec<(f64, f64)> = batch.points.iter().map(|p| (p.1, p.2)).collect();
        assert_eq!(points, segments);
    }
    let mix = chart(charts, "mix");
    let mut want: Vec<f64> = schedule
        .phases
        .iter()
        .flat_map(|p| p.mix.values().map(|w| w * 100.0))
        .collect();
    let mut got: Vec<f64> = mix.points.iter().map(|p| p.2).collect();
    want.sort_by(f64::total_cmp);
    got.sort_by(f64::total_cmp);
    assert_eq!(got, want);
}

/// Memory per stage and the step time against `kiln explain --format json`.
fn check_analysis(charts: &[(String, Chart)], explain: &Value) {
    let stages = explain["memory"]["per_stage"].as_array().unwrap();
    let memory = chart(charts, "memory");
    assert_eq!(memory.points.len(), stages.len() * 7);
    assert_eq!(memory.rows, stages.len());
    for (i, stage) in stages.iter().enumerate() {
        let sum: f64 = memory
            .points
            .iter()
            .filter(|p| p.1 as usize == i)
            .map(|p| p.2)
            .sum();
        let total = stage["per_gpu"]["total"].as_f64().unwrap() / GIB;
        assert!(
            (sum - total).abs() < 1e-6 * total,
            "stage {i}: {sum} GiB drawn, {total} GiB"
        );
    }
    let step = chart(charts, "step");
    assert_eq!(step.points.len(), 8);
    let sum: f64 = step.points.iter().map(|p| p.2).sum();
    let want = explain["throughput"]["step_time_s"].as_f64().unwrap();
    assert!(
        close(sum, want) || (sum - want).abs() < 1e-9 * want,
        "{sum} s drawn, {want} s"
    );
}

/// Every fitting layout is drawn (counted where several share a spot), and the declared one.
fn check_tune(charts: &[(String, Chart)], file: &str) {
    let tune = json_of(&["tune", file, "--format", "json", "--top", "1"]);
    let fitting = tune["search"]["fitting"].as_u64().unwrap() as usize;
    let c = chart(charts, "tune");
    let counted: usize = c.points.iter().map(|p| p.3).sum();
    let declared = usize::from(!tune["search"]["declared"].is_null());
    assert_eq!(counted, fitting + declared, "{file}");
    assert_eq!(
        c.points.iter().filter(|p| p.0 == "declared layout").count(),
        declared
    );
}

fn save_screenshot(png: &[u8], name: &str) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is not a PNG");
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&tmp, png).unwrap();
    let docs = common::root().join("docs").join(name);
    if std::env::var_os("KILN_UPDATE_SCREENSHOTS").is_some() {
        std::fs::write(&docs, png).unwrap();
    }
    let committed = std::fs::read(&docs).unwrap_or_else(|_| {
        panic!(
            "{} is missing: KILN_UPDATE_SCREENSHOTS=1 cargo test -p kiln-cli --test report",
            docs.display()
        )
    });
    assert!(committed.starts_with(b"\x89PNG"), "{}", docs.display());
    assert!(
        committed.len() < 300 * 1024,
        "{} is over 300 KB",
        docs.display()
    );
}

/// The page from the top of section `from` to the bottom of section `to`, CSS pixels.
fn clip(browser: &mut cdp::Browser, session: &str, from: &str, to: &str) -> [f64; 4] {
    let v = browser.eval(
        session,
        &format!(
            "(() => {{ const a = {from}.getBoundingClientRect(), b = {to}.getBoundingClientRect(); \
             return [0, a.top + window.scrollY - 8, document.documentElement.clientWidth, b.bottom - a.top + 16]; }})()"
        ),
    );
    let v: Vec<f64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    [v[0], v[1], v[2], v[3]]
}

#[test]
fn the_experiment_reports_open_in_chromium_with_every_point_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut browser = cdp::Browser::start();
    for (file, validated) in [
        ("experiments/tiny.kiln", false),
        ("experiments/llama3_405b.kiln", true),
        ("experiments/llama3_405b_ramp.kiln", true),
    ] {
        let out = dir.path().join("report.html");
        report(&common::root().join(file), &out);
        let (session, charts) = open(&mut browser, &out);
        let ids: Vec<&str> = charts.iter().map(|(c, _)| c.as_str()).collect();
        let ramp = file.contains("ramp");
        let mut want = vec!["lr", "mix", "memory", "step", "tune"];
        if ramp {
            want.insert(1, "batch");
        }
        if validated {
            want.push("validation");
        }
        assert_eq!(ids, want, "{file}");
        check_schedule(&charts, &json_of(&["plan", file]));
        check_analysis(&charts, &json_of(&["explain", file, "--format", "json"]));
        check_tune(&charts, file);
        if validated {
            // llama3_405b.kiln: Megatron-LM's profile on H100s (Hopper).
            let rows: Vec<Value> = serde_json::from_str(
                &std::fs::read_to_string(common::root().join("stdlib/validation.json")).unwrap(),
            )
            .unwrap();
            let ours: Vec<&Value> = rows
                .iter()
                .filter(|r| r["engine"] == "megatron" && r["arch"] == "hopper")
                .collect();
            let v = chart(&charts, "validation");
            let memory = ours
                .iter()
                .filter(|r| !r["published_memory_gib"].is_null())
                .count();
            assert_eq!(v.points.len(), ours.len() + memory);
            assert_eq!(v.rows, ours.len());
            for r in &ours {
                let ratio = r["predicted"].as_f64().unwrap() / r["published"].as_f64().unwrap();
                assert!(v.points.iter().any(|p| close(p.1, ratio)), "{r}");
            }
            if !ramp {
                let shot = clip(&mut browser, &session, "memory", "tune");
                let png = browser.screenshot(&session, shot, 0.75);
                save_screenshot(&png, "report-llama3-405b.png");
            }
        } else {
            let text = browser.eval(&session, "validation.textContent");
            assert!(text.as_str().unwrap().contains("has scored no"), "{text}");
        }
    }
}

/// The browser checks above can fail: a page that asks the network for an image and writes
/// to the console is caught by both.
#[test]
fn the_browser_checks_catch_a_request_and_a_console_message() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("leaky.html");
    std::fs::write(
        &page,
        r#"<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/pixel.png"><script>console.error("leak")</script></body></html>"#,
    )
    .unwrap();
    let mut browser = cdp::Browser::start();
    let session = browser.page(800, 600);
    let since = browser.events.len();
    let url = browser.open(&session, &page);
    browser.drain(Duration::from_millis(500));
    let requests = browser.requests(&session, since);
    assert!(requests.contains(&url), "{requests:?}");
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("http://127.0.0.1:9/")),
        "{requests:?}"
    );
    assert!(!browser.complaints(&session, since).is_empty());
}

/// The small CPU experiment with a second phase (an anneal to 0 over its last 2 of 8 steps).
fn two_phase_experiment() -> String {
    let main = "    lr = cosine { peak = 3e-3, warmup = 2 steps, final = 3e-4 }\n  }\n";
    let text = common::TWO_RANK_CPU_EXPERIMENT.replace(
        main,
        &format!(
            "{main}  phase anneal_to_zero {{\n    tokens = 2048\n    mix {{ web = 100% }}\n    lr = linear {{ to = 0 }}\n  }}\n"
        ),
    );
    assert_ne!(text, common::TWO_RANK_CPU_EXPERIMENT);
    text.replace("experiment slurm_check", "experiment small_cpu_run")
}

/// Runs the two-phase experiment to the end in `dir/run` (the real binaries).
fn finished_run(dir: &Path) -> PathBuf {
    let file = dir.join("small.kiln");
    std::fs::write(&file, two_phase_experiment()).unwrap();
    common::small_corpus(&dir.join("web.jsonl"));
    let out = dir.join("run");
    let run = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

fn metrics_lines(run: &Path) -> Vec<Value> {
    let mut lines = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(run.join("steps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("metrics.jsonl").is_file())
        .collect();
    dirs.sort();
    for d in dirs {
        let text = std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
        lines.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    lines
}

#[test]
fn a_finished_run_reports_what_it_measured() {
    let dir = tempfile::tempdir().unwrap();
    let run = finished_run(dir.path());
    let o = kiln(&["report", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = run.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "a finished run does not reload"
    );
    assert!(html.contains("Finished: 2 of 2 phases"), "{html}");
    let lines = metrics_lines(&run);
    assert_eq!(lines.len(), 8, "6 + 2 steps");
    let evals = lines
        .iter()
        .filter(|l| l.get("eval_loss").is_some())
        .count();
    assert!(evals > 0);
    let mut browser = cdp::Browser::start();
    let (session, charts) = open(&mut browser, &page);
    let ids: Vec<&str> = charts.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(ids, ["loss", "lr", "throughput", "run-memory"]);
    let loss = chart(&charts, "loss");
    assert_eq!(loss.points.len(), lines.len() + evals);
    for l in &lines {
        let step = l["step"].as_f64().unwrap();
        assert!(loss
            .points
            .iter()
            .any(|p| p.0 == "training loss" && p.1 == step && p.2 == l["loss"].as_f64().unwrap()));
    }
    let lr = chart(&charts, "lr");
    assert_eq!(lr.points.len(), lines.len());
    for l in &lines {
        assert!(lr
            .points
            .iter()
            .any(|p| p.1 == l["step"].as_f64().unwrap() && p.2 == l["lr"].as_f64().unwrap()));
    }
    assert_eq!(chart(&charts, "throughput").points.len(), lines.len());
    assert_eq!(chart(&charts, "run-memory").points.len(), 2 * 2);
    let shot = clip(
        &mut browser,
        &session,
        "document.querySelector('header')",
        "lr",
    );
    let png = browser.screenshot(&session, shot, 0.75);
    save_screenshot(&png, "report-tiny-run.png");

    // --watch on a run that is still going: a page that reloads, rewritten until the run
    // finishes, then final. The run "goes on" by its last phase's output being moved back to its
    // working directory without its summary.
    let going = dir.path().join("going");
    copy_dir(&run, &going);
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(going.join("plan.json")).unwrap()).unwrap();
    let last = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|s| s["kind"] == "train")
        .unwrap()["outputs"][0]
        .as_str()
        .unwrap()
        .to_string();
    let output = going.join(&last);
    let partial = going.join(format!("{last}.partial"));
    std::fs::rename(&output, &partial).unwrap();
    std::fs::remove_file(partial.join("summary.json")).unwrap();
    let mut watch = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["report", "--watch", "--interval", "1"])
        .arg(&going)
        .spawn()
        .unwrap();
    let report = going.join("report.html");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&report).unwrap_or_default();
        if text.contains("http-equiv=\"refresh\" content=\"1\"") {
            assert!(text.contains("Running: 1 of 2 phases done"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no reloading page was written");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(watch.try_wait().unwrap().is_none(), "--watch stopped early");
    std::fs::copy(
        run.join(&last).join("summary.json"),
        partial.join("summary.json"),
    )
    .unwrap();
    std::fs::rename(&partial, &output).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = watch.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = watch.kill();
            panic!("--watch did not stop when the run finished");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(!text.contains("http-equiv=\"refresh\""));
    assert!(text.contains("Finished: 2 of 2 phases"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn the_report_of_tiny_kiln_is_byte_deterministic() {
    let a = kiln(&["report", "experiments/tiny.kiln"]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = kiln(&["report", "experiments/tiny.kiln"]);
    assert_eq!(a.stdout, b.stdout);
    let html = String::from_utf8(a.stdout).unwrap();
    assert!(!html.contains(common::root().to_str().unwrap()));
    insta::with_settings!({ snapshot_path => "snapshots/report", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!("tiny.html", html);
    });
}

#[test]
fn bad_inputs_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // A file with errors: refused as `kiln check` refuses it.
    let o = kiln(&["report", "tests/cases/c002_mix_sum_low.kiln"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("K-C002"));
    assert!(o.stdout.is_empty());
    // No run directory there.
    let missing = dir.path().join("nowhere");
    let o = kiln(&["report", missing.to_str().unwrap(), "--watch"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a run directory"));
    // A directory that is not a run.
    let o = kiln(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no plan.json"));
    // A run whose training has not started.
    let plan = kiln(&["plan", "experiments/tiny.kiln"]);
    std::fs::write(dir.path().join("plan.json"), &plan.stdout).unwrap();
    let o = kiln(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("holds no metrics yet"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!dir.path().join("report.html").exists());
}
