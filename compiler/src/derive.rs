//! Derivation: evaluates expressions over other fields and fills every `auto` value, in the
//! order of a dependency graph (petgraph). A cycle is an error that names every field in it.

use crate::codes;
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::ir::{Provenance, Record, Value};
use crate::model::ModelShape;
use crate::resolve::check_number;
use crate::schema::{self, Fill, Shape, Ty};
use crate::span::Span;
use crate::syntax::ast::{BinOp, Expr, ExprKind};
use crate::units::{self, Dim};
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{HashMap, HashSet};

type Path = Vec<String>;

/// Fills every pending and `auto` value of `record` (a declaration of kind `kind`).
pub fn derive(record: &mut Record, kind: &'static schema::KindSpec) -> Vec<Diagnostic> {
    let mut d = Deriver {
        diags: Vec::new(),
        failed: HashSet::new(),
    };
    d.run(record, Shape::of(kind));
    d.diags
}

struct Deriver {
    diags: Vec<Diagnostic>,
    /// Nodes that could not be derived; their dependents are skipped without a second error.
    failed: HashSet<Path>,
}

/// A value to compute: its dependencies, and its field's type for checking the result.
struct Node {
    path: Path,
    deps: Vec<Path>,
    ty: Ty,
    span: Option<Span>,
}

impl Deriver {
    fn run(&mut self, top: &mut Record, shape: Shape) {
        let mut nodes = Vec::new();
        collect(top, shape, &mut Vec::new(), &mut nodes);
        self.phase_autos(top, &mut nodes);
        for node in &mut nodes {
            node.deps = self.deps(top, node);
        }
        let mut graph = DiGraph::<usize, ()>::new();
        let index: HashMap<Path, NodeIndex> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.path.clone(), graph.add_node(i)))
            .collect();
        for (i, node) in nodes.iter().enumerate() {
            for dep in &node.deps {
                if let Some(&from) = index.get(dep) {
                    graph.add_edge(from, index[&node.path], ());
                }
            }
            let _ = i;
        }
        let order = match toposort(&graph, None) {
            Ok(order) => order,
            Err(_) => {
                self.report_cycles(&graph, &nodes);
                // Evaluate what is not on a cycle: drop the cyclic nodes and sort again.
                let cyclic: HashSet<NodeIndex> = tarjan_scc(&graph)
                    .into_iter()
                    .filter(|scc| scc.len() > 1 || graph.contains_edge(scc[0], scc[0]))
                    .flatten()
                    .collect();
                for &n in &cyclic {
                    self.failed.insert(nodes[graph[n]].path.clone());
                }
                let mut g = graph.clone();
                g.retain_nodes(|_, n| !cyclic.contains(&n));
                toposort(&g, None)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| index[&nodes[g[n]].path])
                    .collect()
            }
        };
        for n in order {
            let node = &nodes[graph[n]];
            if self.failed.contains(&node.path) {
                continue;
            }
            if node.deps.iter().any(|d| self.failed.contains(d)) {
                self.failed.insert(node.path.clone());
                continue;
            }
            match self.evaluate(top, node) {
                Some((value, provenance)) => {
                    let slot = top.lookup_mut(&node.path).expect("collected nodes exist");
                    slot.value = value;
                    if let Some(p) = provenance {
                        slot.provenance = p;
                    }
                }
                None => {
                    self.failed.insert(node.path.clone());
                }
            }
        }
    }

    /// At most one phase may leave its tokens to kiln; with more, none is derived.
    fn phase_autos(&mut self, top: &Record, nodes: &mut Vec<Node>) {
        let autos: Vec<(String, Span)> = top
            .entries("phase")
            .filter(|(_, r, _)| matches!(r.slot("tokens").map(|s| &s.value), Some(Value::Auto)))
            .map(|(n, r, s)| (n.clone(), r.span_of("tokens").unwrap_or(s)))
            .collect();
        if autos.len() > 1 {
            let mut d = Diagnostic::new(codes::PHASE_TOKENS_SUM, format!("{} phases leave their tokens to kiln; at most one can", autos.len()))
                .at(autos[1].1, format!("phase `{}` has no tokens", autos[1].0))
                .help("give every phase but one its tokens; the one left out (or `tokens = auto`) takes the rest of the budget");
            d = d.label(
                autos[0].1,
                format!("phase `{}` has no tokens either", autos[0].0),
            );
            self.diags.push(d);
            let paths: HashSet<Path> = autos
                .into_iter()
                .map(|(name, _)| vec!["phase".into(), name, "tokens".into()])
                .collect();
            nodes.retain(|n| !paths.contains(&n.path));
            self.failed.extend(paths);
        }
    }

    fn deps(&self, top: &Record, node: &Node) -> Vec<Path> {
        let slot = top.lookup(&node.path).expect("collected nodes exist");
        match &slot.value {
            Value::Pending { expr, root, .. } => {
                let mut out = Vec::new();
                references(expr, root, &mut out);
                out
            }
            Value::Auto => rule_deps(top, &node.path),
            _ => Vec::new(),
        }
    }

    fn report_cycles(&mut self, graph: &DiGraph<usize, ()>, nodes: &[Node]) {
        for scc in tarjan_scc(graph) {
            if scc.len() == 1 && !graph.contains_edge(scc[0], scc[0]) {
                continue;
            }
            // Walk the cycle in dependency order from its first member, for a readable chain.
            let members: HashSet<NodeIndex> = scc.iter().copied().collect();
            let start = *scc
                .iter()
                .min_by_key(|n| nodes[graph[**n]].path.join("."))
                .unwrap();
            let mut chain = vec![start];
            let mut at = start;
            loop {
                let next = graph
                    .neighbors(at)
                    .filter(|n| members.contains(n))
                    .min_by_key(|n| nodes[graph[*n]].path.join("."));
                match next {
                    Some(n) if n != start && !chain.contains(&n) => {
                        chain.push(n);
                        at = n;
                    }
                    _ => break,
                }
            }
            let names: Vec<String> = chain
                .iter()
                .map(|n| format!("`{}`", nodes[graph[*n]].path.join(".")))
                .collect();
            let first = &nodes[graph[start]];
            let mut d = Diagnostic::new(
                codes::DERIVATION_CYCLE,
                if names.len() == 1 {
                    format!("{} refers to itself", names[0])
                } else {
                    format!("{} depend on each other in a cycle", names.join(", "))
                },
            )
            .note(format!("cycle: {} → {}", names.join(" → "), names[0]))
            .help("give one of them a value that does not depend on the others");
            if let Some(span) = first.span {
                d = d.at(span, "starts here");
            }
            for n in &chain[1..] {
                if let Some(span) = nodes[graph[*n]].span {
                    d = d.label(
                        span,
                        format!(
                            "`{}` depends on the one before",
                            nodes[graph[*n]].path.join(".")
                        ),
                    );
                }
            }
            self.diags.push(d);
        }
    }

    /// Computes one node; `None` after reporting why it cannot be computed.
    fn evaluate(&mut self, top: &Record, node: &Node) -> Option<(Value, Option<Provenance>)> {
        let slot = top.lookup(&node.path)?;
        let field = node.path.last().map(String::as_str).unwrap_or("");
        match &slot.value {
            Value::Pending { expr, root, .. } => {
                let (v, dim) = match eval(top, expr, root) {
                    Ok(v) => v,
                    Err(Some(d)) => {
                        self.diags.push(d);
                        return None;
                    }
                    Err(None) => return None,
                };
                let (Ty::Num(want, kind) | Ty::NumOr(want, kind, _)) = node.ty else {
                    return None;
                };
                match check_number(v, dim, want, kind, field, expr.span) {
                    Ok(v) => Some((Value::Num(v, want), None)),
                    Err(d) => {
                        self.diags.push(d);
                        None
                    }
                }
            }
            Value::Auto => match rule(top, &node.path) {
                Ok((value, how)) => Some((value, Some(Provenance::Derived(how)))),
                Err(d) => {
                    self.diags.extend(d);
                    None
                }
            },
            _ => None,
        }
    }
}

/// Walks the tree and lists every value still to compute, with its field's type.
fn collect(record: &Record, shape: Shape, path: &mut Path, out: &mut Vec<Node>) {
    for (name, slot) in &record.fields {
        let (ty, _) = match shape.field(name) {
            Some(f) => (f.ty, f.default),
            None => (shape.free_keys.unwrap_or(Ty::Str), Fill::Optional),
        };
        path.push(name.clone());
        match (&slot.value, ty) {
            (Value::Pending { .. } | Value::Auto, _) => out.push(Node {
                path: path.clone(),
                deps: Vec::new(),
                ty,
                span: slot.span,
            }),
            (Value::Record(r), Ty::Preset(k)) => collect(r, Shape::of(k), path, out),
            (Value::Record(r), Ty::Block(fields)) => {
                collect(r, Shape::fields("block", fields), path, out)
            }
            (Value::Record(r), Ty::Variant(vs) | Ty::NumOr(_, _, vs)) => {
                if let Some(v) = vs.iter().find(|v| v.name == r.kind) {
                    collect(r, Shape::fields(v.name, v.fields), path, out);
                }
            }
            _ => {}
        }
        path.pop();
    }
    for (kind, entries) in &record.named {
        let Some(spec) = shape.named.iter().find(|k| k.name == kind) else {
            continue;
        };
        for (name, (r, _)) in entries {
            path.push(kind.clone());
            path.push(name.clone());
            collect(r, Shape::of(spec), path, out);
            path.pop();
            path.pop();
        }
    }
}

fn references(expr: &Expr, root: &[String], out: &mut Vec<Path>) {
    match &expr.kind {
        ExprKind::Path(p) => out.push(
            root.iter()
                .cloned()
                .chain(p.iter().map(|i| i.name.clone()))
                .collect(),
        ),
        ExprKind::Neg(e) | ExprKind::Paren(e) => references(e, root, out),
        ExprKind::Binary { lhs, rhs, .. } => {
            references(lhs, root, out);
            references(rhs, root, out);
        }
        _ => {}
    }
}

/// Evaluates arithmetic over quantities and references resolved in `top` from `root`.
/// `Err(None)`: an input failed earlier (already reported) or is not computed yet.
pub(crate) fn eval(
    top: &Record,
    expr: &Expr,
    root: &[String],
) -> Result<(f64, Dim), Option<Diagnostic>> {
    match &expr.kind {
        ExprKind::Quantity { literal, unit } => {
            units::quantity(literal, unit.as_deref()).map_err(|_| {
                Some(
                    Diagnostic::new(
                        codes::UNKNOWN_UNIT,
                        format!("cannot read the quantity `{literal}`"),
                    )
                    .at(expr.span, "unknown unit")
                    .help(format!("kiln's units are {}", units::UNIT_WORDS)),
                )
            })
        }
        ExprKind::Paren(e) => eval(top, e, root),
        ExprKind::Neg(e) => eval(top, e, root).map(|(v, d)| (-v, d)),
        ExprKind::Path(segments) => {
            let path: Path = root
                .iter()
                .cloned()
                .chain(segments.iter().map(|i| i.name.clone()))
                .collect();
            let shown = segments
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(".");
            match top.lookup(&path).map(|s| &s.value) {
                Some(Value::Num(v, d)) => Ok((*v, *d)),
                // A ramp stands for its full value (`batch = ramp { to = … }`).
                Some(Value::Record(r)) if r.ramp_full().is_some() => {
                    Ok((r.ramp_full().unwrap_or_default(), Dim::Tokens))
                }
                Some(Value::Auto | Value::Pending { .. } | Value::Invalid) => Err(None),
                Some(_) => Err(Some(
                    Diagnostic::new(codes::WRONG_TYPE, format!("`{shown}` is not a number"))
                        .at(expr.span, "not a number")
                        .help("arithmetic works on quantities; refer to a numeric field such as `model.params`"),
                )),
                None => {
                    // Find how much of the path exists, to suggest the next name.
                    let mut known = root.len();
                    while known < path.len() && top.record_at(&path[..known + 1]).is_some() {
                        known += 1;
                    }
                    let parent = top.record_at(&path[..known]);
                    let missing = &path[known.min(path.len() - 1)];
                    let mut d = Diagnostic::new(codes::UNKNOWN_NAME, format!("`{shown}` does not name a field")).at(expr.span, "unknown reference");
                    let names = parent.map(|p| p.child_names()).unwrap_or_default();
                    d = d.help(match did_you_mean(missing, names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}` (in `{}`)?", shown.replace(missing.as_str(), s)),
                        None => format!("references are paths from the declaration, such as `model.params`; here: {}", names.join(", ")),
                    });
                    Err(Some(d))
                }
            }
        }
        ExprKind::Binary { op, lhs, rhs } => {
            let (a, da) = eval(top, lhs, root)?;
            let (b, db) = eval(top, rhs, root)?;
            let mismatch = |what: &str| {
                Some(
                    Diagnostic::new(codes::UNIT_MISMATCH, format!("cannot {what} {da} and {db}"))
                        .at(expr.span, format!("{da} {} {db}", op.symbol()))
                        .help("both sides of + and - need the same unit; * and / take a plain number on one side"),
                )
            };
            let same = |x: Dim, y: Dim| {
                x == y
                    || (x == Dim::Count && y.accepts_bare_count())
                    || (y == Dim::Count && x.accepts_bare_count())
            };
            let wider = if da == Dim::Count { db } else { da };
            match op {
                BinOp::Add if same(da, db) => Ok((a + b, wider)),
                BinOp::Sub if same(da, db) => Ok((a - b, wider)),
                BinOp::Add | BinOp::Sub => {
                    Err(mismatch(if *op == BinOp::Add { "add" } else { "subtract" }))
                }
                BinOp::Mul if da == Dim::Count || db == Dim::Count => Ok((a * b, wider)),
                BinOp::Mul => Err(mismatch("multiply")),
                BinOp::Div if b == 0.0 => Err(Some(
                    Diagnostic::new(codes::CANNOT_DERIVE, "division by zero")
                        .at(rhs.span, "this is 0")
                        .help("divide by a value other than 0"),
                )),
                BinOp::Div if db == Dim::Count => Ok((a / b, da)),
                BinOp::Div if da == db => Ok((a / b, Dim::Count)),
                BinOp::Div => Err(mismatch("divide")),
            }
        }
        _ => Err(Some(
            Diagnostic::new(
                codes::WRONG_TYPE,
                "only numbers and references to numeric fields can be computed",
            )
            .at(expr.span, "not a number")
            .help("arithmetic works on quantities such as `20 * model.params`"),
        )),
    }
}

fn p(parts: &[&str]) -> Path {
    parts.iter().map(|s| s.to_string()).collect()
}

fn join(base: &[String], rest: &[&str]) -> Path {
    base.iter()
        .cloned()
        .chain(rest.iter().map(|s| s.to_string()))
        .collect()
}

/// What an `auto` value at `path` is computed from (absolute paths).
fn rule_deps(top: &Record, path: &[String]) -> Vec<Path> {
    let (field, parent) = (path[path.len() - 1].as_str(), &path[..path.len() - 1]);
    let kind = top.record_at(parent).map(|r| r.kind.as_str()).unwrap_or("");
    let grand = &parent[..parent.len().saturating_sub(1)];
    let auto_model = top
        .record_at(parent)
        .and_then(|r| r.preset.as_deref())
        .and_then(crate::family::of_preset)
        .is_some();
    match (kind, field) {
        ("model", f) if auto_model && crate::family::SHAPE_FIELDS.contains(&f) => budget_deps(top),
        ("model", "kv_heads") => vec![join(parent, &["heads"])],
        ("model", "head_dim") => vec![join(parent, &["hidden"]), join(parent, &["heads"])],
        ("model", "params") => [
            "layers",
            "hidden",
            "ffn_hidden",
            "heads",
            "kv_heads",
            "head_dim",
            "vocab",
            "seq_len",
        ]
        .iter()
        .map(|f| join(parent, &[f]))
        .collect(),
        ("experiment", "world") => vec![
            p(&["cluster", "nodes"]),
            p(&["cluster", "node", "gpus_per_node"]),
        ],
        ("experiment", "tokens") => {
            // The parameters, the law's constants and the objective's serve tokens.
            let mut deps = vec![p(&["model", "params"]), p(&["objective", "serve_tokens"])];
            if let Some(law) = top.record("law") {
                deps.extend(law.fields.keys().map(|k| p(&["law", k])));
            }
            deps
        }
        ("parallel", "data") => vec![
            join(grand, &["world"]),
            join(parent, &["tensor"]),
            join(parent, &["pipeline"]),
            join(parent, &["context"]),
        ],
        ("parallel", "accumulation") => {
            vec![
                join(grand, &["batch"]),
                join(grand, &["model", "seq_len"]),
                join(parent, &["micro_batch"]),
                join(parent, &["data"]),
            ]
        }
        ("phase", "tokens") => {
            let mut deps = vec![p(&["tokens"])];
            for (name, _, _) in top.entries("phase") {
                if name != &parent[1] {
                    deps.push(p(&["phase", name, "tokens"]));
                }
            }
            deps
        }
        ("linear", "from") => match previous_phase(top, parent) {
            Some(prev) => ["final", "value", "to"]
                .iter()
                .map(|f| p(&["phase", &prev, "lr", f]))
                .collect(),
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// What the law's optima read: the compute budget, the law's constants and the objective's
/// serve tokens (absolute paths).
fn budget_deps(top: &Record) -> Vec<Path> {
    let mut deps = vec![p(&["compute"]), p(&["objective", "serve_tokens"])];
    if let Some(law) = top.record("law") {
        deps.extend(law.fields.keys().map(|k| p(&["law", k])));
    }
    deps
}

/// The objective's serve tokens: 0 under `chinchilla`, `serve_tokens` under
/// `inference_aware`; `Err` (with `what` in the message) under `fixed`.
fn serve_tokens(exp: &Record, what: &str, at: Option<Span>) -> Result<f64, Vec<Diagnostic>> {
    let objective = exp.record("objective").ok_or_else(Vec::new)?;
    match objective.kind.as_str() {
        "chinchilla" => Ok(0.0),
        "inference_aware" => objective.num("serve_tokens").ok_or_else(Vec::new),
        _ => {
            let mut d = Diagnostic::new(
                codes::CANNOT_DERIVE,
                format!("{what} needs an objective that has an optimum: `chinchilla` or `inference_aware`"),
            )
            .help("use `objective = chinchilla` for the law's compute-optimal size, or write the value");
            if let Some(s) = at {
                d = d.at(s, "auto");
            }
            Err(vec![d])
        }
    }
}

/// The law of an experiment and its name.
fn law_of(exp: &Record) -> Result<(crate::analyse::setup::Law, String), Vec<Diagnostic>> {
    let record = exp.record("law").ok_or_else(Vec::new)?;
    let law = crate::analyse::setup::Law::from_record(record).ok_or_else(Vec::new)?;
    Ok((
        law,
        record.preset.clone().unwrap_or_else(|| "declared".into()),
    ))
}

/// `model = auto { family }`: the family's shape nearest the law's optimal parameters for
/// the experiment's `compute` (compute-optimal; under `inference_aware`, Sardana et al.'s
/// optimum for the compute-optimal model's loss), and the sentence that says how.
fn auto_shape(
    exp: &Record,
    model: &Record,
    family: &crate::family::Family,
) -> Result<(ModelShape, String), Vec<Diagnostic>> {
    let at = model.span;
    let Some(compute) = exp.num("compute") else {
        let mut d = Diagnostic::new(
            codes::CANNOT_DERIVE,
            "`model = auto` needs a compute budget to size the model",
        )
        .help("add `compute = 1e23 FLOPs` (C = 6·N·D) to the experiment, or name a model");
        if let Some(s) = at {
            d = d.at(s, "auto");
        }
        return Err(vec![d]);
    };
    let serve = serve_tokens(exp, "`model = auto`", at)?;
    let (law, name) = law_of(exp)?;
    let (n_opt, d_opt) = law.compute_optimal(compute);
    let (target, how) = if serve > 0.0 {
        let loss = law.loss(n_opt, d_opt);
        let Some((n, _)) = law.inference_optimal(loss, serve) else {
            let mut d = Diagnostic::new(
                codes::CANNOT_DERIVE,
                format!(
                    "the `{name}` law has no inference-aware optimum for the loss {loss:.3} of {} at {}",
                    units::show(compute, Dim::Flops),
                    units::show(serve, Dim::Tokens)
                ),
            )
            .help("change the compute budget or `serve_tokens`, or declare the model");
            if let Some(s) = at {
                d = d.at(s, "auto");
            }
            return Err(vec![d]);
        };
        (
            n,
            format!(
                "Sardana et al.'s inference-aware optimum serving {} for the loss of the `{name}` law's compute-optimal {} parameters",
                units::show(serve, Dim::Tokens),
                units::show(n_opt, Dim::Count)
            ),
        )
    } else {
        (
            n_opt,
            format!(
                "the `{name}` law's compute-optimal {} parameters",
                units::show(n_opt, Dim::Count)
            ),
        )
    };
    let base = ModelShape::layer_kinds(model).ok_or_else(Vec::new)?;
    let Some(shape) = family.shape(&base, target) else {
        let mut d = Diagnostic::new(
            codes::CANNOT_DERIVE,
            format!(
                "the {} family has no shape near {} parameters",
                family.name,
                units::show(target, Dim::Count)
            ),
        )
        .help("change the compute budget, or declare the model");
        if let Some(s) = at {
            d = d.at(s, "auto");
        }
        return Err(vec![d]);
    };
    let sentence = format!(
        "the {} family's shape (family.rs) nearest {} for {}: {} layers × {} hidden, {} parameters",
        family.name,
        how,
        units::show(compute, Dim::Flops),
        shape.layers,
        shape.hidden,
        units::show(shape.params().total, Dim::Count)
    );
    Ok((shape, sentence))
}

/// The fewest nodes, at least as many as declared, whose GPUs divide by `model_parallel`.
fn nodes_for(exp: &Record, model_parallel: f64) -> Option<(f64, f64)> {
    let cluster = exp.record("cluster")?;
    let per_node = cluster.record("node")?.num("gpus_per_node")?;
    let nodes = cluster.num("nodes")?;
    (0..4096)
        .map(|k| nodes + k as f64)
        .find(|n| (n * per_node) % model_parallel == 0.0)
        .map(|n| (n, n * per_node))
}

/// The phase before the one holding `path` (`["phase", NAME, …]`).
fn previous_phase(top: &Record, path: &[String]) -> Option<String> {
    // By index, not by a walk: an experiment may have thousands of phases.
    let phases = top.named.get("phase")?;
    let at = phases.get_index_of(path.get(1)?)?;
    at.checked_sub(1)
        .and_then(|i| phases.get_index(i))
        .map(|(name, _)| name.clone())
}

/// Computes an `auto` value, with a sentence that says how.
fn rule(top: &Record, path: &[String]) -> Result<(Value, String), Vec<Diagnostic>> {
    let (field, parent) = (path[path.len() - 1].as_str(), &path[..path.len() - 1]);
    let record = top.record_at(parent).ok_or_else(Vec::new)?;
    let grand = || {
        top.record_at(&parent[..parent.len().saturating_sub(1)])
            .ok_or_else(Vec::new)
    };
    let num = |r: &Record, f: &str| r.num(f).ok_or_else(Vec::new);
    let count = |v: f64| Value::Num(v, Dim::Count);
    let here = record.span.or(top.span);
    let family = record.preset.as_deref().and_then(crate::family::of_preset);
    match (record.kind.as_str(), field) {
        ("model", f) if family.is_some() && crate::family::SHAPE_FIELDS.contains(&f) => {
            let (shape, how) = auto_shape(grand()?, record, family.expect("checked"))?;
            let value = match f {
                "layers" => shape.layers,
                "hidden" => shape.hidden,
                "ffn_hidden" => shape.ffn_hidden,
                "heads" => shape.heads,
                _ => shape.kv_heads,
            };
            Ok((count(value), how))
        }
        ("model", "kv_heads") => Ok((
            count(num(record, "heads")?),
            "multi-head attention: kv_heads = heads".into(),
        )),
        ("model", "head_dim") => {
            let (hidden, heads) = (num(record, "hidden")?, num(record, "heads")?);
            if hidden % heads != 0.0 {
                let mut d = Diagnostic::new(
                    codes::CANNOT_DERIVE,
                    format!("hidden = {hidden} does not divide into {heads} heads"),
                )
                .help("set `head_dim` explicitly, or choose heads that divide hidden");
                if let Some(s) = record.span_of("heads") {
                    d = d.at(s, "heads");
                }
                return Err(vec![d]);
            }
            Ok((
                count(hidden / heads),
                format!("hidden / heads = {hidden} / {heads}"),
            ))
        }
        ("model", "params") => {
            let shape = ModelShape::from_record(record).ok_or_else(Vec::new)?;
            let n = shape.params();
            Ok((
                count(n.total),
                format!(
                    "counted from the shape: {} non-embedding + {} embedding",
                    units::show(n.non_embedding, Dim::Count),
                    units::show(n.embedding, Dim::Count)
                ),
            ))
        }
        ("experiment", "world") => {
            let cluster = record.record("cluster").ok_or_else(Vec::new)?;
            let node = cluster.record("node").ok_or_else(Vec::new)?;
            let (nodes, per) = (num(cluster, "nodes")?, num(node, "gpus_per_node")?);
            Ok((
                count(nodes * per),
                format!("nodes × gpus_per_node = {nodes} × {per}"),
            ))
        }
        ("experiment", "tokens") => {
            // With a compute budget: the tokens that spend it (C = 6·N·D), or under
            // `inference_aware` those that reach the loss of the budget's compute-optimal
            // model (the quality Sardana et al.'s optimum is for). Without one, the law's
            // optimum for the declared parameters: compute-optimal under `chinchilla`,
            // Sardana et al.'s under `inference_aware` (scaling.rs).
            let params = record
                .record("model")
                .and_then(|m| m.num("params"))
                .ok_or_else(Vec::new)?;
            let inference_aware =
                record.record("objective").map(|o| o.kind.as_str()) == Some("inference_aware");
            let (law, name) = law_of(record)?;
            if let Some(compute) = record.num("compute") {
                if !inference_aware {
                    let tokens = (compute / (6.0 * params)).round();
                    return Ok((
                        Value::Num(tokens, Dim::Tokens),
                        format!(
                            "compute / (6 × params) = {} / (6 × {}) ({} per parameter)",
                            units::show(compute, Dim::Flops),
                            units::show(params, Dim::Count),
                            units::trim((tokens / params * 10.0).round() / 10.0)
                        ),
                    ));
                }
                let (n_opt, d_opt) = law.compute_optimal(compute);
                let target = law.loss(n_opt, d_opt);
                if let Some(tokens) = law.tokens_for_loss(params, target) {
                    let tokens = tokens.round();
                    return Ok((
                        Value::Num(tokens, Dim::Tokens),
                        format!(
                            "the tokens on which {} parameters reach the `{name}` law's loss {target:.4} of the compute-optimal {} parameters for {} ({} per parameter)",
                            units::show(params, Dim::Count),
                            units::show(n_opt, Dim::Count),
                            units::show(compute, Dim::Flops),
                            units::trim((tokens / params * 10.0).round() / 10.0)
                        ),
                    ));
                }
            }
            let serve = serve_tokens(record, "`tokens = auto`", record.span_of("tokens"))?;
            let Some(tokens) = law.optimal_tokens(params, serve) else {
                let mut d = Diagnostic::new(
                    codes::CANNOT_DERIVE,
                    format!(
                        "the `{name}` law has no optimal token count for {} parameters",
                        units::show(params, Dim::Count)
                    ),
                )
                .help("write the token budget");
                if let Some(s) = record.span_of("tokens") {
                    d = d.at(s, "auto");
                }
                return Err(vec![d]);
            };
            let tokens = tokens.round();
            let what = if serve > 0.0 {
                format!(
                    "inference-aware tokens (Sardana et al. 2024, serving {})",
                    units::show(serve, Dim::Tokens)
                )
            } else {
                "compute-optimal tokens".to_string()
            };
            Ok((
                Value::Num(tokens, Dim::Tokens),
                format!(
                    "the `{name}` law's {what} for {} parameters ({} per parameter)",
                    units::show(params, Dim::Count),
                    units::trim((tokens / params * 10.0).round() / 10.0)
                ),
            ))
        }
        ("parallel", "data") => {
            let grand = grand()?;
            let world = num(grand, "world")?;
            let (t, pp, c) = (
                num(record, "tensor")?,
                num(record, "pipeline")?,
                num(record, "context")?,
            );
            let model_parallel = t * pp * c;
            let data = world / model_parallel;
            if data.fract() != 0.0 || data < 1.0 {
                let mut d = Diagnostic::new(
                    codes::WORLD_SIZE,
                    format!("{world} GPUs do not divide into tensor × pipeline × context = {t} × {pp} × {c} = {model_parallel}"),
                )
                .help(match nodes_for(grand, model_parallel) {
                    Some((nodes, gpus)) => format!("choose sizes whose product divides {world}, or use {nodes} nodes ({gpus} GPUs)"),
                    None => format!("choose sizes whose product divides {world}"),
                });
                if let Some(s) = record.span.or(here) {
                    d = d.at(
                        s,
                        format!("data = {} is not a whole number", units::trim(data)),
                    );
                }
                return Err(vec![d]);
            }
            Ok((
                count(data),
                format!("world / (tensor × pipeline × context) = {world} / ({t} × {pp} × {c})"),
            ))
        }
        ("parallel", "accumulation") => {
            let grand = grand()?;
            let batch = num(grand, "batch")?;
            let seq = grand
                .record("model")
                .and_then(|m| m.num("seq_len"))
                .ok_or_else(Vec::new)?;
            let (micro, data) = (num(record, "micro_batch")?, num(record, "data")?);
            let sequences = batch / seq;
            let at = grand.span_of("batch");
            let err = |message: String, help: String| {
                let mut d = Diagnostic::new(codes::BATCH_ARITHMETIC, message).help(help);
                if let Some(s) = at {
                    d = d.at(s, "global batch");
                }
                vec![d]
            };
            if sequences.fract() != 0.0 {
                return Err(err(
                    format!(
                        "the batch of {} is {} sequences of {seq} tokens, not a whole number",
                        units::show(batch, Dim::Tokens),
                        units::trim(sequences)
                    ),
                    {
                        // Published batches are powers of two in sequences (Llama 3's "16M"
                        // is 2^11 sequences of 8,192 = 2^24 tokens, written `16Mi tokens`).
                        let power = 2f64.powf(sequences.max(1.0).log2().round());
                        let binary = units::binary(power * seq)
                            .map(|b| format!(" = `{b} tokens`"))
                            .unwrap_or_default();
                        format!(
                            "use a multiple of seq_len: the nearest power of two in sequences is {} tokens ({} × {seq}{binary}); the nearest multiple is {} tokens",
                            units::trim(power * seq),
                            units::trim(power),
                            units::trim(sequences.round().max(1.0) * seq)
                        )
                    },
                ));
            }
            let accumulation = sequences / (micro * data);
            if accumulation.fract() != 0.0 || accumulation < 1.0 {
                let step = micro * data;
                return Err(err(
                    format!("{sequences} sequences per step do not split into micro_batch × data = {micro} × {data} = {step} per accumulation step"),
                    format!(
                        "use a global batch that is a multiple of {step} sequences ({} tokens), or change micro_batch",
                        units::show(step * seq * (sequences / step).round().max(1.0), Dim::Count)
                    ),
                ));
            }
            Ok((count(accumulation), format!("batch / (seq_len × micro_batch × data) = {sequences} / ({micro} × {data}) sequences")))
        }
        ("phase", "tokens") => {
            let budget = num(top, "tokens")?;
            let others: f64 = top
                .entries("phase")
                .filter(|(n, _, _)| **n != parent[1])
                .filter_map(|(_, r, _)| r.num("tokens"))
                .sum();
            let rest = budget - others;
            if rest <= 0.0 {
                let mut d = Diagnostic::new(
                    codes::PHASE_TOKENS_SUM,
                    format!(
                        "the other phases already take {} of the {} budget",
                        units::show(others, Dim::Tokens),
                        units::show(budget, Dim::Tokens)
                    ),
                )
                .help("lower the other phases' tokens or raise `tokens`");
                if let Some(s) = here {
                    d = d.at(s, format!("phase `{}` gets nothing", parent[1]));
                }
                return Err(vec![d]);
            }
            Ok((
                Value::Num(rest, Dim::Tokens),
                format!(
                    "tokens − other phases = {} − {}",
                    units::show(budget, Dim::Tokens),
                    units::show(others, Dim::Tokens)
                ),
            ))
        }
        ("phase", "anneal") => Ok((
            Value::Bool(parent[1] == "anneal"),
            "a phase named `anneal` anneals".into(),
        )),
        ("linear", "from") => {
            let Some(prev) = previous_phase(top, parent) else {
                let mut d = Diagnostic::new(codes::CANNOT_DERIVE, "the first phase's linear schedule needs `from`")
                    .help("write `linear { from = 3e-4, to = 0 }`; later phases start from where the one before ended");
                if let Some(s) = here {
                    d = d.at(s, "no phase before this one");
                }
                return Err(vec![d]);
            };
            let lr = top
                .lookup(&p(&["phase", &prev, "lr"]))
                .and_then(|s| {
                    if let Value::Record(r) = &s.value {
                        Some(r)
                    } else {
                        None
                    }
                })
                .ok_or_else(Vec::new)?;
            let end = match lr.kind.as_str() {
                "cosine" => lr.num("final"),
                "constant" => lr.num("value"),
                "linear" => lr.num("to"),
                _ => Some(0.0),
            }
            .ok_or_else(Vec::new)?;
            Ok((count(end), format!("where phase `{prev}` ends")))
        }
        _ => Err(Vec::new()),
    }
}
