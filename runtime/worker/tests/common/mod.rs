//! What the worker's integration tests share: kiln-worker started as one process or as
//! `ranks` ranks under mpirun.
#![allow(dead_code)]

use std::process::Command;

pub const WORKER: &str = env!("CARGO_BIN_EXE_kiln-worker");

/// kiln-worker alone (`ranks` = 1) or under mpirun as kiln-plan launches it; the caller adds
/// arguments.
pub fn launch(ranks: u32) -> Command {
    let mut argv = kiln_plan::launch::local_prefix(ranks);
    argv.push(WORKER.to_string());
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}
