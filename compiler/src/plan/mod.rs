//! Lowering: a checked experiment and its analyses become the run plan, the only contract
//! between the compiler and the runtime (versioned JSON with a JSON Schema).

pub mod graph;
pub mod schedule;
pub mod topology;

use crate::analyse::setup::Setup;
use crate::analyse::Analysis;
use crate::ir::{Record, Resolved, Value};
use graph::Draft;
use kiln_plan::step::{
    CheckpointParams, EncodeParams, EvaluateParams, IngestParams, KlReferenceParams, MixParams,
    Resources, SampleParams, ScoreParams, Step, StepParams, TokenizerParams, TrainClassifierParams,
    TrainParams,
};
use serde_json::json;
use std::collections::BTreeMap;

pub use kiln_plan::spec::{
    Activation, Block, DedupSpec, ExactDedupSpec, ExperimentSpec, ModelSpec, NearDedupSpec, Norm,
    OptimizerKind, OptimizerSpec, ParallelSpec, PlanValue, Position, Precision, QualitySpec,
    Recompute, SourceSpec, TokenizerKind, TokenizerSpec, Unit,
};
use kiln_plan::spec::{
    ClassifierLabels, ClassifierSpec, KeepRule, KlMax, KlSpec, ScoreMethod, ScorerModel,
};
pub use kiln_plan::{Predictions, PLAN_VERSION};

/// The plan as the compiler writes it: its analysis typed (so `kiln schema` describes it).
pub type RunPlan = kiln_plan::RunPlan<Analysis>;

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
    let steps = steps(r, &spec, setup, &schedule)?;
    Some(RunPlan {
        version: PLAN_VERSION,
        experiment: spec,
        predictions: Predictions {
            tokens_per_s: analysis.throughput.as_ref().map(|t| t.tokens_per_s),
            step_time_s: analysis.throughput.as_ref().map(|t| t.step_time_s),
            memory_per_gpu_bytes: Some(analysis.memory.per_gpu.total),
            mfu: analysis.throughput.as_ref().map(|t| t.mfu),
            data_bytes_per_step: Some(analysis.communication.per_step.data),
            state_bytes: Some(kiln_plan::ModelStateBytes {
                weights: analysis.memory.per_gpu.weights,
                gradients: analysis.memory.per_gpu.gradients,
                optimizer: analysis.memory.per_gpu.optimizer,
            }),
        },
        analysis: analysis.clone(),
        topology,
        schedule,
        scheduler: scheduler(r),
        steps,
    })
}

/// The cluster's scheduler fields (`max_job_time`, `account`, `partition`, `qos`).
fn scheduler(r: &Record) -> kiln_plan::SchedulerSpec {
    let cluster = r.record("cluster");
    let text = |f: &str| cluster.and_then(|c| c.str(f)).map(str::to_string);
    kiln_plan::SchedulerSpec {
        max_job_seconds: cluster.and_then(|c| c.num("max_job_time")),
        account: text("account"),
        partition: text("partition"),
        qos: text("qos"),
    }
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
        model: model_spec(m, setup.params.total)?,
        optimizer: OptimizerSpec {
            kind: symbol_of(&opt.kind)?,
            beta1: opt.num("beta1")?,
            beta2: opt.num("beta2")?,
            eps: opt.num("eps")?,
            weight_decay: opt.num("weight_decay")?,
            grad_clip: opt.num("grad_clip")?,
        },
        precision: symbol(r, "precision")?,
        parallel: ParallelSpec {
            zero: setup.parallel.zero,
            recompute: symbol(par, "recompute")?,
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
                kind: symbol_of(&t.kind)?,
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
            classifier: quality
                .and_then(|q| q.record("classifier"))
                .and_then(classifier_spec),
            kl: quality.and_then(|q| q.record("kl")).and_then(kl_spec),
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

/// A model record's shape as the plan's `ModelSpec`, with its parameter count.
fn model_spec(m: &Record, params: f64) -> Option<ModelSpec> {
    let n = |f: &str| m.num(f).and_then(schedule::whole);
    Some(ModelSpec {
        layers: n("layers")?,
        hidden: n("hidden")?,
        ffn_hidden: n("ffn_hidden")?,
        heads: n("heads")?,
        kv_heads: n("kv_heads")?,
        head_dim: n("head_dim")?,
        vocab: n("vocab")?,
        seq_len: n("seq_len")?,
        tied_embeddings: m.bool("tied_embeddings")?,
        activation: symbol(m, "activation")?,
        norm: symbol(m, "norm")?,
        position: symbol(m, "position")?,
        bias: m.bool("bias")?,
        dropout: m.num("dropout")?,
        rope_base: m.num("rope_base")?,
        rotary_fraction: m.num("rotary_fraction")?,
        block: match crate::model::BlockLayout::from_record(m)? {
            crate::model::BlockLayout::Sequential => Block::Sequential,
            crate::model::BlockLayout::Parallel { shared_norm } => Block::Parallel { shared_norm },
        },
        embedding_norm: m.bool("embedding_norm")?,
        norm_eps: m.num("norm_eps")?,
        init_std: m.num("init_std")?,
        params: schedule::whole(params)?,
    })
}

/// `quality.classifier` (checked by K-C022/K-C023: a scorer is named, one of `keep` and
/// `threshold`).
fn classifier_spec(c: &Record) -> Option<ClassifierSpec> {
    let labels = c.record("labels")?;
    Some(ClassifierSpec {
        scorer: c.sym("scorer")?.to_string(),
        labels: match labels.kind.as_str() {
            "regression" => ClassifierLabels::Regression,
            _ => ClassifierLabels::Top {
                fraction: labels.num("fraction")?,
            },
        },
        keep: match (c.num("keep"), c.num("threshold")) {
            (Some(fraction), _) => KeepRule::Fraction { fraction },
            (None, Some(min_score)) => KeepRule::Threshold { min_score },
            (None, None) => return None,
        },
        sample_docs: c.num("sample").and_then(schedule::whole)?,
    })
}

/// `quality.kl`: a quantile (`max = p99`, the default) or `max_nats`.
fn kl_spec(k: &Record) -> Option<KlSpec> {
    let max = match (k.num("max_nats"), k.sym("max")) {
        (Some(nats), _) => KlMax::Nats { nats },
        (None, q) => KlMax::Quantile {
            quantile: quantile_of(q.unwrap_or("p99"))?,
        },
    };
    Some(KlSpec {
        reference: k.sym("reference")?.to_string(),
        max,
        smoothing: k.num("smoothing")?,
    })
}

/// `p99` → 0.99, `p999` → 0.999.
fn quantile_of(name: &str) -> Option<f64> {
    let digits = name.strip_prefix('p')?;
    let v: f64 = digits.parse().ok()?;
    Some(v / 10f64.powi(digits.len() as i32))
}

/// A symbol of the record as the plan's enum of that name (the schema allows no other).
fn symbol<T: serde::de::DeserializeOwned>(record: &Record, field: &str) -> Option<T> {
    symbol_of(record.sym(field)?)
}

fn symbol_of<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(json!(name)).ok()
}

/// The plan's unit of a dimension; a count has none.
fn unit(d: crate::units::Dim) -> Option<Unit> {
    use crate::units::Dim;
    Some(match d {
        Dim::Count => return None,
        Dim::Tokens => Unit::Tokens,
        Dim::Steps => Unit::Steps,
        Dim::Flops => Unit::Flops,
        Dim::FlopsPerSecond => Unit::FlopsPerSecond,
        Dim::Bytes => Unit::Bytes,
        Dim::BytesPerSecond => Unit::BytesPerSecond,
        Dim::Seconds => Unit::Seconds,
        Dim::Usd => Unit::Usd,
        Dim::UsdPerHr => Unit::UsdPerHour,
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
            Value::Num(v, d) => (json!(v), unit(*d)),
            Value::Str(s) | Value::Sym(s) => (json!(s), None),
            Value::Bool(b) => (json!(b), None),
            Value::List(items) => (
                serde_json::Value::Array(
                    items
                        .iter()
                        .map(|v| match v {
                            Value::Str(s) | Value::Sym(s) => json!(s),
                            Value::Num(n, _) => json!(n),
                            // A block in a list (a ramp's stages): its numbers by field.
                            Value::Record(r) => serde_json::Value::Object(
                                r.fields
                                    .iter()
                                    .filter_map(|(k, s)| match s.value {
                                        Value::Num(n, _) => Some((k.clone(), json!(n))),
                                        _ => None,
                                    })
                                    .collect(),
                            ),
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
fn steps(
    r: &Record,
    spec: &ExperimentSpec,
    setup: &Setup,
    schedule: &schedule::Schedule,
) -> Option<Vec<Step>> {
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
               name: String,
               inputs: Vec<usize>,
               params: StepParams,
               resources: Resources| {
        drafts.push(Draft {
            name,
            inputs,
            params,
            resources,
        });
        drafts.len() - 1
    };
    let mut deduped: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &spec.sources {
        let mut last = add(
            &mut drafts,
            format!("ingest.{}", s.name),
            vec![],
            StepParams::Ingest(IngestParams {
                source: s.name.clone(),
                path: s.path.clone(),
                text_field: s.text_field.clone(),
                max_document_bytes: s.max_document_bytes,
            }),
            cpu(1),
        );
        if let Some(e) = &spec.dedup.exact {
            last = add(
                &mut drafts,
                format!("exact_dedup.{}", s.name),
                vec![last],
                StepParams::ExactDedup(e.clone()),
                cpu(1),
            );
        }
        if let Some(n) = &spec.dedup.near {
            last = add(
                &mut drafts,
                format!("near_dedup.{}", s.name),
                vec![last],
                StepParams::NearDedup(n.clone()),
                cpu(1),
            );
        }
        deduped.insert(&s.name, last);
    }
    // Scorers the plan trains, each on its source with its own tokenizer (the main
    // tokenizer is trained on filtered text, which the scorer decides).
    let gpus = gpus_per_rank;
    let mut trained_scorers: BTreeMap<String, usize> = BTreeMap::new();
    for (name, sc, _) in r.entries("scorer") {
        let (Some(m), Some(source)) = (sc.record("model"), sc.sym("source")) else {
            continue;
        };
        let model = model_spec(m, crate::model::ModelShape::from_record(m)?.params().total)?;
        let tokenizer = spec.tokenizer.as_ref()?;
        let docs = *deduped.get(source)?;
        let tok = add(
            &mut drafts,
            format!("train_tokenizer.scorer.{name}"),
            vec![docs],
            StepParams::TrainTokenizer(TokenizerParams {
                kind: tokenizer.kind,
                vocab: model.vocab,
                seed: spec.seed,
                pretokenize: None,
            }),
            cpu(1),
        );
        let encode = add(
            &mut drafts,
            format!("encode.scorer.{name}"),
            vec![docs, tok],
            StepParams::Encode(EncodeParams {
                source: source.to_string(),
                seq_len: model.seq_len,
            }),
            cpu(1),
        );
        let (phase, parallel) = scorer_phase(name, sc, source, &model, schedule)?;
        let mix = add(
            &mut drafts,
            format!("mix.scorer.{name}"),
            vec![encode],
            mix_params(&phase, spec, schedule),
            cpu(1),
        );
        let one = kiln_plan::Sizes {
            tensor: 1,
            pipeline: 1,
            context: 1,
            data: 1,
        };
        let train = add(
            &mut drafts,
            format!("train.scorer.{name}"),
            vec![mix],
            StepParams::Train(Box::new(TrainParams {
                phase: phase.name.clone(),
                model,
                optimizer: spec.optimizer.clone(),
                precision: spec.precision,
                parallel,
                topology: one,
                batch_tokens: phase.tokens_trained / phase.steps.max(1) as f64,
                schedule: phase,
                checkpoint: CheckpointParams {
                    every_steps: schedule.checkpoint_every_steps,
                    keep: schedule.checkpoint_keep,
                },
                eval_every_steps: schedule.eval_every_steps,
                seed: spec.seed,
            })),
            Resources {
                ranks: 1,
                nodes: 1,
                gpus_per_rank: gpus,
                predicted_seconds: None,
            },
        );
        trained_scorers.insert(name.clone(), train);
    }
    // The model-based filter: sample → score per source, one classifier over all.
    let mut scored: BTreeMap<&str, usize> = BTreeMap::new();
    let mut classifier = None;
    if let Some(c) = &spec.quality.classifier {
        let quality = r.record("quality")?.record("classifier")?;
        let (scorer, scorer_inputs) = scorer_model(r, &c.scorer, &trained_scorers)?;
        let method_record = quality.record("method")?;
        let mut inputs_extra = scorer_inputs;
        let method = match method_record.kind.as_str() {
            "likelihood_ratio" => {
                let (general, more) =
                    scorer_model(r, method_record.sym("general")?, &trained_scorers)?;
                inputs_extra.extend(more);
                ScoreMethod::LikelihoodRatio { general }
            }
            "rating" => ScoreMethod::Rating {
                prompt: method_record.str("prompt")?.to_string(),
                scale: u32::try_from(method_record.num("scale").and_then(schedule::whole)?).ok()?,
                max_new_tokens: u32::try_from(
                    method_record
                        .num("max_new_tokens")
                        .and_then(schedule::whole)?,
                )
                .ok()?,
            },
            _ => ScoreMethod::Perplexity,
        };
        let max_tokens = match quality.num("max_tokens") {
            Some(t) => schedule::whole(t)?,
            None => scorer_seq_len(r, &c.scorer).unwrap_or(spec.model.seq_len),
        };
        for s in mix_sources(spec, schedule) {
            let sample = add(
                &mut drafts,
                format!("sample.{s}"),
                vec![deduped[s]],
                StepParams::Sample(SampleParams {
                    source: s.to_string(),
                    docs: c.sample_docs,
                    seed: spec.seed,
                }),
                cpu(1),
            );
            let mut inputs = vec![sample];
            inputs.extend(inputs_extra.iter().copied());
            let score = add(
                &mut drafts,
                format!("score.{s}"),
                inputs,
                StepParams::Score(ScoreParams {
                    source: s.to_string(),
                    scorer: scorer.clone(),
                    method: method.clone(),
                    max_tokens,
                    batch_docs: quality.num("batch_docs").and_then(schedule::whole)?,
                }),
                Resources {
                    ranks: 1,
                    nodes: 1,
                    gpus_per_rank: gpus,
                    predicted_seconds: None,
                },
            );
            scored.insert(s, score);
        }
        classifier = Some(add(
            &mut drafts,
            "train_classifier".into(),
            scored.values().copied().collect(),
            StepParams::TrainClassifier(TrainClassifierParams {
                labels: c.labels,
                keep: c.keep,
                held_out_fraction: CLASSIFIER_HELD_OUT,
                seed: spec.seed,
            }),
            cpu(1),
        ));
    }
    let kl_reference = spec.quality.kl.as_ref().map(|k| {
        add(
            &mut drafts,
            "kl_reference".into(),
            vec![deduped[k.reference.as_str()]],
            StepParams::KlReference(KlReferenceParams {
                source: k.reference.clone(),
                max: k.max,
                smoothing: k.smoothing,
                held_out_fraction: KL_HELD_OUT,
                seed: spec.seed,
            }),
            cpu(1),
        )
    });
    // Only the sources a phase draws from are filtered, tokenized and encoded; a source
    // that only teaches a scorer or makes the KL reference stays as it is.
    let mut filtered: BTreeMap<&str, usize> = BTreeMap::new();
    for s in mix_sources(spec, schedule) {
        let mut last = deduped[s];
        if spec.quality.is_on() {
            let mut inputs = vec![last];
            inputs.extend(classifier);
            inputs.extend(kl_reference);
            inputs.extend(scored.get(s).copied());
            last = add(
                &mut drafts,
                format!("quality_filter.{s}"),
                inputs,
                StepParams::QualityFilter(spec.quality.clone()),
                cpu(1),
            );
        }
        filtered.insert(s, last);
    }
    let tokenizer = spec.tokenizer.as_ref().map(|t| {
        add(
            &mut drafts,
            "train_tokenizer".into(),
            filtered.values().copied().collect(),
            StepParams::TrainTokenizer(TokenizerParams {
                kind: t.kind,
                vocab: t.vocab,
                seed: spec.seed,
                pretokenize: None,
            }),
            cpu(1),
        )
    });
    let mut encoded: BTreeMap<&str, usize> = BTreeMap::new();
    for name in mix_sources(spec, schedule) {
        let mut inputs = vec![filtered[name]];
        inputs.extend(tokenizer);
        encoded.insert(
            name,
            add(
                &mut drafts,
                format!("encode.{name}"),
                inputs,
                StepParams::Encode(EncodeParams {
                    source: name.to_string(),
                    seq_len: spec.model.seq_len,
                }),
                cpu(1),
            ),
        );
    }
    let size = |v: f64| schedule::whole(v).and_then(|v| u32::try_from(v).ok());
    let world = size(setup.world())?;
    let nodes = size(setup.hardware.nodes)?;
    let topology = kiln_plan::Sizes {
        tensor: size(setup.parallel.tensor)?,
        pipeline: size(setup.parallel.pipeline)?,
        context: size(setup.parallel.context)?,
        data: size(setup.parallel.data)?,
    };
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
            format!("mix.{}", phase.name),
            inputs,
            mix_params(phase, spec, schedule),
            cpu(1),
        );
        last_mix = Some(mix);
        let mut inputs = vec![mix];
        inputs.extend(previous);
        let train = add(
            &mut drafts,
            format!("train.{}", phase.name),
            inputs,
            StepParams::Train(Box::new(TrainParams {
                phase: phase.name.clone(),
                model: spec.model.clone(),
                optimizer: spec.optimizer.clone(),
                precision: spec.precision,
                parallel: spec.parallel.clone(),
                topology,
                batch_tokens: schedule.batch_tokens,
                schedule: phase.clone(),
                checkpoint: CheckpointParams {
                    every_steps: schedule.checkpoint_every_steps,
                    keep: schedule.checkpoint_keep,
                },
                eval_every_steps: schedule.eval_every_steps,
                seed: spec.seed,
            })),
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
            "evaluate".into(),
            vec![train, mix],
            StepParams::Evaluate(EvaluateParams {
                held_out_tokens: schedule.eval_tokens,
                seed: spec.seed,
            }),
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

/// A phase's mix step: its tokens drawn by weight, with the held-out set beside them.
fn mix_params(
    phase: &kiln_plan::PhaseSchedule,
    spec: &ExperimentSpec,
    schedule: &schedule::Schedule,
) -> StepParams {
    StepParams::Mix(MixParams {
        phase: phase.name.clone(),
        tokens: phase.tokens_trained,
        mix: phase.mix.clone(),
        seed: spec.seed,
        held_out_tokens: schedule.eval_tokens,
    })
}

/// Fraction of the scored sample the classifier is not trained on, to measure it
/// (assumption: a tenth, the usual split).
const CLASSIFIER_HELD_OUT: f64 = 0.1;
/// Fraction of the reference documents left out of the KL reference distribution, whose
/// own divergence sets a quantile threshold (assumption: a tenth).
const KL_HELD_OUT: f64 = 0.1;

/// The sources some phase draws from, in declaration order.
fn mix_sources<'a>(spec: &'a ExperimentSpec, schedule: &schedule::Schedule) -> Vec<&'a str> {
    spec.sources
        .iter()
        .map(|s| s.name.as_str())
        .filter(|s| {
            schedule
                .phases
                .iter()
                .any(|p| p.mix.get(*s).is_some_and(|w| *w > 0.0))
        })
        .collect()
}

/// A scorer entry as the plan's `ScorerModel`, with the steps it needs as inputs.
fn scorer_model(
    r: &Record,
    name: &str,
    trained: &BTreeMap<String, usize>,
) -> Option<(ScorerModel, Vec<usize>)> {
    let (_, sc, _) = r.entries("scorer").find(|(n, _, _)| n.as_str() == name)?;
    if let Some(&step) = trained.get(name) {
        return Some((
            ScorerModel::Trained {
                step: format!("train.scorer.{name}"),
            },
            vec![step],
        ));
    }
    if let Some(path) = sc.str("hf") {
        return Some((
            ScorerModel::HuggingFace {
                path: path.to_string(),
            },
            vec![],
        ));
    }
    Some((
        ScorerModel::Checkpoint {
            path: sc.str("checkpoint")?.to_string(),
        },
        vec![],
    ))
}

/// The sequence length of a scorer the plan trains (others: read by the runtime).
fn scorer_seq_len(r: &Record, name: &str) -> Option<u64> {
    let (_, sc, _) = r.entries("scorer").find(|(n, _, _)| n.as_str() == name)?;
    sc.record("model")?.num("seq_len").and_then(schedule::whole)
}

/// A trained scorer's one phase and its single-rank layout: the experiment's batch in
/// the scorer's sequences, micro-batches of the experiment's size where they divide it.
fn scorer_phase(
    name: &str,
    sc: &Record,
    source: &str,
    model: &ModelSpec,
    schedule: &schedule::Schedule,
) -> Option<(kiln_plan::PhaseSchedule, ParallelSpec)> {
    let sequences = schedule::whole(schedule.batch_tokens / model.seq_len as f64)?.max(1);
    let batch_tokens = (sequences * model.seq_len) as f64;
    let tokens = sc.num("tokens")?;
    let steps = schedule::whole((tokens / batch_tokens).ceil())?.max(1);
    let micro_batch = gcd(schedule.micro_batch.max(1), sequences);
    let phase = kiln_plan::PhaseSchedule {
        name: format!("scorer.{name}"),
        start_step: 0,
        steps,
        tokens,
        tokens_trained: steps as f64 * batch_tokens,
        // The scorer trains the experiment's full batch throughout (no ramp).
        batch: vec![kiln_plan::BatchSegment {
            first_step: 0,
            global_batch: sequences,
            batch_tokens: sequences * model.seq_len,
            accumulation: sequences / micro_batch,
            predicted_step_time_s: None,
        }],
        anneal: false,
        mix: BTreeMap::from([(source.to_string(), 1.0)]),
        lr: schedule::lr_schedule(sc.record("lr")?, steps)?,
    };
    let parallel = ParallelSpec {
        zero: 0,
        recompute: Recompute::None,
        recompute_layers: None,
        offload_layers: None,
        sequence_parallel: false,
        flash_attention: true,
        micro_batch,
        accumulation: sequences / micro_batch,
        first_stage_layers: None,
        last_stage_layers: None,
    };
    Some((phase, parallel))
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn setup_step_time(schedule: &schedule::Schedule) -> Option<f64> {
    schedule.predicted_step_time_s
}
