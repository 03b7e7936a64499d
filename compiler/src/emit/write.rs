//! Writing emitted files into a directory: each through kiln-fsio's safe-write rule, and
//! never over a file that kiln did not write there.
//!
//! The directory keeps a manifest ([`MANIFEST`]) of the sha256 of every file kiln wrote into
//! it. An existing file is replaced when kiln wrote it and nobody changed it since (its
//! content still has the recorded hash), or when it already holds the new text; any other
//! file (the user's own, or one edited after emitting) is refused unless `force`. Every
//! file is checked before any is written, so a refusal changes nothing.

use super::File;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Component, Path};

/// The manifest's name inside the output directory.
pub const MANIFEST: &str = ".kiln-emitted.json";

/// Writes `files` into `dir` (created if missing). `inputs` are the command's input files,
/// which are never written over, `force` included.
pub fn write(
    dir: &Path,
    files: &[File],
    force: bool,
    inputs: &[&Path],
) -> Result<(), kiln_fsio::Error> {
    let fail = |path: &Path, e: io::Error| kiln_fsio::Error {
        path: path.to_path_buf(),
        kind: kiln_fsio::ErrorKind::Io(e),
    };
    if dir.exists() && !dir.is_dir() {
        return Err(kiln_fsio::Error {
            path: dir.to_path_buf(),
            kind: kiln_fsio::ErrorKind::NotDirectory,
        });
    }
    fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    let manifest_path = dir.join(MANIFEST);
    let mut manifest: BTreeMap<String, String> = fs::read(&manifest_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();

    for f in files {
        let path = dir.join(&f.path);
        let plain = Path::new(&f.path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(fail(
                &path,
                io::Error::other("an emitted file's name must stay inside the output directory"),
            ));
        }
        kiln_fsio::refuse_inputs(&path, inputs, None)?;
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            // A directory is refused by the write itself, with its own message; a symlink or
            // special file kiln never made is the user's.
            if meta.is_dir() {
                continue;
            }
        } else {
            let current = sha256(&fs::read(&path).map_err(|e| fail(&path, e))?);
            if current == sha256(f.text.as_bytes())
                || manifest.get(&f.path).is_some_and(|h| *h == current)
            {
                continue;
            }
        }
        if !force {
            return Err(kiln_fsio::Error {
                path,
                kind: kiln_fsio::ErrorKind::Exists { flag: "--force" },
            });
        }
    }

    for f in files {
        let path = dir.join(&f.path);
        let options = kiln_fsio::Options {
            replace: kiln_fsio::Replace::Yes,
            mode: f.executable.then_some(0o755),
        };
        kiln_fsio::write_with(&path, f.text.as_bytes(), &options)?;
        manifest.insert(f.path.clone(), sha256(f.text.as_bytes()));
    }
    let text = serde_json::to_string_pretty(&manifest).expect("a map of strings serialises");
    kiln_fsio::write(&manifest_path, (text + "\n").as_bytes())
}

/// Lower-case hex sha256 of `bytes`.
fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
