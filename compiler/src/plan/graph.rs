//! The step graph: data steps per source, tokenizer, encoding, one mix and one training step
//! per phase, evaluation. Step ids are content hashes of kind, parameters and input ids.

use petgraph::graph::{DiGraph, NodeIndex};
use sha2::{Digest, Sha256};

pub use kiln_plan::step::{Resources, Step, StepKind, StepParams};
pub use kiln_plan::WORKER;

/// A step before its id is known.
pub struct Draft {
    pub name: String,
    pub inputs: Vec<usize>,
    pub params: StepParams,
    pub resources: Resources,
}

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
        hasher.update(d.params.kind().name());
        hasher.update([0]);
        hasher.update(serde_json::to_string(&d.params.params_json()).expect("params serialise"));
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
            outputs: vec![kiln_plan::run_dir::step_output(&d.name, &id)],
            command: vec![
                WORKER.into(),
                "--plan".into(),
                kiln_plan::PLAN_FILE.into(),
                "--step".into(),
                id.clone(),
            ],
            id,
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
