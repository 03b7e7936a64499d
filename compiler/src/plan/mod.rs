//! Lowering: a checked experiment and its analyses become the run plan, the only contract
//! between the compiler and the runtime (versioned JSON with a JSON Schema).

pub mod graph;
pub mod schedule;
pub mod topology;

use crate::analyse::setup::Setup;
use crate::analyse::Analysis;
use crate::ir::{Provenance, Record, Resolved, Value};
use graph::{Draft, Resources, Step, StepKind};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

/// Bumped whenever the plan's meaning changes; the runtime refuses other versions.
pub const PLAN_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct RunPlan {
    pub version: u32,
    pub experiment: ExperimentSpec,
    pub analysis: Analysis,
    pub topology: topology::Topology,
    pub schedule: schedule::Schedule,
    pub steps: Vec<Step>,
}

/// The resolved experiment: typed specs for the runtime, and every value with provenance.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ExperimentSpec {
    pub name: String,
    pub seed: u64,
    pub model: ModelSpec,
    pub optimizer: OptimizerSpec,
    pub precision: String,
    pub parallel: ParallelSpec,
    pub tokenizer: Option<TokenizerSpec>,
    pub sources: Vec<SourceSpec>,
    pub dedup: DedupSpec,
    pub quality: QualitySpec,
    pub gpu: String,
    /// Every value of the experiment: its path, value, unit and where it came from.
    pub values: Vec<PlanValue>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ModelSpec {
    pub layers: u64,
    pub hidden: u64,
    pub ffn_hidden: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub vocab: u64,
    pub seq_len: u64,
    pub tied_embeddings: bool,
    pub activation: String,
    pub norm: String,
    pub position: String,
    pub bias: bool,
    pub dropout: f64,
    pub params: u64,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct OptimizerSpec {
    pub kind: String,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub grad_clip: f64,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ParallelSpec {
    pub zero: u8,
    pub recompute: String,
    /// Layers of each (virtual) pipeline stage that full recompute covers; absent: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recompute_layers: Option<u64>,
    /// Layers whose saved activations are offloaded to host memory; absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offload_layers: Option<u64>,
    pub sequence_parallel: bool,
    pub flash_attention: bool,
    pub micro_batch: u64,
    pub accumulation: u64,
    pub first_stage_layers: Option<u64>,
    pub last_stage_layers: Option<u64>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct TokenizerSpec {
    /// `bpe` or `unigram`.
    pub kind: String,
    pub vocab: u64,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SourceSpec {
    pub name: String,
    pub path: String,
    pub text_field: String,
    pub unique_tokens: Option<f64>,
    pub max_epochs: f64,
    /// The longest document the data steps keep (bytes of text); `None`: the runtime's
    /// default. Saturates at `u64::MAX` (no limit) for larger values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_document_bytes: Option<u64>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct DedupSpec {
    pub exact: Option<ExactDedupSpec>,
    pub near: Option<NearDedupSpec>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ExactDedupSpec {
    pub false_positive: f64,
    pub expected_docs: Option<u64>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct NearDedupSpec {
    pub ngram: u64,
    pub bands: u64,
    pub rows: u64,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct QualitySpec {
    pub heuristics: Vec<String>,
    pub classifier_threshold: Option<f64>,
    /// Declared thresholds by family (`gopher_quality`, `gopher_repetition`, `c4`,
    /// `fineweb`), with the runtime's field names; a family listed here is on.
    pub thresholds: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PlanValue {
    pub path: String,
    pub value: serde_json::Value,
    /// The unit of a number (`tokens`, `bytes`, …); absent for counts and non-numbers.
    pub unit: Option<crate::units::Dim>,
    pub provenance: Provenance,
}

/// Lowers a checked experiment. `None` if something it needs is missing (already reported).
pub fn lower(exp: &Resolved, setup: &Setup, analysis: &Analysis) -> Option<RunPlan> {
    let r = &exp.record;
    let spec = experiment_spec(exp, setup)?;
    let par = &setup.parallel;
    let u = |v: f64| schedule::whole(v).and_then(|v| u32::try_from(v).ok());
    let layout = topology::Layout {
        nodes: u(setup.hardware.nodes)?,
        gpus_per_node: u(setup.hardware.gpus_per_node)?,
        tensor: u(par.tensor)?,
        context: u(par.context)?,
        data: u(par.data)?,
        pipeline: u(par.pipeline)?,
        virtual_stages: u(par.virtual_stages)?,
    };
    // The ranks are listed one by one: their product must be the world, and within bounds
    // (check/limits.rs reports a larger world before lowering).
    let world = [layout.tensor, layout.context, layout.data, layout.pipeline]
        .iter()
        .try_fold(1u32, |w, &s| w.checked_mul(s))
        .filter(|w| f64::from(*w) <= crate::check::MAX_WORLD)?;
    if f64::from(world) != setup.world() {
        return None;
    }
    let stage_layers = setup
        .stage_layers()
        .iter()
        .map(|l| u(*l))
        .collect::<Option<Vec<u32>>>()?;
    let topology = topology::place(layout, stage_layers);
    let schedule = schedule::build(r, setup, analysis)?;
    let steps = steps(&spec, setup, &schedule)?;
    Some(RunPlan {
        version: PLAN_VERSION,
        experiment: spec,
        analysis: analysis.clone(),
        topology,
        schedule,
        steps,
    })
}

fn experiment_spec(exp: &Resolved, setup: &Setup) -> Option<ExperimentSpec> {
    let r = &exp.record;
    let m = r.record("model")?;
    let n = |rec: &Record, f: &str| rec.num(f).and_then(schedule::whole);
    let par = r.record("parallel")?;
    let opt = r.record("optimizer")?;
    let dedup = r.record("dedup");
    let quality = r.record("quality");
    Some(ExperimentSpec {
        name: exp.name.clone(),
        seed: n(r, "seed")?,
        model: ModelSpec {
            layers: n(m, "layers")?,
            hidden: n(m, "hidden")?,
            ffn_hidden: n(m, "ffn_hidden")?,
            heads: n(m, "heads")?,
            kv_heads: n(m, "kv_heads")?,
            head_dim: n(m, "head_dim")?,
            vocab: n(m, "vocab")?,
            seq_len: n(m, "seq_len")?,
            tied_embeddings: m.bool("tied_embeddings")?,
            activation: m.sym("activation")?.into(),
            norm: m.sym("norm")?.into(),
            position: m.sym("position")?.into(),
            bias: m.bool("bias")?,
            dropout: m.num("dropout")?,
            params: schedule::whole(setup.params.total)?,
        },
        optimizer: OptimizerSpec {
            kind: opt.kind.clone(),
            beta1: opt.num("beta1")?,
            beta2: opt.num("beta2")?,
            eps: opt.num("eps")?,
            weight_decay: opt.num("weight_decay")?,
            grad_clip: opt.num("grad_clip")?,
        },
        precision: r.sym("precision")?.into(),
        parallel: ParallelSpec {
            zero: setup.parallel.zero,
            recompute: par.sym("recompute")?.into(),
            recompute_layers: n(par, "recompute_layers"),
            offload_layers: n(par, "offload_layers"),
            sequence_parallel: setup.parallel.sequence_parallel,
            flash_attention: setup.parallel.flash_attention,
            micro_batch: schedule::whole(setup.parallel.micro_batch)?,
            accumulation: schedule::whole(setup.parallel.accumulation)?,
            first_stage_layers: n(par, "first_stage_layers"),
            last_stage_layers: n(par, "last_stage_layers"),
        },
        tokenizer: r.record("tokenizer").and_then(|t| {
            Some(TokenizerSpec {
                kind: t.kind.clone(),
                vocab: n(t, "vocab")?,
            })
        }),
        sources: r
            .entries("source")
            .filter_map(|(name, s, _)| {
                Some(SourceSpec {
                    name: name.clone(),
                    path: s.str("path")?.into(),
                    text_field: s.str("text_field")?.into(),
                    unique_tokens: s.num("unique_tokens"),
                    max_epochs: s.num("max_epochs")?,
                    max_document_bytes: s.num("max_document_bytes").map(|b| b.ceil() as u64),
                })
            })
            .collect(),
        dedup: DedupSpec {
            exact: dedup
                .and_then(|d| d.record("exact"))
                .map(|e| ExactDedupSpec {
                    false_positive: e.num("false_positive").unwrap_or(1e-6),
                    expected_docs: n(e, "expected_docs"),
                }),
            near: dedup.and_then(|d| d.record("near")).and_then(|e| {
                Some(NearDedupSpec {
                    ngram: n(e, "ngram")?,
                    bands: n(e, "bands")?,
                    rows: n(e, "rows")?,
                })
            }),
        },
        quality: QualitySpec {
            heuristics: match quality.and_then(|q| q.slot("heuristic")).map(|s| &s.value) {
                Some(Value::List(items)) => items
                    .iter()
                    .filter_map(|v| {
                        if let Value::Sym(s) = v {
                            Some(s.clone())
                        } else {
                            None
                        }
                    })
                    .collect(),
                _ => Vec::new(),
            },
            classifier_threshold: quality
                .and_then(|q| q.record("classifier"))
                .and_then(|c| c.num("threshold")),
            thresholds: crate::schema::QUALITY_FAMILIES
                .iter()
                .filter_map(|(family, _)| {
                    let block = quality?.record(family)?;
                    let values = block
                        .fields
                        .iter()
                        .filter_map(|(k, slot)| match slot.value {
                            // Whole numbers as JSON integers: the runtime reads counts as integers.
                            Value::Num(v, _) if v.fract() == 0.0 && v.abs() < 9e15 => {
                                Some((k.clone(), json!(v as i64)))
                            }
                            Value::Num(v, _) => Some((k.clone(), json!(v))),
                            _ => None,
                        })
                        .collect();
                    Some((family.to_string(), values))
                })
                .collect(),
        },
        gpu: setup.hardware.gpu.clone(),
        values: values(r),
    })
}

/// Every value of the record tree, in the order `kiln check --values` prints them.
fn values(record: &Record) -> Vec<PlanValue> {
    let mut out = Vec::new();
    record.walk(&mut |path, slot| {
        let (value, unit) = match &slot.value {
            Value::Record(r) => (
                json!(r.preset.clone().unwrap_or_else(|| r.kind.clone())),
                None,
            ),
            Value::Num(v, d) => (json!(v), (*d != crate::units::Dim::Count).then_some(*d)),
            Value::Str(s) | Value::Sym(s) => (json!(s), None),
            Value::Bool(b) => (json!(b), None),
            Value::List(items) => (
                serde_json::Value::Array(
                    items
                        .iter()
                        .map(|v| match v {
                            Value::Str(s) | Value::Sym(s) => json!(s),
                            Value::Num(n, _) => json!(n),
                            _ => serde_json::Value::Null,
                        })
                        .collect(),
                ),
                None,
            ),
            Value::Pending { .. } | Value::Auto | Value::Invalid => (serde_json::Value::Null, None),
        };
        out.push(PlanValue {
            path: path.to_string(),
            value,
            unit,
            provenance: slot.provenance.clone(),
        });
    });
    out
}

/// The step graph: per source ingest → exact dedup → near dedup → quality filter; the
/// tokenizer trained on every filtered source; encoding per source; a mix and a training
/// step per phase (each resuming from the one before); evaluation.
fn steps(spec: &ExperimentSpec, setup: &Setup, schedule: &schedule::Schedule) -> Option<Vec<Step>> {
    let mut drafts: Vec<Draft> = Vec::new();
    // Training and evaluation take one accelerator per rank, none on a CPU device.
    let gpus_per_rank = if setup.hardware.arch == "cpu" { 0 } else { 1 };
    let cpu = |ranks: u32| Resources {
        ranks,
        nodes: 1,
        gpus_per_rank: 0,
        predicted_seconds: None,
    };
    let add = |drafts: &mut Vec<Draft>,
               kind: StepKind,
               name: String,
               inputs: Vec<usize>,
               params: serde_json::Value,
               resources: Resources| {
        drafts.push(Draft {
            kind,
            name,
            inputs,
            params,
            resources,
        });
        drafts.len() - 1
    };
    let mut filtered: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &spec.sources {
        let mut last = add(
            &mut drafts,
            StepKind::Ingest,
            format!("ingest.{}", s.name),
            vec![],
            match s.max_document_bytes {
                Some(max) => {
                    json!({ "source": s.name, "path": s.path, "text_field": s.text_field, "max_document_bytes": max })
                }
                None => json!({ "source": s.name, "path": s.path, "text_field": s.text_field }),
            },
            cpu(1),
        );
        if let Some(e) = &spec.dedup.exact {
            last = add(
                &mut drafts,
                StepKind::ExactDedup,
                format!("exact_dedup.{}", s.name),
                vec![last],
                json!(e),
                cpu(1),
            );
        }
        if let Some(n) = &spec.dedup.near {
            last = add(
                &mut drafts,
                StepKind::NearDedup,
                format!("near_dedup.{}", s.name),
                vec![last],
                json!(n),
                cpu(1),
            );
        }
        if !spec.quality.heuristics.is_empty()
            || spec.quality.classifier_threshold.is_some()
            || !spec.quality.thresholds.is_empty()
        {
            last = add(
                &mut drafts,
                StepKind::QualityFilter,
                format!("quality_filter.{}", s.name),
                vec![last],
                json!(spec.quality),
                cpu(1),
            );
        }
        filtered.insert(&s.name, last);
    }
    let tokenizer = spec.tokenizer.as_ref().map(|t| {
        add(
            &mut drafts,
            StepKind::TrainTokenizer,
            "train_tokenizer".into(),
            filtered.values().copied().collect(),
            json!({ "kind": t.kind, "vocab": t.vocab, "seed": spec.seed }),
            cpu(1),
        )
    });
    let mut encoded: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &spec.sources {
        let mut inputs = vec![filtered[s.name.as_str()]];
        inputs.extend(tokenizer);
        encoded.insert(
            &s.name,
            add(
                &mut drafts,
                StepKind::Encode,
                format!("encode.{}", s.name),
                inputs,
                json!({ "source": s.name, "seq_len": spec.model.seq_len }),
                cpu(1),
            ),
        );
    }
    let world = u32::try_from(schedule::whole(setup.world())?).ok()?;
    let nodes = u32::try_from(schedule::whole(setup.hardware.nodes)?).ok()?;
    let step_time = |steps: u64| setup_step_time(schedule).map(|t| t * steps as f64);
    let mut previous: Option<usize> = None;
    let mut last_mix = None;
    for phase in &schedule.phases {
        let inputs: Vec<usize> = phase
            .mix
            .keys()
            .filter_map(|s| encoded.get(s.as_str()).copied())
            .collect();
        let mix = add(
            &mut drafts,
            StepKind::Mix,
            format!("mix.{}", phase.name),
            inputs,
            json!({ "phase": phase.name, "tokens": phase.tokens_trained, "mix": phase.mix, "seed": spec.seed, "held_out_tokens": schedule.eval_tokens }),
            cpu(1),
        );
        last_mix = Some(mix);
        let mut inputs = vec![mix];
        inputs.extend(previous);
        let train = add(
            &mut drafts,
            StepKind::Train,
            format!("train.{}", phase.name),
            inputs,
            json!({
                "phase": phase.name,
                "model": spec.model,
                "optimizer": spec.optimizer,
                "precision": spec.precision,
                "parallel": spec.parallel,
                "topology": { "tensor": setup.parallel.tensor, "pipeline": setup.parallel.pipeline, "context": setup.parallel.context, "data": setup.parallel.data },
                "batch_tokens": schedule.batch_tokens,
                "schedule": phase,
                "checkpoint": { "every_steps": schedule.checkpoint_every_steps, "keep": schedule.checkpoint_keep },
                "eval_every_steps": schedule.eval_every_steps,
                "seed": spec.seed,
            }),
            Resources {
                ranks: world,
                nodes,
                gpus_per_rank,
                predicted_seconds: step_time(phase.steps),
            },
        );
        previous = Some(train);
    }
    if let (Some(train), Some(mix)) = (previous, last_mix) {
        add(
            &mut drafts,
            StepKind::Evaluate,
            "evaluate".into(),
            vec![train, mix],
            json!({ "held_out_tokens": schedule.eval_tokens, "seed": spec.seed }),
            Resources {
                ranks: world,
                nodes,
                gpus_per_rank,
                predicted_seconds: None,
            },
        );
    }
    Some(graph::build(drafts).0)
}

fn setup_step_time(schedule: &schedule::Schedule) -> Option<f64> {
    schedule.predicted_step_time_s
}
