//! The report of a run directory: loss and held-out loss, the learning rate, tokens/s and
//! memory measured against the plan's predictions, per phase, read from each train step's
//! `metrics.jsonl` (its working directory while it runs) and the steps' `summary.json`.

use super::experiment::{lr_chart, GIB};
use super::page::{Page, Section};
use super::svg::{short, Axis, Chart, Mark, Table};
use crate::error::Failure;
use kiln_plan::run_dir::{METRICS_FILE, PARTIAL_SUFFIX, PLAN_FILE, SUMMARY_FILE};
use kiln_plan::step::StepParams;
use kiln_plan::RunPlan;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The fields of a `metrics.jsonl` line the report draws (kiln-train's `StepMetrics`;
/// fields it does not draw are ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct StepLine {
    pub step: u64,
    pub phase: String,
    pub lr: f64,
    pub loss: f64,
    pub tokens: u64,
    pub tokens_per_s: f64,
    #[serde(default)]
    pub eval_loss: Option<f64>,
}

/// The fields of a train or evaluate step's `summary.json` the report shows (kiln-train's
/// `Summary`).
#[derive(Clone, Debug, Deserialize)]
pub struct StepSummary {
    #[serde(default)]
    pub final_eval_loss: Option<f64>,
    #[serde(default)]
    pub unigram_loss: Option<f64>,
    #[serde(default)]
    pub measured_tokens_per_s: Option<f64>,
    #[serde(default)]
    pub predicted_tokens_per_s: Option<f64>,
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    #[serde(default)]
    pub predicted_memory_bytes: Option<f64>,
}

/// Where a training phase is.
pub enum State {
    Done(StepSummary),
    Running,
    Waiting,
}

/// One training phase of the run.
pub struct Phase {
    pub name: String,
    pub state: State,
    pub metrics: Vec<StepLine>,
}

/// What the run directory holds now.
pub struct Run {
    pub plan: RunPlan,
    pub phases: Vec<Phase>,
    /// The evaluate step's summary, once it is done.
    pub evaluation: Option<StepSummary>,
    pub has_evaluate_step: bool,
}

impl Run {
    /// Every training phase and the evaluation (when the plan has one) are done.
    pub fn finished(&self) -> bool {
        self.phases
            .iter()
            .all(|p| matches!(p.state, State::Done(_)))
            && (!self.has_evaluate_step || self.evaluation.is_some())
    }

    pub fn lines(&self) -> usize {
        self.phases.iter().map(|p| p.metrics.len()).sum()
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::unusable(format!("cannot read `{}`: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Failure::unusable(format!("`{}` is not a step summary: {e}", path.display())))
}

/// Reads `metrics.jsonl`. A last line without its newline may be one the train step is
/// writing this moment: it is left for the next read. Any other unreadable line is an error
/// naming it.
fn read_metrics(path: &Path) -> Result<Vec<StepLine>, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Failure::unusable(format!(
                "cannot read `{}`: {e}",
                path.display()
            )))
        }
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                Failure::unusable(format!(
                    "`{}` line {}: not a metrics line: {e}",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

/// Reads a run directory (`kiln run --out DIR`).
pub fn read(dir: &Path) -> Result<Run, Failure> {
    if !dir.is_dir() {
        return Err(Failure::unusable(format!(
            "`{}` is not a run directory (`kiln run FILE --out DIR` makes one)",
            dir.display()
        )));
    }
    let plan_path = dir.join(PLAN_FILE);
    if !plan_path.is_file() {
        return Err(Failure::unusable(format!(
            "`{}` has no {PLAN_FILE}: is it a run directory (`kiln run FILE --out DIR` makes one)?",
            dir.display()
        )));
    }
    let plan = RunPlan::load(&plan_path)
        .map_err(|e| Failure::unusable(format!("`{}`: {e}", plan_path.display())))?;
    let mut phases = Vec::new();
    let mut evaluation = None;
    let mut has_evaluate_step = false;
    for step in &plan.steps {
        let Some(output) = step.outputs.first() else {
            continue;
        };
        let out: PathBuf = dir.join(output);
        match &step.params {
            StepParams::Train(t)
                if plan
                    .schedule
                    .phases
                    .iter()
                    .any(|p| p.name == t.phase && step.name == format!("train.{}", t.phase)) =>
            {
                let summary = out.join(SUMMARY_FILE);
                let partial = PathBuf::from(format!("{}{PARTIAL_SUFFIX}", out.display()));
                let (state, metrics) = if summary.is_file() {
                    (
                        State::Done(read_json(&summary)?),
                        read_metrics(&out.join(METRICS_FILE))?,
                    )
                } else if partial.is_dir() {
                    (State::Running, read_metrics(&partial.join(METRICS_FILE))?)
                } else {
                    (State::Waiting, Vec::new())
                };
                phases.push(Phase {
                    name: t.phase.clone(),
                    state,
                    metrics,
                });
            }
            StepParams::Evaluate(_) => {
                has_evaluate_step = true;
                let summary = out.join(SUMMARY_FILE);
                if summary.is_file() {
                    evaluation = Some(read_json(&summary)?);
                }
            }
            _ => {}
        }
    }
    Ok(Run {
        plan,
        phases,
        evaluation,
        has_evaluate_step,
    })
}

/// The report of a run as it stands.
pub fn page(run: &Run) -> Page {
    let plan = &run.plan;
    let name = &plan.experiment.name;
    let mut page = Page::new(
        format!("kiln report: run of {name}"),
        format!("What the run of experiment `{name}` measured, beside what kiln predicted for it."),
    );
    let done = run
        .phases
        .iter()
        .filter(|p| matches!(p.state, State::Done(_)))
        .count();
    let last = run.phases.iter().flat_map(|p| p.metrics.last()).last();
    page.status = Some(if run.finished() {
        format!(
            "Finished: {} of {} phases trained and evaluated.",
            done,
            run.phases.len()
        )
    } else {
        format!(
            "Running: {} of {} phases done, step {} of {}.",
            done,
            run.phases.len(),
            last.map_or(0, |l| l.step + 1),
            plan.schedule.total_steps
        )
    });
    let mut summary = vec![(
        "Steps".to_string(),
        format!(
            "{} of {} optimizer steps, {} of {} tokens",
            run.lines(),
            plan.schedule.total_steps,
            short(last.map_or(0.0, |l| l.tokens as f64)),
            short(
                plan.schedule
                    .phases
                    .iter()
                    .map(|p| p.tokens_trained)
                    .sum::<f64>()
            )
        ),
    )];
    if let Some(l) = last {
        summary.push((
            "Last training loss".to_string(),
            format!("{:.4} nats/token at step {}", l.loss, l.step),
        ));
    }
    if let Some(e) = &run.evaluation {
        let mut text = e
            .final_eval_loss
            .map_or("—".into(), |l| format!("{l:.4} nats/token"));
        if let Some(u) = e.unigram_loss {
            text += &format!(" (token frequencies alone: {u:.4})");
        }
        summary.push(("Held-out loss (evaluate step)".to_string(), text));
    }
    if let Some(t) = plan.predictions.tokens_per_s {
        summary.push(("Predicted tokens/s".to_string(), short(t)));
    }
    page.summary = summary;
    if run.lines() == 0 {
        page.sections.push(Section::note(
            "loss",
            "Loss",
            "No training step has written metrics yet.",
        ));
        return page;
    }
    page.sections.push(loss_section(run));
    page.sections.push(lr_section(run));
    page.sections.push(throughput_section(run));
    page.sections.push(memory_section(run));
    page
}

fn phase_bands(chart: &mut Chart, run: &Run) {
    for p in &run.plan.schedule.phases {
        chart.marks.push(Mark::XBand {
            x0: p.start_step as f64,
            x1: (p.start_step + p.steps) as f64,
            label: p.name.clone(),
        });
    }
}

fn loss_section(run: &Run) -> Section {
    let title = "Training and held-out loss";
    let mut chart = Chart::new(
        "loss",
        title,
        "The mean cross-entropy of each optimizer step's tokens, and the held-out loss at each \
         evaluation, over steps; phases shaded.",
    );
    phase_bands(&mut chart, run);
    let train = chart.series("training loss", false);
    let held_out = chart.series("held-out loss", false);
    let mut table = Table::new(title, &["step", "phase", "training loss", "held-out loss"]);
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    let mut eval_line = Vec::new();
    for l in run.phases.iter().flat_map(|p| &p.metrics) {
        chart.marks.push(Mark::Point {
            series: train,
            x: l.step as f64,
            y: l.loss,
            label: format!("step {}: training loss {:.4}", l.step, l.loss),
        });
        lo = lo.min(l.loss);
        hi = hi.max(l.loss);
        if let Some(e) = l.eval_loss {
            chart.marks.push(Mark::Point {
                series: held_out,
                x: l.step as f64,
                y: e,
                label: format!("step {}: held-out loss {e:.4}", l.step),
            });
            eval_line.push((l.step as f64, e));
            lo = lo.min(e);
            hi = hi.max(e);
        }
        table.row(vec![
            l.step.to_string(),
            l.phase.clone(),
            format!("{:.4}", l.loss),
            l.eval_loss.map_or(String::new(), |e| format!("{e:.4}")),
        ]);
    }
    chart.marks.push(Mark::Line {
        series: held_out,
        points: eval_line,
        dashed: true,
    });
    chart.x = Axis::linear("optimizer step", 0.0, run.plan.schedule.total_steps as f64);
    chart.y = Axis::linear("loss (nats/token)", (lo - 0.1).max(0.0).floor(), hi);
    Section::chart(
        "loss",
        title,
        "Each point is one optimizer step; held-out points are the train step's evaluations.",
        chart,
        table,
    )
}

fn lr_section(run: &Run) -> Section {
    let title = "Learning rate: measured against the plan";
    let (mut chart, _) = lr_chart("lr", title, &run.plan.schedule);
    // The planned samples stay as the line; the points are what each step logged.
    chart.marks.retain(|m| !matches!(m, Mark::Point { .. }));
    for m in chart.marks.iter_mut() {
        if let Mark::Line { dashed, .. } = m {
            *dashed = true;
        }
    }
    chart.series[0].name = "planned (line)".into();
    let measured = chart.series("measured", false);
    let mut table = Table::new(title, &["step", "phase", "learning rate"]);
    let mut top = chart.y.max;
    for l in run.phases.iter().flat_map(|p| &p.metrics) {
        chart.marks.push(Mark::Point {
            series: measured,
            x: l.step as f64,
            y: l.lr,
            label: format!("step {}: learning rate {:.3e}", l.step, l.lr),
        });
        top = top.max(l.lr);
        table.row(vec![
            l.step.to_string(),
            l.phase.clone(),
            format!("{:.4e}", l.lr),
        ]);
    }
    chart.y = Axis::linear("learning rate", 0.0, top);
    Section::chart(
        "lr",
        title,
        "Points: the rate each step applied (metrics.jsonl); dashed line: the plan's schedule.",
        chart,
        table,
    )
}

fn throughput_section(run: &Run) -> Section {
    let title = "Tokens per second: measured against predicted";
    let mut chart = Chart::new(
        "throughput",
        title,
        "Each step's tokens over its wall-clock time, beside the tokens/s kiln predicted for \
         the declared hardware; phases shaded.",
    );
    phase_bands(&mut chart, run);
    let s = chart.series("measured tokens/s", false);
    let mut table = Table::new(title, &["step", "phase", "tokens/s"]);
    let mut hi = 0.0f64;
    for l in run.phases.iter().flat_map(|p| &p.metrics) {
        chart.marks.push(Mark::Point {
            series: s,
            x: l.step as f64,
            y: l.tokens_per_s,
            label: format!("step {}: {} tokens/s", l.step, short(l.tokens_per_s)),
        });
        hi = hi.max(l.tokens_per_s);
        table.row(vec![
            l.step.to_string(),
            l.phase.clone(),
            format!("{:.0}", l.tokens_per_s),
        ]);
    }
    let mut intro = String::from("Each point is one optimizer step.");
    let ramped = run.plan.schedule.phases.iter().any(|p| p.ramps());
    if ramped {
        // Under a ramp the prediction follows each step's batch: a dashed step line
        // through every segment's predicted tokens/s.
        let mut points = Vec::new();
        for phase in &run.plan.schedule.phases {
            let end = phase.start_step + phase.steps;
            for (i, seg) in phase.batch.iter().enumerate() {
                let next = phase.batch.get(i + 1).map_or(end, |n| n.first_step);
                if let Some(t) = seg.predicted_step_time_s.filter(|t| *t > 0.0) {
                    let y = seg.batch_tokens as f64 / t;
                    points.push((seg.first_step as f64, y));
                    points.push((next as f64, y));
                    hi = hi.max(y);
                }
            }
        }
        if !points.is_empty() {
            let predicted = chart.series("predicted tokens/s at each step's batch", false);
            chart.marks.push(Mark::Line {
                series: predicted,
                points,
                dashed: true,
            });
            intro += " The dashed line is the prediction at each step's batch (the ramp's \
                       smaller batches run shorter steps).";
        }
    } else if let Some(p) = run.plan.predictions.tokens_per_s {
        chart.marks.push(Mark::HLine {
            y: p,
            label: format!("predicted {}", short(p)),
        });
        hi = hi.max(p);
    }
    for phase in &run.phases {
        if let State::Done(sm) = &phase.state {
            if let (Some(m), Some(p)) = (sm.measured_tokens_per_s, sm.predicted_tokens_per_s) {
                intro += &format!(
                    " {}: {} tokens/s measured, {} predicted ({:.2}×).",
                    phase.name,
                    short(m),
                    short(p),
                    m / p
                );
            }
        }
    }
    chart.x = Axis::linear("optimizer step", 0.0, run.plan.schedule.total_steps as f64);
    chart.y = Axis::linear("tokens per second", 0.0, hi * 1.05);
    Section::chart("throughput", title, intro, chart, table)
}

fn memory_section(run: &Run) -> Section {
    let title = "Peak memory per phase: measured against predicted";
    let rows: Vec<(&str, u64, f64)> = run
        .phases
        .iter()
        .filter_map(|p| match &p.state {
            State::Done(s) => Some((
                p.name.as_str(),
                s.peak_rss_bytes?,
                s.predicted_memory_bytes
                    .or(run.plan.predictions.memory_per_gpu_bytes)?,
            )),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Section::note(
            "run-memory",
            title,
            "No phase has finished with a measured peak and a prediction yet.",
        );
    }
    let mut chart = Chart::new(
        "run-memory",
        title,
        "The train step's resident-memory high-water mark (VmHWM) of each finished phase, \
         beside the plan's predicted peak per rank.",
    );
    let measured = chart.series("measured peak", true);
    let predicted = chart.series("predicted peak", true);
    let mut table = Table::new(
        title,
        &[
            "phase",
            "measured (GiB)",
            "predicted (GiB)",
            "measured ÷ predicted",
        ],
    );
    let mut hi = 0.0f64;
    let mut names = Vec::new();
    for (i, (name, m, p)) in rows.iter().enumerate() {
        let (m, p) = (*m as f64 / GIB, p / GIB);
        names.push(name.to_string());
        for (series, v, x0, what) in [
            (measured, m, 0.12, "measured"),
            (predicted, p, 0.5, "predicted"),
        ] {
            chart.marks.push(Mark::Rect {
                series,
                x0: i as f64 + x0,
                x1: i as f64 + x0 + 0.38,
                y0: 0.0,
                y1: v,
                value: v,
                label: format!("{name}: {what} {v:.3} GiB"),
                inside: Some(format!("{v:.2}")),
            });
        }
        hi = hi.max(m).max(p);
        table.row(vec![
            name.to_string(),
            format!("{m:.3}"),
            format!("{p:.3}"),
            format!("{:.2}", m / p),
        ]);
    }
    chart.height = 260.0;
    chart.x = Axis::categories("phase", names);
    chart.y = Axis::linear("peak memory per rank (GiB)", 0.0, hi * 1.1);
    Section::chart(
        "run-memory",
        title,
        "Measured is the process's resident-set peak; predicted is the plan's memory per GPU.",
        chart,
        table,
    )
}
