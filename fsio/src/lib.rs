//! kiln-fsio: the one safe-write rule for every file and directory kiln writes.
//!
//! A file is written to an unpredictable temporary name created exclusively (`O_EXCL`, so a
//! planted symlink is never followed) in the destination's own directory, synced, and renamed
//! over the destination; the directory is synced after. A directory is filled under a
//! temporary name and swapped in whole (`renameat2(RENAME_EXCHANGE)`). Whatever fails on the
//! way removes its temporary; temporaries left by killed processes are removed by the next
//! write to the same destination. The destination itself is handled deliberately:
//! - a symlink is followed, and the file it names is replaced (the link stays a link);
//! - a special file (`/dev/null`, a FIFO, a terminal) is written in place, never replaced;
//! - a directory where a file is expected is refused;
//! - an existing file is replaced only when the caller allows it ([`Replace`]), keeping its
//!   permission bits;
//! - an output that is one of the command's inputs is refused ([`refuse_inputs`]).
//!
//! No crash leaves a half-written destination: readers see the old file or the new one.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The marker in every temporary name: `.NAME.kiln-PID-RANDOM.tmp`.
const TEMP_MARK: &str = ".kiln-";
/// The suffix of every temporary name.
const TEMP_SUFFIX: &str = ".tmp";
/// Attempts at a fresh temporary name before giving up (each collides only if another
/// process drew the same 64 random bits).
const TEMP_ATTEMPTS: u32 = 16;
/// Permission bits of a new file (before the umask): what `File::create` gives.
const NEW_FILE_MODE: u32 = 0o666;

/// What went wrong, with the path it concerns and the fix.
#[derive(Debug)]
pub struct Error {
    /// The path the user named (or the one kiln was writing).
    pub path: PathBuf,
    /// What happened.
    pub kind: ErrorKind,
}

/// The reasons a write is refused or fails.
#[derive(Debug)]
pub enum ErrorKind {
    /// The operating system's error.
    Io(io::Error),
    /// A directory stands where a file is to be written.
    IsDirectory,
    /// A file stands where a directory is to be written.
    NotDirectory,
    /// The file exists and the caller did not allow replacing it.
    Exists {
        /// The flag that allows it, e.g. `--force`.
        flag: &'static str,
    },
    /// The output is (or, for a directory output, contains) one of the command's inputs.
    IsInput {
        /// The input it would destroy.
        input: PathBuf,
        /// The flag that allows it where the command has one, e.g. `--in-place`.
        flag: Option<&'static str>,
    },
}

impl Error {
    fn io(path: &Path, e: io::Error) -> Error {
        Error {
            path: path.to_path_buf(),
            kind: ErrorKind::Io(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.kind {
            ErrorKind::Io(e) => write!(f, "cannot write `{p}`: {e}"),
            ErrorKind::IsDirectory => {
                write!(f, "`{p}` is a directory; name a file to write instead")
            }
            ErrorKind::NotDirectory => {
                write!(f, "`{p}` exists and is not a directory; name a directory")
            }
            ErrorKind::Exists { flag } => write!(
                f,
                "`{p}` exists and is not a file kiln wrote there unchanged; move it away or pass {flag} to replace it"
            ),
            ErrorKind::IsInput { input, flag } => {
                write!(
                    f,
                    "the output `{p}` would replace the input `{}`; write to another path",
                    input.display()
                )?;
                match flag {
                    Some(flag) => write!(f, " or pass {flag}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for Error {}

/// The operating system's error as it is (the caller names the path), or the refusal's
/// whole message.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e.kind {
            ErrorKind::Io(inner) => inner,
            _ => io::Error::other(e.to_string()),
        }
    }
}

/// Whether an existing regular file at the destination may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Replace it (the command's output is meant to be rewritten: a plan, a formatted file).
    Yes,
    /// Refuse, naming `flag` as the way to allow it.
    No {
        /// The command-line flag that allows replacing, e.g. `--force`.
        flag: &'static str,
    },
}

/// How [`write_with`] treats the destination.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Whether an existing file is replaced.
    pub replace: Replace,
    /// Permission bits of the written file; `None` keeps an existing file's bits and gives a
    /// new file the umask's default.
    pub mode: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            replace: Replace::Yes,
            mode: None,
        }
    }
}

/// Writes `bytes` to `path` whole (see the module doc), replacing an existing file.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_with(path, bytes, &Options::default())
}

/// Writes `bytes` to `path` whole under `options` (see the module doc).
pub fn write_with(path: &Path, bytes: &[u8], options: &Options) -> Result<(), Error> {
    match Destination::of(path)? {
        Destination::Special(dest) => {
            let mut f = OpenOptions::new()
                .write(true)
                .open(&dest)
                .map_err(|e| Error::io(path, e))?;
            f.write_all(bytes).map_err(|e| Error::io(path, e))
        }
        Destination::File { dest, existing } => {
            if existing.is_some() {
                if let Replace::No { flag } = options.replace {
                    return Err(Error {
                        path: path.to_path_buf(),
                        kind: ErrorKind::Exists { flag },
                    });
                }
            }
            let mode = options.mode.or(existing);
            let mut file = AtomicFile::create_resolved(path, dest, mode)?;
            file.write_all(bytes).map_err(|e| Error::io(path, e))?;
            file.commit()
        }
    }
}

/// Where a write lands, once symlinks are followed.
enum Destination {
    /// A regular file (new, or existing with these permission bits) at this real path.
    File {
        dest: PathBuf,
        existing: Option<u32>,
    },
    /// A device, FIFO or socket: written in place.
    Special(PathBuf),
}

impl Destination {
    fn of(path: &Path) -> Result<Destination, Error> {
        let dest = follow_links(path)?;
        match fs::metadata(&dest) {
            Ok(m) if m.is_dir() => Err(Error {
                path: path.to_path_buf(),
                kind: ErrorKind::IsDirectory,
            }),
            Ok(m) if m.is_file() => Ok(Destination::File {
                dest,
                existing: Some(m.permissions().mode() & 0o7777),
            }),
            Ok(_) => Ok(Destination::Special(dest)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Destination::File {
                dest,
                existing: None,
            }),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// `path` with every symlink in its last component followed (a link to a link included), so
/// the rename replaces the file the link names, not the link.
fn follow_links(path: &Path) -> Result<PathBuf, Error> {
    let mut dest = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&dest) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&dest).map_err(|e| Error::io(path, e))?;
                dest = match dest.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(dest),
        }
    }
    Err(Error::io(
        path,
        io::Error::other("too many levels of symbolic links"),
    ))
}

/// A file being written under a temporary name beside its destination; [`AtomicFile::commit`]
/// renames it into place, and dropping it uncommitted removes it.
#[derive(Debug)]
pub struct AtomicFile {
    /// The path the user named, for messages.
    shown: PathBuf,
    dest: PathBuf,
    temp: PathBuf,
    file: Option<File>,
    mode: Option<u32>,
}

impl AtomicFile {
    /// Starts a write of `path`, which replaces an existing file (keeping its permission
    /// bits) when committed. Refuses a directory; a special file cannot be written this way.
    pub fn create(path: &Path) -> Result<AtomicFile, Error> {
        match Destination::of(path)? {
            Destination::File { dest, existing } => {
                AtomicFile::create_resolved(path, dest, existing)
            }
            Destination::Special(_) => Err(Error::io(
                path,
                io::Error::other("not a regular file; name a file kiln can replace"),
            )),
        }
    }

    fn create_resolved(
        shown: &Path,
        dest: PathBuf,
        mode: Option<u32>,
    ) -> Result<AtomicFile, Error> {
        let (dir, name) = split(&dest);
        remove_stale(&dir, &name);
        let mut last = None;
        for _ in 0..TEMP_ATTEMPTS {
            let temp = dir.join(temp_name(&name));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(NEW_FILE_MODE)
                .open(&temp)
            {
                Ok(file) => {
                    return Ok(AtomicFile {
                        shown: shown.to_path_buf(),
                        dest,
                        temp,
                        file: Some(file),
                        mode,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(Error::io(shown, e)),
            }
        }
        Err(Error::io(
            shown,
            last.unwrap_or_else(|| io::Error::other("no temporary name")),
        ))
    }

    /// The temporary file's path (it is renamed to the destination on commit).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Syncs the file, renames it over the destination and syncs the directory.
    pub fn commit(mut self) -> Result<(), Error> {
        let file = self
            .file
            .take()
            .expect("an uncommitted AtomicFile holds its file");
        let shown = self.shown.clone();
        let result = (|| {
            if let Some(mode) = self.mode {
                file.set_permissions(fs::Permissions::from_mode(mode))?;
            }
            file.sync_all()?;
            drop(file);
            fs::rename(&self.temp, &self.dest)?;
            sync_dir(&split(&self.dest).0)
        })();
        match result {
            Ok(()) => {
                self.temp = PathBuf::new();
                Ok(())
            }
            Err(e) => Err(Error::io(&shown, e)),
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("open until commit").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open until commit").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// A directory being filled under a temporary name beside its destination;
/// [`AtomicDir::commit`] swaps it in whole, and dropping it uncommitted removes it.
#[derive(Debug)]
pub struct AtomicDir {
    shown: PathBuf,
    dest: PathBuf,
    temp: PathBuf,
}

impl AtomicDir {
    /// Starts a directory that replaces `path` (an existing directory, or nothing) on commit.
    /// Its parent directories are created.
    pub fn create(path: &Path) -> Result<AtomicDir, Error> {
        let dest = follow_links(path)?;
        match fs::metadata(&dest) {
            Ok(m) if !m.is_dir() => {
                return Err(Error {
                    path: path.to_path_buf(),
                    kind: ErrorKind::NotDirectory,
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
        let (dir, name) = split(&dest);
        fs::create_dir_all(&dir).map_err(|e| Error::io(path, e))?;
        remove_stale(&dir, &name);
        let mut last = None;
        for _ in 0..TEMP_ATTEMPTS {
            let temp = dir.join(temp_name(&name));
            match fs::create_dir(&temp) {
                Ok(()) => {
                    return Ok(AtomicDir {
                        shown: path.to_path_buf(),
                        dest,
                        temp,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Err(Error::io(
            path,
            last.unwrap_or_else(|| io::Error::other("no temporary name")),
        ))
    }

    /// The temporary directory to fill.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Syncs the filled directory and puts it in the destination's place in one step: an
    /// existing directory is exchanged with it atomically and then removed.
    pub fn commit(mut self) -> Result<(), Error> {
        let shown = self.shown.clone();
        let result = (|| {
            sync_dir(&self.temp)?;
            let (parent, _) = split(&self.dest);
            if fs::symlink_metadata(&self.dest).is_ok() {
                exchange(&self.temp, &self.dest)?;
                // The temporary name now holds the old directory.
                fs::remove_dir_all(&self.temp)?;
            } else {
                fs::rename(&self.temp, &self.dest)?;
            }
            sync_dir(&parent)
        })();
        match result {
            Ok(()) => {
                self.temp = PathBuf::new();
                Ok(())
            }
            Err(e) => Err(Error::io(&shown, e)),
        }
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.temp);
        }
    }
}

/// Exchanges two directory entries atomically (Linux's `renameat2(RENAME_EXCHANGE)`); where
/// the file system lacks it, moves `dest` aside, renames `temp` to it, and leaves the old one
/// at `temp` (a crash between the two renames leaves both under kiln's temporary names,
/// nothing lost).
fn exchange(temp: &Path, dest: &Path) -> io::Result<()> {
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (a, b) = (c(temp)?, c(dest)?);
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them like open(2).
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
        return Err(e);
    }
    let (dir, name) = split(dest);
    let aside = dir.join(temp_name(&name));
    fs::rename(dest, &aside)?;
    fs::rename(temp, dest)?;
    fs::rename(&aside, temp)
}

/// Refuses an output that is one of `inputs`: the same file (hard links and symlinks
/// included), or, for an output directory that a command replaces whole, a directory that
/// contains an input. `flag` is the command's way to allow writing over an input file
/// (`--in-place`), where it has one. An output that does not exist yet is never an input.
pub fn refuse_inputs(
    output: &Path,
    inputs: &[&Path],
    flag: Option<&'static str>,
) -> Result<(), Error> {
    let Ok(out) = fs::metadata(output) else {
        return Ok(());
    };
    let out_real = fs::canonicalize(output).ok();
    for input in inputs {
        let Ok(m) = fs::metadata(input) else { continue };
        let same = m.dev() == out.dev() && m.ino() == out.ino();
        let inside = out.is_dir()
            && match (&out_real, fs::canonicalize(input)) {
                (Some(dir), Ok(inp)) => inp.starts_with(dir),
                _ => false,
            };
        if same || inside {
            return Err(Error {
                path: output.to_path_buf(),
                kind: ErrorKind::IsInput {
                    input: input.to_path_buf(),
                    flag: if same && !out.is_dir() { flag } else { None },
                },
            });
        }
    }
    Ok(())
}

/// Whether `name` (a file name) is one of kiln's temporary names.
pub fn is_temporary(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') && name.contains(TEMP_MARK) && name.ends_with(TEMP_SUFFIX)
}

/// Removes the temporaries for `name` in `dir` that a process no longer running left behind
/// (a killed write); a running process's own are kept.
pub fn remove_stale(dir: &Path, name: &OsString) {
    let prefix = format!(".{}{TEMP_MARK}", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let Some(rest) = rest.strip_suffix(TEMP_SUFFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid > 0 && !process_alive(pid) {
            let path = entry.path();
            let _ = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
        }
    }
}

/// Whether a process with this id exists (signal 0 checks without sending anything).
fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks the pid.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// `.NAME.kiln-PID-RANDOM.tmp`: hidden, recognisable by [`remove_stale`], and not guessable
/// by another user (64 bits from the standard library's randomly keyed hasher).
fn temp_name(name: &OsString) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!(
        ".{}{TEMP_MARK}{}-{:016x}{TEMP_SUFFIX}",
        name.to_string_lossy(),
        std::process::id(),
        h.finish()
    )
}

/// A destination's directory (`.` for a bare name) and file name.
fn split(dest: &Path) -> (PathBuf, OsString) {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| OsString::from("output"));
    (dir, name)
}

/// fsyncs a directory so the entries made in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_and_replaces_keeping_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plan.json");
        write(&p, b"one").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(names(dir.path()), ["plan.json"]);
    }

    #[test]
    fn a_planted_symlink_at_a_temporary_name_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        // The old fixed name, and a guess at the new pattern: neither is written through.
        symlink(&victim, dir.path().join("plan.kiln-tmp")).unwrap();
        symlink(
            &victim,
            dir.path().join(".plan.json.kiln-1-0000000000000000.tmp"),
        )
        .unwrap();
        write(&dir.path().join("plan.json"), b"plan").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(
            fs::metadata(&victim).unwrap().permissions().mode() & 0o777 & 0o111,
            0
        );
    }

    #[test]
    fn a_symlinked_destination_keeps_its_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.json");
        symlink("real.json", &link).unwrap();
        write(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn refuses_a_directory_and_an_existing_file_without_leave_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let e = write(dir.path(), b"x").unwrap_err();
        assert!(matches!(e.kind, ErrorKind::IsDirectory), "{e}");
        let p = dir.path().join("user.sh");
        fs::write(&p, b"mine").unwrap();
        let no = Options {
            replace: Replace::No { flag: "--force" },
            mode: None,
        };
        let e = write_with(&p, b"x", &no).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"mine");
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing_and_stale_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"half").unwrap();
        }
        assert!(names(dir.path()).is_empty());
        // A temporary of a process that no longer exists (pid 2^22 + 1 is above Linux's
        // largest), and one of this process, which is kept.
        let stale = dir
            .path()
            .join(".out.jsonl.kiln-4194305-00000000deadbeef.tmp");
        fs::write(&stale, b"old").unwrap();
        let live = dir.path().join(format!(
            ".out.jsonl.kiln-{}-00000000deadbeef.tmp",
            std::process::id()
        ));
        fs::write(&live, b"mine").unwrap();
        write(&p, b"new").unwrap();
        assert!(!stale.exists());
        assert!(live.exists());
    }

    #[test]
    fn directories_are_swapped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tok");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("old_shard.bin"), b"old").unwrap();
        let d = AtomicDir::create(&out).unwrap();
        fs::write(d.path().join("tokenizer.json"), b"{}").unwrap();
        d.commit().unwrap();
        assert_eq!(names(&out), ["tokenizer.json"]);
        assert_eq!(names(dir.path()), ["tok"]);
        // Dropped before commit: the old directory stays as it was.
        let d = AtomicDir::create(&out).unwrap();
        fs::write(d.path().join("half"), b"").unwrap();
        drop(d);
        assert_eq!(names(&out), ["tokenizer.json"]);
        assert_eq!(names(dir.path()), ["tok"]);
    }

    #[test]
    fn an_output_that_is_an_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("web.jsonl");
        fs::write(&input, b"{}").unwrap();
        let e = refuse_inputs(&input, &[&input], Some("--in-place")).unwrap_err();
        assert!(e.to_string().contains("--in-place"), "{e}");
        let hard = dir.path().join("hard.jsonl");
        fs::hard_link(&input, &hard).unwrap();
        assert!(refuse_inputs(&hard, &[&input], None).is_err());
        assert!(refuse_inputs(dir.path(), &[&input], None).is_err());
        assert!(refuse_inputs(&dir.path().join("new"), &[&input], None).is_ok());
    }

    #[test]
    fn special_files_are_written_in_place() {
        write(Path::new("/dev/null"), b"discarded").unwrap();
        assert!(!fs::metadata("/dev/null").unwrap().is_file());
    }
}
