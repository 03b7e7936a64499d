//! The step graph: data steps per source, tokenizer, encoding, one mix and one training step
//! per phase, evaluation. Step ids are content hashes of kind, parameters and input ids.

use petgraph::graph::{DiGraph, NodeIndex};
use schemars::JsonSchema;
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Ingest,
    ExactDedup,
    NearDedup,
    QualityFilter,
    TrainTokenizer,
    Encode,
    Mix,
    Train,
    Evaluate,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Ingest => "ingest",
            StepKind::ExactDedup => "exact_dedup",
            StepKind::NearDedup => "near_dedup",
            StepKind::QualityFilter => "quality_filter",
            StepKind::TrainTokenizer => "train_tokenizer",
            StepKind::Encode => "encode",
            StepKind::Mix => "mix",
            StepKind::Train => "train",
            StepKind::Evaluate => "evaluate",
        }
    }

    pub fn is_training(self) -> bool {
        matches!(self, StepKind::Train | StepKind::Evaluate)
    }
}

/// What a step needs to run.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Resources {
    /// Processes (ranks) the step runs as.
    pub ranks: u32,
    pub nodes: u32,
    /// Accelerators per rank: 1 for training and evaluation on GPUs (kiln-worker then runs
    /// them on CUDA, its ranks' collectives through NCCL); 0 for data steps and for every
    /// step on a CPU device (`arch = cpu`).
    pub gpus_per_rank: u32,
    /// Predicted duration in seconds, where kiln predicts one (training steps).
    pub predicted_seconds: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Step {
    /// sha256 of the kind, the parameters and the input ids, first 16 hex digits.
    pub id: String,
    pub kind: StepKind,
    /// A readable name: `ingest.web`, `train.main`.
    pub name: String,
    /// Ids of the steps whose outputs this step reads.
    pub inputs: Vec<String>,
    /// Paths, relative to the run directory, that the step writes (a directory each,
    /// renamed into place when complete: its existence means the step is done).
    pub outputs: Vec<String>,
    /// Everything the step's result depends on besides its inputs.
    pub params: serde_json::Value,
    pub resources: Resources,
    /// The command that runs the step (one rank of it), as an argument vector.
    pub command: Vec<String>,
}

/// A step before its id is known.
pub struct Draft {
    pub kind: StepKind,
    pub name: String,
    pub inputs: Vec<usize>,
    pub params: serde_json::Value,
    pub resources: Resources,
}

/// The program that executes one step of a plan for one rank (the runtime's worker).
pub const WORKER: &str = "kiln-worker";

/// Orders the drafts topologically (inputs first, ties by draft order), gives each its
/// content-hashed id, output directory and command.
pub fn build(drafts: Vec<Draft>) -> (Vec<Step>, DiGraph<usize, ()>) {
    let mut graph = DiGraph::<usize, ()>::new();
    let nodes: Vec<NodeIndex> = (0..drafts.len()).map(|i| graph.add_node(i)).collect();
    for (i, d) in drafts.iter().enumerate() {
        for &input in &d.inputs {
            graph.add_edge(nodes[input], nodes[i], ());
        }
    }
    // Drafts are written inputs-first, so draft order is already topological; the ids
    // chain through it.
    let mut ids: Vec<String> = Vec::with_capacity(drafts.len());
    let mut steps = Vec::with_capacity(drafts.len());
    for d in &drafts {
        let inputs: Vec<String> = d.inputs.iter().map(|&i| ids[i].clone()).collect();
        let mut hasher = Sha256::new();
        hasher.update(d.kind.name());
        hasher.update([0]);
        hasher.update(serde_json::to_string(&d.params).expect("params serialise"));
        for input in &inputs {
            hasher.update([0]);
            hasher.update(input);
        }
        let id: String = hasher
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        ids.push(id.clone());
        steps.push(Step {
            outputs: vec![format!("steps/{}-{id}", d.name)],
            command: vec![
                WORKER.into(),
                "--plan".into(),
                "plan.json".into(),
                "--step".into(),
                id.clone(),
            ],
            id,
            kind: d.kind,
            name: d.name.clone(),
            inputs,
            params: d.params.clone(),
            resources: d.resources.clone(),
        });
    }
    (steps, graph)
}

/// Graphviz dot of the steps.
pub fn dot(steps: &[Step]) -> String {
    let mut out = String::from(
        "digraph kiln {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for s in steps {
        out += &format!("  \"{}\" [label=\"{}\\n{}\"];\n", s.id, s.name, s.id);
    }
    for s in steps {
        for i in &s.inputs {
            out += &format!("  \"{i}\" -> \"{}\";\n", s.id);
        }
    }
    out + "}\n"
}

/// Mermaid flowchart of the steps.
pub fn mermaid(steps: &[Step]) -> String {
    let mut out = String::from("flowchart LR\n");
    for s in steps {
        out += &format!("  s{}[\"{}<br/>{}\"]\n", s.id, s.name, s.id);
    }
    for s in steps {
        for i in &s.inputs {
            out += &format!("  s{i} --> s{}\n", s.id);
        }
    }
    out
}
