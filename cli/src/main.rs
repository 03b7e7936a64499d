//! The `kiln` command line: reads files, prints diagnostics, sets the exit code.

mod compare;
mod error;
mod report;
mod run;

use clap::{Parser, Subcommand, ValueEnum};
use kiln::load::FsLoader;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use error::{Failure, Outcome};

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "A declarative experiment compiler for LLM pre-training"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check experiment files: exit 0 without errors (warnings allowed), 1 with errors, 2 for usage or IO errors.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Silence a warning by code or name (repeatable): `--allow K-C013`.
        #[arg(long, value_name = "CODE")]
        allow: Vec<String>,
        /// Print every resolved value with its provenance (declared, preset, derived, default).
        #[arg(long)]
        values: bool,
        #[arg(long, value_enum, default_value_t = Color::Auto)]
        color: Color,
        /// Check for this engine (megatron, nemo, torchtitan, deepspeed, composer, nanotron,
        /// kiln) whatever `engine` the file declares: its start-up rules (K-E002, K-E003)
        /// and its predictions.
        #[arg(long, value_name = "ENGINE")]
        target: Option<String>,
    },
    /// Format files in place in the canonical layout (comments kept); `--check` only reports.
    Fmt {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Exit 1 if a file is not formatted, and change nothing.
        #[arg(long)]
        check: bool,
    },
    /// Report every number kiln derives for an experiment: model, scaling, memory,
    /// communication, time and cost, and where each value came from.
    Explain {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
        format: ExplainFormat,
        #[arg(long, value_name = "CODE")]
        allow: Vec<String>,
    },
    /// Two experiments side by side: model, scaling, layout, memory, time and cost with B − A
    /// and B/A, and every resolved input that differs. Exit 1 if either file has errors.
    Compare {
        a: PathBuf,
        b: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[arg(long, value_name = "CODE")]
        allow: Vec<String>,
    },
    /// Every parallel layout of the experiment's cluster that fits, ranked by predicted step
    /// time (or by memory): the best `--top`, with the declared layout beside them.
    Tune {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = TuneObjective::Time)]
        objective: TuneObjective,
        /// How many layouts to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Only the layouts this engine runs (its profile also times them); default: the
        /// experiment's `engine =`.
        #[arg(long)]
        engine: Option<String>,
        #[arg(long, value_enum, default_value_t = TuneFormat::Text)]
        format: TuneFormat,
        /// Write the best layout into the file's `parallel` block (comments and layout kept,
        /// then `kiln fmt`'s canonical layout; a comment on the line of a value it changes
        /// or removes says what was there).
        #[arg(long)]
        write: bool,
        #[arg(long, value_name = "CODE")]
        allow: Vec<String>,
    },
    /// A self-contained HTML report with charts: of an experiment (summary, learning rate,
    /// data mix, memory per stage, step time, the layouts that fit, validation), or of a run
    /// directory (loss, learning rate, tokens/s and memory measured against predicted).
    Report {
        /// An experiment file, or a run directory (`kiln run --out DIR`).
        path: PathBuf,
        /// Where to write the page (default: standard output for a file, DIR/report.html for
        /// a run directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// For a run directory: rewrite the page every --interval seconds, reloading in the
        /// browser, until the run has finished.
        #[arg(long)]
        watch: bool,
        /// Seconds between rewrites with --watch.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
        #[arg(long, value_name = "CODE")]
        allow: Vec<String>,
    },
    /// Lower an experiment into its run plan (JSON): the only input of the runtime.
    Plan {
        file: PathBuf,
        /// Write the plan here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long, value_name = "CODE")]
        allow: Vec<String>,
    },
    /// Print the JSON Schema of the run plan.
    Schema,
    /// Draw the step graph of an experiment.
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Render launch files for a target into a directory: local, slurm, kubernetes,
    /// megatron, torchtitan, deepspeed.
    Emit {
        file: PathBuf,
        #[arg(long)]
        target: String,
        #[arg(short, long)]
        output: PathBuf,
        /// Replace files in the output directory that kiln did not write there (or that
        /// were changed since it did).
        #[arg(long)]
        force: bool,
        #[arg(long, value_name = "CODE")]
        allow: Vec<String>,
    },
    /// Check, plan and execute an experiment (or execute a plan.json) on this machine,
    /// skipping the steps that are already done.
    Run {
        /// An experiment file, or a plan.json.
        file: PathBuf,
        /// The run directory (default: runs/EXPERIMENT).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run the training steps as this many ranks under mpirun (at least 1).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        ranks: Option<u32>,
        /// Run only up to these steps: a step's name (`train.scorer.ref`) or its kind
        /// (`quality_filter`: every source's), and the steps they read from.
        #[arg(long, value_name = "STEP")]
        until: Option<String>,
        #[arg(long, value_name = "CODE")]
        allow: Vec<String>,
    },
    /// The data steps on their own: dedup, filter, tokenize.
    Data {
        #[command(subcommand)]
        cmd: DataCli,
    },
    /// Measure this machine (matmul FLOP/s, memory bandwidth) and write it as a kiln preset.
    Calibrate {
        /// Where to write the presets (default: calibration/this_machine.kiln on a CPU,
        /// calibration/this_gpu.kiln with --device cuda).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// cpu, or cuda / cuda:N: measure GPU N (training-shaped bf16 GEMMs, causal
        /// attention, HBM bandwidth) and write a cluster of the --node and --gpu presets
        /// with the measured values as overrides.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// The standard-library GPU preset the measured GPU is (with --device cuda).
        #[arg(long)]
        gpu: Option<String>,
        /// The standard-library node preset it sits in (with --device cuda).
        #[arg(long)]
        node: Option<String>,
    },
    /// Score kiln's predictions against measured runs (`.kiln` files with a `# measured:`
    /// line), fitting its constants leave-one-source-out; prints docs/validation.md.
    Validate {
        #[arg(default_values = ["experiments/measured", "experiments/reference", "experiments"])]
        dirs: Vec<PathBuf>,
        /// Print the fitted constants and bands (stdlib/fitted.json) instead.
        #[arg(long)]
        fitted: bool,
    },
    /// List every diagnostic code; `--markdown` prints docs/diagnostics.md.
    Codes {
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

#[derive(Clone, Copy, ValueEnum)]
enum TuneObjective {
    Time,
    Cost,
    TokensPerS,
    Memory,
}

#[derive(Clone, Copy, ValueEnum)]
enum TuneFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExplainFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

fn main() -> ExitCode {
    // Die quietly when the reader of our output goes away (`kiln plan … | head`), as Unix
    // tools do, instead of panicking on a write to a closed pipe.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Check {
            files,
            format,
            allow,
            values,
            color,
            target,
        } => check(&files, format, &allow, values, color, target.as_deref()),
        Command::Fmt { files, check } => fmt(&files, check),
        Command::Tune {
            file,
            objective,
            top,
            engine,
            format,
            write,
            allow,
        } => tune(
            &file,
            objective,
            top,
            engine.as_deref(),
            format,
            write,
            &allow,
        ),
        Command::Explain {
            file,
            format,
            allow,
        } => explain(&file, format, &allow),
        Command::Compare {
            a,
            b,
            format,
            allow,
        } => compare::run(
            &a,
            &b,
            match format {
                Format::Text => compare::Format::Text,
                Format::Json => compare::Format::Json,
            },
            &allow,
        ),
        Command::Run {
            file,
            out,
            ranks,
            until,
            allow,
        } => run(&file, out.as_deref(), ranks, until.as_deref(), &allow),
        Command::Calibrate {
            output,
            device,
            gpu,
            node,
        } => {
            if device == "cpu" {
                let out = output.unwrap_or_else(|| "calibration/this_machine.kiln".into());
                run::calibrate(&out)
            } else {
                let out = output.unwrap_or_else(|| "calibration/this_gpu.kiln".into());
                run::calibrate_gpu(&out, &device, gpu.as_deref(), node.as_deref())
            }
        }
        // `kiln data` is kiln-data's own command line, with its own exit statuses.
        Command::Data {
            cmd: DataCli::Data(cmd),
        } => return kiln_data::cli::run(cmd),
        Command::Data {
            cmd: DataCli::Score { args },
        } => return run::score(&args),
        Command::Plan {
            file,
            output,
            allow,
        } => plan(&file, output.as_deref(), &allow),
        Command::Report {
            path,
            output,
            watch,
            interval,
            allow,
        } => {
            // --watch is only for a run directory: one that is not there is an error of it.
            if path.is_dir() || watch {
                report::run_dir(
                    &path,
                    output.as_deref(),
                    watch,
                    std::time::Duration::from_secs(interval),
                )
            } else {
                report::experiment(&path, output.as_deref(), &allow)
            }
        }
        Command::Schema => {
            let schema = schemars::schema_for!(kiln::plan::RunPlan);
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("schema serialises")
            );
            Ok(())
        }
        Command::Graph { file, format } => graph(&file, format),
        Command::Emit {
            file,
            target,
            output,
            force,
            allow,
        } => emit(&file, &target, &output, force, &allow),
        Command::Validate { dirs, fitted } => match kiln::validate::load(&dirs) {
            Ok(cases) if cases.is_empty() => Err(Failure::unusable(
                "no .kiln file there has a `# measured: {json}` line".to_string(),
            )),
            Ok(cases) => {
                let report = kiln::validate::run(&cases);
                if fitted {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&report.fitted()).expect("serialisable")
                    );
                } else {
                    print!("{}", report.markdown());
                }
                Ok(())
            }
            Err(e) => Err(Failure::unusable(e.to_string())),
        },
        Command::Codes { markdown } => {
            if markdown {
                print!("{}", kiln::codes::docs_markdown());
            } else {
                for c in kiln::codes::ALL {
                    println!(
                        "{}  {:<8} {:<24} {}",
                        c.code,
                        c.severity.word(),
                        c.name,
                        c.what
                    );
                }
            }
            Ok(())
        }
    };
    error::exit(outcome)
}

/// An engine by name (`--engine`, `--target`), or a usage error listing them.
fn engine_named(name: &str) -> Result<kiln::analyse::engine::Engine, Failure> {
    kiln::analyse::engine::Engine::from_name(name).ok_or_else(|| {
        Failure::unusable(format!(
            "unknown engine `{name}`: kiln, megatron, nemo, torchtitan, deepspeed, composer or nanotron"
        ))
    })
}

fn check(
    files: &[PathBuf],
    format: Format,
    allow: &[String],
    values: bool,
    color: Color,
    target: Option<&str>,
) -> Outcome {
    let engine = target.map(engine_named).transpose()?;
    let checked = match kiln::check_paths_for(files, &FsLoader, allow, engine) {
        Ok(c) => c,
        Err(e) => {
            return Err(Failure::unusable(e.to_string()));
        }
    };
    match format {
        Format::Json => {
            let json = kiln::diagnostic::to_json(&checked.program.sources, &checked.diagnostics);
            println!(
                "{}",
                serde_json::to_string_pretty(&json).expect("diagnostics serialise")
            );
        }
        Format::Text => {
            let color = match color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
                }
            };
            eprint!(
                "{}",
                kiln::diagnostic::render_text(
                    &checked.program.sources,
                    &checked.diagnostics,
                    color
                )
            );
            if values {
                for decl in &checked.decls {
                    println!("{} {}", decl.record.kind, decl.name);
                    print!("{}", kiln::report::values(&decl.record));
                }
            }
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            let plural =
                |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
            let mut summary = format!(
                "{}, {}",
                plural(checked.errors(), "error"),
                plural(checked.warnings(), "warning")
            );
            if checked.advice() > 0 {
                summary += &format!(", {} advice", checked.advice());
            }
            eprintln!("{}: {summary}", names.join(", "));
        }
    }
    if checked.errors() > 0 {
        Err(Failure::Refused(None))
    } else {
        Ok(())
    }
}

fn fmt(files: &[PathBuf], check: bool) -> Outcome {
    let mut status = Ok(());
    for path in files {
        // A regular file only (it is rewritten in place), read without blocking and size-capped.
        let bytes = match kiln::load::SourceLoader::read(&FsLoader, path) {
            Ok(b) => b,
            Err(e) => {
                return Err(Failure::unusable(
                    kiln::load::entry_error(path, e).to_string(),
                ));
            }
        };
        let mut sources = kiln::span::Sources::new();
        let text = match kiln::load::decode(bytes) {
            Ok(t) => t,
            Err(bad) => {
                let name = path.display().to_string();
                let (_, d) = kiln::load::not_utf8(&mut sources, &name, bad);
                eprint!(
                    "{}",
                    kiln::diagnostic::render_text(&sources, &[d], std::io::stderr().is_terminal())
                );
                status = Err(Failure::Refused(None));
                continue;
            }
        };
        let file = sources.add(path.display().to_string(), text.clone());
        let ast = match kiln::syntax::parse(file, &text) {
            Ok(ast) => ast,
            Err(d) => {
                eprint!(
                    "{}",
                    kiln::diagnostic::render_text(&sources, &[d], std::io::stderr().is_terminal())
                );
                status = Err(Failure::Refused(None));
                continue;
            }
        };
        let formatted = kiln::syntax::fmt::format(&ast, &text);
        if formatted == text {
            continue;
        }
        if check {
            eprintln!("{} is not formatted", path.display());
            status = Err(Failure::Refused(None));
        } else if let Err(e) = kiln_fsio::write(path, formatted.as_bytes()) {
            return Err(Failure::unusable(format!("{e}")));
        }
    }
    status
}

/// `kiln tune`: the layout search of each experiment in the file. The declared layout may
/// be one that does not fit (that is what the search is for): only the other errors refuse.
fn tune(
    file: &std::path::Path,
    objective: TuneObjective,
    top: usize,
    engine: Option<&str>,
    format: TuneFormat,
    write: bool,
    allow: &[String],
) -> Outcome {
    use kiln::tune::Objective;
    let checked = kiln::check_paths(&[file.to_path_buf()], &FsLoader, allow)
        .map_err(|e| Failure::unusable(e.to_string()))?;
    // What the search itself answers: a layout that does not fit, or that the engine refuses.
    let memory_codes = [
        kiln::codes::MEMORY.code,
        kiln::codes::MEMORY_HEADROOM.code,
        kiln::codes::ENGINE_REFUSES.code,
    ];
    let blocking: Vec<_> = checked
        .diagnostics
        .iter()
        .filter(|d| {
            d.severity == kiln::diagnostic::Severity::Error && !memory_codes.contains(&d.code.code)
        })
        .cloned()
        .collect();
    if !blocking.is_empty() {
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        eprint!(
            "{}",
            kiln::diagnostic::render_text(&checked.program.sources, &blocking, color)
        );
        return Err(Failure::Refused(None));
    }
    let engine = engine.map(engine_named).transpose()?;
    let (objective, name) = match objective {
        TuneObjective::Time => (Objective::Time, "step time"),
        TuneObjective::Cost => (Objective::Cost, "cost"),
        TuneObjective::TokensPerS => (Objective::TokensPerS, "tokens per second"),
        TuneObjective::Memory => (Objective::Memory, "memory"),
    };
    let mut any = false;
    let mut best: Vec<(String, kiln::tune::Candidate)> = Vec::new();
    for exp in checked.experiments() {
        let Some(setup) = kiln::analyse::setup::Setup::from_record(&exp.record) else {
            continue;
        };
        let setup = match engine {
            Some(e) => setup.for_engine(e, &exp.record),
            None => setup,
        };
        any = true;
        let search = kiln::tune::search(&setup, objective);
        if let Some(first) = search.ranked.first() {
            best.push((exp.name.clone(), first.clone()));
        }
        match format {
            TuneFormat::Text => {
                println!(
                    "{} on {} × {} ({}):",
                    exp.name,
                    setup.world(),
                    setup.hardware.gpu,
                    setup.engine.name()
                );
                print!(
                    "{}",
                    kiln::tune::render(
                        &search,
                        top,
                        name,
                        kiln::analyse::time::fitted().memory.relative
                    )
                );
            }
            TuneFormat::Json => {
                let mut shown = search.clone();
                shown.ranked.truncate(top);
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "experiment": exp.name,
                        "engine": setup.engine.name(),
                        "objective": name,
                        "memory_band": kiln::analyse::time::fitted().memory.relative,
                        "search": shown,
                    }))
                    .expect("serialisable")
                );
            }
        }
    }
    if !any {
        return Err(Failure::refused(format!(
            "`{}` declares no experiment to tune",
            file.display()
        )));
    }
    if write {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::unusable(format!("cannot read `{}`: {e}", file.display())))?;
        let mut text = text;
        for (name, layout) in &best {
            text = kiln::tune::write_layout(&text, name, layout).map_err(|e| {
                Failure::unusable(format!(
                    "cannot write the layout into `{}`: {e}",
                    file.display()
                ))
            })?;
        }
        if best.is_empty() {
            return Err(Failure::refused("no layout fits: nothing written"));
        }
        kiln_fsio::write(file, text.as_bytes()).map_err(|e| Failure::unusable(e.to_string()))?;
        eprintln!(
            "kiln: wrote the best layout into {} ({})",
            file.display(),
            best.iter()
                .map(|(n, c)| format!("{n}: {}", c.layout()))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

fn explain(file: &std::path::Path, format: ExplainFormat, allow: &[String]) -> Outcome {
    let checked = match kiln::check_paths(&[file.to_path_buf()], &FsLoader, allow) {
        Ok(c) => c,
        Err(e) => {
            return Err(Failure::unusable(e.to_string()));
        }
    };
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprint!(
        "{}",
        kiln::diagnostic::render_text(&checked.program.sources, &checked.diagnostics, color)
    );
    // With errors, the analysis of what could be analysed still follows (text and markdown),
    // under a line saying it is of a file with errors; the exit code stays 1.
    let errors = checked.errors();
    if errors > 0 && matches!(format, ExplainFormat::Json) {
        return Err(Failure::Refused(None));
    }
    let mut any = false;
    for exp in checked.experiments() {
        let Some((setup, analysis)) = kiln::analyse::analyse(&exp.record) else {
            continue;
        };
        any = true;
        if errors > 0 {
            println!(
                "{}",
                explain_marker(&exp.name, errors, matches!(format, ExplainFormat::Markdown))
            );
        }
        match format {
            ExplainFormat::Json => println!("{}", kiln::explain::json(&exp.name, &analysis)),
            ExplainFormat::Text => print!("{}", kiln::explain::text(exp, &setup, &analysis)),
            ExplainFormat::Markdown => {
                print!("{}", kiln::explain::markdown(exp, &setup, &analysis))
            }
        }
    }
    if errors > 0 {
        return Err(Failure::Refused(None));
    }
    if !any {
        return Err(Failure::refused(format!(
            "`{}` declares no experiment to explain",
            file.display()
        )));
    }
    Ok(())
}

/// The line above an analysis of a file with errors: it is what the values as written give,
/// not a run that passes the checks.
fn explain_marker(name: &str, errors: usize, markdown: bool) -> String {
    let s = if errors == 1 { "" } else { "s" };
    let text = format!(
        "analysis of `{name}` despite {errors} error{s} (above): the values as written, not a run that passes kiln check"
    );
    if markdown {
        format!("> **{text}**\n")
    } else {
        format!("!! {text}\n")
    }
}

/// Checks and lowers one file; prints its diagnostics. `Err` carries the exit code.
fn lower(
    file: &std::path::Path,
    allow: &[String],
) -> Result<(kiln::Checked, Vec<(String, kiln::plan::RunPlan)>), Failure> {
    lower_for(file, allow, None)
}

fn lower_for(
    file: &std::path::Path,
    allow: &[String],
    engine: Option<kiln::analyse::engine::Engine>,
) -> Result<(kiln::Checked, Vec<(String, kiln::plan::RunPlan)>), Failure> {
    let (checked, plans) =
        match kiln::plan_paths_for(&[file.to_path_buf()], &FsLoader, allow, engine) {
            Ok(r) => r,
            Err(e) => return Err(Failure::unusable(e)),
        };
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprint!(
        "{}",
        kiln::diagnostic::render_text(&checked.program.sources, &checked.diagnostics, color)
    );
    if checked.errors() > 0 {
        return Err(Failure::Refused(None));
    }
    if plans.is_empty() {
        return Err(Failure::refused(format!(
            "`{}` declares no experiment to plan",
            file.display()
        )));
    }
    Ok((checked, plans))
}

fn plan(file: &std::path::Path, output: Option<&std::path::Path>, allow: &[String]) -> Outcome {
    let (_, plans) = lower(file, allow)?;
    if plans.len() > 1 {
        return Err(Failure::refused(format!(
            "`{}` declares {} experiments; plan one per file",
            file.display(),
            plans.len()
        )));
    }
    let json = serde_json::to_string_pretty(&plans[0].1).expect("plans serialise") + "\n";
    match output {
        Some(path) => {
            let written = kiln_fsio::refuse_inputs(path, &[file], None)
                .and_then(|()| kiln_fsio::write(path, json.as_bytes()));
            if let Err(e) = written {
                return Err(Failure::unusable(format!("{e}")));
            }
        }
        None => print!("{json}"),
    }
    Ok(())
}

fn graph(file: &std::path::Path, format: GraphFormat) -> Outcome {
    let (_, plans) = lower(file, &[])?;
    for (_, p) in &plans {
        match format {
            GraphFormat::Dot => print!("{}", kiln::plan::graph::dot(&p.steps)),
            GraphFormat::Mermaid => print!("{}", kiln::plan::graph::mermaid(&p.steps)),
        }
    }
    Ok(())
}

fn emit(
    file: &std::path::Path,
    target: &str,
    output: &std::path::Path,
    force: bool,
    allow: &[String],
) -> Outcome {
    let Some(target) = kiln::emit::Target::parse(target) else {
        let names: Vec<&str> = kiln::emit::Target::ALL.iter().map(|t| t.name()).collect();
        return Err(Failure::unusable(format!(
            "unknown target `{target}`; the targets are {}",
            names.join(", ")
        )));
    };
    // An engine target's files carry kiln's predictions for that engine.
    let engine = kiln::analyse::engine::Engine::from_name(target.name())
        .filter(|e| *e != kiln::analyse::engine::Engine::Kiln);
    let (checked, plans) = lower_for(file, allow, engine)?;
    if plans.len() > 1 {
        return Err(Failure::refused(format!(
            "`{}` declares {} experiments; emit one per file",
            file.display(),
            plans.len()
        )));
    }
    let exp = checked
        .experiments()
        .next()
        .expect("a plan comes from an experiment");
    let at = |field: &str| {
        exp.record
            .span_of(field)
            .or(exp.record.span)
            .unwrap_or(kiln::span::Span::new(0, 0, 0))
    };
    let (files, diags) = kiln::emit::emit(&plans[0].1, target, &at);
    let diags: Vec<_> = diags
        .into_iter()
        .filter(|d| !allow.iter().any(|a| a == d.code.code || a == d.code.name))
        .collect();
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprint!(
        "{}",
        kiln::diagnostic::render_text(&checked.program.sources, &diags, color)
    );
    if let Err(e) = kiln::emit::write::write(output, &files, force, &[file]) {
        return Err(Failure::unusable(format!("{e}")));
    }
    eprintln!(
        "kiln: wrote {} files for {} to {}",
        files.len(),
        target.name(),
        output.display()
    );
    Ok(())
}

/// `kiln data`: kiln-data's commands, and `score`, which needs a language model and so runs
/// in kiln-worker (kiln never links libtorch).
#[derive(Subcommand)]
enum DataCli {
    #[command(flatten)]
    Data(kiln_data::cli::DataCommand),
    /// Score documents with a language model: perplexity, likelihood ratio or an instruct
    /// model's rating (kiln-worker score; `kiln data score --help` for its options).
    #[command(disable_help_flag = true)]
    Score {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn run(
    file: &std::path::Path,
    out: Option<&std::path::Path>,
    ranks: Option<u32>,
    until: Option<&str>,
    allow: &[String],
) -> Outcome {
    let plan_json = if file.extension().is_some_and(|e| e == "json") {
        match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                return Err(Failure::unusable(format!(
                    "cannot read `{}`: {e}",
                    file.display()
                )));
            }
        }
    } else {
        let (_, plans) = lower(file, allow)?;
        if plans.len() > 1 {
            return Err(Failure::refused(format!(
                "`{}` declares {} experiments; run one per file",
                file.display(),
                plans.len()
            )));
        }
        serde_json::to_string_pretty(&plans[0].1).expect("plans serialise") + "\n"
    };
    let plan = kiln_plan::RunPlan::<serde_json::Value>::from_json(&plan_json)
        .map_err(|e| Failure::unusable(format!("`{}`: {e}", file.display())))?;
    let out = out
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::Path::new("runs").join(&plan.experiment.name));
    // Sources are relative to the experiment's project; a plan's to where kiln runs.
    let source_root = if file.extension().is_some_and(|e| e == "json") {
        std::env::current_dir().unwrap_or_default()
    } else {
        run::project_root(file)
    };
    run::run(&plan_json, &out, &source_root, ranks, until)
}
