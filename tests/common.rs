//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository root (tests run with the package directory, compiler/, as cwd).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `.kiln` file directly in `dir` (relative to the root), sorted.
pub fn kiln_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kiln"))
        .collect();
    files.sort();
    files
}

/// Checks files given relative to the root, as `kiln check` run from the root would.
pub fn check(paths: &[&Path]) -> kiln::Checked {
    std::env::set_current_dir(root()).unwrap();
    let paths: Vec<PathBuf> = paths
        .iter()
        .map(|p| p.strip_prefix(root()).unwrap_or(p).to_path_buf())
        .collect();
    kiln::check_paths(&paths, &kiln::load::FsLoader, &[]).expect("readable")
}

pub fn render(checked: &kiln::Checked) -> String {
    kiln::diagnostic::render_text(&checked.program.sources, &checked.diagnostics, false)
}

/// Checks and lowers files given relative to the root, as `kiln plan` does.
pub fn plan(paths: &[&Path]) -> kiln::Checked {
    std::env::set_current_dir(root()).unwrap();
    let paths: Vec<PathBuf> = paths
        .iter()
        .map(|p| p.strip_prefix(root()).unwrap_or(p).to_path_buf())
        .collect();
    kiln::plan_paths(&paths, &kiln::load::FsLoader, &[])
        .expect("readable")
        .0
}
