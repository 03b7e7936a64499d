//! The report of an experiment before it runs: the summary, the learning rate, the data mix,
//! memory per stage, the step time, the layouts `kiln tune` finds and the validation rows of
//! its engine and arch. Every number comes from the compiler's APIs (`Analysis`, the plan's
//! `Schedule`, `tune::search`, `validate::shipped_rows`); the charts only place them.

use super::page::{Page, Section};
use super::svg::{short, Axis, Chart, Mark, Table};
use kiln::analyse::setup::Setup;
use kiln::analyse::Analysis;
use kiln::plan::RunPlan;
use kiln::units::{self, Dim};
use kiln_plan::schedule::Schedule;

/// Bytes in a GiB (the axis unit of memory, as `nvidia-smi` and PyTorch print it).
pub const GIB: f64 = (1u64 << 30) as f64;

/// Learning-rate samples drawn per phase at most (the first and last step always).
const LR_SAMPLES_PER_PHASE: u64 = 120;

/// The report of one experiment.
pub fn page(name: &str, setup: &Setup, analysis: &Analysis, plan: &RunPlan) -> Page {
    let mut page = Page::new(
        format!("kiln report: {name}"),
        format!(
            "What kiln predicts for experiment `{name}` before it runs: {} on {} × {} ({}).",
            units::show(analysis.model.params, Dim::Count) + " parameters",
            setup.world(),
            setup.hardware.gpu,
            setup.engine.name()
        ),
    );
    page.summary = summary(setup, analysis, &plan.schedule);
    page.sections.push(lr_section(
        "lr",
        "Learning rate over optimizer steps",
        &plan.schedule,
    ));
    if !plan.schedule.batch_ramp.is_empty() {
        page.sections.push(batch_section(&plan.schedule));
    }
    page.sections.push(mix_section(&plan.schedule));
    page.sections.push(memory_section(analysis));
    page.sections.push(step_time_section(analysis));
    page.sections.push(tune_section(setup, analysis));
    page.sections.push(validation_section(setup, analysis));
    page
}

fn summary(setup: &Setup, a: &Analysis, schedule: &Schedule) -> Vec<(String, String)> {
    let shape = &a.model.shape;
    let par = &setup.parallel;
    let mut rows = vec![
        (
            "Model".to_string(),
            format!(
                "{} parameters: {} layers, hidden {}, {} heads ({} KV), vocabulary {}, sequence {}",
                units::show(a.model.params, Dim::Count),
                shape.layers,
                shape.hidden,
                shape.heads,
                shape.kv_heads,
                shape.vocab,
                shape.seq_len
            ),
        ),
        (
            "Tokens".to_string(),
            format!(
                "{} ({} per parameter)",
                units::show(a.scaling.tokens, Dim::Tokens),
                units::trim(a.scaling.tokens_per_param)
            ),
        ),
        ("Batch".to_string(), batch_words(schedule)),
        (
            "Compute".to_string(),
            units::show(a.scaling.compute_flops, Dim::Flops),
        ),
        (
            "Predicted loss".to_string(),
            format!(
                "{} nats/token ({})",
                units::trim(a.scaling.predicted_loss),
                a.scaling.law
            ),
        ),
        (
            "Cluster and layout".to_string(),
            format!(
                "{} × {} ({}): tensor {}, pipeline {}, context {}, data {}, micro-batch {}, ZeRO {}",
                setup.world(),
                setup.hardware.gpu,
                setup.engine.name(),
                par.tensor,
                par.pipeline,
                par.context,
                par.data,
                par.micro_batch,
                par.zero
            ),
        ),
        (
            "Memory (most loaded GPU)".to_string(),
            format!(
                "{:.1} GiB of {:.1} GiB on pipeline stage {} of {} ({})",
                a.memory.per_gpu.total / GIB,
                a.memory.capacity_bytes / GIB,
                a.memory.stage + 1,
                a.memory.per_stage.len(),
                if a.memory.fits { "fits" } else { "does not fit" }
            ),
        ),
    ];
    if let Some(t) = &a.throughput {
        rows.push((
            "Step".to_string(),
            format!(
                "{} per step, {} tokens/s, MFU {:.1} %",
                units::show(t.step_time_s, Dim::Seconds),
                short(t.tokens_per_s),
                t.mfu * 100.0
            ),
        ));
    }
    if let Some(c) = &a.cost {
        let mut cost = format!(
            "{} steps, {:.1} h wall clock, {} GPU-hours",
            units::show(c.steps, Dim::Count),
            c.wall_clock_s / 3600.0,
            short(c.gpu_hours)
        );
        if let Some(usd) = c.usd {
            cost += &format!(", {} USD", short(usd));
        }
        rows.push(("Cost".to_string(), cost));
    }
    rows
}

/// The learning rate of every phase, sampled, with the phases shaded (also the run report's,
/// with its measured values added by the caller).
pub fn lr_chart(id: &'static str, title: &str, schedule: &Schedule) -> (Chart, Table) {
    let mut chart = Chart::new(
        id,
        title,
        "The learning rate the optimizer applies at each step (kiln-plan's \
         PhaseSchedule::lr_at: by steps, or by samples trained while the batch ramps), phases \
         shaded and named.",
    );
    let s = chart.series("planned learning rate", false);
    let mut table = Table::new(title, &["step", "phase", "learning rate"]);
    let mut line = Vec::new();
    let mut top = 0.0f64;
    for phase in &schedule.phases {
        chart.marks.push(Mark::XBand {
            x0: phase.start_step as f64,
            x1: (phase.start_step + phase.steps) as f64,
            label: phase.name.clone(),
        });
        let n = phase.steps.min(LR_SAMPLES_PER_PHASE);
        let mut last = None;
        for j in 0..n {
            let i = if n > 1 {
                (j * (phase.steps - 1) + (n - 1) / 2) / (n - 1)
            } else {
                0
            };
            if last == Some(i) {
                continue;
            }
            last = Some(i);
            let lr = phase.lr_at(i);
            let step = (phase.start_step + i) as f64;
            top = top.max(lr);
            line.push((step, lr));
            chart.marks.push(Mark::Point {
                series: s,
                x: step,
                y: lr,
                label: format!("step {step}: learning rate {lr:.3e} ({})", phase.name),
            });
            table.row(vec![
                step.to_string(),
                phase.name.clone(),
                format!("{lr:.4e}"),
            ]);
        }
    }
    chart.marks.push(Mark::Line {
        series: s,
        points: line,
        dashed: false,
    });
    chart.x = Axis::linear("optimizer step", 0.0, schedule.total_steps.max(1) as f64);
    chart.y = Axis::linear("learning rate", 0.0, top);
    (chart, table)
}

fn lr_section(id: &'static str, title: &str, schedule: &Schedule) -> Section {
    let (chart, table) = lr_chart(id, title, schedule);
    Section::chart(
        id,
        title,
        format!(
            "{} optimizer steps in {} phase{}, {}; each point is one sampled step.",
            schedule.total_steps,
            schedule.phases.len(),
            if schedule.phases.len() == 1 { "" } else { "s" },
            batch_words(schedule)
        ),
        chart,
        table,
    )
}

/// The batch in words: its size, and under a ramp where it starts and how many steps ramp.
fn batch_words(schedule: &Schedule) -> String {
    let full = format!(
        "{} tokens a step ({} sequences of {})",
        short(schedule.batch_tokens),
        schedule.global_batch,
        schedule.seq_len
    );
    let segments = || schedule.phases.iter().flat_map(|p| p.batch.iter());
    let Some(first) = segments().next() else {
        return full;
    };
    if schedule.batch_ramp.is_empty() {
        return full;
    }
    format!(
        "{full}, ramped from {} tokens over the first {} steps",
        short(first.batch_tokens as f64),
        schedule.ramp_steps()
    )
}

/// Under a batch ramp: the tokens of each optimizer step, one point where each of the plan's
/// batch segments starts, the line stepping between them.
fn batch_section(schedule: &Schedule) -> Section {
    let title = "Batch size over optimizer steps";
    let mut chart = Chart::new(
        "batch",
        title,
        "The tokens each optimizer step trains under the batch ramp (the plan's batch \
         segments), phases shaded and named.",
    );
    let s = chart.series("tokens per step", false);
    let mut table = Table::new(
        title,
        &[
            "phase",
            "first step",
            "sequences",
            "tokens",
            "micro-batches per rank",
        ],
    );
    let mut line = Vec::new();
    for phase in &schedule.phases {
        chart.marks.push(Mark::XBand {
            x0: phase.start_step as f64,
            x1: (phase.start_step + phase.steps) as f64,
            label: phase.name.clone(),
        });
        let end = (phase.start_step + phase.steps) as f64;
        for (i, seg) in phase.batch.iter().enumerate() {
            let (x, y) = (seg.first_step as f64, seg.batch_tokens as f64);
            let next = phase.batch.get(i + 1).map_or(end, |n| n.first_step as f64);
            line.push((x, y));
            line.push((next, y));
            chart.marks.push(Mark::Point {
                series: s,
                x,
                y,
                label: format!(
                    "from step {}: {} tokens ({} sequences, {} micro-batches per rank; {})",
                    seg.first_step,
                    short(y),
                    seg.global_batch,
                    seg.accumulation,
                    phase.name
                ),
            });
            table.row(vec![
                phase.name.clone(),
                seg.first_step.to_string(),
                seg.global_batch.to_string(),
                seg.batch_tokens.to_string(),
                seg.accumulation.to_string(),
            ]);
        }
    }
    chart.marks.push(Mark::Line {
        series: s,
        points: line,
        dashed: false,
    });
    chart.x = Axis::linear("optimizer step", 0.0, schedule.total_steps.max(1) as f64);
    chart.y = Axis::linear("batch (tokens per step)", 0.0, schedule.batch_tokens);
    Section::chart(
        "batch",
        title,
        format!(
            "{}; the learning rate follows the samples trained while it ramps.",
            batch_words(schedule)
        ),
        chart,
        table,
    )
}

fn mix_section(schedule: &Schedule) -> Section {
    let title = "Data mix over training tokens, per phase";
    let mut chart = Chart::new(
        "mix",
        title,
        "The share of each source in every phase, stacked to 100 %, over the tokens each \
         phase trains (the plan's schedule).",
    );
    let mut sources: Vec<&String> = schedule.phases.iter().flat_map(|p| p.mix.keys()).collect();
    sources.sort();
    sources.dedup();
    let series: Vec<usize> = sources
        .iter()
        .map(|s| chart.series(s.as_str(), true))
        .collect();
    let mut table = Table::new(
        title,
        &["phase", "source", "tokens from", "tokens to", "share"],
    );
    let mut start = 0.0;
    for phase in &schedule.phases {
        let end = start + phase.tokens_trained;
        let mut y = 0.0;
        for (k, source) in sources.iter().enumerate() {
            let Some(&w) = phase.mix.get(*source) else {
                continue;
            };
            let pct = w * 100.0;
            chart.marks.push(Mark::Rect {
                series: series[k],
                x0: start,
                x1: end,
                y0: y,
                y1: y + pct,
                value: pct,
                label: format!(
                    "{}: {source} {} % of {} tokens",
                    phase.name,
                    units::trim(pct),
                    short(phase.tokens_trained)
                ),
                inside: Some(format!("{source} {} %", units::trim(pct))),
            });
            table.row(vec![
                phase.name.clone(),
                source.to_string(),
                short(start),
                short(end),
                format!("{} %", units::trim(pct)),
            ]);
            y += pct;
        }
        chart.marks.push(Mark::XBand {
            x0: start,
            x1: end,
            label: phase.name.clone(),
        });
        start = end;
    }
    chart.x = Axis::linear("training tokens", 0.0, start.max(1.0));
    chart.y = Axis::linear("share of the phase's tokens (%)", 0.0, 100.0);
    chart.y.max = 100.0;
    Section::chart(
        "mix",
        title,
        "Each phase draws its sources in fixed shares; the width of a phase is the tokens it trains.",
        chart,
        table,
    )
}

/// Memory kinds stacked per stage, bottom to top: the model states, activations, then what
/// the allocator and runtime hold beside the tensors.
const MEMORY_KINDS: [&str; 7] = [
    "weights",
    "gradients",
    "optimizer states",
    "activations",
    "workspace",
    "fragmentation",
    "runtime",
];

fn memory_section(a: &Analysis) -> Section {
    let title = "Memory per GPU of each pipeline stage";
    let m = &a.memory;
    let band = kiln::analyse::time::fitted().memory.relative;
    let mut chart = Chart::new(
        "memory",
        title,
        format!(
            "What one GPU of each pipeline stage holds at its peak, by kind, against the GPU's \
             {:.1} GiB; the shaded band is within the memory model's validated ±{:.0} % \
             error of the capacity (K-M002).",
            m.capacity_bytes / GIB,
            band * 100.0
        ),
    );
    let series: Vec<usize> = MEMORY_KINDS
        .iter()
        .map(|k| chart.series(*k, true))
        .collect();
    let mut table = Table::new(
        title,
        &[
            "stage",
            "layers",
            "weights (GiB)",
            "gradients (GiB)",
            "optimizer states (GiB)",
            "activations (GiB)",
            "workspace (GiB)",
            "fragmentation (GiB)",
            "runtime (GiB)",
            "total (GiB)",
        ],
    );
    let mut names = Vec::new();
    let mut top = m.capacity_bytes;
    for (i, stage) in m.per_stage.iter().enumerate() {
        let g = &stage.per_gpu;
        // Stages are counted from 1, as `kiln explain` and the diagnostics count them.
        let n = i + 1;
        names.push(format!("stage {n}"));
        // `reserve` is workspace + fragmentation + runtime (analyse/memory.rs, PerGpu).
        let workspace = g.reserve - g.fragmentation - g.runtime;
        let values = [
            g.weights,
            g.gradients,
            g.optimizer,
            g.activations,
            workspace,
            g.fragmentation,
            g.runtime,
        ];
        let mut y = 0.0;
        let mut row = vec![format!("stage {n}"), units::trim(stage.layers)];
        for (k, v) in values.iter().enumerate() {
            let gib = v / GIB;
            chart.marks.push(Mark::Rect {
                series: series[k],
                x0: i as f64 + 0.15,
                x1: i as f64 + 0.85,
                y0: y,
                y1: y + gib,
                value: gib,
                label: format!("stage {n}: {} {gib:.2} GiB", MEMORY_KINDS[k]),
                inside: None,
            });
            row.push(format!("{gib:.2}"));
            y += gib;
        }
        row.push(format!("{:.2}", g.total / GIB));
        table.row(row);
        top = top.max(g.total);
    }
    let capacity = m.capacity_bytes / GIB;
    // check/perf.rs: a total within the band of the capacity is K-M002.
    chart.marks.push(Mark::YBand {
        y0: capacity / (1.0 + band),
        y1: capacity,
        label: format!("within ±{:.0} % of capacity", band * 100.0),
    });
    chart.marks.push(Mark::HLine {
        y: capacity,
        label: format!("capacity {capacity:.1} GiB"),
    });
    chart.x = Axis::categories("pipeline stage", names);
    chart.y = Axis::linear("memory per GPU (GiB)", 0.0, top / GIB * 1.05);
    Section::chart(
        "memory",
        title,
        format!(
            "The most loaded GPU is on stage {} with {:.1} GiB; {}.",
            m.stage + 1,
            m.per_gpu.total / GIB,
            if m.fits {
                "every stage fits"
            } else {
                "it does not fit"
            }
        ),
        chart,
        table,
    )
}

fn step_time_section(a: &Analysis) -> Section {
    let title = "Where the step time goes";
    let Some(t) = &a.throughput else {
        return Section::note(
            "step",
            title,
            "The GPU has no peak for the run's precision, so kiln predicts no step time.",
        );
    };
    let e = &t.exposed_per_dimension;
    let parts = [
        ("GEMMs and attention", t.compute_s),
        ("memory-bound kernels", t.memory_bound_s),
        ("pipeline bubble", t.bubble_s),
        ("exposed data-parallel communication", e.data_s),
        ("exposed tensor-parallel communication", e.tensor_s),
        ("exposed pipeline communication", e.pipeline_s),
        ("exposed context-parallel communication", e.context_s),
        ("activation offload not hidden", t.offload_exposed_s),
    ];
    let mut chart = Chart::new(
        "step",
        title,
        format!(
            "The predicted {} step of the slowest pipeline stage, split into compute, \
             memory-bound work, the pipeline bubble and the communication the engine does \
             not overlap, per parallel dimension.",
            units::show(t.step_time_s, Dim::Seconds)
        ),
    );
    chart.height = 230.0;
    let mut table = Table::new(title, &["part", "seconds per step", "share of the step"]);
    let mut x = 0.0;
    for (name, seconds) in parts {
        let s = chart.series(name, true);
        let share = if t.step_time_s > 0.0 {
            seconds / t.step_time_s * 100.0
        } else {
            0.0
        };
        chart.marks.push(Mark::Rect {
            series: s,
            x0: x,
            x1: x + seconds,
            y0: 0.2,
            y1: 0.8,
            value: seconds,
            label: format!(
                "{name}: {} ({share:.1} %)",
                units::show(seconds, Dim::Seconds)
            ),
            inside: Some(format!("{share:.0} %")),
        });
        table.row(vec![
            name.to_string(),
            units::trim(seconds),
            format!("{share:.1} %"),
        ]);
        x += seconds;
    }
    chart.x = Axis::linear("seconds per optimizer step", 0.0, x.max(t.step_time_s));
    chart.y = Axis::categories("", vec!["step".into()]);
    Section::chart(
        "step",
        title,
        format!(
            "{} per step: {} tokens/s, MFU {:.1} %.",
            units::show(t.step_time_s, Dim::Seconds),
            short(t.tokens_per_s),
            t.mfu * 100.0
        ),
        chart,
        table,
    )
}

fn tune_section(setup: &Setup, a: &Analysis) -> Section {
    let title = "Every layout that fits: step time against memory";
    if a.throughput.is_none() {
        return Section::note(
            "tune",
            title,
            "The layout search ranks layouts by predicted step time, and the GPU has no peak \
             for the run's precision: the search does not apply.",
        );
    }
    let search = kiln::tune::search(setup, kiln::tune::Objective::Time);
    if search.ranked.is_empty() {
        return Section::note(
            "tune",
            title,
            format!(
                "kiln tune analysed {} layouts of the cluster for {} and none fits in memory.",
                search.evaluated,
                setup.engine.name()
            ),
        );
    }
    let mut chart = Chart::new(
        "tune",
        title,
        "Each fitting layout of the cluster (kiln tune) by the most loaded GPU's memory and the \
         predicted step time; the Pareto front (nothing both faster and smaller) is joined and \
         the declared layout marked.",
    );
    let front_series = chart.series("Pareto front", false);
    let declared_series = chart.series("declared layout", false);
    let all = chart.series("other fitting layouts", false);
    // The front: by memory ascending, each layout faster than every smaller one.
    let mut by_memory: Vec<&kiln::tune::Candidate> = search.ranked.iter().collect();
    by_memory.sort_by(|a, b| {
        a.memory_bytes
            .total_cmp(&b.memory_bytes)
            .then(a.step_time_s.total_cmp(&b.step_time_s))
    });
    let mut front = Vec::new();
    let mut best = f64::INFINITY;
    for c in &by_memory {
        if c.step_time_s < best {
            best = c.step_time_s;
            front.push(*c);
        }
    }
    let mut table = Table::new(
        "The Pareto front and the declared layout",
        &["layout", "memory (GiB)", "step time (s)", "tokens/s"],
    );
    // The axes first: layouts drawn at the same spot are merged into one element that
    // counts them (a 405B model on 8,192 GPUs has some twenty thousand that fit).
    let mut lo_t = f64::INFINITY;
    let (mut hi_t, mut hi_m) = (0.0f64, search.ranked[0].capacity_bytes);
    for c in search.ranked.iter().chain(&search.declared) {
        lo_t = lo_t.min(c.step_time_s);
        hi_t = hi_t.max(c.step_time_s);
        hi_m = hi_m.max(c.memory_bytes);
    }
    chart.x = Axis::linear(
        "memory of the most loaded GPU (GiB)",
        0.0,
        hi_m / GIB * 1.02,
    );
    chart.y = if hi_t > 20.0 * lo_t {
        Axis::log("step time (s, log scale)", lo_t, hi_t)
    } else {
        Axis::linear("step time (s)", 0.0, hi_t * 1.05)
    };
    let mut cells: std::collections::BTreeMap<(i64, i64), (&kiln::tune::Candidate, usize)> =
        std::collections::BTreeMap::new();
    let mut on_front = Vec::new();
    for c in &search.ranked {
        if front.iter().any(|f| std::ptr::eq(*f, c)) {
            on_front.push(Mark::Point {
                series: front_series,
                x: c.memory_bytes / GIB,
                y: c.step_time_s,
                label: format!(
                    "{}: {:.1} GiB, {} per step",
                    c.layout(),
                    c.memory_bytes / GIB,
                    units::show(c.step_time_s, Dim::Seconds)
                ),
            });
            continue;
        }
        // Ranked fastest first: the first layout of a cell is its fastest.
        cells
            .entry(chart.cell(c.memory_bytes / GIB, c.step_time_s))
            .or_insert((c, 0))
            .1 += 1;
    }
    for (c, count) in cells.into_values() {
        chart.marks.push(Mark::Cluster {
            series: all,
            x: c.memory_bytes / GIB,
            y: c.step_time_s,
            count,
            label: format!(
                "{count} layout{} near {:.1} GiB, {} per step",
                if count == 1 { "" } else { "s" },
                c.memory_bytes / GIB,
                units::show(c.step_time_s, Dim::Seconds),
            ),
        });
    }
    // The front on top of the crowd.
    chart.marks.extend(on_front);
    chart.marks.push(Mark::Line {
        series: front_series,
        points: front
            .iter()
            .map(|c| (c.memory_bytes / GIB, c.step_time_s))
            .collect(),
        dashed: false,
    });
    for c in &front {
        table.row(vec![
            c.layout(),
            format!("{:.2}", c.memory_bytes / GIB),
            units::trim(c.step_time_s),
            short(c.tokens_per_s),
        ]);
    }
    let mut note = format!(
        "{} of {} layouts fit; {} on the Pareto front.",
        search.fitting,
        search.evaluated,
        front.len()
    );
    if let Some(d) = &search.declared {
        let fits = d.memory_bytes <= d.capacity_bytes;
        chart.marks.push(Mark::Highlight {
            series: declared_series,
            x: d.memory_bytes / GIB,
            y: d.step_time_s,
            label: format!("declared{}", if fits { "" } else { " (does not fit)" }),
        });
        table.row(vec![
            format!("declared: {}", d.layout()),
            format!("{:.2}", d.memory_bytes / GIB),
            units::trim(d.step_time_s),
            short(d.tokens_per_s),
        ]);
        if let Some(first) = search.ranked.first() {
            note += &format!(
                " The fastest is {} at {} per step; the declared layout takes {}.",
                first.layout(),
                units::show(first.step_time_s, Dim::Seconds),
                units::show(d.step_time_s, Dim::Seconds)
            );
        }
    }
    let capacity = search.ranked[0].capacity_bytes / GIB;
    chart.marks.push(Mark::VLine {
        x: capacity,
        label: format!("capacity {capacity:.1} GiB"),
    });
    Section::chart("tune", title, note, chart, table)
}

fn validation_section(setup: &Setup, a: &Analysis) -> Section {
    let engine = setup.engine.name();
    let arch = setup.hardware.arch.as_str();
    let title = format!("Validation: {engine} on {arch}, predicted against published");
    let rows: Vec<&kiln::validate::Row> = kiln::validate::shipped_rows()
        .iter()
        .filter(|r| r.engine == engine && r.arch == arch)
        .collect();
    if rows.is_empty() {
        return Section::note(
            "validation",
            &title,
            format!(
                "kiln validate has scored no published or measured run of {engine} on {arch}: \
                 these predictions have no validated error band."
            ),
        );
    }
    let mut chart = Chart::new(
        "validation",
        &title,
        "For each scored run of this engine and arch: kiln's prediction (with constants \
         fitted without the run's source) divided by the published figure; 1 is exact, the \
         band is the validated 80th-percentile error.",
    );
    let throughput = chart.series("throughput (tokens/s, MFU or TFLOP/s)", false);
    let memory = chart.series("peak memory", false);
    let mut table = Table::new(
        title.clone(),
        &[
            "run",
            "metric",
            "published",
            "predicted",
            "predicted ÷ published",
            "memory published (GiB)",
            "memory predicted (GiB)",
        ],
    );
    let (mut lo, mut hi) = (1.0f64, 1.0f64);
    let mut names = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let y = i as f64 + 0.5;
        names.push(r.id.clone());
        let ratio = r.predicted / r.published;
        lo = lo.min(ratio);
        hi = hi.max(ratio);
        chart.marks.push(Mark::Point {
            series: throughput,
            x: ratio,
            y,
            label: format!(
                "{}: {} published {}, predicted {}",
                r.id,
                r.metric,
                short(r.published),
                short(r.predicted)
            ),
        });
        if let (Some(m), Some(p)) = (r.published_memory_gib, r.predicted_memory_gib) {
            let ratio = p / m;
            lo = lo.min(ratio);
            hi = hi.max(ratio);
            chart.marks.push(Mark::Point {
                series: memory,
                x: ratio,
                y,
                label: format!(
                    "{}: peak memory published {m:.1} GiB, predicted {p:.1} GiB",
                    r.id
                ),
            });
        }
        table.row(vec![
            if r.refused {
                format!("{} (refused by kiln check, scored all the same)", r.id)
            } else {
                r.id.clone()
            },
            r.metric.replace('_', " "),
            short(r.published),
            short(r.predicted),
            format!("{ratio:.3}"),
            r.published_memory_gib
                .map_or("—".into(), |m| format!("{m:.1}")),
            r.predicted_memory_gib
                .map_or("—".into(), |m| format!("{m:.1}")),
        ]);
    }
    if let Some(b) = a.throughput.as_ref().and_then(|t| t.band.as_ref()) {
        chart.marks.push(Mark::XBand {
            x0: 1.0 - b.relative,
            x1: 1.0 + b.relative,
            label: format!("±{:.0} %", b.relative * 100.0),
        });
        lo = lo.min(1.0 - b.relative);
        hi = hi.max(1.0 + b.relative);
    }
    chart.marks.push(Mark::VLine {
        x: 1.0,
        label: "exact".into(),
    });
    chart.height = 110.0 + 20.0 * rows.len() as f64;
    chart.margin_left = 330.0;
    chart.x = Axis::linear("predicted ÷ published", (lo * 0.95).min(0.9), hi * 1.05);
    chart.y = Axis::categories("", names);
    Section::chart(
        "validation",
        &title,
        format!(
            "{} scored run{} (docs/validation.md has every row and how they are scored).",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        ),
        chart,
        table,
    )
}
