//! `kiln report`: one self-contained HTML file (inline SVG, no script, a Content-Security-Policy
//! that lets nothing load) for an experiment before it runs (`experiment.rs`) or for a run
//! directory, measured against the plan (`run.rs`), rewritten atomically while the run goes
//! with `--watch`.

mod experiment;
mod page;
mod run;
mod svg;

use crate::error::{Failure, Outcome};
use kiln::load::FsLoader;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

/// `kiln report FILE [-o OUT]`: refused like `kiln check` when the file has errors; without
/// `-o` the page goes to standard output.
pub fn experiment(file: &Path, output: Option<&Path>, allow: &[String]) -> Outcome {
    let (checked, plans) = kiln::plan_paths_for(&[file.to_path_buf()], &FsLoader, allow, None)
        .map_err(Failure::unusable)?;
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprint!(
        "{}",
        kiln::diagnostic::render_text(&checked.program.sources, &checked.diagnostics, color)
    );
    if checked.errors() > 0 {
        return Err(Failure::Refused(None));
    }
    if plans.len() != 1 {
        return Err(Failure::refused(format!(
            "`{}` declares {} experiments; report one per file",
            file.display(),
            plans.len()
        )));
    }
    let exp = checked
        .experiments()
        .next()
        .expect("a plan comes from an experiment");
    let Some((setup, analysis)) = kiln::analyse::analyse(&exp.record) else {
        return Err(Failure::refused(format!(
            "`{}`: experiment `{}` cannot be analysed",
            file.display(),
            exp.name
        )));
    };
    let html = experiment::page(&exp.name, &setup, &analysis, &plans[0].1).render();
    match output {
        Some(out) => {
            write(out, &html, &[file])?;
            eprintln!("kiln: wrote {}", out.display());
        }
        None => print!("{html}"),
    }
    Ok(())
}

/// `kiln report RUN_DIR [-o OUT] [--watch]`: the page of the run as it stands (default
/// `RUN_DIR/report.html`); with `watch`, rewritten every `interval` with a reload tag until
/// every phase and the evaluation are done, then once more without it.
pub fn run_dir(dir: &Path, output: Option<&Path>, watch: bool, interval: Duration) -> Outcome {
    let default = dir.join("report.html");
    let out = output.unwrap_or(&default);
    let plan_file = dir.join(kiln_plan::run_dir::PLAN_FILE);
    let mut told = false;
    loop {
        let run = run::read(dir)?;
        if run.lines() == 0 && !watch {
            return Err(Failure::unusable(format!(
                "`{}` holds no metrics yet: no train step of its plan has started (`kiln run` \
                 writes them; `--watch` waits for them)",
                dir.display()
            )));
        }
        let finished = run.finished();
        let mut page = run::page(&run);
        if watch && !finished {
            page.refresh_s = Some(interval.as_secs().max(1));
        }
        write(out, &page.render(), &[&plan_file])?;
        if !told {
            eprintln!("kiln: wrote {}", out.display());
            told = true;
        }
        if !watch || finished {
            if watch {
                eprintln!("kiln: the run has finished; {} is final", out.display());
            }
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

/// Writes the page by kiln-fsio's safe-write rule, never over an input.
fn write(out: &Path, html: &str, inputs: &[&Path]) -> Outcome {
    kiln_fsio::refuse_inputs(out, inputs, None)
        .and_then(|()| kiln_fsio::write(out, html.as_bytes()))
        .map_err(|e| Failure::unusable(format!("{e}")))
}
