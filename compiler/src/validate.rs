//! `kiln validate`: kiln's predictions against measured runs, with the fitted constants
//! (ops::Calibration) scored leave-one-source-out, and the error bands `explain` prints.

use crate::analyse::comm::Communication;
use crate::analyse::flops::TrainingFlops;
use crate::analyse::memory::LayerActivations;
use crate::analyse::ops::Calibration;
use crate::analyse::setup::Setup;
use crate::analyse::time::{self, Band, Fitted};
use crate::analyse::{comm, flops, memory};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Tokens/s per GPU within this relative error counts as a hit (issue 12).
pub const TOKENS_TOLERANCE: f64 = 0.10;
/// MFU within this many percentage points counts as a hit (issue 12).
pub const MFU_TOLERANCE_POINTS: f64 = 3.0;
/// The band's percentile of absolute relative errors.
pub const BAND_PERCENTILE: f64 = 0.8;
/// A measured peak memory within this relative error counts as a hit (issue 13).
pub const MEMORY_TOLERANCE: f64 = 0.10;

/// Which of a GPU's memory figures a source measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MemoryKind {
    /// `torch.cuda.max_memory_allocated`: the tensors.
    Allocated,
    /// `torch.cuda.max_memory_reserved`: the caching allocator's segments.
    Reserved,
    /// What the device has in use (nvidia-smi): reserved plus the CUDA context and NCCL.
    Total,
}

/// One measured run: what was measured (its `# measured: {json}` line) and kiln's inputs.
pub struct Case {
    pub id: String,
    pub source: String,
    /// The engine as the source names it (`llm-foundry/composer-fsdp`).
    pub engine_label: String,
    pub gpu: String,
    pub gpus: f64,
    pub measured_tokens: Option<f64>,
    /// Percent, against the peak of the run's precision.
    pub measured_mfu: Option<f64>,
    /// Hardware TFLOP/s per GPU, recomputation counted (Narayanan et al. 2021, Eq. 3).
    pub measured_hardware_tflops: Option<f64>,
    /// Peak memory of one GPU, GiB (2^30 bytes).
    pub measured_memory_gib: Option<f64>,
    pub memory_kind: MemoryKind,
    /// The pipeline stage whose GPU was measured (`None`: the most loaded).
    pub memory_stage: Option<usize>,
    /// The error codes `kiln check` reports, empty when it passes.
    pub errors: Vec<String>,
    parts: Option<Parts>,
}

/// What the time model needs that does not depend on the fitted constants.
struct Parts {
    setup: Setup,
    flops: TrainingFlops,
    comm: Communication,
    layer: LayerActivations,
}

/// kiln's prediction for one case.
#[derive(Clone, Copy, Debug)]
pub struct Prediction {
    pub tokens_per_gpu: f64,
    /// Percent, against the peak of the run's precision (the fp8 peak for fp8 runs, as
    /// measured.yaml prints it).
    pub mfu: f64,
    pub hardware_tflops: f64,
}

impl Case {
    pub fn predict(&self, cal: &Calibration) -> Option<Prediction> {
        let p = self.parts.as_ref()?;
        let (t, _) = time::analyse_with(&p.setup, &p.flops, &p.comm, &p.layer, cal)?;
        Some(Prediction {
            tokens_per_gpu: t.tokens_per_s / self.gpus,
            mfu: t.mfu_fp8_peak.unwrap_or(t.mfu) * 100.0,
            hardware_tflops: t.hardware_tflops_per_gpu,
        })
    }

    /// predicted / measured − 1, on tokens/s where measured, else on MFU or hardware
    /// TFLOP/s (each proportional to it).
    pub fn relative_error(&self, p: &Prediction) -> Option<f64> {
        match (
            self.measured_tokens,
            self.measured_mfu,
            self.measured_hardware_tflops,
        ) {
            (Some(t), _, _) => Some(p.tokens_per_gpu / t - 1.0),
            (None, Some(m), _) => Some(p.mfu / m - 1.0),
            (None, None, Some(h)) => Some(p.hardware_tflops / h - 1.0),
            _ => None,
        }
    }

    /// Tokens/s (or TFLOP/s) within TOKENS_TOLERANCE, or MFU within MFU_TOLERANCE_POINTS.
    pub fn hit(&self, p: &Prediction) -> Option<bool> {
        match (self.measured_tokens, self.measured_mfu) {
            (None, Some(m)) => Some((p.mfu - m).abs() <= MFU_TOLERANCE_POINTS),
            _ => Some(self.relative_error(p)?.abs() <= TOKENS_TOLERANCE),
        }
    }

    /// kiln's figure for the memory the source measured, GiB, with the allocator's
    /// fragmentation share `fragmentation`.
    pub fn predict_memory(&self, fragmentation: f64) -> Option<f64> {
        let p = self.parts.as_ref()?;
        self.measured_memory_gib?;
        let m = memory::analyse_with(&p.setup, fragmentation);
        let g = match self.memory_stage {
            Some(i) => &m.per_stage.get(i)?.per_gpu,
            None => &m.per_gpu,
        };
        let bytes = match self.memory_kind {
            MemoryKind::Allocated => g.allocated,
            MemoryKind::Reserved => g.allocated + g.fragmentation,
            MemoryKind::Total => g.total,
        };
        Some(bytes / GIB)
    }

    pub fn memory_error(&self, predicted_gib: f64) -> Option<f64> {
        Some(predicted_gib / self.measured_memory_gib? - 1.0)
    }

    pub fn engine(&self) -> Option<&'static str> {
        Some(self.parts.as_ref()?.setup.engine.name())
    }

    pub fn arch(&self) -> Option<&str> {
        Some(&self.parts.as_ref()?.setup.hardware.arch)
    }
}

/// Reads the cases: every `.kiln` file directly in the directories with a `# measured:`
/// line.
pub fn load(dirs: &[PathBuf]) -> Result<Vec<Case>, String> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "kiln"))
            .collect();
        found.sort();
        paths.extend(found);
    }
    let mut cases = Vec::new();
    for path in paths {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let Some(line) = text.lines().find_map(|l| l.strip_prefix("# measured: ")) else {
            continue;
        };
        let m: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            format!(
                "{}: the `# measured:` line is not JSON: {e}",
                path.display()
            )
        })?;
        let field = |k: &str| {
            m[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{}: `# measured:` has no \"{k}\"", path.display()))
        };
        let checked = crate::check_paths(std::slice::from_ref(&path), &crate::load::FsLoader, &[])?;
        let mut errors: Vec<String> = checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.code.code.to_string())
            .collect();
        errors.dedup();
        let parts = checked
            .experiments()
            .next()
            .and_then(|e| Setup::from_record(&e.record))
            .map(|setup| {
                let memory = memory::analyse(&setup);
                Parts {
                    flops: flops::training(&setup),
                    comm: comm::analyse(&setup),
                    layer: memory.layer_activations,
                    setup,
                }
            });
        cases.push(Case {
            id: field("id")?,
            source: field("source")?,
            engine_label: field("engine")?,
            gpu: field("gpu")?,
            gpus: m["gpus"]
                .as_f64()
                .ok_or_else(|| format!("{}: `# measured:` has no \"gpus\"", path.display()))?,
            measured_tokens: m["tokens_per_s_per_gpu"].as_f64(),
            measured_mfu: m["mfu_percent"].as_f64(),
            measured_hardware_tflops: m["hardware_tflops_per_gpu"].as_f64(),
            measured_memory_gib: m["peak_memory_gib"].as_f64(),
            memory_kind: match m["peak_memory_kind"].as_str() {
                Some("allocated") => MemoryKind::Allocated,
                Some("reserved") => MemoryKind::Reserved,
                _ => MemoryKind::Total,
            },
            memory_stage: match m["peak_memory_stage"].as_str() {
                Some("first") => Some(0),
                _ => None,
            },
            errors,
            parts,
        });
    }
    Ok(cases)
}

/// The constants that score best on `cases` (the most hits, then the smallest median
/// absolute relative error): coordinate descent over the grids, each constant in turn with
/// the others held, from the middle of the grids until nothing improves (at most 8 rounds).
pub fn fit(cases: &[&Case]) -> Calibration {
    let gemm: Vec<f64> = (15..=50).map(|i| i as f64 * 0.02).collect();
    let hbm: Vec<f64> = (15..=50).map(|i| i as f64 * 0.02).collect();
    let floor: Vec<f64> = (0..=20).map(|i| i as f64 * 1e-6).collect();
    let mut cal = Calibration {
        gemm_fraction: 0.8,
        hbm_fraction: 0.8,
        kernel_floor_s: 0.0,
    };
    let mut best = score(cases, &cal);
    for _ in 0..8 {
        let before = best;
        for axis in 0..3 {
            let grid = [&gemm, &hbm, &floor][axis];
            for &v in grid {
                let mut c = cal;
                match axis {
                    0 => c.gemm_fraction = v,
                    1 => c.hbm_fraction = v,
                    _ => c.kernel_floor_s = v,
                }
                let s = score(cases, &c);
                if s.0 > best.0 || (s.0 == best.0 && s.1 < best.1) {
                    best = s;
                    cal = c;
                }
            }
        }
        if best == before {
            break;
        }
    }
    cal
}

/// 2^30 bytes: the GiB engines print memory in.
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The allocator fragmentation that scores best on the measured peaks of `cases` (the most
/// within MEMORY_TOLERANCE, then the smallest median error), on a grid of 0 to 1 step 0.02.
pub fn fit_fragmentation(cases: &[&Case]) -> f64 {
    let mut best = (0, f64::INFINITY, 0.0);
    for i in 0..=50 {
        let f = i as f64 * 0.02;
        let mut errors: Vec<f64> = cases
            .iter()
            .filter_map(|c| c.memory_error(c.predict_memory(f)?))
            .map(f64::abs)
            .collect();
        let hits = errors.iter().filter(|e| **e <= MEMORY_TOLERANCE).count();
        let med = median(&mut errors).unwrap_or(f64::INFINITY);
        if hits > best.0 || (hits == best.0 && med < best.1) {
            best = (hits, med, f);
        }
    }
    best.2
}

fn score(cases: &[&Case], cal: &Calibration) -> (usize, f64) {
    let mut hits = 0;
    let mut errors = Vec::with_capacity(cases.len());
    for c in cases {
        if let Some(p) = c.predict(cal) {
            hits += usize::from(c.hit(&p) == Some(true));
            errors.extend(c.relative_error(&p).map(f64::abs));
        }
    }
    (hits, median(&mut errors).unwrap_or(f64::INFINITY))
}

fn median(v: &mut [f64]) -> Option<f64> {
    percentile(v, 0.5)
}

/// The value below which `q` of `v` lie (nearest rank).
fn percentile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// The validation: constants fitted on every source, and each case predicted with the
/// constants fitted without its source.
pub struct Report<'a> {
    pub cases: &'a [Case],
    /// Fitted on all sources: what kiln ships.
    pub all: Calibration,
    /// Per source, fitted on the others.
    pub held_out: BTreeMap<String, Calibration>,
    /// Per case (same order), the held-out prediction.
    pub predictions: Vec<Option<Prediction>>,
    /// The allocator fragmentation fitted on every measured peak, and per source on the
    /// others.
    pub fragmentation: f64,
    pub fragmentation_held_out: BTreeMap<String, f64>,
    /// Per case, the held-out peak-memory prediction (GiB) where a peak was measured.
    pub memory_predictions: Vec<Option<f64>>,
}

pub fn run(cases: &[Case]) -> Report<'_> {
    let all_refs: Vec<&Case> = cases.iter().collect();
    let all = fit(&all_refs);
    let mut held_out = BTreeMap::new();
    for c in cases {
        if !held_out.contains_key(&c.source) {
            let others: Vec<&Case> = cases.iter().filter(|o| o.source != c.source).collect();
            held_out.insert(c.source.clone(), fit(&others));
        }
    }
    let predictions = cases
        .iter()
        .map(|c| c.predict(&held_out[&c.source]))
        .collect();
    let fragmentation = fit_fragmentation(&all_refs);
    let mut fragmentation_held_out = BTreeMap::new();
    for c in cases.iter().filter(|c| c.measured_memory_gib.is_some()) {
        if !fragmentation_held_out.contains_key(&c.source) {
            let others: Vec<&Case> = cases.iter().filter(|o| o.source != c.source).collect();
            fragmentation_held_out.insert(c.source.clone(), fit_fragmentation(&others));
        }
    }
    let memory_predictions = cases
        .iter()
        .map(|c| c.predict_memory(*fragmentation_held_out.get(&c.source)?))
        .collect();
    Report {
        cases,
        all,
        held_out,
        predictions,
        fragmentation,
        fragmentation_held_out,
        memory_predictions,
    }
}

/// One scored run as `stdlib/validation.json` keeps it (written by `tests/validation.rs`
/// beside `fitted.json`, embedded in the binary): what the source published and kiln's
/// held-out prediction of it, so `kiln report` shows the rows of an experiment's engine and
/// arch without the experiment files or a refit.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub id: String,
    pub source: String,
    /// kiln's engine profile and the GPU's arch the run was predicted with.
    pub engine: String,
    pub arch: String,
    pub gpu: String,
    pub gpus: f64,
    /// What the source published and kiln's prediction of it: `tokens_per_s_per_gpu`,
    /// `mfu_percent` or `hardware_tflops_per_gpu` (the first the source gives).
    pub metric: String,
    pub published: f64,
    pub predicted: f64,
    /// The peak memory of one GPU (GiB) where the source measured it, and kiln's figure.
    pub published_memory_gib: Option<f64>,
    pub predicted_memory_gib: Option<f64>,
    /// `kiln check` refuses the file (its error codes); scored all the same.
    pub refused: bool,
}

/// The scored rows kiln ships (`stdlib/validation.json`).
pub fn shipped_rows() -> &'static [Row] {
    static ROWS: std::sync::OnceLock<Vec<Row>> = std::sync::OnceLock::new();
    ROWS.get_or_init(|| {
        serde_json::from_str(include_str!("../../stdlib/validation.json"))
            .expect("validation.json is valid")
    })
}

/// Rounds to `digits` significant digits, so the shipped table does not churn in the last
/// bits of a float.
fn significant(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

impl Report<'_> {
    /// Every scored run (a held-out prediction exists), in the cases' order.
    pub fn rows(&self) -> Vec<Row> {
        self.cases
            .iter()
            .zip(&self.predictions)
            .zip(&self.memory_predictions)
            .filter_map(|((c, p), m)| {
                let p = p.as_ref()?;
                let (metric, published, predicted) = match (
                    c.measured_tokens,
                    c.measured_mfu,
                    c.measured_hardware_tflops,
                ) {
                    (Some(t), _, _) => ("tokens_per_s_per_gpu", t, p.tokens_per_gpu),
                    (None, Some(m), _) => ("mfu_percent", m, p.mfu),
                    (None, None, Some(h)) => ("hardware_tflops_per_gpu", h, p.hardware_tflops),
                    _ => return None,
                };
                Some(Row {
                    id: c.id.clone(),
                    source: c.source.clone(),
                    engine: c.engine()?.to_string(),
                    arch: c.arch()?.to_string(),
                    gpu: c.gpu.clone(),
                    gpus: c.gpus,
                    metric: metric.to_string(),
                    published,
                    predicted: significant(predicted, 4),
                    published_memory_gib: c.measured_memory_gib,
                    predicted_memory_gib: m.map(|m| significant(m, 4)),
                    refused: !c.errors.is_empty(),
                })
            })
            .collect()
    }

    /// Error bands per engine and arch, from the held-out predictions.
    pub fn bands(&self) -> Vec<Band> {
        let mut groups: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        for (c, p) in self.cases.iter().zip(&self.predictions) {
            if let (Some(p), Some(engine), Some(arch)) = (p, c.engine(), c.arch()) {
                if let Some(e) = c.relative_error(p) {
                    groups
                        .entry((engine.to_string(), arch.to_string()))
                        .or_default()
                        .push(e.abs());
                }
            }
        }
        groups
            .into_iter()
            .map(|((engine, arch), mut errors)| Band {
                engine,
                arch,
                relative: round(percentile(&mut errors, BAND_PERCENTILE).unwrap_or(0.0), 3),
                runs: errors.len(),
            })
            .collect()
    }

    /// `stdlib/fitted.json`: what kiln ships.
    pub fn fitted(&self) -> Fitted {
        let sources: Vec<&str> = self.held_out.keys().map(String::as_str).collect();
        Fitted {
            calibration: self.all,
            fitted_on: format!(
                "{} measured runs of experiments/measured, experiments/reference and \
                 experiments ({}), by `kiln validate`: the grid \
                 point with the most runs within tolerance, then the smallest median error",
                self.cases.iter().filter(|c| c.parts.is_some()).count(),
                sources.join(", ")
            ),
            bands: self.bands(),
            memory: self.memory_fit(),
        }
    }

    /// The held-out errors of the measured peaks, absolute.
    fn memory_errors(&self) -> Vec<f64> {
        self.cases
            .iter()
            .zip(&self.memory_predictions)
            .filter_map(|(c, p)| c.memory_error((*p)?))
            .map(f64::abs)
            .collect()
    }

    /// The memory model's shipped fragmentation and its held-out band.
    pub fn memory_fit(&self) -> time::MemoryFit {
        let mut errors = self.memory_errors();
        let sources: Vec<&str> = self
            .fragmentation_held_out
            .keys()
            .map(String::as_str)
            .collect();
        time::MemoryFit {
            fragmentation: round(self.fragmentation, 3),
            fitted_on: format!(
                "{} measured peaks ({}), by `kiln validate`: the most within ±{:.0} %, then \
                 the smallest median error",
                self.cases
                    .iter()
                    .filter(|c| c.measured_memory_gib.is_some())
                    .count(),
                sources.join(", "),
                MEMORY_TOLERANCE * 100.0
            ),
            relative: round(percentile(&mut errors, BAND_PERCENTILE).unwrap_or(0.0), 3),
            runs: errors.len(),
        }
    }

    /// The held-out peak-memory summary per source: in docs/validation.md and the README.
    pub fn memory_table(&self) -> String {
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(
            w,
            "| source | measured peaks | within ±{:.0} % | median abs. error | 80th percentile | max | fragmentation fitted without it |",
            MEMORY_TOLERANCE * 100.0
        );
        let _ = writeln!(w, "| --- | --- | --- | --- | --- | --- | --- |");
        let mut by: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for (c, p) in self.cases.iter().zip(&self.memory_predictions) {
            if let Some(e) = p.and_then(|p| c.memory_error(p)) {
                by.entry(&c.source).or_default().push(e.abs());
                by.entry("all").or_default().push(e.abs());
            }
        }
        for (source, mut errors) in by {
            let pct = |v: Option<f64>| v.map_or("—".into(), |e| format!("{:.1} %", e * 100.0));
            let hits = errors.iter().filter(|e| **e <= MEMORY_TOLERANCE).count();
            let _ = writeln!(
                w,
                "| {source} | {} | {hits} | {} | {} | {} | {} |",
                errors.len(),
                pct(median(&mut errors)),
                pct(percentile(&mut errors, BAND_PERCENTILE)),
                pct(errors.iter().copied().reduce(f64::max)),
                self.fragmentation_held_out
                    .get(source)
                    .map_or(format!("(all: {:.2})", self.fragmentation), |f| format!(
                        "{f:.2}"
                    )),
            );
        }
        s
    }

    /// The held-out summary per source (hits, median, mean, 80th percentile and largest
    /// absolute error): in docs/validation.md and, between its markers, in the README.
    pub fn summary_table(&self) -> String {
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(
            w,
            "| source | runs | scored | hits | median abs. error | mean | 80th percentile | max | refused by check |"
        );
        let _ = writeln!(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, c) in self.cases.iter().enumerate() {
            by.entry(&c.source).or_default().push(i);
            by.entry("all").or_default().push(i);
        }
        for (source, idx) in &by {
            let (mut scored, mut hits, mut errors) = (0, 0, Vec::new());
            for &i in idx {
                if let Some(p) = &self.predictions[i] {
                    if let Some(h) = self.cases[i].hit(p) {
                        scored += 1;
                        hits += h as usize;
                    }
                    errors.extend(self.cases[i].relative_error(p).map(f64::abs));
                }
            }
            let pct = |v: Option<f64>| v.map_or("—".into(), |e| format!("{:.1} %", e * 100.0));
            let _ = writeln!(
                w,
                "| {source} | {} | {scored} | {hits} | {} | {} | {} | {} | {} |",
                idx.len(),
                pct(median(&mut errors)),
                pct((!errors.is_empty()).then(|| errors.iter().sum::<f64>() / errors.len() as f64)),
                pct(percentile(&mut errors, BAND_PERCENTILE)),
                pct(errors.iter().copied().reduce(f64::max)),
                idx.iter()
                    .filter(|&&i| !self.cases[i].errors.is_empty())
                    .count()
            );
        }
        s
    }

    /// docs/validation.md.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(
            w,
            "# Validation: kiln's predictions against measured runs\n"
        );
        let _ = writeln!(
            w,
            "Generated by `kiln validate experiments/measured` (and checked by \
             `tests/validation.rs`; `KILN_UPDATE_VALIDATION=1 cargo test -p kiln-cli --test \
             validation` rewrites it and `stdlib/fitted.json`) from \
             `experiments/measured/` (`scripts/measured_kiln.py` over \
             `../shared/reference/measured.yaml`; the runs it cannot express are listed in \
             `experiments/measured/README.md`) and the published runs of \
             `experiments/reference/` and `experiments/` (`../shared/reference/published.yaml`). A hit is tokens/s per GPU within ±{:.0} % (MFU \
             within ±{:.0} points where tokens/s is not measured). MFU is against the dense \
             peak of the run's precision, as the sources print it (kiln's `mfu_fp8_peak` for \
             fp8 runs). Rows that `kiln check` refuses are scored all the same where the \
             analysis exists, and marked.\n",
            TOKENS_TOLERANCE * 100.0,
            MFU_TOLERANCE_POINTS
        );
        let _ = writeln!(w, "## Fitted constants\n");
        let _ = writeln!(
            w,
            "Three constants are fitted (`ops::Calibration`): the share of the arch's maximum \
             achievable matmul rate that a step's GEMMs reach, the share of the HBM bandwidth \
             that element-wise kernels reach, and the shortest time a kernel takes (launch and \
             host overhead). Every row below is predicted with the \
             constants fitted on the *other* sources (leave-one-source-out); kiln ships the \
             constants fitted on all of them.\n"
        );
        let _ = writeln!(
            w,
            "| fitted without | GEMM share of ceiling | HBM share | kernel floor |"
        );
        let _ = writeln!(w, "| --- | --- | --- | --- |");
        let row = |name: &str, cal: &Calibration| {
            format!(
                "| {name} | {:.2} | {:.2} | {:.0} µs |",
                cal.gemm_fraction,
                cal.hbm_fraction,
                cal.kernel_floor_s * 1e6
            )
        };
        for (source, cal) in &self.held_out {
            let _ = writeln!(w, "{}", row(source, cal));
        }
        let _ = writeln!(w, "{}\n", row("(none: shipped)", &self.all));
        let _ = writeln!(w, "## Summary per source (held out)\n");
        w.push_str(&self.summary_table());
        let _ = writeln!(w, "\n## Bands (`throughput.band`)\n");
        let _ = writeln!(w, "| engine | arch | runs | 80th percentile abs. error |");
        let _ = writeln!(w, "| --- | --- | --- | --- |");
        for b in self.bands() {
            let _ = writeln!(
                w,
                "| {} | {} | {} | ±{:.1} % |",
                b.engine,
                b.arch,
                b.runs,
                b.relative * 100.0
            );
        }
        let _ = writeln!(w, "\n## Every run (held out)\n");
        let _ = writeln!(
            w,
            "| run | engine | GPU | tokens/s/GPU measured | predicted | MFU % measured | predicted | hardware TFLOP/s measured | predicted | error | check |"
        );
        let _ = writeln!(
            w,
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        let opt = |v: Option<f64>, d: usize| v.map_or("—".to_string(), |v| format!("{v:.d$}"));
        for (c, p) in self.cases.iter().zip(&self.predictions) {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.id,
                c.engine_label,
                c.gpu,
                opt(c.measured_tokens, 0),
                opt(p.map(|p| p.tokens_per_gpu), 0),
                opt(c.measured_mfu, 1),
                opt(p.map(|p| p.mfu), 1),
                opt(c.measured_hardware_tflops, 0),
                opt(p.map(|p| p.hardware_tflops), 0),
                p.and_then(|p| c.relative_error(&p))
                    .map_or("—".into(), |e| format!("{:+.1} %", e * 100.0)),
                if c.errors.is_empty() {
                    "ok".to_string()
                } else {
                    c.errors.join(", ")
                }
            );
        }
        let _ = writeln!(w, "\n## Peak memory per GPU (held out)\n");
        let _ = writeln!(
            w,
            "Measured peaks (GiB) against kiln's figure for the same quantity and GPU: \
             allocated (`torch.cuda.max_memory_allocated`), reserved (the caching allocator's \
             segments) or the device total, on the pipeline stage the source measured. One \
             constant is fitted, the allocator's fragmentation (reserved beyond allocated, as a \
             share of one micro-batch's activations): {:.2} on every source, and per source without it below. \
             A hit is within ±{:.0} %.\n",
            self.fragmentation,
            MEMORY_TOLERANCE * 100.0
        );
        w.push_str(&self.memory_table());
        let _ = writeln!(
            w,
            "\n| run | engine | measured (GiB) | what | stage | predicted | error |"
        );
        let _ = writeln!(w, "| --- | --- | --- | --- | --- | --- | --- |");
        for (c, p) in self.cases.iter().zip(&self.memory_predictions) {
            let Some(measured) = c.measured_memory_gib else {
                continue;
            };
            let _ = writeln!(
                w,
                "| {} | {} | {measured:.1} | {} | {} | {} | {} |",
                c.id,
                c.engine_label,
                match c.memory_kind {
                    MemoryKind::Allocated => "allocated",
                    MemoryKind::Reserved => "reserved",
                    MemoryKind::Total => "device total",
                },
                c.memory_stage
                    .map_or("most loaded".into(), |i| format!("{}", i + 1)),
                opt(*p, 1),
                p.and_then(|p| c.memory_error(p))
                    .map_or("—".into(), |e| format!("{:+.1} %", e * 100.0)),
            );
        }
        s
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
