//! `kiln tune`: every parallel layout of the declared cluster that passes the layout checks
//! and fits, each analysed with the op-level step-time model and the engine's memory model
//! (`analyse::analyse_layout`), ranked. Exhaustive over the sizes below; nothing is sampled.

use crate::analyse::analyse_layout;
use crate::analyse::engine::Engine;
use crate::analyse::setup::{Recompute, Setup};
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
    /// Layouts analysed (every one that passed the layout checks).
    pub evaluated: usize,
    /// Of which fit in memory.
    pub fitting: usize,
    /// The fitting layouts, best first.
    pub ranked: Vec<Candidate>,
    /// The declared layout, analysed the same way (whether or not it fits).
    pub declared: Option<Candidate>,
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

/// Every layout of the cluster: tensor within a node dividing the heads and key/value heads,
/// pipeline dividing the layers (even stages), context ring sizes that split the sequence
/// into 2c chunks, data the rest of the world; every micro-batch that divides a data rank's
/// share of the batch; ZeRO 0–3; every recompute mode the engine runs; sequence parallelism
/// with tensor parallelism (`selective` only without FlashAttention, with which it is
/// `none`). Not searched yet: virtual stages, uneven first and last stages, recompute of
/// every k layers, activation offload. The engine's own limits: DeepSpeed has no tensor
/// parallelism in its config and no pipeline with ZeRO 2 or 3; `selective_op` is
/// torchtitan's and kiln's. `visit` gets each layout as `setup` with its parallel sizes set.
fn for_each_layout(setup: &Setup, mut visit: impl FnMut(&Setup)) {
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
    let world_ok = world >= 1 && (world as f64) <= crate::check::MAX_WORLD;
    if !world_ok || layers == 0 || layers > MAX_LAYERS || sequences > MAX_SEQUENCES {
        return;
    }
    let mut s = setup.clone();
    {
        let p = &mut s.parallel;
        p.virtual_stages = 1.0;
        p.first_stage_layers = None;
        p.last_stage_layers = None;
        p.stage_layers = None;
        p.recompute_layers = None;
        p.offload_layers = None;
    }
    for tensor in divisors(per_node.min(world)) {
        if !heads.is_multiple_of(tensor) || !kv_heads.is_multiple_of(tensor) {
            continue;
        }
        if engine == Engine::Deepspeed && tensor > 1 {
            continue;
        }
        for pipeline in divisors(layers) {
            if !world.is_multiple_of(tensor * pipeline) {
                continue;
            }
            for context in divisors(world / (tensor * pipeline)) {
                if context > 1 && !seq_len.is_multiple_of(2 * context) {
                    continue;
                }
                let data = world / (tensor * pipeline * context);
                if sequences == 0 || !sequences.is_multiple_of(data) {
                    continue;
                }
                for micro_batch in divisors(sequences / data) {
                    let accumulation = sequences / data / micro_batch;
                    for zero in 0..=3u8 {
                        if engine == Engine::Deepspeed && pipeline > 1 && zero >= 2 {
                            continue;
                        }
                        for (recompute, _) in RECOMPUTES {
                            if recompute == Recompute::SelectiveOp
                                && !matches!(engine, Engine::Torchtitan | Engine::Kiln)
                            {
                                continue;
                            }
                            // With FlashAttention the scores Korthikanti's selective
                            // recompute drops are never stored: the same layout as none.
                            if recompute == Recompute::Selective && setup.parallel.flash_attention {
                                continue;
                            }
                            for sequence_parallel in [false, true] {
                                if sequence_parallel && tensor == 1 {
                                    continue;
                                }
                                let p = &mut s.parallel;
                                p.tensor = tensor as f64;
                                p.pipeline = pipeline as f64;
                                p.context = context as f64;
                                p.data = data as f64;
                                p.micro_batch = micro_batch as f64;
                                p.accumulation = accumulation as f64;
                                p.zero = zero;
                                p.recompute = recompute;
                                p.sequence_parallel = sequence_parallel;
                                visit(&s);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How many layouts [`search`] would analyse (cheap: nothing is analysed).
pub fn count(setup: &Setup) -> usize {
    let mut n = 0;
    for_each_layout(setup, |_| n += 1);
    n
}

/// Analyses every layout and ranks those that fit by `objective`.
pub fn search(setup: &Setup, objective: Objective) -> Search {
    let declared = candidate(setup);
    let mut evaluated = 0;
    let mut ranked = Vec::new();
    for_each_layout(setup, |s| {
        evaluated += 1;
        if let Some(c) = candidate(s) {
            if c.memory_bytes <= c.capacity_bytes {
                ranked.push(c);
            }
        }
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
        "{} layouts analysed, {} fit; the best {} by {objective}:\n\n",
        search.evaluated,
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
/// field the search chose replaces its value or is added; the layout fields the search does
/// not choose (virtual and uneven stages, `recompute_layers`, `offload_layers`) are removed.
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
    ];
    let removed = [
        "virtual_stages",
        "first_stage_layers",
        "last_stage_layers",
        "stage_layers",
        "recompute_layers",
        "offload_layers",
    ];
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
                        edits.push((v.span.start as usize, v.span.end as usize, value.clone()))
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
