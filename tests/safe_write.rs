//! Every file kiln writes goes through one safe-write rule (issue 11): nothing a user owns is
//! replaced by accident. Each test drives the `kiln` binary and asserts what is kept on disk
//! and what the message says.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A project directory holding a copy of a published experiment (it imports only the
/// standard library) as `e.kiln`.
fn project() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(".git")).unwrap();
    let exp = dir.path().join("e.kiln");
    fs::copy(common::root().join("experiments/llama3_8b.kiln"), &exp).unwrap();
    (dir, exp)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Runs `script` as root in a private mount namespace (`unshare -m`), so mounts made there
/// vanish with it; `None` where this machine does not allow it.
fn in_private_mounts(script: &str) -> Option<Output> {
    let probe = Command::new("unshare").args(["-m", "true"]).output().ok()?;
    if !probe.status.success() {
        eprintln!("skipped: `unshare -m` is not permitted here");
        return None;
    }
    Some(
        Command::new("unshare")
            .args(["-m", "sh", "-c", script])
            .env("KILN", env!("CARGO_BIN_EXE_kiln"))
            .output()
            .unwrap(),
    )
}

#[test]
fn a_symlink_planted_at_the_old_temporary_name_is_not_written_through() {
    let (dir, _) = project();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let victim = dir.path().join("victim.txt");
    fs::write(&victim, "the user's file\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    // kiln once wrote through the fixed name `<path>.kiln-tmp`, following a planted link.
    symlink(&victim, out.join("plan.kiln-tmp")).unwrap();
    let o = kiln(dir.path(), &["plan", "e.kiln", "-o", "out/plan.json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "the user's file\n");
    let mode = fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert!(fs::read_to_string(out.join("plan.json"))
        .unwrap()
        .contains("\"version\""));
    // Nothing but the plan and the untouched link is left in the directory.
    assert_eq!(names(&out), ["plan.json", "plan.kiln-tmp"]);
}

#[test]
fn plan_to_dev_null_writes_into_the_device_and_keeps_it() {
    let (dir, _) = project();
    // A private /dev with its own null device: were kiln to replace it, only this
    // namespace's copy would suffer.
    let script = format!(
        "set -e; mount -t tmpfs tmpfs /dev; mknod -m 666 /dev/null c 1 3; \
         cd '{}'; \"$KILN\" plan e.kiln -o /dev/null 2>/dev/null; \
         stat -c '%F' /dev/null; ls -a /dev",
        dir.path().display()
    );
    let Some(o) = in_private_mounts(&script) else {
        return;
    };
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("character special file"), "{out}");
    // No temporary beside it either.
    assert!(!out.contains("kiln"), "{out}");
}

#[test]
fn an_output_that_names_the_input_is_refused() {
    let (dir, exp) = project();
    let before = fs::read(&exp).unwrap();
    let o = kiln(dir.path(), &["plan", "e.kiln", "-o", "e.kiln"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("the output `e.kiln` would replace the input `e.kiln`"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(&exp).unwrap(), before);
    // Through another name for the same file too.
    symlink("e.kiln", dir.path().join("alias.kiln")).unwrap();
    let o = kiln(dir.path(), &["plan", "e.kiln", "-o", "alias.kiln"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(fs::read(&exp).unwrap(), before);
    assert_eq!(names(dir.path()), [".git", "alias.kiln", "e.kiln"]);
}

#[test]
fn emit_replaces_only_files_it_wrote_and_nobody_changed() {
    let (dir, _) = project();
    let out = dir.path().join("launch");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("submit.sh"), "# the user's own submit script\n").unwrap();
    let o = kiln(
        dir.path(),
        &["emit", "e.kiln", "--target", "slurm", "-o", "launch"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`launch/submit.sh` exists") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    // Refused before anything was written.
    assert_eq!(names(&out), ["submit.sh"]);
    assert_eq!(
        fs::read_to_string(out.join("submit.sh")).unwrap(),
        "# the user's own submit script\n"
    );

    let o = kiln(
        dir.path(),
        &[
            "emit", "e.kiln", "--target", "slurm", "-o", "launch", "--force",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let submit = fs::read_to_string(out.join("submit.sh")).unwrap();
    assert!(submit.starts_with("#!"), "{submit}");
    assert_eq!(
        fs::metadata(out.join("submit.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111,
        0o111
    );
    // Emitting again replaces what kiln wrote, without --force.
    let o = kiln(
        dir.path(),
        &["emit", "e.kiln", "--target", "slurm", "-o", "launch"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A file edited after emitting is the user's again.
    fs::write(out.join("plan.json"), "{}\n").unwrap();
    let o = kiln(
        dir.path(),
        &["emit", "e.kiln", "--target", "slurm", "-o", "launch"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(out.join("plan.json")).unwrap(), "{}\n");
    assert!(!names(&out)
        .iter()
        .any(|n| n.contains(".kiln-") && n.ends_with(".tmp")));
}

#[test]
fn fmt_on_a_full_disk_keeps_the_file_whole_and_leaves_no_temporary() {
    let (dir, _) = project();
    // An unformatted file of ~48 KB on a 64 KiB tmpfs: its formatted copy cannot fit beside it.
    let mut text = String::from("experiment e {\n");
    for i in 0..2400 {
        text += &format!("  # comment {i:05}\n");
    }
    text += "  tokens   =    1T\n}\n";
    let src = dir.path().join("big.kiln");
    fs::write(&src, &text).unwrap();
    let script = format!(
        "set -e; cd '{d}'; mkdir t; mount -t tmpfs -o size=64k tmpfs t; cp big.kiln t/; \
         if \"$KILN\" fmt t/big.kiln; then echo WROTE; fi; \
         cmp big.kiln t/big.kiln && echo SAME; ls -a t",
        d = dir.path().display()
    );
    let Some(o) = in_private_mounts(&script) else {
        return;
    };
    let out = String::from_utf8_lossy(&o.stdout);
    let err = stderr(&o);
    assert!(!out.contains("WROTE"), "{out}{err}");
    assert!(out.contains("SAME"), "the file changed: {out}{err}");
    assert!(
        err.contains("t/big.kiln") && err.contains("No space left"),
        "{err}"
    );
    // Only the file: no temporary left behind.
    let listing: Vec<&str> = out.lines().skip_while(|l| *l != "SAME").skip(1).collect();
    assert_eq!(listing, [".", "..", "big.kiln"], "{out}");
}

#[test]
fn fmt_keeps_permissions_and_links() {
    let (dir, _) = project();
    let real = dir.path().join("real.kiln");
    fs::write(&real, "experiment e {\n  tokens   =  1T\n}\n").unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).unwrap();
    symlink("real.kiln", dir.path().join("link.kiln")).unwrap();
    let o = kiln(dir.path(), &["fmt", "link.kiln"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        fs::read_to_string(&real).unwrap(),
        "experiment e {\n  tokens = 1T\n}\n"
    );
    assert!(fs::symlink_metadata(dir.path().join("link.kiln"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::metadata(&real).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn fmt_reports_non_utf8_with_its_offset_and_refuses_a_fifo() {
    let (dir, _) = project();
    let latin1 = dir.path().join("latin1.kiln");
    fs::write(&latin1, b"experiment e {\n  name = \"caf\xe9\"\n}\n").unwrap();
    let o = kiln(dir.path(), &["fmt", "latin1.kiln"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error[K-I006]") && stderr(&o).contains("byte 28 (0xE9)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        fs::read(&latin1).unwrap(),
        b"experiment e {\n  name = \"caf\xe9\"\n}\n"
    );
    // A FIFO would block a plain read: refused at once.
    let fifo = dir.path().join("pipe.kiln");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let o = kiln(dir.path(), &["fmt", "pipe.kiln"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is a FIFO"), "{}", stderr(&o));
}
