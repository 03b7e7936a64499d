//! What the worker's integration tests share: kiln-worker started as one process or as
//! `ranks` ranks under mpirun.
#![allow(dead_code)]

use std::process::Command;

pub const WORKER: &str = env!("CARGO_BIN_EXE_kiln-worker");

/// kiln-worker alone (`ranks` = 1) or under `mpirun -np ranks`; the caller adds arguments.
pub fn launch(ranks: u32) -> Command {
    if ranks > 1 {
        let mut c = Command::new("mpirun");
        c.args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            &ranks.to_string(),
        ])
        .arg(WORKER);
        c
    } else {
        Command::new(WORKER)
    }
}
