//! `kiln tune`: every parallel layout of the declared cluster that passes the layout checks
//! and fits, each analysed with the op-level step-time model and the engine's memory model
//! (`analyse::analyse_layout`), ranked. Exhaustive over the sizes below; nothing is sampled.

use crate::analyse::analyse_layout;
use crate::analyse::engine::Engine;
use crate::analyse::setup::{Recompute, Setup};
use crate::check::engine::{refusal, Layout};
use crate::codes;
use crate::diagnostic::Diagnostic;
use crate::ir::{Provenance, Record, Value};
use crate::units::Dim;
use serde::Serialize;

/// What the ranking minimises. On a fixed cluster and batch, step time, cost and tokens per
/// second order the layouts alike; `memory` ranks by the most loaded GPU's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    Time,
    Cost,
    TokensPerS,
    Memory,
}

/// One layout and what kiln predicts for it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    pub tensor: u32,
    pub pipeline: u32,
    pub context: u32,
    pub data: u32,
    pub micro_batch: u64,
    pub accumulation: u64,
    pub zero: u8,
    pub recompute: &'static str,
    /// Under `full`, the layers of each (virtual) stage recomputed; `None`: all.
    pub recompute_layers: Option<u32>,
    /// Interleaved 1F1B: model chunks per pipeline rank.
    pub virtual_stages: u32,
    /// Layers of the first and of the last stage where they differ from the others'.
    pub first_stage_layers: Option<u32>,
    pub last_stage_layers: Option<u32>,
    pub sequence_parallel: bool,
    pub step_time_s: f64,
    pub tokens_per_s: f64,
    pub mfu: f64,
    /// The most loaded GPU's memory (allocated, fragmentation, runtime), bytes.
    pub memory_bytes: f64,
    pub capacity_bytes: f64,
    pub exposed_communication_s: f64,
    pub usd: Option<f64>,
}

impl Candidate {
    /// The layout as the `parallel` block's fields.
    pub fn layout(&self) -> String {
        let mut s = format!(
            "tensor {} · pipeline {} · context {} · data {} · micro_batch {} · zero {} · recompute {}",
            self.tensor,
            self.pipeline,
            self.context,
            self.data,
            self.micro_batch,
            self.zero,
            self.recompute
        );
        if let Some(k) = self.recompute_layers {
            s += &format!(" ({k} layers a stage)");
        }
        if self.virtual_stages > 1 {
            s += &format!(" · virtual {}", self.virtual_stages);
        }
        if let (Some(first), Some(last)) = (self.first_stage_layers, self.last_stage_layers) {
            s += &format!(" · first/last stage {first}/{last} layers");
        }
        if self.sequence_parallel {
            s += " · sp";
        }
        s
    }

    /// Free memory as a share of the GPU's.
    pub fn headroom(&self) -> f64 {
        1.0 - self.memory_bytes / self.capacity_bytes
    }
}

/// What a search found.
#[derive(Clone, Debug, Serialize)]
pub struct Search {
    /// Every layout of the search space (each passes the layout checks).
    pub layouts: usize,
    /// Layouts analysed: all but those a bound proves cannot win (partial recompute: of the
    /// k that fit, only the smallest can be fastest).
    pub evaluated: usize,
    /// Layouts found to fit in memory, ranked below.
    pub fitting: usize,
    /// The fitting layouts, best first.
    pub ranked: Vec<Candidate>,
    /// The declared layout, analysed the same way (whether or not it fits).
    pub declared: Option<Candidate>,
}

/// The sizes a search keeps as given; `None` fields it enumerates. `kiln tune` fixes nothing;
/// `auto` in a `parallel` block fixes every field not written `auto` ([`fill_autos`]).
#[derive(Clone, Debug, Default)]
pub struct Fixed {
    pub tensor: Option<u64>,
    pub pipeline: Option<u64>,
    pub context: Option<u64>,
    pub data: Option<u64>,
    pub micro_batch: Option<u64>,
    pub accumulation: Option<u64>,
    pub zero: Option<u8>,
    pub recompute: Option<Recompute>,
    pub sequence_parallel: Option<bool>,
    /// Keep the declared virtual and uneven stages, `recompute_layers` and `offload_layers`
    /// (else the search sets them to none).
    pub keep_stages: bool,
}

/// `None` (free) or equal.
fn admits<T: PartialEq>(fixed: Option<T>, value: T) -> bool {
    fixed.is_none_or(|f| f == value)
}

/// The divisors of `n`, ascending (trial division up to √n).
fn divisors(n: u64) -> Vec<u64> {
    let mut small = Vec::new();
    let mut large = Vec::new();
    let mut d = 1;
    while d * d <= n {
        if n.is_multiple_of(d) {
            small.push(d);
            if d * d != n {
                large.push(n / d);
            }
        }
        d += 1;
    }
    small.extend(large.into_iter().rev());
    small
}

/// Sizes beyond which the search does not enumerate (its divisor lists would be long):
/// layers and sequences per step. Real runs are far inside them (Llama 3 405B: 126 layers,
/// 2,048 sequences); a file beyond them gets an empty search, not a hang.
const MAX_LAYERS: u64 = 1 << 16;
const MAX_SEQUENCES: u64 = 1 << 24;

const RECOMPUTES: [(Recompute, &str); 4] = [
    (Recompute::None, "none"),
    (Recompute::Selective, "selective"),
    (Recompute::SelectiveOp, "selective_op"),
    (Recompute::Full, "full"),
];

/// Analyses one layout of `setup` (already holding its parallel sizes).
fn candidate(setup: &Setup) -> Option<Candidate> {
    let layout = analyse_layout(setup);
    let (throughput, cost) = layout.timed?;
    let par = &setup.parallel;
    Some(Candidate {
        tensor: par.tensor as u32,
        pipeline: par.pipeline as u32,
        context: par.context as u32,
        data: par.data as u32,
        micro_batch: par.micro_batch as u64,
        accumulation: par.accumulation as u64,
        zero: par.zero,
        recompute: RECOMPUTES
            .iter()
            .find(|(r, _)| *r == par.recompute)
            .map_or("none", |(_, n)| n),
        recompute_layers: par.recompute_layers.map(|k| k as u32),
        virtual_stages: par.virtual_stages as u32,
        first_stage_layers: par.first_stage_layers.map(|k| k as u32),
        last_stage_layers: par.last_stage_layers.map(|k| k as u32),
        sequence_parallel: par.sequence_parallel,
        step_time_s: throughput.step_time_s,
        tokens_per_s: throughput.tokens_per_s,
        mfu: throughput.mfu,
        memory_bytes: layout.memory.per_gpu.total,
        capacity_bytes: layout.memory.capacity_bytes,
        exposed_communication_s: throughput.exposed_communication_s,
        usd: cost.usd,
    })
}

/// The ways the search splits `layers` over `pipeline` stages: (layers of the first and of
/// the last stage where they differ, layers of every other stage). Even where the stages
/// divide the layers; where `uneven` (Megatron-LM's and NeMo's
/// --decoder-first/last-pipeline-num-layers) and there are 3 or more stages, also the first
/// and last stage one or two layers short of the others, which hold the embedding and the
/// output layer (Llama 3 405B: 7 + 14 × 8 + 7 layers, Dubey et al. 2024 Sec. 3.3.2).
fn splits(layers: u64, pipeline: u64, uneven: bool) -> Vec<(Option<u64>, u64)> {
    let mut out = Vec::new();
    if layers.is_multiple_of(pipeline) {
        out.push((None, layers / pipeline));
    }
    if uneven && pipeline >= 3 {
        for short in 1..=2 {
            // (p − 2)·m + 2·(m − short) = layers.
            let total = layers + 2 * short;
            if total.is_multiple_of(pipeline) && total / pipeline > short {
                out.push((Some(total / pipeline - short), total / pipeline));
            }
        }
    }
    out
}

/// Every layout of the cluster: tensor within a node dividing the heads and key/value heads;
/// pipeline stages splitting the layers evenly or, where the engine takes it, with shorter
/// first and last stages ([`splits`]); virtual stages (interleaved 1F1B: Megatron-LM, NeMo,
/// torchtitan) dividing an even stage's layers, with at least as many micro-batches as
/// stages; context ring sizes that split the sequence into 2c chunks; data the rest of the
/// world; every micro-batch that divides a data rank's share of the batch; ZeRO 0–3; every
/// recompute mode the engine runs; sequence parallelism with tensor parallelism (`selective`
/// only without FlashAttention, with which it is `none`). Full recompute of only k layers
/// of each (virtual) stage (Megatron-LM's and NeMo's block method) is the `partial` count
/// `visit` gets beside a `full` layout: k = 1 … (layers per chunk − 1). Not searched:
/// activation offload. The engine's own limits: DeepSpeed has no tensor parallelism in its
/// config and no pipeline with ZeRO 2 or 3; `selective_op` is torchtitan's and kiln's.
/// `visit` gets each layout as `setup` with its parallel sizes set.
fn for_each_layout(setup: &Setup, fixed: &Fixed, mut visit: impl FnMut(&Setup, u64)) {
    let world = setup.world() as u64;
    let per_node = setup.hardware.gpus_per_node as u64;
    let m = &setup.shape;
    let (layers, heads, kv_heads, seq_len) = (
        m.layers as u64,
        m.heads as u64,
        m.kv_heads as u64,
        m.seq_len as u64,
    );
    let sequences = (setup.batch_tokens / m.seq_len) as u64;
    let engine = setup.engine;
    let megatron = matches!(engine, Engine::Megatron | Engine::Nemo);
    let interleaves = megatron || engine == Engine::Torchtitan;
    let world_ok = world >= 1 && (world as f64) <= crate::check::MAX_WORLD;
    if !world_ok || layers == 0 || layers > MAX_LAYERS || sequences > MAX_SEQUENCES {
        return;
    }
    let mut s = setup.clone();
    if !fixed.keep_stages {
        let p = &mut s.parallel;
        p.stage_layers = None;
        p.recompute_layers = None;
        p.offload_layers = None;
    }
    for tensor in divisors(per_node.min(world)) {
        if !heads.is_multiple_of(tensor)
            || !kv_heads.is_multiple_of(tensor)
            || !admits(fixed.tensor, tensor)
            || engine == Engine::Deepspeed && tensor > 1
        {
            continue;
        }
        for pipeline in divisors(world / tensor) {
            if pipeline > layers || !admits(fixed.pipeline, pipeline) {
                continue;
            }
            let stage_options = if fixed.keep_stages {
                // The declared stages (`auto` keeps them): as written, else even.
                let par = &setup.parallel;
                let declared = par.first_stage_layers.is_some()
                    || par.last_stage_layers.is_some()
                    || par.stage_layers.is_some();
                let chunks = pipeline * (par.virtual_stages as u64).max(1);
                if declared || layers.is_multiple_of(chunks) {
                    vec![(None, 0)]
                } else {
                    Vec::new()
                }
            } else {
                splits(layers, pipeline, megatron)
            };
            for (edge, middle) in stage_options {
                let virtuals = match (fixed.keep_stages, edge) {
                    (true, _) => vec![setup.parallel.virtual_stages as u64],
                    (false, None) if interleaves && pipeline > 1 => divisors(middle),
                    _ => vec![1],
                };
                for virtual_stages in virtuals {
                    // Layers of one (virtual) stage of the middle: what `recompute_layers` counts.
                    let chunk = if fixed.keep_stages {
                        layers / pipeline / virtual_stages.max(1)
                    } else {
                        middle / virtual_stages
                    };
                    for context in divisors(world / (tensor * pipeline)) {
                        if context > 1 && !seq_len.is_multiple_of(2 * context) {
                            continue;
                        }
                        let data = world / (tensor * pipeline * context);
                        if sequences == 0
                            || !sequences.is_multiple_of(data)
                            || !admits(fixed.context, context)
                            || !admits(fixed.data, data)
                        {
                            continue;
                        }
                        for micro_batch in divisors(sequences / data) {
                            let accumulation = sequences / data / micro_batch;
                            if !admits(fixed.micro_batch, micro_batch)
                                || !admits(fixed.accumulation, accumulation)
                                || virtual_stages > 1 && accumulation < pipeline
                                || !ramp_splits(setup, micro_batch * data, pipeline, virtual_stages)
                            {
                                continue;
                            }
                            for zero in 0..=3u8 {
                                // The engine's start-up rules (check/engine.rs) on what is
                                // chosen so far; sequence parallelism's come below.
                                let layout = Layout {
                                    tensor,
                                    pipeline,
                                    virtual_stages,
                                    context,
                                    zero,
                                    accumulation,
                                    seq_len,
                                    sequence_parallel: false,
                                    tp_comm_overlap: false,
                                };
                                if refusal(engine, &layout).is_some() || !admits(fixed.zero, zero) {
                                    continue;
                                }
                                for (recompute, _) in RECOMPUTES {
                                    if !admits(fixed.recompute, recompute)
                                        || recompute == Recompute::SelectiveOp
                                            && !matches!(engine, Engine::Torchtitan | Engine::Kiln)
                                    {
                                        continue;
                                    }
                                    // With FlashAttention the scores Korthikanti's selective
                                    // recompute drops are never stored: the same layout as none.
                                    if recompute == Recompute::Selective
                                        && setup.parallel.flash_attention
                                        && fixed.recompute.is_none()
                                    {
                                        continue;
                                    }
                                    let partial = if recompute == Recompute::Full
                                        && megatron
                                        && !fixed.keep_stages
                                    {
                                        chunk.saturating_sub(1)
                                    } else {
                                        0
                                    };
                                    for sequence_parallel in [false, true] {
                                        if sequence_parallel && tensor == 1
                                            || !admits(fixed.sequence_parallel, sequence_parallel)
                                        {
                                            continue;
                                        }
                                        let p = &mut s.parallel;
                                        p.tensor = tensor as f64;
                                        p.pipeline = pipeline as f64;
                                        if !fixed.keep_stages {
                                            p.virtual_stages = virtual_stages as f64;
                                            p.first_stage_layers = edge.map(|e| e as f64);
                                            p.last_stage_layers = edge.map(|e| e as f64);
                                        }
                                        p.context = context as f64;
                                        p.data = data as f64;
                                        p.micro_batch = micro_batch as f64;
                                        p.accumulation = accumulation as f64;
                                        p.zero = zero;
                                        p.recompute = recompute;
                                        p.sequence_parallel = sequence_parallel;
                                        visit(&s, partial);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Every batch of the ramp (if any) splits into `per_step` = micro_batch × data sequences,
/// with at least as many micro-batches as stages when interleaved: K-C025's rule
/// (check/ramp.rs), so that no layout tune offers is refused by `kiln check`.
fn ramp_splits(setup: &Setup, per_step: u64, pipeline: u64, virtual_stages: u64) -> bool {
    setup.batch_ramp.iter().all(|stage| {
        stage.global_batch.is_multiple_of(per_step)
            && (virtual_stages <= 1 || stage.global_batch / per_step >= pipeline)
    })
}

/// How many layouts [`search`] would analyse (cheap: nothing is analysed).
pub fn count(setup: &Setup) -> usize {
    count_with_base(setup).0
}

/// [`count`], and the layouts without partial recompute: what bounds the analyses (each
/// adds at most log2 of its partial recomputes).
pub fn count_with_base(setup: &Setup) -> (usize, usize) {
    let (mut n, mut base) = (0, 0);
    for_each_layout(setup, &Fixed::default(), |_, partial| {
        n += 1 + partial as usize;
        base += 1;
    });
    (n, base)
}

/// Analyses every layout and ranks those that fit by `objective`.
pub fn search(setup: &Setup, objective: Objective) -> Search {
    search_within(setup, objective, &Fixed::default())
}

/// [`search`] over the layouts that keep `fixed`.
pub fn search_within(setup: &Setup, objective: Objective, fixed: &Fixed) -> Search {
    let declared = candidate(setup);
    let (mut layouts, mut evaluated) = (0, 0);
    let mut ranked = Vec::new();
    let mut partial_setup = setup.clone();
    for_each_layout(setup, fixed, |s, partial| {
        layouts += 1 + partial as usize;
        evaluated += 1;
        let Some(full) = candidate(s) else { return };
        if full.memory_bytes > full.capacity_bytes {
            return; // recomputing every layer is the least memory: no k fits either
        }
        // Recomputing k < all layers of a stage: memory falls and step time rises with k
        // (each recomputed layer frees its stash and adds its forward), so of the k that
        // fit the smallest is the fastest, and under `memory` none beats k = all. Bisection
        // finds it in log2(k) analyses: the bound that prunes the rest.
        if partial > 0 && objective != Objective::Memory {
            partial_setup.clone_from(s);
            let mut fits = |k: u64, evaluated: &mut usize| {
                partial_setup.parallel.recompute_layers = Some(k as f64);
                *evaluated += 1;
                candidate(&partial_setup).filter(|c| c.memory_bytes <= c.capacity_bytes)
            };
            let (mut lo, mut hi) = (1, partial + 1); // k = partial + 1 is every layer: fits
            let mut best = None;
            while lo < hi {
                let mid = (lo + hi) / 2;
                match fits(mid, &mut evaluated) {
                    Some(c) => {
                        best = Some(c);
                        hi = mid;
                    }
                    None => lo = mid + 1,
                }
            }
            if let Some(c) = best {
                if c.recompute_layers == Some(lo as u32) {
                    ranked.push(c);
                }
            }
        }
        ranked.push(full);
    });
    let key = |c: &Candidate| match objective {
        Objective::Time | Objective::Cost | Objective::TokensPerS => c.step_time_s,
        Objective::Memory => c.memory_bytes,
    };
    // Ties by step time, then by memory: of equally fast layouts the one with more headroom.
    ranked.sort_by(|a, b| {
        key(a)
            .total_cmp(&key(b))
            .then(a.step_time_s.total_cmp(&b.step_time_s))
            .then(a.memory_bytes.total_cmp(&b.memory_bytes))
    });
    Search {
        layouts,
        evaluated,
        fitting: ranked.len(),
        ranked,
        declared,
    }
}

/// The top `k` as a text table, with the declared layout and each one's step time against it.
/// Layouts whose headroom is less than `band` (the memory model's validated error) are marked
/// `~`: they fit by kiln's figure, but measured runs of such layouts also ran out of memory.
pub fn render(search: &Search, k: usize, objective: &str, band: f64) -> String {
    let mut out = format!(
        "{} layouts, {}, {} fit; the best {} by {objective}:\n\n",
        search.layouts,
        if search.evaluated < search.layouts {
            format!("{} analysed (the rest pruned by a bound)", search.evaluated)
        } else {
            "every one analysed".to_string()
        },
        search.fitting,
        k.min(search.ranked.len())
    );
    out += "  # | layout | step time | vs declared | MFU | memory (headroom) | exposed comm.\n";
    let base = search.declared.as_ref().map(|d| d.step_time_s);
    let row = |label: String, c: &Candidate| {
        format!(
            "{label:>3} | {} | {:.3} s | {} | {:.1} % | {:.1} GB ({:.1} %{}) | {:.3} s\n",
            c.layout(),
            c.step_time_s,
            base.map_or("—".into(), |b| format!(
                "{:+.1} %",
                (c.step_time_s / b - 1.0) * 100.0
            )),
            c.mfu * 100.0,
            c.memory_bytes / 1e9,
            c.headroom() * 100.0,
            if c.headroom() < band { " ~" } else { "" },
            c.exposed_communication_s
        )
    };
    for (i, c) in search.ranked.iter().take(k).enumerate() {
        out += &row((i + 1).to_string(), c);
    }
    if let Some(d) = &search.declared {
        out += &row("now".into(), d);
        if d.memory_bytes > d.capacity_bytes {
            out += "      (the declared layout does not fit)\n";
        }
    }
    out += &format!(
        "\n~ fits by less than kiln's memory band (±{:.1} %, docs/validation.md)\n",
        band * 100.0
    );
    out
}

/// The source of `text` with experiment `name`'s `parallel` block set to `layout`, keeping
/// everything else (comments included) and then in the canonical layout (`kiln fmt`): each
/// field the search chose replaces its value or is added; the layout fields the layout does
/// not have (uneven stages, `recompute_layers`, `stage_layers`, `offload_layers`) are removed.
/// `data` and `accumulation` are written only where the file declared them (else they stay
/// derived). `Err` says why the file cannot be rewritten.
pub fn write_layout(text: &str, name: &str, layout: &Candidate) -> Result<String, String> {
    use crate::syntax::ast::{Entry, ExprKind, Item};
    let file = crate::syntax::parse(0, text).map_err(|d| d.message.clone())?;
    let decl = file
        .items
        .iter()
        .find_map(|i| match i {
            Item::Decl(d) if d.kind.name == "experiment" && d.name.name == name => Some(d),
            _ => None,
        })
        .ok_or_else(|| format!("no experiment `{name}` in the file"))?;
    let chosen: Vec<(&str, String)> = vec![
        ("tensor", layout.tensor.to_string()),
        ("pipeline", layout.pipeline.to_string()),
        ("context", layout.context.to_string()),
        ("data", layout.data.to_string()),
        ("micro_batch", layout.micro_batch.to_string()),
        ("accumulation", layout.accumulation.to_string()),
        ("zero", layout.zero.to_string()),
        ("recompute", layout.recompute.to_string()),
        ("sequence_parallel", layout.sequence_parallel.to_string()),
        ("virtual_stages", layout.virtual_stages.to_string()),
    ];
    // The optional fields: written where the layout has them, removed where it has not.
    let optional = [
        ("first_stage_layers", layout.first_stage_layers),
        ("last_stage_layers", layout.last_stage_layers),
        ("recompute_layers", layout.recompute_layers),
    ];
    let chosen: Vec<(&str, String)> = chosen
        .into_iter()
        .chain(
            optional
                .iter()
                .filter_map(|(f, v)| v.map(|v| (*f, v.to_string()))),
        )
        .collect();
    let removed: Vec<&str> = ["stage_layers", "offload_layers"]
        .into_iter()
        .chain(
            optional
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(f, _)| *f),
        )
        .collect();
    let derived_unless_declared = ["data", "accumulation"];
    // Edits as (start, end, replacement), applied from the end.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let parallel = decl.body.entries.iter().find_map(|e| match e {
        Entry::Field { key, value, .. } if key.name == "parallel" => match &value.kind {
            ExprKind::Block(b) => Some(b),
            _ => None,
        },
        _ => None,
    });
    match parallel {
        Some(block) => {
            let mut missing = Vec::new();
            for (field, value) in &chosen {
                let entry = block.entries.iter().find_map(|e| match e {
                    Entry::Field { key, value, .. } if key.name == *field => Some(value),
                    _ => None,
                });
                match entry {
                    Some(v) => {
                        let (start, end) = (v.span.start as usize, v.span.end as usize);
                        let old = &text[start..end];
                        if old != value {
                            // The line's own comment described the old value: say so.
                            if let Some((at, note)) = trailing_comment(text, end) {
                                edits.push((
                                    at,
                                    at + note.len(),
                                    format!("# was {old} before `kiln tune`: {}", note[1..].trim()),
                                ));
                            }
                        }
                        edits.push((start, end, value.clone()))
                    }
                    None if derived_unless_declared.contains(field) => {}
                    None => missing.push(format!("{field} = {value}")),
                }
            }
            for e in &block.entries {
                if let Entry::Field { key, span, .. } = e {
                    if removed.contains(&key.name.as_str()) {
                        let (start, mut end) = (span.start as usize, span.end as usize);
                        // The separating comma after it, if any.
                        let rest = &text[end..];
                        let skipped = rest.len() - rest.trim_start_matches([' ', '\t']).len();
                        let field = &text[start..end];
                        if let Some((at, note)) = trailing_comment(text, end) {
                            edits.push((
                                at,
                                at + note.len(),
                                format!("# `{field}` removed by `kiln tune`: {}", note[1..].trim()),
                            ));
                        }
                        if text[end + skipped..].starts_with(',') {
                            end += skipped + 1;
                        }
                        edits.push((start, end, String::new()));
                    }
                }
            }
            if !missing.is_empty() {
                // Before the block's closing brace, on a line of its own.
                let close = block.span.end as usize - 1;
                edits.push((close, close, format!("\n{}\n", missing.join("\n"))));
            }
        }
        None => {
            let fields: Vec<String> = chosen
                .iter()
                .filter(|(f, _)| !derived_unless_declared.contains(f))
                .map(|(f, v)| format!("{f} = {v}"))
                .collect();
            let close = decl.body.span.end as usize - 1;
            edits.push((
                close,
                close,
                format!("\nparallel {{\n{}\n}}\n", fields.join("\n")),
            ));
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_string();
    for (start, end, replacement) in edits {
        out.replace_range(start..end, &replacement);
    }
    let reparsed = crate::syntax::parse(0, &out).map_err(|d| d.message.clone())?;
    Ok(crate::syntax::fmt::format(&reparsed, &out))
}

/// The comment that ends the line after byte `end` when only a comma or spaces come
/// between (a field alone on its line): its byte offset and text, `#` included.
fn trailing_comment(text: &str, end: usize) -> Option<(usize, &str)> {
    let line = &text[end..text[end..].find('\n').map_or(text.len(), |n| end + n)];
    let hash = line.find('#')?;
    line[..hash]
        .chars()
        .all(|c| c == ',' || c.is_whitespace())
        .then(|| (end + hash, line[hash..].trim_end()))
}

/// The `parallel` fields that may be written `auto` (schema `Fill::Searched`).
pub const SEARCHED: [&str; 5] = ["tensor", "pipeline", "micro_batch", "zero", "recompute"];

fn parallel_path(field: &str) -> [String; 2] {
    ["parallel".to_string(), field.to_string()]
}

/// Before derivation: each searched field of experiment `exp` written `auto` takes its
/// default (tensor, pipeline and micro-batch 1, ZeRO 0, no recompute) so that the rest of
/// the layout derives; [`fill_autos`] replaces them after derivation. Returns the fields.
pub fn take_autos(exp: &mut Record) -> Vec<&'static str> {
    // A model sized by kiln (`model = auto { family }`) has no layout its author could
    // have chosen: the searched fields left out are searched too.
    let auto_model = exp
        .record("model")
        .and_then(|m| m.preset.as_deref())
        .and_then(crate::family::of_preset)
        .is_some();
    let mut taken = Vec::new();
    for field in SEARCHED {
        if let Some(slot) = exp.lookup_mut(&parallel_path(field)) {
            let left_out = auto_model && matches!(slot.provenance, Provenance::Default);
            if matches!(slot.value, Value::Auto) || left_out {
                slot.value = match field {
                    "recompute" => Value::Sym("none".into()),
                    "zero" => Value::Num(0.0, Dim::Count),
                    _ => Value::Num(1.0, Dim::Count),
                };
                taken.push(field);
            }
        }
    }
    taken
}

/// After derivation: the fields `searched` (from [`take_autos`]) become those of the fastest
/// layout that fits, by predicted step time, among the layouts that keep every other size
/// as written (`data` and `accumulation` too, where written); derived `data` and
/// `accumulation` follow the layout chosen. K-D003 when no layout fits.
pub fn fill_autos(exp: &mut Record, searched: &[&str]) -> Vec<Diagnostic> {
    if searched.is_empty() {
        return Vec::new();
    }
    let Some(setup) = Setup::from_record(exp) else {
        return Vec::new(); // its inputs were reported
    };
    let declared = |field: &str| {
        exp.lookup(&parallel_path(field))
            .is_some_and(|s| !matches!(s.provenance, Provenance::Derived(_)))
    };
    let free = |field: &str| searched.contains(&field);
    let declared_sp = exp
        .lookup(&parallel_path("sequence_parallel"))
        .is_some_and(|s| matches!(s.provenance, Provenance::Declared));
    let par = &setup.parallel;
    let fixed = Fixed {
        tensor: (!free("tensor")).then_some(par.tensor as u64),
        pipeline: (!free("pipeline")).then_some(par.pipeline as u64),
        context: Some(par.context as u64),
        data: declared("data").then_some(par.data as u64),
        micro_batch: (!free("micro_batch")).then_some(par.micro_batch as u64),
        accumulation: declared("accumulation").then_some(par.accumulation as u64),
        zero: (!free("zero")).then_some(par.zero),
        recompute: (!free("recompute")).then_some(par.recompute),
        // Sequence parallelism goes with tensor parallelism: searched with it unless written.
        sequence_parallel: (!free("tensor") || declared_sp).then_some(par.sequence_parallel),
        keep_stages: true,
    };
    let found = search_within(&setup, Objective::Time, &fixed);
    let at = searched
        .iter()
        .find_map(|f| exp.lookup(&parallel_path(f)).and_then(|s| s.span));
    // The fastest layout that fits by more than the memory model's validated band (the one
    // K-M002 warns inside), else the fastest that fits at all.
    let band = crate::analyse::time::fitted().memory.relative;
    let clear = found
        .ranked
        .iter()
        .find(|c| c.memory_bytes * (1.0 + band) <= c.capacity_bytes);
    let Some(best) = clear.or(found.ranked.first()) else {
        let mut d = Diagnostic::new(
            codes::LAYOUT_SEARCH,
            format!(
                "no layout fits with `{}` searched: {} layouts keep the other sizes as written, and none fits in memory",
                searched.join("`, `"),
                found.evaluated
            ),
        )
        .help("write more of the layout as `auto`, or run `kiln tune` to see every layout of this cluster");
        if let Some(s) = at {
            d = d.at(s, "searched here");
        }
        return vec![d];
    };
    let how = format!(
        "searched: best of {} layouts by predicted step time ({} fit{}; {:.3} s a step)",
        found.evaluated,
        found.fitting,
        match clear {
            Some(_) => format!(
                ", the fastest with kiln's ±{:.1} % memory band free",
                band * 100.0
            ),
            None => String::new(),
        },
        best.step_time_s
    );
    for field in searched {
        let value = match *field {
            "tensor" => Value::Num(best.tensor as f64, Dim::Count),
            "pipeline" => Value::Num(best.pipeline as f64, Dim::Count),
            "micro_batch" => Value::Num(best.micro_batch as f64, Dim::Count),
            "zero" => Value::Num(best.zero as f64, Dim::Count),
            _ => Value::Sym(best.recompute.to_string()),
        };
        if let Some(slot) = exp.lookup_mut(&parallel_path(field)) {
            slot.value = value;
            slot.provenance = Provenance::Derived(how.clone());
        }
    }
    if fixed.sequence_parallel.is_none() {
        if let Some(slot) = exp.lookup_mut(&parallel_path("sequence_parallel")) {
            slot.value = Value::Bool(best.sequence_parallel);
            slot.provenance = Provenance::Derived(how.clone());
        }
    }
    let world = setup.world();
    let sequences = setup.batch_tokens / setup.shape.seq_len;
    let follows = [
        (
            "data",
            best.data as f64,
            format!(
                "world / (tensor × pipeline × context) = {world} / ({} × {} × {})",
                best.tensor, best.pipeline, best.context
            ),
        ),
        (
            "accumulation",
            best.accumulation as f64,
            format!(
                "batch / (seq_len × micro_batch × data) = {sequences} / ({} × {}) sequences",
                best.micro_batch, best.data
            ),
        ),
    ];
    for (field, value, formula) in follows {
        if let Some(slot) = exp.lookup_mut(&parallel_path(field)) {
            if matches!(slot.provenance, Provenance::Derived(_)) {
                slot.value = Value::Num(value, Dim::Count);
                slot.provenance = Provenance::Derived(formula);
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Candidate {
        Candidate {
            tensor: 2,
            pipeline: 4,
            context: 1,
            data: 1,
            micro_batch: 1,
            accumulation: 8,
            zero: 1,
            recompute: "none",
            recompute_layers: None,
            virtual_stages: 1,
            first_stage_layers: None,
            last_stage_layers: None,
            sequence_parallel: true,
            step_time_s: 1.0,
            tokens_per_s: 1.0,
            mfu: 0.5,
            memory_bytes: 1.0,
            capacity_bytes: 2.0,
            exposed_communication_s: 0.0,
            usd: None,
        }
    }

    #[test]
    fn comments_of_changed_and_removed_fields_say_so() {
        let text = "experiment e {\n  parallel {\n    tensor = 8  # Table 4 TP\n    pipeline = 4  # Table 4 PP\n    first_stage_layers = 5  # uneven, Sec 3.3.2\n    zero = 1\n  }\n}\n";
        let out = write_layout(text, "e", &layout()).unwrap();
        // `kiln fmt` aligns the comments: compare each line without its spaces.
        let lines: Vec<String> = out.lines().map(|l| l.replace(' ', "")).collect();
        let has = |l: &str| lines.contains(&l.replace(' ', ""));
        assert!(
            has("tensor = 2 # was 8 before `kiln tune`: Table 4 TP"),
            "{out}"
        );
        // An unchanged value keeps its comment as written.
        assert!(has("pipeline = 4 # Table 4 PP"), "{out}");
        assert!(
            out.contains("# `first_stage_layers = 5` removed by `kiln tune`: uneven, Sec 3.3.2"),
            "{out}"
        );
        assert!(
            !out.lines()
                .any(|l| l.trim_start().starts_with("first_stage_layers")),
            "{out}"
        );
    }
}
