//! How a step runs on one machine: one process, or under `mpirun` one process per rank. The
//! one definition of that command line, used by `kiln run`, the emitted local script
//! (`kiln emit --target local`) and the tests.

/// The launcher before a step's command: nothing for one rank; `mpirun` for several, with
/// `--oversubscribe` (ranks may outnumber the cores) and `--allow-run-as-root` (containers
/// and CI run as root, where OpenMPI otherwise refuses to start).
pub fn local_prefix(ranks: u32) -> Vec<String> {
    if ranks > 1 {
        [
            "mpirun",
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            &ranks.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        Vec::new()
    }
}
