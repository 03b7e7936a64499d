//! The build-script helper of the crates that link libtorch (kiln-train, kiln-worker): gives
//! the package's binaries and tests an rpath to the torch wheel's `torch/lib`, so they start
//! without LD_LIBRARY_PATH.
//!
//! The directory is `$LIBTORCH/lib`, or asked of the python on PATH. Cargo applies
//! `rustc-link-arg` only to the package whose build script prints it, so every package with
//! binaries that link libtorch calls this from its own `build.rs`.

use std::process::Command;

/// Asks python where the torch wheel keeps its shared libraries.
const FIND_TORCH_LIB: &str =
    "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))";

/// Prints the cargo lines: the rpath, or a warning when torch cannot be found.
pub fn link_rpath() {
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let from_libtorch = std::env::var("LIBTORCH")
        .ok()
        .map(|dir| format!("{dir}/lib"));
    let lib = from_libtorch.or_else(|| {
        ["python3", "python"].iter().find_map(|python| {
            let out = Command::new(python)
                .args(["-c", FIND_TORCH_LIB])
                .output()
                .ok()?;
            if !out.status.success() {
                return None;
            }
            let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
            (!path.is_empty()).then_some(path)
        })
    });
    match lib {
        Some(dir) => println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}"),
        None => println!(
            "cargo:warning=torch not found through python on PATH or LIBTORCH: binaries need LD_LIBRARY_PATH set to torch/lib"
        ),
    }
}
