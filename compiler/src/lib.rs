//! kiln: a declarative experiment compiler for LLM pre-training.
//!
//! The pipeline, one module per stage: [`load`] (files and imports) → [`syntax`] (pest →
//! owned AST) → [`resolve`] (schema, presets, units, provenance) → [`derive`] (`auto` and
//! expressions, in dependency order) → [`check`] (diagnostics). [`diagnostic`] renders
//! what every stage reports. The core does no IO: files come through [`load::SourceLoader`].

// A diagnostic is the error of every stage and is built once per problem; boxing it would
// buy nothing measurable.
#![allow(clippy::result_large_err)]

pub mod analyse;
pub mod budget;
pub mod check;
pub mod codes;
pub mod derive;
pub mod diagnostic;
pub mod emit;
pub mod explain;
pub mod family;
pub mod ir;
pub mod load;
pub mod model;
pub mod plan;
pub mod ramp;
pub mod report;
pub mod resolve;
pub mod schema;
pub mod span;
pub mod syntax;
pub mod tune;
pub mod units;
pub mod validate;

use diagnostic::{Diagnostic, Severity};
use ir::{Resolved, Value};
use load::{Program, SourceLoader};
use std::path::PathBuf;

/// The result of checking: every declaration of the entry files, resolved and derived,
/// and every diagnostic, sorted by place.
pub struct Checked {
    pub program: Program,
    pub decls: Vec<Resolved>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
    pub fn warnings(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
    pub fn advice(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Advice)
            .count()
    }
    /// The experiments among the declarations.
    pub fn experiments(&self) -> impl Iterator<Item = &Resolved> {
        self.decls.iter().filter(|d| d.record.kind == "experiment")
    }
}

/// Checks files on disk. `Err` only when an entry file cannot be read.
pub fn check_paths(
    paths: &[PathBuf],
    loader: &dyn SourceLoader,
    allow: &[String],
) -> Result<Checked, String> {
    check_paths_for(paths, loader, allow, None)
}

/// Checks files on disk for `engine` (`kiln check --target`): its start-up rules (K-E002,
/// K-E003) and its predictions, whatever the files declare.
pub fn check_paths_for(
    paths: &[PathBuf],
    loader: &dyn SourceLoader,
    allow: &[String],
    engine: Option<analyse::engine::Engine>,
) -> Result<Checked, String> {
    check_paths_with(paths, loader, allow, engine, true)
}

/// Checks files on disk, for `engine`'s start-up rules when one is given, and for its
/// predictions too when `predict`.
fn check_paths_with(
    paths: &[PathBuf],
    loader: &dyn SourceLoader,
    allow: &[String],
    engine: Option<analyse::engine::Engine>,
    predict: bool,
) -> Result<Checked, String> {
    let (program, diags) = load::load(paths, loader)?;
    let target = engine.map(|engine| Target { engine, predict });
    Ok(compile(program, diags, loader, allow, target))
}

/// The engine a check is for, other than the file's: its start-up rules always, its
/// predictions (memory, time) only when `predict`.
#[derive(Clone, Copy)]
struct Target {
    engine: analyse::engine::Engine,
    predict: bool,
}

/// Checks one text given in memory, named `name` (imports resolve relative to `name`).
pub fn check_source(
    name: &str,
    text: &str,
    loader: &dyn SourceLoader,
    allow: &[String],
) -> Checked {
    let (program, diags) = load::load_text(name, text, loader);
    compile(program, diags, loader, allow, None)
}

fn compile(
    program: Program,
    mut diags: Vec<Diagnostic>,
    loader: &dyn SourceLoader,
    allow: &[String],
    engine: Option<Target>,
) -> Checked {
    let (mut decls, resolve_diags) = resolve::resolve(&program);
    diags.extend(resolve_diags);
    diags.extend(load::check_source_paths(&program, &decls, loader));
    let cli_allow = allowed_codes(allow.iter().map(|s| (s.as_str(), None)), &mut diags);
    for decl in &mut decls {
        let kind = schema::kind(&decl.record.kind).expect("resolved declarations have known kinds");
        let earlier_errors = diags.iter().any(Diagnostic::is_error);
        let derive_all = |record: &mut ir::Record| derive_experiment(record, kind, earlier_errors);
        let mut own = match (kind.name, earlier_errors) {
            ("experiment", false) => match budget::solve(&decl.record, &derive_all) {
                Some((record, own)) => {
                    decl.record = record;
                    own
                }
                None => derive_all(&mut decl.record),
            },
            _ => derive_all(&mut decl.record),
        };
        check::check(kind.name, &decl.record, &mut own);
        // The analyses' checks need a consistent experiment: skip them after any error.
        if kind.name == "experiment" && !own.iter().chain(diags.iter()).any(Diagnostic::is_error) {
            if let Some(setup) = analyse::setup::Setup::from_record(&decl.record) {
                let for_target = engine.map(|e| setup.clone().for_engine(e.engine, &decl.record));
                // The engine's start-up rules, for the target when one is given.
                check::engine::check(
                    &decl.record,
                    for_target.as_ref().unwrap_or(&setup),
                    &mut own,
                );
                // The predictions: the target's under `kiln check --target`, the file's
                // engine under `kiln emit --target` (whose plan carries the target's).
                let setup = match (for_target, engine) {
                    (Some(target), Some(t)) if t.predict => target,
                    _ => setup,
                };
                let analysis = analyse::analyse_setup(&setup);
                check::perf::check(&decl.record, &setup, &analysis, &mut own);
            }
        }
        if let Some(Value::List(items)) = decl.record.slot("allow").map(|s| &s.value) {
            let span = decl.record.span_of("allow");
            let names = items.iter().filter_map(|v| {
                if let Value::Str(s) = v {
                    Some((s.as_str(), span))
                } else {
                    None
                }
            });
            let codes = allowed_codes(names, &mut diags);
            own.retain(|d| d.is_error() || !codes.contains(&d.code.code));
        }
        diags.extend(own);
    }
    diags.retain(|d| d.is_error() || !cli_allow.contains(&d.code.code));
    diagnostic::sort(&mut diags);
    Checked {
        program,
        decls,
        diagnostics: diags,
    }
}

/// Derives a declaration: for an experiment, the `auto` layout sizes take placeholders while
/// the rest derives, then the layout search's choice (tune.rs), unless something failed.
fn derive_experiment(
    record: &mut ir::Record,
    kind: &'static schema::KindSpec,
    earlier_errors: bool,
) -> Vec<Diagnostic> {
    let searched = match kind.name {
        "experiment" => tune::take_autos(record),
        _ => Vec::new(),
    };
    let mut own = derive::derive(record, kind);
    if !earlier_errors && !own.iter().any(Diagnostic::is_error) {
        own.extend(tune::fill_autos(record, &searched));
    }
    own
}

/// The codes named in an allow list; unknown names and errors are reported (K-A001).
fn allowed_codes<'a>(
    names: impl Iterator<Item = (&'a str, Option<span::Span>)>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (name, span) in names {
        let problem = match codes::find(name) {
            Some(c) if c.severity != Severity::Error => {
                out.push(c.code);
                continue;
            }
            Some(c) => format!(
                "`{}` ({}) is an error; errors cannot be silenced",
                c.code, c.name
            ),
            None => format!("there is no diagnostic code `{name}`"),
        };
        let help = match codes::find(name) {
            Some(_) => "fix the error instead; only warnings and advice can be allowed".to_string(),
            None => match diagnostic::did_you_mean(
                name,
                codes::ALL.iter().flat_map(|c| [c.code, c.name]),
            ) {
                Some(s) => format!("did you mean `{s}`? `kiln codes` lists them all"),
                None => "`kiln codes` lists every code".to_string(),
            },
        };
        let mut d = Diagnostic::new(codes::UNKNOWN_ALLOW, problem).help(help);
        if let Some(span) = span {
            d = d.at(span, "in this allow list");
        }
        diags.push(d);
    }
    out
}

/// Checks a file and lowers each of its experiments into a run plan. Plans are made only
/// when the check found no errors; an experiment without a tokenizer is K-L001.
pub fn plan_paths(
    paths: &[PathBuf],
    loader: &dyn SourceLoader,
    allow: &[String],
) -> Result<(Checked, Vec<(String, plan::RunPlan)>), String> {
    plan_paths_for(paths, loader, allow, None)
}

/// As [`plan_paths`], with the predictions (step times, durations) made for `engine`
/// instead of the experiment's own `engine =` (`kiln emit --target megatron`).
pub fn plan_paths_for(
    paths: &[PathBuf],
    loader: &dyn SourceLoader,
    allow: &[String],
    engine: Option<analyse::engine::Engine>,
) -> Result<(Checked, Vec<(String, plan::RunPlan)>), String> {
    // The target's start-up rules; the file's engine's memory and time checks (the plan
    // carries the target's predictions).
    let mut checked = check_paths_with(paths, loader, allow, engine, false)?;
    let mut plans = Vec::new();
    if checked.errors() > 0 {
        return Ok((checked, plans));
    }
    let mut extra = Vec::new();
    for exp in checked.experiments() {
        if exp.record.record("tokenizer").is_none() {
            let mut d = Diagnostic::new(codes::NO_TOKENIZER, format!("experiment `{}` declares no tokenizer", exp.name))
                .help("declare one: `tokenizer = bpe { vocab = … }` (or `unigram`), matching the model's vocab");
            if let Some(span) = exp.record.span {
                d = d.at(span, "no `tokenizer` here");
            }
            extra.push(d);
            continue;
        }
        let analysed = analyse::setup::Setup::from_record(&exp.record).map(|setup| {
            let setup = match engine {
                Some(e) => setup.for_engine(e, &exp.record),
                None => setup,
            };
            let analysis = analyse::analyse_setup(&setup);
            (setup, analysis)
        });
        if let Some((setup, analysis)) = analysed {
            if let Some(p) = plan::lower(exp, &setup, &analysis) {
                plans.push((exp.name.clone(), p));
            }
        }
    }
    checked.diagnostics.extend(extra);
    diagnostic::sort(&mut checked.diagnostics);
    Ok((checked, plans))
}
